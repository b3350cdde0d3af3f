#!/usr/bin/env bash
# CLI-level performance figures on the performance corpus, each step a fresh process.
# usage: bench/perf.sh [CORPUS_DIR]   (default: what ../shared/eval/perf-corpus.sh prints)
# Prints cold index, no-change re-index and warm start to first result (one `ragls search`
# process), each with its wall time and peak RSS, then the in-process latency benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-$(bash ../shared/eval/perf-corpus.sh)}
cargo build --release -q
bin=target/release/ragls
idx=$(mktemp -d)
trap 'rm -rf "$idx"' EXIT
run() { /usr/bin/time -f "%e s, peak RSS %M KB" "$@" 2>&1 >/dev/null | tail -n 1; }
echo "cold index:          $(run $bin index -w "$corpus" --index-dir "$idx")"
echo "no-change re-index:  $(run $bin index -w "$corpus" --index-dir "$idx")"
echo "warm start + search: $(run $bin search -w "$corpus" --index-dir "$idx" 'parse a generic type parameter')"
cargo bench -q --bench perf -- "$corpus" 1000
