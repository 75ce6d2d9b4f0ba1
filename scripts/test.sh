#!/usr/bin/env bash
# Installs what the project needs, builds it, and runs every test tier with ctest.
# Exits non-zero on any failure. Usage: scripts/test.sh [ctest arguments, e.g. -L unit]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SIDECORE_BUILD_DIR:-$root/build}
jobs=$(nproc)

"$root/scripts/install-deps.sh"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIDECORE_WERROR=ON
cmake --build "$build" -j "$jobs"

# Tests start real executors, fabric endpoints and MPI jobs: as root, Open MPI needs permission.
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export FI_TCP_IFACE=${FI_TCP_IFACE:-lo}

# Tiers that can share the machine run in parallel; each test has its own timeout.
ctest --test-dir "$build" --output-on-failure --timeout 600 "$@"
echo "scripts/test.sh: all tests passed"
