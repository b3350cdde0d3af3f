-- ragls user commands. They start the server on first use; call
-- require('ragls').setup{...} to start it automatically for file buffers and to set
-- the server path and settings.
if vim.g.loaded_ragls then
  return
end
vim.g.loaded_ragls = true

if vim.fn.has('nvim-0.10') ~= 1 then
  vim.notify('ragls: Neovim 0.10 or newer is needed', vim.log.levels.WARN)
  return
end

local function ragls()
  return require('ragls')
end

local command = vim.api.nvim_create_user_command

command('RaglsAsk', function(o)
  if o.range > 0 then
    ragls().ask(o.args, o.line1, o.line2)
  else
    ragls().ask(o.args)
  end
end, {
  nargs = '*',
  range = true,
  desc = 'ragls: ask a question about the workspace (a range adds the lines as context)',
})

command('RaglsChat', function(o)
  if o.range > 0 then
    ragls().chat(o.args, o.line1, o.line2)
  else
    ragls().chat(o.args)
  end
end, {
  nargs = '*',
  range = true,
  desc = 'ragls: the chat buffer (history, follow-ups); an argument asks it, a range adds the lines',
})

command('RaglsExplain', function(o)
  ragls().explain(o.line1, o.line2)
end, { range = true, desc = 'ragls: explain the selected lines (default: the current line)' })

command('RaglsSearch', function(o)
  ragls().search(o.args)
end, { nargs = '*', desc = 'ragls: search the workspace; results in the quickfix list' })

command('RaglsRelated', function(o)
  if o.range > 0 then
    ragls().related(o.line1, o.line2)
  else
    ragls().related()
  end
end, { range = true, desc = 'ragls: code related to the selection or the symbol under the cursor' })

command('RaglsStatus', function()
  ragls().show_status()
end, { desc = 'ragls: index status' })

command('RaglsReindex', function(o)
  ragls().reindex(o.bang)
end, { bang = true, desc = 'ragls: update the index (! re-reads every file)' })

command('RaglsCancel', function()
  ragls().cancel()
end, { desc = 'ragls: stop the answer being streamed' })
