#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install, build, and run the MPI task farm
# (examples/12_mpi_task_farm.cpp) under mpirun, with an executor on this machine's idle cores
# started by sidecore-run. The rank computes on core 0 and offloads to the other cores; the farm
# runs once without and once with offloading and prints both checksums, the times, the speedup,
# where the tasks ran and the efficiency.
#
#   scripts/demo.sh [TASKS_PER_RANK] [MEAN_US] [WINDOW_PER_WORKER]   (build in $SIDECORE_BUILD_DIR or ./build)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SIDECORE_BUILD_DIR:-$root/build}

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "demo: built in $build"

# Open MPI refuses to run as root unless told twice; a container often runs as root.
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# One node: keep Open MPI's own traffic on loopback, whatever interfaces the machine has.
export OMPI_MCA_btl_tcp_if_include=${OMPI_MCA_btl_tcp_if_include:-lo}
export OMPI_MCA_oob_tcp_if_include=${OMPI_MCA_oob_tcp_if_include:-lo}

# Core 0 runs the rank; the others (or, on a 1-CPU machine, the same one) serve offloaded tasks.
cpus=$(nproc)
executor_cores=$([[ $cpus -gt 1 ]] && echo "1-$((cpus - 1))" || echo 0)
farm=("$build/examples/12_mpi_task_farm" "$build/examples/libsidecore_examples.so" "$@")
echo "demo: sidecore-run --cores $executor_cores -- mpirun -n 1 taskset -c 0 12_mpi_task_farm${*:+ $*}"
"$build/runtime/sidecore-run" --cores "$executor_cores" -- \
  mpirun -n 1 --oversubscribe --bind-to none taskset -c 0 "${farm[@]}"
