#!/usr/bin/env bash
# The start-up cost that --offload adds to a Slurm step: inside one allocation (salloc -n1 -c2),
# alternating runs of `srun --exact -n1 -c1 true` and the same step with --offload, timed from srun's
# start to its exit. Prints one JSON line with the medians:
#   {"bench":"step-overhead","runs":20,"plain_ms":a,"offload_ms":b,"overhead_ms":b-a}
#
#   bench/step-overhead.sh [--runs N]
#
# Needs a Slurm with spank_sidecore.so loaded, e.g. the local test cluster, as root:
#   slurm/local-cluster.sh up --build build && eval "$(slurm/local-cluster.sh env)"
# (SLURM_CONF is taken from slurm/local-cluster.sh env when it is not set.) Target: overhead <= 50 ms.
set -euo pipefail

runs=20
while (($#)); do
  case $1 in
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --runs=*) runs=${1#*=} ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "step-overhead: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ $runs =~ ^[0-9]+$ ]] && ((runs >= 1)) || { echo "step-overhead: --runs wants a positive number" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${SLURM_CONF:-} ]]; then
  eval "$("$root/slurm/local-cluster.sh" env)"
fi
command -v salloc >/dev/null || { echo "step-overhead: salloc not found" >&2; exit 1; }

# The part that runs inside the allocation: prints "plain_ns offload_ns" per run.
inner=$(cat <<'INNER'
set -euo pipefail
runs=$1
now() { date +%s%N; }
# Check first that --offload really starts an executor here, else the numbers mean nothing.
card=$(srun --exact -n1 -c1 --offload printenv SIDECORE_EXECUTOR 2>/dev/null || true)
if [[ -z $card ]]; then
  echo "step-overhead: an --offload step got no executor (is spank_sidecore.so loaded?); its stderr:" >&2
  srun --exact -n1 -c1 --offload true >&2 || true
  exit 1
fi
srun --exact -n1 -c1 true  # warm-up, not counted
for ((i = 0; i < runs; i++)); do
  t0=$(now); srun --exact -n1 -c1 true
  t1=$(now); srun --exact -n1 -c1 --offload true
  t2=$(now)
  echo "$((t1 - t0)) $((t2 - t1))"
done
INNER
)

samples=$(salloc -Q -n1 -c2 bash -c "$inner" step-overhead "$runs")
(($(wc -l <<<"$samples") == runs)) || { echo "step-overhead: expected $runs samples, got: $samples" >&2; exit 1; }

# Median of column $1 of the samples, in milliseconds with one decimal.
median_ms() {
  cut -d' ' -f"$1" <<<"$samples" | sort -n |
    awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m / 1e6}'
}
plain=$(median_ms 1)
offload=$(median_ms 2)
overhead=$(awk -v a="$plain" -v b="$offload" 'BEGIN {printf "%.1f", b - a}')
printf '{"bench":"step-overhead","runs":%d,"plain_ms":%s,"offload_ms":%s,"overhead_ms":%s}\n' \
  "$runs" "$plain" "$offload" "$overhead"
if awk -v o="$overhead" 'BEGIN {exit !(o > 50)}'; then
  echo "step-overhead: overhead ${overhead} ms is above the 50 ms target" >&2
fi
