#!/usr/bin/env bash
# setup.sh — installs what libzero needs on a fresh Debian/Ubuntu machine (only what is
# missing), then configures and builds into build/ (executables in build/bin/).
# Environment: BUILD_DIR (default build), ZERO_CUDA (AUTO|ON|OFF, default AUTO),
# CMAKE_BUILD_TYPE (default Release), ZERO_BLAS (openblas|any|off, default openblas: see
# cmake/ZeroBLAS.cmake).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v gcc >/dev/null || need+=(gcc g++ make)
command -v mpicc >/dev/null || need+=(libopenmpi-dev)
command -v mpirun >/dev/null || need+=(openmpi-bin)
[ -e /usr/include/hwloc.h ] || need+=(libhwloc-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
# jansson (checkpoint manifests; the tests' zero-check reads the JSON report with it) and
# libxxhash (checkpoint checksums, XXH3)
{ command -v pkg-config >/dev/null && pkg-config --exists jansson; } || need+=(libjansson-dev)
{ command -v pkg-config >/dev/null && pkg-config --exists libxxhash; } || need+=(libxxhash-dev)
# OpenBLAS itself, not any cblas.h: the base image ships the netlib reference BLAS (libblas-dev,
# with a cblas.h), ~8x slower. OpenBLAS's OpenMP build, so its threads are OpenMP's
# (OMP_NUM_THREADS, split between ranks by zero-mpirun) and a call from inside the model's
# OpenMP loops runs on the calling thread. An OpenBLAS already installed (any build) is kept.
if [ -z "${ZERO_BLAS:-}" ] || [ "${ZERO_BLAS}" = openblas ]; then
    { command -v pkg-config >/dev/null && pkg-config --exists openblas; } ||
        need+=(libopenblas-openmp-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# CUDA: found where the toolkit is installed (the CUDA backend needs no GPU to build).
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH=/usr/local/cuda/bin:$PATH
fi

mkdir -p "$build"
cmake -S "$root" -B "$build" -DZERO_CUDA="${ZERO_CUDA:-AUTO}" -DZERO_BLAS="${ZERO_BLAS:-openblas}" \
    -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" > "$build/configure.log" 2>&1 ||
    { cat "$build/configure.log"; exit 1; }
grep -E "libzero:" "$build/configure.log" || true
cmake --build "$build" -j "$(nproc)"
