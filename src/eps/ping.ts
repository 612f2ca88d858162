import { packageVersion } from '../core/package-root.js';

export interface PingResult {
  version: string;
  timestamp: string;
  params: unknown;
  /** The answering server's own directory entry: proof of who answered. */
  serverInfo: unknown;
}

/** The built-in `_ping`: what EPS answers, so a caller sees which server replied and when. */
export function ping(params: unknown, serverInfo: unknown): PingResult {
  return { version: packageVersion, timestamp: new Date().toISOString(), params: params ?? {}, serverInfo };
}
