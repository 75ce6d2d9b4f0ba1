// The MPI subcommands of sidecore-bench on its command line: harvest, mpi-latency, mpi-throughput.
// Each runs one MPI job (mpi_launch.cpp); what the job measures is in bench/mpi/, a file each.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mpi_launch.hpp"
#include "options.hpp"

namespace sidecore::bench {

void MpiCommands::add_to(CLI::App& app) {
  MpiBenchOptions& mpi = options_;
  harvest_ = app.add_subcommand(
      "harvest",
      "Task farm of busy-spin tasks (function 'spin_us', T us of wall-clock and CPU time each), run twice in one MPI "
      "job: the ranks alone, then the ranks keeping a window of tasks offloaded with MPIX_Offload_submit to the "
      "executor on the idle cores while computing tasks themselves. speedup = time alone / time with executors; "
      "efficiency = speedup / ((ranks + workers) / ranks). In the same job, in alternating rounds, the same farm the "
      "MPI-only way (a twin rank per rank, one worker rank per executor worker that MPI_Recv's tasks and MPI_Send's "
      "the results): mpi_only_speedup and mpi_only_efficiency.");
  harvest_->add_option("--task-us", mpi.task_us, "task lengths in microseconds, repeatable or comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}))
      ->default_str("10,50,1000");
  harvest_
      ->add_option("--tasks", mpi.tasks, "tasks per run, split over the ranks (0: --seconds of work per rank alone)")
      ->capture_default_str();
  harvest_
      ->add_option("--seconds", mpi.seconds,
                   "with --tasks 0: seconds each rank computes alone (the run with "
                   "executors takes about (ranks / (ranks + workers)) of it)")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();
  harvest_
      ->add_option("--rounds", mpi.rounds,
                   "runs of each kind per task length, alternated; the speedup is the "
                   "median of the per-round ones")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  harvest_->add_option("--ranks", mpi.ranks, "MPI ranks of each farm")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  harvest_
      ->add_option("--window-per-worker", mpi.window_per_worker,
                   "offloaded tasks each rank keeps in flight, per worker of its share of the pool")
      ->check(CLI::Range(1u, 64u))
      ->capture_default_str();
  harvest_->add_option("--rank-cpus", mpi.rank_cpus,
                       "CPU of each farm rank, comma-separated, cycled (default: the CPUs the executor leaves idle); "
                       "the MPI-only worker ranks run on the executor's CPUs");

  latency_ = app.add_subcommand(
      "mpi-latency",
      "Median round trip of MPIX_Offload_submit of function 'echo' (N bytes in and out) plus MPI_Wait, next to the "
      "MPI-only round trip: MPI_Send of N bytes to an echo rank on the executor's CPU, which MPI_Recv's and MPI_Send's "
      "them back, and MPI_Recv. Three ranks: 0 (MPI-only caller) and 2 (MPIX caller, the only one with a pool) on the "
      "first idle CPU, 1 (echo) on the executor's; whoever is not measuring sleeps in sem_wait.");
  latency_->add_option("--iterations", mpi.iterations, "round trips per round and side (plus 10 % warm-up)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}))
      ->default_str("2000");

  throughput_ = app.add_subcommand(
      "mpi-throughput",
      "MPIX echo tasks per second (function 'echo', N bytes in and out, --window tasks in flight through "
      "MPIX_Offload_submit, the oldest waited for with MPI_Wait and its slot reused) next to the MPI-only pattern's "
      "(the same window of MPI_Irecv + MPI_Isend to a worker rank on the executor's CPU, which MPI_Recv's each task, "
      "runs 'echo' and MPI_Send's the result), in alternating rounds of one job. Three ranks as in mpi-latency. "
      "Rates sampled every 1/20 of a round, the first of each round left out; medians. ratio = MPIX / MPI-only.");
  throughput_->add_option("--window", mpi.window, "tasks in flight, on both sides")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  throughput_->add_option("--iterations", mpi.iterations, "tasks per round and side (plus a warm-up round of a tenth)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000000}))
      ->default_str("20000");

  for (CLI::App* command : {latency_, throughput_}) {
    command->add_option("--bytes", bytes_text_, "sizes in bytes, repeatable or comma-separated; K, M, G suffixes")
        ->delimiter(',')
        ->default_str("64");
    command->add_option("--rounds", mpi.rounds, "rounds of each side, alternated")
        ->check(CLI::Range(1u, 100000u))
        ->default_str("20");
    command->add_option("--rank-cpus", mpi.rank_cpus,
                        "CPUs of ranks 0, 1, 2, comma-separated (default: first idle CPU, first executor core, "
                        "first idle CPU)");
  }
  for (CLI::App* command : {harvest_, latency_, throughput_}) {
    command
        ->add_option("--quiesce-us", mpi.quiesce_us,
                     "pause after each run with the executor, so the worker's adaptive spin window (1000 us) runs "
                     "out before an MPI-only rank shares its CPU")
        ->check(CLI::Range(0L, 1000000L))
        ->capture_default_str();
    command->add_option("--executor-cores", mpi.executor_cores, "CPUs of the executor's workers (sidecore-run --cores)")
        ->capture_default_str();
    command->add_option("--library", mpi.library,
                        "bench function library (default: libsidecore_bench_functions.so next to the binary)");
    command->add_option("--mpirun", mpi.mpirun, "mpirun to start the job with")->capture_default_str();
    command->add_option("--sidecore-run", mpi.sidecore_run,
                        "sidecore-run to start the executor with (default: next to the binary or in the build tree)");
    command
        ->add_option("--transport", mpi.transport,
                     "how the pool reaches the executor on this node: auto (its node-local rings) or fabric "
                     "(libfabric shm); the pool's sidecore_transport")
        ->check(CLI::IsMember({"auto", "fabric"}))
        ->capture_default_str();
    command->add_flag("-v,--verbose", mpi.verbose,
                      "per-round details, the command line and the executor's summary on stderr");
  }
}

bool MpiCommands::selected() const {
  return (harvest_ != nullptr && harvest_->parsed()) || (latency_ != nullptr && latency_->parsed()) ||
         (throughput_ != nullptr && throughput_->parsed());
}

int MpiCommands::run(const char* program) {
  if (harvest_->parsed()) {
    options_.kind = MpiBenchKind::harvest;
    if (options_.task_us.empty()) options_.task_us = {10, 50, 1000};
  } else {
    CLI::App* command = latency_->parsed() ? latency_ : throughput_;
    options_.kind = latency_->parsed() ? MpiBenchKind::mpi_latency : MpiBenchKind::mpi_throughput;
    if (command->get_option("--rounds")->count() == 0) options_.rounds = 20;
    if (bytes_text_.empty()) bytes_text_.push_back("64");
    for (const auto& text : bytes_text_) {
      std::string error;
      const auto bytes = parse_byte_count(text, error);
      if (!bytes) {
        std::fprintf(stderr, "sidecore-bench: error: --bytes %s\n", error.c_str());
        return 2;
      }
      options_.bytes.push_back(*bytes);
    }
  }
  setenv("SIDECORE_LOG_LEVEL", options_.verbose ? "info" : "warn", 0);
  return run_mpi_bench(options_, program);
}

}  // namespace sidecore::bench
