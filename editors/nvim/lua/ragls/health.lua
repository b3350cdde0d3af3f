-- :checkhealth ragls
local M = {}

function M.check()
  local health = vim.health
  health.start('ragls')
  if vim.fn.has('nvim-0.10') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.10 or newer is needed')
  end
  local ragls = require('ragls')
  local cmd = vim.deepcopy(ragls.config.cmd)
  if type(cmd) == 'string' then
    cmd = vim.split(cmd, '%s+', { trimempty = true })
  end
  if ragls.config.server_path and ragls.config.server_path ~= '' then
    cmd[1] = vim.fn.expand(ragls.config.server_path)
  end
  if vim.fn.executable(cmd[1]) == 1 then
    local out = vim.fn.system({ cmd[1], '--version' })
    health.ok(('server: %s (%s)'):format(vim.fn.exepath(cmd[1]), vim.trim(out)))
  else
    health.error(('server %q is not executable'):format(cmd[1]), {
      'Build it with `cargo build --release` and set server_path in require("ragls").setup{}',
    })
  end
  local key_env = (ragls.config.settings.provider or {}).api_key_env or 'OPENROUTER_API_KEY'
  if vim.env[key_env] and vim.env[key_env] ~= '' then
    health.ok(('$%s is set: answers are generated'):format(key_env))
  else
    health.info(('$%s is not set: answers are extractive unless provider.base_url points at a local server'):format(key_env))
  end
  local clients = vim.lsp.get_clients({ name = 'ragls' })
  health.info(('%d ragls client(s) running'):format(#clients))
end

return M
