#!/usr/bin/env bash
# Installs what the project needs, builds it, and runs every test tier with ctest, then runs the mpi
# tier again against MPICH, and the unit and integration tiers under ASan+UBSan and under TSan.
# Exits non-zero on any failure.
#
#   scripts/test.sh                      everything (what CI runs)
#   scripts/test.sh -L unit              only some tests of the main build (ctest arguments);
#                                        the sanitizer builds are skipped when arguments are given
#   SIDECORE_SANITIZERS=0 scripts/test.sh  skip the sanitizer builds
#   SIDECORE_MPICH=0 scripts/test.sh     skip the second build, against MPICH, and its mpi tier
#   SIDECORE_FORMAT_CHECK=0 scripts/test.sh  skip the format check (scripts/check-format.sh) that runs
#                                        first with no arguments
#   scripts/test.sh --distro trixie [ARGS]  only the main tier (unit, integration, mpi, slurm,
#                                        multinode), built and run inside a cached Debian 13 root:
#                                        Slurm 24.11, Open MPI 5.0, libfabric 2.1, g++ 14 (ARGS go
#                                        to ctest there); see scripts/distro-test.sh
#   SIDECORE_DISTROS=0 scripts/test.sh   skip the trixie tier that runs last with no arguments
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --- other Debian releases (scripts/distro-test.sh) ------------------------------------------------
if [[ ${1-} == --distro || ${1-} == --distro=* ]]; then
  if [[ $1 == --distro=* ]]; then distro=${1#*=}; shift; else distro=${2:?--distro needs a name}; shift 2; fi
  "$root/scripts/install-deps.sh"
  exec "$root/scripts/distro-test.sh" "$distro" "$@"
fi
# ----------------------------------------------------------------------------------------------------
build=${SIDECORE_BUILD_DIR:-$root/build}
jobs=$(nproc)

"$root/scripts/install-deps.sh"

# ccache: the MPICH build and the package test's build (package.deb) compile most of the main
# build's sources again with the same flags. Paths are hashed relative to the checkout, so build
# folders beside each other (build, build-mpich, build-package) share what they compiled. Only for
# build folders configured from here: CMake reads these variables when it creates a cache.
if command -v ccache >/dev/null && [[ -z ${CMAKE_CXX_COMPILER_LAUNCHER-} ]]; then
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
  export CCACHE_DIR=${CCACHE_DIR:-$build/ccache} CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
fi

# Tests start real executors, fabric endpoints and MPI jobs: as root, Open MPI needs permission.
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export FI_TCP_IFACE=${FI_TCP_IFACE:-lo}

section() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

if [[ $# -eq 0 && ${SIDECORE_FORMAT_CHECK:-1} != 0 ]]; then
  section "format"
  # The C/C++ files changed since .ci/format-base must be formatted as .clang-format says.
  "$root/scripts/check-format.sh"
fi

section "build"
# Every part is asked for by name: a missing slurm/spank.h, or OFF cached in a reused build folder,
# fails here instead of dropping the slurm, multinode and plugin tests without a word.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIDECORE_WERROR=ON \
  -DSIDECORE_BUILD_SPANK=ON -DSIDECORE_BUILD_FORTRAN=ON -DSIDECORE_TEST_PYTHON=ON -DSIDECORE_BUILD_TESTS=ON \
  -DSIDECORE_BUILD_BENCH=ON -DSIDECORE_BUILD_EXAMPLES=ON
cmake --build "$build" -j "$jobs"

section "tests"
# One test at a time: several tests check timing bounds and CPU use, and the machine has 2 cores.
# --no-tests=error: a label or regex that selects nothing is a failure, not a pass.
ctest --test-dir "$build" --output-on-failure --no-tests=error --timeout 600 "$@"

if [[ $# -eq 0 && ${SIDECORE_MPICH:-1} != 0 ]]; then
  # The mpi tier again, built against Debian's MPICH (its progress goes through MPICH's extended
  # generalized requests instead of Open MPI's opal_progress hook), with the Fortran binding.
  # Debian builds python3-mpi4py against Open MPI only, so the Python checks stay in the main build.
  section "MPICH build"
  cmake -S "$root" -B "$build-mpich" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIDECORE_WERROR=ON \
    -DMPI_C_COMPILER=mpicc.mpich -DMPI_CXX_COMPILER=mpicxx.mpich -DMPI_Fortran_COMPILER=mpif90.mpich \
    -DMPIEXEC_EXECUTABLE=/usr/bin/mpiexec.mpich -DSIDECORE_BUILD_FORTRAN=ON -DSIDECORE_TEST_PYTHON=OFF \
    -DSIDECORE_BUILD_SPANK=OFF -DSIDECORE_BUILD_BENCH=OFF -DSIDECORE_BUILD_EXAMPLES=ON >/dev/null
  grep -q '^SIDECORE_MPI_FLAVOR_USED:INTERNAL=mpich$' "$build-mpich/CMakeCache.txt" ||
    { echo "scripts/test.sh: the MPICH build did not pick MPICH's mpi.h" >&2; exit 1; }
  cmake --build "$build-mpich" -j "$jobs" --target sidecore_mpi_tier
  section "MPICH tests"
  ctest --test-dir "$build-mpich" --output-on-failure --no-tests=error --timeout 600 -L mpi
fi

if [[ $# -eq 0 && ${SIDECORE_SANITIZERS:-1} != 0 ]]; then
  # The runtime and the client under the sanitizers, on the unit and integration tiers.
  sanitizer_tier() {
    local name=$1 sanitize=$2 dir=$build-$1
    section "$name build"
    # Each test's own TIMEOUT overrides ctest --timeout: stretch those instead.
    # No compiler cache: nothing else is built with these flags, so it would only cost time.
    CMAKE_C_COMPILER_LAUNCHER= CMAKE_CXX_COMPILER_LAUNCHER= \
      cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DSIDECORE_SANITIZE="$sanitize" -DSIDECORE_WERROR=ON \
      -DSIDECORE_TEST_TIMEOUT_SCALE=5 -DSIDECORE_BUILD_BENCH=OFF -DSIDECORE_BUILD_EXAMPLES=OFF \
      -DSIDECORE_BUILD_SPANK=OFF -DSIDECORE_BUILD_FORTRAN=OFF >/dev/null
    cmake --build "$dir" -j "$jobs"
    section "$name tests"
    ctest --test-dir "$dir" --output-on-failure --no-tests=error -L 'unit|integration' -E 'install|spank'
  }
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export LSAN_OPTIONS=suppressions=$root/tests/sanitizers/lsan.supp
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export SIDECORE_TEST_TIME_SCALE=5  # sanitizers slow everything down; tests stretch their time bounds
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/sanitizers/tsan.supp"
  sanitizer_tier asan address,undefined
  sanitizer_tier tsan thread
fi

# --- other Debian releases: the main tier inside a Debian 13 root (scripts/distro-test.sh) ---------
if [[ $# -eq 0 && ${SIDECORE_DISTROS:-1} != 0 ]]; then
  section "trixie (Debian 13) build and tests"
  "$root/scripts/distro-test.sh" trixie
fi
# ----------------------------------------------------------------------------------------------------
section "done"
echo "scripts/test.sh: all tests passed"
