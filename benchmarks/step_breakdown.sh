#!/usr/bin/env bash
# step_breakdown.sh — where a training step's time goes, per ZeRO stage: the MLP example (or,
# with MODEL=gpt2, the GPT-2 example) on NP ranks (default 2), timed by the engine's report
# (compute = the model's own forward/backward;
# comm = gradient reduce-scatter (at the step, and issued or waited for inside zero_grad_ptr /
# zero_grad_ready during backward) + parameter all-gather + stage-3 gathers; optimizer = AdamW on
# the shard; norm = gradient norm; runtime share = everything but compute over the step).
# Prints a Markdown table.
# Usage: benchmarks/step_breakdown.sh [build dir] ; env MODEL (mlp|gpt2), NP, STEPS, MLP_ARGS,
# GPT2_ARGS, ZERO_* as usual.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
np=${NP:-2}
steps=${STEPS:-40}
model=${MODEL:-mlp}
case $model in
mlp) args=${MLP_ARGS:---layers 8 --width 512 --batch 64} ;;
gpt2) args=${GPT2_ARGS:---layers 8 --heads 4 --dim 128 --seq 64 --batch 8} ;;
*) echo "step_breakdown.sh: MODEL=$model: expected mlp or gpt2" >&2; exit 2 ;;
esac
out=$(mktemp -d)
get() { "$build/bin/zero-check" get "$1" "$2"; }
echo "zero-$model $args, $steps steps, $np ranks, ZERO_BUCKET_MB=${ZERO_BUCKET_MB:-default}, $(nproc) cores"
echo
echo "| stage | ms/step | compute ms | comm ms | optimizer ms | norm ms | other ms | runtime share | bus MB/step | peak device MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for stage in 0 1 2 3; do
    ZERO_STAGE=$stage ZERO_REPORT=$out/r$stage.json "$root/scripts/zero-mpirun" -np "$np" \
        "$build/bin/zero-$model" $args --steps "$steps" --quiet > "$out/log$stage" 2>&1 ||
        { cat "$out/log$stage"; exit 1; }
    r=$out/r$stage.json
    awk -v s="$stage" -v n="$steps" -v wall="$(get "$r" wall_s)" -v model="$(get "$r" model_s)" \
        -v red="$(get "$r" grad_reduce_s)" -v gat="$(get "$r" param_gather_s)" \
        -v gw="$(get "$r" gather_wait_s)" -v opt="$(get "$r" optimizer_s)" \
        -v bw="$(get "$r" in_backward_s)" \
        -v nrm="$(get "$r" norm_s)" -v bus="$(get "$r" bus_bytes_per_step)" \
        -v peak="$(get "$r" device_peak_bytes)" 'BEGIN {
            comm = red + gat + gw + bw; other = wall - model - comm - opt - nrm;
            printf "| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f%% | %.2f | %.1f |\n", s,
                1e3 * wall / n, 1e3 * model / n, 1e3 * comm / n, 1e3 * opt / n, 1e3 * nrm / n,
                1e3 * other / n, 100 * (wall - model) / wall, bus / 1e6, peak / 1048576 }'
done
rm -rf "$out"
