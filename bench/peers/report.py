#!/usr/bin/python3
"""Writes docs/benchmarks.md and its plots from the JSON lines of bench/compare.sh.

    bench/peers/report.py --results bench/results --page docs/benchmarks.md

Reads <results>/{sidecore,fi_pingpong,omp,dask}.jsonl (and mpi.jsonl of runs before the MPI-only figures
moved into sidecore-bench's own jobs) and run.json, and first-task.jsonl (the lines
of bench/first-task.sh, which needs a Slurm and is run apart from compare.sh); every figure on the page comes
from them (a figure measured in several passes: the median over the passes). Plots are drawn with
gnuplot (Debian's gnuplot-nox) into <page folder>/benchmarks/. Standard library only.
"""
import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

SYSTEM_FILES = ("sidecore", "fi_pingpong", "mpi", "omp", "dask")

# Sidecore's two node-local transports, the default first: the executor's shared-memory rings and
# libfabric (shm). Sidecore's figures are filed per transport as "<bench>/<transport>".
TRANSPORTS = ("rings", "fabric")
TRANSPORT_NAMES = {"rings": "rings (default)", "fabric": "fabric (libfabric shm)"}
CLIENT_BENCHES = ("latency", "throughput", "bandwidth", "wake")
MPI_BENCHES = ("harvest", "mpi-latency", "mpi-throughput")


def run_table(run, other_software):
    """The table that describes a run of compare.sh (its run.json): command, commit, machine,
    software (libfabric, Open MPI, then `other_software`), load."""
    return table(["", ""], [
        ["command", f"`{run.get('command', '')}`, {run.get('passes')} pass(es), {run.get('seconds')} s"],
        ["date, commit", f"{run.get('date')}, {run.get('commit')}"
         + (" (with uncommitted changes)" if run.get("uncommitted_changes") else "")],
        ["machine", f"{run.get('cpus')} vCPUs ({run.get('cpu')}), {run.get('memory_gib')} GiB, Debian "
         f"{run.get('debian')}, Linux {run.get('kernel')}"],
        ["software", f"libfabric {run.get('libfabric')} (provider `{run.get('provider')}`), Open MPI "
         f"{run.get('openmpi')}, {other_software}"],
        ["load average (1 min) before, after", f"{run.get('load_before')}, {run.get('load_after')}"],
    ])


def transport_of(record):
    """The transport of one of Sidecore's lines, or None for a line that has none. The C++ client's
    lines say what it used ("rings" or "fabric"); the MPI lines say what the pool asked for
    (sidecore_transport): "auto", the default, takes the executor's rings. A line without the field is
    from a run before the rings existed, so over libfabric."""
    bench, value = record.get("bench"), record.get("transport")
    if bench in CLIENT_BENCHES:
        return "rings" if value == "rings" else "fabric"
    if bench in MPI_BENCHES:
        return "rings" if value == "auto" else "fabric"
    return None


# The harvest figures' systems: (name in the figures, bench of its JSON lines).
HARVEST_SYSTEMS = (("sidecore", "harvest"), ("mpi", "mpi-harvest"), ("omp", "omp-harvest"), ("dask", "dask-harvest"))


# --- loading --------------------------------------------------------------------------------------

class Results:
    """Figures by (bench, size or task length, field), each the list of its values over passes."""

    def __init__(self, folder):
        self.values = collections.defaultdict(list)
        self.lines = 0
        # True when the MPI-only figures come from sidecore-bench's own jobs, measured in rounds
        # alternating with Sidecore's (harvest's mpi_only_*, mpi-throughput's mpi_tasks_per_s), not
        # from sidecore-bench-mpi's separate peer runs (mpi.jsonl of older runs).
        self.mpi_in_job = False
        self.transports = set()  # of Sidecore's lines
        for system in SYSTEM_FILES:
            path = os.path.join(folder, f"{system}.jsonl")
            if not os.path.exists(path):
                continue
            with open(path) as stream:
                for number, line in enumerate(stream, 1):
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        sys.exit(f"report: {path}:{number}: not JSON: {error}")
                    self.lines += 1
                    key = record.get("bytes", record.get("task_us"))
                    transport = transport_of(record) if system == "sidecore" else None
                    if transport:
                        self.transports.add(transport)
                    self.add_in_job(record, key, transport)
                    for field, value in record.items():
                        if isinstance(value, (int, float)) and field not in ("pass", "bytes", "task_us"):
                            # Filed under the bench (both transports together: the raw and MPI-only
                            # sides, which do not depend on it) and under bench/transport.
                            self.values[(record["bench"], key, field)].append(value)
                            if transport:
                                self.values[(f"{record['bench']}/{transport}", key, field)].append(value)
        run_path = os.path.join(folder, "run.json")
        self.run = json.load(open(run_path)) if os.path.exists(run_path) else {}

    def add_in_job(self, record, key, transport):
        """The MPI-only side of sidecore-bench's paired figures, filed as the peer's own figures
        (mpi-harvest, mpi-throughput; the jobs of both transports together), and the MPIX tasks/s as
        mpix-throughput/<transport>."""
        bench = record.get("bench")
        if bench == "harvest" and "mpi_only_efficiency" in record:
            self.mpi_in_job = True
            for field, value in (("efficiency", record["mpi_only_efficiency"]), ("speedup", record.get("mpi_only_speedup"))):
                if isinstance(value, (int, float)):
                    self.values[("mpi-harvest", key, field)].append(value)
        if bench == "mpi-throughput" and "mpi_tasks_per_s" in record:
            self.mpi_in_job = True
            for name, field in (("mpi-throughput", "mpi_tasks_per_s"), (f"mpix-throughput/{transport}", "mpix_tasks_per_s")):
                if isinstance(record.get(field), (int, float)):
                    self.values[(name, key, "tasks_per_s")].append(record[field])

    def get(self, bench, key, field):
        """The median over passes, or None when not measured."""
        values = self.values.get((bench, key, field))
        return statistics.median(values) if values else None

    def spread(self, bench, key, field):
        values = self.values.get((bench, key, field))
        return (min(values), max(values), len(values)) if values else None

    def keys(self, bench, field):
        return sorted({key for (b, key, f) in self.values if b == bench and f == field})


# --- formatting ------------------------------------------------------------------------------------

def us(value):
    if value is None:
        return "n/a"
    if value < 10:
        return f"{value:.2f} µs"
    if value < 1000:
        return f"{value:.1f} µs"
    return f"{value:,.0f} µs".replace(",", " ")


def rate(value):
    return "n/a" if value is None else f"{value:,.0f}".replace(",", " ")


def short_rate(value):
    for suffix, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:.0f}"


def ratio(a, b, digits=2):
    """a / b with `digits` decimals; without decimals from 100 on, two significant digits below 0.1."""
    if a is None or b is None or b == 0:
        return "n/a"
    quotient = a / b
    if quotient >= 100:
        return f"{quotient:,.0f}".replace(",", " ")
    if quotient < 0.1:
        return f"{quotient:.2g}"
    return f"{quotient:.{digits}f}"


def size_name(size):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def task_name(task_us):
    return f"{task_us // 1000} ms" if task_us >= 1000 and task_us % 1000 == 0 else f"{task_us} µs"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# --- plots ------------------------------------------------------------------------------------------

