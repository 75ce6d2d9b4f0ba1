#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install, build, bring up a real Slurm on this
# machine (slurm/local-cluster.sh: munge, slurmctld, slurmd, spank_sidecore.so loaded), and run the
# MPI task farm (examples/12_mpi_task_farm.cpp) as a Slurm job step:
#
#   salloc -n <all CPUs> srun --mpi=pmix --exact -n1 --offload=idle --offload-stats 12_mpi_task_farm ...
#
# The step's rank takes one CPU; the plugin starts an executor on the allocation's other, idle CPUs
# and hands the rank SIDECORE_EXECUTOR and SIDECORE_TOKEN. The farm runs once without and once with
# offloading and prints both checksums, the times, the speedup, where the tasks ran and the
# efficiency; the executor's --offload-stats summary follows on stderr when the step ends.
#
#   scripts/demo.sh [--no-slurm] [--keep-cluster] [TASKS_PER_RANK] [MEAN_US] [WINDOW_PER_WORKER]
#
# --no-slurm      no cluster: start the executor with sidecore-run and the rank with mpirun
#                 (the only way without root, which slurmd needs)
# --keep-cluster  leave the cluster running afterwards (by default the demo stops a cluster it
#                 started, and leaves one it found running)
# The build goes to $SIDECORE_BUILD_DIR, else ./build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SIDECORE_BUILD_DIR:-$root/build}

use_slurm=1
keep_cluster=0
farm_args=()
while (($#)); do
  case $1 in
    --no-slurm) use_slurm=0 ;;
    --keep-cluster) keep_cluster=1 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "demo: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *)
      [[ $1 =~ ^[0-9]+$ ]] || { echo "demo: '$1' is not a number (see --help)" >&2; exit 2; }
      farm_args+=("$1") ;;
  esac
  shift
done
((${#farm_args[@]} <= 3)) || { echo "demo: at most three numbers (see --help)" >&2; exit 2; }
if ((use_slurm)) && [[ $(id -u) -ne 0 ]]; then
  echo "demo: a local Slurm needs root (slurmd does); run as root, or with --no-slurm" >&2
  exit 2
fi

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "demo: built in $build"

farm=("$build/examples/12_mpi_task_farm" "$build/examples/libsidecore_examples.so" "${farm_args[@]}")
cpus=$(nproc)

if ((!use_slurm)); then
  # Open MPI refuses to run as root unless told twice; a container often runs as root.
  if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
  # One node: keep Open MPI's own traffic on loopback, whatever interfaces the machine has.
  export OMPI_MCA_btl_tcp_if_include=${OMPI_MCA_btl_tcp_if_include:-lo}
  export OMPI_MCA_oob_tcp_if_include=${OMPI_MCA_oob_tcp_if_include:-lo}
  # Core 0 runs the rank; the others (or, on a 1-CPU machine, the same one) serve offloaded tasks.
  executor_cores=$([[ $cpus -gt 1 ]] && echo "1-$((cpus - 1))" || echo 0)
  echo "demo: sidecore-run --cores $executor_cores -- mpirun -n 1 taskset -c 0 12_mpi_task_farm ${farm_args[*]}"
  exec "$build/runtime/sidecore-run" --cores "$executor_cores" -- \
    mpirun -n 1 --oversubscribe --bind-to none taskset -c 0 "${farm[@]}"
fi

cluster=$root/slurm/local-cluster.sh
started_cluster=0
if ! "$cluster" status >/dev/null 2>&1; then started_cluster=1; fi
"$cluster" up --build "$build"
eval "$("$cluster" env)"
if ((started_cluster && !keep_cluster)); then
  trap '"$cluster" down >/dev/null 2>&1 || true' EXIT
fi

# The job holds every CPU of the node; the step (--exact) takes one for the rank, which leaves the
# others idle for --offload=idle. SLURM_CPUS_ON_NODE would tell the rank nothing more, so the farm
# learns its workers from the pool, as any MPI program does.
echo "demo: salloc -n $cpus srun --mpi=pmix --exact -n1 --offload=idle --offload-stats 12_mpi_task_farm ${farm_args[*]}"
salloc -Q -n "$cpus" srun --mpi=pmix --exact -n1 --offload=idle --offload-stats "${farm[@]}"
