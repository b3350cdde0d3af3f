// The extension's ask/search/status logic (out/protocol.js) against a real
// `ragls serve --stdio`, over vscode-jsonrpc (what vscode-languageclient uses underneath),
// with a fake OpenAI-compatible chat endpoint for the streamed answer. No VS Code needed.
//
//   RAGLS_BIN=/path/to/ragls npm test     (default: ../../target/debug/ragls; the test fails if it is absent: run `cargo build` first)
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { spawn } = require('node:child_process');
const { pathToFileURL } = require('node:url');
const rpc = require('vscode-jsonrpc/node');
const { ask } = require('../out/protocol.js');

const bin = path.resolve(__dirname, '..', process.env.RAGLS_BIN || '../../target/debug/ragls');
// The workspace the Neovim test uses too.
const fixture = path.resolve(__dirname, '../../nvim/test/fixture');

const PIECES = ['Invoice totals come from', ' `compute_invoice_total` [1]', ', tax included.'];

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
      const timer = setInterval(() => {
        if (i < events.length) {
          res.write(`data: ${JSON.stringify(events[i++])}\n\n`);
        } else {
          clearInterval(timer);
          res.end('data: [DONE]\n\n');
        }
      }, 100);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, bodies })));
}

test('ask, search and status against a real server', async (t) => {
  assert.ok(fs.existsSync(bin), `no server at ${bin}: run \`cargo build\` first (or set RAGLS_BIN)`);
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ragls-vscode-')));
  const ws = path.join(tmp, 'workspace');
  fs.cpSync(fixture, ws, { recursive: true });
  const chat = await fakeChat();
  const env = { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache'), XDG_CONFIG_HOME: path.join(tmp, 'config') };
  delete env.OPENROUTER_API_KEY;
  const proc = spawn(bin, ['serve', '--stdio'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const conn = rpc.createMessageConnection(
    new rpc.StreamMessageReader(proc.stdout),
    new rpc.StreamMessageWriter(proc.stdin),
  );
  const statuses = [];
  conn.onNotification('rag/statusChanged', (s) => statuses.push(s));
  conn.onRequest('window/workDoneProgress/create', () => null);
  conn.onRequest('client/registerCapability', () => null);
  conn.listen();
  t.after(async () => {
    try {
      await conn.sendRequest('shutdown');
      conn.sendNotification('exit');
    } catch {
      proc.kill();
    }
    chat.server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const port = chat.server.address().port;
  const wsUri = pathToFileURL(ws).href;
  await conn.sendRequest('initialize', {
    processId: process.pid,
    rootUri: wsUri,
    workspaceFolders: [{ uri: wsUri, name: 'workspace' }],
    capabilities: { window: { workDoneProgress: true } },
    // What the extension sends from `ragls.settings`.
    initializationOptions: {
      provider: { base_url: `http://127.0.0.1:${port}/v1`, max_retries: 0 },
      embedding: { provider: 'builtin' },
      rerank: { enabled: false },
      index: { dir: path.join(tmp, 'index') },
    },
  });
  conn.sendNotification('initialized', {});

  let status;
  for (let i = 0; i < 300; i++) {
    status = await conn.sendRequest('rag/status', {});
    if (status.state === 'ready' && status.files >= 3) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status.state, 'ready', stderr);
  assert.ok(statuses.length > 0, 'rag/statusChanged arrived');

  const search = await conn.sendRequest('rag/search', { query: 'invoice total tax', topK: 5 });
  assert.equal(search.results[0].uri, pathToFileURL(path.join(ws, 'billing/invoice.py')).href);
  assert.equal(search.results[0].range.start.line, 12);

  const updates = [];
  const stages = [];
  const askRpc = {
    sendRequest: (method, params, token) =>
      token ? conn.sendRequest(method, params, token) : conn.sendRequest(method, params),
    onProgress: (token, handler) => conn.onProgress(new rpc.ProgressType(), token, handler),
  };
  // The numbered sources arrive before any text, so [1] is a link from the first delta on.
  let sourcesBeforeText;
  const doc = await ask(askRpc, { query: 'How is the invoice total computed?' }, {
    update: (text, d) => {
      updates.push(text);
      if (d.deltas === 1 && sourcesBeforeText === undefined) {
        sourcesBeforeText = d.sources.map((s) => s.uri);
      }
    },
    onStage: (m) => stages.push(m),
    display: (uri) => path.relative(ws, new URL(uri).pathname),
  });
  assert.equal(doc.error, undefined, stderr);
  assert.equal(doc.result.mode, 'generated');
  assert.equal(doc.deltas, PIECES.length, 'each answerDelta arrived');
  assert.ok(sourcesBeforeText && sourcesBeforeText.length > 0, 'sources before the first delta');
  assert.equal(sourcesBeforeText[0], pathToFileURL(path.join(ws, 'billing/invoice.py')).href, '[1] is invoice.py');
  assert.deepEqual(doc.sources.map((s) => s.uri), sourcesBeforeText, 'the same numbering at the end');
  assert.ok(updates.some((u) => u.endsWith('\nInvoice totals come from\n')), 'partial text was shown');
  assert.ok(stages.includes('Generating'), `stages: ${stages}`);
  const final = updates.at(-1);
  assert.ok(final.includes(PIECES.join('')), final);
  assert.ok(final.includes('- [1] `billing/invoice.py:13` `def compute_invoice_total`'), final);
  assert.ok(final.includes(`[1]: ${pathToFileURL(path.join(ws, 'billing/invoice.py')).href}#L13`), final);
  assert.equal(chat.bodies.filter((b) => b.url.endsWith('/chat/completions')).length, 1);

  // Cancellation: $/cancelRequest stops the answer.
  const source = new rpc.CancellationTokenSource();
  const pending = ask(askRpc, { query: 'How is the invoice total computed?' }, { update() {}, token: source.token });
  setTimeout(() => source.cancel(), 150);
  const cancelled = await pending;
  assert.equal(cancelled.cancelled, true, `error: ${cancelled.error}`);
});