def plot(results, folder, sizes, tasks, throughput_rows, transports):
    """latency.png, throughput.png, harvest.png with gnuplot; returns the file names drawn."""
    os.makedirs(folder, exist_ok=True)
    latency_series = [
        ("fi\\_pingpong (libfabric floor)", "fi_pingpong", "rtt_us"),
        ("raw libfabric (sidecore-bench baseline)", "latency", "raw_rtt_us"),
    ]
    for t in transports:
        latency_series += [(f"Sidecore, C++ client, {t}", f"latency/{t}", "sidecore_rtt_us"),
                           (f"Sidecore, MPIX\\_Offload\\_submit + MPI\\_Wait, {t}", f"mpi-latency/{t}", "mpix_rtt_us")]
    latency_series += [
        ("Open MPI, MPI-only worker rank", "mpi-latency", "mpi_rtt_us"),
        ("Dask distributed", "dask-latency", "rtt_us"),
    ]
    harvest_series = [(f"Sidecore (MPIX), {t}", f"harvest/{t}") for t in transports] + [
        ("Open MPI, MPI-only worker rank", "mpi-harvest"),
        ("OpenMP tasks, one process", "omp-harvest"),
        ("Dask distributed", "dask-harvest"),
    ]
    with tempfile.TemporaryDirectory(prefix="sidecore-plots-") as data:
        script = ["set terminal pngcairo size 900,560 font 'DejaVu Sans,11'", "set grid", "set key outside below"]
        # Round trip against payload size.
        plots = []
        for index, (title, bench, field) in enumerate(latency_series):
            points = [(size, results.get(bench, size, field)) for size in sizes]
            points = [(s, v) for s, v in points if v is not None]
            if not points:
                continue
            path = os.path.join(data, f"latency{index}.dat")
            with open(path, "w") as out:
                out.writelines(f"{s} {v}\n" for s, v in points)
            plots.append(f"'{path}' using 1:2 with linespoints lw 2 pt 7 title '{title}'")
        drawn = []
        if plots:
            script += [f"set output '{os.path.join(folder, 'latency.png')}'",
                       "set title 'Round trip of one task against payload size (median; lower is better)'",
                       "set logscale xy", "set xlabel 'payload bytes (in and out)'", "set ylabel 'round trip (µs)'",
                       "set xtics (" + ", ".join(f"'{size_name(s)}' {s}" for s in sizes) + ")",
                       f"set xrange [{sizes[0] / 1.5}:{sizes[-1] * 1.5}]",
                       "plot " + ", ".join(plots), "unset logscale", "set xtics autofreq", "set autoscale"]
            drawn.append("latency.png")
        # Tasks per second.
        bars = [(name, value) for name, value in throughput_rows if value]
        if bars:
            path = os.path.join(data, "throughput.dat")
            with open(path, "w") as out:
                out.writelines(f"{i} {value} \"{name}\" \"{short_rate(value)}\"\n" for i, (name, value) in enumerate(bars))
            script += [f"set output '{os.path.join(folder, 'throughput.png')}'",
                       "set title '64 B echo tasks per second, 64 in flight, one caller to one worker (higher is better)'",
                       "set logscale y", "set xlabel ''", "set ylabel 'tasks (messages) per second'",
                       "set style fill solid 0.6", "set boxwidth 0.6", "set xtics rotate by -20",
                       f"set xrange [-0.6:{len(bars) - 0.4}]", "set yrange [10:*]",
                       f"plot '{path}' using 1:2:xtic(3) with boxes notitle, '' using 1:2:4 with labels offset 0,0.8 notitle",
                       "unset logscale", "unset xrange", "unset yrange", "set xtics norotate", "set autoscale"]
            drawn.append("throughput.png")
        # Harvest efficiency against task duration.
        plots, top = [], 1.15
        for index, (title, bench) in enumerate(harvest_series):
            points = [(t, results.get(bench, t, "efficiency")) for t in tasks]
            points = [(t, v) for t, v in points if v is not None]
            if not points:
                continue
            top = max([top] + [v * 1.05 for _, v in points])
            path = os.path.join(data, f"harvest{index}.dat")
            with open(path, "w") as out:
                out.writelines(f"{t} {v}\n" for t, v in points)
            plots.append(f"'{path}' using 1:2 with linespoints lw 2 pt 7 title '{title}'")
        if plots:
            script += [f"set output '{os.path.join(folder, 'harvest.png')}'",
                       "set title 'Harvest efficiency: what one idle core adds to one busy core (1 = all of it)'",
                       "set logscale x", "set xlabel 'task duration (µs)'", "set ylabel 'efficiency'",
                       f"set yrange [0:{top:.2f}]", f"set xrange [{tasks[0] / 1.6}:{tasks[-1] * 1.6}]",
                       "set xtics (" + ", ".join(f"'{task_name(t)}' {t}" for t in tasks) + ")",
                       "plot " + ", ".join(plots) + ", 1 with lines dt 2 lc rgb 'gray' title 'ideal'"]
            drawn.append("harvest.png")
        script_path = os.path.join(data, "plots.gp")
        with open(script_path, "w") as out:
            out.write("\n".join(script) + "\n")
        completed = subprocess.run(["gnuplot", script_path], capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"report: gnuplot failed:\n{completed.stderr}")
    return drawn


def logged_commands(folder):
    """The distinct commands compare.sh recorded in logs/<system>.log ("$ command" lines), with the
    build folder and the checkout shortened, in the order they ran."""
    seen, commands = set(), []
    for system in SYSTEM_FILES + ("soak",):
        path = os.path.join(folder, "logs", f"{system}.log")
        if not os.path.exists(path):
            continue
        for line in open(path):
            if not line.startswith("$ "):
                continue
            words = line[2:].split()
            shortened = []
            for word in words:
                if word.endswith("/libsidecore_bench_functions.so"):
                    word = "<library>"
                elif "/bench/sidecore-bench" in word:
                    word = "<build>/bench/" + word.rsplit("/", 1)[1]
                elif word.endswith("/bench/peers/dask_bench.py"):
                    word = "bench/peers/dask_bench.py"
                shortened.append(word)
            command = " ".join(shortened)
            if command == "pingpong":
                command = "fi_pingpong -p <provider> -e rdm -S <size> -I <iterations> (server and client, see above)"
            elif command.startswith("mpi_only "):
                rest = command.split(" ", 2)
                command = (f"mpirun -n 2 --oversubscribe --bind-to none <build>/bench/sidecore-bench-mpi {rest[1]} "
                           f"--library <library> --rank-cpus 0,1 {rest[2] if len(rest) > 2 else ''}").strip()
            if (system, command) not in seen:
                seen.add((system, command))
                commands.append((system, command))
    return commands


# --- the page ---------------------------------------------------------------------------------------

