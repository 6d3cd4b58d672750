#!/bin/bash
# Appends this commit's `muse bench --json` results to the benchmark history, one line per run:
#   scripts/bench-record.sh MODELS_DIR [THREADS...]      (default threads: 1 and 2)
# Each GGUF file in MODELS_DIR is measured (-p 256 -n 64 -r 3) at each thread count and tagged
# with the commit, date and model name. `muse bench-report --history bench/history.jsonl`
# then shows speed per commit, flags regressions and draws the roofline. Benchmarks need a
# quiet machine: the history is for noticing slowdowns, CI does not run this.
# With LLAMA_BENCH=/path/to/llama-bench, llama.cpp measures each model and thread count right
# after Muse (records tagged "engine":"llama.cpp"), so the report can compare Muse's speed
# relative to llama.cpp's in the same run, which a machine's slow day does not move.
set -euo pipefail
cd "$(dirname "$0")/.."
models=${1:?usage: scripts/bench-record.sh MODELS_DIR [THREADS...]}
shift
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(1 2)
muse=${MUSE:-build/muse}
history=${MUSE_BENCH_HISTORY:-bench/history.jsonl}
commit=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || commit="$commit-dirty"
date=$(date -u +%Y-%m-%d)
for model in "$models"/*.gguf; do
  name=$(basename "$model" .gguf)
  for t in "${threads[@]}"; do
    echo "bench-record: $name, $t threads" >&2
    json=$("$muse" bench -m "$model" -p 256 -n 64 -t "$t" -r 3 --json)
    echo "{\"commit\":\"$commit\",\"date\":\"$date\",\"engine\":\"muse\",\"model\":\"$name\",${json#\{}" >> "$history"
    if [ -n "${LLAMA_BENCH:-}" ]; then
      # llama-bench's JSON lines: the prompt test, then the generation test.
      fields=$("$LLAMA_BENCH" -m "$model" -p 256 -n 64 -t "$t" -r 3 -o jsonl 2>/dev/null |
        grep -o '"\(model_size\|avg_ts\)": *[0-9.]*' | sed 's/.*: *//' | tr '\n' ' ')
      read -r bytes pp _ tg <<<"$fields"
      echo "{\"commit\":\"$commit\",\"date\":\"$date\",\"engine\":\"llama.cpp\",\"model\":\"$name\",\"pp_tps\":$pp,\"tg_tps\":$tg,\"model_bytes\":$bytes,\"threads\":$t}" >> "$history"
    fi
  done
done
echo "bench-record: appended to $history" >&2
