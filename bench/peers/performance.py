#!/usr/bin/python3
"""Writes docs/performance.md from the JSON lines in bench/results, the way report.py writes
docs/benchmarks.md.

    bench/peers/performance.py --results bench/results --page docs/performance.md

Every figure on the page comes from a committed JSON line of a named run: run.json names the run of
bench/compare.sh (date, commit, machine, load) whose lines are sidecore.jsonl, fi_pingpong.jsonl,
omp.jsonl and soak.jsonl; cross-node.jsonl (bench/cross-node.sh) is shown as its own file. Every pass
is shown, never only a median or a range that leaves one out, and no line of one run is shown next to
a line of another as if they were one. Targets that no committed line measures say so. Standard
library only.
"""
import argparse
import collections
import json
import os
import sys

# One rule for which transport a line measured, shared with benchmarks.md's generator.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import TRANSPORT_NAMES, TRANSPORTS, run_table, size_name, table, task_name, transport_of  # noqa: E402

# Everything from this line to the end of the page is written by hand and kept on regeneration.
KEPT_MARKER = "<!-- Not generated: written by hand, kept by bench/peers/performance.py from here on. -->"


def load(folder, name):
    """The records of <folder>/<name>.jsonl, each with the number of its line."""
    path = os.path.join(folder, f"{name}.jsonl")
    records = []
    if not os.path.exists(path):
        return records
    with open(path) as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                sys.exit(f"performance: {path}:{number}: not JSON: {error}")
            record["_line"] = number
            records.append(record)
    return records


def num(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:.{digits}f}"


class Passes:
    """Records of one bench, by (key, pass): key is (transport, size or task length), or (provider,
    transport, size); transport is "rings" or "fabric" (transport_of)."""

    def __init__(self, records, bench, key=lambda r: (transport_of(r), r.get("bytes", r.get("task_us")))):
        self.by_key = collections.defaultdict(dict)
        for record in records:
            if record.get("bench") == bench:
                runs = self.by_key[key(record)]
                number = record.get("pass", 1)
                if number in runs:
                    # The C++ client fell back to fabric in a run that asked for rings: keep the first.
                    print(f"performance: two {bench} lines for {key(record)} in pass {number}; showing the first",
                          file=sys.stderr)
                    continue
                runs[number] = record

    def keys(self):
        """Sorted by provider and size, the transports of one size next to each other, the default first."""
        def order(key):
            if not isinstance(key, tuple):
                return (str(type(key)), key)
            rest = tuple(part for part in key if part not in TRANSPORTS)
            transport = next((TRANSPORTS.index(part) for part in key if part in TRANSPORTS), -1)
            return (str(type(key)), rest, transport)
        return sorted(self.by_key, key=order)

    def passes(self):
        return sorted({p for runs in self.by_key.values() for p in runs})

    def values(self, key, field):
        """[(pass, value)] of every pass that measured it."""
        return [(p, r.get(field)) for p, r in sorted(self.by_key.get(key, {}).items()) if r.get(field) is not None]


def per_pass(values, digits=3):
    """'a, b, c' in pass order: every pass shown."""
    return ", ".join(num(v, digits) for _, v in values) if values else "n/a"


