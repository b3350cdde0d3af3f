#!/bin/sh
# Takes the README's screenshot of the Neovim plugin: a real Neovim in tmux (160x42) on a
# copy of test/fixture, offline (extractive answers), :RaglsChat with a question and a
# follow-up; the pane is rendered to HTML and photographed with headless Chromium.
#   editors/nvim/test/screenshot.sh [OUT.png]     (default docs/screenshots/nvim-chat.png)
# Needs tmux, chromium and python3; NVIM and RAGLS_BIN as for run.sh. Not part of CI.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PLUGIN=$(dirname "$HERE")
REPO=$(cd "$PLUGIN/../.." && pwd)
OUT=${1:-$REPO/docs/screenshots/nvim-chat.png}
case $OUT in /*) ;; *) OUT=$(pwd)/$OUT ;; esac
NVIM=${NVIM:-$PLUGIN/.venv/bin/nvim}
RAGLS_BIN=${RAGLS_BIN:-$REPO/target/debug/ragls}
TMP=$(mktemp -d)
trap 'tmux kill-session -t ragls-shot 2>/dev/null || true; rm -rf "$TMP"' EXIT
cp -R "$HERE/fixture" "$TMP/ws"
cat >"$TMP/init.lua" <<LUA
vim.opt.runtimepath:prepend('$PLUGIN')
vim.o.termguicolors = true
vim.o.swapfile = false
vim.o.laststatus = 2
vim.o.statusline = [[%f %= %{luaeval("require('ragls').statusline()")} ]]
require('ragls').setup({
  server_path = '$RAGLS_BIN',
  cmd_env = { XDG_CACHE_HOME = '$TMP/cache', XDG_CONFIG_HOME = '$TMP/config', OPENROUTER_API_KEY = '' },
  settings = { embedding = { provider = 'builtin' }, rerank = { enabled = false }, index = { dir = '$TMP/index' } },
  open_quickfix = false,
})
LUA
tmux new-session -d -s ragls-shot -x 160 -y 42 "cd $TMP/ws && $NVIM -u $TMP/init.lua billing/invoice.py"
sleep 4
tmux send-keys -t ragls-shot ':RaglsChat how is the invoice total computed?' Enter
sleep 3
tmux send-keys -t ragls-shot 'A' 'where is the discount applied?' Enter
sleep 3
tmux send-keys -t ragls-shot Escape
sleep 1
tmux capture-pane -t ragls-shot -e -p >"$TMP/pane.ansi"
python3 - "$TMP/pane.ansi" "$TMP/pane.html" <<'PY'
import html, re, sys
BASE = ['#1e1e1e', '#cd3131', '#0dbc79', '#e5e510', '#2472c8', '#bc3fbc', '#11a8cd', '#e5e5e5',
        '#666666', '#f14c4c', '#23d18b', '#f5f543', '#3b8eea', '#d670d6', '#29b8db', '#ffffff']
def color256(n):
    if n < 16: return BASE[n]
    if n < 232:
        n -= 16; steps = [0, 95, 135, 175, 215, 255]
        return '#%02x%02x%02x' % (steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    v = 8 + (n - 232) * 10; return '#%02x%02x%02x' % (v, v, v)
out = []
for line in open(sys.argv[1], encoding='utf-8', errors='replace').read().split('\n'):
    fg = bg = None; bold = ul = False; parts = []
    for tok in re.split(r'(\x1b\[[0-9;]*m)', line):
        m = re.fullmatch(r'\x1b\[([0-9;]*)m', tok)
        if not m:
            if tok:
                style = ''
                if fg: style += f'color:{fg};'
                if bg: style += f'background:{bg};'
                if bold: style += 'font-weight:bold;'
                if ul: style += 'text-decoration:underline;'
                parts.append(f'<span style="{style}">{html.escape(tok)}</span>')
            continue
        codes = [int(c) if c else 0 for c in m.group(1).split(';')]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0: fg = bg = None; bold = ul = False
            elif c == 1: bold = True
            elif c == 4: ul = True
            elif c == 22: bold = False
            elif c == 24: ul = False
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 2: val = '#%02x%02x%02x' % tuple(codes[i + 2:i + 5]); i += 4
                else: val = color256(codes[i + 2]); i += 2
                if c == 38: fg = val
                else: bg = val
            elif c == 39: fg = None
            elif c == 49: bg = None
            elif 30 <= c <= 37: fg = BASE[c - 30]
            elif 40 <= c <= 47: bg = BASE[c - 40]
            elif 90 <= c <= 97: fg = BASE[c - 90 + 8]
            elif 100 <= c <= 107: bg = BASE[c - 100 + 8]
            i += 1
    out.append(''.join(parts))
page = ('<html><body style="margin:0;background:#14161b;color:#e0e2ea"><pre style="margin:0;padding:6px;'
        'font:13px/17px DejaVu Sans Mono,monospace">' + '\n'.join(out) + '</pre></body></html>')
open(sys.argv[2], 'w').write(page)
PY
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$TMP/chromium" --hide-scrollbars \
  --window-size=1300,730 --screenshot="$OUT" "file://$TMP/pane.html" >/dev/null 2>&1
echo "screenshot: $OUT"
