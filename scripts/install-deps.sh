#!/usr/bin/env bash
# Installs the Debian 12 packages Sidecore needs to build, test and run.
# Installs only what is missing, never asks, and is safe to run any number of times.
set -euo pipefail

# Each entry is used by the tree: the build (CMake files), the tests, scripts/, bench/ or bench/peers/.
packages=(
  build-essential cmake pkg-config git           # git: bench/scaling.sh records the commit
  ccache                                         # scripts/test.sh: the MPICH and package builds reuse the main build's objects
  libfabric-dev libfabric-bin libibverbs-dev     # libfabric-bin: fi_pingpong, the bench baseline
  libopenmpi-dev openmpi-bin
  libmpich-dev mpich                             # the second build and mpi tier (Open MPI stays the default mpi.h)
  gfortran                                       # the Fortran binding (module mpix_offload, mpi_f08)
  python3-mpi4py python3-numpy                   # the Python package sidecore and its mpi tier checks
  libspdlog-dev libfmt-dev libcli11-dev libhwloc-dev
  libgtest-dev libgmock-dev
  python3 python3-distributed gnuplot-nox        # bench/peers (Dask) and the plots of bench/compare.sh
  munge slurmctld slurmd slurm-client libslurm-dev
  libpmix-dev                                    # Debian's Slurm mpi/pmix loads libpmix.so (srun --mpi=pmix)
  iproute2 util-linux procps debootstrap         # ip, nsenter, unshare, taskset; ps and pgrep in the tests
  clang libclang-rt-14-dev                       # tests/fuzz (libFuzzer)
  clang-format-14                                # scripts/check-format.sh (the version .clang-format is tuned for)
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have empty package lists; refresh them once if a package is unknown.
if ! "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
