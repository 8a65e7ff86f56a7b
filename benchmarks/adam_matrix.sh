#!/usr/bin/env bash
# adam_matrix.sh — zero-bench-adam over both SIMD paths and three array placements, RUNS times,
# each run started once the machine is quiet (1-minute load average below LOAD_MAX, polled every
# 30 s for up to 15 minutes; a run that had to start anyway is marked). Prints one line per run
# and then, per path and placement, the median, lowest and highest ratio1 (1 thread) and ratio
# (all threads) over the runs (docs/BENCHMARKS.md, "CPU Adam").
#
#   benchmarks/adam_matrix.sh [BIN [RUNS]]      (default build/bin/zero-bench-adam, 5)
#   ISAS="avx512 avx2" ALIGNS="0 64 68" LOAD_MAX=1.5 BENCH_ARGS="--n 32M" benchmarks/adam_matrix.sh
set -euo pipefail

bin=${1:-build/bin/zero-bench-adam}
runs=${2:-5}
isas=${ISAS:-avx512 avx2}
aligns=${ALIGNS:-0 64 68}
load_max=${LOAD_MAX:-1.5}
[ -x "$bin" ] || { echo "adam_matrix: $bin is not executable" >&2; exit 2; }

wait_quiet() {
    local l
    for _ in $(seq 1 30); do
        l=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$l" -v m="$load_max" 'BEGIN { exit !(l < m) }'; then
            echo "$l"
            return
        fi
        sleep 30
    done
    echo "${l}(busy)"
}

results=$(mktemp)
trap 'rm -f "$results"' EXIT
echo "# run isa align ratio1 ratio memonly1_GBps memonly_GBps wrong load"
for r in $(seq 1 "$runs"); do
    for isa in $isas; do
        for a in $aligns; do
            load=$(wait_quiet)
            # shellcheck disable=SC2086
            out=$("$bin" --isa "$isa" --align "$a" ${BENCH_ARGS:-} 2>&1) || true
            r1=$(sed -n 's/^ratio1=\([0-9.]*\).*memonly_GBps=\([0-9.]*\).*/\1 \2/p' <<<"$out")
            rn=$(sed -n \
                's/^ratio=\([0-9.]*\).*memonly_GBps=\([0-9.]*\).*wrong=\([0-9]*\).*/\1 \2 \3/p' \
                <<<"$out")
            if [ -z "$r1" ] || [ -z "$rn" ]; then
                echo "adam_matrix: no ratio lines in the output of $bin:" >&2
                echo "$out" >&2
                exit 1
            fi
            read -r ratio1 mem1 <<<"$r1"
            read -r ratio memn wrong <<<"$rn"
            line="$r $isa $a $ratio1 $ratio $mem1 $memn $wrong $load"
            echo "$line"
            echo "$line" >>"$results"
        done
    done
done

echo
echo "| path | align | ratio1 median (min-max) | ratio median (min-max) |" \
    "runs >= 0.95 (1 thread, all) |"
echo "|---|---|---|---|---|"
for isa in $isas; do
    for a in $aligns; do
        awk -v isa="$isa" -v a="$a" '
            function med(x, n,   i, j, t) {
                for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                    if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
            }
            $2 == isa && $3 == a {
                n++; r1[n] = $4; rn[n] = $5; ok1 += $4 >= 0.95; okn += $5 >= 0.95
            }
            END {
                if (!n) exit
                m1 = med(r1, n); mn = med(rn, n)
                printf "| %s | %s | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) | %d/%d, %d/%d |\n",
                       isa, a, m1, r1[1], r1[n], mn, rn[1], rn[n], ok1, n, okn, n
            }' "$results"
    done
done
