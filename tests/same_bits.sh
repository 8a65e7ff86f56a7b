#!/usr/bin/env bash
# same_bits.sh — behaviour unchanged, bit for bit: the MLP and GPT-2 examples trained by an
# earlier commit (BASE) and by the working tree (NEW), on the host backend under
# scripts/zero-mpirun, must write byte-identical --export files (cmp) and exit with the same
# status, for every configuration of the matrix
#   model {mlp, gpt2} x ZERO_DTYPE {fp32, bf16, fp16} x ranks {1, 2, 3, 4} x placement
#   {stage 0, 1, 2, 3; stages 1-3 with ZERO_OFFLOAD_OPTIMIZER=cpu; stage 3 with both optimizer
#   and ZERO_OFFLOAD_PARAM=cpu}   (2 x 3 x 4 x 8 = 192 configurations)
# plus, per model, ZERO_GRAD_ACCUM=2 at stages 0 and 2 (fp32, 2 ranks) and stage 3 with 16 KiB
# buckets (one chunk per module, nothing resident) with ZERO_PREFETCH_MB=0 and with the default
# prefetch, and stage 3 with the default bucket size (fp32, 3 ranks): 202 in all.
# Every run uses ZERO_BUCKET_MB=64K (several chunks per step, as tests/integration/run.sh) unless
# the configuration says otherwise. A configuration that fails on both sides with the same exit
# status counts as same (and says so); a run killed by the timeout counts as failed.
# BASE is built from this repository (git archive, no worktree) into
# ${SAME_BITS_CACHE:-${TMPDIR:-/tmp}/zero-same-bits}/<full sha>/build with ZERO_CUDA=OFF, Release,
# targets zero-mlp and zero-gpt2 only, and reused on later runs. NEW is NEW_BUILD_DIR's
# bin/zero-mlp and bin/zero-gpt2 as they are (rebuild it first); with no NEW_BUILD_DIR and no
# such binaries in <repo>/build, the working tree is built into <repo>/build-samebits (same flags).
# Both sides train GPT-2 on the working tree's examples/gpt2/data/corpus.txt (GPT2_DATA
# overrides), so only the code is compared, not the data file.
# Usage: tests/same_bits.sh [BASE_COMMIT] [NEW_BUILD_DIR]
#   BASE_COMMIT default: $SAME_BITS_BASE, else 28888fc (the commit before the engine redesign).
# Environment: MODELS, DTYPES, NPS (space-separated lists restricting the matrix; the extra
# configurations run when their model, dtype and rank count are selected), OUT (directory for the
# per-run exports and logs: OUT/base, OUT/new; default a new mktemp directory, printed),
# SAME_BITS_TIMEOUT (seconds per run, default 300), SAME_BITS_CACHE; JOBS is ignored (sequential).
# Other ZERO_* variables in the environment (ZERO_EPS, ...) reach both sides alike; the ones the
# matrix sets are cleared first.
# Prints one line per configuration (same / DIFF / FAIL), then
#   same_bits: N same, M differ, K failed (base <sha>)
# Exit 0 only when every configuration is same; 1 otherwise; 2 on a usage or build error.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mpirun=$root/scripts/zero-mpirun
jobs=$(nproc 2>/dev/null || echo 2)
die() { echo "same_bits: $*" >&2; exit 2; }

case "${1:-}" in -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ $# -le 2 ] || die "usage: tests/same_bits.sh [BASE_COMMIT] [NEW_BUILD_DIR]"
base_ref=${1:-${SAME_BITS_BASE:-28888fc}}
new_build=${2:-}
models=${MODELS:-mlp gpt2}
dtypes=${DTYPES:-fp32 bf16 fp16}
nps=${NPS:-1 2 3 4}
timeout_s=${SAME_BITS_TIMEOUT:-300}
gpt2_data=${GPT2_DATA:-$root/examples/gpt2/data/corpus.txt}
for m in $models; do case $m in mlp | gpt2) ;; *) die "MODELS: unknown model '$m' (mlp gpt2)" ;; esac; done
for d in $dtypes; do case $d in fp32 | bf16 | fp16) ;; *) die "DTYPES: unknown dtype '$d'" ;; esac; done
for n in $nps; do case $n in [1-4]) ;; *) die "NPS: '$n' is not 1-4 (batch 24/12 divides by 1-4)" ;; esac; done
[ -r "$gpt2_data" ] || die "GPT-2 data $gpt2_data not readable (set GPT2_DATA)"
has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }   # has LIST WORD

# configure_build SRC BUILD LOG: a CPU-only Release build of the two examples
configure_build() {
    mkdir -p "$2" || die "cannot create $2"
    { cmake -S "$1" -B "$2" -DZERO_CUDA=OFF -DCMAKE_BUILD_TYPE=Release &&
      cmake --build "$2" -j"$jobs" --target zero-mlp zero-gpt2; } > "$3" 2>&1 ||
        { tail -n 30 "$3" >&2; die "build of $1 into $2 failed (log: $3)"; }
}

