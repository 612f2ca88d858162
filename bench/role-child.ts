import type { ChildProcess } from 'node:child_process';

// A bench role running in a process of its own (forked with an IPC channel): the bench sends it
// steps and waits for the answer of each, by type. Every role reports a failure as
// `{ type: 'failed', detail }`, which `next` turns into an error.

type Message = { type: string };

export class RoleChild<To, From extends Message> {
  readonly messages: From[] = [];
  #waiters: (() => void)[] = [];

  constructor(
    readonly proc: ChildProcess,
    private readonly stepTimeoutMs: number,
  ) {
    proc.on('message', (m: From) => {
      this.messages.push(m);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  send(m: To): void {
    this.proc.send(m as object);
  }

  kill(): void {
    // SIGTERM: the roles exit on it, so a --cpu-prof profile gets written.
    this.proc.kill('SIGTERM');
  }

  async next<T extends From['type']>(type: T): Promise<Extract<From, { type: T }>> {
    const deadline = Date.now() + this.stepTimeoutMs;
    for (;;) {
      const i = this.messages.findIndex((m) => m.type === type || m.type === 'failed');
      if (i >= 0) {
        const [m] = this.messages.splice(i, 1);
        if (m!.type === 'failed') throw new Error((m as unknown as { detail: string }).detail);
        return m as Extract<From, { type: T }>;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${type}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 1_000);
        this.#waiters.push(() => (clearTimeout(t), r()));
      });
    }
  }
}
