#!/bin/sh
# End-to-end test of the extension in the real VS Code workbench: code-server 4.139.1
# (VS Code 1.139.1) driven through Debian's Chromium with playwright-core, against the
# ragls binary under test and a fake OpenAI-compatible chat endpoint.
# `install.sh` (next to this file) installs what it needs, from package registries, into
# ~/.cache/ragls-ci once; this script runs it first (a few seconds when all is there).
#
#   cargo build && editors/vscode/test/e2e/run.sh
#
# Screenshots of each step and the code-server log go to $E2E_OUT (default
# target/e2e-screenshots). Environment (defaults in brackets): RAGLS_BIN
# [target/debug/ragls], VSIX [packaged here with @vscode/vsce], E2E_TIMEOUT [600 s]; NODE24,
# CODE_SERVER, CHROMIUM and PLAYWRIGHT come from install.sh unless set.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
EXT=$(cd "$HERE/../.." && pwd)
REPO=$(cd "$EXT/../.." && pwd)

eval "$("$HERE/install.sh")"
RAGLS_BIN=${RAGLS_BIN:-$REPO/target/debug/ragls}
case $RAGLS_BIN in /*) ;; *) RAGLS_BIN=$(pwd)/$RAGLS_BIN ;; esac
E2E_OUT=${E2E_OUT:-$REPO/target/e2e-screenshots}

for f in "$RAGLS_BIN" "$NODE24" "$CODE_SERVER" "$CHROMIUM" "$PLAYWRIGHT"; do
  if [ ! -e "$f" ]; then
    echo "e2e: missing $f (build ragls with cargo build; install.sh installs the rest)" >&2
    exit 2
  fi
done

rm -rf "$E2E_OUT" && mkdir -p "$E2E_OUT"
if [ -z "${VSIX:-}" ]; then
  VSIX=$E2E_OUT/ragls.vsix
  (cd "$EXT" && npm run -s compile && npx --yes @vscode/vsce@3 package -o "$VSIX" >/dev/null)
fi

export RAGLS_BIN NODE24 CODE_SERVER CHROMIUM PLAYWRIGHT E2E_OUT VSIX
unset OPENROUTER_API_KEY
exec timeout "${E2E_TIMEOUT:-600}" "$NODE24" "$HERE/e2e.js"
