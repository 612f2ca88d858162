// What a user reads when a process cannot start: one sentence naming the cause and what to change,
// instead of a stack trace. Pure: the caller prints it. Unknown errors get no explanation (the
// caller logs them whole, since they are ours to fix, not the user's).

type Tree = Record<string, unknown>;
const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The dotted settings path of the `port` that equals `port` (e.g. `http.port`), if one does. */
export function settingPathOfPort(settings: unknown, port: number, prefix = ''): string | undefined {
  if (!isTree(settings)) return undefined;
  for (const [key, value] of Object.entries(settings)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (key === 'port' && value === port) return path;
    const inner = settingPathOfPort(value, port, path);
    if (inner) return inner;
  }
  return undefined;
}

export interface StartupContext {
  /** The loaded settings, searched for the setting behind a busy port. */
  settings?: unknown;
  /** The role folders the settings came from, named in the advice. */
  roleFolders?: string[];
  /** The bus URL the process used. */
  busUrl?: string;
}

interface SystemError extends Error {
  code?: string;
  syscall?: string;
  address?: string;
  port?: number;
  path?: string;
}

/** The chain of causes, outermost first. */
function causes(err: unknown): SystemError[] {
  const chain: SystemError[] = [];
  for (let e: unknown = err; e instanceof Error && chain.length < 8; e = e.cause) chain.push(e as SystemError);
  return chain;
}

export function explainStartupError(err: unknown, ctx: StartupContext = {}): string | undefined {
  const chain = causes(err);
  const where = ctx.roleFolders?.length ? ` in ${ctx.roleFolders.join(':')}` : '';
  for (const e of chain) {
    const listening = e.syscall === 'listen' || e.syscall === 'bind';
    if (listening && (e.code === 'EADDRINUSE' || e.code === 'EACCES')) {
      const port = e.port;
      const setting = port === undefined ? undefined : settingPathOfPort(ctx.settings, port);
      const at = `${e.address ?? ''}${port === undefined ? '' : `:${port}`}`;
      const change = setting ? `change ${setting}${where}` : 'change the port in the settings';
      return e.code === 'EADDRINUSE'
        ? `port ${at} is already in use by another process: stop it, or ${change}`
        : `not allowed to listen on ${at} (ports below 1024 need privileges): ${change}`;
    }
    if (e.code === 'ENOENT' && e.path && e.syscall === 'open') {
      return `cannot read ${e.path}: no such file (a certificate, key or CA named by the settings${where}; \`make certs\` writes the dev ones)`;
    }
  }
  const text = chain.map((e) => `${e.name} ${e.message} ${e.code ?? ''}`).join(' ');
  if (/JetStreamNotEnabled|jetstream not enabled|JetStream is not enabled/i.test(text)) {
    return `JetStream is not enabled on the bus${ctx.busUrl ? ` at ${ctx.busUrl}` : ''}: start nats-server with -js (or a jetstream block in its configuration; \`make demo\` starts one that has it)`;
  }
  const violation = /Permissions Violation for (Publish|Subscription) to "([^"]+)"/.exec(text);
  if (violation) {
    return `the bus${ctx.busUrl ? ` at ${ctx.busUrl}` : ''} does not let this process ${violation[1] === 'Publish' ? 'publish to' : 'subscribe to'} ${violation[2]}: its configuration was generated for other roles, directory or code; run \`make nats-config\` and restart nats-server`;
  }
  const refused = chain.find((e) => e.message.startsWith('the bus at '));
  if (refused) return refused.message;
  return undefined;
}
