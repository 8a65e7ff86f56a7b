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
fi
