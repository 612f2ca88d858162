import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { AnyStateMachine } from 'xstate';
import { packageRoot } from '../core/package-root.js';
import { machineGraph } from '../diagrams/machine-graph.js';
import { svg } from '../diagrams/svg.js';
import { isLoopbackIp } from './redact.js';
import type { SessionChange, SessionLog } from './session-log.js';

// The inspector's HTTP surface, as one plain node:http handler so the proxy's metrics server and
// the games' fastify app (through reply.hijack()) serve the very same thing:
//
//   GET /inspect                       the page (HTML, CSS and JS from src/inspector/page/)
//   GET /inspect/api/sessions          every known session, newest first
//   GET /inspect/api/sessions/:id      one session: summary, timeline, redacted context
//   GET /inspect/api/machines/:id.svg  a machine's diagram, drawn by the same code as docs/machines/
//   GET /inspect/api/events            server-sent events: `hello` (the list), then `changes`
//
// Read-only (any other method is 405), and only loopback clients are answered unless the
// settings allow others: the page shows who talks to whom, which is an operator's business.

export const INSPECT_PREFIX = '/inspect';

/** Every file the page needs; nothing else under src/inspector/page/ is served. */
const ASSETS: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** An idle proxy in between (or the browser) may drop a silent stream; a comment keeps it open. */
const HEARTBEAT_MS = 15_000;

/**
 * A page that stops reading (a suspended tab) would make its stream buffer grow without end; past
 * this it is dropped, and its EventSource reconnects to a fresh `hello` when it wakes up.
 */
const MAX_STREAM_BACKLOG_BYTES = 1024 * 1024;

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Everything comes from this origin: no CDN, no fonts, no inline script.
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
};

export interface InspectorHttpOptions {
  log: SessionLog;
  /** The machines whose diagrams the page may ask for, by their id. */
  machines: AnyStateMachine[];
  /** What the page's title says: `proxy public-proxy-1`. */
  title: string;
  /** Answer clients that are not on loopback too (off by default). */
  allowRemote?: boolean;
}

export class InspectorHttp {
  readonly #opts: InspectorHttpOptions;
  readonly #page: string;
  readonly #assets = new Map<string, Buffer>();
  readonly #diagrams = new Map<string, Promise<string>>();
  readonly #streams = new Set<ServerResponse>();
  /** One serialisation of each pushed batch, however many pages watch. */
  readonly #batches = new WeakMap<SessionChange[], string>();

  constructor(opts: InspectorHttpOptions) {
    this.#opts = opts;
    // Read once: served from the source folder, which tsc does not copy into dist/.
    const dir = join(packageRoot, 'src/inspector/page');
    this.#page = readFileSync(join(dir, 'index.html'), 'utf8').replaceAll('{{title}}', escapeHtml(opts.title));
    for (const name of Object.keys(ASSETS)) this.#assets.set(name, readFileSync(join(dir, name)));
  }

  /** Handles the request when its path is under /inspect; returns false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (path !== INSPECT_PREFIX && !path.startsWith(`${INSPECT_PREFIX}/`)) return false;
    if (!this.#opts.allowRemote && !isLoopbackIp(req.socket.remoteAddress)) {
      send(res, 403, 'text/plain; charset=utf-8', 'the inspector answers loopback clients only (inspector.allowRemote)\n');
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, 'text/plain; charset=utf-8', 'the inspector is read-only\n');
      return true;
    }
    const rest = path.slice(INSPECT_PREFIX.length);
    if (rest === '' || rest === '/') return send(res, 200, 'text/html; charset=utf-8', this.#page), true;
    const asset = /^\/([a-z.]+)$/.exec(rest)?.[1];
    if (asset && this.#assets.has(asset)) return send(res, 200, ASSETS[asset]!, this.#assets.get(asset)!), true;
    if (rest === '/api/sessions') return json(res, 200, { now: Date.now(), sessions: this.#opts.log.list() }), true;
    const session = /^\/api\/sessions\/([^/]+)$/.exec(rest);
    if (session) {
      // The proxy serves this from a plain node:http callback, where a throw would end the process.
      let id: string;
      try {
        id = decodeURIComponent(session[1]!);
      } catch {
        return json(res, 400, { error: 'the session id is not valid percent-encoding' }), true;
      }
      const detail = this.#opts.log.detail(id);
      return (detail ? json(res, 200, { now: Date.now(), ...detail }) : json(res, 404, { error: 'no such session (finished sessions are kept a while only)' })), true;
    }
    const machine = /^\/api\/machines\/([A-Za-z0-9_-]+)\.svg$/.exec(rest);
    if (machine) {
      const diagram = this.#diagram(machine[1]!);
      if (!diagram) return json(res, 404, { error: 'no such machine' }), true;
      // The layout runs once per machine; a failure must answer, never end the serving process.
      diagram.then(
        (text) => res.destroyed || send(res, 200, 'image/svg+xml; charset=utf-8', text),
        (err: unknown) => res.destroyed || json(res, 500, { error: `the diagram could not be drawn: ${err instanceof Error ? err.message : String(err)}` }),
      );
      return true;
    }
    if (rest === '/api/events') return this.#stream(req, res), true;
    json(res, 404, { error: `no inspector route ${path}` });
    return true;
  }

  /** Ends every open event stream, so the server that carries them can close. */
  close(): void {
    for (const res of this.#streams) res.end();
    this.#streams.clear();
  }

  #diagram(id: string): Promise<string> | undefined {
    let text = this.#diagrams.get(id);
    if (text === undefined) {
      const machine = this.#opts.machines.find((m) => m.id === id);
      if (!machine) return undefined;
      text = svg(machineGraph(machine));
      // A failed layout is not kept: the next request tries again.
      text.catch(() => this.#diagrams.delete(id));
      this.#diagrams.set(id, text);
    }
    return text;
  }

  #stream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    res.socket?.setNoDelay(true);
    const write = (event: string, json: string): void => {
      if (res.destroyed || res.writableEnded) return;
      if (res.writableLength > MAX_STREAM_BACKLOG_BYTES) {
        res.destroy();
        return;
      }
      res.write(`event: ${event}\ndata: ${json}\n\n`);
    };
    write('hello', JSON.stringify({ now: Date.now(), title: this.#opts.title, sessions: this.#opts.log.list() }));
    const unsubscribe = this.#opts.log.subscribe((changes: SessionChange[]) => {
      let json = this.#batches.get(changes);
      if (json === undefined) {
        json = JSON.stringify({ now: Date.now(), changes });
        this.#batches.set(changes, json);
      }
      write('changes', json);
    });
    const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS).unref();
    this.#streams.add(res);
    const done = (): void => {
      clearInterval(heartbeat);
      unsubscribe();
      this.#streams.delete(res);
    };
    req.once('close', done);
    res.once('close', done);
  }
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(res.req?.method === 'HEAD' ? undefined : body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
