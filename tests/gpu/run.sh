#!/usr/bin/env bash
# tests/gpu/run.sh — the one script a GPU session runs: builds libzero with CUDA into build-gpu,
# runs the GPU tests (ctest -L gpu) and every GPU benchmark that was built, and writes a results
# table (markdown) to stdout and to a file.
#
# Usage: tests/gpu/run.sh [RESULTS.md]     (default: $OUT/gpu-results.md, else build-gpu/...)
# On a machine without MPI/hwloc/OpenBLAS and without a network (the device tool's), run
# `tests/gpu/deps.sh fetch` beforehand where apt works and carry .gpu-deps: this script unpacks it.
# Environment: BUILD_DIR (default <repo>/build-gpu), CUDA_ARCHS (CMAKE_CUDA_ARCHITECTURES,
# default the project's), JOBS (default nproc).
# Exit status: 0 when the build and every test passed (with a GPU present, a skipped single-GPU
# test counts as a failure; gpu_nccl_np2 may skip on one GPU) and every benchmark exited 0 or 77.
# Benchmark targets (ratio lines) are reported, not enforced.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD_DIR:-$root/build-gpu}
if [ $# -ge 1 ]; then
  results=$1
elif [ -n "${OUT:-}" ]; then
  results=$OUT/gpu-results.md
else
  results=$build/gpu-results.md
fi
mkdir -p "$(dirname "$results")" "$build"
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
logs=$build/gpu-logs
mkdir -p "$logs"
status=0

echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi 2>&1 | tee "$logs/nvidia-smi.txt"
  gpus=$(nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>/dev/null)
else
  echo "nvidia-smi: not found" | tee "$logs/nvidia-smi.txt"
  gpus="(nvidia-smi not found)"
fi

# Open MPI, hwloc, OpenBLAS carried as .deb files (tests/gpu/deps.sh fetch, then carry .gpu-deps)
# where the machine has none and cannot download them.
if ! command -v mpicc >/dev/null 2>&1 && ls "$root"/.gpu-deps/*.deb >/dev/null 2>&1; then
  # shellcheck source=tests/gpu/deps.sh
  . "$root/tests/gpu/deps.sh" unpack
fi

# NCCL from the pip wheel (nvidia-nccl-cu*) when no NCCL_ROOT is given and none is installed.
if [ -z "${NCCL_ROOT:-}" ] && [ ! -e /usr/include/nccl.h ] && [ ! -e /usr/local/cuda/include/nccl.h ]; then
  wheel=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)
  [ -n "$wheel" ] && [ -e "$wheel/include/nccl.h" ] && export NCCL_ROOT=$wheel
fi
echo "== prerequisites"
for tool in cmake nvcc mpicc pkg-config; do
  printf '%-11s %s\n' "$tool" "$(command -v $tool || ls /usr/local/cuda/bin/$tool 2>/dev/null || echo MISSING)"
done
printf '%-11s %s\n' hwloc "$(pkg-config --modversion hwloc 2>/dev/null || echo MISSING)"
printf '%-11s %s\n' NCCL_ROOT "${NCCL_ROOT:-(system paths)}"

echo "== configure and build ($build)"
cfg=(-DZERO_CUDA=ON -DCMAKE_BUILD_TYPE=Release)
[ -n "${CUDA_ARCHS:-}" ] && cfg+=("-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS")
build_ok=1
if ! cmake -S "$root" -B "$build" "${cfg[@]}" >"$logs/configure.log" 2>&1; then
  build_ok=0
elif ! cmake --build "$build" -j "$jobs" >"$logs/build.log" 2>&1; then
  build_ok=0
fi
if [ $build_ok = 0 ]; then
  status=1
  echo "build FAILED; last lines:"
  tail -30 "$logs/configure.log" "$logs/build.log" 2>/dev/null
fi

# ---- tests ----
test_rows=""
if [ $build_ok = 1 ]; then
  echo "== ctest -L gpu"
  (cd "$build" && ctest -L gpu --output-on-failure 2>&1) | tee "$logs/ctest.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # "  1/4 Test  #9: gpu_kernels ......   Passed    1.23 sec" -> | gpu_kernels | Passed | 1.23 s |
  test_rows=$(sed -nE 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+) \.+ *(\*\*\*)?([A-Za-z]+[A-Za-z ()]*[A-Za-z)]) +([0-9.]+) sec.*/| \1 | \3 | \4 s |/p' "$logs/ctest.txt")
  grep -q "tests failed out of" "$logs/ctest.txt" || status=1
  # With a GPU present, the single-GPU tests must run: a skip there is a failure (driver, CUDA
  # version or visibility problem). gpu_nccl_np2 may skip on a one-GPU machine.
  if [ -n "$gpus" ] && [ "$gpus" != "(nvidia-smi not found)" ] &&
     printf '%s\n' "$test_rows" | grep -qE '^\| gpu_(kernels|device|nccl_np1|train_[a-z0-9_]+) \| Skipped'; then
    echo "FAIL: a GPU is present but single-GPU tests were skipped (see their output above)"
    test_rows+=$'\n'"| (GPU present but tests skipped) | FAIL | |"
    status=1
  fi
fi

# ---- benchmarks: every zero-bench-gpu-* that was built ----
bench_rows=""
if [ $build_ok = 1 ]; then
  for b in "$build"/bin/zero-bench-gpu-*; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    echo "== $name"
    # shellcheck disable=SC2086
    "$b" 2>&1 | tee "$logs/$name.txt"
    rc=${PIPESTATUS[0]}
    case $rc in
      0) verdict=ok ;;
      77) verdict=skipped ;;
      *) verdict="FAILED (exit $rc)"; status=1 ;;
    esac
    summary=$(grep -E '^ratio=' "$logs/$name.txt" | tail -1)
    bench_rows+="| $name | $verdict | \`${summary:-"(no summary line)"}\` |"$'\n'
  done
fi

# ---- results table ----
{
  echo "# libzero GPU results"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- host: $(hostname)"
  echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "- GPUs: ${gpus//$'\n'/; }"
  echo "- nvcc: $( (command -v nvcc >/dev/null && nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
  echo "- build: $([ $build_ok = 1 ] && echo ok || echo FAILED) ($build)"
  echo
  echo "## Tests (ctest -L gpu)"
  echo
  echo "| test | result | time |"
  echo "|---|---|---|"
  printf '%s\n' "${test_rows:-| (none ran) | | |}"
  echo
  echo "## Benchmarks"
  echo
  echo "| benchmark | result | summary |"
  echo "|---|---|---|"
  printf '%s' "${bench_rows:-| (none built) | | |$'\n'}"
  echo
  for f in "$logs"/zero-bench-gpu-*.txt; do
    [ -f "$f" ] || continue
    echo "### $(basename "$f" .txt)"
    echo
    echo '```'
    cat "$f"
    echo '```'
    echo
  done
  if [ -f "$logs/ctest.txt" ] && grep -qE 'Failed|\*\*\*(Timeout|Exception)' "$logs/ctest.txt"; then
    echo "### ctest output (failures)"
    echo
    echo '```'
    cat "$logs/ctest.txt"
    echo '```'
  fi
  echo "Overall: $([ $status = 0 ] && echo PASS || echo FAIL)"
} >"$results"

echo
echo "== results ($results)"
cat "$results"
exit $status
