#!/usr/bin/env bash
# Checkpoint cases that drive the examples (ctest ckpt_*): usage ckpt.sh CASE, with BIN, OUT and
# MPIRUN set by ctest (CRASH_SHIM too for the crash case). Exit 0 = pass; every assertion says
# what it compared.
#   continue  20 steps straight == 10 steps + save + a new process + load + 10 steps, byte for
#             byte (--export), at stages 0-3, fp32/bf16/fp16 (fp16 after its dynamic scale has
#             changed), with optimizer and parameter offload, with gradient accumulation, at
#             1, 2 and 3 ranks; and with --save-async (zero_save_async / zero_save_wait)
#   anywhere  saved at 4 ranks stage 1, loaded at 2 (stage 3), 3 (stage 2) and 1 (stage 0): saved
#             again at once, master and moments equal the first (zero-ckpt diff); training on
#             from the first and from the re-saved one (another stage) gives the same bits
#   crash     a rank SIGKILLed at random points of zero_save (crash_shim.c), 24 trials, and of
#             an asynchronous save (its writer thread, then the commit), 8 trials: the
#             directory always holds a `latest` checkpoint that verifies and loads (the previous
#             one or the new one), and every step-* directory verifies
#   gpt2      zero-gpt2 --save-every / --resume continues exactly; ZERO_CKPT_KEEP prunes
set -uo pipefail
: "${BIN:?}" "${OUT:?}" "${MPIRUN:?}"
case_name=$1
OUT=$OUT/ckpt_$case_name
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

