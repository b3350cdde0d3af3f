#!/usr/bin/env bash
# #13's two targets in one of this shared VM's slow hours, measured through an anchor.
#
# A slow hour cannot be waited for, and a fixed CPU loop does not tell one (the VM's slow
# stretches hit PostgreSQL more than a loop that fits in a core's cache). But one slow
# hour was recorded: on 2026-12-04, late evening, the code of 9a27eb3 ran seven times in
# it (bench/team-perf-2026-12-04d.txt §1-2). This script builds that code again, runs it
# and this checkout in alternating pairs on one throwaway server, and scales the anchor's
# recorded slow-hour figures by each figure's share in the pairs: what this checkout
# would have measured in that hour.
#
# usage: bench/team-anchor.sh [PAIRS]   (default 3; TEAM_QUERIES, default 3200)
# Needs the anchor commit in the clone's history and ../shared/eval/perf-corpus.sh.
# Prints each run's 16-connection p95 and 1% update ratio, then the projection.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
queries=${TEAM_QUERIES:-3200}
anchor=9a27eb3
# The anchor's figures in the slow hour: 16 connections' p95 (ms) and the 1% update's
# ratio to re-chunking, run by run.
slow_p95="63.3 68.7 83.3 67.2 64.8 78.3 62.2"
slow_ratio="5.7 5.1 4.5 5.5 5.5 4.5 5.3"

if ! git cat-file -e "$anchor^{commit}" 2>/dev/null; then
  echo "team-anchor.sh: commit $anchor is not in this clone (a shallow one?): git fetch --unshallow first" >&2
  exit 1
fi
corpus=$(bash ../shared/eval/perf-corpus.sh)
work=$(mktemp -d /tmp/ragls-anchor-XXXXXX)
# A server of its own, as bench/team.sh starts (its state outside $work: the server runs
# as an unprivileged user, and mktemp makes $work private).
export RAGLS_PG_STATE="/tmp/ragls-pg-anchor-$$" RAGLS_PG_REPLICA=0 RAGLS_PG_DURABLE=1
cleanup() {
  scripts/pg.sh stop >/dev/null 2>&1 || true
  git worktree remove --force "$work/anchor" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Both benchmarks built by this checkout's toolchain into its target directory.
bench_binary() {
  (cd "$1" && CARGO_TARGET_DIR="$OLDPWD/target" cargo bench --no-run --bench team 2>&1) |
    sed -n 's/.*Executable benches\/team.rs (\(.*\))/\1/p' | tail -1
}
git worktree add -q --detach "$work/anchor" "$anchor"
echo "building the anchor ($anchor) and this checkout ($(git rev-parse --short HEAD))..."
cp "$(bench_binary "$work/anchor")" "$work/team-anchor"
cp "$(bench_binary .)" "$work/team-head"

pg_env=$(scripts/pg.sh start)
# shellcheck disable=SC1090
source "$pg_env"
psql=("$RAGLS_TEST_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)

# One run on a fresh database: "p95 ratio" of its 16-connection line and its update line.
run() {
  local db="ragls_anchor_$RANDOM$$" out
  "${psql[@]}" "$RAGLS_TEST_PG_URL" -c "CREATE DATABASE $db OWNER ragls_writer"
  "${psql[@]}" "${RAGLS_TEST_PG_URL%/*}/$db" -c "CREATE EXTENSION vector"
  out=$(RAGLS_BENCH_PG_URL="${RAGLS_TEST_PG_WRITER_URL%/*}/$db" TEAM_ROUNDS=40 \
    "$work/$1" "$corpus" "$queries" --bench 2>&1)
  "${psql[@]}" "$RAGLS_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  echo "$out" | awk '
    /^search, 16 client\(s\) median/ && !p95 { for (i = 1; i <= NF; i++) if ($i == "p95") p95 = $(i + 1) }
    /^1% update +median of/ { for (i = 1; i <= NF; i++) if ($i == "ratio") { r = $(i + 1); sub(/x$/, "", r) } }
    END { if (p95 == "" || r == "") exit 1; print p95, r }'
}

results=()
for i in $(seq "$pairs"); do
  for who in team-anchor team-head; do
    figures=$(run "$who") || { echo "team-anchor.sh: $who printed no figures" >&2; exit 1; }
    echo "pair $i  $who  p95 ${figures% *} ms  ratio ${figures#* }x"
    results+=("$who $figures")
  done
done
printf '%s\n' "${results[@]}" | awk -v slow_p95="$slow_p95" -v slow_ratio="$slow_ratio" '
  $1 == "team-anchor" { ap = $2; ar = $3 }
  $1 == "team-head" { n++; sp += $2 / ap; sr += $3 / ar }
  END {
    np = split(slow_p95, p, " "); nr = split(slow_ratio, r, " ")
    for (i = 1; i <= np; i++) { mp += p[i] / np; if (i == 1 || p[i] < lp) lp = p[i]; if (p[i] > hp) hp = p[i] }
    for (i = 1; i <= nr; i++) { mr += r[i] / nr; if (i == 1 || r[i] < lr) lr = r[i]; if (r[i] > hr) hr = r[i] }
    sp /= n; sr /= n
    printf "head against the anchor, %d pairs: p95 x%.2f, update ratio x%.2f\n", n, sp, sr
    printf "in the anchor'\''s slow hour: 16 clients'\'' p95 %.0f ms (%.0f-%.0f; target <= 50), 1%% update %.1fx (%.1f-%.1f; target <= 5)\n",
      sp * mp, sp * lp, sp * hp, sr * mr, sr * lr, sr * hr
  }'
