--- :RaglsChat — a conversation with ragls in a buffer (`ragls://chat`).
---
--- Each turn is a question, a state line while the server searches and generates, the
--- answer as it streams, and its sources (`[n] path:line symbol`). The `[n]` markers are
--- extmarks: `<CR>` on one opens the cited code, `K` shows its snippet. The buffer is
--- read-only except its last line, the prompt (`> `): type a question there and press
--- `<CR>`. A question after the first carries the previous question and its sources (a
--- follow-up). The history lives as long as Neovim, per workspace root.

local ragls = require('ragls')

local M = {}

local BUFNAME = 'ragls://chat'
local PROMPT = '> '
local ns = vim.api.nvim_create_namespace('ragls_chat')
local FOLLOW_UP_SOURCES = 5

--- root -> { turns = {...} }; a turn: { question, about?, answer, sources, state?, error?,
--- footer?, mode? }
local histories = {}
local state = {
  buf = nil,
  root = nil,
  --- extmark id -> { turn = i, n = n }
  marks = {},
  --- the turn being answered: { turn, client, request_id, token }
  running = nil,
}

vim.api.nvim_set_hl(0, 'RaglsCitation', { default = true, link = 'Special' })
vim.api.nvim_set_hl(0, 'RaglsChatState', { default = true, link = 'Comment' })
vim.api.nvim_set_hl(0, 'RaglsChatQuestion', { default = true, link = 'Title' })

local function history()
  local root = state.root or vim.fn.getcwd()
  histories[root] = histories[root] or { turns = {} }
  return histories[root]
end

--- The turns of the chat for the current root (for tests and statuslines).
function M.turns()
  return history().turns
end

local function display(uri, client)
  local i = ragls._internal
  return i.relpath(vim.uri_to_fname(uri), client and i.client_root(client) or state.root)
end