# --- BASE: the commit, built once per sha into the cache ---------------------------------------
base_sha=$(git -C "$root" rev-parse --verify --quiet "$base_ref^{commit}") ||
    die "BASE_COMMIT '$base_ref' is not a commit of $root"
cache=${SAME_BITS_CACHE:-${TMPDIR:-/tmp}/zero-same-bits}
base_src=$cache/$base_sha
base_bin=$base_src/build/bin
mkdir -p "$cache" || die "cannot create $cache"
if [ ! -f "$base_src/.same-bits-built" ] || [ ! -x "$base_bin/zero-mlp" ] ||
   [ ! -x "$base_bin/zero-gpt2" ]; then
    exec 9> "$cache/$base_sha.lock"
    command -v flock > /dev/null && flock 9   # another same_bits.sh building the same sha
    if [ ! -f "$base_src/.same-bits-built" ]; then
        echo "same_bits: building base ${base_sha:0:12} into $base_src/build ..."
        start=$(date +%s)
        if [ ! -f "$base_src/.same-bits-extracted" ]; then
            rm -rf "$base_src" && mkdir -p "$base_src" &&
                git -C "$root" archive --format=tar "$base_sha" | tar -x -C "$base_src" &&
                touch "$base_src/.same-bits-extracted" || die "git archive $base_sha failed"
        fi
        configure_build "$base_src" "$base_src/build" "$base_src/build.log"
        touch "$base_src/.same-bits-built"
        echo "same_bits: base built in $(( $(date +%s) - start )) s"
    fi
    exec 9>&-
fi

# --- NEW: the given build, or the working tree built here ----------------------------------------
if [ -n "$new_build" ]; then
    new_bin=$(cd "$new_build" 2>/dev/null && pwd)/bin || die "NEW_BUILD_DIR $new_build not found"
    [ -x "$new_bin/zero-mlp" ] && [ -x "$new_bin/zero-gpt2" ] ||
        die "$new_build/bin lacks zero-mlp or zero-gpt2 (cmake --build $new_build --target zero-mlp zero-gpt2)"
elif [ -x "$root/build/bin/zero-mlp" ] && [ -x "$root/build/bin/zero-gpt2" ]; then
    new_bin=$root/build/bin
else
    echo "same_bits: building the working tree into $root/build-samebits ..."
    start=$(date +%s)
    configure_build "$root" "$root/build-samebits" "$root/build-samebits/same_bits-build.log"
    echo "same_bits: working tree built in $(( $(date +%s) - start )) s"
    new_bin=$root/build-samebits/bin
fi
new_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$new_bin/../CMakeCache.txt" 2>/dev/null)
[ "${new_type:-Release}" = Release ] ||
    echo "same_bits: warning: NEW is a $new_type build, BASE is Release (flags can change bits)"

# --- the matrix ---------------------------------------------------------------------------------
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/same-bits.XXXXXX")}
mkdir -p "$out/base" "$out/new" || die "cannot create $out"
MLP=(--layers 3 --width 64 --batch 24 --steps 6 --seed 3 --quiet)
GPT2=(--layers 2 --heads 2 --dim 32 --seq 16 --batch 12 --steps 5 --seed 5 --quiet --data "$gpt2_data")
# set by the matrix, so cleared from the caller's environment first
controlled=(ZERO_DEVICE ZERO_STAGE ZERO_DTYPE ZERO_OFFLOAD_OPTIMIZER ZERO_OFFLOAD_PARAM
            ZERO_GRAD_ACCUM ZERO_BUCKET_MB ZERO_PREFETCH_MB ZERO_PERSIST_KB ZERO_REPORT)
unsets=()
for v in "${controlled[@]}"; do unsets+=(-u "$v"); done

# run_side SIDE BIN NAME MODEL NP [VAR=VALUE ...]: OUT/SIDE/NAME.st and .log; prints the exit
# status. ZERO_BUCKET_MB=64K unless given; VAR= (empty) leaves VAR unset.
run_side() {
    local side=$1 bin=$2 name=$3 model=$4 np=$5; shift 5
    local args envs=() kv bucket=ZERO_BUCKET_MB=64K
    if [ "$model" = mlp ]; then args=("${MLP[@]}"); else args=("${GPT2[@]}"); fi
    for kv in "$@"; do
        case $kv in
        ZERO_BUCKET_MB=*) bucket=$kv ;;
        *=) ;;
        *) envs+=("$kv") ;;
        esac
    done
    [ "$bucket" = ZERO_BUCKET_MB= ] || envs+=("$bucket")
    rm -f "$out/$side/$name.st"
    env "${unsets[@]}" ZERO_DEVICE=host "${envs[@]}" \
        timeout "$timeout_s" "$mpirun" -np "$np" "$bin/zero-$model" "${args[@]}" \
        --export "$out/$side/$name.st" > "$out/$side/$name.log" 2>&1
    echo $?
}

