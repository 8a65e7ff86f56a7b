#!/usr/bin/env bash
# Integration cases for ctest: the MLP example trained under mpirun at every stage and world
# size, compared with a reference run, plus the report's memory and traffic against the
# docs/DESIGN.md formulas, OOM behaviour and bad input. Usage: run.sh CASE (BIN, OUT, MPIRUN set
# by ctest). Exit 0 = pass, anything else = fail; every assertion prints what it compared.
set -uo pipefail
: "${BIN:?}" "${OUT:?}" "${MPIRUN:?}"
mkdir -p "$OUT"
case_name=$1
MLP=(--layers 4 --width 128 --batch 48 --steps 20 --seed 7 --quiet)
CHECK="$BIN/zero-check"
export ZERO_BUCKET_MB=${ZERO_BUCKET_MB:-64K}   # one chunk per layer: several buckets per step
# Adam's eps: with 1e-8, the few weights whose gradient cancels to ~1e-8 turn the rounding of a
# different reduction order (another world size) into update differences of up to ~lr: stage 0
# (plain data parallel) on 3 ranks differs from 1 rank by 6.8e-4 that way. 1e-5 keeps the update
# well conditioned, so the comparison across world sizes measures the runtime, not Adam.
# Within one world size every stage is compared bit for bit (bitwise_* cases) at the default.
export ZERO_EPS=${ZERO_EPS:-1e-5}
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
GPT2=(--layers 2 --heads 2 --dim 32 --seq 16 --batch 12 --steps 10 --seed 5 --quiet)
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

# check_live_bound NAME CAP_KIB: a stage-3 device peak within the model state formula + the
# live cap + the one gather the model may ask for beyond it + two reduce buckets
check_live_bound() {
    local r=$OUT/$1.json
    local chunk; chunk=$("$CHECK" get "$r" max_chunk_bytes)
    local bound=$(( $("$CHECK" get "$r" model_state_formula_bytes) + $2 * 1024 + chunk +
                    2 * (chunk + $("$CHECK" get "$r" max_slice_bytes)) ))
    local peak; peak=$("$CHECK" get "$r" device_peak_bytes)
    [ "$peak" -le "$bound" ] || fail "$1: device peak $peak > state + live cap + chunk + buckets $bound"
    echo "ok: $1 device peak $peak <= state formula + live cap + 1 chunk + buckets = $bound"
}

case "$case_name" in
reference) # stage 0 on one rank: what every other configuration must reproduce
    train ref 1 ZERO_STAGE=0
    check_formulas ref ;;
stage[0-3]_np[1-4])
    stage=${case_name:5:1} np=${case_name: -1}
    train "$case_name" "$np" ZERO_STAGE="$stage"
    "$CHECK" compare "$OUT/$case_name.st" "$OUT/ref.st" 1e-5 || exit 1
    check_formulas "$case_name" ;;
bitwise_fp32 | bitwise_bf16 | bitwise_fp16) # one layout, same additions: identical bits
    dtype=${case_name#bitwise_}
    unset ZERO_EPS
    for np in 2 3; do
        for stage in 0 1 2 3; do
            train "${case_name}_s${stage}_np$np" "$np" ZERO_STAGE=$stage ZERO_DTYPE="$dtype" \
                ZERO_PERSIST_KB=0   # nothing resident: stage 3 moves 3Ψ(N-1)/N
            # (fp16 skips steps, and a skipped step gathers no parameters: memory only)
            "$CHECK" near "$OUT/${case_name}_s${stage}_np$np.json" model_state_peak_bytes \
                model_state_formula_bytes 0.01 || exit 1
            # stage 3 keeps a chunk that the next gather asks for again (modules sharing a
            # chunk; the last module from forward into backward): at most 3Ψ(N-1)/N
            if [ "$dtype" != fp16 ] && [ $stage = 3 ]; then
                "$CHECK" le "$OUT/${case_name}_s${stage}_np$np.json" bus_bytes_per_step \
                    bus_bytes_formula_per_step || exit 1
            elif [ "$dtype" != fp16 ]; then
                check_formulas "${case_name}_s${stage}_np$np"
            fi
        done
        for stage in 1 2 3; do
            "$CHECK" same "$OUT/${case_name}_s0_np$np.json" "$OUT/${case_name}_s${stage}_np$np.json" \
                param_digest || exit 1
        done
    done
    if [ "$dtype" = fp16 ]; then # dynamic loss scaling started at 2^16 must have skipped steps
        skipped=$("$CHECK" get "$OUT/${case_name}_s2_np3.json" skipped_steps)
        [ "$skipped" -ge 1 ] || fail "fp16: no skipped step at loss scale 65536"
        echo "ok: fp16 skipped $skipped steps on every rank, same bits at every stage"
    fi ;;
determinism) # the same configuration twice gives the same digest
    train det_a 3 ZERO_STAGE=2
    train det_b 3 ZERO_STAGE=2
    "$CHECK" same "$OUT/det_a.json" "$OUT/det_b.json" param_digest || exit 1 ;;
