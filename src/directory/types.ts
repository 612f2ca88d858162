import { z } from 'zod';

// The service directory is an append-only chain of signed change records, as in EPS. Replaying the
// chain from the first record yields one entry per operator. Only holders of directory-admin
// signing certificates may extend the chain; every record names its parent's hash so that two
// admins cannot silently fork it.

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lower-case hex characters');
const operatorName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'expected an operator name');

/** How an operator can be reached on a channel. `proxy` set means: only through that proxy operator. */
export const channelSchema = z.strictObject({
  type: z.enum(['grpc_server', 'jsonrpc_server']),
  /** host:port where the channel listens, for operators reachable directly. */
  address: z.string().optional(),
  /** Name of the proxy operator to ask for a brokered connection (EPS "P2P mode"). */
  proxy: operatorName.optional(),
});
export type Channel = z.infer<typeof channelSchema>;

export const permissionSchema = z.strictObject({
  /** Members of this group may call `methods` ('*' means any method of the service). */
  group: z.string().min(1),
  methods: z.array(z.string().min(1)).min(1),
});

export const recordDataSchema = z.discriminatedUnion('kind', [
  /** Introduces an operator and the certificate that proves it (TLS and bus signatures). */
  z.strictObject({ kind: z.literal('operator'), name: operatorName, certificate: z.string().includes('BEGIN CERTIFICATE') }),
  z.strictObject({ kind: z.literal('channel'), operator: operatorName, channel: channelSchema }),
  z.strictObject({ kind: z.literal('group'), name: z.string().min(1) }),
  z.strictObject({ kind: z.literal('member'), group: z.string().min(1), operator: operatorName }),
  /** `operator` offers a service; its permissions say which groups may call which methods. */
  z.strictObject({
    kind: z.literal('service'),
    operator: operatorName,
    name: z.string().min(1),
    permissions: z.array(permissionSchema),
  }),
]);
export type RecordData = z.infer<typeof recordDataSchema>;

export const signedRecordSchema = z.strictObject({
  data: recordDataSchema,
  /** Hash of the previous record, or 64 zeros for the first record of the chain. */
  parent: hex64,
  createdAt: z.string().datetime(),
  /** SHA-256 fingerprint of the admin signing certificate. */
  signer: hex64,
  /** The signer's PEM certificate, so any holder of the root can verify the record offline. */
  signerCertificate: z.string().includes('BEGIN CERTIFICATE'),
  /** base64 ECDSA/SHA-256 signature over the canonical JSON of every other field. */
  signature: z.string().min(1),
});
export type SignedRecord = z.infer<typeof signedRecordSchema>;

export const GENESIS_PARENT = '0'.repeat(64);

export interface Service {
  name: string;
  permissions: { group: string; methods: string[] }[];
}

/** What the directory says about one operator, built by replaying the chain. */
export interface DirectoryEntry {
  name: string;
  certificate: string;
  /** SHA-256 of the certificate's DER form: what TLS and bus signatures are checked against. */
  fingerprint: string;
  channels: Channel[];
  groups: string[];
  services: Service[];
}

/** A record as the chain stores it: the signed record plus its position and own hash. */
export interface ChainedRecord {
  seq: number;
  hash: string;
  record: SignedRecord;
}
