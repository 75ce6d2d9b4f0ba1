// The MPI subcommands (harvest, mpi-latency, mpi-throughput): each starts an executor and an MPI job with
// `sidecore-run --cores ... -- mpirun -n R ... sidecore-bench-mpi ...`, forwards the job's result
// lines as JSON on stdout and everything else it prints to stderr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace sidecore::bench {

enum class MpiBenchKind { harvest, mpi_latency, mpi_throughput };

struct MpiBenchOptions {
  MpiBenchKind kind = MpiBenchKind::harvest;
  // harvest
  std::vector<uint64_t> task_us;   // task lengths, one JSON line each
  uint64_t tasks = 0;              // tasks per run; 0: about `seconds` of work per rank alone
  double seconds = 2.0;            // with tasks == 0
  unsigned ranks = 1;              // MPI ranks of the task farm
  unsigned window_per_worker = 4;  // offloaded tasks in flight per worker (of a rank's share)
  // mpi-latency, mpi-throughput
  std::vector<size_t> bytes;  // message, echo and task sizes, one JSON line each
  uint64_t iterations = 0;    // round trips (tasks) per round and side; 0: 2000 (20000)
  unsigned window = 64;       // mpi-throughput: tasks in flight
  // all
  long quiesce_us = 3000;            // pause after each MPIX round (the worker's spin window + margin)
  unsigned rounds = 3;               // harvest: runs of each kind; the others: rounds of each side
  std::string rank_cpus;             // CPU of each rank, cycled; empty: the subcommand's default
  std::string executor_cores = "1";  // sidecore-run --cores
  std::string library;               // bench function library; empty: found next to the binary
  std::string mpirun = SIDECORE_BENCH_MPIRUN;
  std::string sidecore_run;        // empty: next to the binary or in the build tree, else PATH
  std::string transport = "auto";  // the pool's sidecore_transport: auto (node-local rings) or fabric
  bool verbose = false;
};

// Runs the subcommand; returns the exit status. Errors are printed as one line on stderr.
int run_mpi_bench(const MpiBenchOptions& options, const char* program);

// The three subcommands on the bench's command line (mpi_command.cpp). The object must stay where it
// is between add_to() and run(): the options are bound to its fields.
class MpiCommands {
 public:
  void add_to(CLI::App& app);
  // True when the command line chose one of them.
  bool selected() const;
  // Runs the chosen one; returns the exit status.
  int run(const char* program);

 private:
  MpiBenchOptions options_;
  std::vector<std::string> bytes_text_;
  CLI::App* harvest_ = nullptr;
  CLI::App* latency_ = nullptr;
  CLI::App* throughput_ = nullptr;
};

}  // namespace sidecore::bench
