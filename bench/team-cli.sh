#!/usr/bin/env bash
# A ref update of the shared team index as CI runs it: `ragls index --store` in a process
# of its own each time (its start, its connections and each statement's first parse and
# plan on a fresh server process included), where bench/team.sh times the updates inside
# one process. Prints the medians of ROUNDS updates with 1% of the files changed, of as
# many runs with nothing changed, and of `ragls --version` (the process alone).
# usage: bench/team-cli.sh [ROUNDS] [CORPUS_DIR]
#   ROUNDS defaults to 10; CORPUS_DIR to what ../shared/eval/perf-corpus.sh prints.
# Starts a throwaway PostgreSQL of its own with scripts/pg.sh (no replica, syncing its
# disk, as bench/team.sh does) and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
rounds=${1:-10}
corpus=${2:-$(bash ../shared/eval/perf-corpus.sh)}
cargo build --release -q
bin=$PWD/target/release/ragls
export RAGLS_PG_STATE="/tmp/ragls-pg-cli-$$" RAGLS_PG_REPLICA=0 RAGLS_PG_DURABLE=1
pg_env=$(scripts/pg.sh start)
# shellcheck disable=SC1090
source "$pg_env"
work="/tmp/ragls-team-cli-$$"
trap 'cd "$repo"; rm -rf "$work"; scripts/pg.sh stop' EXIT
mkdir -p "$work"
cp -a "$corpus" "$work/corpus"
url="$RAGLS_TEST_PG_WRITER_URL"
cd "$work/corpus"
update() { "$bin" index --store "$url" --ref main --set index.dir="$work/index"; }
update >/dev/null
mapfile -t files < <(find . -type f -not -path './.git/*' | sort)
now_us() { date +%s%6N; }
for round in $(seq "$rounds"); do
  # Another 1% each round: every hundredth file, from a different offset.
  for ((i = (round * 7) % 100; i < ${#files[@]}; i += 100)); do
    printf '\n// changed for bench/team-cli.sh, round %s\n' "$round" >>"${files[$i]}"
  done
  # stderr kept: a failed update stops the run with its message, not a silent gap.
  t=$(now_us); update >/dev/null; echo "update $(( $(now_us) - t ))"
  t=$(now_us); update >/dev/null; echo "unchanged $(( $(now_us) - t ))"
  t=$(now_us); "$bin" --version >/dev/null; echo "process $(( $(now_us) - t ))"
done | python3 -c '
import sys, collections
runs = collections.defaultdict(list)
for line in sys.stdin:
    what, us = line.split()
    runs[what].append(int(us) / 1000)
labels = {"update": "1% of the files changed", "unchanged": "nothing changed",
          "process": "ragls --version (the process alone)"}
for what in ("update", "unchanged", "process"):
    v = sorted(runs[what])
    print(f"{labels[what]:38s} median {v[len(v) // 2]:6.1f} ms ({len(v)} runs, {v[0]:.1f}-{v[-1]:.1f})")
'
