#!/usr/bin/env bash
# zero-gpt2 through the token loader: zero-tokens' file of the corpus trains exactly like the text
# read as bytes (same windows, same order); a run checkpointed at step 10 and resumed trains like
# an uninterrupted one (the loader's position in the blob); --val prints validation losses; the
# report's data section counts the batches; a token >= the model's vocabulary (256) stops the run
# before training on every rank, naming the file and the offset.
# Usage: data_gpt2.sh BIN_DIR MPIRUN OUTDIR CORPUS
set -u
BIN=$1 MPIRUN=$2 OUT=$3 CORPUS=$4
rm -rf "$OUT" && mkdir -p "$OUT"
checks=0 fails=0
check() {
    checks=$((checks + 1))
    if [ "$2" -ne 0 ]; then echo "FAIL: $1"; fails=$((fails + 1)); else echo "ok: $1"; fi
}
final() { grep '^final loss' "$1" | awk '{print $3}'; }
G="--layers 1 --heads 2 --dim 32 --seq 32 --batch 8 --quiet"

"$BIN/zero-tokens" "$CORPUS" "$OUT/one.bin" >/dev/null
check "zero-tokens: the corpus as one token file" $?
"$BIN/zero-tokens" --shards 3 --val 0.1 --val-out "$OUT/val.bin" "$CORPUS" "$OUT/tr.bin" >/dev/null
check "zero-tokens: 3 shards and a validation file" $?

"$MPIRUN" -np 2 "$BIN/zero-gpt2" $G --steps 12 --data "$CORPUS" >"$OUT/text.txt" 2>&1
check "train from the text (bytes)" $?
"$MPIRUN" -np 2 "$BIN/zero-gpt2" $G --steps 12 --data "$OUT/one.bin" >"$OUT/tok.txt" 2>&1
check "train from the token file" $?
[ -n "$(final "$OUT/text.txt")" ] && [ "$(final "$OUT/text.txt")" = "$(final "$OUT/tok.txt")" ]
check "token file and text train alike: $(final "$OUT/text.txt") = $(final "$OUT/tok.txt")" $?

# resume: 6 + 6 steps against 12
ZERO_REPORT="$OUT/straight.json" "$MPIRUN" -np 2 "$BIN/zero-gpt2" $G --steps 12 \
    --data "$OUT/tr_*.bin" >"$OUT/straight.txt" 2>&1
check "12 steps from the shards" $?
"$MPIRUN" -np 2 "$BIN/zero-gpt2" $G --steps 6 --data "$OUT/tr_*.bin" --save "$OUT/ck" \
    >"$OUT/first.txt" 2>&1
check "6 steps, saved" $?
"$MPIRUN" -np 2 "$BIN/zero-gpt2" $G --steps 6 --data "$OUT/tr_*.bin" --resume "$OUT/ck" \
    >"$OUT/second.txt" 2>&1
check "6 more, resumed" $?
[ -n "$(final "$OUT/straight.txt")" ] && [ "$(final "$OUT/straight.txt")" = "$(final "$OUT/second.txt")" ]
check "resumed run ends like the straight one: $(final "$OUT/second.txt") = $(final "$OUT/straight.txt")" $?
[ "$("$BIN/zero-check" get "$OUT/straight.json" data.batches)" = 12 ]
check "report: data.batches = 12" $?
"$BIN/zero-check" get "$OUT/straight.json" data.wait_s >/dev/null
check "report: data.wait_s present" $?
# other data than the checkpoint's position was taken on: refused
"$MPIRUN" -np 2 "$BIN/zero-gpt2" $G --steps 2 --data "$OUT/one.bin" --resume "$OUT/ck" \
    >"$OUT/other.txt" 2>&1
[ $? -ne 0 ] && grep -q "other data or settings" "$OUT/other.txt"
check "resume on other data is refused" $?

"$MPIRUN" -np 2 "$BIN/zero-gpt2" ${G% --quiet} --steps 4 --data "$OUT/tr_*.bin" --val "$OUT/val.bin" \
    --val-every 2 >"$OUT/val.txt" 2>&1
check "training with --val" $?
[ "$(grep -c 'val loss' "$OUT/val.txt")" -eq 2 ]
check "two validation passes in 4 steps with --val-every 2" $?

# a token file (independent writer: printf) with token 300 at index 40: refused at open
{
    printf '\x88\xd8\x34\x01\x01\x00\x00\x00\x64\x00\x00\x00'   # 20240520 (0x0134d888), 1, 100
    head -c 1012 /dev/zero
    for i in $(seq 0 99); do
        if [ "$i" -eq 40 ]; then printf '\x2c\x01'; else printf '\x41\x00'; fi
    done
} >"$OUT/bad.bin"
"$MPIRUN" -np 2 "$BIN/zero-gpt2" $G --steps 2 --data "$OUT/bad.bin" >"$OUT/bad.txt" 2>&1
rc=$?
[ $rc -ne 0 ] && [ "$(grep -c '^zero-gpt2: rank [01]: .*bad.bin: token 300 at token 40 (byte offset 1104) is >= the vocabulary size 256' "$OUT/bad.txt")" -eq 2 ]
check "token 300 refused on both ranks, naming file and offset (rc $rc)" $?
echo "data_gpt2.sh: $checks checks, $fails failures"
