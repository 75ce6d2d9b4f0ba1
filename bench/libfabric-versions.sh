#!/usr/bin/env bash
# libfabric 1.17's shm (Debian 12, this machine) next to libfabric 2.1's (Debian 13, the root of
# scripts/distro-test.sh), measured in one session: repetitions alternate between the two, so both
# see the same load and the same vCPU placements. Each repetition runs, on each side,
#   fi_pingpong -p shm -e rdm at 64 B and 4 KiB (server on CPU 1, client on CPU 0), and
#   sidecore-bench latency (64 B, 4 KiB) and throughput (64 B), which measure Sidecore and raw
#   libfabric between the same two processes.
# It prints one line per figure and side with the median over the repetitions, the range, and the
# ratio 2.1 / 1.17 of the medians. Timing on a shared VM is noisy: read the ratios and ranges.
#
#   bench/libfabric-versions.sh [--reps N] [--build DIR]
#
# --build DIR  the Debian 12 build with sidecore-bench (default <repo>/build); the Debian 13 one is
#              the root's /var/tmp/sidecore-build (SIDECORE_DISTRO_BENCH=1 scripts/distro-test.sh
#              trixie -L unit builds it). Needs root (the Debian 13 side runs in the root).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# One repetition on this side: "NAME BYTES VALUE" lines.
measure_once() {
  local build=$1 size out port server
  for size in 64 4096; do
    port=$((20000 + RANDOM % 20000))
    taskset -c 1 fi_pingpong -p shm -e rdm -S "$size" -I 20000 -B "$port" >/dev/null 2>&1 &
    server=$!
    out=""
    for _ in $(seq 30); do
      out=$(taskset -c 0 fi_pingpong -p shm -e rdm -S "$size" -I 20000 -P "$port" 127.0.0.1 2>/dev/null) && break
      out=""
      sleep 0.1
    done
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    # usec/xfer is one way; MB/s = 2 x size x iterations / elapsed, so the round trip is 2 x size / MB/s.
    awk -v size="$size" '$1 ~ /^[0-9]/ && NF >= 8 { printf "fi_pingpong_rtt_us %d %.4f\n", size, ($6 > 0) ? 2 * size / $6 : 2 * $7 }' <<<"$out"
  done
  "$build/bench/sidecore-bench" latency --bytes 64,4K --rounds 10 --iterations 1000 2>/dev/null |
    sed -n 's/.*"bytes":\([0-9]*\),"sidecore_rtt_us":\([0-9.]*\),"raw_rtt_us":\([0-9.]*\).*/sidecore_rtt_us \1 \2\nraw_rtt_us \1 \3/p'
  "$build/bench/sidecore-bench" throughput --bytes 64 --rounds 10 --iterations 10000 2>/dev/null |
    sed -n 's/.*"bytes":\([0-9]*\),"tasks_per_s":\([0-9.]*\),"raw_msgs_per_s":\([0-9.]*\).*/sidecore_tasks_per_s \1 \2\nraw_msgs_per_s \1 \3/p'
}

if [[ ${1-} == --once ]]; then
  measure_once "$2"
  exit 0
fi

reps=7 build=$root/build
while (($#)); do
  case $1 in
    --reps) reps=$2; shift ;;
    --build) build=$2; shift ;;
    *) echo "usage: $0 [--reps N] [--build DIR]" >&2; exit 2 ;;
  esac
  shift
done
trixie=${SIDECORE_ROOTS_DIR:-/var/cache/sidecore/roots}/trixie
[[ -x $build/bench/sidecore-bench ]] || { echo "no $build/bench/sidecore-bench" >&2; exit 1; }
[[ -x $trixie/var/tmp/sidecore-build/bench/sidecore-bench ]] ||
  { echo "no sidecore-bench in the trixie root: SIDECORE_DISTRO_BENCH=1 scripts/distro-test.sh trixie -L unit" >&2; exit 1; }

results=$(mktemp)
trap 'rm -f "$results"' EXIT
host_side() { measure_once "$build" | sed 's/^/1.17 /' >>"$results"; }
root_side() {
  "$root/scripts/debian-root.sh" run --net --bind "$root:/src" "$trixie" -- \
    /src/bench/libfabric-versions.sh --once /var/tmp/sidecore-build | sed 's/^/2.1 /' >>"$results"
}
for rep in $(seq "$reps"); do
  echo "repetition $rep/$reps ($(date +%T), load $(cut -d' ' -f1 /proc/loadavg))" >&2
  # Each side goes first in every other repetition.
  if ((rep % 2)); then host_side; root_side; else root_side; host_side; fi
done

# version figure bytes value -> one line per figure: medians, ranges and the ratio.
awk '
  { key = $2 " " $3; values[$1, key] = values[$1, key] " " $4; keys[key] = 1 }
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    lo = a[1]; hi = a[n]; count = n
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    for (key in keys) {
      split(key, k, " ")
      m1 = median(values["1.17", key]); lo1 = lo; hi1 = hi; n1 = count
      m2 = median(values["2.1", key]); lo2 = lo; hi2 = hi; n2 = count
      printf "%-22s %6s %10.3f %10.3f-%-11.3f %10.3f %10.3f-%-11.3f %8.2f  (n=%d/%d)\n", k[1], k[2], m1, lo1, hi1, m2, lo2, hi2, m2 / m1, n1, n2
    }
  }' "$results" | sort | {
  printf "%-22s %6s %10s %22s %10s %22s %8s\n" figure bytes 1.17 "1.17 range" 2.1 "2.1 range" 2.1/1.17
  cat
}
