// The ragls VS Code extension: starts `ragls serve --stdio` through vscode-languageclient,
// holds the conversation in a chat view in the side bar (streamed answers, citation chips
// that open the cited code beside the chat, follow-up questions, per-workspace history),
// and shows the index state (fed by `rag/statusChanged`) in the status bar. The protocol is
// shared/PROTOCOL.md.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  DynamicFeature,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  Location as LspLocation,
  ProgressType,
  ServerOptions,
  State,
  StaticFeature,
} from 'vscode-languageclient/node';
import { ChatTurn, citationTarget, escapeHtml, followUpQuery, footerOf, renderTurn } from './chat';
import {
  ask,
  AskParams,
  AskRpc,
  CancellationTokenLike,
  describeStatus,
  Display,
  EXPLAIN_QUERY,
  Range,
  searchItem,
  SearchResult,
  Status,
  statusBar,
} from './protocol';

/**
 * The server announces the commands its code actions run (ragls.ask, ragls.explain,
 * ragls.related, ragls.reindex). They are this extension's own commands, which stream
 * answers into the answer document, so the client must not register proxies for them
 * (that would also clash with the contributed commands of the same names).
 */
class RaglsClient extends LanguageClient {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  public registerFeature(feature: StaticFeature | DynamicFeature<any>): void {
    const method = (feature as { registrationType?: { method?: string } }).registrationType?.method;
    if (method === ExecuteCommandRequest.method) {
      return;
    }
    super.registerFeature(feature);
  }
}

/** How many turns the workspace's history keeps. */
const HISTORY_TURNS = 50;
const HISTORY_KEY = 'ragls.chat.turns';

/**
 * The chat view (a webview in the ragls side bar): the conversation of this workspace,
 * kept in its workspaceState. Each question after the first carries the previous question
 * and its sources; answers stream in; `[n]` chips and the sources under each answer open
 * the cited code beside the chat; Stop cancels the request (`$/cancelRequest`).
 */
class ChatView implements vscode.WebviewViewProvider {
  static readonly id = 'ragls.chat';
  private view?: vscode.WebviewView;
  private turns: ChatTurn[];
  private nextId: number;
  private running?: vscode.CancellationTokenSource;
  /** The editor selection to send with the next question typed in the chat. */
  pendingContext: { textDocument?: { uri: string }; range?: Range } = {};

  constructor(private readonly context: vscode.ExtensionContext) {
    this.turns = (context.workspaceState.get<ChatTurn[]>(HISTORY_KEY) ?? []).map((t) =>
      t.state ? { ...t, state: undefined, error: 'interrupted', cancelled: true } : t,
    );
    this.nextId = this.turns.reduce((m, t) => Math.max(m, t.id), 0) + 1;
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    view.webview.options = { enableScripts: true };
    view.webview.html = chatPage(view.webview.cspSource);
    view.webview.onDidReceiveMessage((msg: { type: string; text?: string; turn?: number; n?: number }) => {
      if (msg.type === 'ready') {
        this.postAll();
      } else if (msg.type === 'ask' && msg.text && msg.text.trim() !== '') {
        const ctx = this.pendingContext;
        this.pendingContext = {};
        void this.ask({ query: msg.text.trim(), textDocument: ctx.textDocument, range: ctx.range }, true);
      } else if (msg.type === 'stop') {
        this.stop();
      } else if (msg.type === 'open' && msg.turn !== undefined && msg.n !== undefined) {
        void this.open(msg.turn, msg.n);
      } else if (msg.type === 'clear') {
        this.clear();
      }
    });
  }

  /** Shows the chat (`focusInput`: with the cursor in its input box). */
  async reveal(focusInput: boolean): Promise<void> {
    await vscode.commands.executeCommand(`${ChatView.id}.focus`);
    if (focusInput) {
      void this.view?.webview.postMessage({ type: 'focus' });
    }
  }

