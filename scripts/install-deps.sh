#!/usr/bin/env bash
# Installs the Debian 12 packages Sidecore needs to build, test and run.
# Installs only what is missing, never asks, and is safe to run any number of times.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libfabric-dev libfabric-bin libibverbs-dev
  libopenmpi-dev openmpi-bin
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libhwloc-dev hwloc
  libcli11-dev nlohmann-json3-dev
  python3
  python3-distributed gnuplot-nox
  munge slurmctld slurmd slurm-client libslurm-dev libpmix-dev
  iproute2 util-linux debootstrap
  clang libclang-rt-14-dev
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
