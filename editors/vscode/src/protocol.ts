// The shapes of ragls's custom requests (shared/PROTOCOL.md), and the pure logic of the
// extension: streaming an answer into a markdown document and rendering results. Nothing
// here imports `vscode`, so the tests run it under plain Node against a real server.

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface Citation {
  n: number;
  uri: string;
  range: Range;
  symbol?: string;
  snippet: string;
}

export interface Source {
  uri: string;
  range: Range;
  symbol?: string;
  kind?: string;
  language: string;
  score: number;
  snippet: string;
}

export interface AskParams {
  query: string;
  textDocument?: { uri: string };
  range?: Range;
  topK?: number;
  rerank?: boolean;
}

export interface AskResult {
  answer: string;
  citations: Citation[];
  sources: Source[];
  mode: 'generated' | 'extractive';
  models: { embedding: string; rerank?: string | null; chat?: string | null };
  timings: { retrieveMs: number; rerankMs?: number | null; generateMs?: number | null };
  usage?: { promptTokens: number; completionTokens: number; cost?: number | null };
}

export interface SearchResult {
  results: Source[];
}

export interface Status {
  state: 'starting' | 'indexing' | 'ready' | 'degraded' | 'error';
  files: number;
  chunks: number;
  pendingFiles: number;
  indexBytes: number;
  embedding: { provider: string; model: string; dimensions: number };
  lastError?: string;
}

export const EXPLAIN_QUERY = 'Explain this code: what it does and how it fits in.';

/** The JSON-RPC calls an answer needs: a LanguageClient or a plain vscode-jsonrpc connection. */
export interface AskRpc {
  sendRequest(method: string, params: unknown, token?: CancellationTokenLike): Promise<unknown>;
  /** Subscribes to `$/progress` notifications for `token`. */
  onProgress(token: string, handler: (value: unknown) => void): { dispose(): void };
}

export interface CancellationTokenLike {
  isCancellationRequested: boolean;
  onCancellationRequested: (listener: () => void) => { dispose(): void };
}

/** Turns a file URI into what the user reads (a workspace-relative path). */
export type Display = (uri: string) => string;

export const defaultDisplay: Display = (uri) => {
  if (!uri.startsWith('file://')) {
    return uri;
  }
  try {
    return decodeURIComponent(uri.slice('file://'.length));
  } catch {
    return uri;
  }
};

/** A link to a line of a file, as the markdown preview and PROTOCOL.md's hovers use it. */
export function lineLink(uri: string, range: Range): string {
  return `${uri}#L${range.start.line + 1}`;
}

/** A markdown code span that survives backticks in the text. */
function code(text: string): string {
  const fence = text.includes('`') ? '`` ' : '`';
  return fence + text + fence.split('').reverse().join('');
}

/**
 * The document an answer is written into: the question, the text streamed so far, and
 * once the result is in, the whole answer with its citations as `[n]: file:///...#Lline`
 * reference links (so each `[n]` marker is a link in the markdown preview).
 */
export class AnswerDocument {
  streamed = '';
  deltas = 0;
  /** The numbered sources, sent before the answer text: `[n]` is `sources[n-1]`. */
  sources: Source[] = [];
  result?: AskResult;
  error?: string;
  cancelled = false;

  constructor(
    readonly question: string,
    readonly about?: string,
    readonly display: Display = defaultDisplay,
  ) {}

  append(delta: string): void {
    this.streamed += delta;
    this.deltas += 1;
  }

  finish(result: AskResult): void {
    this.result = result;
  }

  fail(message: string, cancelled = false): void {
    this.error = message;
    this.cancelled = cancelled;
  }

  get done(): boolean {
    return this.result !== undefined || this.error !== undefined;
  }

  render(): string {
    const title = this.question.split('\n')[0];
    const lines: string[] = [`# ${title}`, ''];
    if (this.about) {
      lines.push(`_about ${this.about}_`, '');
    }
    const r = this.result;
    if (!r) {
      if (this.streamed) {
        lines.push(this.streamed);
      } else if (!this.error) {
        lines.push('_Searching the workspace…_');
      }
      if (this.error) {
        lines.push('', `> ragls: ${this.cancelled ? 'stopped' : this.error}`);
      }
      return lines.join('\n') + '\n';
    }
    lines.push(r.answer.trimEnd());
    if (r.citations.length > 0) {
      lines.push('', '---', '', '**Sources**', '');
      for (const c of r.citations) {
        const where = `${this.display(c.uri)}:${c.range.start.line + 1}`;
        const sym = c.symbol ? ` ${code(c.symbol)}` : '';
        lines.push(`- [${c.n}] ${code(where)}${sym}`);
      }
    }
    const total = (r.timings?.retrieveMs ?? 0) + (r.timings?.rerankMs ?? 0) + (r.timings?.generateMs ?? 0);
    const model = r.models?.chat || r.models?.embedding || '?';
    lines.push('', `_${r.mode} · ${model} · ${total} ms_`);
    if (r.citations.length > 0) {
      lines.push('');
      for (const c of r.citations) {
        lines.push(`[${c.n}]: ${lineLink(c.uri, c.range)}`);
      }
    }
    return lines.join('\n') + '\n';
  }
}