def first_task_section(w, path):
    """The first task of a Slurm step with and without --offload-lib, from bench/first-task.sh's lines."""
    if not os.path.exists(path):
        return
    with open(path) as stream:
        lines = [json.loads(line) for line in stream if line.strip()]
    if not lines:
        return
    w("## The first task of a step, with and without `--offload-lib`")
    w("")
    w("Measured apart from the run above, by `bench/first-task.sh` on the local test cluster "
      "(`slurm/local-cluster.sh`, one node, this machine): inside one allocation (`salloc -n1 -c2`), steps "
      "`srun --mpi=pmix --exact -n1 -c1 --offload` alternate with and without `--offload-lib=LIB`, so that "
      "both modes see the same machine. Each step's one rank (`bench/first_task.c`, on CPU 0; its executor "
      "on CPU 1) times `MPIX_Offload_pool_create` (which waits for the executor's card), its first task "
      "(`MPIX_Offload_function_lookup`, `MPIX_Offload_submit` and `MPI_Wait`, 8 bytes each way) and a second "
      "task of the same function. Each cell: the median over the steps of one invocation, and in brackets "
      "the minimum and maximum.")
    w("")

    def cell(figure, scale=1.0, unit="µs", digits=0):
        median, low, high = (v * scale for v in figure)
        return f"{median:.{digits}f} {unit} ({low:.{digits}f} to {high:.{digits}f})"

    rows = []
    for line in lines:
        when = f"{line.get('date', '?')}, {line.get('commit', '?')}, load {line.get('load1', '?')}"
        for mode, name in (("plain", "without"), ("preload", "with `--offload-lib`")):
            figures = line[mode]
            rows.append([when if mode == "plain" else "", str(line["runs"]), name, cell(figures["first_us"]),
                         cell(figures["second_us"], digits=1), cell(figures["pool_us"], 1e-3, "ms")])
    w(table(["invocation (date, commit, 1-min load)", "steps", "mode", "first task", "second task",
             "pool_create"], rows))
    w("")
    library = os.path.basename(lines[-1].get("library", "?"))
    saved = [line["plain"]["first_us"][0] - line["preload"]["first_us"][0] for line in lines]
    rest = [line["preload"]["first_us"][0] - line["preload"]["second_us"][0] for line in lines]
    start = [line["preload"]["pool_us"][0] - line["plain"]["pool_us"][0] for line in lines]
    w(f"With `{library}` (function `{lines[-1].get('symbol', '?')}`), `--offload-lib` takes "
      f"{min(saved):.0f} to {max(saved):.0f} µs (medians, per invocation) off the first task. The one thing the "
      "two modes do differently is the executor's `dlopen` of the library: at start with the flag, otherwise "
      "when the first task that names the library arrives. "
      "A larger library, or one with dependencies to load and constructors to run, saves more. The first task "
      f"still takes {min(rest):.0f} to {max(rest):.0f} µs more than the second with the library preloaded"
      "; that part is not the library's load, and `--offload-lib` does not remove it (where it goes was not "
      "measured here: `MPIX_Offload_function_lookup` is local, so candidates are the executor's first `dlsym` "
      f"of the symbol, the first message of a fresh connection and cold code paths on both sides). The load moves to the executor's start, before its card appears: `pool_create` changed by "
      f"{min(start) / 1e3:+.1f} to {max(start) / 1e3:+.1f} ms (medians), within the noise of an executor start "
      "of about 0.3 s, most of it libfabric's own.")
    w("")


