// The chat view's pure logic: the conversation (turns, follow-up questions), and each turn
// rendered as HTML with its `[n]` markers as citation chips and its sources listed under
// the answer. Nothing here imports `vscode`, so the tests run it under plain Node.

import MarkdownIt from 'markdown-it';
import { AskResult, Display, defaultDisplay, Range, Source } from './protocol';

/** One question and its answer, as kept in the workspace's history. */
export interface ChatTurn {
  id: number;
  question: string;
  /** What the question was about (`path:12-20` of a selection), shown under it. */
  about?: string;
  /** The answer text so far (streamed), then the final answer. */
  answer: string;
  /** The numbered sources: `[n]` is `sources[n-1]`, from before the first text to the end. */
  sources: Source[];
  mode?: AskResult['mode'];
  /** "Searching the workspace…", "Generating…", or undefined once done. */
  state?: string;
  error?: string;
  cancelled?: boolean;
  footer?: string;
}

/** A chip's target: the file and the range the citation `[n]` of a turn points at. */
export function citationTarget(turn: ChatTurn, n: number): { uri: string; range: Range } | undefined {
  const s = turn.sources[n - 1];
  return s ? { uri: s.uri, range: s.range } : undefined;
}

/** How many past turns a follow-up question carries, and how many of their sources. */
const FOLLOW_UP_SOURCES = 5;

/**
 * The query sent for a question in a conversation: the question itself, then the previous
 * question and the sources its answer cited (or was given), so that "and where is it
 * called?" is understood. The server puts the whole query in the retrieval query and the
 * prompt.
 */
export function followUpQuery(question: string, previous: ChatTurn | undefined, display: Display = defaultDisplay): string {
  if (!previous || previous.error) {
    return question;
  }
  const cited = new Set<number>();
  for (const m of previous.answer.matchAll(/\[(\d+)\]/g)) {
    cited.add(Number(m[1]));
  }
  let sources = previous.sources.map((s, i) => ({ s, n: i + 1 })).filter(({ n }) => cited.has(n));
  if (sources.length === 0) {
    sources = previous.sources.map((s, i) => ({ s, n: i + 1 }));
  }
  const lines = sources.slice(0, FOLLOW_UP_SOURCES).map(({ s }) => {
    const sym = s.symbol ? ` ${s.symbol}` : '';
    return `- ${display(s.uri)}:${s.range.start.line + 1}${sym}`;
  });
  let text = `${question}\n\n(A follow-up to the previous question: "${previous.question.split('\n')[0]}"`;
  text += lines.length > 0 ? `, answered from:\n${lines.join('\n')})` : ')';
  return text;
}

const md = new MarkdownIt({ html: false, linkify: false, breaks: false });

/**
 * `[n]` markers in text become chips (`<a class="cite" data-n="n">`). Runs on markdown-it's
 * text tokens, so markers inside code spans and code blocks stay as they are.
 */
md.core.ruler.push('ragls_citations', (state: MarkdownIt.StateCore) => {
  for (const block of state.tokens) {
    if (block.type !== 'inline' || !block.children) {
      continue;
    }
    const out = [];
    for (const t of block.children) {
      if (t.type !== 'text' || !/\[\d+\]/.test(t.content)) {
        out.push(t);
        continue;
      }
      let last = 0;
      for (const m of t.content.matchAll(/\[(\d+)\]/g)) {
        const at = m.index ?? 0;
        if (at > last) {
          const text = new state.Token('text', '', 0);
          text.content = t.content.slice(last, at);
          out.push(text);
        }
        const chip = new state.Token('html_inline', '', 0);
        chip.content = `<a class="cite" href="#" data-n="${m[1]}" title="open source ${m[1]}">${m[1]}</a>`;
        out.push(chip);
        last = at + m[0].length;
      }
      if (last < t.content.length) {
        const text = new state.Token('text', '', 0);
        text.content = t.content.slice(last);
        out.push(text);
      }
    }
    block.children = out;
  }
});

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

/** The numbers the answer cites, ascending. */
export function citedNumbers(turn: ChatTurn): number[] {
  const seen = new Set<number>();
  for (const m of turn.answer.matchAll(/\[(\d+)\]/g)) {
    const n = Number(m[1]);
    if (n >= 1 && n <= turn.sources.length) {
      seen.add(n);
    }
  }
  return [...seen].sort((a, b) => a - b);
}

/**
 * A turn as HTML: the question, the answer (markdown, chips for citations), the state
 * while it runs, and the sources under it (`[n] path:line symbol`, each a chip too, with
 * its snippet one click away in a `<details>`). Cited sources first; the rest folded.
 */
export function renderTurn(turn: ChatTurn, display: Display = defaultDisplay): string {
  const parts: string[] = [];
  parts.push(`<div class="turn" data-turn="${turn.id}">`);
  parts.push(`<div class="question">${escapeHtml(turn.question)}</div>`);
  if (turn.about) {
    parts.push(`<div class="about">about ${escapeHtml(turn.about)}</div>`);
  }
  parts.push(`<div class="answer">${md.render(turn.answer)}</div>`);
  if (turn.state) {
    parts.push(`<div class="state"><span class="spinner"></span>${escapeHtml(turn.state)}</div>`);
  }
  if (turn.error) {
    parts.push(`<div class="error">${escapeHtml(turn.cancelled ? 'Stopped.' : `ragls: ${turn.error}`)}</div>`);
  }
  if (turn.sources.length > 0) {
    const cited = new Set(citedNumbers(turn));
    const row = (s: Source, n: number) => {
      const where = `${display(s.uri)}:${s.range.start.line + 1}`;
      const sym = s.symbol ? ` <code>${escapeHtml(s.symbol)}</code>` : '';
      return (
        `<li><details><summary><a class="cite" href="#" data-n="${n}">${n}</a> ` +
        `<a class="where" href="#" data-n="${n}">${escapeHtml(where)}</a>${sym}</summary>` +
        `<pre><code>${escapeHtml(s.snippet ?? '')}</code></pre></details></li>`
      );
    };
    const all = turn.sources.map((s, i) => ({ s, n: i + 1 }));
    const first = cited.size > 0 ? all.filter(({ n }) => cited.has(n)) : all;
    const rest = cited.size > 0 ? all.filter(({ n }) => !cited.has(n)) : [];
    parts.push(`<div class="sources"><div class="label">Sources</div><ul>`);
    parts.push(first.map(({ s, n }) => row(s, n)).join(''));
    parts.push('</ul>');
    if (rest.length > 0 && !turn.state) {
      parts.push(`<details class="more"><summary>${rest.length} more given as context</summary><ul>`);
      parts.push(rest.map(({ s, n }) => row(s, n)).join(''));
      parts.push('</ul></details>');
    }
    parts.push('</div>');
  }
  if (turn.footer) {
    parts.push(`<div class="footer">${escapeHtml(turn.footer)}</div>`);
  }
  parts.push('</div>');
  return parts.join('');
}

/** The footer of a finished answer: mode, model and time. */
export function footerOf(r: AskResult): string {
  const total = (r.timings?.retrieveMs ?? 0) + (r.timings?.rerankMs ?? 0) + (r.timings?.generateMs ?? 0);
  const model = r.models?.chat || r.models?.embedding || '?';
  return `${r.mode} · ${model} · ${total} ms`;
}
