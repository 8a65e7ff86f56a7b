#!/usr/bin/env bash
# The loader's batches across world sizes and a resume (test_data.c prints one line per global
# batch: index, epoch, hash of its rows in global order). Usage: data.sh TEST_DATA MPIRUN OUTDIR
set -u
T=$1 MPIRUN=$2 OUT=$3
rm -rf "$OUT" && mkdir -p "$OUT"
checks=0 fails=0
check() { # name, command status
    checks=$((checks + 1))
    if [ "$2" -ne 0 ]; then echo "FAIL: $1"; fails=$((fails + 1)); else echo "ok: $1"; fi
}
batches() { grep '^batch ' "$1"; }

# The data set holds 9 + 5 + 13 = 27 windows of 16 + 1 tokens; G = 12 windows per global batch,
# 9 batches = 108 windows = 4 epochs.
for np in 1 2 3 4; do
    "$MPIRUN" -np $np "$T" union "$OUT/d$np" 12 9 >"$OUT/union$np.txt" 2>"$OUT/union$np.err"
    check "union np $np runs and checks its epochs" $?
    grep -q "test_data union: np $np, 0 failures" "$OUT/union$np.txt"
    check "union np $np: no failed check" $?
done
for np in 2 3 4; do
    cmp -s <(batches "$OUT/union1.txt") <(batches "$OUT/union$np.txt")
    check "np $np sees the global batches of np 1" $?
done
# the same batches without the thread, through pread, and with a deep ring
ZERO_DATA_PREFETCH=0 ZERO_DATA_IO=pread "$MPIRUN" -np 2 "$T" union "$OUT/p0" 12 9 >"$OUT/p0.txt" 2>&1
check "np 2, prefetch 0, pread" $?
cmp -s <(batches "$OUT/union1.txt") <(batches "$OUT/p0.txt")
check "prefetch 0 + pread: the batches of np 1" $?
ZERO_DATA_PREFETCH=7 "$MPIRUN" -np 3 "$T" union "$OUT/p7" 12 9 >"$OUT/p7.txt" 2>&1
check "np 3, prefetch 7" $?
cmp -s <(batches "$OUT/union1.txt") <(batches "$OUT/p7.txt")
check "prefetch 7: the batches of np 1" $?
# the window output (uint16 rows of T + 1, widened by the test): the same batches, through the
# mapping with a ring, and through pread (one preadv per run of rows) with and without one
TEST_DATA_OUTPUT=windows "$MPIRUN" -np 2 "$T" union "$OUT/w2" 12 9 >"$OUT/w2.txt" 2>&1
check "np 2, window output" $?
cmp -s <(batches "$OUT/union1.txt") <(batches "$OUT/w2.txt")
check "window output: the batches of np 1" $?
TEST_DATA_OUTPUT=windows ZERO_DATA_IO=pread "$MPIRUN" -np 3 "$T" union "$OUT/w3" 12 9 >"$OUT/w3.txt" 2>&1
check "np 3, window output, pread" $?
cmp -s <(batches "$OUT/union1.txt") <(batches "$OUT/w3.txt")
check "window output + pread: the batches of np 1" $?
TEST_DATA_OUTPUT=windows ZERO_DATA_IO=pread ZERO_DATA_PREFETCH=0 TEST_DATA_UNIT=3 \
    "$MPIRUN" -np 1 "$T" union "$OUT/w1" 12 9 >"$OUT/w1.txt" 2>&1
check "np 1, window output, pread, prefetch 0, unit 3" $?
ZERO_DATA_IO=pread TEST_DATA_UNIT=3 "$MPIRUN" -np 4 "$T" union "$OUT/pu4" 12 9 >"$OUT/pu4.txt" 2>&1
check "np 4, int32 output, pread, unit 3" $?
# units of 3 consecutive windows shuffled as one: the same at every world size, every epoch still
# every window once (test_data checks), and another order than single windows
for np in 1 4; do
    TEST_DATA_UNIT=3 "$MPIRUN" -np $np "$T" union "$OUT/u$np" 12 9 >"$OUT/unit$np.txt" 2>&1
    check "unit 3, np $np: runs and checks its epochs" $?
done
cmp -s <(batches "$OUT/unit1.txt") <(batches "$OUT/unit4.txt")
check "unit 3: np 4 sees the batches of np 1" $?
for f in w1 pu4; do
    cmp -s <(batches "$OUT/unit1.txt") <(batches "$OUT/$f.txt")
    check "unit 3 through pread ($f): the batches of the mapping" $?
done
! cmp -s <(batches "$OUT/unit1.txt") <(batches "$OUT/union1.txt")
check "unit 3: another order than single windows" $?
[ "$(batches "$OUT/union1.txt" | wc -l)" -eq 9 ]
check "9 batch lines" $?
[ "$(batches "$OUT/union1.txt" | awk '{print $4}' | sort -u | wc -l)" -ge 4 ]
check "the batches span 4 epochs" $?

# Resume: 4 batches at np 2 (48 windows: past the first epoch boundary at 27 on the way), the
# position saved, then np 4 and np 1 go on to batch 9 and must print what the straight run printed.
"$MPIRUN" -np 2 "$T" save "$OUT/r" 12 9 4 "$OUT/pos" >"$OUT/save.txt" 2>&1
check "save at batch 4 (np 2)" $?
for np in 4 1; do
    "$MPIRUN" -np $np "$T" load "$OUT/r$np" 12 9 "$OUT/pos" >"$OUT/load$np.txt" 2>&1
    check "load at np $np" $?
    cmp -s <(batches "$OUT/union1.txt" | tail -n 5) <(batches "$OUT/load$np.txt")
    check "resumed at np $np: batches 4..8 equal the uninterrupted run's" $?
done
cmp -s <(batches "$OUT/union1.txt" | head -n 4) <(batches "$OUT/save.txt")
check "the saving run's batches 0..3 equal the uninterrupted run's" $?
# a position inside an epoch whose next batch crosses into the next epoch: 2 batches = 24 windows
"$MPIRUN" -np 3 "$T" save "$OUT/e" 12 9 2 "$OUT/pos2" >/dev/null 2>&1
check "save at batch 2 (np 3)" $?
"$MPIRUN" -np 2 "$T" load "$OUT/e2" 12 9 "$OUT/pos2" >"$OUT/load_e.txt" 2>&1
check "load at batch 2 (np 2)" $?
cmp -s <(batches "$OUT/union1.txt" | tail -n 7) <(batches "$OUT/load_e.txt")
check "resumed across the epoch boundary (windows 24..35): equal" $?
batches "$OUT/load_e.txt" | head -n 2 | awk '{print $4}' | tr '\n' ' ' | grep -q '^0 1 $'
check "the resumed run's first batches are in epochs 0 then 1" $?

echo "data.sh: $checks checks, $fails failures"