--- The query sent for a question: the previous question and the sources its answer cited
--- go with it, so that "and where is it called?" is understood.
function M.follow_up_query(question, previous)
  if not previous or previous.error or not previous.answer then
    return question
  end
  local cited = {}
  for n in previous.answer:gmatch('%[(%d+)%]') do
    cited[tonumber(n)] = true
  end
  local lines = {}
  for n, s in ipairs(previous.sources or {}) do
    if (next(cited) == nil or cited[n]) and #lines < FOLLOW_UP_SOURCES then
      local sym = (s.symbol and s.symbol ~= '') and (' ' .. s.symbol) or ''
      lines[#lines + 1] = ('- %s:%d%s'):format(display(s.uri), s.range.start.line + 1, sym)
    end
  end
  local first = vim.split(previous.question, '\n', { plain = true })[1]
  local text = ('%s\n\n(A follow-up to the previous question: "%s"'):format(question, first)
  if #lines > 0 then
    return text .. ', answered from:\n' .. table.concat(lines, '\n') .. ')'
  end
  return text .. ')'
end

-- Rendering ----------------------------------------------------------------------------

local HELP = '<CR> on [n]: open it · K: its snippet · <C-c>: stop · q: close · type after > and <CR>'

--- The buffer's lines above the prompt, and where each `[n]` is: { row, col, end, turn, n }.
local function render_lines()
  local lines = { '# ragls chat', '_' .. HELP .. '_', '' }
  local cites = {}
  local function add(text, turn)
    for _, l in ipairs(vim.split(text, '\n', { plain = true })) do
      lines[#lines + 1] = l
      if turn then
        local row = #lines - 1
        for a, num, b in l:gmatch('()%[(%d+)%]()') do
          -- Skip markers inside `code` spans: an odd number of backticks before them.
          local ticks = select(2, l:sub(1, a - 1):gsub('`', ''))
          local in_code = ticks % 2 == 1
          local n = tonumber(num)
          if not in_code and turn.sources[n] then
            cites[#cites + 1] = { row = row, col = a - 1, end_col = b - 1, turn = turn.index, n = n }
          end
        end
      end
    end
  end
  for i, t in ipairs(history().turns) do
    t.index = i
    t.first_row = #lines
    add('## ' .. t.question)
    if t.about then
      add('_about ' .. t.about .. '_')
    end
    add('')
    if t.answer and t.answer ~= '' then
      local fenced = false
      for _, l in ipairs(vim.split(t.answer, '\n', { plain = true })) do
        if l:match('^%s*```') then
          fenced = not fenced
          add(l)
        else
          add(l, not fenced and t or nil)
        end
      end
    end
    if t.state then
      add('')
      t.state_row = #lines
      add('⋯ ' .. t.state)
    else
      t.state_row = nil
    end
    if t.error then
      add('')
      add('> ragls: ' .. (t.cancelled and 'stopped' or t.error))
    end
    -- (An offline, extractive answer is itself the list of sources.)
    if #t.sources > 0 and not t.state and t.mode ~= 'extractive' then
      add('')
      add('Sources:')
      for n, s in ipairs(t.sources) do
        local sym = (s.symbol and s.symbol ~= '') and (' `' .. s.symbol .. '`') or ''
        add(('[%d] %s:%d%s'):format(n, display(s.uri), s.range.start.line + 1, sym), t)
      end
    end
    if t.footer then
      add('')
      add('_' .. t.footer .. '_')
    end
    add('')
  end
  return lines, cites
end

local function prompt_text()
  local buf = state.buf
  if not (buf and vim.api.nvim_buf_is_valid(buf)) then
    return PROMPT
  end
  local last = vim.api.nvim_buf_get_lines(buf, -2, -1, false)[1] or PROMPT
  if last:sub(1, #PROMPT) ~= PROMPT then
    last = PROMPT .. last
  end
  return last
end

--- Rewrites the buffer from the history, keeping what is typed on the prompt line.
function M.render()
  local buf = state.buf
  if not (buf and vim.api.nvim_buf_is_valid(buf)) then
    return
  end
  local prompt = prompt_text()
  local lines, cites = render_lines()
  state.rendered = #lines
  lines[#lines + 1] = prompt
  state.guard = true
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modified = false
  state.guard = false
  vim.api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  state.marks = {}
  for _, c in ipairs(cites) do
    local id = vim.api.nvim_buf_set_extmark(buf, ns, c.row, c.col, {
      end_col = c.end_col,
      hl_group = 'RaglsCitation',
    })
    state.marks[id] = { turn = c.turn, n = c.n }
  end
  for _, t in ipairs(history().turns) do
    vim.api.nvim_buf_set_extmark(buf, ns, t.first_row, 0, { line_hl_group = 'RaglsChatQuestion' })
    if t.state_row then
      vim.api.nvim_buf_set_extmark(buf, ns, t.state_row, 0, { line_hl_group = 'RaglsChatState' })
    end
  end
  M.update_modifiable()
end

--- Only the prompt line can be edited: the buffer is modifiable while the cursor is there.
function M.update_modifiable()
  local buf = state.buf
  if not (buf and vim.api.nvim_buf_is_valid(buf)) then
    return
  end
  local win = vim.fn.bufwinid(buf)
  local on_prompt = win ~= -1
    and vim.api.nvim_get_current_win() == win
    and vim.api.nvim_win_get_cursor(win)[1] == vim.api.nvim_buf_line_count(buf)
  vim.bo[buf].modifiable = on_prompt
end

local function scroll_to_turn(t)
  local win = state.buf and vim.fn.bufwinid(state.buf) or -1
  if win == -1 or not t.first_row then
    return
  end
  vim.api.nvim_win_call(win, function()
    vim.fn.winrestview({ topline = t.first_row + 1 })
  end)
end

-- Actions ------------------------------------------------------------------------------

local function source_under_cursor()
  local buf = state.buf
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  row = row - 1
  local marks = vim.api.nvim_buf_get_extmarks(buf, ns, { row, 0 }, { row, -1 }, { details = true })
  local best
  for _, m in ipairs(marks) do
    local info = state.marks[m[1]]
    if info then
      local end_col = m[4].end_col or m[3]
      if col >= m[3] and col < end_col then
        best = info
        break
      end
      if not best and m[3] >= col then
        best = info
      end
      best = best or info
    end
  end
  if not best then
    return nil
  end
  local t = history().turns[best.turn]
  return t and t.sources[best.n], best
end

--- `<CR>`: on the prompt line, sends it; elsewhere opens the citation under the cursor (or
--- the first one on the line) in a file window, at the cited line.
function M.enter()
  local buf = state.buf
  if vim.api.nvim_win_get_cursor(0)[1] == vim.api.nvim_buf_line_count(buf) then
    M.send()
    return
  end
  local s = source_under_cursor()
  if not s then
    return
  end
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
  vim.cmd.edit(vim.fn.fnameescape(vim.uri_to_fname(s.uri)))
  vim.api.nvim_win_set_cursor(0, { s.range.start.line + 1, 0 })
  vim.cmd('normal! zt')
end

--- `K`: the snippet of the citation under the cursor, in a float.
function M.snippet()
  local s = source_under_cursor()
  if not s then
    return
  end
  local lines = { ('%s:%d'):format(display(s.uri), s.range.start.line + 1) }
  vim.list_extend(lines, vim.split(s.snippet or '', '\n', { plain = true }))
  vim.lsp.util.open_floating_preview(lines, s.language or '', { border = 'rounded', focus_id = 'ragls_snippet' })
end

function M.stop()
  local r = state.running
  if r and r.client and r.request_id then
    ragls._internal.cancel_request(r.client, r.request_id)
    r:finish({ code = -32800, message = 'stopped' })
  end
end

local Turn = {}
Turn.__index = Turn

function Turn:on_sources(sources)
  if self.done then
    return
  end
  self.turn.sources = sources
  self.turn.state = 'generating…'
  M.render()
end

function Turn:delta(text)
  if self.done then
    return
  end
  self.turn.answer = self.turn.answer .. text
  self.turn.state = 'generating…'
  M.render()
  vim.api.nvim_exec_autocmds('User', { pattern = 'RaglsChatDelta', modeline = false, data = { delta = text } })
end

function Turn:finish(err, result)
  if self.done then
    return
  end
  self.done = true
  ragls._internal.streams[self.token] = nil
  if state.running == self then
    state.running = nil
  end
  local t = self.turn
  t.state = nil
  if err then
    t.cancelled = err.code == -32800
    t.error = err.message or vim.inspect(err)
  else
    t.answer = result.answer or ''
    t.sources = result.sources or t.sources
    t.mode = result.mode
    local timings = result.timings or {}
    local models = result.models or {}
    local total = (timings.retrieveMs or 0) + (timings.rerankMs or 0) + (timings.generateMs or 0)
    t.footer = ('%s · %s · %d ms'):format(result.mode or '?', models.chat or models.embedding or '?', total)
  end
  M.render()
  vim.api.nvim_exec_autocmds('User', {
    pattern = 'RaglsChatDone',
    modeline = false,
    data = { error = err, result = result, turns = #history().turns },
  })
end

--- Asks `question` in the chat (`doc`/`range`: editor context to send with it).
function M.ask(question, doc, range)
  if not question or vim.trim(question) == '' then
    return
  end
  M.stop()
  local turns = history().turns
  local previous = turns[#turns]
  local turn = { question = question, answer = '', sources = {}, state = 'searching the workspace…' }
  if doc and range then
    turn.about = ('%s:%d-%d'):format(display(doc.uri), range.start.line + 1, range['end'].line + 1)
  end
  turns[#turns + 1] = turn
  M.render()
  scroll_to_turn(turn)
  local i = ragls._internal
  local from = vim.api.nvim_get_current_buf()
  if from == state.buf then
    from = vim.fn.bufnr('#')
    from = (from > 0 and vim.api.nvim_buf_is_valid(from)) and from or 0
  end
  local cmd = i.server_cmd()
  if vim.fn.executable(cmd[1]) ~= 1 then
    -- No server: one warning (from ragls.start), and the reason in the chat.
    ragls.start(from)
    turn.state = nil
    turn.error = ('%q not found: set server_path in require("ragls").setup{}'):format(cmd[1])
    M.render()
    return
  end
  ragls.with_client(from, function(client)
    local token = i.next_token()
    local run = setmetatable({ turn = turn, client = client, token = token }, Turn)
    i.streams[token] = run
    state.running = run
    local params = {
      query = M.follow_up_query(question, previous),
      textDocument = doc,
      range = range,
      partialResultToken = token,
      topK = ragls.config.ask_top_k,
    }
    local ok, id = i.request(client, 'rag/ask', params, function(err, result)
      i.main_loop(function()
        run:finish(err, result)
      end)
    end)
    if not ok then
      run:finish({ message = 'the server is not running' })
    else
      run.request_id = id
    end
  end)
end

--- Sends the prompt line.
function M.send()
  local text = vim.trim(prompt_text():sub(#PROMPT + 1))
  if text == '' then
    return
  end
  state.guard = true
  vim.bo[state.buf].modifiable = true
  vim.api.nvim_buf_set_lines(state.buf, -2, -1, false, { PROMPT })
  state.guard = false
  vim.cmd('stopinsert')
  M.ask(text)
end

local function go_to_prompt(insert)
  local buf = state.buf
  local last = vim.api.nvim_buf_line_count(buf)
  vim.api.nvim_win_set_cursor(0, { last, #prompt_text() })
  M.update_modifiable()
  if insert then
    vim.cmd('startinsert!')
  end
end

local function create_buffer()
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_name(buf, BUFNAME)
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'hide'
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = 'markdown'
  local map = function(mode, lhs, rhs, desc)
    vim.keymap.set(mode, lhs, rhs, { buffer = buf, desc = 'ragls chat: ' .. desc })
  end
  map('n', '<CR>', M.enter, 'open the citation under the cursor, or send the prompt')
  map('i', '<CR>', M.send, 'send the question')
  map('n', 'K', M.snippet, 'show the snippet of the citation under the cursor')
  map({ 'n', 'i' }, '<C-c>', M.stop, 'stop the answer')
  map('n', 'q', '<cmd>close<cr>', 'close')
  for _, key in ipairs({ 'i', 'a', 'o', 'I', 'A', 'O' }) do
    map('n', key, function()
      go_to_prompt(true)
    end, 'type a question')
  end
  local group = vim.api.nvim_create_augroup('ragls_chat', { clear = true })
  vim.api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI', 'BufEnter' }, {
    group = group,
    buffer = buf,
    callback = M.update_modifiable,
  })
  -- Belt and braces: anything that changed the text above the prompt is undone.
  vim.api.nvim_create_autocmd({ 'TextChanged', 'TextChangedI' }, {
    group = group,
    buffer = buf,
    callback = function()
      if state.guard then
        return
      end
      local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
      local want = render_lines()
      local same = #lines == #want + 1
      for k = 1, #want do
        same = same and lines[k] == want[k]
      end
      if not same then
        vim.schedule(M.render)
      end
    end,
  })
  return buf
end

local function show()
  if not (state.buf and vim.api.nvim_buf_is_valid(state.buf)) then
    state.buf = create_buffer()
  end
  local win = vim.fn.bufwinid(state.buf)
  if win == -1 then
    local split = ragls.config.chat_split or 'botright vsplit'
    if split == 'float' then
      local w = math.floor(vim.o.columns * 0.7)
      local h = math.floor(vim.o.lines * 0.7)
      win = vim.api.nvim_open_win(state.buf, true, {
        relative = 'editor',
        width = w,
        height = h,
        row = math.floor((vim.o.lines - h) / 2),
        col = math.floor((vim.o.columns - w) / 2),
        border = 'rounded',
        title = ' ragls chat ',
      })
    else
      vim.cmd(split)
      win = vim.api.nvim_get_current_win()
      vim.api.nvim_win_set_buf(win, state.buf)
    end
    vim.wo[win].wrap = true
    vim.wo[win].linebreak = true
    vim.wo[win].conceallevel = 2
  else
    vim.api.nvim_set_current_win(win)
  end
  return win
end

--- :RaglsChat [question] — opens the chat (and asks `question`; a range adds the lines
--- as context).
function M.open(question, line1, line2)
  local from = vim.api.nvim_get_current_buf()
  local doc, range
  if line1 and from ~= state.buf then
    doc, range = ragls._internal.context(from, line1, line2)
  end
  local client = ragls.get_client(from)
  state.root = (client and ragls._internal.client_root(client)) or ragls.root_dir(from)
  show()
  M.render()
  if question and vim.trim(question) ~= '' then
    M.ask(question, doc, range)
  else
    go_to_prompt(false)
  end
end

--- The buffer number of the chat, if open.
function M.bufnr()
  return state.buf
end

return M
