#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EXIT, parseCommandLine, usageError } from './command-line.js';
import { z } from 'zod';
import { second } from '../core/constants.js';
import { RpcError } from '../core/errors.js';
import { createRootLogger } from '../core/logger.js';
import { callJsonRpc, type JsonRpcClientOptions } from '../jsonrpc/client.js';
import { canonicalJson, recordHash, signRecord } from '../directory/records.js';
import { readRecordFiles } from '../directory/record-files.js';
import type { Tip } from '../directory/chain.js';

// Signs the dev directory records and submits those the chain does not hold yet, so running it
// again (or after adding a file) appends only what is new.

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const USAGE = `usage: sd-setup [--records DIR] [--certs DIR] [--signer NAME] [--client NAME] [--wait SECONDS]

  Signs every record in DIR/*.yml (default settings/dev/directory) with CERTS/NAME.{crt,key}
  (default sd-admin) and submits the ones the directory lacks to SD_URL
  (default https://127.0.0.1:3322/jsonrpc, certificate name SD_SERVER_NAME, default sd-1).
  The mTLS client identity is CERTS/CLIENT.{crt,key} (default hd-1): the admin's certificate is
  for signing only (codeSigning), so it cannot authenticate a TLS client.`;

/** The sd may still be starting (make targets run in parallel): keep trying this long. */
const DEFAULT_WAIT_S = 30;
const RETRY_MS = 500;

const recordsResult = z.object({ records: z.array(z.object({ record: z.object({ data: z.unknown() }) })), tip: z.object({ seq: z.number(), hash: z.string() }) });

async function main(): Promise<void> {
  const { values, positionals } = parseCommandLine(() =>
    parseArgs({
      options: {
        records: { type: 'string', default: join(repoRoot, 'settings/dev/directory') },
        certs: { type: 'string', default: join(repoRoot, 'settings/dev/certs') },
        signer: { type: 'string', default: 'sd-admin' },
        client: { type: 'string', default: 'hd-1' },
        wait: { type: 'string', default: String(DEFAULT_WAIT_S) },
        help: { type: 'boolean', default: false },
      },
      allowPositionals: true,
    }),
    'sd-setup',
    USAGE,
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(EXIT.ok);
  }
  if (positionals.length > 0) usageError(`sd-setup: unexpected argument "${positionals[0]}"`, USAGE);
  const log = createRootLogger('sd-setup');
  const certs = values.certs;
  const rpc: JsonRpcClientOptions = {
    url: process.env.SD_URL || 'https://127.0.0.1:3322/jsonrpc',
    serverName: process.env.SD_SERVER_NAME || 'sd-1',
    tls: {
      ca: readFileSync(join(certs, 'root.crt')),
      cert: readFileSync(join(certs, `${values.client}.crt`)),
      key: readFileSync(join(certs, `${values.client}.key`)),
    },
  };
  const signer = { certPem: readFileSync(join(certs, `${values.signer}.crt`)), keyPem: readFileSync(join(certs, `${values.signer}.key`)) };
  const wanted = readRecordFiles(values.records);

  const deadline = Date.now() + Number(values.wait) * second;
  // A concurrent writer can move the tip between our read and our submit: re-read and retry.
  for (let attempt = 1; ; attempt++) {
    const { records, tip } = await fetchChain(rpc, deadline, log);
    const present = new Set(records.map((r) => canonicalJson(r.record.data)));
    const missing = wanted.filter((d) => !present.has(canonicalJson(d)));
    if (missing.length === 0) {
      log.info({ present: wanted.length, tip }, 'directory already holds every record; nothing to do');
      return;
    }
    let parent = tip.hash;
    const signed = missing.map((data) => {
      const record = signRecord(data, parent, signer);
      parent = recordHash(record);
      return record;
    });
    try {
      const result = await callJsonRpc<{ accepted: number; tip: Tip }>(rpc, 'submitRecords', { records: signed });
      log.info({ accepted: result.accepted, alreadyPresent: wanted.length - missing.length, tip: result.tip }, 'directory records submitted');
      return;
    } catch (err) {
      if (err instanceof RpcError && err.code === -32012 && attempt < 3) {
        log.warn({ err: err.message }, 'the chain moved while submitting; retrying');
        continue;
      }
      throw err;
    }
  }
}

async function fetchChain(rpc: JsonRpcClientOptions, deadline: number, log: ReturnType<typeof createRootLogger>) {
  for (;;) {
    try {
      return recordsResult.parse(await callJsonRpc(rpc, 'getRecords', {}));
    } catch (err) {
      // A refusal from a running sd is final; only an sd that is not up yet is worth waiting for.
      if (err instanceof RpcError || Date.now() > deadline) throw err;
      log.debug({ err: (err as Error).message }, 'sd not reachable yet');
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }
}

main().catch((err: unknown) => {
  // A damaged stream is not an internal error of the sd: say what it is and what to run.
  const damaged = err instanceof RpcError && typeof err.data === 'object' && err.data !== null && 'damage' in err.data;
  if (damaged) process.stderr.write(`sd-setup: the sd refuses new records: ${err.detail}\n`);
  else process.stderr.write(`sd-setup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
