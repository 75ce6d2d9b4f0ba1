#!/usr/bin/env bash
# A rank's first offloaded task, with and without --offload-lib: inside one allocation
# (salloc -n1 -c2), alternating steps
#   srun --mpi=pmix --exact -n1 -c1 --offload                 sidecore-first-task LIB SYMBOL
#   srun --mpi=pmix --exact -n1 -c1 --offload --offload-lib=LIB sidecore-first-task LIB SYMBOL
# Each step's rank times MPIX_Offload_pool_create (pool), its first task (lookup, submit and wait,
# 8 bytes each way) and a second task (the warm reference); see bench/first_task.c. Prints one JSON
# line with the median, minimum and maximum of each figure over the runs, per mode:
#   {"bench":"first-task","date":"...","commit":"...","load1":L,"runs":N,"library":"...","symbol":"...",
#    "plain":{"pool_us":[median,min,max],"first_us":[...],"second_us":[...]},
#    "preload":{"pool_us":[...],"first_us":[...],"second_us":[...]}}
#
#   bench/first-task.sh [--runs N] [--build DIR] [--lib PATH] [--symbol NAME]
#
# --lib defaults to the bench's own function library (its `echo`); give your own library and symbol
# to see what preloading it saves. Needs a Slurm with spank_sidecore.so loaded and MpiDefault pmix,
# e.g. the local test cluster, as root:
#   slurm/local-cluster.sh up --build build && eval "$(slurm/local-cluster.sh env)"
# (SLURM_CONF is taken from slurm/local-cluster.sh env when it is not set.) The machine is noisy:
# compare the two modes of one run, not figures of different runs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=15
build=${SIDECORE_BUILD_DIR:-$root/build}
library="" symbol=echo
while (($#)); do
  case $1 in
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --runs=*) runs=${1#*=} ;;
    --build) build=${2:?--build needs a folder}; shift ;;
    --build=*) build=${1#*=} ;;
    --lib) library=${2:?--lib needs a path}; shift ;;
    --lib=*) library=${1#*=} ;;
    --symbol) symbol=${2:?--symbol needs a name}; shift ;;
    --symbol=*) symbol=${1#*=} ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "first-task: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ $runs =~ ^[0-9]+$ ]] && ((runs >= 1)) || { echo "first-task: --runs wants a positive number" >&2; exit 2; }
program=$build/bench/sidecore-first-task
[[ -x $program ]] || { echo "first-task: no $program: build the target sidecore-first-task" >&2; exit 1; }
library=${library:-$build/bench/libsidecore_bench_functions.so}
library=$(realpath "$library")  # the executor keys loaded libraries by path: one path for both
if [[ -z ${SLURM_CONF:-} ]]; then
  eval "$("$root/slurm/local-cluster.sh" env)"
fi
command -v salloc >/dev/null || { echo "first-task: salloc not found" >&2; exit 1; }

# Inside the allocation: one line "MODE pool first second" per step, the modes alternating.
inner=$(cat <<'INNER'
set -euo pipefail
runs=$1 program=$2 library=$3 symbol=$4
step() { srun --mpi=pmix --exact -n1 -c1 --offload "$@" "$program" "$library" "$symbol"; }
step >/dev/null  # warm-up (page cache, first srun of the allocation), not counted
for ((i = 0; i < runs; i++)); do
  echo "plain $(step | sed 's/[a-z_]*=//g')"
  echo "preload $(step --offload-lib="$library" | sed 's/[a-z_]*=//g')"
done
INNER
)
load_before=$(cut -d' ' -f1 /proc/loadavg)
samples=$(salloc -Q -n1 -c2 bash -c "$inner" first-task "$runs" "$program" "$library" "$symbol")
(($(wc -l <<<"$samples") == 2 * runs)) || { echo "first-task: expected $((2 * runs)) samples, got: $samples" >&2; exit 1; }

# "[median,min,max]" of column $2 (2: pool, 3: first, 4: second) of mode $1's samples, in µs.
figure() {
  awk -v mode="$1" '$1 == mode {print $'"$2"'}' <<<"$samples" | sort -g |
    awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "[%.1f,%.1f,%.1f]", m, v[1], v[NR]}'
}
mode_json() { printf '{"pool_us":%s,"first_us":%s,"second_us":%s}' "$(figure "$1" 2)" "$(figure "$1" 3)" "$(figure "$1" 4)"; }
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
printf '{"bench":"first-task","date":"%s","commit":"%s","load1":%s,"runs":%d,"library":"%s","symbol":"%s","plain":%s,"preload":%s}\n' \
  "$(date -u '+%Y-%m-%d %H:%M UTC')" "$commit" "$load_before" "$runs" "$library" "$symbol" "$(mode_json plain)" "$(mode_json preload)"
