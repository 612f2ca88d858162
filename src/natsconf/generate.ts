import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { RecordData } from '../directory/types.js';
import { accountLinks, busPolicy, type BusPrincipal } from './policy.js';
import { renderNatsConfig, type ClusterNodeOptions } from './render.js';
import { readPolicyInput } from './sources.js';

// One entry point for every nats-server configuration this project writes: `make nats-config`
// (the demo's), the test servers' and the benches'. All read the same settings tree.

/**
 * The dev bus's JetStream store: one folder per root certificate under `.demo/nats`, so a clone
 * whose certificates were made again starts with an empty directory stream instead of one signed
 * under the old root, which its sd would rightly refuse to extend.
 */
export function devStoreDir(demoDir: string, settings: string): string {
  const root = new X509Certificate(readFileSync(join(resolve(settings), 'certs/root.crt')));
  return join(demoDir, `root-${root.fingerprint256.replaceAll(':', '').slice(0, 16).toLowerCase()}`);
}

/** The bus admin of the dev PKI (settings/dev/certs/nats-admin.crt), in OPS: `sd repair` runs as it. */
export const DEFAULT_BUS_ADMIN = 'nats-admin';
/** The admin of the GAMES account (the games bucket): an account's admin sees only its account. */
export const DEFAULT_GAMES_ADMIN = 'nats-admin-games';

export interface NatsConfigOptions {
  /** A settings tree: `directory/*.yml`, `roles/<role>/`, `certs/` (root, nats-server). */
  settings: string;
  host: string;
  port: number;
  storeDir: string;
  admins?: string[];
  gamesAdmins?: string[];
  /** Streams and buckets the roles do not name (test files use their own names). */
  extraStreams?: string[];
  extraBuckets?: string[];
  /** Records appended to the directory's files, as a later sd-setup run would add them. */
  extraRecords?: RecordData[];
  /** This server as one node of a cluster (see cluster.ts, which fills it in). */
  cluster?: ClusterNodeOptions;
}

export function generateNatsConfig(opts: NatsConfigOptions): { text: string; principals: BusPrincipal[] } {
  const root = resolve(opts.settings);
  const certs = join(root, 'certs');
  const base = readPolicyInput(root, opts.admins ?? [DEFAULT_BUS_ADMIN], opts.gamesAdmins ?? [DEFAULT_GAMES_ADMIN]);
  const input = {
    ...base,
    directory: [...base.directory, ...(opts.extraRecords ?? [])],
    extraStreams: opts.extraStreams ?? [],
    extraBuckets: opts.extraBuckets ?? [],
  };
  const principals = busPolicy(input);
  const text = renderNatsConfig(principals, accountLinks(input), {
    host: opts.host,
    port: opts.port,
    storeDir: resolve(opts.storeDir),
    tls: { cert: join(certs, 'nats-server.crt'), key: join(certs, 'nats-server.key'), ca: join(certs, 'root.crt') },
    source: `${root}/{directory,roles}`,
    ...(opts.cluster ? { cluster: opts.cluster } : {}),
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
