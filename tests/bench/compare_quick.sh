#!/usr/bin/env bash
# Smoke test of bench/compare.sh: runs `--quick` (each system once, small sizes) into a scratch
# folder and checks what a user would look at: every system's JSON lines are there with positive,
# finite numbers, and the two pages (benchmarks.md with its three plots, performance.md) were written.
#
#   tests/bench/compare_quick.sh SOURCE_DIR BUILD_DIR SCRATCH_DIR
set -euo pipefail
source_dir=$1 build_dir=$2 scratch=$3
rm -rf "$scratch"
mkdir -p "$scratch"

"$source_dir/bench/compare.sh" --quick --build "$build_dir" --results "$scratch/results" --page "$scratch/benchmarks.md" \
  --performance-page "$scratch/performance.md"

/usr/bin/python3 - "$scratch" <<'PY'
import json, math, os, sys

scratch = sys.argv[1]
failures = []

def fail(message):
    failures.append(message)

# Every system, every figure it must have produced, with the fields that carry numbers.
expected = {
    "fi_pingpong": {"fi_pingpong": ["rtt_us", "mb_per_s"]},
    "sidecore": {"latency": ["sidecore_rtt_us", "raw_rtt_us"], "throughput": ["tasks_per_s", "raw_msgs_per_s"],
                 "bandwidth": ["sidecore_gbps", "raw_gbps"],
                 "harvest": ["speedup", "efficiency", "mpi_only_speedup", "mpi_only_efficiency"],
                 "mpi-latency": ["mpix_rtt_us", "mpi_rtt_us", "ratio"],
                 "mpi-throughput": ["mpix_tasks_per_s", "mpi_tasks_per_s", "ratio"],
                 "wake": ["first_task_us", "first_task_us_min", "first_task_us_max", "warm_rtt_us"]},
    "omp": {"omp-harvest": ["speedup", "efficiency"]},
    "soak": {"soak": ["tasks_per_s", "bytes_verified"]},
    "dask": {"dask-latency": ["rtt_us"], "dask-throughput": ["tasks_per_s"], "dask-harvest": ["speedup", "efficiency"]},
}
# Loose upper bounds that catch a unit mix-up, not a slow machine: a round trip under 10 s, an
# efficiency under 50 (1 is ideal, but in a quick run on a loaded machine the short run alone can be
# starved of its CPU several times over, which pushes the ratio well above 1).
limits = {"rtt_us": 1e7, "efficiency": 50.0, "mpi_only_efficiency": 50.0, "first_task_us": 1e7, "warm_rtt_us": 1e7}
task_lengths = {10, 50, 1000, 10000}

