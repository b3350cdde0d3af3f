#!/usr/bin/env bash
# The million-line benchmark (issue 10): every figure of the scale table, each beside the
# tree-sitter parse floor measured in the same run.
#
# usage: bench/bigcorp.sh [WORK_DIR]      (default /tmp/ragls-bigcorp; needs ../shared/eval)
#
# 1. Builds "bigcorp" (61 crates from crates.io, pinned versions, 1.15M lines of Rust) with
#    ../shared/eval/bigcorp.sh, and a Python venv with py-tree-sitter + tree-sitter-rust
#    (pinned) for ../shared/eval/parse_floor.py: the syntax floor, parsed on one core.
# 2. CLI, a fresh process per step, under /usr/bin/time -v: cold index (wall, CPU = user +
#    sys, peak RSS), index size on disk vs the source, no-change re-index.
# 3. Rebuild reproducibility: a second fresh index of the same files; how many of the
#    QUERIES (300, from the corpus's own function names) change their top 10.
# 4. The lexical stage alone on that index (`cargo bench --bench lexical`; this tree's code
#    whatever RAGLS_BIN says): BM25 scored by store::lexical against FTS5's own bm25(), per
#    query, and whether the rankings agree.
# 5. The language server (`cargo bench --bench lsp -- CORPUS 300`): cold and warm
#    initialize -> ready, `rag/search` p50/p95 while indexing, after, and in a warm server,
#    peak RSS.
# env: RAGLS_BIN=PATH measures that binary instead of building this tree's (the lsp bench
#      drives it too); BIGCORP_SKIP_LSP=1 leaves out the language server part.
# Wall times are inflated when other processes share the cores (`uptime` is printed);
# compare CPU times across runs on a busy machine. Figures only: nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
shared=$(cd "$repo/../shared/eval" 2>/dev/null && pwd) || {
  echo "bigcorp: needs ../shared/eval beside the repository (bigcorp.sh, parse_floor.py)" >&2
  exit 2
}
work=${1:-/tmp/ragls-bigcorp}
mkdir -p "$work"
work=$(cd "$work" && pwd)
queries=300

corpus=$(bash "$shared/bigcorp.sh" "$work")
venv="$work/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tree_sitter, tree_sitter_rust' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q tree-sitter==0.26.1 tree-sitter-rust==0.24.2
fi
if [ -n "${RAGLS_BIN:-}" ]; then
  bin=$(cd "$(dirname "$RAGLS_BIN")" && pwd)/$(basename "$RAGLS_BIN")
  export RAGLS_BIN="$bin"
else
  cargo build --release -q
  bin="$repo/target/release/ragls"
fi

# Runs a command under GNU time; sets T_WALL, T_CPU (user + sys), T_RSS_MB; keeps stdout in $tout.
tout="$work/last.out"
timed() {
  local log="$work/time.log"
  /usr/bin/time -v "$@" >"$tout" 2>"$log" || { cat "$log" >&2; return 1; }
  T_WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; printf "%.2f", s}' "$log")
  T_CPU=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u+s}' "$log")
  T_RSS_MB=$(awk -F': ' '/Maximum resident/ {printf "%.0f", $2/1024}' "$log")
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "?" }'; }
mb() { du -sb "$1" | awk '{printf "%.1f", $1/1e6}'; }

echo "== bigcorp benchmark $(date -u +%FT%TZ), $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
echo "machine: $(nproc) cores; load:$(uptime | sed 's/.*load average//')"
rs_bytes=$(find "$corpus" -name '*.rs' -print0 | xargs -0 cat | wc -c)
rs_lines=$(find "$corpus" -name '*.rs' -print0 | xargs -0 cat | wc -l)
src_mb=$(mb "$corpus")
echo "corpus: $corpus: $rs_lines lines of Rust, $(awk -v b="$rs_bytes" 'BEGIN{printf "%.1f", b/1e6}') MB of .rs, $src_mb MB in all"

timed "$venv/bin/python" "$shared/parse_floor.py" "$corpus"
floor_wall=$T_WALL floor_cpu=$T_CPU
echo "parse floor (py-tree-sitter, one core): ${floor_wall} s wall, ${floor_cpu} s CPU"

idx="$work/index-a" idx2="$work/index-b"
rm -rf "$idx" "$idx2"
timed "$bin" index -w "$corpus" --index-dir "$idx" --json
cold_report=$(cat "$tout")
echo "cold index: ${T_WALL} s wall ($(ratio "$T_WALL" "$floor_cpu")x floor), ${T_CPU} s CPU ($(ratio "$T_CPU" "$floor_cpu")x floor), peak RSS ${T_RSS_MB} MB"
echo "  report: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(", ".join(f"{k} {r[k]}" for k in ("filesSeen","chunksAdded","embedded","embedMs","elapsedMs") if k in r))' "$cold_report")"
idx_mb=$(mb "$idx")
echo "index on disk: ${idx_mb} MB = $(ratio "$idx_mb" "$src_mb")x the source ($src_mb MB): $(cd "$idx" && du -sb -- * | awk '{printf "%s %.1f MB; ", $2, $1/1e6}')"
timed "$bin" index -w "$corpus" --index-dir "$idx"
echo "no-change re-index: ${T_WALL} s wall, ${T_CPU} s CPU, peak RSS ${T_RSS_MB} MB"

# Rebuild reproducibility: the same queries against two fresh builds.
qfile="$work/queries.jsonl"
python3 - "$corpus" "$queries" >"$qfile" <<'EOF'
import json, os, re, sys
root, n = sys.argv[1], int(sys.argv[2])
names = set()
for d, _, files in os.walk(root):
    for f in files:
        if f.endswith(".rs"):
            for m in re.finditer(r"\bfn ([a-z][a-z0-9_]+)", open(os.path.join(d, f), errors="replace").read()):
                words = [w for w in m.group(1).split("_") if w]
                if len(words) >= 2:
                    names.add(" ".join(words))
names = sorted(names)
step = max(1, len(names) // n)
for i, q in enumerate(names[::step][:n]):
    print(json.dumps({"id": str(i), "query": q}))
EOF
timed "$bin" index -w "$corpus" --index-dir "$idx2"
echo "second fresh index: ${T_WALL} s wall, ${T_CPU} s CPU, peak RSS ${T_RSS_MB} MB"
"$bin" search -w "$corpus" --index-dir "$idx" --top-k 10 --queries "$qfile" >"$work/top-a.jsonl"
"$bin" search -w "$corpus" --index-dir "$idx2" --top-k 10 --queries "$qfile" >"$work/top-b.jsonl"
python3 - "$work/top-a.jsonl" "$work/top-b.jsonl" <<'EOF'
import json, sys
def load(p):
    out = {}
    for line in open(p):
        r = json.loads(line)
        out[r["id"]] = [(h["path"], h["start_line"], h["end_line"]) for h in r["results"]]
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
changed = sum(1 for k in a if a[k] != b.get(k))
print(f"rebuild reproducibility: {changed} of {len(a)} queries change their top 10 between two fresh builds")
EOF
rm -rf "$idx2"
echo "lexical stage (cargo bench --bench lexical -- INDEX QUERIES):"
cargo bench -q --bench lexical -- "$idx" "$qfile" 2>&1 | sed 's/^/  /'

if [ -z "${BIGCORP_SKIP_LSP:-}" ]; then
  echo "language server (cargo bench --bench lsp -- CORPUS $queries):"
  cargo bench -q --bench lsp -- "$corpus" "$queries" 2>&1 | sed 's/^/  /'
fi
echo "load at the end:$(uptime | sed 's/.*load average//')"
