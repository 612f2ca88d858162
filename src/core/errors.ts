// Every error the system puts on a wire, in one table: JSON-RPC codes, bus refusals and splice
// close reasons. A test pins the table so a new code cannot appear without a documented entry.

export const JSONRPC_ERRORS = {
  PARSE_ERROR: { code: -32700, message: 'Parse error: the body is not valid JSON' },
  INVALID_REQUEST: { code: -32600, message: 'Invalid request: not a JSON-RPC 2.0 request object' },
  METHOD_NOT_FOUND: { code: -32601, message: 'Method not found' },
  INVALID_PARAMS: { code: -32602, message: 'Invalid params' },
  INTERNAL_ERROR: { code: -32603, message: 'Internal error' },
  // Application codes (-32000..-32099 are reserved for implementation-defined server errors).
  UNKNOWN_OPERATOR: { code: -32001, message: 'Unknown operator: not in the service directory' },
  PERMISSION_DENIED: { code: -32002, message: 'Permission denied by the service directory' },
  PEER_UNREACHABLE: { code: -32003, message: 'Peer unreachable' },
  BROKERING_FAILED: { code: -32004, message: 'Brokering through the proxy failed' },
  PEER_TIMEOUT: { code: -32005, message: 'Peer did not answer in time' },
  BAD_SIGNATURE: { code: -32010, message: 'Bad signature' },
  UNKNOWN_SIGNER: { code: -32011, message: 'Unknown signer: not a directory admin' },
  STALE_PARENT: { code: -32012, message: 'Stale parent: the record does not extend the current tip' },
  INVALID_RECORD: { code: -32013, message: 'Invalid record' },
  NOT_AUTHENTICATED: { code: -32020, message: 'Client certificate required' },
  RELAY_CAPACITY: { code: -32030, message: 'Relay refused: too many relay sessions open' },
} as const;

export type JsonRpcErrorName = keyof typeof JSONRPC_ERRORS;

/** An error that carries a stable JSON-RPC code to the caller. */
export class RpcError extends Error {
  override readonly name = 'RpcError';
  readonly code: number;
  readonly data: unknown;
  constructor(kind: JsonRpcErrorName, detail?: string, options?: { cause?: unknown; data?: unknown }) {
    const base = JSONRPC_ERRORS[kind];
    super(detail ? `${base.message}: ${detail}` : base.message, { cause: options?.cause });
    this.code = base.code;
    this.data = options?.data;
  }
  static fromWire(err: { code: number; message: string; data?: unknown }): RpcError {
    const kind = (Object.keys(JSONRPC_ERRORS) as JsonRpcErrorName[]).find((k) => JSONRPC_ERRORS[k].code === err.code);
    const e = new RpcError(kind ?? 'INTERNAL_ERROR');
    e.message = err.message;
    Object.assign(e, { code: err.code, data: err.data });
    return e;
  }
  /** The message without its code's generic prefix: what to quote when wrapping it in another error. */
  get detail(): string {
    const base = (Object.values(JSONRPC_ERRORS) as { code: number; message: string }[]).find((e) => e.code === this.code)?.message;
    return base && this.message.startsWith(`${base}: `) ? this.message.slice(base.length + 2) : this.message;
  }
  toWire(): { code: number; message: string; data?: unknown } {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}