let askCounter = 0;

export interface AskOptions {
  /** Called with the whole document text after each change (and the document). */
  update: (markdown: string, doc: AnswerDocument) => void;
  token?: CancellationTokenLike;
  /** Stage messages ("Retrieving", "Generating") from the request's work-done progress. */
  onStage?: (message: string) => void;
  about?: string;
  display?: Display;
}

/**
 * Sends `rag/ask` with a partialResultToken, appending each streamed `answerDelta` to the
 * document, then writes the final answer and its citations. Never throws: failures end up
 * in the document (and in `doc.error`).
 */
export async function ask(rpc: AskRpc, params: AskParams, opts: AskOptions): Promise<AnswerDocument> {
  askCounter += 1;
  const partial = `ragls/ask/${askCounter}`;
  const work = `${partial}/work`;
  const doc = new AnswerDocument(params.query, opts.about, opts.display);
  const subscriptions = [
    rpc.onProgress(partial, (value) => {
      const v = value as { answerDelta?: unknown; sources?: unknown } | null;
      if (Array.isArray(v?.sources) && !doc.done) {
        doc.sources = v.sources as Source[];
        opts.update(doc.render(), doc);
      }
      if (typeof v?.answerDelta === 'string' && !doc.done) {
        doc.append(v.answerDelta);
        opts.update(doc.render(), doc);
      }
    }),
    rpc.onProgress(work, (value) => {
      const message = (value as { message?: unknown } | null)?.message;
      if (typeof message === 'string' && opts.onStage) {
        opts.onStage(message);
      }
    }),
  ];
  opts.update(doc.render(), doc);
  try {
    const full = { ...params, partialResultToken: partial, workDoneToken: work };
    // An `undefined` token must not be passed at all: JSON-RPC libraries would send the
    // params as an array then.
    const result = (await (opts.token
      ? rpc.sendRequest('rag/ask', full, opts.token)
      : rpc.sendRequest('rag/ask', full))) as AskResult;
    doc.finish(result);
    if (Array.isArray(result?.sources)) {
      doc.sources = result.sources;
    }
  } catch (e) {
    const err = e as { code?: number; message?: string };
    const cancelled = err?.code === -32800 || opts.token?.isCancellationRequested === true;
    doc.fail(err?.message ?? String(e), cancelled);
  } finally {
    subscriptions.forEach((s) => s.dispose());
  }
  opts.update(doc.render(), doc);
  return doc;
}

/** One line for the status bar, and a tooltip. */
export function statusBar(status: Status | undefined): { text: string; tooltip: string } {
  if (!status) {
    return { text: '$(loading~spin) ragls', tooltip: 'ragls: starting' };
  }
  const icon: Record<string, string> = {
    starting: '$(loading~spin)',
    indexing: '$(sync~spin)',
    ready: '$(book)',
    degraded: '$(warning)',
    error: '$(error)',
  };
  let text = `${icon[status.state] ?? '$(question)'} ragls`;
  if (status.state === 'indexing' && status.pendingFiles > 0) {
    text += ` ${status.pendingFiles}`;
  } else if (status.state !== 'ready') {
    text += `: ${status.state}`;
  }
  return { text, tooltip: describeStatus(status) };
}

export function describeStatus(s: Status): string {
  const emb = s.embedding ?? { provider: '?', model: '' };
  let text =
    `ragls: ${s.state} · ${s.files ?? 0} files · ${s.chunks ?? 0} chunks · ` +
    `${s.pendingFiles ?? 0} pending · embedding ${emb.provider}${emb.model ? ` (${emb.model})` : ''}`;
  if (s.lastError) {
    text += ` · ${s.lastError}`;
  }
  return text;
}

/** A search result as a quick-pick row. */
export function searchItem(r: Source, display: Display = defaultDisplay): { label: string; description: string; detail: string } {
  const firstLine = (r.snippet ?? '').split('\n').find((l) => l.trim() !== '') ?? '';
  return {
    label: r.symbol && r.symbol !== '' ? r.symbol : firstLine.trim(),
    description: `${display(r.uri)}:${r.range.start.line + 1}`,
    detail: `${(r.score ?? 0).toFixed(2)} · ${firstLine.trim()}`,
  };
}
