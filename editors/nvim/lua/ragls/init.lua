--- ragls for Neovim (>= 0.10): starts `ragls serve --stdio` for each workspace root and
--- offers :RaglsAsk (streamed answer in a markdown split, citations in the quickfix list),
--- :RaglsSearch, :RaglsExplain, :RaglsRelated, :RaglsStatus, :RaglsReindex, :RaglsCancel.
---
--- The wire protocol is ../../../../shared/PROTOCOL.md (rag/ask, rag/search, rag/status,
--- rag/reindex, rag/statusChanged, `$/progress {token, value: {answerDelta}}`).

local M = {}

local uv = vim.uv or vim.loop
local has_011 = vim.fn.has('nvim-0.11') == 1

local EXPLAIN_QUERY = 'Explain this code: what it does and how it fits in.'
local ANSWER_BUFNAME = 'ragls://answer'

--- Defaults; `setup()` merges the user's options over these.
M.defaults = {
  --- The server command. `server_path` replaces its first word when set.
  cmd = { 'ragls', 'serve', '--stdio' },
  server_path = nil,
  --- Extra environment for the server (the API key is inherited from Neovim's own).
  cmd_env = nil,
  --- The workspace root: the nearest ancestor holding one of these (earlier ones win),
  --- else the current directory.
  root_markers = { '.ragls.toml', '.git', '.hg', '.jj' },
  --- ragls settings, the same keys as the TOML files (provider, embedding, rerank, chat,
  --- index): sent as `initializationOptions` and as `workspace/didChangeConfiguration`.
  settings = {},
  --- Start the server and attach it to file buffers as they are entered. A list of
  --- filetypes limits it to those; `false` starts it only when a :Ragls command runs.
  autostart = true,
  --- Number of results for :RaglsSearch; nil lets the server choose (ask: rerank.top_k).
  search_top_k = 10,
  ask_top_k = nil,
  --- Where the answer buffer opens, and whether the cursor goes there.
  answer_split = 'botright vsplit',
  focus_answer = false,
  --- Where :RaglsChat opens its buffer (a split command, or 'float').
  chat_split = 'botright vsplit',
  --- Open the quickfix window after a search or an answer with citations.
  open_quickfix = true,
  --- Tell the user when the index state becomes "degraded" or "error".
  notify_status = true,
  --- How long a command waits for a starting server, in ms.
  start_timeout = 10000,
}

M.config = vim.deepcopy(M.defaults)

--- rag/status objects by client id, kept current by rag/statusChanged.
M.status = {}

local streams = {} --- partialResultToken -> stream state
local current --- the stream shown in the answer buffer
local counter = 0
local augroup
local missing_warned --- the server path a "not found" warning was given for

-- Helpers -----------------------------------------------------------------------------

local function notify(msg, level)
  vim.notify('ragls: ' .. msg, level or vim.log.levels.INFO)
end

--- Runs `fn` now, or on the main loop when called from a fast (libuv) callback.
local function main_loop(fn)
  if vim.in_fast_event() then
    vim.schedule(fn)
  else
    fn()
  end
end

local function request(client, method, params, handler, bufnr)
  if has_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function notify_server(client, method, params)
  if has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

local function cancel_request(client, id)
  if has_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

local function is_stopped(client)
  if has_011 then
    return client:is_stopped()
  end
  return client.is_stopped()
end

--- UTF-16 length of a line (LSP's default position encoding).
local function utf16_len(line)
  if has_011 then
    return vim.str_utfindex(line, 'utf-16')
  end
  local _, n16 = vim.str_utfindex(line)
  return n16
end

--- Settings as JSON-able values: nil for an empty table (which would encode as `[]`).
local function settings_value(settings)
  if type(settings) ~= 'table' or next(settings) == nil then
    return nil
  end
  return settings
end

local function server_cmd()
  local cmd = vim.deepcopy(M.config.cmd)
  if type(cmd) == 'string' then
    cmd = vim.split(cmd, '%s+', { trimempty = true })
  end
  if M.config.server_path and M.config.server_path ~= '' then
    cmd[1] = vim.fn.expand(M.config.server_path)
  end
  return cmd
end

local function is_file_buffer(bufnr)
  return vim.api.nvim_buf_is_valid(bufnr)
    and vim.bo[bufnr].buftype == ''
    and vim.api.nvim_buf_get_name(bufnr) ~= ''
end

--- The workspace root for a buffer.
function M.root_dir(bufnr)
  bufnr = bufnr or 0
  local root
  if is_file_buffer(bufnr == 0 and vim.api.nvim_get_current_buf() or bufnr) then
    root = vim.fs.root(bufnr, M.config.root_markers)
  end
  if not root then
    root = vim.fs.root(vim.fn.getcwd(), M.config.root_markers) or vim.fn.getcwd()
  end
  return vim.fs.normalize(root)
end

--- A path relative to the workspace root when inside it, else to the current directory.
local function relpath(fname, root)
  if root and fname:sub(1, #root + 1) == root .. '/' then
    return fname:sub(#root + 2)
  end
  return vim.fn.fnamemodify(fname, ':~:.')
end

local function client_root(client)
  return client and client.config and client.config.root_dir
end

-- The client ---------------------------------------------------------------------------

--- `$/progress`: answer text for our partialResultTokens; everything else (indexing
--- progress, ask stages) goes to Neovim's own handler (LspProgress, statuslines).
local function progress_handler(err, result, ctx, cfg)
  local value = result and result.value
  local token = result and result.token
  local stream = token ~= nil and streams[tostring(token)] or nil
  if stream and type(value) == 'table' and (value.answerDelta ~= nil or value.sources ~= nil) then
    main_loop(function()
      -- The numbered sources come first (`[n]` is `sources[n-1]`), then the text.
      if value.sources ~= nil and stream.on_sources then
        stream:on_sources(value.sources)
      end
      if value.answerDelta ~= nil then
        stream:delta(value.answerDelta)
      end
    end)
    return
  end
  return vim.lsp.handlers['$/progress'](err, result, ctx, cfg)
end

local function status_changed_handler(_, result, ctx)
  if type(result) ~= 'table' then
    return
  end
  local previous = M.status[ctx.client_id]
  M.status[ctx.client_id] = result
  main_loop(function()
    if
      M.config.notify_status
      and (result.state == 'error' or result.state == 'degraded')
      and (not previous or previous.state ~= result.state)
    then
      notify(
        ('index %s%s'):format(result.state, result.lastError and (': ' .. result.lastError) or ''),
        result.state == 'error' and vim.log.levels.ERROR or vim.log.levels.WARN
      )
    end
    vim.api.nvim_exec_autocmds('User', {
      pattern = 'RaglsStatusChanged',
      modeline = false,
      data = { client_id = ctx.client_id, status = result },
    })
  end)
end

local function client_config(root)
  local settings = settings_value(M.config.settings)
  return {
    name = 'ragls',
    cmd = server_cmd(),
    cmd_env = M.config.cmd_env,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = root } },
    init_options = settings,
    settings = settings and { ragls = settings } or nil,
    handlers = {
      ['$/progress'] = progress_handler,
      ['rag/statusChanged'] = status_changed_handler,
    },
    -- What the server's code actions run: answers stream into the answer buffer.
    commands = {
      ['ragls.ask'] = function(command)
        local arg = (command.arguments or {})[1]
        if type(arg) == 'string' then
          arg = { query = arg }
        end
        if type(arg) == 'table' and arg.query then
          M.ask_params(arg)
        end
      end,
      ['ragls.explain'] = function(command)
        local args = command.arguments or {}
        M.ask_params({ query = EXPLAIN_QUERY, textDocument = { uri = args[1] }, range = args[2] })
      end,
      ['ragls.related'] = function(command, ctx)
        local client = vim.lsp.get_client_by_id(ctx.client_id)
        if client then
          M._related(client, command.arguments or {})
        end
      end,
    },
  }
end

local clients_by_root = {} --- root -> client id

--- Starts (or reuses) the server for `bufnr`'s root and attaches it to the buffer when it
--- is a file buffer. Returns the client id.
function M.start(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local cmd = server_cmd()
  if vim.fn.executable(cmd[1]) ~= 1 then
    -- Once per server path, not on every buffer entered.
    if missing_warned ~= cmd[1] then
      missing_warned = cmd[1]
      notify(
        ('%q not found: build it (cargo build --release in a ragls checkout) and set server_path in require("ragls").setup{}, or put ragls on $PATH'):format(
          cmd[1]
        ),
        vim.log.levels.WARN
      )
    end
    return nil
  end
  local root = M.root_dir(bufnr)
  local attach = is_file_buffer(bufnr)
  local existing = clients_by_root[root] and vim.lsp.get_client_by_id(clients_by_root[root])
  if existing and is_stopped(existing) then
    existing = nil
  end
  if existing and not attach then
    return existing.id
  end
  local id
  if existing then
    vim.lsp.buf_attach_client(bufnr, existing.id)
    id = existing.id
  elseif attach then
    id = vim.lsp.start(client_config(root), { bufnr = bufnr })
  elseif has_011 then
    id = vim.lsp.start(client_config(root), { attach = false })
  else
    id = vim.lsp.start_client(client_config(root))
  end
  if id then
    clients_by_root[root] = id
  end
  return id
end

--- The ragls client for a buffer: the one attached to it, else the one for its root,
--- else any running one. Does not start a server.
function M.get_client(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  for _, c in ipairs(vim.lsp.get_clients({ name = 'ragls', bufnr = bufnr })) do
    return c
  end
  local id = clients_by_root[M.root_dir(bufnr)]
  local c = id and vim.lsp.get_client_by_id(id)
  if c and not is_stopped(c) then
    return c
  end
  for _, other in pairs(clients_by_root) do
    c = vim.lsp.get_client_by_id(other)
    if c and not is_stopped(c) then
      return c
    end
  end
  return nil
end

--- Calls `fn(client)` once the server for `bufnr` is initialized, starting it if needed.
function M.with_client(bufnr, fn)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local client = M.get_client(bufnr)
  if not client or (is_file_buffer(bufnr) and not client.attached_buffers[bufnr]) then
    local id = M.start(bufnr)
    client = id and vim.lsp.get_client_by_id(id) or client
  end
  if not client then
    return
  end
  local deadline = uv.now() + M.config.start_timeout
  local function attempt()
    if is_stopped(client) then
      notify('the server stopped; see :LspLog', vim.log.levels.ERROR)
    elseif client.initialized then
      fn(client)
    elseif uv.now() > deadline then
      notify('the server did not start in time; see :LspLog', vim.log.levels.ERROR)
    else
      vim.defer_fn(attempt, 30)
    end
  end
  attempt()
end

-- The answer buffer --------------------------------------------------------------------

local function answer_buffer()
  local buf = vim.fn.bufnr(ANSWER_BUFNAME)
  if buf == -1 or not vim.api.nvim_buf_is_valid(buf) then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, ANSWER_BUFNAME)
    vim.bo[buf].buftype = 'nofile'
    vim.bo[buf].bufhidden = 'hide'
    vim.bo[buf].swapfile = false
    vim.bo[buf].filetype = 'markdown'
    vim.keymap.set('n', '<C-c>', M.cancel, { buffer = buf, desc = 'ragls: stop the answer' })
    vim.keymap.set('n', '<CR>', M.open_citation_under_cursor, {
      buffer = buf,
      desc = 'ragls: open the citation [n] under the cursor',
    })
    vim.keymap.set('n', 'q', '<cmd>close<cr>', { buffer = buf, desc = 'ragls: close' })
  end
  local win = vim.fn.bufwinid(buf)
  if win == -1 then
    local from = vim.api.nvim_get_current_win()
    vim.cmd(M.config.answer_split)
    win = vim.api.nvim_get_current_win()
    vim.api.nvim_win_set_buf(win, buf)
    vim.wo[win].wrap = true
    vim.wo[win].linebreak = true
    vim.wo[win].conceallevel = 2
    if not M.config.focus_answer and vim.api.nvim_win_is_valid(from) then
      vim.api.nvim_set_current_win(from)
    end
  elseif M.config.focus_answer then
    vim.api.nvim_set_current_win(win)
  end
  return buf, win
end

--- Writes the (read-only) answer buffer.
local function set_lines(buf, first, last, lines)
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, first, last, false, lines)
  vim.bo[buf].modified = false
  vim.bo[buf].modifiable = false
end

local function scroll_to_end(buf)
  local win = vim.fn.bufwinid(buf)
  if win ~= -1 and win ~= vim.api.nvim_get_current_win() then
    vim.api.nvim_win_set_cursor(win, { vim.api.nvim_buf_line_count(buf), 0 })
  end
end

local Stream = {}
Stream.__index = Stream

--- Appends streamed answer text to the buffer.
function Stream:delta(text)
  if self.done or current ~= self or not vim.api.nvim_buf_is_valid(self.buf) then
    return
  end
  self.deltas = self.deltas + 1
  self.text = self.text .. text
  local parts = vim.split(text, '\n', { plain = true })
  local last = vim.api.nvim_buf_get_lines(self.buf, -2, -1, false)[1] or ''
  parts[1] = last .. parts[1]
  set_lines(self.buf, -2, -1, parts)
  scroll_to_end(self.buf)
  vim.api.nvim_exec_autocmds('User', {
    pattern = 'RaglsAnswerDelta',
    modeline = false,
    data = { token = self.token, delta = text, deltas = self.deltas },
  })
end

local function citation_items(citations)
  local items = {}
  for _, c in ipairs(citations or {}) do
    local fname = vim.uri_to_fname(c.uri)
    local first_line = vim.split(c.snippet or '', '\n', { plain = true })[1] or ''
    local label = (c.symbol and c.symbol ~= '') and c.symbol or vim.trim(first_line)
    items[#items + 1] = {
      filename = fname,
      lnum = c.range.start.line + 1,
      end_lnum = c.range['end'].line + 1,
      col = 1,
      text = ('[%d] %s'):format(c.n, label),
      user_data = { n = c.n },
    }
  end
  return items
end

local function open_quickfix()
  if M.config.open_quickfix then
    local win = vim.api.nvim_get_current_win()
    vim.cmd('botright copen')
    if vim.api.nvim_win_is_valid(win) then
      vim.api.nvim_set_current_win(win)
    end
  end
end

--- The final `rag/ask` result: the whole answer (authoritative over the streamed text),
--- its sources, and the citations in the quickfix list.
function Stream:finish(err, result)
  if self.done then
    return
  end
  self.done = true
  streams[self.token] = nil
  if current ~= self or not vim.api.nvim_buf_is_valid(self.buf) then
    return
  end
  if err then
    local cancelled = err.code == -32800
    local msg = cancelled and 'stopped' or (err.message or vim.inspect(err))
    set_lines(self.buf, -1, -1, { '', '> ragls: ' .. msg })
    if not cancelled then
      notify(msg, vim.log.levels.ERROR)
    end
    vim.api.nvim_exec_autocmds('User', {
      pattern = 'RaglsAnswerDone',
      modeline = false,
      data = { token = self.token, error = err },
    })
    return
  end
  self.result = result
  local lines = vim.list_extend({}, self.header)
  vim.list_extend(lines, vim.split(result.answer or '', '\n', { plain = true }))
  local citations = result.citations or {}
  if #citations > 0 then
    vim.list_extend(lines, { '', '---', '' })
    for _, c in ipairs(citations) do
      local fname = relpath(vim.uri_to_fname(c.uri), client_root(self.client))
      local sym = (c.symbol and c.symbol ~= '') and (' `' .. c.symbol .. '`') or ''
      lines[#lines + 1] = ('[%d]: %s:%d%s'):format(c.n, fname, c.range.start.line + 1, sym)
    end
  end
  local models = result.models or {}
  local timings = result.timings or {}
  local total = (timings.retrieveMs or 0) + (timings.rerankMs or 0) + (timings.generateMs or 0)
  lines[#lines + 1] = ''
  lines[#lines + 1] = ('_%s · %s · %d ms_'):format(
    result.mode or '?',
    models.chat or models.embedding or '?',
    total
  )
  set_lines(self.buf, 0, -1, lines)
  vim.fn.setqflist({}, ' ', {
    title = 'ragls: ' .. self.query,
    items = citation_items(citations),
  })
  if #citations > 0 then
    open_quickfix()
  end
  vim.api.nvim_exec_autocmds('User', {
    pattern = 'RaglsAnswerDone',
    modeline = false,
    data = { token = self.token, result = result },
  })
end

--- Stops the answer being streamed, if any.
function M.cancel()
  local s = current
  if s and not s.done and s.client and s.request_id then
    cancel_request(s.client, s.request_id)
    s:finish({ code = -32800, message = 'stopped' })
  end
end

--- In the answer buffer: opens the citation whose `[n]` is under the cursor (else the
--- next one on the line) in a file window.
function M.open_citation_under_cursor()
  local s = current
  if not (s and s.result) then
    return
  end
  local line = vim.api.nvim_get_current_line()
  local col = vim.api.nvim_win_get_cursor(0)[2] + 1
  local n, after
  for a, num, b in line:gmatch('()%[(%d+)%]()') do
    if col >= a and col < b then
      n = tonumber(num)
      break
    end
    if not after and a > col then
      after = tonumber(num)
    end
  end
  n = n or after
  for _, c in ipairs(s.result.citations or {}) do
    if c.n == n then
      local target
      for _, win in ipairs(vim.api.nvim_tabpage_list_wins(0)) do
        if vim.bo[vim.api.nvim_win_get_buf(win)].buftype == '' then
          target = win
          break
        end
      end
      if target then
        vim.api.nvim_set_current_win(target)
      else
        vim.cmd('aboveleft split')
      end
      vim.cmd.edit(vim.fn.fnameescape(vim.uri_to_fname(c.uri)))
      vim.api.nvim_win_set_cursor(0, { c.range.start.line + 1, 0 })
      return
    end
  end
end

-- Commands -----------------------------------------------------------------------------

--- The editor context of a line range in a buffer: `textDocument` and `range`.
local function context(bufnr, line1, line2)
  if not is_file_buffer(bufnr) then
    return nil, nil
  end
  local doc = { uri = vim.uri_from_bufnr(bufnr) }
  if not line1 then
    return doc, nil
  end
  local last = vim.api.nvim_buf_get_lines(bufnr, line2 - 1, line2, false)[1] or ''
  return doc,
    {
      start = { line = line1 - 1, character = 0 },
      ['end'] = { line = line2 - 1, character = utf16_len(last) },
    }
end

--- Sends `rag/ask` with the given params (query, textDocument?, range?, topK?, rerank?),
--- streaming the answer into the answer buffer.
function M.ask_params(params)
  local bufnr = vim.api.nvim_get_current_buf()
  M.with_client(bufnr, function(client)
    M.cancel()
    counter = counter + 1
    local token = ('ragls/ask/%d'):format(counter)
    params = vim.tbl_extend('force', {}, params, {
      partialResultToken = token,
      workDoneToken = token .. '/work',
    })
    if params.topK == nil and M.config.ask_top_k then
      params.topK = M.config.ask_top_k
    end
    local buf = answer_buffer()
    local header = { '# ' .. vim.split(params.query, '\n', { plain = true })[1], '' }
    if params.range and params.textDocument then
      header[#header + 1] = ('_about %s:%d-%d_'):format(
        relpath(vim.uri_to_fname(params.textDocument.uri), client_root(client)),
        params.range.start.line + 1,
        params.range['end'].line + 1
      )
      header[#header + 1] = ''
    end
    local stream = setmetatable({
      token = token,
      query = params.query,
      buf = buf,
      client = client,
      header = header,
      text = '',
      deltas = 0,
      done = false,
    }, Stream)
    streams[token] = stream
    current = stream
    set_lines(buf, 0, -1, vim.list_extend(vim.deepcopy(header), { '' }))
    -- A new answer starts at the top of the window, not at the old scroll position.
    local answer_win = vim.fn.bufwinid(buf)
    if answer_win ~= -1 then
      vim.api.nvim_win_set_cursor(answer_win, { 1, 0 })
    end
    local ok, id = request(client, 'rag/ask', params, function(err, result)
      main_loop(function()
        stream:finish(err, result)
      end)
    end, bufnr)
    if not ok then
      stream:finish({ message = 'the server is not running' })
    else
      stream.request_id = id
    end
  end)
end

--- :RaglsAsk — `line1`/`line2` (a range) add the selected lines as context.
function M.ask(question, line1, line2)
  local function go(q)
    if not q or vim.trim(q) == '' then
      return
    end
    local bufnr = vim.api.nvim_get_current_buf()
    local doc, range = context(bufnr, line1, line2)
    M.ask_params({ query = q, textDocument = doc, range = range })
  end
  if question and vim.trim(question) ~= '' then
    go(question)
  else
    vim.ui.input({ prompt = 'Ask ragls: ' }, go)
  end
end

--- :RaglsExplain — explains the given lines (the visual selection).
function M.explain(line1, line2)
  local bufnr = vim.api.nvim_get_current_buf()
  if not is_file_buffer(bufnr) then
    notify('explain works on a file buffer', vim.log.levels.WARN)
    return
  end
  local doc, range = context(bufnr, line1, line2)
  M.ask_params({ query = EXPLAIN_QUERY, textDocument = doc, range = range })
end

--- :RaglsSearch — retrieval only; the results go to the quickfix list.
function M.search(query, opts)
  opts = opts or {}
  local function go(q)
    if not q or vim.trim(q) == '' then
      return
    end
    M.with_client(0, function(client)
      local params = { query = q, topK = M.config.search_top_k }
      request(client, 'rag/search', params, function(err, result)
        main_loop(function()
          if err then
            notify(err.message or vim.inspect(err), vim.log.levels.ERROR)
            return
          end
          local items = {}
          for _, r in ipairs(result.results or {}) do
            local first_line = vim.split(r.snippet or '', '\n', { plain = true })[1] or ''
            local label = (r.symbol and r.symbol ~= '') and r.symbol or vim.trim(first_line)
            items[#items + 1] = {
              filename = vim.uri_to_fname(r.uri),
              lnum = r.range.start.line + 1,
              end_lnum = r.range['end'].line + 1,
              col = 1,
              text = ('%s (%.2f)'):format(label, r.score or 0),
            }
          end
          vim.fn.setqflist({}, ' ', { title = 'ragls search: ' .. q, items = items })
          if #items == 0 then
            notify(('nothing matches %q'):format(q), vim.log.levels.WARN)
          elseif opts.open ~= false then
            open_quickfix()
          end
          vim.api.nvim_exec_autocmds('User', {
            pattern = 'RaglsSearchDone',
            modeline = false,
            data = { query = q, results = result.results },
          })
        end)
      end)
    end)
  end
  if query and vim.trim(query) ~= '' then
    go(query)
  else
    vim.ui.input({ prompt = 'Search ragls: ' }, go)
  end
end

--- `ragls.related` through workspace/executeCommand: locations to the quickfix list.
function M._related(client, arguments)
  request(
    client,
    'workspace/executeCommand',
    { command = 'ragls.related', arguments = arguments },
    function(err, result)
      main_loop(function()
        if err then
          notify(err.message or vim.inspect(err), vim.log.levels.ERROR)
          return
        end
        local items = vim.lsp.util.locations_to_items(result or {}, client.offset_encoding)
        vim.fn.setqflist({}, ' ', { title = 'ragls: related code', items = items })
        if #items > 0 then
          open_quickfix()
        else
          notify('no related code found', vim.log.levels.WARN)
        end
      end)
    end
  )
end

--- :RaglsRelated — code related to the selected lines (or the symbol under the cursor).
function M.related(line1, line2)
  local bufnr = vim.api.nvim_get_current_buf()
  if not is_file_buffer(bufnr) then
    notify('related works on a file buffer', vim.log.levels.WARN)
    return
  end
  local range
  if line1 and line2 and line1 ~= line2 then
    _, range = context(bufnr, line1, line2)
  else
    local pos = vim.api.nvim_win_get_cursor(0)
    local line = vim.api.nvim_get_current_line()
    local ch = utf16_len(line:sub(1, pos[2]))
    range = {
      start = { line = pos[1] - 1, character = ch },
      ['end'] = { line = pos[1] - 1, character = ch },
    }
  end
  M.with_client(bufnr, function(client)
    M._related(client, { vim.uri_from_bufnr(bufnr), range })
  end)
end

local function format_status(s)
  local emb = s.embedding or {}
  local msg = ('%s · %d files · %d chunks · %d pending · embedding %s%s'):format(
    s.state or '?',
    s.files or 0,
    s.chunks or 0,
    s.pendingFiles or 0,
    emb.provider or '?',
    (emb.model and emb.model ~= '') and (' (' .. emb.model .. ')') or ''
  )
  if s.lastError then
    msg = msg .. ' · ' .. s.lastError
  end
  return msg
end

--- :RaglsStatus — the index state. `cb(status)` receives the object when given.
function M.show_status(cb)
  M.with_client(0, function(client)
    request(client, 'rag/status', vim.empty_dict(), function(err, result)
      main_loop(function()
        if err then
          notify(err.message or vim.inspect(err), vim.log.levels.ERROR)
          return
        end
        M.status[client.id] = result
        if cb then
          cb(result)
        else
          notify(format_status(result))
        end
      end)
    end)
  end)
end

--- :RaglsReindex[!] — `full` (the bang) re-reads every file.
function M.reindex(full)
  M.with_client(0, function(client)
    request(client, 'rag/reindex', { full = full and true or false }, function(err)
      main_loop(function()
        if err then
          notify(err.message or vim.inspect(err), vim.log.levels.ERROR)
        else
          notify(full and 'full reindex started' or 'reindex started')
        end
      end)
    end)
  end)
end

--- Changes settings at run time: merged over the current ones and sent to every running
--- ragls server as workspace/didChangeConfiguration (section `ragls`).
function M.configure(settings)
  M.config.settings = vim.tbl_deep_extend('force', M.config.settings or {}, settings or {})
  local value = settings_value(M.config.settings) or vim.empty_dict()
  for _, c in ipairs(vim.lsp.get_clients({ name = 'ragls' })) do
    c.settings = { ragls = value } -- what workspace/configuration answers (0.11+)
    c.config.settings = c.settings -- the same, for 0.10
    notify_server(c, 'workspace/didChangeConfiguration', { settings = { ragls = value } })
  end
end

--- For a statusline: "ragls: ready" (or indexing, with the files left), "" without a server.
function M.statusline()
  local client = M.get_client(0)
  local s = client and M.status[client.id]
  if not s then
    return client and 'ragls' or ''
  end
  if s.state == 'indexing' and (s.pendingFiles or 0) > 0 then
    return ('ragls: indexing (%d left)'):format(s.pendingFiles)
  end
  return 'ragls: ' .. (s.state or '?')
end

--- For lua/ragls/chat.lua: the plumbing it shares with :RaglsAsk.
M._internal = {
  streams = streams,
  server_cmd = server_cmd,
  request = request,
  cancel_request = cancel_request,
  main_loop = main_loop,
  relpath = relpath,
  client_root = client_root,
  context = function(...)
    return context(...)
  end,
  next_token = function()
    counter = counter + 1
    return ('ragls/ask/%d'):format(counter)
  end,
}

--- :RaglsChat — the conversation buffer (lua/ragls/chat.lua).
function M.chat(question, line1, line2)
  require('ragls.chat').open(question, line1, line2)
end

-- Setup --------------------------------------------------------------------------------

local function should_autostart(bufnr)
  local auto = M.config.autostart
  if not auto or not is_file_buffer(bufnr) then
    return false
  end
  if type(auto) == 'table' then
    return vim.tbl_contains(auto, vim.bo[bufnr].filetype)
  end
  return true
end

function M.setup(opts)
  missing_warned = nil
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  -- Lists replace, not merge.
  for _, key in ipairs({ 'cmd', 'root_markers', 'autostart' }) do
    if opts and opts[key] ~= nil then
      M.config[key] = opts[key]
    end
  end
  augroup = vim.api.nvim_create_augroup('ragls', { clear = true })
  if M.config.autostart then
    vim.api.nvim_create_autocmd({ 'BufEnter', 'FileType' }, {
      group = augroup,
      callback = function(ev)
        if should_autostart(ev.buf) then
          local attached = #vim.lsp.get_clients({ name = 'ragls', bufnr = ev.buf }) > 0
          if not attached then
            M.start(ev.buf)
          end
        end
      end,
    })
    local buf = vim.api.nvim_get_current_buf()
    if should_autostart(buf) then
      M.start(buf)
    end
  end
end

return M
