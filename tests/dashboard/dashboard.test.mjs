// The dashboard in a real browser: starts the built llm-proxy binary on 127.0.0.1:0 with the
// built-in mock backend (plus an upstream that always fails, so one breaker opens), sends
// requests over three client protocols, loads /ui in Debian's headless Chromium through
// playwright-core (no browser download) and checks what the page shows: bars in every chart,
// one table row per request, the open breaker, the sessions, a client-chosen string shown as
// text and never as markup, the refresh picking up a new request by itself, the pause while
// hidden. Any console error, page error, failed or refused request fails the run. Saves a
// screenshot (DASHBOARD_SCREENSHOT, default target/dashboard.png).
//
// Run through scripts/test-dashboard.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.LLM_PROXY_BIN || join(process.env.CARGO_TARGET_DIR || join(ROOT, 'target'), 'debug', 'llm-proxy');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = resolve(ROOT, process.env.DASHBOARD_SCREENSHOT || join('target', 'dashboard.png'));
const WAIT_MS = 30_000;
// A client-chosen string the page must show as text.
const HOSTILE_SESSION = 's-<img src=x onerror=window.__pwned=1>';

function log(msg) {
  process.stderr.write(`dashboard test: ${msg}\n`);
}

/** An upstream on 127.0.0.1:0 that answers every request with a 503. */
async function failingUpstream() {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'upstream down', type: 'server_error' } }));
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

