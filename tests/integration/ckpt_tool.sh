#!/usr/bin/env bash
# zero-ckpt against checkpoints zero-mlp writes (ctest ckpt_tool): usage ckpt_tool.sh, with BIN,
# OUT and MPIRUN set by ctest. Exit 0 = pass; every assertion says what it compared.
#   - verify is 0 on a fresh checkpoint; export is byte for byte zero_export of the same state
#     (np 2 stage 1 fp32, np 3 stage 3 bf16); export --moments lists the moments after the masters
#   - diff of a checkpoint with itself is 0, with one saved 5 steps later 1, with one of other
#     tensor sizes 2
#   - a flipped data byte, a flipped reserved byte of a shard header, a truncated
#     shard, a deleted shard, a changed user.bin: verify is 1 and names the file
#   - info prints the step; a bad command line is 2
set -uo pipefail
: "${BIN:?}" "${OUT:?}" "${MPIRUN:?}"
OUT=$OUT/ckpt_tool
rm -rf "$OUT"
mkdir -p "$OUT"
export ZERO_DEVICE=host ZERO_BUCKET_MB=${ZERO_BUCKET_MB:-16K} # several chunks per model
MLP=(--layers 4 --width 128 --batch 48 --seed 42 --quiet)
CKPT=$BIN/zero-ckpt

fail() { echo "FAIL: $*"; exit 1; }

# mlp NP "VAR=VALUE ..." ARGS...: runs zero-mlp, fails the test when it fails
mlp() {
    local np=$1 envs=$2; shift 2
    # shellcheck disable=SC2086
    env $envs "$MPIRUN" -np "$np" "$BIN/zero-mlp" "${MLP[@]}" "$@" > "$OUT/last.log" 2>&1 ||
        { cat "$OUT/last.log"; fail "zero-mlp -np $np $envs $*"; }
}

# expect RC LOG CMD...: runs CMD (output to $OUT/LOG), fails unless it exits RC
expect() {
    local want=$1 log=$OUT/$2; shift 2
    "$@" > "$log" 2>&1
    local rc=$?
    [ $rc -eq "$want" ] || { cat "$log"; fail "$* exited $rc, expected $want"; }
}

# flip OFFSET FILE: xor one byte with 1, in place (a negative OFFSET counts from the end)
flip() {
    local off=$1 b
    [ "$off" -ge 0 ] || off=$(($(stat -c %s "$2") + off))
    b=$(od -An -tu1 -j "$off" -N1 "$2" | tr -d ' ')
    [ -n "$b" ] || fail "flip: $2 has no byte $off"
    # shellcheck disable=SC2059
    printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$2" bs=1 seek="$off" conv=notrunc status=none
}

# corrupt NAME PATTERN FILE CMD...: a copy of the np-2 checkpoint, CMD run with FILE of its
# step directory as the last argument; verify must exit 1 with PATTERN in its message
corrupt() {
    local name=$1 pattern=$2 file=$3; shift 3
    rm -rf "${OUT:?}/${name:?}"
    cp -r "$OUT/A" "$OUT/$name"
    "$@" "$OUT/$name/step-00000010/$file"
    expect 1 "verify_$name.log" "$CKPT" verify "$OUT/$name"
    grep -q -- "$pattern" "$OUT/verify_$name.log" ||
        { cat "$OUT/verify_$name.log"; fail "$name: verify's message lacks '$pattern'"; }
    echo "ok: $name: verify 1: $(head -1 "$OUT/verify_$name.log")"
}

# np 2, stage 1: checkpoints at steps 5 and 10, the export of step 10's state
mlp 2 "ZERO_STAGE=1" --steps 10 --save "$OUT/A" --save-every 5 --export "$OUT/A.st"
if [ ! -d "$OUT/A/step-00000005" ] || [ ! -d "$OUT/A/step-00000010" ]; then
    fail "zero-mlp --save-every 5 did not leave step-00000005 and step-00000010"
