// End-to-end test of the packaged extension in the real VS Code workbench (code-server),
// driven through Chromium with playwright-core, against a real `ragls serve --stdio` and a
// fake OpenAI-compatible chat endpoint. Run it through run.sh, which sets:
//   VSIX, RAGLS_BIN, CODE_SERVER (entry.js), NODE24, CHROMIUM, PLAYWRIGHT (module dir),
//   E2E_OUT (screenshots and logs)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const net = require('node:net');
const { spawn, execFileSync } = require('node:child_process');
const { chromium } = require(process.env.PLAYWRIGHT);

const out = process.env.E2E_OUT;
fs.mkdirSync(out, { recursive: true });
const fixture = path.resolve(__dirname, '../../../nvim/test/fixture');
const PIECES = [
  'Invoice totals come from',
  ' `compute_invoice_total` [1]:',
  ' it sums the line items,',
  ' subtracts the discount and adds tax.',
];

let checks = 0;
function check(cond, what, detail) {
  if (!cond) {
    throw new Error(`${what}${detail !== undefined ? `\n  ${detail}` : ''}`);
  }
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

function fakeChat() {
  const bodies = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      bodies.push({ url: req.url, body });
      if (!req.url.endsWith('/chat/completions')) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const events = PIECES.map((p) => ({ choices: [{ index: 0, delta: { content: p } }] }));
      events.push({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
      let i = 0;
      // Slow enough for the test to see the document while the answer streams.
      const timer = setInterval(() => {
        if (i < events.length) {
          res.write(`data: ${JSON.stringify(events[i++])}\n\n`);
        } else {
          clearInterval(timer);
          res.end('data: [DONE]\n\n');
        }
      }, 700);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, bodies })));
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what, timeoutMs, fn) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

/** The text of the visible editor whose tab is `title` (Monaco renders visible lines only). */
async function editorText(page, title) {
  return page.evaluate((t) => {
    const groups = [...document.querySelectorAll('.editor-group-container')];
    for (const g of groups) {
      const active = g.querySelector('.tab.active');
      if (active && active.getAttribute('aria-label')?.includes(t)) {
        const lines = [...g.querySelectorAll('.view-lines .view-line')]
          .map((l) => ({ top: parseFloat(l.style.top) || 0, text: l.textContent.replace(/\u00a0/g, ' ') }))
          .sort((a, b) => a.top - b.top);
        return lines.map((l) => l.text).join('\n');
      }
    }
    return null;
  }, title);
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  // Some editors (the settings editor's search box) keep F1: then the palette's own key.
  const shown = await input.waitFor({ state: 'visible', timeout: 5000 }).then(() => true, () => false);
  if (!shown) {
    await page.keyboard.press('Control+Shift+P');
    await input.waitFor({ state: 'visible' });
  }
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor();
  await page.keyboard.press('Enter');
}

