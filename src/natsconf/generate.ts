import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { RecordData } from '../directory/types.js';
import { busPolicy, type BusPrincipal } from './policy.js';
import { renderNatsConfig } from './render.js';
import { readPolicyInput } from './sources.js';

// One entry point for every nats-server configuration this project writes: `make nats-config`
// (the demo's), the test servers' and the benches'. All read the same settings tree.

/** The bus admin of the dev PKI (settings/dev/certs/nats-admin.crt). */
export const DEFAULT_BUS_ADMIN = 'nats-admin';

export interface NatsConfigOptions {
  /** A settings tree: `directory/*.yml`, `roles/<role>/`, `certs/` (root, nats-server). */
  settings: string;
  host: string;
  port: number;
  storeDir: string;
  admins?: string[];
  /** Streams and buckets the roles do not name (test files use their own names). */
  extraStreams?: string[];
  extraBuckets?: string[];
  /** Records appended to the directory's files, as a later sd-setup run would add them. */
  extraRecords?: RecordData[];
}

export function generateNatsConfig(opts: NatsConfigOptions): { text: string; principals: BusPrincipal[] } {
  const root = resolve(opts.settings);
  const certs = join(root, 'certs');
  const input = readPolicyInput(root, opts.admins ?? [DEFAULT_BUS_ADMIN]);
  const principals = busPolicy({
    ...input,
    directory: [...input.directory, ...(opts.extraRecords ?? [])],
    extraStreams: opts.extraStreams ?? [],
    extraBuckets: opts.extraBuckets ?? [],
  });
  const text = renderNatsConfig(principals, {
    host: opts.host,
    port: opts.port,
    storeDir: resolve(opts.storeDir),
    tls: { cert: join(certs, 'nats-server.crt'), key: join(certs, 'nats-server.key'), ca: join(certs, 'root.crt') },
    source: `${root}/{directory,roles}`,
  });
  return { text, principals };
}

/** Generates and writes `file` (creating its folder and the store folder). */
export function writeNatsConfig(file: string, opts: NatsConfigOptions): BusPrincipal[] {
  const { text, principals } = generateNatsConfig(opts);
  mkdirSync(dirname(resolve(file)), { recursive: true });
  mkdirSync(resolve(opts.storeDir), { recursive: true });
  writeFileSync(file, text);
  return principals;
}
