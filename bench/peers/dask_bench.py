#!/usr/bin/python3
"""The Dask distributed peer of bench/compare.sh: what a Python user would pick to put an idle core
to work. Starts a local scheduler and one worker process (one thread) pinned to --worker-cpu, pins
this process (the client, the "application") to --client-cpu, and measures the three task figures
that sidecore-bench measures for Sidecore:

  dask-latency     median round trip of client.submit(echo, N bytes).result()
  dask-throughput  tasks per second with --window echo tasks in flight (as_completed, results gathered)
  dask-harvest     the task farm: the client computes spin_us tasks itself while keeping
                   --window-per-worker tasks submitted to the worker; speedup over the client alone,
                   efficiency = speedup / 2 (one client, one worker)

One JSON object per size or task length on stdout; progress and the cluster's logs on stderr.
Needs Debian's python3-distributed (run with /usr/bin/python3) and the bench function library
(--library) for spin_us, the same C function the other systems run.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def parse_list(text):
    return [int(item) for item in text.split(",") if item]


def log(message):
    print(f"dask-bench: {message}", file=sys.stderr, flush=True)


def pinned(cpu):
    return lambda: os.sched_setaffinity(0, {cpu})


class LocalCluster:
    """A scheduler process and one worker process (one thread, no nanny), both on `cpu`: the idle
    core, as Sidecore's executor gets it. Their logs go to files, shown on failure."""

    def __init__(self, cpu, folder, verbose):
        self.folder = folder
        self.verbose = verbose
        self.scheduler_file = os.path.join(folder, "scheduler.json")
        self.processes = []
        common = ["--no-dashboard", "--scheduler-file", self.scheduler_file]
        self._start("scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0"] + common, cpu)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.scheduler_file):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the Dask scheduler did not start within 60 s")
            time.sleep(0.05)
        self._start("worker", [sys.executable, "-m", "distributed.cli.dask_worker", "--nworkers", "1",
                               "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1"] + common, cpu)

    def _start(self, name, command, cpu):
        output = open(os.path.join(self.folder, f"{name}.log"), "w")
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, preexec_fn=pinned(cpu),
                                   env=os.environ.copy())
        self.processes.append((name, process, output))

    def _check_alive(self):
        for name, process, _ in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"the Dask {name} exited with status {process.returncode}:\n{self.logs()}")

    def logs(self):
        text = ""
        for name, _, output in self.processes:
            if not output.closed:
                output.flush()
            with open(output.name) as stream:
                text += f"--- {name} ---\n{stream.read()}"
        return text

    def stop(self):
        for _, process, _ in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process, output in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            output.close()
        if self.verbose:
            sys.stderr.write(self.logs())