  /** Asks in the chat; `followUp`: the previous turn's question and sources go along. */
  async ask(params: AskParams, followUp: boolean): Promise<void> {
    await this.reveal(false);
    this.running?.cancel();
    const previous = followUp ? this.turns[this.turns.length - 1] : undefined;
    const turn: ChatTurn = {
      id: this.nextId++,
      question: params.query,
      answer: '',
      sources: [],
      state: 'Searching the workspace…',
    };
    if (params.textDocument && params.range) {
      turn.about = `${display(params.textDocument.uri)}:${params.range.start.line + 1}-${params.range.end.line + 1}`;
    }
    this.turns.push(turn);
    this.post(turn);
    const c = await ensureClient();
    if (!c) {
      turn.state = undefined;
      turn.error = `the server is not running: set ragls.serverPath to the ragls binary (now "${serverCommand()}")`;
      this.post(turn);
      this.save();
      return;
    }
    const source = new vscode.CancellationTokenSource();
    this.running = source;
    this.post(turn);
    const query = followUpQuery(params.query, previous, display);
    const doc = await ask(rpcOf(c), { ...params, query }, {
      update: (_text, d) => {
        turn.sources = d.sources;
        turn.answer = d.result?.answer ?? d.streamed;
        if (d.streamed && !d.done) {
          turn.state = 'Generating…';
        }
        this.post(turn);
      },
      token: source.token as CancellationTokenLike,
      onStage: (stage) => {
        if (!turn.answer) {
          turn.state = stage === 'Generating' ? 'Generating…' : stage === 'Reranking' ? 'Ranking the sources…' : turn.state;
          this.post(turn);
        }
      },
      display,
    });
    if (this.running === source) {
      this.running = undefined;
    }
    source.dispose();
    turn.state = undefined;
    if (doc.result) {
      turn.answer = doc.result.answer;
      turn.sources = doc.result.sources ?? turn.sources;
      turn.mode = doc.result.mode;
      turn.footer = footerOf(doc.result);
    } else {
      turn.error = doc.error ?? 'no answer';
      turn.cancelled = doc.cancelled;
    }
    this.post(turn);
    this.save();
  }

  stop(): void {
    this.running?.cancel();
  }

  clear(): void {
    this.stop();
    this.turns = [];
    this.save();
    void this.view?.webview.postMessage({ type: 'clear' });
  }

  /** Opens citation `n` of a turn at its range, beside the chat, keeping the chat's focus. */
  private async open(turnId: number, n: number): Promise<void> {
    const turn = this.turns.find((t) => t.id === turnId);
    const target = turn && citationTarget(turn, n);
    if (!target) {
      return;
    }
    const r = target.range;
    const start = new vscode.Position(r.start.line, 0);
    const end = new vscode.Position(r.end.line, r.end.character);
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.parse(target.uri));
    // Beside the editor in use (the chat is in the side bar, so never over it); in the
    // editor area itself when no editor is open.
    const editor = await vscode.window.showTextDocument(doc, {
      viewColumn: vscode.window.visibleTextEditors.length > 0 ? vscode.ViewColumn.Beside : vscode.ViewColumn.Active,
      preserveFocus: true,
      preview: true,
    });
    // The cited lines selected, the cursor on the first one, shown near the top.
    editor.selection = new vscode.Selection(end, start);
    editor.revealRange(new vscode.Range(start, end), vscode.TextEditorRevealType.AtTop);
  }

  private save(): void {
    void this.context.workspaceState.update(HISTORY_KEY, this.turns.slice(-HISTORY_TURNS));
  }

  private post(turn: ChatTurn): void {
    void this.view?.webview.postMessage({
      type: 'turn',
      id: turn.id,
      html: renderTurn(turn, display),
      busy: this.running !== undefined || turn.state !== undefined,
    });
  }

  private postAll(): void {
    void this.view?.webview.postMessage({
      type: 'all',
      turns: this.turns.map((t) => ({ id: t.id, html: renderTurn(t, display) })),
      busy: this.running !== undefined,
    });
  }
}

/** The chat page: the turns, and an input with Ask/Stop. Scripts only from this page. */
function chatPage(cspSource: string): string {
  const nonce = Math.random().toString(36).slice(2) + Date.now().toString(36);
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${escapeHtml(cspSource)} 'unsafe-inline'; script-src 'nonce-${nonce}';">
<style>
body { padding: 0 8px; font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); }
#turns { padding-bottom: 96px; }
.turn { border-bottom: 1px solid var(--vscode-panel-border); padding: 8px 0; }
.question { font-weight: 600; white-space: pre-wrap; margin-bottom: 2px; }
.about, .footer, .state, .label { color: var(--vscode-descriptionForeground); font-size: 0.9em; }
.answer pre { background: var(--vscode-textCodeBlock-background); padding: 6px; overflow-x: auto; }
.answer code, .sources code { font-family: var(--vscode-editor-font-family); }
a.cite { display: inline-block; min-width: 1.3em; padding: 0 4px; margin: 0 1px; border-radius: 8px; text-align: center;
  font-size: 0.85em; text-decoration: none; background: var(--vscode-badge-background); color: var(--vscode-badge-foreground); }
