#!/usr/bin/env bash
# test.sh — the test command: set up and build, then run the whole suite (unit tests and the
# multi-rank integration tests under mpirun -np 1..4). Extra arguments go to ctest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
cd "${BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" "$@"
