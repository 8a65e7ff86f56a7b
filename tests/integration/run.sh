#!/usr/bin/env bash
# Integration cases for ctest that need separate processes: zero-mlp and zero-gpt2 driven through
# ZERO_* variables (a stage-0 reference with the report against the docs/DESIGN.md formulas, OOM
# behaviour and its advice, bad values, unknown and logged variables, ranks that disagree, device
# choice), and GPT-2 (tied embeddings) at stage 3 and with offload. The stage x dtype x offload x
# accumulation matrix (bit identity across stages, accuracy against a reference, memory, traffic
# and offload bytes against the formulas, determinism, clipping, stage-3 prefetch and live
# bounds) runs in-process: test_matrix.c (ctest matrix_np1..4). Usage: run.sh CASE (BIN, OUT,
# MPIRUN set by ctest). Exit 0 = pass, anything else = fail; every assertion prints what it
# compared.
set -uo pipefail
: "${BIN:?}" "${OUT:?}" "${MPIRUN:?}"
mkdir -p "$OUT"
case_name=$1
EPS=(--eps 1e-5) # Adam's eps for every example run: see below
MLP=(--layers 4 --width 128 --batch 48 --steps 20 --seed 7 --quiet "${EPS[@]}")
CHECK="$BIN/zero-check"
export ZERO_BUCKET_MB=${ZERO_BUCKET_MB:-64K}   # one chunk per layer: several buckets per step
# Adam's eps: with 1e-8, the few weights whose gradient cancels to ~1e-8 turn the rounding of a
# different reduction order (another world size) into update differences of up to ~lr: stage 0
# (plain data parallel) on 3 ranks differs from 1 rank by 6.8e-4 that way. 1e-5 keeps the update
# well conditioned, so the comparison across world sizes measures the runtime, not Adam.
# (test_matrix compares the stages bit for bit within one world size.)
# (EPS, above: a program value, the examples' --eps, not an environment variable)
# The host backend unless a case says otherwise: references and comparisons must come from one
# backend (on a GPU machine auto would put 1-rank runs on the GPU and 2-4-rank runs on the host).
# The GPU cases are tests/gpu/train_gpu.sh.
export ZERO_DEVICE=${ZERO_DEVICE:-host}

fail() { echo "FAIL: $*"; exit 1; }

# train NAME NP [VAR=VALUE ...] -- extra flags: writes $OUT/NAME.st and $OUT/NAME.json
train() {
    local name=$1 np=$2; shift 2
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    [ "${1:-}" = "--" ] && shift
    rm -f "$OUT/$name.st" "$OUT/$name.json"
    env "${envs[@]}" ZERO_REPORT="$OUT/$name.json" \
        "$MPIRUN" -np "$np" "$BIN/zero-mlp" "${MLP[@]}" --export "$OUT/$name.st" "$@" \
        > "$OUT/$name.log" 2>&1
    local rc=$?
    cat "$OUT/$name.log"
    [ $rc -eq 0 ] || fail "$name: zero-mlp exited $rc"
    [ -s "$OUT/$name.st" ] && [ -s "$OUT/$name.json" ] || fail "$name: no export or report"
}

# train_gpt2 NAME NP [VAR=VALUE ...]: the GPT-2 example (tied embeddings), 10 steps, one
# module per chunk (ZERO_BUCKET_MB=64K), like train
GPT2=(--layers 2 --heads 2 --dim 32 --seq 16 --batch 12 --steps 10 --seed 5 --quiet "${EPS[@]}")
train_gpt2() {
    local name=$1 np=$2; shift 2
    rm -f "$OUT/$name.st" "$OUT/$name.json"
    env "$@" ZERO_REPORT="$OUT/$name.json" \
        "$MPIRUN" -np "$np" "$BIN/zero-gpt2" "${GPT2[@]}" --export "$OUT/$name.st" \
        > "$OUT/$name.log" 2>&1
    local rc=$?
    cat "$OUT/$name.log"
    [ $rc -eq 0 ] || fail "$name: zero-gpt2 exited $rc"
}

