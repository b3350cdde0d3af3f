// The ragls VS Code extension: starts `ragls serve --stdio` through vscode-languageclient,
// streams `rag/ask` answers into a read-only markdown document, and shows the index state
// (fed by `rag/statusChanged`) in the status bar. The protocol is shared/PROTOCOL.md.

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

const ANSWER_URI = vscode.Uri.parse('ragls-answer:/ragls%20answer.md');

/** The answer document: read-only, virtual, refreshed as text streams in. */
class AnswerView implements vscode.TextDocumentContentProvider {
  private text = '';
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(): string {
    return this.text;
  }

  set(text: string): void {
    this.text = text;
    this.changed.fire(ANSWER_URI);
  }

  async show(): Promise<void> {
    const doc = await vscode.workspace.openTextDocument(ANSWER_URI);
    if (doc.languageId !== 'markdown') {
      await vscode.languages.setTextDocumentLanguage(doc, 'markdown');
    }
    const visible = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === ANSWER_URI.toString());
    await vscode.window.showTextDocument(doc, {
      viewColumn: visible?.viewColumn ?? vscode.ViewColumn.Beside,
      preserveFocus: true,
      preview: false,
    });
    if (vscode.workspace.getConfiguration('ragls').get<boolean>('previewAnswer')) {
      await vscode.commands.executeCommand('markdown.showPreviewToSide', ANSWER_URI);
    }
  }
}

let client: RaglsClient | undefined;
let starting: Promise<RaglsClient | undefined> | undefined;
let output: vscode.OutputChannel;
let statusItem: vscode.StatusBarItem;
let answers: AnswerView;
let running: vscode.CancellationTokenSource | undefined;

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

function serverCommand(): string {
  let path = vscode.workspace.getConfiguration('ragls').get<string>('serverPath') || 'ragls';
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (folder) {
    path = path.replace(/\$\{workspaceFolder\}/g, folder.uri.fsPath);
  }
  return path;
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

/** Runs `rag/ask`, streaming the answer into the answer document. */
async function runAsk(params: AskParams): Promise<void> {
  const c = await ensureClient();
  if (!c) {
    return;
  }
  running?.cancel();
  const source = new vscode.CancellationTokenSource();
  running = source;
  let about: string | undefined;
  if (params.textDocument && params.range) {
    about = `${display(params.textDocument.uri)}:${params.range.start.line + 1}-${params.range.end.line + 1}`;
  }
  answers.set('');
  await answers.show();
  const doc = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'ragls', cancellable: true },
    async (progress, token) => {
      token.onCancellationRequested(() => source.cancel());
      progress.report({ message: 'Retrieving' });
      return ask(rpcOf(c), params, {
        update: (text) => answers.set(text),
        token: source.token as CancellationTokenLike,
        onStage: (message) => progress.report({ message }),
        about,
        display,
      });
    },
  );
  if (running === source) {
    running = undefined;
  }
  source.dispose();
  if (doc.error && !doc.cancelled) {
    void vscode.window.showErrorMessage(`ragls: ${doc.error}`);
  }
}

/** ragls.ask: from the palette (an input box), or from a code action ({query, ...}). */
async function askCommand(arg?: unknown): Promise<void> {
  if (arg && typeof arg === 'object' && typeof (arg as AskParams).query === 'string') {
    return runAsk(arg as AskParams);
  }
  if (typeof arg === 'string' && arg.trim() !== '') {
    return runAsk({ query: arg });
  }
  const query = await vscode.window.showInputBox({
    title: 'ragls: Ask About the Codebase',
    prompt: 'A question about this workspace; a selection in the editor is added as context',
    placeHolder: 'How is the invoice total computed?',
    ignoreFocusOut: true,
  });
  if (!query || query.trim() === '') {
    return;
  }
  const ctx = editorContext(false);
  return runAsk({ query, textDocument: ctx.textDocument, range: ctx.range });
}

/** ragls.explain: the selection (or line), or (uri, range) from a code action. */
async function explainCommand(uri?: unknown, range?: unknown): Promise<void> {
  if (typeof uri === 'string' && range && typeof range === 'object') {
    return runAsk({ query: EXPLAIN_QUERY, textDocument: { uri }, range: range as Range });
  }
  const ctx = editorContext(true);
  if (!ctx.textDocument || !ctx.range) {
    void vscode.window.showWarningMessage('ragls: open a file and select the code to explain');
    return;
  }
  return runAsk({ query: EXPLAIN_QUERY, textDocument: ctx.textDocument, range: ctx.range });
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
  answers = new AnswerView();
  statusItem = vscode.window.createStatusBarItem('ragls.status', vscode.StatusBarAlignment.Left, 10);
  statusItem.name = 'ragls';
  statusItem.command = 'ragls.status';
  context.subscriptions.push(
    output,
    statusItem,
    vscode.workspace.registerTextDocumentContentProvider(ANSWER_URI.scheme, answers),
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
  running?.cancel();
  return client?.stop();
}