# Everything from this line to the end of the page is written by hand and kept on regeneration.
KEPT_MARKER = "<!-- Not generated: written by hand, kept by bench/peers/report.py from here on. -->"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="the folder compare.sh wrote")
    parser.add_argument("--page", required=True, help="the Markdown page to write")
    args = parser.parse_args()
    results = Results(args.results)
    if results.lines == 0:
        sys.exit(f"report: no results in {args.results}")
    run = results.run
    page_folder = os.path.dirname(os.path.abspath(args.page))
    plot_folder = os.path.join(page_folder, "benchmarks")

    # Round-trip sizes: those of the task systems (fi_pingpong also runs at the bandwidth sizes).
    sizes = sorted(set(results.keys("latency", "sidecore_rtt_us"))
                   | set(results.keys("mpi-latency", "mpi_rtt_us")) | set(results.keys("dask-latency", "rtt_us")))
    tasks = sorted(set(results.keys("harvest", "efficiency")) | set(results.keys("mpi-harvest", "efficiency"))
                   | set(results.keys("omp-harvest", "efficiency"))
                   | set(results.keys("dask-harvest", "efficiency")))
    bw_sizes = sorted(set(results.keys("bandwidth", "sidecore_gbps")))
    tput_size = 64
    r = results.get

    # --- figures --------------------------------------------------------------------------------
    # Sidecore's figures per transport (the default first), the others' over the runs of both.
    transports = [t for t in TRANSPORTS if t in results.transports]
    floor = {s: r("fi_pingpong", s, "rtt_us") for s in sizes}
    clients = {t: {s: r(f"latency/{t}", s, "sidecore_rtt_us") for s in sizes} for t in TRANSPORTS}
    raw = {s: r("latency", s, "raw_rtt_us") for s in sizes}
    mpixes = {t: {s: r(f"mpi-latency/{t}", s, "mpix_rtt_us") for s in sizes} for t in TRANSPORTS}
    mpi = {s: r("mpi-latency", s, "mpi_rtt_us") for s in sizes}
    dask = {s: r("dask-latency", s, "rtt_us") for s in sizes}
    tput = {
        "raw": r("throughput", tput_size, "raw_msgs_per_s"),
        "mpi": r("mpi-throughput", tput_size, "tasks_per_s"),
        "dask": r("dask-throughput", tput_size, "tasks_per_s"),
    }
    for t in TRANSPORTS:
        tput[f"sidecore/{t}"] = r(f"throughput/{t}", tput_size, "tasks_per_s")
        tput[f"mpix/{t}"] = r(f"mpix-throughput/{t}", tput_size, "tasks_per_s")
    pingpong_rate = 1e6 / floor[tput_size] if floor.get(tput_size) else None
    efficiency = {system: {t: r(bench, t, "efficiency") for t in tasks}
                  for system, bench in HARVEST_SYSTEMS}
    for t in TRANSPORTS:
        efficiency[f"sidecore/{t}"] = {k: r(f"harvest/{t}", k, "efficiency") for k in tasks}
    # The default transport's figures, for the text that names one.
    default = transports[0] if transports else "rings"
    client, mpix = clients[default], mpixes[default]

    throughput_rows = [("raw libfabric", tput["raw"])]
    for t in transports:
        if tput[f"sidecore/{t}"]:
            throughput_rows.append((f"Sidecore (C++ client), {TRANSPORT_NAMES[t]}", tput[f"sidecore/{t}"]))
    for t in transports:
        if tput[f"mpix/{t}"]:
            throughput_rows.append((f"Sidecore (MPIX), {TRANSPORT_NAMES[t]}", tput[f"mpix/{t}"]))
    throughput_rows += [("Open MPI, MPI-only", tput["mpi"]), ("Dask", tput["dask"])]
    drawn = plot(results, plot_folder, sizes, tasks, throughput_rows, transports)

    out = []
    w = out.append
    w("# Sidecore next to what users would pick instead")
    w("")
    w("<!-- Generated by bench/compare.sh (bench/peers/report.py) from the JSON lines in bench/results/; "
      "do not edit by hand: change the generator and run `bench/compare.sh --report`. -->")
    w("")
    w("One run of `bench/compare.sh` on one machine measured Sidecore and the things a user could "
      "use instead to put an idle core to work: raw libfabric (`fi_pingpong`, the floor: no runtime at all), "
      "Open MPI the MPI-only way (a worker rank that `MPI_Recv`s a task, runs it and `MPI_Send`s the result), "
      + ("OpenMP tasks in one process (a second thread that runs the tasks a producer thread creates; harvest "
         "only) " if results.keys("omp-harvest", "efficiency") else "")
      + "and Dask distributed (a local scheduler and one worker process). Every system does the same work: "
      "the same payload sizes, the same task function (`echo`, and `spin_us` from the bench's function "
      "library, the same machine code everywhere; Dask calls it through ctypes), the caller on CPU 0 and "
      "whatever serves it on CPU 1.")
    w("")
    if len(transports) > 1:
        w("Sidecore is measured over both of its node-local transports, each next to the same peers: the "
          "executor's shared-memory **rings**, which a caller on the executor's host uses by default "
          "(`sidecore-bench --transport auto`, the pool's `sidecore_transport=auto`), and **fabric**, libfabric's "
          "shm provider, which is what crosses nodes and what a caller gets with `--transport fabric` "
          "(`sidecore_transport=fabric`). In every pass each runs once, in turn.")
    elif transports:
        w(f"Sidecore's figures in this run are over one node-local transport only: {TRANSPORT_NAMES[transports[0]]}.")
    if transports and "transports" not in run:
        w("")
        w("This run predates the `transport` field and the rings: all its lines count as fabric (libfabric shm).")
    w("")

    # --- the run ------------------------------------------------------------------------------------
    w("## The run")
    w("")
    if run:
        w(run_table(run, f"Dask distributed {run.get('dask_distributed')} (Python {run.get('python')})"))
        w("")
    w("The machine is a 2-vCPU VM shared with other engineers' builds and tests, and its vCPUs move between "
      "a fast and a slow placement every few seconds (docs/performance.md). Absolute microseconds mean "
      "little here; compare the ratios, which come from one run. Figures measured in several passes "
      "(round trips, throughput, bandwidth: every system once per pass, in turn) are medians over the "
      "passes; the raw JSON lines keep every pass.")
    w("")

    # --- targets --------------------------------------------------------------------------------------
    def verdict(ok_count, total):
        if total == 0:
            return "not measured"
        if ok_count == total:
            return "met"
        return "not met" if ok_count == 0 else f"met for {ok_count} of {total}"

    def compare_all(mine, theirs, keys, lower_is_better):
        pairs = [(k, mine[k], theirs[k]) for k in keys if mine.get(k) is not None and theirs.get(k) is not None]
        ok = [k for k, a, b in pairs if (a < b if lower_is_better else a > b)]
        return ok, pairs

    target_rows = []
    for t in transports:
        name = TRANSPORT_NAMES[t]
        ok, pairs = compare_all(mpixes[t], mpi, sizes, True)
        if pairs:
            target_rows.append([f"round trip below the MPI-only one (MPIX, the MPI user's call), {name}",
                                ", ".join(f"{size_name(k)}: {ratio(a, b)}x" for k, a, b in pairs),
                                verdict(len(ok), len(pairs))])
        ok, pairs = compare_all(clients[t], mpi, sizes, True)
        if pairs:
            target_rows.append([f"round trip below the MPI-only one (C++ client), {name}",
                                ", ".join(f"{size_name(k)}: {ratio(a, b)}x" for k, a, b in pairs),
                                verdict(len(ok), len(pairs))])
        if tput[f"mpix/{t}"] and tput["mpi"]:
            target_rows.append([f"tasks/s above the MPI-only pattern (MPIX, 64 B, 64 in flight), {name}",
                                f"{ratio(tput[f'mpix/{t}'], tput['mpi'])}x",
                                verdict(int(tput[f"mpix/{t}"] > tput["mpi"]), 1)])
        if tput[f"sidecore/{t}"] and tput["mpi"]:
            target_rows.append([f"tasks/s above the MPI-only pattern (C++ client, 64 B, 64 in flight), {name}",
                                f"{ratio(tput[f'sidecore/{t}'], tput['mpi'])}x",
                                verdict(int(tput[f"sidecore/{t}"] > tput["mpi"]), 1)])
        ok, pairs = compare_all(efficiency[f"sidecore/{t}"], efficiency["mpi"], tasks, False)
        if pairs:
            target_rows.append([f"harvest efficiency above the MPI-only pattern, {name}",
                                ", ".join(f"{task_name(k)}: {a:.3f} vs {b:.3f}" for k, a, b in pairs),
                                verdict(len(ok), len(pairs))])
        ok, pairs = compare_all(mpixes[t], dask, sizes, True)
        if pairs:
            target_rows.append([f"round trip below Dask's (MPIX), {name}",
                                ", ".join(f"{size_name(k)}: Dask {b / a:,.0f}x slower".replace(",", " ")
                                          for k, a, b in pairs), verdict(len(ok), len(pairs))])
        if tput[f"sidecore/{t}"] and tput["dask"]:
            target_rows.append([f"tasks/s above Dask's (C++ client), {name}",
                                f"{ratio(tput[f'sidecore/{t}'], tput['dask'], 0)}x",
                                verdict(int(tput[f"sidecore/{t}"] > tput["dask"]), 1)])
        pairs = [(k, efficiency[f"sidecore/{t}"][k], efficiency["omp"][k]) for k in tasks
                 if efficiency[f"sidecore/{t}"].get(k) is not None and efficiency["omp"].get(k) is not None]
        if pairs:
            target_rows.append([f"harvest efficiency: the gap to OpenMP tasks in one process, {name} (reported; "
                                "closing it is the next goal)",
                                ", ".join(f"{task_name(k)}: {a:.3f} vs {b:.3f} ({a - b:+.3f})" for k, a, b in pairs),
                                "reported"])
        ok, pairs = compare_all(efficiency[f"sidecore/{t}"], efficiency["dask"], tasks, False)
        if pairs:
            target_rows.append([f"harvest efficiency above Dask's, {name}",
                                ", ".join(f"{task_name(k)}: {a:.3f} vs {b:.3f}" for k, a, b in pairs),
                                verdict(len(ok), len(pairs))])
        within = [(k, clients[t][k] / floor[k]) for k in sizes if clients[t].get(k) and floor.get(k)]
        if within:
            target_rows.append([f"C++ client round trip within 1.3x of fi_pingpong, {name}",
                                ", ".join(f"{size_name(k)}: {v:.2f}x" for k, v in within),
                                verdict(sum(v <= 1.3 for _, v in within), len(within))])
        within = [(k, mpixes[t][k] / floor[k]) for k in sizes if mpixes[t].get(k) and floor.get(k)]
        if within:
            target_rows.append([f"MPIX round trip within 1.3x of fi_pingpong, {name}",
                                ", ".join(f"{size_name(k)}: {v:.2f}x" for k, v in within),
                                verdict(sum(v <= 1.3 for _, v in within), len(within))])
    w("## Targets")
    w("")
    w("From the issue: Sidecore ahead of the MPI-only pattern and of Dask on every task metric, and within "
      "1.3x of `fi_pingpong` on latency. Ratios are Sidecore's figure over the other's (below 1 is better for "
      "round trips, above 1 for tasks per second); each target is checked for each transport, against the same "
      "peers (the MPI-only figures: over the jobs of both transports). "
      "[Where Sidecore falls short](#where-sidecore-falls-short-and-why) says why and what would close each gap.")
    w("")
    w(table(["target", "measured", "status"], target_rows))
    w("")

    # --- round trip ---------------------------------------------------------------------------------
    w("## Round trip of one task")
    w("")
    w("Median time from handing over a task with N bytes of input (and room for N bytes of output) to having "
      "its N-byte result; the ratio in brackets is to `fi_pingpong`'s round trip of N bytes each way "
      "(the floor: two processes exchanging messages with libfabric and nothing else).")
    w("")
    # A transport that this run measured at fewer sizes (--quick: fabric at 64 B only) says so.
    def rtt_cell(v, s, measured):
        return f"{us(v)} ({ratio(v, floor[s])})" if v else ("n/a" if measured else "not measured")

    rows = []
    for s in sizes:
        cells = [rtt_cell(raw[s], s, True)]
        cells += [rtt_cell(clients[t][s], s, False) for t in transports]
        cells += [rtt_cell(mpixes[t][s], s, False) for t in transports]
        cells += [rtt_cell(mpi[s], s, True), rtt_cell(dask[s], s, True)]
        rows.append([size_name(s), us(floor[s])] + cells)
    w(table(["payload", "fi_pingpong (floor)", "raw libfabric"]
            + [f"Sidecore C++ client, {TRANSPORT_NAMES[t]}" for t in transports]
            + [f"Sidecore MPIX, {TRANSPORT_NAMES[t]}" for t in transports]
            + ["Open MPI, MPI-only", "Dask"], rows))
    w("")
    if any("not measured" in cell for row in rows for cell in row):
        w("\"not measured\": this run did not measure that transport at that size (`compare.sh --quick` runs "
          "fabric at 64 B only).")
        w("")
    if "latency.png" in drawn:
        w("![Round trip against payload size](benchmarks/latency.png)")
        w("")
    notes = []
    small = [s for s in sizes if s < 4096]
    if small and all(floor.get(s) and raw.get(s) for s in small):
        notes.append("Up to 1 KiB `fi_pingpong` and sidecore-bench's raw echo do the same exchange (`fi_inject` "
                     "and a busy-polled receive each way), one reporting a mean over each run, the other a median over samples: their ratio, "
                     + ", ".join(f"{raw[s] / floor[s]:.2f} at {size_name(s)}" for s in small)
                     + ", is how far apart two measurements of the same thing land on this VM.")
    big = {t: [s for s in sizes if s >= 4096 and floor.get(s) and clients[t].get(s) and clients[t][s] < floor[s]]
           for t in transports}
    if any(big.values()):
        notes.append("From 4 KiB on, `fi_pingpong` is not a floor for Sidecore: it sends with `fi_inject` only "
                     "below the provider's inject size (4 KiB for shm) and otherwise with `fi_send`, waiting for the "
                     "send's completion before it receives, and it moves large messages with two-sided sends. "
                     "Over fabric, Sidecore's worker moves inputs and outputs above 4 KiB with one-sided "
                     "`fi_read`/`fi_write` from and to the caller's registered buffers; over rings, a task carries up "
                     "to 16 KiB inline in the ring and the worker moves larger ones with one `process_vm_readv`/"
                     "`process_vm_writev` each way (docs/design.md). The C++ client's round trip is below "
                     "fi_pingpong's at " + "; ".join(f"{', '.join(size_name(s) for s in big[t])} ({t})"
                                                       for t in transports if big[t]) + ".")
    if dask.get(sizes[0]):
        notes.append(f"Dask's round trip ({us(dask[sizes[0]])} at {size_name(sizes[0])}) is set by its batching, "
                     "not by the machine: distributed 2022.12 batches what the client sends to the scheduler every "
                     "10 ms and what the scheduler and the worker send every 2 to 5 ms (intervals fixed in its "
                     "code), and each task passes through the scheduler's Python state machine and the worker's."
                     + (" At 1 MiB Dask warns that so large an argument should be scattered first (`client.scatter`, "
                        "a round trip of its own); the figure keeps it inside the task, as the other systems do."
                        if (1 << 20) in sizes else ""))
    for note in notes:
        w(note)
        w("")

    # --- throughput ---------------------------------------------------------------------------------
    w("## Tasks per second")
    w("")
    w(f"One caller keeps {int(r('mpi-throughput', tput_size, 'window') or r('dask-throughput', tput_size, 'window') or 64)} "
      f"echo tasks of {tput_size} B in flight to one worker. `fi_pingpong` has no window, so the floor here "
      "is sidecore-bench's raw libfabric side: the same window of raw messages echoed between the same two "
      "processes, with the same provider. The ratios are to that floor and to the MPI-only pattern (above 1 "
      "is faster).")
    w("")
    rows = [[name, rate(value), ratio(value, tput["raw"]), ratio(value, tput["mpi"])] for name, value in throughput_rows]
    rows.append(["fi_pingpong, one in flight (1 / round trip)", rate(pingpong_rate), ratio(pingpong_rate, tput["raw"]),
                 ratio(pingpong_rate, tput["mpi"])])
    w(table(["system", "tasks (messages) per second", "ratio to raw libfabric", "ratio to Open MPI, MPI-only"], rows))
    w("")
    if "throughput.png" in drawn:
        w("![Tasks per second](benchmarks/throughput.png)")
        w("")
    if tput["mpi"] and tput["raw"] and tput["mpi"] > tput["raw"]:
        w(f"Open MPI's MPI-only pattern is faster than the floor itself ({ratio(tput['mpi'], tput['raw'])}x raw "
          "libfabric): it does not use libfabric on one node but its own shared-memory transport (the vader BTL, "
          "per-peer fast boxes that an eager 64-byte message is copied into), which costs less per message than "
          "libfabric 1.17's shm provider (a command queue entry and a completion queue entry per message). "
          "The same holds for its round trip above.")
        w("")
    if "rings" in transports:
        w("Over rings Sidecore's tasks do not use libfabric either (one copy into a ring of 64-byte cells per "
          "task and result, docs/design.md), so raw libfabric is a floor for its fabric figures only; for the "
          "rings figures the peer to beat is the MPI-only pattern.")
        w("")

    # --- bandwidth ----------------------------------------------------------------------------------
    if bw_sizes:
        w("## Bandwidth")
        w("")
        w("An N-byte input moved to the executor (Sidecore: a task of function `consume`, whose input the worker "
          "moves with one `process_vm_readv` over rings (past their 16 KiB inline limit) and `fi_read`s from the "
          "caller's registered buffer over fabric; raw: the same `fi_read` without the runtime) next to "
          "`fi_pingpong`'s N-byte messages, whose MB/s is N over the one-way time of a ping-pong. GB/s are "
          "10^9 bytes per second. Neither Open MPI nor Dask has a bandwidth figure here: the issue asks for "
          "their task figures only.")
        w("")
        rows = []
        for s in bw_sizes:
            pp = r("fi_pingpong", s, "mb_per_s")
            pp = pp / 1000 if pp else None
            rw = r("bandwidth", s, "raw_gbps")
            row = [size_name(s), f"{pp:.2f}" if pp else "n/a", f"{rw:.2f} ({ratio(rw, pp)})" if rw else "n/a"]
            for t in transports:
                sc = r(f"bandwidth/{t}", s, "sidecore_gbps")
                row.append(f"{sc:.2f} ({ratio(sc, pp)}; {ratio(sc, rw)})" if sc else "not measured")
            rows.append(row)
        w(table(["input", "fi_pingpong GB/s (floor)", "raw fi_read GB/s (ratio)"]
                + [f"Sidecore GB/s, {TRANSPORT_NAMES[t]} (ratio to fi_pingpong; to raw)" for t in transports], rows))
        w("")
        slow = [s for s in bw_sizes if r("fi_pingpong", s, "mb_per_s") and r("bandwidth", s, "raw_gbps")
                and r("fi_pingpong", s, "mb_per_s") / 1000 < r("bandwidth", s, "raw_gbps")]
        if slow:
            w("`fi_pingpong`'s two-sided sends of " + ", ".join(size_name(s) for s in slow) + " are slower than a "
              "one-sided `fi_read` of the same bytes into a buffer registered once: the two take different paths "
              "through the shm provider, so for bandwidth the meaningful comparison is Sidecore against the raw "
              "`fi_read` measured next to it (" + "; ".join(
                  f"{t}: " + ", ".join(f"{ratio(r(f'bandwidth/{t}', s, 'sidecore_gbps'), r('bandwidth', s, 'raw_gbps'))} "
                                       f"at {size_name(s)}" for s in bw_sizes)
                  for t in transports if results.keys(f"bandwidth/{t}", "sidecore_gbps")) + ").")
            w("")

    # --- harvest ------------------------------------------------------------------------------------
    w("## Harvest efficiency")
    w("")
    w("A task farm of `spin_us` tasks on the caller's core, run alone and then with one idle core's worker "
      "taking tasks off it; speedup = time alone / time with the worker, efficiency = speedup / 2 (1: the "
      "idle core added all it has, and handing tasks over cost the caller nothing). The ideal is 1, so "
      "efficiency is itself the ratio to the floor.")
    w("")
    # Sidecore per transport, then the peers (the MPI-only farm: over the jobs of both transports).
    harvest_columns = [(f"Sidecore (MPIX), {TRANSPORT_NAMES[t]}", f"harvest/{t}") for t in transports]
    harvest_columns += [("Open MPI, MPI-only", "mpi-harvest"), ("OpenMP tasks", "omp-harvest"), ("Dask", "dask-harvest")]
    rows = []
    for t in tasks:
        row = [task_name(t)]
        for _, bench in harvest_columns:
            e = r(bench, t, "efficiency")
            s = r(bench, t, "speedup")
            measured = bool(results.keys(bench, "efficiency"))
            row.append(f"{e:.3f} ({s:.2f}x)" if e is not None and s is not None else "n/a" if measured else "not measured")
        rows.append(row)
    w(table(["task"] + [name for name, _ in harvest_columns], rows))
    w("")
    run_columns = harvest_columns[:-1]  # Dask's harvest runs once
    passes = [(t, [results.values.get((bench, t, "efficiency"), []) for _, bench in run_columns]) for t in tasks]
    if any(len(values) > 1 for _, columns in passes for values in columns):
        w("Every run (the table shows the median over runs; Sidecore's and the MPI-only figures of a run come "
          "from one job, in alternating rounds, one job per transport, and the OpenMP run followed them):")
        w("")
        w(table(["task"] + [name for name, _ in run_columns],
                [[task_name(t)] + [", ".join(f"{v:.3f}" for v in values) or "n/a" for values in columns]
                 for t, columns in passes]))
    w("")
    if "harvest.png" in drawn:
        w("![Harvest efficiency against task duration](benchmarks/harvest.png)")
        w("")

    first_task_section(w, os.path.join(args.results, "first-task.jsonl"))

    # --- how -------------------------------------------------------------------------------------------
    w("## How each figure was measured")
    w("")
    w("`bench/compare.sh` runs everything below in one go and writes the JSON lines to `bench/results/` "
      "(one file per system; each line carries its pass number) and the logs to `bench/results/logs/`. "
      "`--quick` runs each system once on small sizes (the `bench.compare_quick` smoke test does that); "
      "`--report` regenerates this page from the results. The caller side always runs on CPU 0, the serving "
      "side on CPU 1; nothing else of the benchmark runs meanwhile.")
    w("")
    pp_runs = max([int(v) for s in sizes for v in results.values.get(("fi_pingpong", s, "runs"), [])] or [0])
    pp_iterations = ", ".join(f"{int(r('fi_pingpong', s, 'iterations'))} at {size_name(s)}"
                              for s in sorted(set(results.keys("fi_pingpong", "iterations"))))
    w(f"- **fi_pingpong** (`fi_pingpong -p {run.get('provider', 'shm')} -e rdm -S N -I iterations`, server "
      "`taskset -c 1`, client `taskset -c 0`): libfabric's own ping-pong, `fi_inject` or `fi_send` and a "
      "busy-polled completion queue on both sides. It prints a mean over its iterations "
      f"({pp_iterations}); compare.sh runs it {pp_runs} time(s) per size and pass and keeps the median run; "
      "the round trip is 2 N / (MB/s). A mean counts the rare slow round trip that a median leaves out, which "
      "favours the systems measured with medians.")
    w("- **Sidecore, C++ client and raw libfabric** (`sidecore-bench latency|throughput|bandwidth`, "
      "bench/README.md): the client and, in a server child, the real executor (one worker, adaptive polling) "
      "and a raw libfabric echo built from the same fabric classes; rounds of the two sides alternate, "
      "medians over all samples of all rounds (throughput: over rates sampled every 1/20 of a round).")
    w("- **Sidecore's two transports**: every Sidecore figure (C++ client and MPIX) is measured once over the "
      "executor's rings (`--transport auto`, the default: the client's lines say `\"transport\":\"rings\"`, the MPI "
      "lines `\"auto\"`) and once over libfabric shm (`--transport fabric`), in turn, the order swapped every other "
      "pass; the raw libfabric and MPI-only sides run in both and their figures are taken over both.")
    w("- **Sidecore MPIX and the MPI-only round trip** (`sidecore-bench mpi-latency`): one MPI job under "
      "`sidecore-run`; rank 2 times `MPIX_Offload_submit` + `MPI_Wait` of `echo`, rank 0 times `MPI_Send` to an "
      "echo rank on CPU 1 that `MPI_Recv`s and `MPI_Send`s back, and `MPI_Recv`: the MPI-only round trip. Rounds "
      "alternate, medians over all samples.")
    if results.mpi_in_job:
        w("- **MPIX and Open MPI tasks per second** (`sidecore-bench mpi-throughput`): one MPI job under "
          "`sidecore-run`, mpi-latency's three ranks; rank 2 keeps the window of `MPIX_Offload_submit` echo tasks "
          "in flight to the executor, rank 0 the same window the MPI-only way to a worker rank on CPU 1 (each task "
          "an `MPI_Irecv` of the result and an `MPI_Isend` of the input; the worker rank `MPI_Recv`s, runs `echo` "
          "from the bench library and `MPI_Send`s the result). Rounds alternate; rates sampled every 1/20 of a "
          "round (the first sample of each round left out), median: the sampling of `sidecore-bench throughput`.")
    else:
        w("- **Open MPI tasks per second** (`sidecore-bench-mpi mpi-throughput`, 2 ranks): rank 0 keeps the window "
          "in flight, each task an `MPI_Irecv` of the result and an `MPI_Isend` of the input; rank 1 `MPI_Recv`s, "
          "runs `echo` from the bench library and `MPI_Send`s the result. Rates sampled every 1/20 of a round "
          "(the first sample of each round left out), median: the sampling of `sidecore-bench throughput`.")
    w("- **Harvest** (`sidecore-bench harvest`, "
      + ("whose job also runs the MPI-only farm in alternating rounds, " if results.mpi_in_job
         else "`sidecore-bench-mpi mpi-harvest`, ")
      + "`sidecore-bench-omp`, `dask_bench.py --only harvest`): the same farm loop everywhere (`TaskFarm` in "
      "bench/mpi/task_farm.hpp, which Sidecore's and the MPI-only farm share, its C copy for OpenMP and its "
      "Python copy): 4 tasks in flight per worker, one task computed by the caller between refills, "
      "completions collected without blocking (`MPI_Testsome`, an atomic counter, `Future.done()`), the "
      "offloaded share balanced near the end. Runs alone and with the worker alternate for `--rounds` "
      "rounds; the speedup is the median of the per-round ones. Each process measures its CPU share and "
      "warns in the logs when something else took its CPU.")
    w("- **OpenMP tasks** (`sidecore-bench-omp`, bench/peers/omp_harvest.c, GCC's libgomp): one process, "
      "a producer thread pinned to CPU 0 creates `#pragma omp task`s of `spin_us` (the bench library's, "
      "through `dlopen`) and a second thread pinned to CPU 1 runs them from the parallel region's closing "
      "barrier; what a user whose code can take threads would pick, and the floor an out-of-process offload "
      "aims at. Its runs alternate with `sidecore-bench harvest`'s.")
    w("- **Dask** (`bench/peers/dask_bench.py`, Debian's python3-distributed): `dask-scheduler` and one "
      "`dask-worker --nthreads 1 --no-nanny`, both pinned to CPU 1 (the idle core, as Sidecore's executor), "
      "the client on CPU 0, Dask's default configuration. Round trip: "
      "`client.submit(echo, payload, pure=False).result()`, median. Tasks per second: the window of futures "
      "kept full through `as_completed(with_results=True)`, sampled as above (`client.map` of the same tasks "
      "was within 20 % of it in a trial run). Harvest: `spin_us` called through ctypes by the client and by "
      "the worker.")
    w("")
    commands = logged_commands(args.results)
    if commands:
        w("The commands of this run, as its logs recorded them (each pass repeats them; `<build>` is the build "
          "folder, `<library>` the bench function library in it):")
        w("")
        w("```")
        for system, command in commands:
            w(f"{system:12} {command}")
        w("```")
        w("")

    # --- shortfalls ----------------------------------------------------------------------------------
    w("## Where Sidecore falls short, and why")
    w("")
    shortfalls = []
    small = [s for s in sizes if s <= 1024]
    large = [s for s in sizes if s > 4096]

    def span(values):
        values = [v for v in values if v is not None]
        if not values:
            return "n/a"
        low, high = min(values), max(values)
        return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f} to {high:.2f}"

    for t in transports:
        client, mpix = clients[t], mpixes[t]
        sidecore_tput, mine = tput[f"sidecore/{t}"], efficiency[f"sidecore/{t}"]
        fabric = t == "fabric"
        label = f" Over {TRANSPORT_NAMES[t]}." if len(transports) > 1 else ""
        before = len(shortfalls)
        behind = [s for s in sizes if mpix.get(s) and mpi.get(s) and mpix[s] >= mpi[s]]
        if behind:
            text = ("**Round trip against the MPI-only pattern.** The MPIX round trip is "
                    + ", ".join(f"{ratio(mpix[s], mpi[s])}x" for s in behind) + " the MPI-only one at "
                    + ", ".join(size_name(s) for s in behind)
                    + (" (the C++ client: " + ", ".join(f"{ratio(client[s], mpi[s])}x" for s in behind if client.get(s))
                       + ")" if any(client.get(s) for s in behind) else "") + ". ")
            if small:
                text += ("Up to 1 KiB most of it is the transport, before any runtime: on one node Open MPI does not use "
                         "libfabric but its own shared-memory path (the vader BTL), and libfabric 1.17's shm provider "
                         f"takes {span([floor[s] / mpi[s] for s in small if floor.get(s) and mpi.get(s)])}x as long "
                         "(`fi_pingpong`), sidecore-bench's raw echo "
                         f"{span([raw[s] / mpi[s] for s in small if raw.get(s) and mpi.get(s)])}x. Sidecore's own share "
                         f"is the client's {span([client[s] / raw[s] for s in small if client.get(s) and raw.get(s)])}x "
                         "over raw libfabric (task and result headers, credit and slot bookkeeping, the worker's session "
                         "check; docs/performance.md) and the MPI layer's cost per task (a generalized request per "
                         "task and its completion through Open MPI's progress hook; bench/README.md). ")
            if large:
                text += ("Above 4 KiB the transports are even (raw libfabric is "
                         f"{span([raw[s] / mpi[s] for s in large if raw.get(s) and mpi.get(s)])}x the MPI-only round "
                         "trip) and the gap is Sidecore's large-payload protocol: the client registers the task's input "
                         "and output buffers for each task, the worker `fi_read`s the input and `fi_write`s the output, "
                         "and a result message follows, where MPI sends the bytes once each way (C++ client over raw "
                         "libfabric: "
                         f"{span([client[s] / raw[s] for s in large if client.get(s) and raw.get(s)])}x). ")
            text += ("On one node Sidecore's answer is its rings, which leave libfabric out of the task's path; over "
                     "fabric what would close it is a libfabric whose shm provider matches vader, multi-receive "
                     "buffers instead of one receive posted per message, and a registration cache for large "
                     "payloads.")
            shortfalls.append(text)
        if sidecore_tput and tput["mpi"] and sidecore_tput <= tput["mpi"]:
            shortfalls.append(
                f"**Tasks per second against the MPI-only pattern.** {rate(sidecore_tput)} tasks/s against "
                f"{rate(tput['mpi'])} ({ratio(sidecore_tput, tput['mpi'])}x). The floor itself is the limit: raw "
                f"libfabric echoes {rate(tput['raw'])} messages/s with the same window, {ratio(tput['raw'], tput['mpi'])}x "
                f"Open MPI's rate, and Sidecore gets {ratio(sidecore_tput, tput['raw'])}x of raw libfabric. With one "
                "caller and one worker both spinning, the rate is the slower side's CPU cost per message, and a libfabric "
                "shm message costs several times a vader fast-box copy. The levers are the rings and fewer "
                "messages per task: several tasks submitted together in one message (and their results returned "
                "together) would divide the per-message cost.")
        lost = [t for t in tasks if mine.get(t) is not None and efficiency["mpi"].get(t) is not None
                and mine[t] <= efficiency["mpi"][t]]
        if lost:
            shortfalls.append(
                "**Harvest against the MPI-only pattern.** Efficiency "
                + ", ".join(f"{mine[t]:.3f} against {efficiency['mpi'][t]:.3f} at {task_name(t)}"
                            for t in lost)
                + ". What a harvest charges is the caller's own cost per offloaded task and anything else that runs on "
                  "its core. For short tasks that is the submit path: `MPIX_Offload_submit` (a generalized request from "
                  "Open MPI, recycled request state, the connection's own lock and the client's submit) and the "
                  "completions in `MPI_Testsome`, against an `MPI_Irecv` and an eager 8-byte `MPI_Send` for the "
                  "MPI-only farm. For long tasks it is also the offload library's progress thread, which shares the "
                  "rank's core and naps while the rank polls (bench/README.md). The engine lock is gone and request "
                  "state is pooled; what is left, Open MPI's generalized request and its completion path, was not "
                  "broken down further in this run.")
        over = [(s, client[s] / floor[s]) for s in sizes if client.get(s) and floor.get(s) and client[s] / floor[s] > 1.3]
        if over:
            text = ("**Round trip against fi_pingpong.** The C++ client is within 1.3x of the floor at "
                    + (", ".join(size_name(s) for s in sizes if client.get(s) and floor.get(s)
                                 and client[s] / floor[s] <= 1.3) or "no size")
                    + " and over it at " + ", ".join(f"{size_name(s)} ({v:.2f}x)" for s, v in over) + ". ")
            if any(s == 4096 for s, _ in over):
                header = r("fi_pingpong", 4096 + 56, "rtt_us")
                text += ("At 4 KiB the payload fits shm's 4096-byte inject size but Sidecore's messages do not: the "
                         "56-byte task header (48-byte result header) pushes both over it, onto the provider's path "
                         "for larger messages")
                if header and floor.get(4096):
                    step = header / floor[4096]
                    text += (f"; `fi_pingpong` itself takes {us(header)} for 4 KiB + 56 B against {us(floor[4096])} "
                             f"for 4 KiB ({step:.2f}x"
                             + (", the step is in the floor too)" if step > 1.1 else
                                "; in this run the floor shows no such step, so the header alone does not explain "
                                "the gap)"))
                text += (". The rings carry up to 16 KiB inline, so they have no such step; over fabric, lowering "
                         "Sidecore's inline limit would only move such payloads to the RMA path. ")
            big = [s for s, _ in over if s > 4096]
            if big:
                text += ("Above 4 KiB Sidecore moves payloads by RMA (registration, `fi_read`, `fi_write`, then the "
                         "result message; C++ client over raw libfabric: "
                         + ", ".join(f"{ratio(client[s], raw[s])}x at {size_name(s)}" for s in big)
                         + "), and sidecore-bench's raw echo is itself slower than `fi_pingpong` there ("
                         + ", ".join(f"{ratio(raw[s], floor[s])}x" for s in big)
                         + "), a difference between two libfabric programs that this issue did not track down.")
            shortfalls.append(text)
        over = [(s, mpix[s] / floor[s]) for s in sizes if mpix.get(s) and floor.get(s) and mpix[s] / floor[s] > 1.3]
        if over:
            shortfalls.append(
                "**MPIX against fi_pingpong.** Over 1.3x at " + ", ".join(f"{size_name(s)} ({v:.2f}x)" for s, v in over)
                + (": the C++ client's reasons above, plus the MPI layer's cost per task." if fabric else "."))
        lost_dask = [t for t in tasks if mine.get(t) is not None and efficiency["dask"].get(t) is not None
                     and mine[t] <= efficiency["dask"][t]]
        if lost_dask:
            shortfalls.append(
                "**Harvest against Dask.** At " + ", ".join(task_name(t) for t in lost_dask)
                + " Dask's efficiency is not below Sidecore's in this run.")
        # The explanations above are of libfabric's costs; over rings only the figures are stated.
        for index in range(before, len(shortfalls)):
            heading, _, rest = shortfalls[index].partition("** ")
            if not fabric:
                rest = re.split(r"\.\s+(?=[A-Z`])", rest)[0].rstrip(".") + "."
                rest += " docs/design.md describes the rings' path; where its time goes was not measured here."
            shortfalls[index] = heading + "**" + label + " " + rest
    if not shortfalls:
        shortfalls.append("Nothing in this run: every target above is met.")
    for text in shortfalls:
        w(text)
        w("")
    client, mpix = clients[default], mpixes[default]
    if dask.get(sizes[0]) and tput["dask"] and mpix.get(sizes[0]) and tput[f"sidecore/{default}"]:
        w(f"**Dask, for the record.** Sidecore, over {TRANSPORT_NAMES[default]}, is ahead of Dask on every figure, by "
          f"{ratio(dask[sizes[0]], mpix[sizes[0]], 0)}x on the round trip and "
          f"{ratio(tput[f'sidecore/{default}'], tput['dask'], 0)}x on tasks per second. Dask's figures "
          "are what its design gives on one machine, not a misconfiguration: its client batches messages to the "
          "scheduler every 10 ms and its scheduler and worker every 2 to 5 ms (fixed intervals in distributed "
          "2022.12), every task goes through the scheduler's and the worker's Python state machines, and in a "
          "harvest every `client.submit` runs Python on the client's core (building and serializing the task) "
          "next to the client's event-loop thread, which shares that core, so with short tasks the client loses "
          "more time handing tasks over than the worker gives back (speedup below 1).")
        w("")
    w("Against the MPI-only pattern Sidecore trades speed for what a dedicated worker rank cannot do: it "
      "serves the cores a job leaves idle (`srun --offload=idle`) without changing the job's layout or code "
      "beyond the submit call, any rank of the job can use any executor, and a crashing function does not take "
      "a rank down. Those are reasons to accept the gap, not figures, and this page does not measure them.")
    w("")
    w("What this page does not show: several nodes (the cross-node providers `tcp;ofi_rxm` and `net` are measured "
      "against raw libfabric in docs/performance.md, and the MPI figures need one node's shm here), more than one "
      "worker, and the wake-up of an executor that was idle for long (docs/performance.md).")
    w("")

    # Sections measured by hand (not by compare.sh) follow KEPT_MARKER in the page: carry them over.
    kept = ""
    if os.path.exists(args.page):
        with open(args.page) as stream:
            previous = stream.read()
        if KEPT_MARKER in previous:
            kept = "\n" + previous[previous.index(KEPT_MARKER):]
    with open(args.page, "w") as stream:
        stream.write("\n".join(out) + kept)
    print(f"report: wrote {args.page} and {len(drawn)} plots in {plot_folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