# expect_error NAME NP PATTERN [VAR=VALUE ...]: zero-mlp must fail and print PATTERN
expect_error() {
    local name=$1 np=$2 pattern=$3; shift 3
    env "$@" timeout 60 "$MPIRUN" -np "$np" "$BIN/zero-mlp" "${MLP[@]}" > "$OUT/$name.log" 2>&1
    local rc=$?
    cat "$OUT/$name.log"
    [ $rc -ne 0 ] || fail "$name: expected a failure, got exit 0"
    [ $rc -ne 124 ] || fail "$name: hung (killed after 60 s)"
    grep -q -- "$pattern" "$OUT/$name.log" || fail "$name: output lacks '$pattern'"
    echo "ok: $name failed with '$pattern'"
}

check_formulas() { # NAME: model state and bus bytes within 1% of docs/DESIGN.md
    "$CHECK" near "$OUT/$1.json" model_state_peak_bytes model_state_formula_bytes 0.01 || exit 1
    "$CHECK" near "$OUT/$1.json" bus_bytes_per_step bus_bytes_formula_per_step 0.01 || exit 1
}

case "$case_name" in
reference) # stage 0 on one rank: what the oom case's stage 2 and 3 runs on 4 ranks must reproduce
    train ref 1 ZERO_STAGE=0
    check_formulas ref ;;
gpt2_reference) # GPT-2 (tied embeddings), stage 0 on one rank: 10 steps
    train_gpt2 gpt2_ref 1 ZERO_STAGE=0 ;;
gpt2_stage3_np[1-4]) # stage 3 (prefetch on and off) reproduces it at every world size
    np=${case_name: -1}
    train_gpt2 "gpt2_s3_np$np" "$np" ZERO_STAGE=3 ZERO_PERSIST_KB=0
    train_gpt2 "gpt2_s3_np${np}_nopf" "$np" ZERO_STAGE=3 ZERO_PREFETCH_MB=0 ZERO_PERSIST_KB=0
    for r in "gpt2_s3_np$np" "gpt2_s3_np${np}_nopf"; do
        "$CHECK" compare "$OUT/$r.st" "$OUT/gpt2_ref.st" 1e-5 || exit 1
    done
    "$CHECK" same "$OUT/gpt2_s3_np$np.json" "$OUT/gpt2_s3_np${np}_nopf.json" param_digest || exit 1
    [ "$("$CHECK" get "$OUT/gpt2_s3_np$np.json" prefetch_hits)" -gt 0 ] || fail "no prefetch used"
    # (the tied embedding is gathered twice in forward, for the tokens and for the logits,
    # so bus bytes exceed 3Ψ(N-1)/N by that chunk: mlp_stage3_bounds checks the formula)
    "$CHECK" near "$OUT/gpt2_s3_np$np.json" model_state_peak_bytes model_state_formula_bytes \
        0.01 || exit 1 ;;
gpt2_offload) # offload on and off, stages 1-3, GPT-2 on 2 ranks: same bits
    for stage in 1 2 3; do
        train_gpt2 "gpt2_off_s$stage" 2 ZERO_STAGE=$stage
        train_gpt2 "gpt2_off_s${stage}_cpu" 2 ZERO_STAGE=$stage ZERO_OFFLOAD_OPTIMIZER=cpu
        "$CHECK" same "$OUT/gpt2_off_s$stage.json" "$OUT/gpt2_off_s${stage}_cpu.json" \
            param_digest || exit 1
    done
    train_gpt2 gpt2_off_all 2 ZERO_STAGE=3 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_PARAM=cpu
    "$CHECK" same "$OUT/gpt2_off_s3.json" "$OUT/gpt2_off_all.json" param_digest || exit 1 ;;
gpt2_capacity) # a GPT-2 whose stage-0 state does not fit trains at stage 3 on 4 ranks
    cap=1536K
    GPT2=(--layers 2 --heads 4 --dim 64 --seq 32 --batch 8 --steps 3 --seed 3 --quiet "${EPS[@]}")
    env ZERO_STAGE=0 ZERO_DEVICE_MEMORY=$cap timeout 120 "$MPIRUN" -np 4 "$BIN/zero-gpt2" \
        "${GPT2[@]}" > "$OUT/gpt2_cap_s0.log" 2>&1 && fail "stage 0 fit $cap"
    cat "$OUT/gpt2_cap_s0.log"
    grep -q ZERO_ERR_OOM "$OUT/gpt2_cap_s0.log" || fail "stage 0 did not report ZERO_ERR_OOM"
    train_gpt2 gpt2_cap_s3 4 ZERO_STAGE=3 ZERO_DEVICE_MEMORY=$cap ZERO_MAX_LIVE_MB=256K
    "$CHECK" le "$OUT/gpt2_cap_s3.json" device_peak_bytes capacity_bytes || exit 1 ;;