fi
expect 0 verify_A.log "$CKPT" verify "$OUT/A"
grep -q "^OK " "$OUT/verify_A.log" || fail "verify printed no OK line"
cat "$OUT/verify_A.log"
expect 0 export_A.log "$CKPT" export "$OUT/A" "$OUT/A.x.st"
cmp "$OUT/A.x.st" "$OUT/A.st" || fail "np 2 stage 1: zero-ckpt export differs from zero_export"
echo "ok: np 2 stage 1: export == zero_export, byte for byte"
expect 0 export_Am.log "$CKPT" export "$OUT/A" "$OUT/A.m.st" --moments
size=$(stat -c %s "$OUT/A.st") msize=$(stat -c %s "$OUT/A.m.st")
[ "$msize" -gt $((3 * (size - 4096))) ] || fail "export --moments is $msize bytes, masters $size"
# (grep -c reads all its input: grep -q could stop head with SIGPIPE, which pipefail reports)
head -c 65536 "$OUT/A.m.st" | grep -a -c '"layers.4.bias.exp_avg_sq"' > /dev/null ||
    fail "export --moments: no layers.4.bias.exp_avg_sq in the header"
echo "ok: export --moments: $msize bytes (masters only: $size)"

# np 3, stage 3, bf16
mlp 3 "ZERO_STAGE=3 ZERO_DTYPE=bf16" --steps 4 --save "$OUT/B" --export "$OUT/B.st"
expect 0 verify_B.log "$CKPT" verify "$OUT/B"
expect 0 export_B.log "$CKPT" export "$OUT/B" "$OUT/B.x.st"
cmp "$OUT/B.x.st" "$OUT/B.st" || fail "np 3 stage 3 bf16: zero-ckpt export differs from zero_export"
echo "ok: np 3 stage 3 bf16: verify 0; export == zero_export, byte for byte"

# diff
expect 0 diff_same.log "$CKPT" diff "$OUT/A" "$OUT/A"
grep -q "^diff: max_abs=0 max_rel=0 differing=0 tensors=0$" "$OUT/diff_same.log" ||
    { cat "$OUT/diff_same.log"; fail "diff of a checkpoint with itself: wrong summary"; }
expect 1 diff_later.log "$CKPT" diff "$OUT/A/step-00000005" "$OUT/A"
tail -1 "$OUT/diff_later.log"
grep -q "^diff: max_abs=.* differing=[1-9]" "$OUT/diff_later.log" ||
    fail "diff of steps 5 and 10: no differing elements in the summary"
expect 1 diff_np3.log "$CKPT" diff "$OUT/A" "$OUT/B"
mlp 1 "ZERO_STAGE=0" --steps 1 --width 64 --save "$OUT/D" # tensors of other sizes
expect 2 diff_other.log "$CKPT" diff "$OUT/A" "$OUT/D"
cat "$OUT/diff_other.log"
echo "ok: diff: itself 0, 5 steps later 1, another run of the model 1, another model 2"

# info
expect 0 info.log "$CKPT" info "$OUT/A"
grep -Eq "^step +10$" "$OUT/info.log" || { cat "$OUT/info.log"; fail "info does not print step 10"; }
grep -q "layers.0.weight" "$OUT/info.log" || fail "info does not list the tensors"
echo "ok: info: $(grep -E '^step ' "$OUT/info.log")"

# corruption (offset 40..63 of a shard header: reserved zeros, checked when the file is opened
# and covered by the file checksum)
corrupt flipped rank-00001.bin rank-00001.bin flip -100
corrupt header "rank-00000.bin: its header's reserved bytes" rank-00000.bin flip 50
corrupt truncated "rank-00001.bin.*truncated" rank-00001.bin truncate -s -100
corrupt deleted rank-00000.bin rank-00000.bin rm
corrupt user user.bin user.bin flip 0

# bad command lines
expect 2 usage1.log "$CKPT" verify
expect 2 usage2.log "$CKPT" frobnicate "$OUT/A"
expect 2 usage3.log "$CKPT" export "$OUT/A"
expect 2 usage4.log "$CKPT" info "$OUT/A" --moments
expect 0 help.log "$CKPT" --help
echo "ok: bad command lines exit 2"
echo "ckpt_tool: PASS"