a.cite:hover { background: var(--vscode-button-hoverBackground); color: var(--vscode-button-foreground); }
.sources ul { list-style: none; padding-left: 0; margin: 2px 0; }
.sources summary { cursor: pointer; }
.sources pre { margin: 2px 0 6px 0; background: var(--vscode-textCodeBlock-background); padding: 4px; overflow-x: auto; }
a.where { color: var(--vscode-textLink-foreground); text-decoration: none; }
.error { color: var(--vscode-errorForeground); }
.spinner { display: inline-block; width: 8px; height: 8px; margin-right: 6px; border-radius: 50%;
  background: var(--vscode-progressBar-background); animation: pulse 1s infinite alternate; }
@keyframes pulse { from { opacity: 0.2; } to { opacity: 1; } }
#input { position: fixed; bottom: 0; left: 0; right: 0; padding: 6px 8px; background: var(--vscode-sideBar-background); }
#q { width: 100%; box-sizing: border-box; resize: vertical; min-height: 42px; font-family: inherit; font-size: inherit;
  color: var(--vscode-input-foreground); background: var(--vscode-input-background); border: 1px solid var(--vscode-input-border, transparent); }
#buttons { display: flex; gap: 6px; margin-top: 4px; }
button { color: var(--vscode-button-foreground); background: var(--vscode-button-background); border: none; padding: 3px 10px; cursor: pointer; }
button.secondary { color: var(--vscode-button-secondaryForeground); background: var(--vscode-button-secondaryBackground); }
#empty { color: var(--vscode-descriptionForeground); margin-top: 12px; }
</style></head>
<body>
<div id="turns"></div>
<div id="empty">Ask about this workspace. Answers cite the code: click a number to open it. Follow-up questions keep the previous question and its sources in view.</div>
<div id="input">
  <textarea id="q" rows="2" placeholder="Ask about the codebase (Enter to send, Shift+Enter for a new line)" aria-label="Ask ragls"></textarea>
  <div id="buttons"><button id="ask">Ask</button><button id="stop" class="secondary" hidden>Stop</button></div>
