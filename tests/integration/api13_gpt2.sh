#!/usr/bin/env bash
# zero-gpt2's learning-rate schedule (issue 13), for ctest (api13_gpt2_schedule). Usage:
# api13_gpt2.sh (BIN, OUT, MPIRUN set by ctest). On 2 ranks, host backend:
#  - --warmup 3 --lr-min 1e-4 --lr 2e-3 over 10 steps: the progress lines print lr 6.67e-04,
#    1.33e-03, 2.00e-03 for the warmup, then a cosine that falls every step and stays above
#    --lr-min;
#  - the same run saved every 4 steps and resumed from step 4 at stage 3 with --steps 6 (the
#    schedule's position comes from the checkpoint's step) exports the same bytes as the straight
#    run;
#  - without --warmup / --lr-min the lr is constant (--lr on every line);
#  - --eps X equals ZERO_EPS=X bit for bit.
set -uo pipefail
: "${BIN:?}" "${OUT:?}" "${MPIRUN:?}"
OUT=$OUT/api13_gpt2
rm -rf "$OUT"
mkdir -p "$OUT"
export ZERO_DEVICE=host
fail() { echo "FAIL: $*"; exit 1; }
G=("$BIN/zero-gpt2" --layers 1 --heads 2 --dim 32 --seq 16 --batch 4 --seed 5 --lr 2e-3)
S=(--warmup 3 --lr-min 1e-4)

# lrs LOG: the lr column of the progress lines, one per line
lrs() { sed -n 's/^step .* | lr \([0-9.e+-]*\) | .*/\1/p' "$1"; }

"$MPIRUN" -np 2 "${G[@]}" "${S[@]}" --steps 10 --export "$OUT/straight.st" > "$OUT/straight.log" 2>&1 ||
    { cat "$OUT/straight.log"; fail "zero-gpt2 --warmup exited $?"; }
cat "$OUT/straight.log"
mapfile -t lr < <(lrs "$OUT/straight.log")
[ "${#lr[@]}" -eq 10 ] || fail "${#lr[@]} lr values printed, expected 10"
[ "${lr[0]} ${lr[1]} ${lr[2]}" = "6.67e-04 1.33e-03 2.00e-03" ] ||
    fail "warmup lrs ${lr[0]} ${lr[1]} ${lr[2]}, expected 6.67e-04 1.33e-03 2.00e-03"
for i in 3 4 5 6 7 8 9; do
    awk -v a="${lr[$((i - 1))]}" -v b="${lr[$i]}" 'BEGIN { exit !(b + 0 <= a + 0 && b + 0 > 1e-4) }' ||
        fail "step $((i + 1)): lr ${lr[$i]} after ${lr[$((i - 1))]} (expected a decay above 1e-4)"
done
awk -v a="${lr[3]}" -v b="${lr[9]}" 'BEGIN { exit !(b + 0 < a + 0) }' || fail "the lr did not decay"
echo "ok: warmup ${lr[0]} ${lr[1]} ${lr[2]}, cosine ${lr[3]} .. ${lr[9]}"

"$MPIRUN" -np 2 "${G[@]}" "${S[@]}" --steps 10 --save "$OUT/ck" --save-every 4 --quiet \
    > "$OUT/saved.log" 2>&1 || { cat "$OUT/saved.log"; fail "zero-gpt2 --save-every"; }
env ZERO_STAGE=3 "$MPIRUN" -np 2 "${G[@]}" "${S[@]}" --steps 6 --resume "$OUT/ck/step-00000004" \
    --export "$OUT/resumed.st" > "$OUT/resumed.log" 2>&1 ||
    { cat "$OUT/resumed.log"; fail "zero-gpt2 --resume"; }
cat "$OUT/resumed.log"
mapfile -t rl < <(lrs "$OUT/resumed.log")
[ "${rl[*]}" = "${lr[*]:4}" ] || fail "resumed lrs ${rl[*]}, the straight run's ${lr[*]:4}"
cmp -s "$OUT/straight.st" "$OUT/resumed.st" || fail "10 straight != 4 + resume (stage 3) + 6"
echo "ok: 10 steps straight == 4, resume at stage 3, 6 more (same lrs, same bytes)"

"$MPIRUN" -np 2 "${G[@]}" --steps 3 > "$OUT/constant.log" 2>&1 ||
    { cat "$OUT/constant.log"; fail "zero-gpt2 without a schedule"; }
mapfile -t cl < <(lrs "$OUT/constant.log")
[ "${cl[*]}" = "2.00e-03 2.00e-03 2.00e-03" ] || fail "constant run printed lrs ${cl[*]}"
echo "ok: no schedule: lr ${cl[*]}"

"$MPIRUN" -np 2 "${G[@]}" --steps 3 --quiet --eps 1e-5 --export "$OUT/eps_flag.st" \
    > "$OUT/eps_flag.log" 2>&1 || { cat "$OUT/eps_flag.log"; fail "zero-gpt2 --eps"; }
env ZERO_EPS=1e-5 "$MPIRUN" -np 2 "${G[@]}" --steps 3 --quiet --export "$OUT/eps_env.st" \
    > "$OUT/eps_env.log" 2>&1 || { cat "$OUT/eps_env.log"; fail "zero-gpt2 ZERO_EPS"; }
cmp -s "$OUT/eps_flag.st" "$OUT/eps_env.st" || fail "--eps 1e-5 != ZERO_EPS=1e-5"
echo "ok: --eps 1e-5 == ZERO_EPS=1e-5"
echo "api13 gpt2: PASS"
