// sidecore-bench soak: a long run that checks correctness and memory rather than speed. One real
// executor (sidecore-executor, the bench function library preloaded) serves C caller processes
// (the bench re-executed as the hidden `soak-caller` subcommand), which share N tasks of function
// `soak` with random input and output sizes. Every input byte is checked by the function, every
// output byte and size by its caller, every task id must complete exactly once, and the executor's
// resident memory is sampled throughout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace sidecore::bench {

struct SoakOptions {
  uint64_t tasks = 1000000;            // tasks in all, split over the callers
  unsigned callers = 4;                // caller processes, each with its own sidecore::Client
  size_t max_bytes = size_t{1} << 20;  // largest input and output of a task
  std::string provider = "shm";
  uint64_t seed = 0;                 // sizes and byte patterns; 0: a random one (printed)
  std::string executor_cores = "1";  // sidecore-executor --cores
  unsigned window = 16;              // tasks each caller keeps in flight
  std::string library;               // bench function library; empty: found next to the binary
  std::string executor;              // sidecore-executor; empty: next to the binary or in the build tree
  bool verbose = false;
};

// What one caller process does: the tasks [first, first + count), after a warm-up.
struct SoakCallerOptions {
  unsigned index = 0;
  uint64_t first = 0;
  uint64_t count = 0;
  size_t max_bytes = 0;
  uint64_t seed = 0;
  unsigned window = 16;
  std::string library;
  std::string cpus;  // affinity of the caller (a cpulist); empty: unchanged
  bool verbose = false;
};

// The `soak` subcommand and its hidden `soak-caller` child, registered on the bench's CLI. The
// object must stay where it is between add_to() and run(): the options are bound to its fields.
class SoakCommand {
 public:
  void add_to(CLI::App& app);
  // True when the command line chose `soak` or `soak-caller`.
  bool selected() const;
  // Runs the chosen one; returns the exit status.
  int run(const char* program);

 private:
  SoakOptions options_;
  SoakCallerOptions caller_;
  std::string max_bytes_text_ = "1M";
  CLI::App* soak_ = nullptr;
  CLI::App* soak_caller_ = nullptr;
};

int run_soak(const SoakOptions& options, const char* program);
int run_soak_caller(const SoakCallerOptions& options);

}  // namespace sidecore::bench
