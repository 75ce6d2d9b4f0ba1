#!/usr/bin/env bash
# A lease's tasks/s against the job's own executor: one step on node1,
#   salloc -w node1 -N1 -n1 -c2 srun --exact -n1 -c1 --offload=idle --offload-lease=1 sidecore-lease-throughput
# whose rank streams 64 B echo tasks to its node's own executor (node-local rings) and to the lease's
# executor on another node (tcp;ofi_rxm between the simulated nodes), in alternating rounds with the
# same loop and window (bench/lease_throughput.cpp). For reference, the same run then measures
# `sidecore-bench throughput` between the namespaces of node1 and node2 over the same provider: the
# engine without a lease or Slurm, next to raw libfabric. Prints one JSON line:
#   {"bench":"lease-throughput","date":"...","commit":"...","load1":L, <the step's figures>,
#    "reference":{<sidecore-bench throughput's line>}}
# where *_tasks_per_s are [median,min,max] over the rounds and ratio is lease / own (medians).
#
#   bench/lease-throughput.sh [--build DIR] [--tasks N] [--window W] [--rounds R] [--bytes B]
#
# Needs root and the local multinode cluster with a lease partition, e.g.
#   slurm/local-cluster.sh up --nodes 3 --build build --plugin-args 'lease_partition=spare'
# (SLURM_CONF is taken from slurm/local-cluster.sh env when it is not set.) The simulated nodes share
# this machine's CPUs: CPU n of node2 is CPU n of node1. So that the lease's executor does not share
# the rank's CPU (0), the script holds CPU 0 of node2 and every CPU of the other nodes with sleeping
# jobs of the default partition while the step runs: the lease then gets CPU 1 of node2, the CPU the
# job's own executor has on node1 (each sleeps while the other's round runs). The machine is noisy:
# compare figures of one run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SIDECORE_BUILD_DIR:-$root/build}
tasks=20000 window=64 rounds=5 bytes=64
while (($#)); do
  case $1 in
    --build) build=${2:?--build needs a folder}; shift ;;
    --tasks) tasks=${2:?--tasks needs a number}; shift ;;
    --window) window=${2:?--window needs a number}; shift ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --bytes) bytes=${2:?--bytes needs a number}; shift ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "lease-throughput: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for value in "$tasks" "$window" "$rounds" "$bytes"; do
  [[ $value =~ ^[1-9][0-9]*$ ]] || { echo "lease-throughput: '$value' is not a positive number" >&2; exit 2; }
done
[[ $(id -u) -eq 0 ]] || { echo "lease-throughput: needs root (holding jobs, network namespaces)" >&2; exit 1; }
program=$build/bench/sidecore-lease-throughput bench=$build/bench/sidecore-bench
library=$build/bench/libsidecore_bench_functions.so
for file in "$program" "$bench" "$library"; do
  [[ -e $file ]] || { echo "lease-throughput: no $file: build the targets sidecore-lease-throughput and sidecore-bench" >&2; exit 1; }
done
if [[ -z ${SLURM_CONF:-} ]]; then
  eval "$("$root/slurm/local-cluster.sh" env)"
fi
command -v salloc >/dev/null || { echo "lease-throughput: salloc not found" >&2; exit 1; }
mapfile -t nodes < <(sinfo -h -N -o %N | sort -u)
((${#nodes[@]} >= 2)) || { echo "lease-throughput: needs a cluster of 2 nodes or more (slurm/local-cluster.sh up --nodes 3)" >&2; exit 1; }
[[ ${nodes[0]} == node1 && ${nodes[1]} == node2 ]] ||
  { echo "lease-throughput: expected the local cluster's node1, node2...; found ${nodes[*]}" >&2; exit 1; }

# The holding jobs: CPU 0 of node2, every CPU of node3 and beyond.
holders=()
release() { if ((${#holders[@]})); then scancel "${holders[@]}" 2>/dev/null || true; fi; }
trap release EXIT
hold() {
  local id
  id=$(sbatch --parsable -w "$1" -N1 -n1 -c"$2" -o /dev/null -D / --wrap 'exec sleep 600') ||
    { echo "lease-throughput: cannot hold $2 CPU(s) of $1" >&2; exit 1; }
  holders+=("${id%%;*}")
}
hold node2 1
for node in "${nodes[@]:2}"; do hold "$node" "$(sinfo -h -n "$node" -o %c | head -1)"; done
for _ in $(seq 300); do
  [[ -z $(squeue -h -j "$(IFS=,; echo "${holders[*]}")" -t PENDING -o %i) ]] && break
  sleep 0.1
done

load_before=$(cut -d' ' -f1 /proc/loadavg)
line=$(cd / && salloc -Q -w node1 -N1 -n1 -c2 srun --exact -n1 -c1 --offload=idle --offload-poll=adaptive \
  --offload-lease=1 "$program" "$library" "$tasks" "$window" "$rounds" "$bytes" | grep '^{"bench":"lease-throughput"') ||
  { echo "lease-throughput: the step printed no figures" >&2; exit 1; }
release
holders=()

# The same provider between the same two namespaces, without a lease: client on CPU 0, server on 1.
reference=$(nsenter --net=/run/netns/sidecore-node1 env FI_TCP_IFACE=eth0 "$bench" throughput --provider 'tcp;ofi_rxm' \
  --server-netns sidecore-node2 --bytes "$bytes" --window "$window" --rounds "$rounds" --iterations "$tasks" | tail -1)

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
figures=${line#'{"bench":"lease-throughput",'}
printf '{"bench":"lease-throughput","date":"%s","commit":"%s","load1":%s,%s,"reference":%s}\n' \
  "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit" "$load_before" "${figures%\}}" "$reference"
