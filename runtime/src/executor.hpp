// An executor: one Worker per core, the shared function table, the doorbell and the card that
// tells callers how to reach them.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "card.hpp"
#include "core_set.hpp"
#include "doorbell.hpp"
#include "function_loader.hpp"
#include "liveness_listener.hpp"
#include "service_stats.hpp"
#include "worker.hpp"

namespace sidecore {

struct ExecutorConfig {
  CoreSet cores;                        // one worker pinned to each
  std::string provider = "shm";         // libfabric provider for every worker endpoint
  WorkerOptions worker;                 // poll mode, spin window, credits
  std::string token;                    // callers must present it
  std::vector<std::string> preload;     // libraries loaded at start
};

class Executor {
 public:
  // Opens every worker's fabric objects and loads the preloaded libraries; throws on any failure
  // (FabricError, std::system_error, std::runtime_error), before any thread starts.
  explicit Executor(ExecutorConfig config);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Starts the worker threads.
  void start();
  // Asks the workers to stop and joins them. Idempotent.
  void stop();

  const ExecutorCard& card() const noexcept { return card_; }
  std::string card_text() const { return format_card(card_); }
  StatsSnapshot stats() const;
  size_t workers() const noexcept { return workers_.size(); }
  double running_seconds() const;

 private:
  ExecutorConfig config_;
  FunctionLoader loader_;
  Doorbell doorbell_;
  std::unique_ptr<LivenessListener> liveness_;  // for callers on other hosts (not with shm)
  WorkerShared shared_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  ExecutorCard card_;
  std::chrono::steady_clock::time_point started_{};
  std::chrono::steady_clock::time_point stopped_{};
};

}  // namespace sidecore
