#!/usr/bin/env bash
# fp32 views (zero_config.fp32_views; zero-mlp --fp32-views): at bf16 and fp16 a model that reads
# fp32 parameters and adds fp32 gradients, libzero converting, trains to the same bits as the
# model that converts by hand (zero_convert / zero_accumulate), at stages 0-3, with optimizer and
# parameter offload, with gradient accumulation, at 1-3 ranks, and across a checkpoint
# (10 + save + load + 10 == 20). BIN, OUT, MPIRUN from ctest. Exit 0 = pass.
set -uo pipefail
: "${BIN:?}" "${OUT:?}" "${MPIRUN:?}"
OUT=$OUT/views
rm -rf "$OUT"
mkdir -p "$OUT"
export ZERO_DEVICE=host ZERO_BUCKET_MB=64K
MLP=(--layers 3 --width 96 --batch 24 --seed 11 --quiet)
fail() { echo "FAIL: $*"; exit 1; }
run() { # NP "ENV..." ARGS...
    local np=$1 envs=$2; shift 2
    # shellcheck disable=SC2086
    env $envs "$MPIRUN" -np "$np" "$BIN/zero-mlp" "${MLP[@]}" "$@" > "$OUT/log" 2>&1 ||
        { cat "$OUT/log"; fail "zero-mlp -np $np $envs $*"; }
}
n=0
for c in "2|ZERO_STAGE=0 ZERO_DTYPE=bf16" "2|ZERO_STAGE=1 ZERO_DTYPE=bf16" \
         "2|ZERO_STAGE=2 ZERO_DTYPE=bf16" "2|ZERO_STAGE=3 ZERO_DTYPE=bf16" \
         "2|ZERO_STAGE=0 ZERO_DTYPE=fp16" "2|ZERO_STAGE=3 ZERO_DTYPE=fp16" \
         "3|ZERO_STAGE=3 ZERO_DTYPE=bf16 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_PARAM=cpu" \
         "2|ZERO_STAGE=2 ZERO_DTYPE=bf16 ZERO_GRAD_ACCUM=2" \
         "1|ZERO_STAGE=1 ZERO_DTYPE=fp16 ZERO_GRAD_ACCUM=3"; do
    np=${c%%|*} envs=${c#*|}
    run "$np" "$envs" --steps 10 --export "$OUT/hand.st"
    run "$np" "$envs" --steps 10 --export "$OUT/views.st" --fp32-views
    cmp -s "$OUT/hand.st" "$OUT/views.st" ||
        fail "np $np $envs: fp32 views differ from the hand-converting model"
    echo "ok: np $np $envs: fp32 views == hand-converting, bit for bit"
    n=$((n + 1))
done
# across a checkpoint: the views follow the loaded parameters
envs="ZERO_STAGE=3 ZERO_DTYPE=bf16"
run 2 "$envs" --steps 20 --fp32-views --export "$OUT/straight.st"
run 2 "$envs" --steps 10 --fp32-views --save "$OUT/ck"
run 2 "$envs" --steps 10 --fp32-views --resume "$OUT/ck" --export "$OUT/resumed.st"
cmp -s "$OUT/straight.st" "$OUT/resumed.st" || fail "fp32 views: 20 straight != 10 + resume + 10"
echo "ok: fp32 views across a checkpoint: 20 straight == 10 + save + load + 10"
echo "views: $n configurations; views: PASS"
