#!/usr/bin/env bash
# run-main.sh — the main job: set up and build, then train the MLP example on 2 ranks at ZeRO
# stage 2, then write the GPT-2 example's text as token files (zero-tokens) and train the GPT-2
# example from them on 2 ranks at stage 3 (host backend where there is no GPU),
# printing per-step progress, and export the weights. Extra arguments go to zero-mlp; ZERO_*
# variables tune the runtime (docs/ENV.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
mkdir -p "$root/out"
export ZERO_STAGE=${ZERO_STAGE:-2}
export ZERO_REPORT=${ZERO_REPORT:-$root/out/mlp-report.json}
echo "== zero-mlp: an MLP on synthetic regression data, ZeRO stage $ZERO_STAGE, ${NP:-2} ranks"
"$root/scripts/zero-mpirun" -np "${NP:-2}" "$root/build/bin/zero-mlp" --steps 60 \
    --export "$root/out/mlp.safetensors" "$@"
echo "report: $ZERO_REPORT; weights: $root/out/mlp.safetensors"
if [ -x "$root/build/bin/zero-gpt2" ]; then
    echo
    echo "== zero-tokens: examples/gpt2/data/corpus.txt as token files (2 training shards, 10% validation)"
    rm -f "$root"/out/corpus_0*.bin "$root/out/corpus_val.bin"
    "$root/build/bin/zero-tokens" --shards 2 --val 0.1 --val-out "$root/out/corpus_val.bin" \
        "$root/examples/gpt2/data/corpus.txt" "$root/out/corpus.bin"
    echo
    echo "== zero-gpt2: a byte-level GPT-2 trained from those files (libzero's prefetching loader), ZeRO stage 3, ${NP:-2} ranks"
    ZERO_STAGE=3 ZERO_REPORT="$root/out/gpt2-report.json" \
        "$root/scripts/zero-mpirun" -np "${NP:-2}" "$root/build/bin/zero-gpt2" \
        --data "$root/out/corpus_0*.bin" --val "$root/out/corpus_val.bin" --val-every 25 \
        --export "$root/out/gpt2.safetensors"
    echo "report: $root/out/gpt2-report.json; weights: $root/out/gpt2.safetensors"

    # What ZeRO is for, with no buffer variable set: a device of 18 MiB per rank (the host
    # backend's cap; on a GPU its own memory), the same 1.6 M-parameter GPT-2 refused at stage 0
    # with the advisor's message, then trained at stage 3; then, with the optimizer offloaded, a
    # 3.6 M-parameter one on the same device. Each run prints its device memory beside the formula.
    cap=${DEMO_CAP:-18M}
    demo=(--layers 8 --heads 4 --seq 64 --batch 8 --steps 5 --data "$root/out/corpus_0*.bin")
    echo
    echo "== ZeRO under a device cap of $cap per rank (ZERO_DEVICE_MEMORY), ${NP:-2} ranks, no other variable"
    echo "-- stage 0, 1.6 M parameters (16 bytes each on every rank):"
    if ZERO_STAGE=0 ZERO_DEVICE_MEMORY=$cap ZERO_REPORT= ZERO_DEBUG=NONE \
        "$root/scripts/zero-mpirun" -np "${NP:-2}" "$root/build/bin/zero-gpt2" "${demo[@]}" \
        --dim 128 >"$root/out/demo-stage0.log" 2>&1; then
        echo "   (it fit: raise the model or lower DEMO_CAP to see the refusal)"
    else
        grep -m1 "zero_init failed" "$root/out/demo-stage0.log" | sed 's/^/   /'
    fi
    echo "-- stage 3, the same model:"
    ZERO_STAGE=3 ZERO_DEVICE_MEMORY=$cap ZERO_REPORT= \
        "$root/scripts/zero-mpirun" -np "${NP:-2}" "$root/build/bin/zero-gpt2" "${demo[@]}" \
        --dim 128 | grep -E "parameters|^step +5/|^memory per rank"
    echo "-- stage 3 with the optimizer offloaded to host memory, 3.6 M parameters:"
    ZERO_STAGE=3 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_DEVICE_MEMORY=$cap ZERO_REPORT= \
        "$root/scripts/zero-mpirun" -np "${NP:-2}" "$root/build/bin/zero-gpt2" "${demo[@]}" \
        --dim 192 | grep -E "parameters|^step +5/|^memory per rank"
fi