grad_accum) # accumulation: stage 2 on 4 ranks matches stage 0 on 1 rank
    train accum_ref 1 ZERO_STAGE=0 ZERO_GRAD_ACCUM=3
    train accum_s2 4 ZERO_STAGE=2 ZERO_GRAD_ACCUM=3
    "$CHECK" compare "$OUT/accum_s2.st" "$OUT/accum_ref.st" 1e-5 || exit 1
    check_formulas accum_s2
    "$CHECK" compare "$OUT/accum_ref.st" "$OUT/ref.st" 1e-3 > /dev/null &&
        fail "accumulating 3 micro-batches trained the same weights as 1"
    echo "ok: accumulation changes the result and is stage-independent" ;;
clip) # global-norm clipping across shards
    train clip_ref 1 ZERO_STAGE=0 ZERO_CLIP=0.05
    train clip_s2 3 ZERO_STAGE=2 ZERO_CLIP=0.05
    train clip_s1 4 ZERO_STAGE=1 ZERO_CLIP=0.05
    "$CHECK" compare "$OUT/clip_s2.st" "$OUT/clip_ref.st" 1e-5 || exit 1
    "$CHECK" compare "$OUT/clip_s1.st" "$OUT/clip_ref.st" 1e-5 || exit 1
    "$CHECK" compare "$OUT/clip_ref.st" "$OUT/ref.st" 1e-3 > /dev/null &&
        fail "ZERO_CLIP=0.05 changed nothing"
    echo "ok: clipping applied, same result across shards" ;;
stage3_prefetch) # prefetch on and off: same bits; on, every prefetched chunk is used
    train s3_pf_on 2 ZERO_STAGE=3
    train s3_pf_off 2 ZERO_STAGE=3 ZERO_PREFETCH_MB=0
    "$CHECK" same "$OUT/s3_pf_on.json" "$OUT/s3_pf_off.json" param_digest || exit 1
    [ "$("$CHECK" get "$OUT/s3_pf_off.json" prefetches)" = 0 ] || fail "ZERO_PREFETCH_MB=0 prefetched"
    pf=$("$CHECK" get "$OUT/s3_pf_on.json" prefetches)
    hits=$("$CHECK" get "$OUT/s3_pf_on.json" prefetch_hits)
    [ "$pf" -gt 0 ] && [ "$hits" = "$pf" ] || fail "prefetches $pf, used $hits"
    echo "ok: $pf prefetches, all used; same digest with prefetch off" ;;
stage3_bounds) # nothing resident: 3Ψ(N-1)/N bus elements; peak within state + live cap (+1 chunk) + buckets
    train s3_bounds 4 ZERO_STAGE=3 ZERO_PERSIST_KB=0 ZERO_MAX_LIVE_MB=256K
    check_formulas s3_bounds
    "$CHECK" compare "$OUT/s3_bounds.st" "$OUT/ref.st" 1e-5 || exit 1
    check_live_bound s3_bounds 256 ;;
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
    GPT2=(--layers 2 --heads 4 --dim 64 --seq 32 --batch 8 --steps 3 --seed 3 --quiet)
    env ZERO_STAGE=0 ZERO_DEVICE_MEMORY=$cap timeout 120 "$MPIRUN" -np 4 "$BIN/zero-gpt2" \
        "${GPT2[@]}" > "$OUT/gpt2_cap_s0.log" 2>&1 && fail "stage 0 fit $cap"
    cat "$OUT/gpt2_cap_s0.log"
    grep -q ZERO_ERR_OOM "$OUT/gpt2_cap_s0.log" || fail "stage 0 did not report ZERO_ERR_OOM"
    train_gpt2 gpt2_cap_s3 4 ZERO_STAGE=3 ZERO_DEVICE_MEMORY=$cap ZERO_MAX_LIVE_MB=256K
    "$CHECK" le "$OUT/gpt2_cap_s3.json" device_peak_bytes capacity_bytes || exit 1 ;;
