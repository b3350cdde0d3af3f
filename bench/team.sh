#!/usr/bin/env bash
# The shared team index on PostgreSQL + pgvector: benchmark figures and, with --eval, the
# retrieval-quality check against that backend.
# usage: bench/team.sh [CORPUS_DIR] [--eval]
#   CORPUS_DIR defaults to what ../shared/eval/perf-corpus.sh prints.
# Starts a throwaway PostgreSQL of its own with scripts/pg.sh, a primary without a
# replica (one replaying beside it on a small machine's cores slows the writer), and
# stops it at the end; it syncs its disk as a team's server does (RAGLS_PG_DURABLE=1).
# Prints: full index, a 1% update beside re-chunking those files alone, search
# latency (median, p95) with 1 and 16 concurrent clients, the database's size. With
# --eval, runs ../shared/eval/dev-eval.sh against the PostgreSQL backend
# (RAGLS_ARGS="--store URL --set store.overlay=false"), then against SQLite, to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=""
eval=no
for a in "$@"; do
  case "$a" in
    --eval) eval=yes ;;
    *) corpus="$a" ;;
  esac
done
[ -n "$corpus" ] || corpus=$(bash ../shared/eval/perf-corpus.sh)
export RAGLS_PG_STATE="/tmp/ragls-pg-bench-$$" RAGLS_PG_REPLICA=0 RAGLS_PG_DURABLE=1
pg_env=$(scripts/pg.sh start)
# shellcheck disable=SC1090
source "$pg_env"
# A database of its own, so the full index is a cold one (file versions and vectors are
# shared by everything in a database).
db="ragls_bench_$$"
psql=("$RAGLS_TEST_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)
"${psql[@]}" "$RAGLS_TEST_PG_URL" -c "CREATE DATABASE $db OWNER ragls_writer"
"${psql[@]}" "${RAGLS_TEST_PG_URL%/*}/$db" -c "CREATE EXTENSION vector"
cleanup_db() { "${psql[@]}" "$RAGLS_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; }
trap 'cleanup_db; scripts/pg.sh stop' EXIT
RAGLS_BENCH_PG_URL="${RAGLS_TEST_PG_WRITER_URL%/*}/$db" cargo bench -q --bench team -- "$corpus" ${TEAM_QUERIES:-800}
if [ "$eval" = yes ]; then
  cargo build --release -q
  echo "dev-eval, PostgreSQL backend:"
  RAGLS_ARGS="--store $RAGLS_TEST_PG_WRITER_URL --ref eval --set store.overlay=false" \
    EVAL_DIR=/tmp/ragls-dev-eval-pg bash ../shared/eval/dev-eval.sh target/release/ragls
  echo "dev-eval, SQLite backend:"
  EVAL_DIR=/tmp/ragls-dev-eval-pg bash ../shared/eval/dev-eval.sh target/release/ragls
fi