</div>
<script nonce="${nonce}">
const vscode = acquireVsCodeApi();
const turns = document.getElementById('turns');
const q = document.getElementById('q');
const stopButton = document.getElementById('stop');
const empty = document.getElementById('empty');
function busy(b) { stopButton.hidden = !b; }
function scrollTo(el) { el.scrollIntoView({ block: 'start' }); }
function send() {
  const text = q.value.trim();
  if (!text) return;
  q.value = '';
  vscode.postMessage({ type: 'ask', text });
}
document.getElementById('ask').addEventListener('click', send);
stopButton.addEventListener('click', () => vscode.postMessage({ type: 'stop' }));
q.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); }
});
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-n]');
  if (!a) return;
  e.preventDefault();
  const turn = a.closest('.turn');
  vscode.postMessage({ type: 'open', turn: Number(turn.dataset.turn), n: Number(a.dataset.n) });
});
window.addEventListener('message', (event) => {
  const m = event.data;
  if (m.type === 'all') {
    turns.innerHTML = m.turns.map((t) => t.html).join('');
    empty.hidden = m.turns.length > 0;
    busy(m.busy);
    if (turns.lastElementChild) scrollTo(turns.lastElementChild);
  } else if (m.type === 'turn') {
    const tpl = document.createElement('template');
    tpl.innerHTML = m.html;
    const el = tpl.content.firstElementChild;
    const old = turns.querySelector('.turn[data-turn="' + m.id + '"]');
    if (old) { old.replaceWith(el); } else { turns.appendChild(el); scrollTo(el); }
    empty.hidden = true;
    busy(m.busy);
  } else if (m.type === 'clear') {
    turns.innerHTML = '';
    empty.hidden = false;
    busy(false);
  } else if (m.type === 'focus') {
    q.focus();
  }
});
vscode.postMessage({ type: 'ready' });
</script>
</body></html>`;
}

let client: RaglsClient | undefined;
let starting: Promise<RaglsClient | undefined> | undefined;
let output: vscode.OutputChannel;
let statusItem: vscode.StatusBarItem;
let chat: ChatView;
/** The serverPath value whose "not found" message was shown (shown once per value). */
let missingShownFor: string | undefined;

const display: Display = (uri) => {
  try {
    return vscode.workspace.asRelativePath(vscode.Uri.parse(uri), false);
  } catch {
    return uri;
  }
};

function settings(): unknown {
  const value = vscode.workspace.getConfiguration('ragls').get('settings') ?? {};
  // A plain object (not VS Code's configuration proxy), without `undefined`s.
  return JSON.parse(JSON.stringify(value));
}

/** `ragls.serverPath` with `${workspaceFolder}`, `${userHome}` and a leading `~` expanded. */
function serverCommand(): string {
  let command = vscode.workspace.getConfiguration('ragls').get<string>('serverPath') || 'ragls';
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (folder) {
    command = command.replace(/\$\{workspaceFolder\}/g, folder.uri.fsPath);
  }
  command = command.replace(/\$\{userHome\}/g, os.homedir());
  if (command === '~' || command.startsWith('~/')) {
    command = os.homedir() + command.slice(1);
  }
  return command;
}

/** Whether `command` names an existing file (a path), or a program on PATH (a name). */
function serverExists(command: string): boolean {
  if (command.includes('/') || command.includes('\\')) {
    return fs.existsSync(command);
  }
  const exts = process.platform === 'win32' ? (process.env.PATHEXT ?? '.EXE').split(';') : [''];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const ext of exts) {
      if (dir && fs.existsSync(path.join(dir, command + ext))) {
        return true;
      }
    }
  }
  return false;
}

/** The one message for a missing binary: what to do, and a button to the setting. */
async function reportMissingServer(command: string): Promise<void> {
  if (missingShownFor === command) {
    return;
  }
  missingShownFor = command;
  const choice = await vscode.window.showErrorMessage(
    `ragls: the server program "${command}" was not found. Build it with "cargo build --release" ` +
      `in a ragls checkout (or install it with "cargo install --path ."), then set ragls.serverPath ` +
      `to the binary, e.g. /path/to/ragls/target/release/ragls.`,
    'Open Setting',
  );
  if (choice === 'Open Setting') {
    void vscode.commands.executeCommand('workbench.action.openSettings', 'ragls.serverPath');
  }
}

function showStatus(status: Status | undefined): void {
  const { text, tooltip } = statusBar(status);
  statusItem.text = text;
  statusItem.tooltip = tooltip;
  statusItem.accessibilityInformation = { label: `ragls ${status?.state ?? 'starting'}` };
  statusItem.backgroundColor =
    status?.state === 'error'
      ? new vscode.ThemeColor('statusBarItem.errorBackground')
      : status?.state === 'degraded'
        ? new vscode.ThemeColor('statusBarItem.warningBackground')
        : undefined;
  statusItem.show();
}

async function startClient(): Promise<RaglsClient | undefined> {
  const command = serverCommand();
  if (!serverExists(command)) {
    // Checked before starting, so the language client never shows its own second toast.
    statusItem.text = '$(error) ragls';
    statusItem.tooltip = `ragls: "${command}" was not found (setting ragls.serverPath)`;
    statusItem.show();
    void reportMissingServer(command);
    return undefined;
  }
  const serverOptions: ServerOptions = { command, args: ['serve', '--stdio'] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }],
    initializationOptions: settings(),
    outputChannel: output,
  };
  const c = new RaglsClient('ragls', 'ragls', serverOptions, clientOptions);
  let last: Status | undefined;
  c.onNotification('rag/statusChanged', (s: Status) => {
    if (s.state !== last?.state && (s.state === 'error' || s.state === 'degraded')) {
      void vscode.window.showWarningMessage(`ragls: index ${s.state}${s.lastError ? `: ${s.lastError}` : ''}`);
    }
    last = s;
    showStatus(s);
  });
  c.onDidChangeState((e) => {
    if (e.newState === State.Stopped) {
      statusItem.text = '$(circle-slash) ragls: stopped';
      statusItem.accessibilityInformation = { label: 'ragls stopped' };
      statusItem.tooltip = 'ragls: the server is not running (ragls: Restart the Server)';
    }
  });
  showStatus(undefined);
  try {
    await c.start();
  } catch (e) {
    const choice = await vscode.window.showErrorMessage(
      `ragls: cannot start "${command} serve --stdio": ${(e as Error)?.message ?? e}`,
      'Open Settings',
      'Show Log',
    );
    if (choice === 'Open Settings') {
      void vscode.commands.executeCommand('workbench.action.openSettings', 'ragls.serverPath');
    } else if (choice === 'Show Log') {
      output.show();
    }
    statusItem.text = '$(error) ragls';
    statusItem.tooltip = `ragls: the server did not start (${command})`;
    return undefined;
  }
  client = c;
  try {
    showStatus((await c.sendRequest('rag/status', {})) as Status);
  } catch {
    // rag/statusChanged will tell.
  }
  return c;
}

/** The running client, started on first use. */
async function ensureClient(): Promise<RaglsClient | undefined> {
  if (client && client.state === State.Running) {
    return client;
  }
  if (!starting) {
    starting = startClient().finally(() => {
      starting = undefined;
    });
  }
  return starting;
}

async function restart(): Promise<void> {
  const old = client;
  client = undefined;
  if (old) {
    try {
      await old.stop();
    } catch {
      // Already gone.
    }
  }
  await ensureClient();
}

function rpcOf(c: RaglsClient): AskRpc {
  const type = new ProgressType<unknown>();
  return {
    sendRequest: (method, params, token) =>
      token ? c.sendRequest(method, params, token as vscode.CancellationToken) : c.sendRequest(method, params),
    onProgress: (token, handler) => c.onProgress(type, token, handler),
  };
}

function lspRange(r: vscode.Range): Range {
  return {
    start: { line: r.start.line, character: r.start.character },
    end: { line: r.end.line, character: r.end.character },
  };
}

/** The active file editor's document and selection (the whole current line when empty). */
function editorContext(wholeLineWhenEmpty: boolean): { textDocument?: { uri: string }; range?: Range } {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.uri.scheme !== 'file') {
    return {};
  }
  const textDocument = { uri: editor.document.uri.toString() };
  const sel = editor.selection;
  if (!sel.isEmpty) {
    return { textDocument, range: lspRange(sel) };
  }
  if (wholeLineWhenEmpty) {
    return { textDocument, range: lspRange(editor.document.lineAt(sel.active.line).range) };
  }
  return { textDocument };
}

/** ragls.ask: from the palette (an input box), or from a code action ({query, ...}). */
async function askCommand(arg?: unknown): Promise<void> {
  if (arg && typeof arg === 'object' && typeof (arg as AskParams).query === 'string') {
    return chat.ask(arg as AskParams, false);
  }
  if (typeof arg === 'string' && arg.trim() !== '') {
    return chat.ask({ query: arg }, true);
  }
  // From the palette or the keybinding: the chat, with its input focused (a selection in
  // the editor goes with the next question as context).
  chat.pendingContext = editorContext(false);
  await chat.reveal(true);
}

/** ragls.explain: the selection (or line), or (uri, range) from a code action. */
async function explainCommand(uri?: unknown, range?: unknown): Promise<void> {
  if (typeof uri === 'string' && range && typeof range === 'object') {
    return chat.ask({ query: EXPLAIN_QUERY, textDocument: { uri }, range: range as Range }, false);
  }
  const ctx = editorContext(true);
  if (!ctx.textDocument || !ctx.range) {
    void vscode.window.showWarningMessage('ragls: open a file and select the code to explain');
    return;
  }
  return chat.ask({ query: EXPLAIN_QUERY, textDocument: ctx.textDocument, range: ctx.range }, false);
}

async function searchCommand(arg?: unknown): Promise<void> {
  let query = typeof arg === 'string' ? arg : undefined;
  if (!query) {
    query = await vscode.window.showInputBox({
      title: 'ragls: Search the Codebase',
      prompt: 'Words or a description of the code to find',
      ignoreFocusOut: true,
    });
  }
  if (!query || query.trim() === '') {
    return;
  }
  const c = await ensureClient();
  if (!c) {
    return;
  }
  let result: SearchResult;
  try {
    result = (await c.sendRequest('rag/search', { query, topK: 20 })) as SearchResult;
  } catch (e) {
    void vscode.window.showErrorMessage(`ragls: ${(e as Error)?.message ?? e}`);
    return;
  }
  if (result.results.length === 0) {
    void vscode.window.showInformationMessage(`ragls: nothing matches "${query}"`);
    return;
  }
  const items = result.results.map((r) => ({ ...searchItem(r, display), source: r }));
  const picked = await vscode.window.showQuickPick(items, {
    title: `ragls: ${items.length} results for "${query}"`,
    matchOnDescription: true,
    matchOnDetail: true,
  });
  if (picked) {
    const r = picked.source.range;
    await vscode.window.showTextDocument(vscode.Uri.parse(picked.source.uri), {
      selection: new vscode.Range(r.start.line, r.start.character, r.start.line, r.start.character),
    });
  }
}

/** ragls.related: code related to the selection (or the symbol under the cursor). */
async function relatedCommand(uri?: unknown, range?: unknown): Promise<void> {
  let docUri: string;
  let lsp: Range;
  if (typeof uri === 'string' && range && typeof range === 'object') {
    docUri = uri;
    lsp = range as Range;
  } else {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.document.uri.scheme !== 'file') {
      void vscode.window.showWarningMessage('ragls: open a file to find related code');
      return;
    }
    docUri = editor.document.uri.toString();
    lsp = lspRange(editor.selection);
  }
  const c = await ensureClient();
  if (!c) {
    return;
  }
  let locations: LspLocation[];
  try {
    locations =
      ((await c.sendRequest(ExecuteCommandRequest.type, {
        command: 'ragls.related',
        arguments: [docUri, lsp],
      })) as LspLocation[] | null) ?? [];
  } catch (e) {
    void vscode.window.showErrorMessage(`ragls: ${(e as Error)?.message ?? e}`);
    return;
  }
  if (locations.length === 0) {
    void vscode.window.showInformationMessage('ragls: no related code found');
    return;
  }
  await vscode.commands.executeCommand(
    'editor.action.showReferences',
    vscode.Uri.parse(docUri),
    new vscode.Position(lsp.start.line, lsp.start.character),
    locations.map((l) => c.protocol2CodeConverter.asLocation(l)),
  );
}

async function reindexCommand(full: boolean): Promise<void> {
  const c = await ensureClient();
  if (!c) {
    return;
  }
  try {
    await c.sendRequest('rag/reindex', { full });
    vscode.window.setStatusBarMessage(full ? 'ragls: rebuilding the index…' : 'ragls: updating the index…', 4000);
  } catch (e) {
    void vscode.window.showErrorMessage(`ragls: ${(e as Error)?.message ?? e}`);
  }
}

async function statusCommand(): Promise<void> {
  const c = await ensureClient();
  if (!c) {
    return;
  }
  try {
    const s = (await c.sendRequest('rag/status', {})) as Status;
    showStatus(s);
    output.appendLine(JSON.stringify(s, null, 2));
    const choice = await vscode.window.showInformationMessage(describeStatus(s), 'Update the Index', 'Show Log');
    if (choice === 'Update the Index') {
      await reindexCommand(false);
    } else if (choice === 'Show Log') {
      output.show();
    }
  } catch (e) {
    void vscode.window.showErrorMessage(`ragls: ${(e as Error)?.message ?? e}`);
  }
}

export function activate(context: vscode.ExtensionContext): void {
  output = vscode.window.createOutputChannel('ragls');
  chat = new ChatView(context);
  statusItem = vscode.window.createStatusBarItem('ragls.status', vscode.StatusBarAlignment.Left, 10);
  statusItem.name = 'ragls';
  statusItem.command = 'ragls.status';
  context.subscriptions.push(
    output,
    statusItem,
    vscode.window.registerWebviewViewProvider(ChatView.id, chat, { webviewOptions: { retainContextWhenHidden: true } }),
    vscode.commands.registerCommand('ragls.chat.open', () => chat.reveal(true)),
    vscode.commands.registerCommand('ragls.chat.clear', () => chat.clear()),
    vscode.commands.registerCommand('ragls.chat.stop', () => chat.stop()),
    vscode.commands.registerCommand('ragls.ask', askCommand),
    vscode.commands.registerCommand('ragls.explain', explainCommand),
    vscode.commands.registerCommand('ragls.search', searchCommand),
    vscode.commands.registerCommand('ragls.related', relatedCommand),
    vscode.commands.registerCommand('ragls.reindex', (arg?: { full?: boolean }) => reindexCommand(arg?.full === true)),
    vscode.commands.registerCommand('ragls.reindexFull', () => reindexCommand(true)),
    vscode.commands.registerCommand('ragls.status', statusCommand),
    vscode.commands.registerCommand('ragls.restart', restart),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('ragls.serverPath')) {
        missingShownFor = undefined;
        void restart();
      } else if (e.affectsConfiguration('ragls.settings') && client?.state === State.Running) {
        void client.sendNotification('workspace/didChangeConfiguration', { settings: { ragls: settings() } });
      }
    }),
  );
  if (vscode.workspace.workspaceFolders?.length) {
    void ensureClient();
  }
}

export function deactivate(): Thenable<void> | undefined {
  chat?.stop();
  return client?.stop();
}