/** Starts the binary; resolves with its URL once it prints the listening line. */
async function startProxy(dir, upstreamUrl) {
  const config = join(dir, 'config.yaml');
  writeFileSync(config, [
    'backends:',
    '  default_backend: mock',
    '  mock: {}',
    '  openai:',
    `    api_url: ${upstreamUrl}/v1`,
    '    api_key: sk-dashboard-test-0000000000',
    'failure_handling:',
    '  min_retry_wait: 0',
    '  max_failover_hops: 0',
    'resilience:',
    '  circuit_breaker:',
    '    failure_threshold: 1',
    '    open_cooldown_seconds: 3600',
    '',
  ].join('\n'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.endsWith('_API_KEY')));
  env.LLM_PROXY_DATA_DIR = join(dir, 'data');
  const proc = spawn(BIN, ['--config', config, '--port', '0', '--log-level', 'warn'], {
    env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const lines = createInterface({ input: proc.stdout });
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the proxy did not start: ${stderr}`)), WAIT_MS);
    proc.on('exit', (code) => fail(new Error(`the proxy exited (${code}): ${stderr}`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      const prefix = 'llm-proxy listening on ';
      if (!line.startsWith(prefix)) fail(new Error(`unexpected first line: ${line}`));
      ok(line.slice(prefix.length).trim());
    });
  });
  return { proc, url, stderr: () => stderr };
}

/** One request; returns its HTTP status after reading the whole body. */
async function send(url, path, body, session) {
  const resp = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session-id': session },
    body: JSON.stringify(body),
  });
  await resp.arrayBuffer();
  return resp.status;
}

const chat = (model, stream) => ({
  model, stream, messages: [{ role: 'user', content: 'hello from the dashboard test' }],
});

/** The mixed run: [path, body, session, expected status]. */
const REQUESTS = [
  ['/v1/chat/completions', chat('gpt-4o-mini', false), 's-alpha', 200],
  ['/v1/chat/completions', chat('gpt-4o-mini', true), 's-alpha', 200],
  ['/v1/messages', { ...chat('claude-sonnet-4-5', false), max_tokens: 64 }, 's-beta', 200],
  ['/v1/messages', { ...chat('claude-sonnet-4-5', true), max_tokens: 64 }, 's-beta', 200],
  ['/v1beta/models/gemini-2.5-flash:generateContent',
    { contents: [{ role: 'user', parts: [{ text: 'hello from the dashboard test' }] }] }, 's-gamma', 200],
  ['/v1/chat/completions', chat('mock-model', false), HOSTILE_SESSION, 200],
  ['/v1/chat/completions', chat('openai:gpt-4o', false), 's-gamma', 502],
];

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'llm-proxy-dashboard-'));
  const upstream = await failingUpstream();
  const proxy = await startProxy(dir, upstream.url);
  let browser;
  try {
    log(`proxy at ${proxy.url}`);
    for (const [path, body, session, expected] of REQUESTS) {
      const status = await send(proxy.url, path, body, session);
      assert.equal(status, expected, `${path} ${JSON.stringify(body.model)}`);
    }

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
    });
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, colorScheme: 'light' });
    const page = await context.newPage();
    const problems = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
      if (!r.url().startsWith(proxy.url)) problems.push(`request off the proxy's origin: ${r.url()}`);
    });

    const resp = await page.goto(`${proxy.url}/ui`);
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-security-policy'], /default-src 'none'/);

    const n = REQUESTS.length;
    const rows = () => page.locator('#recent tbody tr:not(.placeholder)').count();
    await page.waitForFunction((count) =>
      document.querySelectorAll('#recent tbody tr:not(.placeholder)').length === count
      && document.querySelectorAll('#chart-requests rect.bar').length > 0, n, { timeout: WAIT_MS });

    // Charts: bars in all three, the legend naming the backends.
    for (const chart of ['requests', 'tokens', 'cost']) {
      const bars = await page.locator(`#chart-${chart} svg rect.bar`).count();
      assert.ok(bars > 0, `bars in the ${chart} chart`);
    }
    const legend = await page.locator('#legend .item').allTextContents();
    assert.ok(legend.some((t) => t.startsWith('mock')), `legend: ${legend}`);
    assert.equal(await page.locator('#card-requests').textContent(), String(n));
    assert.equal(await page.locator('#card-errors').textContent(), '1');
    assert.notEqual(await page.locator('#card-cost').textContent(), '$0', 'priced models cost something');

    // Recent requests: one row per request, the failure marked.
    assert.equal(await rows(), n);
    const statuses = await page.locator('#recent tbody tr td:nth-child(7)').allTextContents();
    assert.deepEqual(statuses.filter((s) => s === '200').length, n - 1, `statuses: ${statuses}`);
    assert.ok(statuses.some((s) => Number(s) >= 500), `statuses: ${statuses}`);
    assert.equal(await page.locator('#recent tbody tr.failed').count(), 1);

    // Backends: the failing upstream's breaker is open, the mock's closed.
    const breaker = (instance) => page.locator(`#backends tr[data-instance="${instance}"] .pill`).textContent();
    assert.equal(await breaker('openai'), 'open');
    assert.equal(await breaker('mock'), 'closed');

    // Sessions in use, the hostile one shown as text, never as an element.
    const sessions = await page.locator('#sessions tbody td:first-child').allTextContents();
    for (const s of ['s-alpha', 's-beta', 's-gamma']) assert.ok(sessions.includes(s), `sessions: ${sessions}`);
    assert.ok(sessions.some((s) => s.startsWith('s-<img')), `sessions: ${sessions}`);
    assert.equal(await page.locator('main img').count(), 0, 'no element from client text');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);

    // Grouped by model: the legend follows.
    await page.selectOption('#by', 'model');
    await page.waitForFunction(() => [...document.querySelectorAll('#legend .item')]
      .some((i) => i.dataset.group === 'gpt-4o-mini'), null, { timeout: WAIT_MS });

    // It refreshes by itself: a new request shows up without a reload.
    // (Another prompt: an identical request just answered would be refused as a duplicate.)
    const later = { ...chat('gpt-4o-mini', false), messages: [{ role: 'user', content: 'one more' }] };
    assert.equal(await send(proxy.url, '/v1/chat/completions', later, 's-alpha'), 200);
    await page.waitForFunction((count) =>
      document.querySelectorAll('#recent tbody tr:not(.placeholder)').length === count, n + 1, { timeout: WAIT_MS });

    // Hidden, it pauses; visible again, it refreshes at once.
    await page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    assert.match(await page.locator('#refresh-state').textContent(), /paused/);
    const before = Number(await page.evaluate(() => document.body.dataset.refreshes));
    await page.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await page.waitForFunction((b) => Number(document.body.dataset.refreshes) > b, before, { timeout: WAIT_MS });

    await page.selectOption('#by', 'backend');
    await page.waitForFunction(() => [...document.querySelectorAll('#legend .item')]
      .some((i) => i.dataset.group === 'mock'), null, { timeout: WAIT_MS });
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    log(`screenshot saved to ${SCREENSHOT}`);

    assert.deepEqual(problems, [], 'no console errors and no failed requests');
    log(`ok: ${n + 1} requests shown, charts drawn, no console errors`);
  } finally {
    if (browser) await browser.close();
    proxy.proc.kill('SIGTERM');
    upstream.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`dashboard test FAILED: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