def latency(client, tasks, sizes, iterations, rounds):
    for size in sizes:
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        for _ in range(max(1, iterations // 10)):  # warm-up: connections, first serializations
            client.submit(tasks.echo, payload, pure=False).result(timeout=60)
        samples = []
        for _ in range(rounds):
            for _ in range(iterations):
                start = time.perf_counter()
                result = client.submit(tasks.echo, payload, pure=False).result(timeout=60)
                samples.append(time.perf_counter() - start)
                if result != payload:
                    raise RuntimeError("the echo task returned different bytes")
        emit({"bench": "dask-latency", "bytes": size, "rtt_us": round(statistics.median(samples) * 1e6, 3)})


def throughput_round(client, tasks, payload, window, count):
    """`count` echo tasks with `window` in flight; results gathered as they complete. Rates sampled
    every 1/20 of the tasks, the first sample (window filling) left out."""
    from distributed import as_completed
    every = max(1, count // 20)
    pending = as_completed(with_results=True)
    issued = 0
    for _ in range(min(window, count)):
        pending.add(client.submit(tasks.echo, payload, pure=False))
        issued += 1
    done = 0
    rates = []
    last = time.perf_counter()
    for _, result in pending:
        if result != payload:
            raise RuntimeError("the echo task returned different bytes")
        done += 1
        if issued < count:
            pending.add(client.submit(tasks.echo, payload, pure=False))
            issued += 1
        if done % every == 0:
            now = time.perf_counter()
            rates.append(every / (now - last))
            last = now
    return rates[1:]


def throughput(client, tasks, sizes, window, count, rounds):
    for size in sizes:
        payload = bytes(size)
        throughput_round(client, tasks, payload, window, max(window, count // 10))
        rates = []
        for _ in range(rounds):
            rates += throughput_round(client, tasks, payload, window, count)
        emit({"bench": "dask-throughput", "bytes": size, "window": window,
              "tasks_per_s": round(statistics.median(rates))})


def farm_alone(tasks, us, count):
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(count):
        tasks.spin_us(us)
    seconds = time.perf_counter() - start
    return seconds, (time.process_time() - cpu) / seconds, 0


def farm_harvest(client, tasks, us, count, window):
    """TaskFarm::harvest of bench/mpi/task_farm.hpp with Dask futures: keep up to `window` tasks
    submitted, compute one task between refills, collect finished ones with Future.done() (the
    client's event loop thread receives them); near the end offload only the worker's share
    (1/2) of what is left, so that both sides finish together."""
    from distributed import wait
    share = 1.0  # workers per client
    unassigned, in_flight, offloaded = count, set(), 0
    cpu = time.process_time()
    start = time.perf_counter()
    while unassigned or in_flight:
        while (unassigned and len(in_flight) < window
               and len(in_flight) * (1.0 + share) < (unassigned + len(in_flight)) * share):
            in_flight.add(client.submit(tasks.spin_us, us, pure=False))
            unassigned -= 1
            offloaded += 1
        if unassigned:
            tasks.spin_us(us)
            unassigned -= 1
        if not in_flight:
            continue
        if unassigned:
            finished = {future for future in in_flight if future.done()}
        else:
            finished = wait(in_flight, timeout=60, return_when="FIRST_COMPLETED").done
        for future in finished:
            if future.status != "finished":
                raise RuntimeError(f"a spin_us task failed: {future.exception()}")
        in_flight -= finished
    seconds = time.perf_counter() - start
    return seconds, (time.process_time() - cpu) / seconds, offloaded


def harvest(client, tasks, task_us, seconds, rounds, window_per_worker, verbose):
    window = window_per_worker  # one worker for one client
    for us in task_us:
        count = max(1, int(seconds * 1e6 / us))
        farm_harvest(client, tasks, us, min(count, max(4, 100000 // us)), window)  # unrecorded warm-up
        speedups, lowest_share = [], 1.0
        for round_number in range(rounds):
            # Alternated, the order swapped every round, as in sidecore-bench harvest.
            if round_number % 2 == 0:
                alone = farm_alone(tasks, us, count)
                harvested = farm_harvest(client, tasks, us, count, window)
            else:
                harvested = farm_harvest(client, tasks, us, count, window)
                alone = farm_alone(tasks, us, count)
            speedups.append(alone[0] / harvested[0])
            lowest_share = min(lowest_share, alone[1], harvested[1])
            if verbose:
                log(f"harvest {us} us round {round_number}: {count} tasks, alone {alone[0]:.4f} s, harvest "
                    f"{harvested[0]:.4f} s ({harvested[2]} offloaded), speedup {speedups[-1]:.4f}; client's CPU "
                    f"share alone {alone[1]:.3f}, harvest {harvested[1]:.3f}")
        if lowest_share < 0.9:
            log(f"warning: harvest {us} us: the client had only {lowest_share * 100:.0f}% of its CPU in one of the "
                "runs: something else ran on it, and the speedup is not the offload's alone")
        speedup = statistics.median(speedups)
        emit({"bench": "dask-harvest", "task_us": us, "ranks": 1, "workers": 1, "speedup": round(speedup, 3),
              "efficiency": round(speedup / 2, 3)})


def emit(result):
    print(json.dumps(result, separators=(",", ":")), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", required=True, help="libsidecore_bench_functions.so (for spin_us)")
    parser.add_argument("--only", default="latency,throughput,harvest", help="figures to measure, comma-separated")
    parser.add_argument("--bytes", default="64", help="latency payload sizes, comma-separated")
    parser.add_argument("--iterations", type=int, default=200, help="latency: round trips per round")
    parser.add_argument("--latency-rounds", type=int, default=5, help="latency: rounds")
    parser.add_argument("--throughput-bytes", default="64", help="throughput: payload sizes")
    parser.add_argument("--window", type=int, default=64, help="throughput: tasks in flight")
    parser.add_argument("--tasks", type=int, default=2000, help="throughput: tasks per round")
    parser.add_argument("--throughput-rounds", type=int, default=5, help="throughput: rounds")
    parser.add_argument("--task-us", default="10,50,1000,10000", help="harvest: task lengths in microseconds")
    parser.add_argument("--seconds", type=float, default=2.0, help="harvest: seconds of work alone per run")
    parser.add_argument("--rounds", type=int, default=3, help="harvest: runs of each kind per task length")
    parser.add_argument("--window-per-worker", type=int, default=4, help="harvest: tasks in flight per worker")
    parser.add_argument("--client-cpu", type=int, default=0, help="CPU of this process (the client)")
    parser.add_argument("--worker-cpu", type=int, default=1, help="CPU of the scheduler and the worker")
    parser.add_argument("-v", "--verbose", action="store_true", help="per-round details and the cluster's logs")
    args = parser.parse_args()
    figures = set(args.only.split(","))
    if not figures <= {"latency", "throughput", "harvest"}:
        parser.error(f"--only: unknown figure in {args.only}")

    library = os.path.abspath(args.library)
    if not os.path.exists(library):
        parser.error(f"--library {library}: no such file")
    os.environ["SIDECORE_BENCH_LIBRARY"] = library
    # The worker imports dask_tasks by name: put this folder on its path.
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")
    sys.path.insert(0, here)
    # Pinned before the client starts its threads, so that they stay on the client's CPU too.
    os.sched_setaffinity(0, {args.client_cpu})
    try:
        from distributed import Client
    except ImportError:
        sys.exit("dask-bench: error: the distributed module is missing: install python3-distributed and run "
                 "with /usr/bin/python3")
    import dask_tasks

    with tempfile.TemporaryDirectory(prefix="sidecore-dask-") as folder:
        cluster = LocalCluster(args.worker_cpu, folder, args.verbose)
        try:
            with Client(scheduler_file=cluster.scheduler_file, timeout="60s") as client:
                client.wait_for_workers(1, timeout=60)
                if "latency" in figures:
                    latency(client, dask_tasks, parse_list(args.bytes), args.iterations, args.latency_rounds)
                if "throughput" in figures:
                    throughput(client, dask_tasks, parse_list(args.throughput_bytes), args.window, args.tasks,
                               args.throughput_rounds)
                if "harvest" in figures:
                    harvest(client, dask_tasks, parse_list(args.task_us), args.seconds, args.rounds,
                            args.window_per_worker, args.verbose)
        except Exception:
            sys.stderr.write(cluster.logs())
            raise
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
