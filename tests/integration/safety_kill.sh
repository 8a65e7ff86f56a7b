#!/usr/bin/env bash
# safety_kill.sh — a rank killed (SIGKILL) in the middle of training: the others must end within
# the bound, never hang, and the output says what ended them.
# Usage: safety_kill.sh TEST_SAFETY [NP]   (env MPIRUN: scripts/zero-mpirun, as ctest passes it)
# `test_safety kill` runs two clean steps at ZERO_TIMEOUT_S=5, then rank 1 raises SIGKILL before
# its third backward. Two things can end the other ranks:
#  - mpirun: Open MPI aborts the whole job when a rank dies of a signal (its default; it then
#    prints "... exited on signal 9 (Killed)") and kills the survivors wherever they wait;
#  - libzero: a survivor's wait for the dead rank's reduction times out after ZERO_TIMEOUT_S and
#    zero_step returns ZERO_ERR_COMM (the survivor prints "rank R returned ZERO_ERR_COMM").
# Run 1 is mpirun as it is (whichever comes first; with Open MPI's default that is mpirun, at
# once). Run 2 (Open MPI only) adds --enable-recovery, so that mpirun lets the job go on after
# the death: then libzero alone must end every survivor, each returning ZERO_ERR_COMM.
# Each run passes when the job ends within LIMIT_S (30 s) and no survivor returned anything but
# ZERO_ERR_COMM; its line says which of the two ended the survivors. A job still running after
# 60 s is killed by `timeout` (exit 124): a hang, FAIL. The last line is "safety_kill: PASS" or
# "safety_kill: FAIL ...".
set -uo pipefail
bin=${1:?usage: safety_kill.sh TEST_SAFETY [NP]}
np=${2:-2}
here=$(cd "$(dirname "$0")" && pwd)
mpirun=${MPIRUN:-$here/../../scripts/zero-mpirun}
limit=${LIMIT_S:-30}
out=$(mktemp "${TMPDIR:-/tmp}/zero-safety-kill.XXXXXX")
err=$out.err
trap 'rm -f "$out" "$err"' EXIT
failed=0

# bad NAME WHY...: one run failed; the end of its output follows
bad() {
    local name=$1
    shift
    echo "safety_kill: $name: FAIL: $*"
    tail -n 20 "$out" "$err"
    failed=1
}

# run NAME REQUIRE [mpirun options...]: REQUIRE=libzero demands that libzero ended the survivors
run() {
    local name=$1 require=$2
    shift 2
    local t0 t1 rc elapsed steps returned by survivors=$((np - 1))
    echo "--- $name: $mpirun -np $np $* $bin kill"
    t0=$(date +%s.%N)
    # the ranks' stdout apart from their stderr (libzero's log), where mpirun's messages go too:
    # a long log line may be cut by a rank's verdict line in a merged stream
    timeout -k 5 60 "$mpirun" -np "$np" "$@" "$bin" kill >"$out" 2>"$err"
    rc=$?
    t1=$(date +%s.%N)
    elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    # what the ranks and mpirun said (libzero's WARN lines left out)
    grep -E 'rank [0-9]+(:| returned| finalize| FAIL)' "$out" || true
    grep -hE 'exited on signal|mpirun noticed|aborted' "$out" "$err" || true
    # 124: timeout ended it; 137 is also mpirun's own exit status after a rank died of SIGKILL,
    # so there the clock decides
    if [ "$rc" -eq 124 ] || awk -v e="$elapsed" 'BEGIN { exit !(e >= 59) }'; then
        bad "$name" "the job did not end within 60 s (exit $rc after ${elapsed} s): a hang"
        return
    fi
    steps=$(grep -cE 'rank [0-9]+: 2 steps done' "$out" || true)
    if [ "$steps" -ne "$np" ]; then
        bad "$name" "$steps of $np ranks finished the two clean steps (exit $rc)"
        return
    fi
    if ! awk -v e="$elapsed" -v l="$limit" 'BEGIN { exit !(e <= l) }'; then
        bad "$name" "the job took ${elapsed} s (limit ${limit} s)"
        return
    fi
    if grep -oE 'rank [0-9]+ returned [A-Z_]+ ' "$out" | grep -vq ' returned ZERO_ERR_COMM '; then
        bad "$name" "a survivor returned something other than ZERO_ERR_COMM"
        return
    fi
    returned=$(grep -cE 'rank [0-9]+ returned ZERO_ERR_COMM ' "$out" || true)
    if [ "$returned" -eq "$survivors" ]; then
        by="libzero: every survivor's zero_step returned ZERO_ERR_COMM (ZERO_TIMEOUT_S=5)"
    elif [ "$require" = libzero ]; then
        bad "$name" "$returned of $survivors survivors returned ZERO_ERR_COMM (exit $rc)"
        return
    elif cat "$out" "$err" | grep -q 'exited on signal 9'; then
        by="mpirun: it saw rank 1 exit on signal 9 and aborted the job"
        if [ "$returned" -gt 0 ]; then
            by="$by ($returned of $survivors survivors had returned ZERO_ERR_COMM first)"
        fi
    else
        bad "$name" "neither mpirun's abort nor ZERO_ERR_COMM on every survivor (exit $rc)"
        return
    fi
    echo "safety_kill: $name: np $np, rank 1 killed, the job ended after ${elapsed} s" \
         "(exit $rc); ended by $by"
}

run "mpirun as is" any
if mpirun --version 2>/dev/null | grep -q 'Open MPI'; then
    run "mpirun --enable-recovery (no abort on a rank's death)" libzero --enable-recovery
else
    echo "--- not Open MPI: the run without mpirun's abort is left out"
fi
if [ "$failed" -ne 0 ]; then
    echo "safety_kill: FAIL"
    exit 1
fi
echo "safety_kill: PASS"