for system, benches in expected.items():
    path = os.path.join(scratch, "results", f"{system}.jsonl")
    if not os.path.exists(path):
        fail(f"{system}: no {path}")
        continue
    seen = {}
    with open(path) as stream:
        for number, line in enumerate(stream, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                fail(f"{path}:{number}: not JSON ({error}): {line.strip()}")
                continue
            seen.setdefault(record.get("bench"), []).append(record)
    for bench, fields in benches.items():
        records = seen.get(bench, [])
        if not records:
            fail(f"{system}: no '{bench}' line in {path}")
        for record in records:
            for field in fields:
                value = record.get(field)
                if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                    fail(f"{system} {bench}: {field} = {value!r} is not a positive number: {record}")
                elif value > limits.get(field, math.inf):
                    fail(f"{system} {bench}: {field} = {value} is beyond any sane figure: {record}")
        if bench == "soak":
            for record in records:
                problems = {k: record.get(k) for k in ("lost", "duplicated", "corrupted", "failed") if record.get(k) != 0}
                if problems:
                    fail(f"soak: {problems}: {record}")
        if bench == "wake":
            # The idle worker's share of a core: may be 0 (a worker asleep the whole window), never
            # negative, and never more than the one core it has.
            for record in records:
                value = record.get("idle_cpu_percent")
                if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 100:
                    fail(f"sidecore wake: idle_cpu_percent = {value!r} is not a share of one core: {record}")
                if not record.get("first_task_us_min", 0) <= record.get("first_task_us", 0) \
                        <= record.get("first_task_us_max", 0):
                    fail(f"sidecore wake: the median first task is outside its min and max: {record}")
        if bench == "mpi-throughput" and not any(r.get("bytes") == 64 and r.get("window") == 64 for r in records):
            fail(f"sidecore mpi-throughput: no line at 64 B with 64 in flight: {records}")
        if bench.endswith("harvest"):
            lengths = {record.get("task_us") for record in records}
            if lengths != task_lengths:
                fail(f"{system} {bench}: task lengths {sorted(lengths)} instead of {sorted(task_lengths)}")

# Sidecore over both node-local transports: the C++ client's lines say what it used (rings, the
# default, or fabric), the MPI lines what the pool asked for (auto or fabric); --quick measures fabric
# for the 64 B round trips only, and wake over the rings only.
sidecore_path = os.path.join(scratch, "results", "sidecore.jsonl")
if os.path.exists(sidecore_path):
    lines = [json.loads(line) for line in open(sidecore_path) if line.strip()]
    wanted = {("latency", "rings"), ("latency", "fabric"), ("throughput", "rings"), ("bandwidth", "rings"),
              ("wake", "rings"), ("mpi-latency", "auto"), ("mpi-latency", "fabric"), ("mpi-throughput", "auto"), ("harvest", "auto")}
    seen = {(r.get("bench"), r.get("transport")) for r in lines}
    for bench, transport in sorted(wanted - seen):
        fail(f"sidecore: no {bench} line with \"transport\":\"{transport}\" in {sidecore_path}")
    for r in lines:
        if r.get("bench") in ("latency", "throughput", "bandwidth", "wake", "mpi-latency", "mpi-throughput", "harvest") \
                and r.get("transport") not in ("rings", "fabric", "auto"):
            fail(f"sidecore: a line without a known transport: {r}")

page = os.path.join(scratch, "benchmarks.md")
if not os.path.exists(page):
    fail(f"no page {page}")
else:
    text = open(page).read()
    for heading in ("## Targets", "## Round trip of one task", "## Tasks per second", "## Harvest efficiency",
                    "## How each figure was measured", "## Where Sidecore falls short, and why"):
        if heading not in text:
            fail(f"the page has no '{heading}' section")
    for name in ("fi_pingpong", "Open MPI", "OpenMP", "Dask", "Sidecore", "Sidecore C++ client, rings (default)",
                 "Sidecore MPIX, fabric (libfabric shm)"):
        if name not in text:
            fail(f"the page never names {name}")
    if "n/a" in text.split("## Tasks per second")[0].split("## Round trip of one task")[-1]:
        fail("the round-trip table has a missing figure (n/a)")
performance = os.path.join(scratch, "performance.md")
if not os.path.exists(performance):
    fail(f"no page {performance}")
else:
    text = open(performance).read()
    for heading in ("## The run", "## Targets of the node-local path", "## The runtime against raw libfabric",
                    "## The MPI extension next to the MPI-only pattern", "## Soak"):
        if heading not in text:
            fail(f"performance.md has no '{heading}' section")
    for name in ("mpi-throughput 64 B", "harvest 10 µs", "OpenMP", "| rings (default) |", "| fabric (libfabric shm) |",
                 "an idle adaptive executor under 1% of a core (shm", "starts within 50 µs (shm"):
        if name not in text:
            fail(f"performance.md never shows {name}")
for plot in ("latency.png", "throughput.png", "harvest.png"):
    path = os.path.join(scratch, "benchmarks", plot)
    if not os.path.exists(path):
        fail(f"no plot {path}")
        continue
    with open(path, "rb") as stream:
        head = stream.read(8)
    if head != b"\x89PNG\r\n\x1a\n" or os.path.getsize(path) < 5000:
        fail(f"{path} is not a PNG with a plot in it ({os.path.getsize(path)} bytes)")
    elif f"(benchmarks/{plot})" not in open(page).read():
        fail(f"the page does not show {plot}")

if failures:
    print("compare_quick: FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("compare_quick: every system's JSON lines, both pages and the 3 plots are there")
PY