def verdict(values, ok):
    if not values:
        return "not measured in this run"
    good = sum(1 for _, v in values if ok(v))
    if good == len(values):
        return "met" + (f" in all {len(values)} passes" if len(values) > 1 else "")
    return "not met" if good == 0 else f"met in {good} of {len(values)} passes"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="the folder compare.sh wrote")
    parser.add_argument("--page", required=True, help="the Markdown page to write")
    args = parser.parse_args()

    run_path = os.path.join(args.results, "run.json")
    run = json.load(open(run_path)) if os.path.exists(run_path) else {}
    sidecore = load(args.results, "sidecore")
    if not sidecore:
        sys.exit(f"performance: no sidecore.jsonl in {args.results}")
    pingpong = load(args.results, "fi_pingpong")
    omp = load(args.results, "omp")
    soak = load(args.results, "soak")
    cross = load(args.results, "cross-node")
    run_name = f"the run of {run.get('date', '?')} at {run.get('commit', '?')}" + (
        " (with uncommitted changes)" if run.get("uncommitted_changes") else "")
    source = lambda *files: " and ".join(f"`bench/results/{f}`" for f in files)

    out = []
    w = out.append
    w("# Measured performance")
    w("")
    w("<!-- Generated by bench/compare.sh (bench/peers/performance.py) from the JSON lines in bench/results/; "
      "do not edit by hand: change the generator and run `bench/compare.sh --report`. -->")
    w("")
    w("Every figure on this page comes from a JSON line committed in `bench/results/` and says which file it "
      "is in. All but the cross-node figures come from one run of `bench/compare.sh`, described below; a "
      "figure measured in several passes shows every pass, in pass order, never a median or a range alone. "
      "bench/README.md says how each figure is measured; [benchmarks.md](benchmarks.md) puts the same run next "
      "to the peers (`fi_pingpong`, the MPI-only pattern, OpenMP tasks, Dask) with plots.")
    w("")
    w("## The run")
    w("")
    if run:
        w(run_table(run, f"GCC {run.get('gcc', '?')} (libgomp)"))
    else:
        w(f"`{run_path}` is missing: the lines below belong to no named run.")
    w("")
    w("The caller is pinned to CPU 0 and whatever serves it (executor worker, raw echo, worker rank) to "
      "CPU 1. The development machine is a 2-vCPU VM whose vCPUs move between a fast and a slow placement "
      "every few seconds, so each figure is a ratio against a baseline measured in the same run, between the "
      "same processes, in alternating rounds; absolute times are for orientation only.")
    w("")

    by_provider = lambda r: (r.get("provider"), transport_of(r), r.get("bytes"))
    latency = Passes(sidecore, "latency", key=by_provider)
    throughput = Passes(sidecore, "throughput", key=by_provider)
    bandwidth = Passes(sidecore, "bandwidth", key=by_provider)
    wake = Passes(sidecore, "wake", key=lambda r: (r.get("provider"), transport_of(r)))
    mpi_latency = Passes(sidecore, "mpi-latency")
    mpi_throughput = Passes(sidecore, "mpi-throughput")
    harvest = Passes(sidecore, "harvest")
    omp_harvest = Passes(omp, "omp-harvest", key=lambda r: r.get("task_us"))
    floor = Passes(pingpong, "fi_pingpong", key=lambda r: (r.get("provider"), r.get("bytes")))
    transports = [t for t in TRANSPORTS if any(key[-2] == t for passes in (latency, throughput, bandwidth,
                                                                           mpi_latency, mpi_throughput, harvest)
                                               for key in passes.keys())
                  or any(key[-1] == t for key in wake.keys())]

    w("## Sidecore's two node-local transports")
    w("")
    w("Every Sidecore figure below is shown per transport: **rings**, the executor's shared-memory rings, which "
      "a caller on the executor's host uses by default (`sidecore-bench --transport auto`, the pool's "
      "`sidecore_transport=auto`), and **fabric**, libfabric's shm provider (`--transport fabric`). "
      "`bench/compare.sh` measures both in every pass, in turn. The C++ client's lines say which transport it "
      "used; the MPI lines say which the pool asked for (`auto` is the rings).")
    if "transports" not in run:
        w("")
        w("This run predates the `transport` field and the rings: all its lines count as fabric (libfabric shm).")
    w("")
    w(f"This run measured: {', '.join(TRANSPORT_NAMES[t] for t in transports) or 'neither'}.")
    w("")

    # --- targets -------------------------------------------------------------------------------------
    w("## Targets of the node-local path (issue 14)")
    w("")
    w(f"Ratios, and the idle figures of `sidecore-bench wake` (absolute: µs, % of a core), from {run_name}, "
      f"{source('sidecore.jsonl', 'fi_pingpong.jsonl', 'omp.jsonl')}; one value per pass (harvest: per run), in "
      "order, for each transport.")
    w("")
    rows = []
    for transport, size in mpi_latency.keys():
        values = mpi_latency.values((transport, size), "ratio")
        goal = size in (64, 4096)
        rows.append([f"MPIX round trip at most 1.0x the MPI-only one, {size_name(size)}"
                     + ("" if goal else " (reported)"), TRANSPORT_NAMES[transport], per_pass(values),
                     verdict(values, lambda v: v <= 1.0) if goal else "reported"])
    for transport, size in mpi_throughput.keys():
        values = mpi_throughput.values((transport, size), "ratio")
        window = next((r.get("window") for r in mpi_throughput.by_key[(transport, size)].values()), "?")
        goal = size == 64
        rows.append([f"MPIX tasks/s at least 1.0x the MPI-only pattern's, {size_name(size)}, {window} in flight"
                     + ("" if goal else " (reported)"), TRANSPORT_NAMES[transport], per_pass(values),
                     verdict(values, lambda v: v >= 1.0) if goal else "reported"])
    for transport, task in harvest.keys():
        runs = sorted(harvest.by_key[(transport, task)].items())
        pairs = [(p, r["efficiency"] - r["mpi_only_efficiency"]) for p, r in runs
                 if r.get("efficiency") is not None and r.get("mpi_only_efficiency") is not None]
        goal = task in (10, 50)
        text = ", ".join(f"{r['efficiency']:.3f} vs {r['mpi_only_efficiency']:.3f}"
                         for _, r in runs if r.get("mpi_only_efficiency") is not None)
        rows.append([f"harvest efficiency at least the MPI-only pattern's (within 0.005), {task_name(task)} tasks"
                     + ("" if goal else " (reported; the goal: no lower than before)"), TRANSPORT_NAMES[transport],
                     text or "n/a", verdict(pairs, lambda v: v >= -0.005) if goal else "reported"])
    for transport, task in harvest.keys():
        runs = sorted(harvest.by_key[(transport, task)].items())
        theirs = omp_harvest.by_key.get(task, {})
        # Each harvest run is followed by an OpenMP run of the same number.
        text = ", ".join(f"{r['efficiency']:.3f} vs {theirs[p]['efficiency']:.3f}" for p, r in runs
                         if p in theirs and r.get("efficiency") is not None and theirs[p].get("efficiency") is not None)
        if text:
            rows.append([f"harvest efficiency: gap to OpenMP tasks, {task_name(task)} (reported)",
                         TRANSPORT_NAMES[transport], text, "reported"])
    for provider, transport, size in latency.keys():
        pairs = []
        for p, record in sorted(latency.by_key[(provider, transport, size)].items()):
            base = floor.by_key.get((provider, size), {}).get(p)
            if base and base.get("rtt_us"):
                pairs.append((p, record["sidecore_rtt_us"] / base["rtt_us"]))
        if pairs:
            rows.append([f"C++ client round trip within 1.3x of `fi_pingpong` ({provider}), {size_name(size)}",
                         TRANSPORT_NAMES[transport], per_pass(pairs, 2), verdict(pairs, lambda v: v <= 1.3)])
    # sidecore-bench wake: the worker's CPU time over its idle window, and the round trip of the first
    # task after each idle period (the median of the line's rounds), one value per pass.
    for provider, transport in wake.keys():
        values = wake.values((provider, transport), "idle_cpu_percent")
        window = next((r.get("idle_window_s") for r in wake.by_key[(provider, transport)].values()), "?")
        rows.append([f"an idle adaptive executor under 1% of a core ({provider}; % of one core over {window} s)",
                     TRANSPORT_NAMES[transport], per_pass(values, 3), verdict(values, lambda v: v < 1.0)])
    for provider, transport in wake.keys():
        values = wake.values((provider, transport), "first_task_us")
        idle = next((r.get("idle_ms") for r in wake.by_key[(provider, transport)].values()), "?")
        rows.append([f"the first task after a long idle period starts within 50 µs ({provider}; µs, the median "
                     f"round trip of the first 64 B task after {idle} ms idle, an upper bound on its start)",
                     TRANSPORT_NAMES[transport], per_pass(values, 1), verdict(values, lambda v: v <= 50.0)])
    if not wake.keys():
        rows.append(["an idle adaptive executor under 1% of a core", "", "no committed line (`sidecore-bench wake` "
                     "measures it; this run has no wake line)", "not measured in this run"])
        rows.append(["the first task after a long idle period starts within 50 µs", "", "no committed line",
                     "not measured in this run"])
    w(table(["target", "transport", "measured", "status"], rows))
    w("")

    # --- the runtime's own targets --------------------------------------------------------------------
    w("## Targets of the runtime against raw libfabric")
    w("")
    w(f"From {run_name} ({source('sidecore.jsonl')}), one value per pass.")
    w("")
    rows = []
    for provider, transport, size in latency.keys():
        if size == 64:
            values = latency.values((provider, transport, size), "ratio")
            rows.append([f"64 B round trip within 1.3x of raw libfabric ({provider})", TRANSPORT_NAMES[transport],
                         per_pass(values), verdict(values, lambda v: v <= 1.3)])
    for provider, transport, size in throughput.keys():
        if size == 64:
            key = (provider, transport, size)
            values = throughput.values(key, "tasks_per_s")
            rows.append([f">= 1 000 000 tasks/s of 64 B, one caller to one worker ({provider}); the raw baseline's "
                         "messages/s in brackets", TRANSPORT_NAMES[transport],
                         ", ".join(f"{num(v)} ({num(r.get('raw_msgs_per_s'))})" for (_, v), r in
                                   zip(values, [r for _, r in sorted(throughput.by_key[key].items())])),
                         verdict(values, lambda v: v >= 1e6)])
    for provider, transport, size in bandwidth.keys():
        if size == 64 << 20:
            values = bandwidth.values((provider, transport, size), "ratio")
            rows.append([f"64 MiB input at >= 80% of raw RMA bandwidth ({provider})", TRANSPORT_NAMES[transport],
                         per_pass(values), verdict(values, lambda v: v >= 0.8)])
    if not any(size == 64 << 20 for _, _, size in bandwidth.keys()):
        rows.append(["64 MiB input at >= 80% of raw RMA bandwidth", "", "no committed line at 64 MiB",
                     "not measured in this run"])
    w(table(["target", "transport", "measured", "status"], rows))
    w("")

    # --- the runtime against raw libfabric -------------------------------------------------------------
    w("## The runtime against raw libfabric")
    w("")
    w(f"`sidecore-bench latency`, `throughput` and `bandwidth`, from {run_name} ({source('sidecore.jsonl')}): "
      "Sidecore's C++ client and executor next to a raw libfabric endpoint built from the same fabric "
      "classes, between the same two processes, rounds alternated. Each cell: Sidecore / raw (ratio), one per "
      "pass. Over rings the raw side is still libfabric: the ratio then says what the rings save over the "
      "provider, not a runtime's overhead.")
    w("")
    rows = []
    for name, passes, mine, theirs, unit in (("latency", latency, "sidecore_rtt_us", "raw_rtt_us", "µs"),
                                             ("throughput", throughput, "tasks_per_s", "raw_msgs_per_s", "/s"),
                                             ("bandwidth", bandwidth, "sidecore_gbps", "raw_gbps", "GB/s")):
        for provider, transport, size in passes.keys():
            cells = [f"{num(r.get(mine))} / {num(r.get(theirs))} {unit} ({num(r.get('ratio'))})"
                     for _, r in sorted(passes.by_key[(provider, transport, size)].items())]
            rows.append([f"{name} {size_name(size)}", provider, TRANSPORT_NAMES[transport]] + cells)
    if rows:
        width = max(len(row) for row in rows)
        rows = [row + [""] * (width - len(row)) for row in rows]
        w(table(["figure", "provider", "transport"] + [f"pass {p}" for p in range(1, width - 2)], rows))
    w("")
    providers = sorted({p for p, _, _ in latency.keys()})
    w(f"This run measured the provider{'s' if len(providers) > 1 else ''} {', '.join(providers) or 'none'}. "
      "Other providers (`tcp;ofi_rxm`, `net`) have no committed line here: `bench/compare.sh --provider "
      "'tcp;ofi_rxm'` (or `net`) measures them, in a run of its own (over fabric only: the rings need shm).")
    w("")

    # --- the MPI extension -------------------------------------------------------------------------------
    w("## The MPI extension next to the MPI-only pattern")
    w("")
    w(f"From {run_name} ({source('sidecore.jsonl', 'omp.jsonl')}). Each MPI figure comes from one MPI job "
      "under `sidecore-run` in which Sidecore's side and the MPI-only side alternate rounds; each transport has "
      "jobs of its own, so the MPI-only figures appear once per transport.")
    w("")
    rows = []
    for transport, size in mpi_latency.keys():
        rows.append([f"mpi-latency {size_name(size)}: MPIX / MPI-only µs (ratio)", TRANSPORT_NAMES[transport]] + [
            f"{num(r['mpix_rtt_us'])} / {num(r['mpi_rtt_us'])} ({num(r['ratio'])})"
            for _, r in sorted(mpi_latency.by_key[(transport, size)].items())])
    for transport, size in mpi_throughput.keys():
        rows.append([f"mpi-throughput {size_name(size)}: MPIX / MPI-only tasks/s (ratio)", TRANSPORT_NAMES[transport]] + [
            f"{num(r.get('mpix_tasks_per_s'))} / {num(r.get('mpi_tasks_per_s'))} ({num(r.get('ratio'))})"
            for _, r in sorted(mpi_throughput.by_key[(transport, size)].items())])
    for transport, task in harvest.keys():
        rows.append([f"harvest {task_name(task)}: efficiency Sidecore / MPI-only / OpenMP", TRANSPORT_NAMES[transport]] + [
            f"{num(r.get('efficiency'))} / {num(r.get('mpi_only_efficiency'))} / "
            f"{num(omp_harvest.by_key.get(task, {}).get(p, {}).get('efficiency'))}"
            for p, r in sorted(harvest.by_key[(transport, task)].items())])
    if rows:
        width = max(len(row) for row in rows)
        rows = [row + [""] * (width - len(row)) for row in rows]
        w(table(["figure", "transport"] + [f"pass {p}" for p in range(1, width - 1)], rows))
        w("")
        w("Harvest passes are runs: in each run `sidecore-bench harvest` ran once per transport and a "
          "`sidecore-bench-omp` run followed, and the OpenMP figure in a cell is that run's (the same in both "
          "transports' rows).")
    else:
        w("No MPI figure in this run.")
    w("")

    # --- soak ------------------------------------------------------------------------------------------------
    w("## Soak")
    w("")
    if soak:
        w(f"`sidecore-bench soak`, from {run_name} ({source('soak.jsonl')}), every line:")
        w("")
        w(table(["line", "tasks", "callers", "max bytes", "seconds", "tasks/s", "bytes checked", "lost",
                 "duplicated", "corrupted", "failed", "RSS start → end (KiB)", "peak", "growth"],
                [[r["_line"], num(r.get("tasks")), r.get("callers"), size_name(r.get("max_bytes", 0)),
                  num(r.get("seconds")), num(r.get("tasks_per_s")), num(r.get("bytes_verified")), r.get("lost"),
                  r.get("duplicated"), r.get("corrupted"), r.get("failed"),
                  f"{num(r.get('rss_start_kib'))} → {num(r.get('rss_end_kib'))}", num(r.get("rss_peak_kib")),
                  num(r.get("rss_growth_kib"))] for r in soak]))
    else:
        w("No committed soak line (`soak.jsonl`) in this run.")
    w("")

    # --- cross-node --------------------------------------------------------------------------------------------
    w("## Between two simulated nodes")
    w("")
    if cross:
        w("`bench/cross-node.sh` (`sidecore-bench latency` with its server child in another network namespace), "
          f"every line of {source('cross-node.jsonl')}, a file of its own: its lines carry no date or commit, "
          "so they are not part of the run above. Sidecore / raw µs (ratio):")
        w("")
        w(table(["line", "provider", "payload", "Sidecore / raw µs (ratio)"],
                [[r["_line"], r.get("provider"), size_name(r.get("bytes", 0)),
                  f"{num(r.get('sidecore_rtt_us'))} / {num(r.get('raw_rtt_us'))} ({num(r.get('ratio'))})"]
                 for r in cross]))
    else:
        w("No committed cross-node line.")
    w("")
    w("How a pool's cost grows with nodes and ranks: [scaling.md](scaling.md) (`bench/results/scaling.jsonl`). "
      "A Slurm step's first task with and without `--offload-lib`: [benchmarks.md](benchmarks.md) "
      "(`bench/results/first-task.jsonl`).")
    w("")

    kept = ""
    if os.path.exists(args.page):
        previous = open(args.page).read()
        if KEPT_MARKER in previous:
            kept = "\n" + previous[previous.index(KEPT_MARKER):]
    with open(args.page, "w") as stream:
        stream.write("\n".join(out) + kept)
    print(f"performance: wrote {args.page}", file=sys.stderr)


if __name__ == "__main__":
    main()