bad_offload) # offload settings that cannot work are refused with the reason
    expect_error bad_offload_s0 2 "ZERO_OFFLOAD_OPTIMIZER=cpu needs ZERO_STAGE 1, 2 or 3" \
        ZERO_STAGE=0 ZERO_OFFLOAD_OPTIMIZER=cpu
    expect_error bad_offload_param 2 "ZERO_OFFLOAD_PARAM=cpu needs ZERO_STAGE=3" \
        ZERO_STAGE=2 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_PARAM=cpu ;;
oom) # too small for stage 0 on 4 ranks, enough for stage 2
    expect_error oom_s0 4 "ZERO_ERR_OOM" ZERO_STAGE=0 ZERO_DEVICE_MEMORY=900K
    grep -q "Would fit: .*ZERO_STAGE=2" "$OUT/oom_s0.log" || fail "OOM message names no stage"
    grep -q "capacity 0.88 MiB" "$OUT/oom_s0.log" || fail "OOM message lacks the capacity"
    for stage in 2 3; do
        train oom_s$stage 4 ZERO_STAGE=$stage ZERO_DEVICE_MEMORY=900K
        "$CHECK" compare "$OUT/oom_s$stage.st" "$OUT/ref.st" 1e-5 || exit 1
        "$CHECK" le "$OUT/oom_s$stage.json" device_peak_bytes capacity_bytes || exit 1
    done ;;
bad_stage) expect_error bad_stage 2 "ZERO_STAGE=7 is not allowed" ZERO_STAGE=7 ;;
bad_bucket) expect_error bad_bucket 2 "ZERO_BUCKET_MB=abc is not a size" ZERO_BUCKET_MB=abc ;;
bad_memory) expect_error bad_memory 2 "ZERO_DEVICE_MEMORY=-1 is not a size" ZERO_DEVICE_MEMORY=-1 ;;
unknown_var) # a typo draws a warning naming the real variable, and training goes on
    train unknown 2 ZERO_STAGEE=1
    grep -q "ZERO_STAGEE.*did you mean ZERO_STAGE" "$OUT/unknown.log" || fail "no suggestion" ;;
env_logged) # values taken from the environment are logged at INFO
    train env_logged 1 ZERO_STAGE=1 ZERO_DEBUG=INFO ZERO_DEBUG_SUBSYS=ENV
    grep -q "ZERO_STAGE=1" "$OUT/env_logged.log" || fail "ZERO_STAGE not logged" ;;
info) # zero-info exits 0 and names the backend ZERO_DEVICE=auto would take here, and why
    "$BIN/zero-info" > "$OUT/info.log" 2>&1
    rc=$?
    cat "$OUT/info.log"
    [ $rc -eq 0 ] || fail "zero-info exited $rc"
    grep -qE "^auto +(host|cuda) backend" "$OUT/info.log" || fail "zero-info names no backend for auto"
    if ! nvidia-smi -L >/dev/null 2>&1; then
        grep -qE "^auto +host backend" "$OUT/info.log" || fail "no GPU here, yet auto is not host"
    fi ;;
device_auto) # auto: cuda where every rank has a GPU, else host with an INFO line saying why;
    # ZERO_DEVICE=cuda without a GPU is refused on every rank with the reason
    train dev_auto 1 ZERO_DEVICE=auto ZERO_DEBUG=INFO ZERO_DEBUG_SUBSYS=INIT
    if nvidia-smi -L >/dev/null 2>&1; then
        grep -q '"collectives": "nccl"' "$OUT/dev_auto.json" || fail "a GPU is present but auto did not pick cuda"
    else
        grep -q "ZERO_DEVICE=auto: using the host backend: " "$OUT/dev_auto.log" || fail "no INFO line for the fallback"
        grep -q '"backend": {"device": "host", "collectives": "mpi"}' "$OUT/dev_auto.json" || fail "report: backend is not host/mpi"
        grep -q '"device": "host"' "$OUT/dev_auto.json" || fail "report: config.device is not the resolved backend"
        expect_error cuda_refused 2 "ZERO_DEVICE=cuda but rank [01] cannot use a GPU: " ZERO_DEVICE=cuda
    fi ;;
