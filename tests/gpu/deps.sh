#!/usr/bin/env bash
# tests/gpu/deps.sh — Open MPI, hwloc and OpenBLAS for a GPU machine that has none and cannot
# download (the device tool's machines: CUDA, NCCL's wheel and CMake are there; MPI, hwloc and
# a CBLAS are not, and nothing can be fetched there).
#
#   tests/gpu/deps.sh fetch            here (apt works): the .deb files into <repo>/.gpu-deps
#   . tests/gpu/deps.sh unpack [DIR]   there: unpacks them into DIR (default /tmp/zero-deps) and
#                                      exports PATH, LD_LIBRARY_PATH, PKG_CONFIG_PATH,
#                                      PKG_CONFIG_SYSROOT_DIR, OPAL_PREFIX so CMake, mpicc and
#                                      mpirun find them (source it: the exports are the point)
#
# The packages are Debian 12's (Open MPI 4.1.4, hwloc 2.9, jansson, OpenBLAS 0.3.21 in its OpenMP build
# as setup.sh installs it, pkg-config) and the libraries a minimal image may lack; Open MPI is
# relocated with OPAL_PREFIX. Name .gpu-deps in the device tool's `carry` (about 20 MiB);
# tests/gpu/run.sh sources `unpack` itself when mpicc is missing.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
debs=$root/.gpu-deps
pkgs=(libopenmpi3 libopenmpi-dev openmpi-bin openmpi-common libpmix2 libevent-core-2.1-7
      libevent-pthreads-2.1-7 libfabric1 libucx0 libibverbs1 librdmacm1 libnl-3-200
      libnl-route-3-200 libpsm2-2 libpsm-infinipath1 libmunge2 libnuma1 libhwloc15 libhwloc-dev
      libgfortran5 libquadmath0 libudev1 libatomic1 libopenblas0-openmp libopenblas-openmp-dev libgomp1
      libjansson4 libjansson-dev
      pkgconf pkgconf-bin libpkgconf3)

zero_deps_fetch() {
    mkdir -p "$debs" && (cd "$debs" && rm -f ./*.deb && apt-get download "${pkgs[@]}") || return 1
    du -sh "$debs"
}

zero_deps_unpack() {
    local d=${1:-/tmp/zero-deps} f
    ls "$debs"/*.deb >/dev/null 2>&1 || { echo "deps.sh: no .deb files in $debs"; return 1; }
    mkdir -p "$d/bin"
    for f in "$debs"/*.deb; do dpkg-deb -x "$f" "$d" || return 1; done
    local lib=$d/usr/lib/x86_64-linux-gnu
    # what Debian's alternatives system would have linked
    ln -sf "$d/usr/bin/opal_wrapper" "$d/bin/mpicc"
    ln -sf "$d/usr/bin/orterun" "$d/bin/mpirun"
    ln -sf "$d/usr/bin/orterun" "$d/bin/mpiexec"
    ln -sf "$lib/openblas-openmp/pkgconfig/openblas.pc" "$lib/pkgconfig/openblas.pc"
    export OPAL_PREFIX=$d/usr
    export PATH=$d/bin:$d/usr/bin:$PATH
    export LD_LIBRARY_PATH=$lib:$lib/openmpi/lib:$lib/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export PKG_CONFIG_PATH=$lib/pkgconfig
    export PKG_CONFIG_SYSROOT_DIR=$d
    echo "deps.sh: Open MPI, hwloc, OpenBLAS unpacked in $d ($(mpicc --showme:version 2>&1 | head -1))"
}

case "${1:-}" in
fetch) zero_deps_fetch ;;
unpack) zero_deps_unpack "${2:-}" ;;
*) echo "usage: tests/gpu/deps.sh fetch | . tests/gpu/deps.sh unpack [DIR]"; false ;;
esac
