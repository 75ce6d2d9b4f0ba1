// An executor: one Worker per core, the shared function table, the doorbell and the card that
// tells callers how to reach them.
//
// With a remote provider (a step that spans nodes), every core has a second Worker, on that
// provider, for callers on other hosts: node-local callers keep shm's speed, remote ones get a
// provider that crosses the network. The two workers of a core take turns on it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "card.hpp"
#include "core_set.hpp"
#include "doorbell.hpp"
#include "function_loader.hpp"
#include "liveness_listener.hpp"
#include "service_stats.hpp"
#include "shared_state.hpp"
#include "worker.hpp"

namespace sidecore {

struct ExecutorConfig {
  CoreSet cores;                        // one worker pinned to each
  std::string provider = "shm";         // libfabric provider for callers on this host
  std::string remote_provider;          // for callers on other hosts; empty or == provider: none
  WorkerOptions worker;                 // poll mode, spin window, credits
  std::string token;                    // callers must present it
  std::vector<std::string> preload;     // libraries loaded at start

  // Set by a supervisor that runs each worker in a process of its own (supervisor.hpp); this
  // executor is then one of them, serving cores.size() == 1.
  struct Part {
    std::string executor_id;   // the whole executor's
    unsigned index = 0;        // this worker's place among the executor's workers
    unsigned workers = 1;      // how many the executor has
    std::string doorbell;      // the executor's doorbell segment (exists; opened, not created); may be empty
    SharedState* shared = nullptr;
  };
  std::optional<Part> part;
};

// How long a stopping executor drains (Executor::drain) before it stops: within the supervisor's
// grace for its worker processes (3 s, supervisor.cpp) and Slurm's GraceTime for a preempted lease.
inline constexpr std::chrono::milliseconds kDrainLimit{2500};

class Executor {
 public:
  // Opens every worker's fabric objects and loads the preloaded libraries; throws on any failure
  // (FabricError, std::system_error, std::runtime_error), before any thread starts.
  explicit Executor(ExecutorConfig config);
  // The configuration errors the constructor would throw about (cores, token), without opening
  // anything: std::invalid_argument.
  static void check(const ExecutorConfig& config);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Starts the worker threads.
  void start();
  // Drains before a stop (SIGTERM: a lease reclaimed, a step ending): the workers decline new
  // tasks, which their callers send elsewhere, and finish the ones they accepted. Returns once every
  // worker has had nothing to do for a moment, or after `limit`; true when all drained.
  bool drain(std::chrono::milliseconds limit);
  // Asks the workers to stop and joins them. Idempotent.
  void stop();

  const ExecutorCard& card() const noexcept { return card_; }
  std::string card_text() const { return format_card(card_); }
  StatsSnapshot stats() const;
  // Cores served (a core with a remote worker too counts once).
  size_t workers() const noexcept { return config_.cores.size(); }
  double running_seconds() const;

 private:
  ExecutorConfig config_;
  FunctionLoader loader_;
  Doorbell doorbell_;
  std::unique_ptr<LivenessListener> liveness_;  // for callers on other hosts (not with shm)
  WorkerShared shared_;
  WorkerShared remote_shared_;  // the remote workers': same token and functions, no doorbell
  std::vector<std::unique_ptr<Worker>> workers_;  // one per core, then one more per core for remote callers
  std::vector<std::thread> threads_;
  ExecutorCard card_;
  std::chrono::steady_clock::time_point started_{};
  std::chrono::steady_clock::time_point stopped_{};
};

}  // namespace sidecore
