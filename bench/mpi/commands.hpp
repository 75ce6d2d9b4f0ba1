// The subcommands of sidecore-bench-mpi, one file each: what each takes, and its entry point (called
// between MPI_Init and MPI_Finalize; returns the exit status).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sidecore::bench::mpi {

// harvest.cpp: `harvest` (Sidecore's task farm next to the MPI-only one, in one job) and
// `mpi-harvest` (the MPI-only one alone, for bench/compare.sh).
struct HarvestOptions {
  std::vector<uint64_t> task_us{10, 50, 1000};
  uint64_t tasks = 0;  // 0: about `seconds` of work per rank alone
  double seconds = 2.0;
  unsigned rounds = 3;
  unsigned window_per_worker = 4;  // tasks offloaded and not completed, per worker of the rank's share
  unsigned worker_ranks = 1;       // MPI-only worker ranks (harvest: as many as the executor has workers)
  long quiesce_us = 3000;          // harvest: after a run with the executor, before the worker ranks run
  std::string library;
  bool verbose = false;
};
int run_harvest(const HarvestOptions& options);
int run_peer_harvest(const HarvestOptions& options);

// throughput.cpp: `throughput` (MPIX tasks/s next to the MPI-only pattern's, in one job; what
// `sidecore-bench mpi-throughput` runs) and `mpi-throughput` (the MPI-only pattern alone, for
// bench/compare.sh).
struct ThroughputOptions {
  std::vector<uint64_t> bytes{64};
  unsigned window = 64;
  uint64_t iterations = 20000;  // tasks per round
  unsigned rounds = 20;
  long quiesce_us = 3000;  // after an MPIX round: the worker's spin window (1000 us) and a margin
  std::string library;
  bool verbose = false;
};
int run_throughput(const ThroughputOptions& options);
int run_peer_throughput(const ThroughputOptions& options);

// latency.cpp: `mpi-latency`.
struct LatencyOptions {
  std::vector<uint64_t> bytes{64};
  unsigned rounds = 20;
  uint64_t iterations = 2000;
  long quiesce_us = 3000;  // after an MPIX round: the worker's spin window (1000 us) and a margin
  std::string library;
  bool verbose = false;
};
int run_latency(const LatencyOptions& options);

}  // namespace sidecore::bench::mpi
