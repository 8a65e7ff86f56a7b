#!/usr/bin/env bash
# compare.sh — the libzero port of examples/stacked against the plain trainer it came from
# (docs/PORTING.md). Usage: compare.sh BIN_DIR [OUT_DIR]   (BIN_DIR holds stacked-plain and
# stacked-zero; OUT_DIR, by default a temporary directory removed at the end, keeps the logs).
# mpirun is the repository's scripts/zero-mpirun. Checks, with the default model and
# hyperparameters, fp32, host backend:
#  1. stacked-zero at np 1, stage 0 prints the per-step training losses and the validation losses
#     of stacked-plain to 5 significant digits (relative difference <= 1e-5), and says how many
#     are identical as printed (%.9g, which shows every bit of an fp32 loss; the plain AdamW
#     follows libzero's order of operations, so all of them are expected to be);
#  2. at np 2, ZERO_STAGE 0, 1, 2 and 3 print the same losses and export the same bytes (cmp),
#     with 16 KiB buckets and no resident chunks, so that stage 3 gathers one layer at a time;
#     the np 2 losses are stacked-plain's to 4 significant digits (the batch split over the
#     ranks and the gradients averaged: the same training up to rounding);
#  3. the np 2 stage-3 run, whose validation passes are inside zero_eval_begin / zero_eval_end,
#     prints no "gathered out of the recorded order" warning;
#  4. bf16 at stage 3 (the port's fp32 views: zero_convert / zero_accumulate) trains: its last
#     validation loss is below its first;
#  5. the initial weights (--steps 0 --export), filled shard by shard through zero_tensor.init_fn,
#     are the same bytes at np 1, 2 and 4 (stage 3 at np 4).
# Ends with "stacked compare: PASS", or "FAIL: ..." and exit status 1.
set -uo pipefail
BIN=${1:?usage: compare.sh BIN_DIR [OUT_DIR]}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MPIRUN=$ROOT/scripts/zero-mpirun
if [ -n "${2:-}" ]; then
    OUT=$2
    rm -rf "$OUT"
    mkdir -p "$OUT"
else
    OUT=$(mktemp -d)
    trap 'rm -rf "$OUT"' EXIT
fi
fail() { echo "FAIL: $*"; echo "stacked compare: FAIL"; exit 1; }
# only the settings this script gives: no ZERO_* variable from the caller's environment
for v in $(compgen -e | grep '^ZERO_'); do unset "$v"; done
export ZERO_DEVICE=host

# losses LOG: the training and validation losses, one per line, in order
losses() {
    sed -n -e 's/^step .* | loss \([^ ]*\) | .*/\1/p' -e 's/^val loss \([^ ]*\)$/\1/p' "$1"
}
# agree A B TOL: the two files of numbers have as many lines and agree to relative TOL;
# prints "identical/count max-relative-difference"
agree() {
    paste -d ' ' "$1" "$2" | awk -v tol="$3" -v n1="$(wc -l < "$1")" -v n2="$(wc -l < "$2")" '
        { d = $1 - $2; if (d < 0) d = -d; m = $2 < 0 ? -$2 : $2; r = m > 0 ? d / m : d;
          if (r > worst) worst = r; if ($1 "" == $2 "") same++; n++ }
        END { printf "%d/%d %.3g\n", same, n, worst; exit !(n1 == n2 && n > 0 && worst <= tol) }'
}
# run NAME NP [VAR=VALUE...] -- ARGS...: stacked-zero on NP ranks, its output in $OUT/NAME.log
run() {
    local name=$1 np=$2
    shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" timeout 100 "$MPIRUN" -np "$np" "$BIN/stacked-zero" "$@" \
        > "$OUT/$name.log" 2>&1 || { cat "$OUT/$name.log"; fail "$name: stacked-zero exited $?"; }
}
last_loss() { grep '^step' "$1" | tail -n 1 | sed 's/.*| loss \([^ ]*\) .*/\1/'; }

# 1. np 1, stage 0 against the plain trainer
"$BIN/stacked-plain" > "$OUT/plain.log" 2>&1 ||
    { cat "$OUT/plain.log"; fail "stacked-plain exited $?"; }