async function main() {
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ragls-e2e-')));
  const ws = path.join(tmp, 'workspace');
  fs.cpSync(fixture, ws, { recursive: true });
  const chat = await fakeChat();
  const chatPort = chat.server.address().port;

  const userData = path.join(tmp, 'user-data');
  const extDir = path.join(tmp, 'extensions');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify(
      {
        'ragls.serverPath': process.env.RAGLS_BIN,
        'ragls.settings': {
          provider: { base_url: `http://127.0.0.1:${chatPort}/v1`, max_retries: 0 },
          embedding: { provider: 'builtin' },
          rerank: { enabled: false },
          index: { dir: path.join(tmp, 'index') },
        },
        // Whole lines in the DOM, so the test reads the document's real lines.
        'editor.wordWrap': 'off',
        '[markdown]': { 'editor.wordWrap': 'off' },
        'security.workspace.trust.enabled': false,
        'workbench.startupEditor': 'none',
        'workbench.tips.enabled': false,
        'telemetry.telemetryLevel': 'off',
        'extensions.autoCheckUpdates': false,
        'extensions.autoUpdate': false,
        'update.mode': 'none',
        // No built-in AI chat panel next to ours in the screenshots.
        'chat.disableAIFeatures': true,
        'workbench.secondarySideBar.defaultVisibility': 'hidden',
      },
      null,
      2,
    ),
  );

  const node = process.env.NODE24;
  const cs = process.env.CODE_SERVER;
  const env = {
    ...process.env,
    XDG_CACHE_HOME: path.join(tmp, 'cache'),
    XDG_CONFIG_HOME: path.join(tmp, 'config'),
    XDG_DATA_HOME: path.join(tmp, 'data'),
  };
  delete env.OPENROUTER_API_KEY;
  const installOut = execFileSync(
    node,
    [cs, '--extensions-dir', extDir, '--user-data-dir', userData, '--install-extension', process.env.VSIX],
    { env, encoding: 'utf8' },
  );
  check(/successfully installed/i.test(installOut), 'code-server installed the .vsix', installOut);

  const port = await freePort();
  const server = spawn(
    node,
    [
      cs,
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--extensions-dir', extDir,
      '--user-data-dir', userData,
      ws,
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const serverLog = fs.createWriteStream(path.join(out, 'code-server.log'));
  server.stdout.pipe(serverLog);
  server.stderr.pipe(serverLog);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    // Playwright gives the browser a fresh temporary profile (user data dir) of its own.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let page;
  try {
    await waitFor('code-server to listen', 60000, () =>
      new Promise((resolve) => {
        http.get(`http://127.0.0.1:${port}/healthz`, (res) => resolve(res.statusCode === 200)).on('error', () => resolve(false));
      }),
    );
    page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 120000 });
    check(true, 'the VS Code workbench loaded');

    // Open a file so the server has a document, and wait for the status bar item.
    await page.keyboard.press('Control+P');
    await page.locator('.quick-input-widget input').fill('invoice.py');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'invoice.py' }).first().waitFor();
    await page.keyboard.press('Enter');
    await page.locator('.tab.active', { hasText: 'invoice.py' }).waitFor();
    const ready = page.locator('.statusbar-item [aria-label="ragls ready"], .statusbar-item[aria-label="ragls ready"]');
    await ready.first().waitFor({ timeout: 90000 });
    check(true, 'the status bar says ragls is ready (rag/statusChanged)');
    await page.screenshot({ path: path.join(out, '1-ready.png') });

    // ragls: Search the Codebase -> quick pick -> opens the location.
    await runCommand(page, 'ragls: Search the Codebase');
    let input = page.locator('.quick-input-widget input');
    await page.locator('.quick-input-widget .quick-input-title', { hasText: 'Search' }).waitFor();
    await input.fill('invoice total tax');
    await page.keyboard.press('Enter');
    const firstRow = page.locator('.quick-input-list .monaco-list-row').first();
    await firstRow.filter({ hasText: 'compute_invoice_total' }).waitFor({ timeout: 20000 });
    const rowText = (await firstRow.textContent()).replace(/\u00a0/g, ' ');
    check(rowText.includes('billing/invoice.py:13'), 'the first search result is billing/invoice.py:13', rowText);
    await page.screenshot({ path: path.join(out, '2-search.png') });
    await page.keyboard.press('Enter');
    await waitFor('the cursor at line 13', 10000, async () =>
      (await page.locator('.statusbar-item', { hasText: /Ln 13, Col 1/ }).count()) > 0,
    );
    check(true, 'choosing it puts the cursor on line 13');

    // The chat: "ragls: Ask About the Codebase" (also Ctrl+Alt+A) opens it with its input
    // focused; the answer streams in, with [n] chips and the sources under it.
    // Ctrl+Alt+A is ragls.ask's keybinding.
    await page.keyboard.press('Control+Alt+A');
    const view = page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
    const q = view.locator('#q');
    await q.waitFor({ timeout: 30000 });
    check(true, 'the chat view opened in the side bar');
    await q.fill('How is the invoice total computed?');
    await q.press('Enter');
    const turns = view.locator('.turn');
    const snapshots = [];
    let sawState = false;
    await waitFor('the first answer', 60000, async () => {
      const t = turns.first();
      if ((await t.locator('.state').count()) > 0) {
        sawState = true;
      }
      const text = (await t.locator('.answer').textContent()) ?? '';
      if (text && snapshots[snapshots.length - 1] !== text) {
        snapshots.push(text);
        if (text.includes(PIECES[0]) && !text.includes('adds tax.')) {
          await page.screenshot({ path: path.join(out, '3-chat-streaming.png') });
        }
      }
      return (await t.locator('.footer').count()) > 0;
    });
    await page.screenshot({ path: path.join(out, '4-chat-answer.png') });
    fs.writeFileSync(path.join(out, 'answer-snapshots.json'), JSON.stringify(snapshots, null, 2));
    check(sawState, 'a state line showed while searching and generating');
    const partial = snapshots.find((t) => t.includes(PIECES[0]) && !t.includes('adds tax.'));
    check(partial !== undefined, 'the chat showed partial text while streaming', JSON.stringify(snapshots));
    const first = turns.first();
    const answerText = ((await first.locator('.answer').textContent()) ?? '').replace(/\s+/g, ' ');
    check(answerText.includes('it sums the line items, subtracts the discount and adds tax.'), 'the whole answer is in the chat', answerText);
    const chip = first.locator('.answer a.cite[data-n="1"]');
    check((await chip.count()) === 1, 'the [1] marker is a citation chip');
    const sourcesText = ((await first.locator('.sources').textContent()) ?? '').replace(/\s+/g, ' ');
    check(sourcesText.includes('billing/invoice.py:13') && sourcesText.includes('def compute_invoice_total'), 'the sources are listed under the answer (path:line, symbol)', sourcesText);
    check(chat.bodies.filter((b) => b.url.endsWith('/chat/completions')).length === 1, 'one chat request');

    // One click on the chip: invoice.py opens beside the chat, at line 13.
    await runCommand(page, 'View: Close All Editors');
    await page.waitForFunction(() => document.querySelectorAll('.tab').length === 0, null, { timeout: 10000 });
    await chip.click();
    await page.locator('.tab.active', { hasText: 'invoice.py' }).waitFor({ timeout: 10000 });
    // The focus stays in the chat, so the status bar shows no position: read the editor's
    // active line number instead.
    const activeLine = await waitFor('the cursor on line 13', 10000, async () => {
      const n = await page.locator('.editor-group-container .active-line-number').first().textContent();
      return n && n.trim() === '13' ? n : null;
    });
    check(activeLine.trim() === '13', 'one click on the chip opens billing/invoice.py at line 13');
    const opened = await editorText(page, 'invoice.py');
    check(opened.includes('def compute_invoice_total'), 'the cited line is shown', opened);
    check(await q.isVisible(), 'the chat stays visible beside the opened file');
    await page.screenshot({ path: path.join(out, '5-citation-opened.png') });

    // A follow-up: both turns stay; the previous question and its sources go along.
    await q.fill('Where is the discount applied?');
    await q.press('Enter');
    await waitFor('the second answer', 60000, async () => (await turns.nth(1).locator('.footer').count()) > 0);
    check((await turns.count()) === 2, 'the chat shows both turns');
    check(((await turns.first().locator('.question').textContent()) ?? '').includes('How is the invoice total computed?'), 'the first question is still there');
    const asks = chat.bodies.filter((b) => b.url.endsWith('/chat/completions'));
    const second = asks[asks.length - 1].body;
    check(second.includes('follow-up to the previous question') && second.includes('How is the invoice total computed?'), 'the follow-up carried the previous question', second.slice(0, 400));
    await page.screenshot({ path: path.join(out, '6-follow-up.png') });

    // Stop: cancels the answer being streamed ($/cancelRequest); the chat says so.
    await q.fill('What does format_cents return?');
    await q.press('Enter');
    await waitFor('text of the third answer', 30000, async () =>
      ((await turns.nth(2).locator('.answer').textContent()) ?? '').includes(PIECES[0]),
    );
    await view.locator('#stop').click();
    await waitFor('the stopped answer', 10000, async () => (await turns.nth(2).locator('.error').count()) > 0);
    const stopped = (await turns.nth(2).locator('.error').textContent()) ?? '';
    check(stopped.includes('Stopped.'), 'Stop cancels the answer', stopped);
    check(!(await turns.nth(2).locator('.answer').textContent()).includes('adds tax.'), 'the stopped answer did not finish');
    check(await view.locator('#stop').isHidden(), 'the Stop button goes away');

    // Ctrl+. on an identifier lists the ragls actions.
    await page.locator('.editor-group-container .monaco-editor .view-lines').first().click();
    await page.keyboard.press('Control+G');
    await page.locator('.quick-input-widget input').fill(':13:8');
    await page.keyboard.press('Enter');
    await waitFor('the cursor at 13:8', 10000, async () =>
      (await page.locator('.statusbar-item', { hasText: /Ln 13, Col 8/ }).count()) > 0,
    );
    await page.keyboard.press('Control+.');
    const menu = page.locator('.action-widget').first();
    await menu.locator('.monaco-list-row', { hasText: 'ragls: Explain this code' }).waitFor({ timeout: 20000 });
    const menuText = ((await menu.textContent()) ?? '').replace(/\s+/g, ' ');
    for (const want of ['ragls: Explain this code', 'ragls: Ask about compute_invoice_total', 'ragls: Find related code']) {
      check(menuText.includes(want), `Ctrl+. lists "${want}"`, menuText);
    }
    await page.screenshot({ path: path.join(out, '7-code-actions.png') });
    await page.keyboard.press('Escape');

    // ragls: Show Index Status -> a notification.
    await runCommand(page, 'ragls: Show Index Status');
    const toast = page.locator('.notifications-toasts .notification-list-item', { hasText: 'ragls: ready' });
    await toast.first().waitFor({ timeout: 20000 });
    const toastText = (await toast.first().textContent()).replace(/\u00a0/g, ' ');
    check(/ragls: ready · \d+ files/.test(toastText), 'ragls: Show Index Status shows the state', toastText);
    await page.screenshot({ path: path.join(out, '8-status.png') });

    // A missing binary: after a reload, exactly one message, which says what to do and
    // opens the setting. The conversation is still there (per-workspace history).
    const settingsFile = path.join(userData, 'User', 'settings.json');
    const settings = JSON.parse(fs.readFileSync(settingsFile, 'utf8'));
    settings['ragls.serverPath'] = path.join(tmp, 'no-such-dir', 'ragls');
    fs.writeFileSync(settingsFile, JSON.stringify(settings, null, 2));
    await page.waitForTimeout(1500);
    await page.reload();
    await page.locator('.monaco-workbench').waitFor({ timeout: 120000 });
    const missing = page.locator('.notifications-toasts .notification-list-item', { hasText: 'was not found' });
    await missing.first().waitFor({ timeout: 60000 });
    await page.waitForTimeout(5000);
    const toasts = await page.locator('.notifications-toasts .notification-list-item').allTextContents();
    const about = toasts.filter((t) => /ragls|client|spawn/i.test(t));
    check(about.length === 1, 'a missing binary gives exactly one message', JSON.stringify(toasts));
    check(/cargo build --release/.test(about[0]) && /ragls\.serverPath/.test(about[0]), 'the message says how to build it and which setting to set', about[0]);
    await page.screenshot({ path: path.join(out, '9-missing-binary.png') });
    await missing.first().locator('.monaco-button', { hasText: 'Open Setting' }).click();
    await page.locator('.settings-editor .setting-item-contents', { hasText: 'Server Path' }).first().waitFor({ timeout: 20000 });
    check(true, '"Open Setting" shows the Server Path setting');
    await page.screenshot({ path: path.join(out, '10-settings.png') });
    await page.keyboard.press('Escape');
    await waitFor('the restored conversation', 20000, async () => (await turns.count()) === 3);
    check(true, 'the conversation is kept after a reload');
    console.log(`PASS: ${checks} checks`);
  } catch (e) {
    if (page) {
      await page.screenshot({ path: path.join(out, 'failure.png') }).catch(() => {});
    }
    throw e;
  } finally {
    await browser.close().catch(() => {});
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill();
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    chat.server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.log(`FAIL: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