n_same=0 n_diff=0 n_fail=0 n_both_failed=0
# config NAME MODEL NP [VAR=VALUE ...]: both sides, compared; one line
config() {
    local name=$1 model=$2 np=$3; shift 3
    local rb rn verdict detail=""
    rb=$(run_side base "$base_bin" "$name" "$model" "$np" "$@")
    rn=$(run_side new "$new_bin" "$name" "$model" "$np" "$@")
    if [ "$rb" = 124 ] || [ "$rn" = 124 ]; then
        verdict=FAIL detail="timed out after ${timeout_s} s (base exit $rb, new exit $rn)"
    elif [ "$rb" != "$rn" ]; then
        verdict=FAIL detail="exit status differs: base $rb, new $rn"
    elif [ "$rb" != 0 ]; then
        n_both_failed=$((n_both_failed + 1))
        verdict=same detail="(both exit $rb: $(grep -m1 -iE 'error|fail' "$out/new/$name.log" | cut -c1-100))"
    elif [ ! -s "$out/base/$name.st" ] || [ ! -s "$out/new/$name.st" ]; then
        verdict=FAIL detail="exit 0 but an export is missing or empty"
    elif cmp -s "$out/base/$name.st" "$out/new/$name.st"; then
        verdict=same
    else
        verdict=DIFF
        detail="($(cmp -l "$out/base/$name.st" "$out/new/$name.st" 2>/dev/null | wc -l) bytes differ;"
        detail+=" $(grep -h -m1 'final loss' "$out/base/$name.log") -> $(grep -h -m1 'final loss' "$out/new/$name.log" | sed 's/final loss //'))"
    fi
    case $verdict in same) n_same=$((n_same + 1)) ;; DIFF) n_diff=$((n_diff + 1)) ;; *) n_fail=$((n_fail + 1)) ;; esac
    printf '%-40s %s %s\n' "$name" "$verdict" "$detail"
}

echo "same_bits: base ${base_sha:0:12} ($base_bin) vs new ($new_bin)"
echo "same_bits: logs and exports in $out"
start=$(date +%s)
placements=("s0 ZERO_STAGE=0" "s1 ZERO_STAGE=1" "s2 ZERO_STAGE=2" "s3 ZERO_STAGE=3"
    "s1_offopt ZERO_STAGE=1 ZERO_OFFLOAD_OPTIMIZER=cpu"
    "s2_offopt ZERO_STAGE=2 ZERO_OFFLOAD_OPTIMIZER=cpu"
    "s3_offopt ZERO_STAGE=3 ZERO_OFFLOAD_OPTIMIZER=cpu"
    "s3_offopt_offparam ZERO_STAGE=3 ZERO_OFFLOAD_OPTIMIZER=cpu ZERO_OFFLOAD_PARAM=cpu")
extras=("accum2_s0 fp32 2 ZERO_STAGE=0 ZERO_GRAD_ACCUM=2"
    "accum2_s2 fp32 2 ZERO_STAGE=2 ZERO_GRAD_ACCUM=2"
    "s3_bucket16K_pf0 fp32 3 ZERO_STAGE=3 ZERO_BUCKET_MB=16K ZERO_PERSIST_KB=0 ZERO_PREFETCH_MB=0"
    "s3_bucket16K fp32 3 ZERO_STAGE=3 ZERO_BUCKET_MB=16K ZERO_PERSIST_KB=0"
    "s3_bucketdefault fp32 3 ZERO_STAGE=3 ZERO_BUCKET_MB=")
total=0
for model in $models; do
    for dtype in $dtypes; do
        for np in $nps; do
            for p in "${placements[@]}"; do
                read -r -a w <<< "$p"
                config "${model}_${dtype}_np${np}_${w[0]}" "$model" "$np" ZERO_DTYPE="$dtype" "${w[@]:1}"
                total=$((total + 1))
            done
        done
    done
    for e in "${extras[@]}"; do
        read -r -a w <<< "$e"
        has "$dtypes" "${w[1]}" && has "$nps" "${w[2]}" || continue
        config "${model}_${w[1]}_np${w[2]}_${w[0]}" "$model" "${w[2]}" ZERO_DTYPE="${w[1]}" "${w[@]:3}"
        total=$((total + 1))
    done
done
[ "$total" -gt 0 ] || die "MODELS/DTYPES/NPS select no configuration"
echo "same_bits: $total configurations in $(( $(date +%s) - start )) s; logs and exports in $out"
[ "$n_both_failed" = 0 ] ||
    echo "same_bits: note: $n_both_failed of the same configurations failed on both sides alike"
echo "same_bits: $n_same same, $n_diff differ, $n_fail failed (base $base_sha)"
[ "$n_same" = "$total" ]
