-- Headless end-to-end test of the ragls Neovim plugin against a real `ragls serve --stdio`.
--
--   nvim --headless --clean -u editors/nvim/test/run.lua
--
-- (editors/nvim/test/run.sh finds Neovim and the server, and runs this.) Environment:
--   RAGLS_BIN   the server binary (default: <repo>/target/debug/ragls)
--
-- It copies test/fixture to a temporary workspace, opens a file there (the root comes from
-- the fixture's .ragls.toml), waits for the index, then checks what the plugin put in the
-- quickfix list and the answer buffer for :RaglsSearch and :RaglsAsk (offline: extractive),
-- and, against a fake OpenAI-compatible chat endpoint served from this Neovim (vim.uv),
-- that :RaglsAsk streams answerDelta text into the buffer before the final result and that
-- :RaglsExplain sends the selected lines as context. Exits non-zero on failure (cquit).

local uv = vim.uv or vim.loop

local test_dir = vim.fs.dirname(vim.fs.normalize(debug.getinfo(1, 'S').source:sub(2)))
test_dir = uv.fs_realpath(test_dir) or test_dir
local plugin_dir = vim.fs.dirname(test_dir)
local repo_dir = vim.fs.dirname(vim.fs.dirname(plugin_dir))

vim.opt.runtimepath:prepend(plugin_dir)
vim.opt.swapfile = false
vim.opt.shortmess:append('F')

local checks = 0
local messages = {} --- everything vim.notify was given

local function log(msg)
  io.stdout:write(msg .. '\n')
end

local function fail(msg)
  error(msg, 0)
end

local function check(cond, what, detail)
  if not cond then
    fail(what .. (detail and ('\n  ' .. detail) or ''))
  end
  checks = checks + 1
  log('ok ' .. checks .. ' - ' .. what)
end

local function wait_for(what, timeout, cond)
  local ok = vim.wait(timeout, cond, 20)
  if not ok then
    fail('timed out waiting for ' .. what)
  end
end

local function buffer_text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n')
end

local function qf_entries()
  local out = {}
  for _, item in ipairs(vim.fn.getqflist()) do
    out[#out + 1] = {
      file = vim.api.nvim_buf_get_name(item.bufnr),
      lnum = item.lnum,
      end_lnum = item.end_lnum,
      text = item.text,
    }
  end
  return out
end

local function ends_with(s, suffix)
  return s:sub(-#suffix) == suffix
end

--- Waits for a `User <pattern>` autocmd fired after `fn()` runs; returns its data.
local function run_and_wait(pattern, timeout, fn)
  local got
  local id = vim.api.nvim_create_autocmd('User', {
    pattern = pattern,
    callback = function(ev)
      got = ev.data or {}
    end,
  })
  fn()
  wait_for('User ' .. pattern, timeout, function()
    return got ~= nil
  end)
  vim.api.nvim_del_autocmd(id)
  return got
end

-- A fake OpenAI-compatible chat endpoint: streams a fixed answer as SSE, one piece every
-- 150 ms, and records each request body.
local function fake_chat(pieces)
  local server = uv.new_tcp()
  assert(server:bind('127.0.0.1', 0))
  local bodies = {}
  local events = {}
  for _, p in ipairs(pieces) do
    events[#events + 1] = 'data: '
      .. vim.json.encode({ choices = { { index = 0, delta = { content = p } } } })
      .. '\n\n'
  end
  events[#events + 1] = 'data: '
    .. vim.json.encode({ choices = { { index = 0, delta = vim.empty_dict(), finish_reason = 'stop' } } })
    .. '\n\n'
  events[#events + 1] = 'data: [DONE]\n\n'
  local function respond(sock, path)
    if not path:match('/chat/completions$') then
      sock:write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', function()
        sock:close()
      end)
      return
    end
    sock:write(
      'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n'
        .. 'Connection: close\r\n\r\n'
    )
    local i = 0
    local timer = uv.new_timer()
    timer:start(150, 150, function()
      i = i + 1
      if i <= #events then
        sock:write(events[i])
      else
        timer:stop()
        timer:close()
        sock:shutdown(function()
          sock:close()
        end)
      end
    end)
  end
  server:listen(16, function(err)
    assert(not err, err)
    local sock = uv.new_tcp()
    server:accept(sock)
    local buf = ''
    sock:read_start(function(rerr, chunk)
      if rerr or not chunk then
        if not sock:is_closing() then
          sock:close()
        end
        return
      end
      buf = buf .. chunk
      local head_end = buf:find('\r\n\r\n', 1, true)
      if not head_end then
        return
      end
      local len = tonumber(buf:sub(1, head_end):lower():match('content%-length:%s*(%d+)')) or 0
      if #buf < head_end + 3 + len then
        return
      end
      sock:read_stop()
      local path = buf:match('^%u+ (%S+)') or ''
      bodies[#bodies + 1] = { path = path, body = buf:sub(head_end + 4, head_end + 3 + len) }
      respond(sock, path)
    end)
  end)
  return server:getsockname().port, bodies, server
end

local function main()
  local bin = vim.env.RAGLS_BIN
  if not bin or bin == '' then
    bin = repo_dir .. '/target/debug/ragls'
  end
  bin = vim.fn.fnamemodify(bin, ':p')
  check(vim.fn.executable(bin) == 1, 'the server binary is executable: ' .. bin)

  -- A private copy of the fixture, caches and config, so nothing outside is touched.
  local tmp = vim.fn.tempname()
  vim.fn.mkdir(tmp, 'p')
  tmp = uv.fs_realpath(tmp)
  local ws = tmp .. '/workspace'
  vim.fn.system({ 'cp', '-R', test_dir .. '/fixture', ws })
  check(vim.v.shell_error == 0, 'the fixture is copied to ' .. ws)

  vim.notify = function(msg, level, opts)
    messages[#messages + 1] = { msg = msg, level = level }
    log('  (notify) ' .. tostring(msg))
  end

  vim.cmd.cd(tmp) -- not the workspace: the root must come from .ragls.toml
  local ragls = require('ragls')
  ragls.setup({
    server_path = bin,
    cmd_env = {
      XDG_CACHE_HOME = tmp .. '/cache',
      XDG_CONFIG_HOME = tmp .. '/config',
      OPENROUTER_API_KEY = '', -- offline: no remote calls, extractive answers
    },
    settings = {
      embedding = { provider = 'builtin' },
      rerank = { enabled = false },
      index = { dir = tmp .. '/index' },
    },
    open_quickfix = true,
  })

  vim.cmd.edit(ws .. '/billing/invoice.py')
  local src_buf = vim.api.nvim_get_current_buf()
  local client
  wait_for('the client to start and attach', 15000, function()
    client = vim.lsp.get_clients({ name = 'ragls', bufnr = src_buf })[1]
    return client ~= nil and client.initialized
  end)
  check(client.config.root_dir == ws, 'the root is the folder with .ragls.toml', client.config.root_dir)
  check(
    client.config.init_options and client.config.init_options.embedding.provider == 'builtin',
    'settings are sent as initializationOptions'
  )

  -- The index: wait until ready, through :RaglsStatus's callback.
  local status
  wait_for('the index to be ready', 60000, function()
    local got
    ragls.show_status(function(s)
      got = s
    end)
    vim.wait(2000, function()
      return got ~= nil
    end, 20)
    status = got
    return got and got.state == 'ready' and (got.files or 0) >= 3
  end)
  check(status.state == 'ready', 'rag/status says ready: ' .. vim.inspect(status.files) .. ' files')
  check(
    status.embedding and status.embedding.provider == 'builtin',
    'the builtin embedder is used (settings applied)',
    vim.inspect(status.embedding)
  )

  -- :RaglsSearch -> quickfix.
  local search = run_and_wait('RaglsSearchDone', 15000, function()
    vim.cmd('RaglsSearch invoice total tax')
  end)
  check(#search.results > 0, ':RaglsSearch got results')
  local qf = qf_entries()
  check(#qf == #search.results, 'the quickfix list has one entry per result')
  check(
    ends_with(qf[1].file, '/billing/invoice.py') and qf[1].lnum == 13,
    'the first search hit is billing/invoice.py:13',
    vim.inspect(qf[1])
  )
  check(qf[1].text:find('compute_invoice_total', 1, true) ~= nil, 'the entry names the symbol', qf[1].text)
  check(vim.fn.getqflist({ title = 1 }).title:find('invoice total tax', 1, true) ~= nil, 'quickfix title')

  -- :RaglsAsk offline -> extractive answer in the answer buffer, citations in quickfix.
  local done = run_and_wait('RaglsAnswerDone', 20000, function()
    vim.cmd('RaglsAsk how is a login password verified')
  end)
  check(done.error == nil, ':RaglsAsk succeeded', vim.inspect(done.error))
  check(done.result.mode == 'extractive', 'offline, the answer is extractive', done.result.mode)
  local answer_buf = vim.fn.bufnr('ragls://answer')
  check(answer_buf ~= -1 and vim.fn.bufwinid(answer_buf) ~= -1, 'the answer buffer is shown in a window')
  check(vim.bo[answer_buf].filetype == 'markdown', 'the answer buffer is markdown')
  local text = buffer_text(answer_buf)
  check(text:find('# how is a login password verified', 1, true) ~= nil, 'the answer starts with the question')
  check(text:find('CredentialStore', 1, true) ~= nil, 'the answer buffer has the answer text', text)
  check(text:find('[1]: auth/password.rs:10', 1, true) ~= nil, 'the citations are listed under the answer', text)
  check(vim.api.nvim_get_current_buf() == src_buf, 'the cursor stays in the source window')
  check(vim.bo[answer_buf].modifiable == false, 'the answer buffer is read-only')
  -- <CR> on a [n] in the answer buffer opens that citation in a file window.
  local answer_win = vim.fn.bufwinid(answer_buf)
  vim.api.nvim_set_current_win(answer_win)
  local cite_line = vim.fn.search('^\\[3\\]: ', 'n')
  check(cite_line > 0, 'the answer buffer lists citation [3]')
  vim.api.nvim_win_set_cursor(answer_win, { cite_line, 0 })
  vim.cmd('execute "normal \\<CR>"')
  local c3 = done.result.citations[3]
  check(
    vim.api.nvim_get_current_win() ~= answer_win
      and vim.api.nvim_buf_get_name(0) == vim.uri_to_fname(c3.uri)
      and vim.api.nvim_win_get_cursor(0)[1] == c3.range.start.line + 1,
    '<CR> on [3] opens ' .. vim.fn.fnamemodify(vim.uri_to_fname(c3.uri), ':t') .. ':' .. (c3.range.start.line + 1)
  )
  vim.cmd.buffer(src_buf)
  qf = qf_entries()
  check(#qf == #done.result.citations and #qf > 0, 'one quickfix entry per citation')
  check(
    ends_with(qf[1].file, '/auth/password.rs') and qf[1].lnum == 10 and qf[1].text == '[1] impl CredentialStore',
    'citation [1] is auth/password.rs:10 "[1] impl CredentialStore"',
    vim.inspect(qf[1])
  )

  -- Generation through a (fake) chat endpoint: settings changed at run time, answer streamed.
  local pieces = {
    'Invoice totals come from',
    ' `compute_invoice_total` [1]:',
    '\nit sums the line items,',
    ' subtracts the discount and adds tax.',
  }
  local port, bodies, server = fake_chat(pieces)
  ragls.configure({ provider = { base_url = ('http://127.0.0.1:%d/v1'):format(port), max_retries = 0 } })
  wait_for('the reconfigured index to be ready', 30000, function()
    local got
    ragls.show_status(function(s)
      got = s
    end)
    vim.wait(2000, function()
      return got ~= nil
    end, 20)
    return got and got.state == 'ready'
  end)
  local snapshots = {}
  local delta_id = vim.api.nvim_create_autocmd('User', {
    pattern = 'RaglsAnswerDelta',
    callback = function()
      snapshots[#snapshots + 1] = buffer_text(vim.fn.bufnr('ragls://answer'))
    end,
  })
  done = run_and_wait('RaglsAnswerDone', 30000, function()
    vim.cmd('RaglsAsk How is the invoice total computed?')
  end)
  vim.api.nvim_del_autocmd(delta_id)
  check(done.error == nil, 'the streamed :RaglsAsk succeeded', vim.inspect(done.error))
  check(done.result.mode == 'generated', 'with a chat endpoint the answer is generated', done.result.mode)
  check(#snapshots == #pieces, 'each answerDelta reached the buffer (' .. #snapshots .. ')')
  check(
    snapshots[1]:find('Invoice totals come from', 1, true) ~= nil
      and snapshots[1]:find('adds tax', 1, true) == nil,
    'the buffer shows partial text while the answer streams',
    snapshots[1]
  )
  check(
    snapshots[3]:find('`compute_invoice_total` [1]:\nit sums the line items,', 1, true) ~= nil,
    'streamed newlines become buffer lines',
    snapshots[3]
  )
  text = buffer_text(vim.fn.bufnr('ragls://answer'))
  check(
    text:find(table.concat(pieces), 1, true) ~= nil,
    'the final buffer has the whole answer',
    text
  )
  check(text:find('[1]: billing/invoice.py:13 `def compute_invoice_total`', 1, true) ~= nil, 'and its citation', text)
  qf = qf_entries()
  check(
    #qf == 1 and ends_with(qf[1].file, '/billing/invoice.py') and qf[1].lnum == 13
      and qf[1].text == '[1] def compute_invoice_total',
    'the quickfix list has the cited billing/invoice.py:13',
    vim.inspect(qf)
  )

  -- :RaglsExplain on a range: the selected lines go to the model as context.
  vim.api.nvim_set_current_buf(src_buf)
  local before = #bodies
  done = run_and_wait('RaglsAnswerDone', 30000, function()
    vim.cmd('13,19RaglsExplain')
  end)
  check(done.error == nil and done.result.mode == 'generated', ':RaglsExplain got an answer')
  check(#bodies == before + 1, 'one chat request was made')
  local sent = vim.json.decode(bodies[#bodies].body)
  local prompt = {}
  for _, m in ipairs(sent.messages or {}) do
    prompt[#prompt + 1] = type(m.content) == 'string' and m.content or vim.json.encode(m.content)
  end
  prompt = table.concat(prompt, '\n')
  check(sent.stream == true, 'the chat request streams')
  check(prompt:find('Explain this code', 1, true) ~= nil, 'the prompt has the explain question')
  check(
    prompt:find('billing/invoice.py:13-19', 1, true) ~= nil,
    'the prompt has the selected lines as editor context',
    prompt:sub(1, 2000)
  )
  check(
    buffer_text(vim.fn.bufnr('ragls://answer')):find('_about billing/invoice.py:13-19_', 1, true) ~= nil,
    'the answer buffer says what was explained'
  )

  -- The server's "Explain this code" code action runs through the plugin's own
  -- ragls.explain command, so its answer streams into the answer buffer too.
  vim.api.nvim_win_set_cursor(0, { 13, 6 }) -- on the identifier compute_invoice_total
  before = #bodies
  local deltas = 0
  delta_id = vim.api.nvim_create_autocmd('User', {
    pattern = 'RaglsAnswerDelta',
    callback = function()
      deltas = deltas + 1
    end,
  })
  done = run_and_wait('RaglsAnswerDone', 30000, function()
    vim.lsp.buf.code_action({
      apply = true,
      filter = function(action)
        return action.title == 'ragls: Explain this code'
      end,
    })
  end)
  vim.api.nvim_del_autocmd(delta_id)
  check(done.error == nil and done.result.mode == 'generated', 'the "Explain this code" code action answered')
  check(deltas == #pieces and #bodies == before + 1, 'the code action answer streamed (' .. deltas .. ' deltas)')
  check(
    buffer_text(vim.fn.bufnr('ragls://answer')):find('# Explain this code', 1, true) ~= nil,
    'the code action answer is in the answer buffer'
  )

  -- :RaglsChat: a conversation in a buffer. Two turns, history kept, a state line while
  -- waiting, citations as extmarks that <CR> opens, read-only except the prompt line.
  local chat = require('ragls.chat')
  vim.api.nvim_set_current_buf(src_buf)
  before = #bodies
  local first_delta_text
  delta_id = vim.api.nvim_create_autocmd('User', {
    pattern = 'RaglsChatDelta',
    once = true,
    callback = function()
      first_delta_text = buffer_text(chat.bufnr())
    end,
  })
  local waiting_text
  done = run_and_wait('RaglsChatDone', 30000, function()
    vim.cmd('RaglsChat How is the invoice total computed?')
    waiting_text = buffer_text(chat.bufnr())
  end)
  local chat_buf = chat.bufnr()
  local chat_win = vim.fn.bufwinid(chat_buf)
  check(chat_win ~= -1, ':RaglsChat shows the chat buffer in a window')
  check(waiting_text:find('⋯ searching the workspace…', 1, true) ~= nil, 'a state line shows while searching', waiting_text)
  check(
    first_delta_text and first_delta_text:find('⋯ generating…', 1, true) ~= nil
      and first_delta_text:find('Invoice totals come from', 1, true) ~= nil,
    'the state line says generating while the text streams',
    first_delta_text
  )
  check(done.error == nil and done.result.mode == 'generated', 'the chat got a generated answer', vim.inspect(done.error))
  text = buffer_text(chat_buf)
  check(text:find('## How is the invoice total computed?', 1, true) ~= nil, 'the chat shows the question')
  check(text:find(table.concat(pieces), 1, true) ~= nil, 'the chat shows the whole answer', text)
  check(text:find('[1] billing/invoice.py:13 `def compute_invoice_total`', 1, true) ~= nil, 'the sources are listed', text)
  check(text:find('⋯', 1, true) == nil, 'no state line once done')
  local lines = vim.api.nvim_buf_get_lines(chat_buf, 0, -1, false)
  check(lines[#lines] == '> ', 'the last line is the prompt', lines[#lines])
  local ns = vim.api.nvim_get_namespaces().ragls_chat
  local marks = vim.api.nvim_buf_get_extmarks(chat_buf, ns, 0, -1, { details = true })
  local cite_marks = vim.tbl_filter(function(m)
    return m[4].hl_group == 'RaglsCitation'
  end, marks)
  check(#cite_marks >= 2, 'the [n] markers are extmarks (' .. #cite_marks .. ')')

  -- Read-only except the prompt line.
  vim.api.nvim_set_current_win(chat_win)
  vim.api.nvim_win_set_cursor(chat_win, { 4, 0 })
  local line4 = lines[4]
  local edited = pcall(vim.cmd, 'normal! dd')
  check(not edited and vim.api.nvim_buf_get_lines(chat_buf, 3, 4, false)[1] == line4, 'the answer text is read-only')
  check(vim.bo[chat_buf].modifiable == false, 'the buffer is not modifiable off the prompt line')

  -- <CR> on the [1] in the answer opens billing/invoice.py at line 13.
  local row, col
  for i, l in ipairs(lines) do
    local at = l:find('[1]:', 1, true)
    if at and l:find('compute_invoice_total', 1, true) then
      row, col = i, at - 1
      break
    end
  end
  check(row ~= nil, 'the answer line with [1] is in the chat')
  vim.api.nvim_win_set_cursor(chat_win, { row, col })
  -- K shows the cited snippet in a float, without leaving the chat.
  local wins_before = #vim.api.nvim_tabpage_list_wins(0)
  vim.cmd('normal K')
  local float_text
  for _, w in ipairs(vim.api.nvim_tabpage_list_wins(0)) do
    if vim.api.nvim_win_get_config(w).relative ~= '' then
      float_text = buffer_text(vim.api.nvim_win_get_buf(w))
      vim.api.nvim_win_close(w, true)
    end
  end
  check(
    float_text and float_text:find('billing/invoice.py:13', 1, true) ~= nil
      and float_text:find('def compute_invoice_total(items, tax_rate', 1, true) ~= nil,
    'K on [1] shows its snippet in a float',
    tostring(float_text)
  )
  check(#vim.api.nvim_tabpage_list_wins(0) == wins_before, 'the float is closed again')
  vim.api.nvim_set_current_win(chat_win)
  vim.api.nvim_win_set_cursor(chat_win, { row, col })
  vim.cmd('execute "normal \\<CR>"')
  check(
    vim.api.nvim_get_current_win() ~= chat_win
      and ends_with(vim.api.nvim_buf_get_name(0), '/billing/invoice.py')
      and vim.api.nvim_win_get_cursor(0)[1] == 13,
    '<CR> on [1] opens billing/invoice.py at line 13',
    vim.api.nvim_buf_get_name(0) .. ':' .. vim.api.nvim_win_get_cursor(0)[1]
  )

  -- A follow-up typed on the prompt line: both turns stay, the previous question goes along.
  vim.api.nvim_set_current_win(chat_win)
  vim.api.nvim_win_set_cursor(chat_win, { vim.api.nvim_buf_line_count(chat_buf), 2 })
  -- (Headless, moving the cursor through the API fires no CursorMoved by itself.)
  vim.api.nvim_exec_autocmds('CursorMoved', { buffer = chat_buf })
  check(vim.bo[chat_buf].modifiable == true, 'the prompt line is editable')
  vim.cmd('normal! A' .. 'Where is the discount applied?')
  done = run_and_wait('RaglsChatDone', 30000, function()
    vim.cmd('execute "normal \\<CR>"')
  end)
  check(done.error == nil and #chat.turns() == 2, 'the follow-up got an answer; the history has two turns')
  text = buffer_text(chat_buf)
  check(
    text:find('## How is the invoice total computed?', 1, true) ~= nil
      and text:find('## Where is the discount applied?', 1, true) ~= nil,
    'the chat shows both turns'
  )
  check(#bodies == before + 2, 'two chat requests were made')
  local follow = bodies[#bodies].body
  check(
    follow:find('follow-up to the previous question', 1, true) ~= nil
      and follow:find('How is the invoice total computed?', 1, true) ~= nil,
    'the follow-up carried the previous question',
    follow:sub(1, 600)
  )
  local second_row
  for i, l in ipairs(vim.api.nvim_buf_get_lines(chat_buf, 0, -1, false)) do
    if l == '## Where is the discount applied?' then
      second_row = i
    end
  end
  local top = vim.fn.line('w0', chat_win)
  local bottom = vim.fn.line('w$', chat_win)
  check(second_row >= top and second_row <= bottom, 'the chat is scrolled to the new answer', top .. '-' .. bottom .. ' ' .. second_row)
  vim.cmd('close')
  server:close()

  -- :RaglsReindex and :RaglsStatus report through vim.notify.
  local n = #messages
  vim.cmd('RaglsReindex')
  wait_for(':RaglsReindex to answer', 10000, function()
    return #messages > n
  end)
  check(messages[#messages].msg == 'ragls: reindex started', ':RaglsReindex', messages[#messages].msg)
  wait_for('the index after :RaglsReindex', 30000, function()
    local got
    ragls.show_status(function(s)
      got = s
    end)
    vim.wait(2000, function()
      return got ~= nil
    end, 20)
    return got and got.state == 'ready'
  end)
  n = #messages
  vim.cmd('RaglsStatus')
  wait_for(':RaglsStatus to answer', 10000, function()
    return #messages > n
  end)
  check(messages[#messages].msg:match('^ragls: ready · %d+ files') ~= nil, ':RaglsStatus', messages[#messages].msg)
  check(ragls.statusline() == 'ragls: ready', 'statusline()', ragls.statusline())

  local errors = vim.tbl_filter(function(m)
    return m.level == vim.log.levels.ERROR
  end, messages)
  check(#errors == 0, 'no error was shown', vim.inspect(errors))

  -- A missing binary: one warning, however many buffers are opened, and no stack trace.
  ragls.setup({ server_path = tmp .. '/no-such-dir/ragls', settings = {} })
  n = #messages
  for _, name in ipairs({ 'one.py', 'two.py', 'three.py' }) do
    vim.fn.writefile({ 'x = 1' }, ws .. '/' .. name)
    vim.cmd.edit(ws .. '/' .. name)
  end
  vim.cmd('RaglsChat what is x?')
  vim.cmd('close')
  local warnings = vim.list_slice(messages, n + 1)
  check(
    #warnings == 1 and warnings[1].level == vim.log.levels.WARN and warnings[1].msg:find('not found', 1, true) ~= nil,
    'a missing binary gives one warning',
    vim.inspect(warnings)
  )
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    vim.schedule(function()
      local ok, err = xpcall(main, function(e)
        return tostring(e) .. '\n' .. debug.traceback('', 2)
      end)
      if ok then
        log(('PASS: %d checks'):format(checks))
        for _, c in ipairs(vim.lsp.get_clients({ name = 'ragls' })) do
          vim.lsp.stop_client(c.id)
        end
        vim.wait(5000, function()
          return #vim.lsp.get_clients({ name = 'ragls' }) == 0
        end, 50)
        vim.cmd('qall!')
      else
        log('FAIL: ' .. err)
        vim.cmd.cquit(1)
      end
    end)
  end,
})
