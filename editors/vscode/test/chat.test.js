// The chat view's pure logic (out/chat.js): citation chips, sources under the answer,
// follow-up queries; and the settings schema in package.json against the server's config.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { renderTurn, followUpQuery, citationTarget, citedNumbers } = require('../out/chat.js');

const range = (line) => ({ start: { line, character: 0 }, end: { line: line + 3, character: 1 } });
const sources = [
  { uri: 'file:///w/billing/invoice.py', range: range(12), symbol: 'def invoice_total', language: 'python', score: 1, snippet: 'def invoice_total(items):\n    return sum(items)' },
  { uri: 'file:///w/auth/password.rs', range: range(9), symbol: 'impl CredentialStore', language: 'rust', score: 0.5, snippet: 'impl CredentialStore {' },
  { uri: 'file:///w/web/router.js', range: range(2), language: 'javascript', score: 0.2, snippet: 'route("/")' },
];
const display = (uri) => uri.replace('file:///w/', '');

test('citations become chips outside code, and the cited sources are listed under the answer', () => {
  const turn = {
    id: 4,
    question: 'How is the total computed?',
    answer: 'It sums the items [1], see `a[2]` and:\n\n```\nx[2]\n```\n\nAlso [2].',
    sources,
  };
  const html = renderTurn(turn, display);
  assert.match(html, /<a class="cite" href="#" data-n="1"[^>]*>1<\/a>/);
  assert.ok(html.includes('<code>a[2]</code>'), 'no chip inside a code span');
  assert.ok(html.includes('x[2]\n</code></pre>'), 'no chip inside a code block');
  assert.match(html, /data-n="2" title="open source 2">2<\/a>\./);
  assert.deepStrictEqual(citedNumbers(turn), [1, 2]);
  // Sources: the cited ones with path:line and symbol, the snippet one click away.
  assert.ok(html.includes('billing/invoice.py:13</a> <code>def invoice_total</code>'), html);
  assert.ok(html.includes('auth/password.rs:10'), html);
  assert.ok(html.includes('<pre><code>def invoice_total(items):'), html);
  assert.ok(html.includes('1 more given as context'), html);
  assert.deepStrictEqual(citationTarget(turn, 2), { uri: sources[1].uri, range: sources[1].range });
  assert.strictEqual(citationTarget(turn, 9), undefined);
});

test('the question and the state line are escaped text', () => {
  const html = renderTurn({ id: 1, question: '<b>why</b>?', answer: '', sources: [], state: 'Searching the workspace…' });
  assert.ok(html.includes('&lt;b&gt;why&lt;/b&gt;?'));
  assert.ok(html.includes('Searching the workspace…'));
});

test('a follow-up carries the previous question and the sources its answer cited', () => {
  const previous = { id: 1, question: 'How is the total computed?', answer: 'By summing [1].', sources };
  const q = followUpQuery('And where is it called?', previous, display);
  assert.ok(q.startsWith('And where is it called?\n\n'), q);
  assert.ok(q.includes('"How is the total computed?"'), q);
  assert.ok(q.includes('- billing/invoice.py:13 def invoice_total'), q);
  assert.ok(!q.includes('router.js'), 'only the cited sources: ' + q);
  assert.strictEqual(followUpQuery('Q', undefined), 'Q');
  assert.strictEqual(followUpQuery('Q', { ...previous, error: 'boom' }), 'Q');
});

test('ragls.settings has a schema entry for every key of the server config sections', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
  const props = pkg.contributes.configuration.properties;
  assert.strictEqual(props['ragls.serverPath'].scope, 'window', 'a user value must apply in remote windows');
  const schema = props['ragls.settings'].properties;
  const config = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'src', 'config.rs'), 'utf8');
  const sections = { provider: 'ProviderConfig', embedding: 'EmbeddingConfig', rerank: 'RerankConfig', chat: 'ChatConfig', index: 'IndexConfig' };
  for (const [section, struct] of Object.entries(sections)) {
    const body = config.split(`pub struct ${struct} {`)[1].split('\n}')[0];
    const keys = [...body.matchAll(/^\s*pub (\w+):/gm)].map((m) => m[1]);
    assert.ok(keys.length > 1, struct);
    for (const key of keys) {
      const entry = schema[section]?.properties?.[key];
      assert.ok(entry, `ragls.settings.${section}.${key} has no schema entry`);
      assert.ok(entry.markdownDescription || entry.description, `ragls.settings.${section}.${key} has no description`);
    }
  }
});