cat "$OUT/plain.log"
losses "$OUT/plain.log" > "$OUT/plain.loss"
n=$(wc -l < "$OUT/plain.loss")
[ "$n" -eq 34 ] || fail "stacked-plain printed $n losses, expected 30 steps + 4 validations"
run np1_stage0 1 ZERO_STAGE=0 --
losses "$OUT/np1_stage0.log" > "$OUT/np1_stage0.loss"
r=$(agree "$OUT/np1_stage0.loss" "$OUT/plain.loss" 1e-5) || {
    paste "$OUT/np1_stage0.loss" "$OUT/plain.loss"
    fail "np 1 stage 0 != stacked-plain (identical/count, max relative difference: $r)"
}
echo "ok: np 1 stage 0 vs stacked-plain: ${r% *} losses identical as printed (%.9g)," \
     "max relative difference ${r#* }"

# 2. np 2, stages 0-3: the same losses and weights
S=(ZERO_BUCKET_MB=16K ZERO_PERSIST_KB=0)
for s in 0 1 2 3; do
    run np2_stage$s 2 "${S[@]}" ZERO_STAGE=$s -- --export "$OUT/np2_stage$s.safetensors"
    losses "$OUT/np2_stage$s.log" > "$OUT/np2_stage$s.loss"
done
cat "$OUT/np2_stage3.log"
for s in 1 2 3; do
    cmp -s "$OUT/np2_stage0.loss" "$OUT/np2_stage$s.loss" ||
        fail "np 2: the losses of stage $s != those of stage 0"
    cmp -s "$OUT/np2_stage0.safetensors" "$OUT/np2_stage$s.safetensors" ||
        fail "np 2: the weights stage $s exported != those of stage 0"
done
echo "ok: np 2: stages 0-3 print the same losses (final $(last_loss "$OUT/np2_stage0.log"))" \
     "and export the same bytes"
r=$(agree "$OUT/np2_stage0.loss" "$OUT/plain.loss" 1e-4) || {
    paste "$OUT/np2_stage0.loss" "$OUT/plain.loss"
    fail "np 2 != stacked-plain (max relative difference ${r#* })"
}
echo "ok: np 2 vs stacked-plain: max relative difference ${r#* } (${r% *} identical as printed)"

# 3. evaluation passes at stage 3: no warning (a validation forward outside zero_eval_begin/end
# is recorded into the first micro-step's gather order, which every later step then leaves)
grep -q "stage 3," "$OUT/np2_stage3.log" || fail "the stage-3 run does not say its stage"
grep -q "out of the recorded order" "$OUT/np2_stage3.log" &&
    fail "stage 3 warned about the gather order"
[ "$(grep -c '^val loss' "$OUT/np2_stage3.log")" -eq 4 ] || fail "stage 3: not 4 validation passes"
echo "ok: stage 3 with 4 validation passes: no 'out of the recorded order' warning"

# 4. bf16 at stage 3 trains
run np2_stage3_bf16 2 "${S[@]}" ZERO_STAGE=3 ZERO_DTYPE=bf16 --
mapfile -t v < <(sed -n 's/^val loss //p' "$OUT/np2_stage3_bf16.log")
awk -v a="${v[0]:-nan}" -v b="${v[3]:-nan}" 'BEGIN { exit !(b + 0 < a + 0) }' ||
    fail "bf16 stage 3: validation loss ${v[0]:-?} -> ${v[3]:-?}"
echo "ok: bf16 stage 3: validation loss ${v[0]} -> ${v[3]}" \
     "(fp32: $(sed -n 's/^val loss //p' "$OUT/np2_stage3.log" | tail -n 1))"

# 5. sharded initialisation (init_slice): the same initial model at np 1, 2 and 4
for np in 1 2 4; do
    run init_np$np $np ZERO_STAGE=$(( np == 4 ? 3 : 2 )) -- \
        --steps 0 --export "$OUT/init_np$np.safetensors"
done
cmp -s "$OUT/init_np1.safetensors" "$OUT/init_np2.safetensors" &&
    cmp -s "$OUT/init_np1.safetensors" "$OUT/init_np4.safetensors" ||
    fail "the initial weights differ across world sizes"
echo "ok: the initial weights exported at np 1, 2 and 4 (stage 3) are the same bytes"
echo "stacked compare: PASS"
