// Unit tests of the extension's pure logic (out/protocol.js, compiled from src/protocol.ts).
// Run: npm test   (compiles, then `node --test test/`)
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { AnswerDocument, ask, statusBar, searchItem, describeStatus } = require('../out/protocol.js');

const citation = {
  n: 1,
  uri: 'file:///ws/billing/invoice.py',
  range: { start: { line: 12, character: 0 }, end: { line: 18, character: 24 } },
  symbol: 'def compute_invoice_total',
  snippet: 'def compute_invoice_total(items, tax_rate, discount_cents=0):',
};
const result = {
  answer: 'Totals come from `compute_invoice_total` [1].',
  citations: [citation],
  sources: [],
  mode: 'generated',
  models: { embedding: 'builtin', chat: 'fake/model' },
  timings: { retrieveMs: 3, generateMs: 40 },
};
const display = (uri) => uri.replace('file:///ws/', '');

test('streamed text shows before the result, the final answer after', () => {
  const doc = new AnswerDocument('How are totals computed?', undefined, display);
  assert.match(doc.render(), /^# How are totals computed\?\n\n_Searching the workspace…_\n$/);
  doc.append('Totals come');
  doc.append(' from');
  assert.equal(doc.render(), '# How are totals computed?\n\nTotals come from\n');
  doc.finish(result);
  const text = doc.render();
  assert.ok(text.includes('Totals come from `compute_invoice_total` [1].'));
  assert.ok(text.includes('- [1] `billing/invoice.py:13` `def compute_invoice_total`'), text);
  assert.ok(text.includes('_generated · fake/model · 43 ms_'), text);
  assert.ok(text.endsWith('[1]: file:///ws/billing/invoice.py#L13\n'), text);
});

test('errors and cancellation end up in the document', () => {
  const doc = new AnswerDocument('q', 'a.py:1-2');
  doc.append('partial');
  doc.fail('the index is not ready yet');
  assert.equal(doc.render(), '# q\n\n_about a.py:1-2_\n\npartial\n\n> ragls: the index is not ready yet\n');
  const stopped = new AnswerDocument('q');
  stopped.fail('cancelled', true);
  assert.ok(stopped.render().includes('> ragls: stopped'));
});

test('ask() streams deltas for its own token and sends both tokens', async () => {
  const handlers = new Map();
  let sent;
  const rpc = {
    onProgress(token, handler) {
      handlers.set(token, handler);
      return { dispose: () => handlers.delete(token) };
    },
    async sendRequest(method, params) {
      sent = { method, params };
      handlers.get(params.workDoneToken)({ kind: 'report', message: 'Generating' });
      handlers.get(params.partialResultToken)({ answerDelta: 'Totals' });
      handlers.get(params.partialResultToken)({ answerDelta: ' come' });
      handlers.get('some/other/token')?.({ answerDelta: 'not ours' });
      return result;
    },
  };
  const updates = [];
  const stages = [];
  const doc = await ask(rpc, { query: 'How?' }, {
    update: (t) => updates.push(t),
    onStage: (m) => stages.push(m),
    display,
  });
  assert.equal(sent.method, 'rag/ask');
  assert.equal(sent.params.query, 'How?');
  assert.match(sent.params.partialResultToken, /^ragls\/ask\/\d+$/);
  assert.equal(sent.params.workDoneToken, sent.params.partialResultToken + '/work');
  assert.deepEqual(stages, ['Generating']);
  assert.equal(doc.deltas, 2);
  assert.ok(updates.some((u) => u.endsWith('\nTotals\n')));
  assert.ok(updates.some((u) => u.endsWith('\nTotals come\n')));
  assert.ok(updates.at(-1).includes('[1]: file:///ws/billing/invoice.py#L13'));
  assert.equal(handlers.size, 0, 'progress handlers are disposed');
});

test('a failed request is reported, not thrown', async () => {
  const rpc = {
    onProgress: () => ({ dispose() {} }),
    sendRequest: async () => {
      throw Object.assign(new Error('boom'), { code: -32603 });
    },
  };
  const doc = await ask(rpc, { query: 'q' }, { update() {} });
  assert.equal(doc.error, 'boom');
  assert.equal(doc.cancelled, false);
});

test('status bar and search rows', () => {
  const s = {
    state: 'indexing',
    files: 3,
    chunks: 9,
    pendingFiles: 2,
    indexBytes: 0,
    embedding: { provider: 'builtin', model: 'builtin-hash-v1', dimensions: 256 },
  };
  assert.equal(statusBar(s).text, '$(sync~spin) ragls 2');
  assert.equal(statusBar({ ...s, state: 'ready' }).text, '$(book) ragls');
  assert.equal(statusBar({ ...s, state: 'degraded', lastError: 'x' }).text, '$(warning) ragls: degraded');
  assert.equal(describeStatus(s), 'ragls: indexing · 3 files · 9 chunks · 2 pending · embedding builtin (builtin-hash-v1)');
  const row = searchItem({ ...citation, score: 1.5, language: 'python' }, display);
  assert.deepEqual(row, {
    label: 'def compute_invoice_total',
    description: 'billing/invoice.py:13',
    detail: '1.50 · def compute_invoice_total(items, tax_rate, discount_cents=0):',
  });
});
