// The MPI subcommands (harvest, mpi-latency): each starts an executor and an MPI job with
// `sidecore-run --cores ... -- mpirun -n R ... sidecore-bench-mpi ...`, forwards the job's result
// lines as JSON on stdout and everything else it prints to stderr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sidecore::bench {

enum class MpiBenchKind { harvest, mpi_latency };

struct MpiBenchOptions {
  MpiBenchKind kind = MpiBenchKind::harvest;
  // harvest
  std::vector<uint64_t> task_us;      // task lengths, one JSON line each
  uint64_t tasks = 0;                 // tasks per run; 0: about `seconds` of work per rank alone
  double seconds = 2.0;               // with tasks == 0
  unsigned ranks = 1;                 // MPI ranks of the task farm
  unsigned window_per_worker = 4;     // offloaded tasks in flight per worker (of a rank's share)
  // mpi-latency
  std::vector<size_t> bytes;          // message and echo sizes, one JSON line each
  uint64_t iterations = 2000;         // round trips per round and side
  long quiesce_us = 3000;             // pause after each MPIX round (the worker's spin window + margin)
  // both
  unsigned rounds = 3;                // harvest: runs of each kind; mpi-latency: rounds of each side
  std::string rank_cpus;              // CPU of each rank, cycled; empty: the subcommand's default
  std::string executor_cores = "1";   // sidecore-run --cores
  std::string library;                // bench function library; empty: found next to the binary
  std::string mpirun = "mpirun";
  std::string sidecore_run;           // empty: next to the binary or in the build tree, else PATH
  bool verbose = false;
};

// Runs the subcommand; returns the exit status. Errors are printed as one line on stderr.
int run_mpi_bench(const MpiBenchOptions& options, const char* program);

}  // namespace sidecore::bench
