import { connect } from 'node:net';

// Why a process is still waiting for its first bus connection, in words a newcomer can act on.
// nats.js retries silently (waitOnFirstConnect); the caller asks this after a short while and
// logs the answer, so nobody stares at a silent terminal for a minute.

/** How long the first connection may take before the process says what it waits for. */
export const BUS_WAIT_REPORT_MS = 1000;
/** Then again this often while it still waits. */
export const BUS_WAIT_REPEAT_MS = 15_000;

export function hostPortOfBusUrl(url: string): { host: string; port: number } {
  const first = url.split(',')[0]!.trim();
  const parsed = new URL(first.includes('://') ? first.replace(/^[a-z]+:/, 'http:') : `http://${first}`);
  return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port || 4222) };
}

/** Probes the bus's TCP port once and says what stands in the way. */
export function whyBusUnreachable(url: string, timeoutMs = 1000): Promise<string> {
  const { host, port } = hostPortOfBusUrl(url);
  return new Promise((resolve) => {
    const socket = connect(port, host);
    const done = (why: string) => {
      socket.destroy();
      resolve(why);
    };
    socket.setTimeout(timeoutMs, () => done(`${host}:${port} does not answer within ${timeoutMs} ms (a firewall, or a wrong host in nats.url / NATS_URL)`));
    socket.once('connect', () => done(`${host}:${port} accepts connections but no NATS session came up yet (is it a nats-server with the generated TLS configuration? \`make nats-config\`)`));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(
        err.code === 'ECONNREFUSED'
          ? `nothing listens on ${host}:${port} (start nats-server with settings/dev/nats/nats.conf; \`make demo\` starts it)`
          : `${host}:${port}: ${err.code ?? err.message}`,
      ),
    );
  });
}
