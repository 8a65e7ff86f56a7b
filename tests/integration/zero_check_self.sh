#!/usr/bin/env bash
# zero_check_self: zero-check's own test. Usage: zero_check_self.sh ZERO_CHECK DIR. Writes a
# small report whose keys repeat across sections (like the real report's per-rank entries and
# totals) and checks dotted paths, ambiguous bare keys, le, near, get and same, with their exit
# codes (0 holds, 1 does not, 2 bad input). Exit 0 = pass.
set -uo pipefail
CHECK=${1:?zero-check}
dir=${2:?directory}
mkdir -p "$dir"
r=$dir/report.json
cat > "$r" <<'EOF'
{
  "config": {"stage": 3, "device": "host"},
  "stage": 3,
  "num_params": 1000,
  "loss_scale": 1,
  "memory": {
    "capacity_bytes": 4096,
    "device_peak_bytes": 3000,
    "peak_bytes": {"params": 100, "total": 3000},
    "per_rank": [
      {"rank": 0, "params": 100, "total": 3000},
      {"rank": 1, "params": 90, "total": 2900}
    ]
  },
  "comm": {"bus_bytes_per_step": 794952.0, "bus_bytes_formula_per_step": 790000.5},
  "time": {"wall_s": 0.301557, "step_s": 1e-07},
  "param_digest": "f109c197cf10d127"
}
EOF
sed -e 's/"loss_scale": 1,/"loss_scale": 1.0,/' \
    -e 's/"rank": 1, "params": 90/"rank": 1, "params": 91/' "$r" > "$dir/other.json"
printf '{"a": 1, "a": 2}\n' > "$dir/dup.json"
printf '{"a": 1,\n' > "$dir/broken.json"

failures=0
# expect RC WHAT ARGS...: zero-check ARGS must exit RC
expect() {
    local want=$1 what=$2; shift 2
    local out rc
    out=$("$CHECK" "$@" 2>&1)
    rc=$?
    if [ "$rc" = "$want" ]; then
        echo "ok: $what (exit $rc): $out"
    else
        echo "FAIL: $what: zero-check $* exited $rc, expected $want: $out"
        failures=$((failures + 1))
    fi
}
# expect_get VALUE KEY [FILE]: zero-check get prints exactly VALUE
expect_get() {
    local got
    got=$("$CHECK" get "${3:-$r}" "$2" 2>&1)
    if [ "$got" = "$1" ]; then
        echo "ok: get $2 = $got"
    else
        echo "FAIL: get $2 printed '$got', expected '$1'"
        failures=$((failures + 1))
    fi
}

# dotted paths, array indices, a leading dot for a top-level key
expect_get 3000 memory.device_peak_bytes
expect_get 2900 memory.per_rank.1.total
expect_get 90 memory.per_rank.1.params
expect_get 100 memory.peak_bytes.params
expect_get 3 config.stage
expect_get 3 .stage
expect_get 1000 .num_params
# a bare key that occurs once, anywhere
expect_get 1000 num_params
expect_get 4096 capacity_bytes
# numbers as written: integers without a point, reals with the digits that read back the same
expect_get 794952 bus_bytes_per_step
expect_get 790000.5 comm.bus_bytes_formula_per_step
expect_get 0.301557 time.wall_s
expect_get 1e-07 step_s
expect_get f109c197cf10d127 param_digest
expect_get host config.device

# ambiguous bare keys: exit 2, listing every path
expect 2 "ambiguous 'total'" get "$r" total
expect 2 "ambiguous 'stage'" le "$r" stage stage
msg=$("$CHECK" get "$r" params 2>&1)
for p in memory.peak_bytes.params memory.per_rank.0.params memory.per_rank.1.params; do
    case "$msg" in
    *"$p"*) echo "ok: the ambiguity message names $p" ;;
    *) echo "FAIL: the ambiguity message lacks $p: $msg"; failures=$((failures + 1)) ;;
    esac
done
msg=$("$CHECK" get "$r" stage 2>&1)
case "$msg" in
*" .stage"*"config.stage"* | *"config.stage"*" .stage"*)
    echo "ok: stage listed as .stage and config.stage" ;;
*) echo "FAIL: the ambiguity message for stage: $msg"; failures=$((failures + 1)) ;;
esac

# missing keys, bad paths, values that are not numbers, bad files: exit 2
expect 2 "missing key" get "$r" no_such_key
expect 2 "missing path" get "$r" memory.no_such_key
expect 2 "index past the end" get "$r" memory.per_rank.2.total
expect 2 "index that is not a number" get "$r" memory.per_rank.x.total
expect 2 "path through a number" get "$r" memory.device_peak_bytes.x
expect 2 "empty path segment" get "$r" memory..device_peak_bytes
expect 2 "le on a string" le "$r" param_digest num_params
expect 2 "bad tolerance" near "$r" memory.device_peak_bytes memory.capacity_bytes abc
expect 2 "duplicate key in one object" get "$dir/dup.json" a
expect 2 "not JSON" get "$dir/broken.json" a
expect 2 "no such file" get "$dir/missing.json" a
expect 2 "usage" get "$r"

# le: holds (0) or not (1)
expect 0 "le smaller <= larger" le "$r" memory.device_peak_bytes memory.capacity_bytes
expect 0 "le equal" le "$r" memory.device_peak_bytes memory.peak_bytes.total
expect 1 "le larger <= smaller" le "$r" memory.capacity_bytes memory.device_peak_bytes
expect 0 "le, bare keys" le "$r" device_peak_bytes capacity_bytes
expect 1 "le, per-rank entries" le "$r" memory.per_rank.0.total memory.per_rank.1.total
# near: |a - b| <= rtol |b|; 3000 vs 2900 differ by 3.4%
expect 0 "near within 5%" near "$r" memory.per_rank.0.total memory.per_rank.1.total 0.05
expect 1 "near beyond 1%" near "$r" memory.per_rank.0.total memory.per_rank.1.total 0.01
expect 0 "near within 1%, real values" near "$r" bus_bytes_per_step bus_bytes_formula_per_step 0.01
expect 1 "near beyond 0.1%, real values" near "$r" bus_bytes_per_step \
    bus_bytes_formula_per_step 0.001
# same: across two reports
expect 0 "same digest" same "$r" "$dir/other.json" param_digest
expect 0 "same number written 1 and 1.0" same "$r" "$dir/other.json" .loss_scale
expect 0 "same per-rank entry" same "$r" "$dir/other.json" memory.per_rank.0.params
expect 1 "different per-rank entry" same "$r" "$dir/other.json" memory.per_rank.1.params
expect 2 "same with an ambiguous key" same "$r" "$dir/other.json" params

if [ $failures -ne 0 ]; then
    echo "FAIL: $failures zero-check checks failed"
    exit 1
fi
echo "ok: zero-check self-test passed"
