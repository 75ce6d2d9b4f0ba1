// sidecore-bench-mpi: the MPI program behind `sidecore-bench harvest`, `mpi-latency` and
// `mpi-throughput`. The bench starts it under `sidecore-run --cores ... -- mpirun -n R ...`; it can be
// started the same way by hand (see --help), but is not installed on PATH.
//
// It also measures the MPI-only peer that bench/compare.sh puts next to Sidecore on its own: worker
// ranks that MPI_Recv a task, run it and MPI_Send the result (mpi-throughput, mpi-harvest; plain
// mpirun, no executor). `harvest` and `throughput` measure the same pattern again next to Sidecore's,
// in the same job.
//
// Every rank pins itself to its CPU (from --rank-cpus and the launcher's rank variable) before
// MPI_Init, so that MPI's threads and the offload progress thread stay there too. Rank 0 prints
// each result as one line "sidecore-bench-result {json}" on stdout; the bench forwards those as
// plain JSON and everything else to stderr.
//
// One file per subcommand: harvest.cpp, throughput.cpp, latency.cpp; common.hpp holds what they share.
#include <mpi.h>
#include <CLI/CLI.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "mpi/commands.hpp"
#include "mpi/common.hpp"

using namespace sidecore::bench::mpi;

int main(int argc, char** argv) {
  CLI::App app{"sidecore-bench-mpi: the MPI program of `sidecore-bench harvest`, `mpi-latency` and `mpi-throughput`.\n"
               "Run it through those subcommands; by hand:\n"
               "  sidecore-run --cores 1 -- mpirun -n 3 --bind-to none sidecore-bench-mpi harvest --library L "
               "--rank-cpus 0,1,0\n"
               "  sidecore-run --cores 1 -- mpirun -n 3 --bind-to none sidecore-bench-mpi mpi-latency --library L\n"
               "  sidecore-run --cores 1 -- mpirun -n 3 --bind-to none sidecore-bench-mpi throughput --library L "
               "--rank-cpus 0,1,0\n"
               "The MPI-only peer alone (bench/compare.sh runs it; no executor):\n"
               "  mpirun -n 2 --bind-to none sidecore-bench-mpi mpi-harvest --library L --rank-cpus 0,1\n"
               "  mpirun -n 2 --bind-to none sidecore-bench-mpi mpi-throughput --library L --rank-cpus 0,1\n"
               "Results: lines 'sidecore-bench-result {json}' from rank 0 on stdout.",
               "sidecore-bench-mpi"};
  app.require_subcommand(1);
  std::vector<int> rank_cpus;

  // The two task farms, Sidecore's and the MPI-only one, take the same options.
  auto add_farm_options = [&rank_cpus](CLI::App* command, HarvestOptions& farm) {
    command->add_option("--task-us", farm.task_us, "task lengths in microseconds")->delimiter(',');
    command->add_option("--tasks", farm.tasks, "tasks per run (0: --seconds of work per rank alone)");
    command->add_option("--seconds", farm.seconds, "with --tasks 0: seconds of work per rank alone");
    command->add_option("--rounds", farm.rounds, "runs of each kind")->check(CLI::Range(1u, 1000u));
    command->add_option("--window-per-worker", farm.window_per_worker, "tasks in flight per worker")
        ->check(CLI::Range(1u, 64u));
    command->add_option("--worker-ranks", farm.worker_ranks, "MPI-only ranks that serve tasks")
        ->check(CLI::Range(1u, 1024u));
    command->add_option("--library", farm.library, "the bench function library")->required();
    command->add_option("--rank-cpus", rank_cpus, "CPU of each rank (cycled)")->delimiter(',');
    command->add_flag("-v,--verbose", farm.verbose, "per-round details on stderr");
  };
  HarvestOptions harvest;
  CLI::App* harvest_command = app.add_subcommand(
      "harvest", "Sidecore's task farm next to the MPI-only one, in alternating rounds: 2 x R farm ranks and "
                 "--worker-ranks W worker ranks (ranks [0,R) the MPI-only farm, [R,R+W) its workers, [R+W,2R+W) "
                 "Sidecore's farm with the pool)");
  add_farm_options(harvest_command, harvest);
  harvest_command->add_option("--quiesce-us", harvest.quiesce_us, "pause after a run with the executor");

  HarvestOptions peer_harvest;
  CLI::App* peer_harvest_command = app.add_subcommand(
      "mpi-harvest", "the task farm the MPI-only way: the last --worker-ranks ranks MPI_Recv tasks, run them and "
                     "MPI_Send the results");
  add_farm_options(peer_harvest_command, peer_harvest);

  // The two throughput figures, Sidecore's next to the MPI-only one's and the MPI-only one alone.
  auto add_throughput_options = [&rank_cpus](CLI::App* command, ThroughputOptions& throughput) {
    command->add_option("--bytes", throughput.bytes, "sizes in bytes")->delimiter(',');
    command->add_option("--window", throughput.window, "tasks in flight")->check(CLI::Range(1u, 1024u));
    command->add_option("--iterations", throughput.iterations, "tasks per round")
        ->check(CLI::Range(uint64_t{1}, uint64_t{100000000}));
    command->add_option("--rounds", throughput.rounds, "rounds")->check(CLI::Range(1u, 100000u));
    command->add_option("--library", throughput.library, "the bench function library")->required();
    command->add_option("--rank-cpus", rank_cpus, "CPU of each rank (cycled)")->delimiter(',');
    command->add_flag("-v,--verbose", throughput.verbose, "quantiles on stderr");
  };
  ThroughputOptions throughput;
  CLI::App* throughput_command = app.add_subcommand(
      "throughput", "MPIX echo tasks per second next to the MPI-only pattern's, in alternating rounds (3 ranks: "
                    "MPI-only caller, worker rank, MPIX caller)");
  add_throughput_options(throughput_command, throughput);
  throughput_command->add_option("--quiesce-us", throughput.quiesce_us, "pause after an MPIX round");

  ThroughputOptions peer_throughput;
  CLI::App* peer_throughput_command = app.add_subcommand(
      "mpi-throughput",
      "echo tasks per second the MPI-only way, a window in flight from rank 0 to worker rank 1 (2 ranks)");
  add_throughput_options(peer_throughput_command, peer_throughput);

  // How the Sidecore side reaches the executor on this node (pool info key sidecore_transport).
  std::string transport = "auto";
  for (CLI::App* command : {harvest_command, throughput_command}) {
    command->add_option("--transport", transport, "node-local transport of the pool: auto (rings) or fabric")
        ->check(CLI::IsMember({"auto", "fabric"}));
  }

  LatencyOptions latency;
  CLI::App* latency_command = app.add_subcommand("mpi-latency", "MPIX round trip next to the MPI-only one (3 ranks)");
  latency_command->add_option("--bytes", latency.bytes, "sizes in bytes")->delimiter(',');
  latency_command->add_option("--rounds", latency.rounds, "rounds of each side")->check(CLI::Range(1u, 100000u));
  latency_command->add_option("--iterations", latency.iterations, "round trips per round")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}));
  latency_command->add_option("--quiesce-us", latency.quiesce_us, "pause after an MPIX round");
  latency_command->add_option("--library", latency.library, "the bench function library")->required();
  latency_command->add_option("--rank-cpus", rank_cpus, "CPU of each rank (cycled)")->delimiter(',');
  latency_command->add_flag("-v,--verbose", latency.verbose, "per-side details on stderr");
  latency_command->add_option("--transport", transport, "node-local transport of the pool: auto (rings) or fabric")
      ->check(CLI::IsMember({"auto", "fabric"}));
  CLI11_PARSE(app, argc, argv);
  set_offload_transport(transport);

  // Pinned before MPI_Init, so that the threads MPI and the offload library start stay here too.
  if (!rank_cpus.empty()) {
    const int rank = launch_rank();
    if (rank < 0) {
      std::fprintf(stderr, "sidecore-bench-mpi: warning: no launcher rank variable; pinning after MPI_Init\n");
    } else {
      pin_to(rank_cpus[static_cast<size_t>(rank) % rank_cpus.size()]);
    }
  }
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  if (!rank_cpus.empty() && launch_rank() < 0) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    pin_to(rank_cpus[static_cast<size_t>(rank) % rank_cpus.size()]);
  }
  for (const auto* sizes : {&latency.bytes, &peer_throughput.bytes, &throughput.bytes}) {
    if (sizes->empty()) die("--bytes: at least one size");
    for (const uint64_t bytes : *sizes) {
      if (bytes > (uint64_t{1} << 30)) die("--bytes: at most 1 GiB");
    }
  }
  for (const auto* lengths : {&harvest.task_us, &peer_harvest.task_us}) {
    for (const uint64_t us : *lengths) {
      if (us == 0 || us > 10'000'000) die("--task-us: 1 to 10000000");
    }
  }
  int status = 0;
  if (harvest_command->parsed()) {
    status = run_harvest(harvest);
  } else if (peer_harvest_command->parsed()) {
    status = run_peer_harvest(peer_harvest);
  } else if (throughput_command->parsed()) {
    status = run_throughput(throughput);
  } else if (peer_throughput_command->parsed()) {
    status = run_peer_throughput(peer_throughput);
  } else {
    status = run_latency(latency);
  }
  MPI_Finalize();
  return status;
}
