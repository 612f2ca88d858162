import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { waitForPort, type DevStack } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { pingUntilAnswered, startStack } from '../helpers/stack.js';

// The live inspector in a real browser: the demo stack as `make demo` starts it (the dev proxy
// role enables the inspector), Debian's chromium driven headless by playwright-core, a brokering
// through hd-1's gateway, and the page must show that session reach `spliced` without a reload.

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = 'test-artifacts';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(`inspector browser test skipped: ${CHROMIUM} is missing (bash scripts/ensure-chromium.sh installs it)`);
}

describe.skipIf(!haveChromium)('inspector in a browser', () => {
  let nats: TestNatsServer;
  let stack: DevStack;
  let userDataDir: string;
  let context: BrowserContext;
  let page: Page;
  const requested: string[] = [];

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    stack = await startStack(nats.url);
    await waitForPort(stack.opts.ports.metrics, 20_000);
    userDataDir = mkdtempSync(join(tmpdir(), 'eps-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('request', (r) => requested.push(r.url()));
  }, 90_000);

  afterAll(async () => {
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    await stack?.stop();
    await nats?.stop();
  });

  it('inspector - a brokering shows up live, reaches spliced, and its diagram and timeline say so', async () => {
    const base = `http://127.0.0.1:${stack.opts.ports.metrics}`;
    await page.goto(`${base}/inspect`);
    await page.waitForSelector('#connection[data-state="live"]', { timeout: 10_000 });

    // The page is already open: the session must arrive over the event stream.
    const r = await pingUntilAnswered(stack.opts.ports.jsonrpc);
    expect(r.body?.result?.serverInfo?.name).toBe('hd-2');
    // A keeps the brokered channel open, so the session stays spliced.
    const row = page.locator('#sessions tbody tr[data-state="holding.spliced"]').first();
    await row.waitFor({ timeout: 15_000 });
    await expect(row.locator('td').nth(1).textContent()).resolves.toBe('hd-1 → hd-2');
    await row.click();

    await page.waitForSelector('#diagram g.state.current[data-path="holding.spliced"]', { timeout: 10_000 });
    expect(await page.locator('#diagram g.state.current').evaluateAll((gs) => gs.map((g) => g.getAttribute('data-path')))).toEqual(['holding', 'holding.spliced']);
    const fill = await page.locator('#diagram g.state.current[data-path="holding.spliced"] > rect').first().evaluate((e) => (globalThis as unknown as { getComputedStyle(e: unknown): { fill: string } }).getComputedStyle(e).fill);
    expect(fill).toBe('rgb(255, 231, 163)');
    expect(await page.locator('#diagram g.state.current[data-path="holding.confirmed"]').count()).toBe(0);

    const events = await page.locator('#timeline tbody tr').evaluateAll((rows) => rows.map((tr) => tr.getAttribute('data-event')));
    // B may dial before its bus reply reaches the proxy: then B_DIALED ends `notifying` first and
    // there is no notifyB.done (the machine allows both orders).
    expect(events.filter((e) => e !== 'notifyB.done')).toEqual(['xstate.init', 'B_DIALED', 'confirmToA.done', 'A_DIALED']);
    const last = await page.locator('#timeline tbody tr').last().locator('td').nth(2).textContent();
    expect(last).toBe('holding.confirmed → holding.spliced');
    expect(await page.locator('#selected-state').textContent()).toBe('holding.spliced');
    // The endpoint is a loopback address in the demo: the page shows only its port.
    expect(await page.locator('#context').textContent()).toContain('"endpoint": "private:');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'inspector.png'), fullPage: true });

    // Everything the page loaded came from the proxy itself.
    expect(requested.length).toBeGreaterThan(3);
    for (const url of requested) expect(url.startsWith(`${base}/inspect`), url).toBe(true);

    // The page's open event stream must not hold the proxy up when it stops (5 s, else exit 1).
    const proxy = stack.child('public-proxy-1')!;
    await stack.stopRole('public-proxy-1');
    expect(proxy.exitCode).toBe(0);
  }, 60_000);
});