case_continue() {
    local configs=(
        "2|ZERO_STAGE=0" "2|ZERO_STAGE=1" "2|ZERO_STAGE=2" "2|ZERO_STAGE=3"
        "2|ZERO_STAGE=0 ZERO_DTYPE=bf16" "2|ZERO_STAGE=1 ZERO_DTYPE=bf16"
        "2|ZERO_STAGE=2 ZERO_DTYPE=bf16" "2|ZERO_STAGE=3 ZERO_DTYPE=bf16"
        "2|ZERO_STAGE=0 ZERO_DTYPE=fp16" "2|ZERO_STAGE=1 ZERO_DTYPE=fp16"
        "2|ZERO_STAGE=2 ZERO_DTYPE=fp16" "2|ZERO_STAGE=3 ZERO_DTYPE=fp16"
        "2|ZERO_STAGE=1 ZERO_OFFLOAD_OPTIMIZER=cpu"
        "2|ZERO_STAGE=2 ZERO_DTYPE=bf16 ZERO_OFFLOAD_OPTIMIZER=cpu"
        "2|ZERO_STAGE=3 ZERO_DTYPE=fp16 ZERO_OFFLOAD_OPTIMIZER=cpu"
        "2|ZERO_STAGE=3 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_PARAM=cpu"
        "2|ZERO_STAGE=3 ZERO_DTYPE=bf16 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_PARAM=cpu"
        "2|ZERO_STAGE=2 ZERO_GRAD_ACCUM=2"
        "2|ZERO_STAGE=3 ZERO_DTYPE=fp16 ZERO_GRAD_ACCUM=3"
        "2|ZERO_STAGE=0 ZERO_DTYPE=bf16 ZERO_GRAD_ACCUM=2"
        "1|ZERO_STAGE=2"
        "3|ZERO_STAGE=3 ZERO_DTYPE=bf16 ZERO_GRAD_ACCUM=2"
    )
    local i=0
    for c in "${configs[@]}"; do
        local np=${c%%|*} envs=${c#*|} d=$OUT/c$i
        mkdir -p "$d"
        mlp "$np" "$envs" --steps 20 --export "$d/straight.st"
        mlp "$np" "$envs" --steps 10 --save "$d/ck"
        mlp "$np" "$envs" --steps 10 --resume "$d/ck" --export "$d/resumed.st"
        cmp -s "$d/straight.st" "$d/resumed.st" ||
            fail "np $np $envs: 20 steps straight and 10 + resume + 10 differ"
        local scale
        scale=$(grep -o '"loss_scale": [0-9.e+]*' "$d"/ck/step-*/manifest.json | head -1)
        if [[ $envs == *fp16* ]]; then
            # the dynamic scale has changed before the save (65536 at the start)
            [[ $scale != *65536* ]] || fail "np $np $envs: the loss scale never changed ($scale)"
        fi
        echo "ok: np $np $envs: 20 straight == 10 + save + load + 10 (saved $scale)"
        i=$((i + 1))
    done
    # one rank's piece of a tensor larger than the load's bounce buffers (4 Mi elements): bf16
    # (a master apart from the working copy) and fp32 with optimizer offload, on the host backend
    for envs in "ZERO_STAGE=1 ZERO_DTYPE=bf16" "ZERO_STAGE=2 ZERO_OFFLOAD_OPTIMIZER=cpu"; do
        local d=$OUT/big$i
        mkdir -p "$d"
        local B=(--layers 1 --width 2100 --batch 4 --seed 3 --quiet)
        # shellcheck disable=SC2086
        env $envs "$MPIRUN" -np 1 "$BIN/zero-mlp" "${B[@]}" --steps 2 --save "$d/ck" \
            --export "$d/a.st" > "$d/log" 2>&1 || { cat "$d/log"; fail "big tensor: save"; }
        # shellcheck disable=SC2086
        env $envs "$MPIRUN" -np 1 "$BIN/zero-mlp" "${B[@]}" --steps 0 --resume "$d/ck" \
            --export "$d/b.st" > "$d/log" 2>&1 || { cat "$d/log"; fail "big tensor: load"; }
        cmp -s "$d/a.st" "$d/b.st" || fail "$envs: a 4.4 M-element tensor loaded back differs"
        echo "ok: $envs: a 4.4 M-element tensor saved and loaded back identical"
        i=$((i + 1))
    done
    # --save-async: saves at steps 4 and 8 written while training goes on (each committed at the
    # next save), the last at 10; resuming from the last and from step 4 continues exactly
    for envs in "ZERO_STAGE=3 ZERO_DTYPE=bf16" "ZERO_STAGE=1 ZERO_OFFLOAD_OPTIMIZER=cpu"; do
        local d=$OUT/async$i
        mkdir -p "$d"
        mlp 2 "$envs" --steps 20 --export "$d/straight.st"
        mlp 2 "$envs" --steps 10 --export "$d/straight10.st"
        mlp 2 "$envs" --steps 10 --save "$d/ck" --save-every 4 --save-async
        [ "$(cd "$d/ck" && echo step-*)" = "step-00000004 step-00000008 step-00000010" ] ||
            fail "$envs --save-async: saved $(cd "$d/ck" && echo step-*)"
        mlp 2 "$envs" --steps 10 --resume "$d/ck" --export "$d/resumed.st"
        cmp -s "$d/straight.st" "$d/resumed.st" ||
            fail "np 2 $envs: 20 steps straight and 10 + --save-async + resume + 10 differ"
        mlp 2 "$envs" --steps 6 --resume "$d/ck/step-00000004" --export "$d/resumed4.st"
        cmp -s "$d/straight10.st" "$d/resumed4.st" ||
            fail "np 2 $envs: the asynchronous save of step 4 does not continue as 10 straight"
        echo "ok: np 2 $envs --save-async: 20 straight == 10 + save + load + 10, and step 4's"
        i=$((i + 1))
    done
    echo "continue: $i configurations identical"
}

case_anywhere() {
    mlp 4 "ZERO_STAGE=1" --steps 10 --save "$OUT/A"
    local next=(1 2 3 0) # the stage the second continuation runs at
    for spec in "2 3" "3 2" "1 0"; do
        set -- $spec
        local np=$1 st=$2 other=${next[$2]}
        mlp "$np" "ZERO_STAGE=$st" --steps 0 --resume "$OUT/A" --save "$OUT/B$np"
        "$CKPT" diff "$OUT/A" "$OUT/B$np" > "$OUT/diff$np.log" 2>&1 ||
            { cat "$OUT/diff$np.log"; fail "saved at np 4, loaded and saved at np $np stage $st: differs"; }
        tail -1 "$OUT/diff$np.log"
        mlp "$np" "ZERO_STAGE=$st" --steps 10 --resume "$OUT/A" --export "$OUT/x$np.st"
        mlp "$np" "ZERO_STAGE=$other" --steps 10 --resume "$OUT/B$np" --export "$OUT/y$np.st"
        cmp -s "$OUT/x$np.st" "$OUT/y$np.st" ||
            fail "np $np: 10 steps on from the np-4 checkpoint (stage $st) and from its np-$np copy (stage $other) differ"
        echo "ok: np 4 stage 1 -> np $np stage $st: re-saved identical; continued (stage $st) == continued from the copy (stage $other)"
    done
    # dtype and offload change on load: the master and moments are fp32 whatever the dtype
    mlp 2 "ZERO_STAGE=3 ZERO_DTYPE=bf16 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_PARAM=cpu" \
        --steps 0 --resume "$OUT/A" --save "$OUT/C"
    "$CKPT" diff "$OUT/A" "$OUT/C" > "$OUT/diffC.log" 2>&1 ||
        { cat "$OUT/diffC.log"; fail "fp32 checkpoint loaded at bf16 with offload and saved again differs"; }
    echo "ok: np 4 fp32 -> np 2 stage 3 bf16 with parameter offload: re-saved identical"
}

# crash_trials LABEL TRIALS "STEPS..." [ARGS...]: zero-mlp resumes the pristine checkpoint (step
# 4), trains 2 steps and saves (with ARGS) while the shim kills a random rank at a random one of
# the file operations of its saves; afterwards `latest` must name a complete checkpoint, one of
# STEPS (step numbers), every step-* must verify, and the run must resume from it.
crash_trials() {
    local label=$1 trials=$2 steps=$3; shift 3
    local root=$OUT/root pristine=$OUT/pristine counts=$OUT/counts-$label
    local envs="ZERO_STAGE=2 ZERO_TIMEOUT_S=20"
    # how many counted operations each rank makes in one save
    rm -rf "$root" "$counts"
    cp -a "$pristine" "$root"
    mlp 2 "$envs LD_PRELOAD=$CRASH_SHIM CRASH_SHIM_DIR=$root CRASH_SHIM_AT=0 CRASH_SHIM_COUNT=$counts" \
        --steps 2 --resume "$root" --save "$root" "$@"
    local n0 n1
    n0=$(awk '$1 == 0 {print $2}' "$counts")
    n1=$(awk '$1 == 1 {print $2}' "$counts")
    [ "${n0:-0}" -gt 5 ] && [ "${n1:-0}" -gt 1 ] || fail "$label: the shim counted $n0 / $n1 operations"
    echo "$label: the run's saves make $n0 counted operations on rank 0, $n1 on rank 1"
    local old=0 new=0 accept="" k
    for k in $steps; do accept="$accept $(printf 'step-%08d' "$k")"; done
    for t in $(seq 1 "$trials"); do
        local rank=$((RANDOM % 2)) n at
        n=$([ $rank -eq 0 ] && echo "$n0" || echo "$n1")
        at=$((RANDOM % n + 1))
        rm -rf "$root"
        cp -a "$pristine" "$root"
        env ZERO_STAGE=2 ZERO_TIMEOUT_S=20 LD_PRELOAD="$CRASH_SHIM" CRASH_SHIM_DIR="$root" \
            CRASH_SHIM_RANK=$rank CRASH_SHIM_AT=$at \
            timeout 60 "$MPIRUN" -np 2 "$BIN/zero-mlp" "${MLP[@]}" --steps 2 --resume "$root" \
            --save "$root" "$@" > "$OUT/trial-$label$t.log" 2>&1
        local rc=$?
        [ $rc -ne 124 ] || fail "$label trial $t (rank $rank killed at operation $at): hang"
        [ $rc -ne 0 ] || fail "$label trial $t: rank $rank was not killed at operation $at of $n"
        "$CKPT" verify "$root" > "$OUT/verify$t.log" 2>&1 ||
            { cat "$OUT/verify$t.log"; fail "$label trial $t (rank $rank killed at $at of $n): latest does not verify"; }
        local latest
        latest=$(cat "$root/latest")
        [[ " $accept " == *" $latest "* ]] || fail "$label trial $t: latest names $latest"
        if [ "$latest" = step-00000004 ]; then old=$((old + 1)); else new=$((new + 1)); fi
        for d in "$root"/step-*; do
            "$CKPT" verify "$d" > /dev/null 2>&1 || fail "$label trial $t: $d does not verify"
        done
        mlp 2 "$envs" --steps 1 --resume "$root"
        echo "ok: $label trial $t: rank $rank killed at operation $at of $n: latest = $latest, verifies and loads"
    done
    [ $old -gt 0 ] && [ $new -gt 0 ] || echo "note: every $label trial ended on one side ($old old, $new new)"
    echo "$label: $trials trials, $old left the previous checkpoint, $new a new one; none mixed"
}

case_crash() {
    : "${CRASH_SHIM:?}"
    mlp 2 "ZERO_STAGE=2 ZERO_TIMEOUT_S=20" --steps 4 --save "$OUT/pristine"
    RANDOM=20261129
    crash_trials zero_save 24 "4 6"
    # the asynchronous save: step 5's files written by a thread of each rank while step 6 trains,
    # committed before step 6's save, which is committed at the end
    crash_trials zero_save_async 8 "4 5 6" --save-every 1 --save-async
    echo "crash: 32 trials, none mixed"
}

case_gpt2() {
    local G=("$BIN/zero-gpt2" --layers 2 --heads 2 --dim 32 --seq 16 --batch 12 --seed 5 --quiet)
    local envs="ZERO_STAGE=3 ZERO_DTYPE=bf16"
    # shellcheck disable=SC2086
    env $envs "$MPIRUN" -np 2 "${G[@]}" --steps 8 --export "$OUT/straight.st" > "$OUT/g1.log" 2>&1 ||
        { cat "$OUT/g1.log"; fail "zero-gpt2 8 steps"; }
    # shellcheck disable=SC2086
    env $envs ZERO_CKPT_KEEP=2 "$MPIRUN" -np 2 "${G[@]}" --steps 6 --save "$OUT/ck" --save-every 2 \
        > "$OUT/g2.log" 2>&1 || { cat "$OUT/g2.log"; fail "zero-gpt2 --save-every"; }
    local kept
    kept=$(cd "$OUT/ck" && echo step-*)
    [ "$kept" = "step-00000004 step-00000006" ] || fail "ZERO_CKPT_KEEP=2 left: $kept"
    # back to step 4 explicitly, then 4 more steps: steps 5-8 of the straight run
    # shellcheck disable=SC2086
    env ZERO_STAGE=1 ZERO_DTYPE=bf16 "$MPIRUN" -np 2 "${G[@]}" --steps 4 \
        --resume "$OUT/ck/step-00000004" --export "$OUT/resumed.st" > "$OUT/g3.log" 2>&1 ||
        { cat "$OUT/g3.log"; fail "zero-gpt2 --resume"; }
    cmp -s "$OUT/straight.st" "$OUT/resumed.st" || fail "zero-gpt2: 8 straight != 4 + resume + 4"
    echo "ok: zero-gpt2 8 steps straight (stage 3) == 4, resume at stage 1, 4 more; KEEP=2 kept $kept"
}

case "$case_name" in
continue) case_continue ;;
anywhere) case_anywhere ;;
crash) case_crash ;;
gpt2) case_gpt2 ;;
*) fail "unknown case $case_name" ;;
esac
echo "ckpt $case_name: PASS"
