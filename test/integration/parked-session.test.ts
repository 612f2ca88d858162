import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevStack } from '../../src/devstack/stack.js';
import type { SessionDetail, SessionSummary } from '../../src/inspector/session-log.js';
import { SPLICE_END_REASONS } from '../../machines/brokering.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { callUntilOk, crash, proxyMetric, startFaultNats, startFaultStack, waitFor } from '../helpers/faults.js';
import { roleLog } from '../helpers/stack.js';

// An idle spliced session on the real stack (sd, `proxy run public` with its inspector on, hd-1,
// hd-2): once the native relay holds both sockets the proxy parks the session's brokering actor
// (issue 10: no live actor per idle session). B's death reaches the session through the relay,
// and the actor revived from its snapshot ends it as a live one would: one finished line in the
// proxy's log, the metrics, and the inspector's timeline with no step added by the parking.

const ADDON = 'native/splice/build/Release/eps_splice.node';
const nativeRelay = existsSync(ADDON) && process.env.EPS_SPLICE !== 'js';

describe.runIf(nativeRelay)('parked sessions', () => {
  let nats: TestNatsServer;
  let stack: DevStack;

  beforeAll(async () => {
    nats = await startFaultNats();
    stack = await startFaultStack(nats.url);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await nats?.stop();
  });

  const inspect = async <T>(path: string): Promise<T> => (await fetch(`http://127.0.0.1:${stack.opts.ports.metrics}/inspect/api${path}`)).json() as Promise<T>;
  const spliceEnds = async (): Promise<Record<string, number>> =>
    Object.fromEntries(await Promise.all(SPLICE_END_REASONS.map(async (r) => [r, await proxyMetric(stack, 'eps_proxy_splice_ends_total', `{reason="${r}"}`)] as const)));

  it('parked session - an idle spliced channel is parked, and B closing it is logged, counted and shown as a live session\'s close', async () => {
    await callUntilOk(stack, 'hd-2._ping');
    // hd-1 keeps its brokered channel to hd-2: one live session, idle once the ping was answered.
    await waitFor('the spliced session to be parked', async () => (await proxyMetric(stack, 'eps_proxy_parked_sessions')) === 1);
    // The session started before this, so it lasted at least from here to B's death.
    const parkedAt = Date.now();
    expect(await proxyMetric(stack, 'eps_proxy_live_sessions')).toBe(1);
    const { sessions } = await inspect<{ sessions: SessionSummary[] }>('/sessions');
    const parked = sessions.find((s) => s.machine === 'brokering' && s.status === 'live');
    expect(parked, JSON.stringify(sessions)).toMatchObject({ parties: 'hd-1 → hd-2', state: 'holding.spliced' });
    const id = parked!.id;
    const stepsWhileParked = (await inspect<SessionDetail>(`/sessions/${id}`)).timeline.length;

    const closedBefore = await proxyMetric(stack, 'eps_proxy_sessions_total', '{outcome="closed"}');
    const endsBefore = await spliceEnds();
    await crash(stack, 'hd-2');
    const crashedAt = Date.now();

    await waitFor('the session to end', async () => (await proxyMetric(stack, 'eps_proxy_live_sessions')) === 0);
    expect(await proxyMetric(stack, 'eps_proxy_parked_sessions')).toBe(0);
    expect(await proxyMetric(stack, 'eps_proxy_sessions_total', '{outcome="closed"}')).toBe(closedBefore + 1);
    const endsAfter = await spliceEnds();
    const ended = SPLICE_END_REASONS.filter((r) => endsAfter[r] !== endsBefore[r]);
    expect(ended).toHaveLength(1);
    const reason = ended[0]!;
    expect(endsAfter[reason]).toBe(endsBefore[reason]! + 1);

    // The proxy's one line for the session: the outcome, why the splice ended and what it relayed.
    const finished = await waitFor('the finished line in the proxy log', () =>
      roleLog(stack, 'public-proxy-1')
        .split('\n')
        .filter((l) => l.includes(id) && l.includes('brokering session finished'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .at(0),
    );
    expect(finished).toMatchObject({ level: 30, component: 'brokering', sessionId: id, outcome: 'closed', detail: reason });
    expect(finished.bytesAToB).toBeGreaterThan(0);
    expect(finished.bytesBToA).toBeGreaterThan(0);
    expect(finished.durationMs).toBeGreaterThanOrEqual(crashedAt - parkedAt);
    expect(roleLog(stack, 'public-proxy-1').split('\n').filter((l) => l.includes(id) && l.includes('brokering session finished'))).toHaveLength(1);

    // The inspector: the close is the session's one new step; parking and reviving added none.
    const detail = await inspect<SessionDetail>(`/sessions/${id}`);
    expect(detail.summary).toMatchObject({ status: 'finished', outcome: 'closed', state: 'closed' });
    expect(detail.timeline).toHaveLength(stepsWhileParked + 1);
    expect(detail.timeline.at(-1)).toMatchObject({ event: 'SPLICE_ENDED', from: 'holding.spliced', to: 'closed' });
    expect(detail.timeline.slice(1).map((e) => e.event)).not.toContain('xstate.init');
    expect(detail.timeline.map((e) => e.event)).not.toContain('xstate.stop');
    expect(detail.summary.bytes).toEqual({ aToB: finished.bytesAToB, bToA: finished.bytesBToA });
  }, 60_000);
});
