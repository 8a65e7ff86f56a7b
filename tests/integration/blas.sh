#!/usr/bin/env bash
# The examples' BLAS and threads, for ctest. Usage: blas.sh CASE (BIN, MPIRUN set by ctest).
#   linked   zero-gpt2 links OpenBLAS itself (ldd names libopenblas, not only libblas.so.3), and
#            zero-info's BLAS line and zero-gpt2's first line say OpenBLAS
#   threads  threads add up to the cores: under zero-mpirun -np 2 each rank runs
#            max(1, cores / 2) OpenMP threads and OpenBLAS as many; one process with
#            OMP_NUM_THREADS=2 keeps 2 OpenMP threads after its BLAS set-up (OpenBLAS's
#            openblas_set_num_threads would cut OpenMP to 1 in its OpenMP build)
set -uo pipefail
: "${BIN:?}" "${MPIRUN:?}"
fail() { echo "FAIL: $*"; exit 1; }
GPT2=(--layers 1 --heads 2 --dim 16 --seq 8 --batch 2 --steps 1)

# first_line OUTPUT: zero-gpt2's "BLAS: ..." line
blas_line() { grep -m1 '^BLAS: ' <<<"$1"; }

case $1 in
linked)
    libs=$(ldd "$BIN/zero-gpt2") || fail "ldd zero-gpt2"
    echo "$libs" | grep -i blas
    grep -q 'libopenblas' <<<"$libs" || fail "zero-gpt2 does not link libopenblas"
    info=$("$BIN/zero-info") || fail "zero-info exited $?"
    line=$(grep '^BLAS' <<<"$info")
    echo "zero-info: $line"
    [[ $line == "BLAS       OpenBLAS "* ]] || fail "zero-info's BLAS line does not name OpenBLAS"
    out=$(OMP_NUM_THREADS=1 "$MPIRUN" -np 1 "$BIN/zero-gpt2" "${GPT2[@]}" 2>&1) ||
        fail "zero-gpt2 exited $?: $out"
    line=$(blas_line "$out")
    echo "zero-gpt2: $line"
    [[ $line == "BLAS: OpenBLAS "*"(libopenblas"* ]] || fail "zero-gpt2's BLAS line: '$line'"
    ;;
threads)
    cores=$(nproc)
    want=$(( cores / 2 > 0 ? cores / 2 : 1 ))
    out=$(env -u OMP_NUM_THREADS -u OPENBLAS_NUM_THREADS "$MPIRUN" -np 2 "$BIN/zero-gpt2" \
          "${GPT2[@]}" 2>&1) || fail "zero-gpt2 -np 2 exited $?: $out"
    line=$(blas_line "$out")
    echo "np 2 on $cores cores: $line"
    [[ $line =~ ,\ ([0-9]+)\ threads?\ .*OpenMP:\ ([0-9]+)\ thread ]] || fail "no thread counts"
    [ "${BASH_REMATCH[1]}" = "$want" ] || fail "BLAS threads ${BASH_REMATCH[1]}, want $want"
    [ "${BASH_REMATCH[2]}" = "$want" ] || fail "OpenMP threads ${BASH_REMATCH[2]}, want $want"
    out=$(OMP_NUM_THREADS=2 "$MPIRUN" -np 1 "$BIN/zero-gpt2" "${GPT2[@]}" 2>&1) ||
        fail "zero-gpt2 -np 1 exited $?: $out"
    line=$(blas_line "$out")
    echo "np 1, OMP_NUM_THREADS=2: $line"
    [[ $line =~ OpenMP:\ 2\ threads ]] || fail "the model lost its OpenMP threads"
    ;;
*) fail "unknown case $1" ;;
esac
echo "PASS"
