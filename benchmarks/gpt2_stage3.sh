#!/usr/bin/env bash
# gpt2_stage3.sh — stage-3 cost on the GPT-2 example: step time at stage 0 and at stage 3 with
# prefetch on and off, and the share of the step spent inside zero_gather (issuing and waiting
# for all-gathers). Prints a Markdown table.
# Usage: benchmarks/gpt2_stage3.sh [build dir]; env NP (2), STEPS (20), GPT2_ARGS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
np=${NP:-2}
steps=${STEPS:-20}
args=${GPT2_ARGS:---layers 8 --heads 4 --dim 128 --seq 64 --batch 8}
out=$(mktemp -d)
get() { "$build/bin/zero-check" get "$1" "$2"; }
echo "zero-gpt2 $args, $steps steps, $np ranks, ZERO_PERSIST_KB=0 ZERO_BUCKET_MB=${ZERO_BUCKET_MB:-default}, $(nproc) cores"
echo
echo "| run | ms/step | vs stage 0 | in zero_gather ms/step | share of step | prefetches used |"
echo "|---|---|---|---|---|---|"
base=""
for run in "stage0 0 64" "stage3-prefetch 3 64" "stage3-no-prefetch 3 0"; do
    set -- $run
    ZERO_STAGE=$2 ZERO_PREFETCH_MB=$3 ZERO_PERSIST_KB=0 ZERO_REPORT=$out/$1.json \
        "$root/scripts/zero-mpirun" -np "$np" "$build/bin/zero-gpt2" $args --steps "$steps" \
        --quiet > "$out/$1.log" 2>&1 || { cat "$out/$1.log"; exit 1; }
    r=$out/$1.json
    wall=$(get "$r" wall_s)
    [ -n "$base" ] || base=$wall
    awk -v name="$1" -v n="$steps" -v wall="$wall" -v base="$base" \
        -v gw="$(get "$r" gather_wait_s)" -v hits="$(get "$r" prefetch_hits)" 'BEGIN {
            printf "| %s | %.1f | %.2fx | %.1f | %.1f%% | %d |\n", name, 1e3 * wall / n,
                wall / base, 1e3 * gw / n, 100 * gw / wall, hits }'
done
rm -rf "$out"
