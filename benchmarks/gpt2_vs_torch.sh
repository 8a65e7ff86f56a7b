#!/usr/bin/env bash
# gpt2_vs_torch.sh — zero-gpt2 against the same model in PyTorch (benchmarks/gpt2_torch.py) on the
# CPU: ROUNDS rounds, interleaved, of {zero-gpt2 on NP ranks (scripts/zero-mpirun,
# OMP_NUM_THREADS=1), then the torch script on NP processes (gloo DDP, one thread each)}. Both
# start from the same initial parameters and train on the same batches (gpt2_torch.py reproduces
# zero-gpt2's RNG), so their final losses should agree closely as well.
# Per run: ms/step = median of the per-step times after the first WARMUP steps (zero-gpt2's
# "| X ms |" of rank 0; gpt2_torch.py's rank 0 wall time of the same span); GFLOP/s per rank =
# model FLOPs per rank and step / (ms/step), with (B_r = BATCH / NP sequences per rank, V = 256)
#   3 * (2 * B_r * SEQ * (12 * LAYERS * DIM^2 + V * DIM) + LAYERS * 4 * B_r * SEQ^2 * DIM)
# (matrix products incl. the tied lm head, attention Q K^T and P V over the full T x T square;
# backward = 2 x forward), the formula gpt2_torch.py uses. Medians are over the rounds' medians.
# Ends with: gpt2_vs_torch zero_ms=A torch_ms=B ratio=A/B   (ratio > 1: zero-gpt2 is slower).
# Usage: benchmarks/gpt2_vs_torch.sh [build dir] ; env LAYERS HEADS DIM SEQ BATCH NP STEPS
# WARMUP ROUNDS, TORCH_PY (python with torch, default /opt/torch-venv/bin/python), TORCH_ARGS
# (extra gpt2_torch.py flags, e.g. "--adamw fused"), ZERO_* as usual (zero-gpt2's stage etc.).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
layers=${LAYERS:-8}
heads=${HEADS:-4}
dim=${DIM:-128}
seq=${SEQ:-64}
batch=${BATCH:-8}
np=${NP:-2}
steps=${STEPS:-40}
warmup=${WARMUP:-5}
rounds=${ROUNDS:-5}
torch_py=${TORCH_PY:-/opt/torch-venv/bin/python}
read -r -a torch_args <<< "${TORCH_ARGS:-}"

if ! torch_version=$("$torch_py" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    echo "gpt2_vs_torch: torch is not importable with TORCH_PY=$torch_py;" \
         "install it there (python3 -m venv /opt/torch-venv; /opt/torch-venv/bin/pip install" \
         "torch) or point TORCH_PY at a python that has it" >&2
    "$torch_py" -c 'import torch' 2>&1 | tail -n 1 >&2 || true
    exit 1
fi
[ -x "$build/bin/zero-gpt2" ] ||
    { echo "gpt2_vs_torch: $build/bin/zero-gpt2 not found; build first (scripts/setup.sh)" >&2; exit 1; }
[ "$steps" -gt "$warmup" ] || { echo "gpt2_vs_torch: STEPS must exceed WARMUP" >&2; exit 2; }

shape=(--layers "$layers" --heads "$heads" --dim "$dim" --seq "$seq" --batch "$batch")
gflops() { # ms/step -> GFLOP/s per rank
    awk -v ms="$1" -v L="$layers" -v C="$dim" -v T="$seq" -v B="$batch" -v n="$np" 'BEGIN {
        r = B / n; f = 3 * (2 * r * T * (12 * L * C * C + 256 * C) + L * 4 * r * T * T * C);
        printf "%.2f", f / (ms * 1e-3) / 1e9 }'
}
median() { sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) exit 1; printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "GPT-2 ${shape[*]}, $steps steps ($warmup warmup), $np ranks x 1 thread, $rounds rounds," \
     "ZERO_STAGE=${ZERO_STAGE:-default}, torch $torch_version, $(nproc) cores"
echo
echo "| round | zero ms/step | zero GFLOP/s/rank | zero loss | torch ms/step | torch GFLOP/s/rank | torch loss |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq 1 "$rounds"); do
    OMP_NUM_THREADS=1 "$root/scripts/zero-mpirun" -np "$np" "$build/bin/zero-gpt2" "${shape[@]}" \
        --steps "$steps" > "$out/zero$round" 2>&1 || { cat "$out/zero$round"; exit 1; }
    # step lines: "step    2/10 | loss 5.1009 | grad norm 4.5881 | 3367 tok/s | 76.0 ms | ..."
    zms=$(awk -F'|' -v w="$warmup" '/^step / { split($1, s, "[ /]+"); if (s[2] <= w) next;
            for (i = 2; i <= NF; i++) if ($i ~ / ms *$/) { split($i, m, " "); print m[1] } }' \
            "$out/zero$round" | median) ||
        { echo "gpt2_vs_torch: no step times in zero-gpt2's output:" >&2; cat "$out/zero$round"; exit 1; }
    zloss=$(awk '/^final loss/ { print $3 }' "$out/zero$round")
    OMP_NUM_THREADS=1 "$torch_py" "$root/benchmarks/gpt2_torch.py" --np "$np" "${shape[@]}" \
        --steps "$steps" --warmup "$warmup" --quiet ${torch_args[@]+"${torch_args[@]}"} > "$out/torch$round" 2>&1 ||
        { cat "$out/torch$round"; exit 1; }
    last=$(tail -n 1 "$out/torch$round")
    tms=$(sed -n 's/.*ms_per_step=\([^ ]*\).*/\1/p' <<< "$last")
    tloss=$(sed -n 's/.*loss=\([^ ]*\).*/\1/p' <<< "$last")
    [ -n "$tms" ] || { echo "gpt2_vs_torch: no result line from gpt2_torch.py:" >&2;
                       cat "$out/torch$round"; exit 1; }
    echo "$zms" >> "$out/zero_ms"
    echo "$tms" >> "$out/torch_ms"
    printf "| %d | %.2f | %s | %s | %.2f | %s | %s |\n" "$round" "$zms" "$(gflops "$zms")" \
        "${zloss:-?}" "$tms" "$(gflops "$tms")" "$tloss"
done
zmed=$(median < "$out/zero_ms")
tmed=$(median < "$out/torch_ms")
printf "| median | %.2f | %s | | %.2f | %s | |\n" "$zmed" "$(gflops "$zmed")" "$tmed" "$(gflops "$tmed")"
echo
awk -v a="$zmed" -v b="$tmed" 'BEGIN { printf "gpt2_vs_torch zero_ms=%.2f torch_ms=%.2f ratio=%.3f\n", a, b, a / b }'