log_full) # a log file that cannot take a line (/dev/full): the lines go to stderr, said once
    [ -w /dev/full ] || { echo "skipped: no writable /dev/full"; exit 0; }
    env ZERO_DEBUG=INFO ZERO_DEBUG_FILE=/dev/full "$MPIRUN" -np 1 "$BIN/zero-mlp" "${MLP[@]}" \
        --steps 1 > "$OUT/log_full.log" 2>&1 || { cat "$OUT/log_full.log"; fail "zero-mlp"; }
    [ "$(grep -c 'cannot write the log file /dev/full' "$OUT/log_full.log")" = 1 ] ||
        { cat "$OUT/log_full.log"; fail "no (or more than one) notice of the unwritable log file"; }
    grep -q 'zero INFO .*ZERO_DEBUG=INFO' "$OUT/log_full.log" ||
        { cat "$OUT/log_full.log"; fail "the log lines were lost"; }
    echo "ok: log lines on stderr after /dev/full refused them" ;;
round_trips) # host round trips per step (report): the engine's norm exchange + zero-mlp's loss sum
    # at every stage; stage 3's order checks only while the gather order is recorded (the fast
    # path makes no host exchange per zero_gather): per-step increments, 4 -> 8 steps, must be 2
    for st in 2 3; do
        for n in 4 8; do
            env ZERO_STAGE=$st ZERO_REPORT="$OUT/rt_${st}_$n.json" "$MPIRUN" -np 2 "$BIN/zero-mlp" \
                --layers 3 --width 64 --batch 24 --steps $n --quiet > "$OUT/rt_${st}_$n.log" 2>&1 ||
                { cat "$OUT/rt_${st}_$n.log"; fail "zero-mlp stage $st"; }
        done
        a=$("$CHECK" get "$OUT/rt_${st}_4.json" comm.host_round_trips) || fail "no round trips"
        b=$("$CHECK" get "$OUT/rt_${st}_8.json" comm.host_round_trips) || fail "no round trips"
        echo "stage $st: $a host round trips in 4 steps, $b in 8"
        [ $(( (b - a) % 4 )) -eq 0 ] && [ $(( (b - a) / 4 )) -eq 2 ] ||
            fail "stage $st: $(( b - a )) more round trips for 4 more steps, expected 8"
    done ;;
stage3_order_warning) # a gather out of the recorded order is correct (test_api) and warned about
    env -u ZERO_BUCKET_MB "$MPIRUN" -np 2 "$BIN/test_api" > "$OUT/order_warning.log" 2>&1 || { cat "$OUT/order_warning.log"; fail "test_api failed"; }
    grep -q "gathered out of the recorded order" "$OUT/order_warning.log" || fail "no warning"
    echo "ok: $(grep -c 'gathered out of the recorded order' "$OUT/order_warning.log") warnings" ;;
numa_mismatch) # a placement that fails on one rank only fails on every rank, no hang
    timeout 60 "$MPIRUN" -np 1 env ZERO_STAGE=2 ZERO_OFFLOAD_OPTIMIZER=cpu "$BIN/zero-mlp" \
        "${MLP[@]}" : -np 1 env ZERO_STAGE=2 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_NUMA=4095 \
        "$BIN/zero-mlp" "${MLP[@]}" > "$OUT/numa_mismatch.log" 2>&1
    rc=$?
    cat "$OUT/numa_mismatch.log"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "numa mismatch: exit $rc"
    grep -q "rank 1 failed: ZERO_NUMA=4095" "$OUT/numa_mismatch.log" || fail "rank 0 not told" ;;
stage_mismatch) # ranks that disagree all fail, quickly, naming the variable
    start=$(date +%s)
    timeout 60 "$MPIRUN" -np 1 env ZERO_STAGE=1 "$BIN/zero-mlp" "${MLP[@]}" : \
        -np 1 env ZERO_STAGE=2 "$BIN/zero-mlp" "${MLP[@]}" > "$OUT/mismatch.log" 2>&1
    rc=$?
    cat "$OUT/mismatch.log"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "stage mismatch: exit $rc"
    n=$(grep -c "ZERO_STAGE differs across ranks" "$OUT/mismatch.log")
    [ "$n" -ge 2 ] || fail "stage mismatch reported by $n ranks, expected 2"
    echo "ok: both ranks failed in $(( $(date +%s) - start )) s" ;;
*) fail "unknown case $case_name" ;;
esac
exit 0
