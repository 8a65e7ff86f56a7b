#!/usr/bin/env bash
# run-main.sh — the main job: set up and build, then train the MLP example on 2 ranks at ZeRO
# stage 2 and the GPT-2 example on 2 ranks at stage 3 (host backend where there is no GPU),
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
    echo "== zero-gpt2: a byte-level GPT-2 on examples/gpt2/data/corpus.txt, ZeRO stage 3, ${NP:-2} ranks"
    ZERO_STAGE=3 ZERO_REPORT="$root/out/gpt2-report.json" \
        "$root/scripts/zero-mpirun" -np "${NP:-2}" "$root/build/bin/zero-gpt2" \
        --export "$root/out/gpt2.safetensors"
    echo "report: $root/out/gpt2-report.json; weights: $root/out/gpt2.safetensors"
fi
