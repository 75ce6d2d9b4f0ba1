#!/usr/bin/env bash
# bench/compare.sh: Sidecore side by side with what users would pick instead, measured in one go on
# this machine, and docs/benchmarks.md and docs/performance.md regenerated from the results.
#
#   bench/compare.sh            the full run (about 25 minutes on 2 CPUs, an estimate: each Sidecore
#                               figure runs over both transports): results in bench/results/,
#                               the pages docs/benchmarks.md (plots in docs/benchmarks/) and
#                               docs/performance.md
#   bench/compare.sh --quick    each system once, small sizes and short runs (under a minute);
#                               writes into <build>/compare-quick/ unless --results/--page say otherwise
#   bench/compare.sh --report   only regenerate the pages and plots from existing results
#
# Systems: sidecore-bench (latency, throughput, bandwidth, wake, harvest, mpi-latency, mpi-throughput,
# soak), over both node-local transports in turn: the executor's rings (the default, --transport
# auto) and libfabric shm (--transport fabric); fi_pingpong from libfabric-bin with the same provider
# (the floor); Open MPI the MPI-only way, measured inside sidecore-bench's MPI jobs next to Sidecore
# (harvest's mpi_only_efficiency, mpi-throughput's mpi_tasks_per_s, mpi-latency's mpi_rtt_us);
# OpenMP tasks in one process (sidecore-bench-omp, bench/peers/omp_harvest.c), harvest runs
# alternating with sidecore-bench harvest's; Dask distributed (bench/peers/dask_bench.py).
# bench/README.md says what each figure measures.
#
# Needs a build (cmake --build <build>) and the packages of scripts/install-deps.sh. Not a test:
# tests/bench runs `--quick` once as a smoke test.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SIDECORE_BUILD_DIR:-$root/build}
quick=0
report_only=0
passes=""
provider=shm
results=""
page=""
performance_page=""
python=/usr/bin/python3  # Debian's, which has python3-distributed (a python3 earlier on PATH may not)

usage() {
  sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --quick           each system once on small sizes (the smoke test's mode)
  --report          regenerate the page and plots from --results, measure nothing
  --build DIR       the build folder (default: $SIDECORE_BUILD_DIR or <repo>/build)
  --results DIR     where the JSON lines go (default: bench/results, or <build>/compare-quick/results)
  --page FILE       the page to write; plots go to <its folder>/benchmarks/ (default: docs/benchmarks.md,
                    or <build>/compare-quick/benchmarks.md)
  --performance-page FILE
                    the runtime's figures against its targets (default: docs/performance.md, or
                    <build>/compare-quick/performance.md)
  --passes N        passes over the round-trip, throughput and bandwidth figures of all systems,
                    interleaved; the page takes the median over passes (default 3, quick 1)
  --provider NAME   libfabric provider for sidecore-bench and fi_pingpong (default shm; the MPI
                    figures always use shm, Open MPI its vader BTL). With shm, Sidecore runs over
                    both node-local transports (rings, the default, and fabric); with another
                    provider, over that provider only
  -h, --help        this text
EOF
}

while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --report) report_only=1 ;;
    --build) build=$2; shift ;;
    --results) results=$2; shift ;;
    --page) page=$2; shift ;;
    --performance-page) performance_page=$2; shift ;;
    --passes) passes=$2; shift ;;
    --provider) provider=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ((quick)); then
  results=${results:-$build/compare-quick/results}
  page=${page:-$build/compare-quick/benchmarks.md}
  performance_page=${performance_page:-$(dirname "$page")/performance.md}
  passes=${passes:-1}
else
  results=${results:-$root/bench/results}
  page=${page:-$root/docs/benchmarks.md}
  performance_page=${performance_page:-$root/docs/performance.md}
  passes=${passes:-3}