offload_np[1-4]) # offload on and off: same bits; device and host bytes match the formulas
    np=${case_name: -1}
    for dtype in fp32 bf16; do
        for stage in 1 2 3; do
            base=off_${dtype}_s${stage}_np$np
            train "${base}_none" "$np" ZERO_STAGE=$stage ZERO_DTYPE=$dtype
            train "${base}_cpu" "$np" ZERO_STAGE=$stage ZERO_DTYPE=$dtype ZERO_OFFLOAD_OPTIMIZER=cpu
            runs="${base}_cpu"
            if [ $stage = 3 ]; then
                train "${base}_all" "$np" ZERO_STAGE=3 ZERO_DTYPE=$dtype ZERO_OFFLOAD_OPTIMIZER=cpu \
                    ZERO_OFFLOAD_PARAM=cpu
                runs="$runs ${base}_all"
            fi
            # 4 KiB blocks: many per tensor through both staging halves; at stage 3 with the
            # parameter shard on the device (fp32) and on the host (bf16)
            train "${base}_blk" "$np" ZERO_STAGE=$stage ZERO_DTYPE=$dtype \
                ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_BLOCK_MB=4K \
                ZERO_OFFLOAD_PARAM=$([ $stage = 3 ] && [ $dtype = bf16 ] && echo cpu || echo none)
            runs="$runs ${base}_blk"
            for r in $runs; do
                "$CHECK" same "$OUT/${base}_none.json" "$OUT/$r.json" param_digest || exit 1
                "$CHECK" near "$OUT/$r.json" model_state_peak_bytes model_state_formula_bytes \
                    0.01 || exit 1
                "$CHECK" near "$OUT/$r.json" host_model_state_peak_bytes \
                    host_model_state_formula_bytes 0.01 || exit 1
                # every offload run moves the optimizer state off the device: its device peak
                # is below the same run's without offload
                dr=$("$CHECK" get "$OUT/$r.json" memory.device_peak_bytes) || exit 1
                dn=$("$CHECK" get "$OUT/${base}_none.json" memory.device_peak_bytes) || exit 1
                [ "$dr" -lt "$dn" ] || fail "$r: device peak $dr, not below $dn without offload"
                echo "ok: $r device peak $dr < $dn without offload"
            done
            if [ "$np" = 1 ]; then # one rank owns every parameter: bytes by formula
                psi=$("$CHECK" get "$OUT/${base}_cpu.json" num_params)
                w=$([ $dtype = fp32 ] && echo 4 || echo 2)
                for key in d2h_bytes h2d_bytes; do
                    got=$("$CHECK" get "$OUT/${base}_cpu.json" $key)
                    [ "$got" = $((20 * psi * w)) ] || fail "$base: $key $got, expected 20 steps x $psi x $w"
                done
                [ $stage != 3 ] || [ "$("$CHECK" get "$OUT/${base}_all.json" h2d_bytes)" = 0 ] ||
                    fail "$base: parameter offload copied parameters back"
                echo "ok: $base offload copies $got bytes each way (20 x Psi x $w)"
            fi
            dn=$("$CHECK" get "$OUT/${base}_none.json" device_peak_bytes)
            dc=$("$CHECK" get "$OUT/${base}_cpu.json" device_peak_bytes)
            [ "$dc" -lt "$dn" ] || fail "$base: offload did not lower the device peak ($dc vs $dn)"
            echo "ok: $base device peak $dn -> $dc bytes with optimizer offload"
        done
    done ;;
offload_param_bounds) # parameter offload: the device holds the grad shard + live window + buckets
    train off_bounds 4 ZERO_STAGE=3 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_PARAM=cpu \
        ZERO_PERSIST_KB=0 ZERO_MAX_LIVE_MB=256K
    "$CHECK" compare "$OUT/off_bounds.st" "$OUT/ref.st" 1e-5 || exit 1
    check_live_bound off_bounds 256 ;;
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
stage3_order_warning) # a gather out of the recorded order is correct (test_api) and warned about
    env -u ZERO_BUCKET_MB -u ZERO_EPS "$MPIRUN" -np 2 "$BIN/test_api" > "$OUT/order_warning.log" 2>&1 || { cat "$OUT/order_warning.log"; fail "test_api failed"; }
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
