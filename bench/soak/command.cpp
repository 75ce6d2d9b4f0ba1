// The `soak` subcommand and its hidden `soak-caller` child on sidecore-bench's command line.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "log.hpp"
#include "options.hpp"
#include "soak/soak.hpp"

namespace sidecore::bench {

void SoakCommand::add_to(CLI::App& app) {
  soak_ = app.add_subcommand(
      "soak",
      "Correctness and memory over a long run: one executor (sidecore-executor, the bench function library "
      "preloaded) and --callers caller processes that share --tasks tasks of function 'soak' with random input and "
      "output sizes (most small, a few up to --max-bytes). The function checks every input byte; each caller checks "
      "every output byte and size, and that every task completed exactly once. The executor's VmRSS is sampled after "
      "a warm-up, every 100 ms and at the end. Prints one JSON object; exits non-zero if any task was lost, "
      "duplicated, corrupted or failed.");
  soak_->add_option("--tasks", options_.tasks, "tasks in all, split evenly over the callers")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
      ->capture_default_str();
  soak_->add_option("--callers", options_.callers, "caller processes, each with its own sidecore::Client")
      ->check(CLI::Range(1u, 64u))
      ->capture_default_str();
  soak_->add_option("--max-bytes", max_bytes_text_, "largest input and output of a task; K, M, G suffixes")
      ->capture_default_str();
  soak_->add_option("--provider", options_.provider, "libfabric provider: shm, tcp;ofi_rxm or net")
      ->capture_default_str();
  soak_->add_option("--seed", options_.seed, "seed of the sizes and byte patterns; 0: a random one (printed)")
      ->capture_default_str();
  soak_
      ->add_option("--executor-cores", options_.executor_cores,
                   "CPUs of the executor's workers (sidecore-executor --cores); the callers run on the others")
      ->capture_default_str();
  soak_->add_option("--window", options_.window, "tasks each caller keeps in flight")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  soak_->add_option("--library", options_.library,
                    "bench function library (default: libsidecore_bench_functions.so next to the binary)");
  soak_->add_option("--executor", options_.executor,
                    "sidecore-executor to start (default: next to the binary or in the build tree, else PATH)");
  soak_->add_flag("-v,--verbose", options_.verbose,
                  "progress every 10 s, per-caller times, the executor's memory breakdown and summary on stderr");

  // A caller process: re-executed by the bench itself, hidden from --help.
  soak_caller_ = app.add_subcommand("soak-caller", "internal: a caller process of soak")->group("");
  soak_caller_->add_option("--index", caller_.index)->required();
  soak_caller_->add_option("--first", caller_.first)->required();
  soak_caller_->add_option("--count", caller_.count)->required();
  soak_caller_->add_option("--max-bytes", caller_.max_bytes)->required();
  soak_caller_->add_option("--seed", caller_.seed)->required();
  soak_caller_->add_option("--window", caller_.window)->required()->check(CLI::Range(1u, 1024u));
  soak_caller_->add_option("--library", caller_.library)->required();
  soak_caller_->add_option("--cpus", caller_.cpus);
  soak_caller_->add_flag("-v,--verbose", caller_.verbose);
}

bool SoakCommand::selected() const {
  return (soak_ != nullptr && soak_->parsed()) || (soak_caller_ != nullptr && soak_caller_->parsed());
}

int SoakCommand::run(const char* program) {
  if (soak_caller_->parsed()) {
    sidecore::set_log_level_from_env();
    return run_soak_caller(caller_);
  }
  std::string error;
  const auto max_bytes = parse_byte_count(max_bytes_text_, error);
  if (!max_bytes) {
    std::fprintf(stderr, "sidecore-bench: error: --max-bytes %s\n", error.c_str());
    return 2;
  }
  options_.max_bytes = *max_bytes;
  // Quiet libraries unless asked; the executor and the callers inherit the level.
  setenv("SIDECORE_LOG_LEVEL", options_.verbose ? "info" : "warn", 0);
  sidecore::set_log_level_from_env();
  return run_soak(options_, program);
}

}  // namespace sidecore::bench