fi
[[ $passes =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --passes wants a positive number" >&2; exit 2; }

report() {
  "$python" "$root/bench/peers/report.py" --results "$results" --page "$page"
  "$python" "$root/bench/peers/performance.py" --results "$results" --page "$performance_page"
}
if ((report_only)); then
  report
  exit 0
fi
build=$(cd "$build" 2>/dev/null && pwd) || { echo "compare.sh: no build folder $build (build first, or --build DIR)" >&2; exit 2; }

step() { printf 'compare.sh: %s (%s)\n' "$1" "$(date +%T)" >&2; }
die() { echo "compare.sh: error: $*" >&2; exit 1; }

# --- what runs --------------------------------------------------------------------------------------
bench=$build/bench/sidecore-bench
bench_mpi=$build/bench/sidecore-bench-mpi
bench_omp=$build/bench/sidecore-bench-omp
library=$build/bench/libsidecore_bench_functions.so
for file in "$bench" "$bench_mpi" "$bench_omp" "$library"; do
  [[ -e $file ]] || die "$file is missing: build the project first (make -C $build sidecore-bench)"
done
for program in fi_pingpong mpirun gnuplot "$python"; do
  command -v "$program" >/dev/null || die "$program is missing: run scripts/install-deps.sh"
done
"$python" -c 'import distributed' 2>/dev/null || die "python3-distributed is missing: run scripts/install-deps.sh"

if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
fi
# Keep tcp and net traffic on loopback (both bind eth0's address otherwise).
export FI_TCP_IFACE=${FI_TCP_IFACE:-lo} FI_NET_IFACE=${FI_NET_IFACE:-lo}

# Client or caller on CPU 0, the server side (executor worker, echo or worker rank, Dask scheduler
# and worker, fi_pingpong server) on CPU 1: the layout of every sidecore-bench subcommand.
client_cpu=0
server_cpu=1

# Sizes and run lengths. Round trips and throughput use the same payloads in every system.
if ((quick)); then
  small_sizes=64,4096; large_sizes=""
  bw_sizes=1048576
  task_us=10,50,1000,10000
  lat_opts=(--rounds 2 --iterations 200); lat_large_opts=()
  tput_opts=(--rounds 2 --iterations 2000)
  bw_opts=(--rounds 2 --iterations 4)
  harvest_opts=(--seconds 0.05 --rounds 1)
  mpi_lat_opts=(--rounds 2 --iterations 200); mpi_lat_large_opts=()
  mpi_tput_sizes=64; mpi_tput_opts=(--rounds 2 --iterations 2000)
  soak_opts=(--tasks 2000)
  wake_opts=(--rounds 3 --idle-ms 50 --idle-window-s 1)
  harvest_runs=1
  dask_opts=(--iterations 20 --latency-rounds 1 --tasks 200 --throughput-rounds 1 --seconds 0.05 --rounds 1)
  pingpong_runs=1
else
  small_sizes=64,1024,4096; large_sizes=65536,1048576
  bw_sizes=1048576,4194304,67108864  # 64 MiB: the runtime's bandwidth target (docs/performance.md)
  task_us=10,50,1000,10000
  lat_opts=(--rounds 10); lat_large_opts=(--rounds 10 --iterations 200)
  tput_opts=(--rounds 10)
  bw_opts=(--rounds 10)
  harvest_opts=(--seconds 2 --rounds 3)
  mpi_lat_opts=(--rounds 10); mpi_lat_large_opts=(--rounds 10 --iterations 200)
  mpi_tput_sizes=64,4096; mpi_tput_opts=(--rounds 10)
  soak_opts=()  # the default million tasks: 15 s on a quiet machine, 45 s on a busy one
  wake_opts=()  # 20 first tasks after 200 ms idle each, a 3 s idle window: about 8 s
  harvest_runs=$passes
  dask_opts=(--iterations 200 --latency-rounds 3 --tasks 2000 --throughput-rounds 3 --seconds 2 --rounds 3)
  pingpong_runs=5
fi
all_sizes=$small_sizes${large_sizes:+,$large_sizes}
# fi_pingpong is the floor of both the round trips and the bandwidth; it also runs at 4 KiB plus
# Sidecore's 56-byte task header (sizeof(protocol::TaskMessage)), where shm's 4096-byte inject size
# ends, so that the page can show that step in the floor itself.
task_header=56
pingpong_sizes=$(tr , '\n' <<<"$all_sizes,$bw_sizes,$((4096 + task_header))" | sort -nu | paste -sd,)
window=64

# Sidecore's node-local transports, each measured in every pass: the executor's rings (auto, the
# default) and libfabric (fabric). The C++ client takes rings only with shm; other providers are
# measured over the provider alone. The MPI figures always run on one node with shm, so over both.
# --quick measures fabric only where the two differ most, the round trips at 64 B. wake asks for the
# rings by name (--transport rings) where the others say auto, so a client that fell back to fabric
# fails instead of filing a rings figure that is not one.
if [[ $provider == shm ]]; then client_transports=(auto fabric); else client_transports=(fabric); fi
mpi_transports=(auto fabric)
# The transports of one pass, the order swapped every other pass so that neither always runs first.
in_turn() {
  local pass=$1; shift
  if ((pass % 2)); then echo "$@"; else printf '%s\n' "$@" | tac | paste -sd' '; fi
}

mkdir -p "$results/logs"
# Only the files this script writes: cross-node.jsonl, first-task.jsonl and scaling.jsonl come from
# other scripts and stay. mpi.jsonl is what older runs wrote for the MPI-only peer.
for system in sidecore fi_pingpong mpi omp soak dask; do
  rm -f "$results/$system.jsonl" "$results/logs/$system.log"
done
started=$(date +%s)

# Runs a command that prints JSON lines on stdout; appends them to $results/$1.jsonl with the pass
# number, its stderr to logs/$1.log. Fails the script when the command fails or prints nothing.
record() {
  local system=$1 pass=$2; shift 2
  local lines
  echo "\$ $*" >>"$results/logs/$system.log"
  lines=$("$@" 2>>"$results/logs/$system.log") || { tail -20 "$results/logs/$system.log" >&2; die "$system: '$*' failed"; }
  lines=$(grep '^{' <<<"$lines" || true)
  [[ -n $lines ]] || { tail -20 "$results/logs/$system.log" >&2; die "$system: '$*' printed no result"; }
  sed "s/^{/{\"pass\":$pass,/" <<<"$lines" >>"$results/$system.jsonl"
}

# fi_pingpong: a server on the server CPU, the client on the client CPU, one size per run. It prints
# a mean over its iterations; MB/s = 2 x size x iterations / elapsed µs, so the round trip is
# 2 x size / (MB/s), which keeps more digits than its usec/xfer (one way, 2 decimals).
pingpong_once() {
  local size=$1 iterations=$2 port out="" server try attempt
  # A server that failed to start (a port or a shm name still taken) gets a fresh pair, 3 times.
  for try in 1 2 3; do
    port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    taskset -c "$server_cpu" fi_pingpong -p "$provider" -e rdm -S "$size" -I "$iterations" -B "$port" >/dev/null 2>&1 &
    server=$!
    for attempt in $(seq 30); do
      if out=$(taskset -c "$client_cpu" fi_pingpong -p "$provider" -e rdm -S "$size" -I "$iterations" -P "$port" \
               127.0.0.1 2>&1); then
        break
      fi
      out=""
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    [[ -z $out ]] || break
  done
  [[ -n $out ]] || { echo "fi_pingpong $size B: no run got through" >&2; return 1; }
  awk -v size="$size" '$1 ~ /^[0-9]/ && NF >= 8 {
      rtt = ($6 > 0) ? 2 * size / $6 : 2 * $7
      printf "%.4f %.2f\n", rtt, $6 }' <<<"$out"
}

pingpong() {
  local size iterations run line rtts mbs
  for size in ${pingpong_sizes//,/ }; do
    if ((quick)); then iterations=1000; elif ((size >= 67108864)); then iterations=20;
    elif ((size >= 1048576)); then iterations=200;
    elif ((size >= 65536)); then iterations=2000; else iterations=20000; fi
    rtts=(); mbs=()
    for run in $(seq "$pingpong_runs"); do
      line=$(pingpong_once "$size" "$iterations") || return 1
      [[ -n $line ]] || { echo "fi_pingpong $size B: no result line" >&2; return 1; }
      rtts+=("${line% *}"); mbs+=("${line#* }")
    done
    "$python" - "$provider" "$size" "$iterations" "${rtts[*]}" "${mbs[*]}" <<'EOF'
import json, statistics, sys
provider, size, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rtts = [float(x) for x in sys.argv[4].split()]
mbs = [float(x) for x in sys.argv[5].split()]
print(json.dumps({"bench": "fi_pingpong", "provider": provider, "bytes": size, "runs": len(rtts),
                  "iterations": iterations, "rtt_us": round(statistics.median(rtts), 3),
                  "rtt_us_min": round(min(rtts), 3), "rtt_us_max": round(max(rtts), 3),
                  "mb_per_s": round(statistics.median(mbs), 2)}, separators=(",", ":")))
EOF
  done
}

others_busy() { awk '{print $1}' /proc/loadavg; }

# --- the run ------------------------------------------------------------------------------------------
step "results in $results, page $page ($( ((quick)) && echo quick || echo full ) mode, $passes pass(es))"
load_before=$(others_busy)

for pass in $(seq "$passes"); do
  step "pass $pass/$passes: fi_pingpong ($provider) at $pingpong_sizes B"
  record fi_pingpong "$pass" pingpong
  for transport in $(in_turn "$pass" "${client_transports[@]}"); do
    step "pass $pass/$passes: sidecore-bench latency, throughput, bandwidth, wake ($provider, --transport $transport)"
    if ((quick)) && [[ $transport == fabric && $provider == shm ]]; then
      record sidecore "$pass" "$bench" latency --provider "$provider" --transport "$transport" --bytes 64 "${lat_opts[@]}"
      continue
    fi
    record sidecore "$pass" "$bench" latency --provider "$provider" --transport "$transport" --bytes "$small_sizes" "${lat_opts[@]}"
    [[ -z $large_sizes ]] || record sidecore "$pass" "$bench" latency --provider "$provider" --transport "$transport" \
      --bytes "$large_sizes" "${lat_large_opts[@]}"
    record sidecore "$pass" "$bench" throughput --provider "$provider" --transport "$transport" --bytes 64 \
      --window "$window" "${tput_opts[@]}"
    record sidecore "$pass" "$bench" bandwidth --provider "$provider" --transport "$transport" --bytes "$bw_sizes" "${bw_opts[@]}"
    record sidecore "$pass" "$bench" wake --provider "$provider" --transport "${transport/auto/rings}" "${wake_opts[@]}"
  done
  for transport in $(in_turn "$pass" "${mpi_transports[@]}"); do
    step "pass $pass/$passes: sidecore-bench mpi-latency (MPIX and MPI-only round trips, --transport $transport)"
    if ((quick)) && [[ $transport == fabric ]]; then
      record sidecore "$pass" "$bench" mpi-latency --transport "$transport" --bytes 64 "${mpi_lat_opts[@]}"
      continue
    fi
    record sidecore "$pass" "$bench" mpi-latency --transport "$transport" --bytes "$small_sizes" "${mpi_lat_opts[@]}"
    [[ -z $large_sizes ]] || record sidecore "$pass" "$bench" mpi-latency --transport "$transport" --bytes "$large_sizes" \
      "${mpi_lat_large_opts[@]}"
    step "pass $pass/$passes: sidecore-bench mpi-throughput (MPIX and MPI-only tasks/s) at $mpi_tput_sizes B, --transport $transport"
    record sidecore "$pass" "$bench" mpi-throughput --transport "$transport" --bytes "$mpi_tput_sizes" --window "$window" \
      "${mpi_tput_opts[@]}"
  done
  step "pass $pass/$passes: Dask latency and throughput"
  record dask "$pass" "$python" "$root/bench/peers/dask_bench.py" --library "$library" --only latency,throughput \
    --bytes "$all_sizes" --window "$window" --client-cpu "$client_cpu" --worker-cpu "$server_cpu" "${dask_opts[@]}"
done

# Harvest: sidecore-bench harvest (Sidecore and the MPI-only farm, in alternating rounds of one job),
# over each transport, and the OpenMP peer, in alternating runs, so that all sample the machine alike.
for run in $(seq "$harvest_runs"); do
  for transport in $(in_turn "$run" "${mpi_transports[@]}"); do
    ((quick)) && [[ $transport == fabric ]] && continue
    step "harvest $run/$harvest_runs: Sidecore (--transport $transport) and the MPI-only pattern at $task_us us"
    record sidecore "$run" "$bench" harvest --transport "$transport" --task-us "$task_us" "${harvest_opts[@]}"
  done
  step "harvest $run/$harvest_runs: OpenMP tasks"
  record omp "$run" "$bench_omp" --library "$library" --task-us "$task_us" --producer-cpu "$client_cpu" \
    --worker-cpu "$server_cpu" "${harvest_opts[@]}"
done
step "soak: sidecore-bench soak ${soak_opts[*]}"
record soak 1 "$bench" soak "${soak_opts[@]}"
step "harvest: Dask"
record dask 1 "$python" "$root/bench/peers/dask_bench.py" --library "$library" --only harvest --task-us "$task_us" \
  --client-cpu "$client_cpu" --worker-cpu "$server_cpu" "${dask_opts[@]}"

# What the page says about the run.
"$python" - "$results/run.json" <<EOF
import json, os, platform, subprocess, sys
def run(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return ""
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
memory = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
import distributed
info = {
    "date": run("date", "-u", "+%Y-%m-%d %H:%M UTC"),
    "commit": run("git", "-C", "$root", "rev-parse", "--short", "HEAD"),
    # Changes to the code measured; what this run itself writes (results, pages, plots) does not count.
    "uncommitted_changes": bool(run("git", "-C", "$root", "status", "--porcelain", "--untracked-files=no", "--",
                                    ".", ":!bench/results", ":!docs/benchmarks.md", ":!docs/benchmarks",
                                    ":!docs/performance.md")),
    "mode": "quick" if $quick else "full",
    "passes": $passes,
    "provider": "$provider",
    # Sidecore's node-local transports in this run (--transport values); auto, the default, takes
    # the executor's rings. Runs without this key measured libfabric only.
    "transports": {"client": "${client_transports[*]}".split(), "mpi": "${mpi_transports[*]}".split(),
                   "default": "auto"},
    "command": "bench/compare.sh" + (" --quick" if $quick else ""),
    "cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(memory / 2**20),
    "kernel": platform.release(), "debian": open("/etc/debian_version").read().strip(),
    "libfabric": run("fi_info", "--version").splitlines()[0].split()[-1],
    "openmpi": run("mpirun", "--version").splitlines()[0].split()[-1],
    "dask_distributed": distributed.__version__,
    "gcc": run("gcc", "-dumpfullversion"),  # its libgomp runs the OpenMP peer
    "harvest_runs": $harvest_runs,
    "python": platform.python_version(),
    "load_before": float("$load_before"), "load_after": float(open("/proc/loadavg").read().split()[0]),
    "seconds": $(date +%s) - $started,
}
with open(sys.argv[1], "w") as out:
    out.write(json.dumps(info, separators=(",", ":")) + "\n")
EOF

step "page and plots"
report
step "done in $(( $(date +%s) - started )) s"
