#include "executor.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "fabric/fabric.hpp"
#include "log.hpp"
#include "protocol.hpp"
#include "token.hpp"

namespace sidecore {

void Executor::check(const ExecutorConfig& config) {
  if (config.cores.empty()) throw std::invalid_argument("executor needs at least one core");
  if (config.cores.size() > ExecutorCard::kMaxWorkers) {
    throw std::invalid_argument(fmt::format("executor supports at most {} cores", ExecutorCard::kMaxWorkers));
  }
  const CoreSet online = CoreSet::online();
  if (auto missing = config.cores.minus(online); !missing.empty()) {
    throw std::invalid_argument(fmt::format("cores {} do not exist on this machine (it has {})", missing.to_string(),
                                            online.to_string()));
  }
  if (config.token.empty() || config.token.size() > protocol::kMaxTokenBytes) {
    throw std::invalid_argument(
        fmt::format("the token (SIDECORE_TOKEN) must be 1 to {} bytes long", protocol::kMaxTokenBytes));
  }
}

Executor::Executor(ExecutorConfig config)
    : config_(std::move(config)), loader_(config_.part ? config_.part->shared : nullptr) {
  check(config_);
  if (config_.part && (config_.part->shared == nullptr || config_.cores.size() != 1)) {
    throw std::invalid_argument("a worker process serves one core and needs the executor's shared state");
  }
  auto fabric = fabric::Fabric::open(config_.provider);
  card_.executor_id = config_.part ? config_.part->executor_id : generate_id();
  card_.host = local_host_name();
  card_.pid = getpid();
  card_.provider = config_.provider;
  // Probe whether the provider's queues have a descriptor to sleep on; shm's do not.
  const bool needs_doorbell = [&] {
    auto domain = std::make_shared<fabric::Domain>(fabric);
    fabric::CompletionQueue probe(domain, 16, true);
    return probe.wait_fd() < 0;
  }();
  if (needs_doorbell && config_.part) {
    if (config_.part->doorbell.empty()) throw std::runtime_error("provider " + config_.provider + " needs a doorbell");
    card_.doorbell = config_.part->doorbell;
    doorbell_ = Doorbell::open(card_.doorbell, config_.part->workers);
    shared_.doorbell = &doorbell_;
  } else if (needs_doorbell) {
    card_.doorbell = "/sidecore-" + card_.executor_id;
    doorbell_ = Doorbell::create(card_.doorbell, static_cast<unsigned>(config_.cores.size()));
    shared_.doorbell = &doorbell_;
  }
  // Workers that sleep on the doorbell also serve callers on this host through rings: a caller
  // rings the doorbell after writing a task there as after sending one.
  card_.rings = needs_doorbell;
  if (config_.remote_provider == config_.provider) config_.remote_provider.clear();
  // shm reaches only this host, where callers watch the pid; other providers get a liveness port.
  // (A worker process leaves that to its supervisor, which outlives it.)
  if (!config_.part && (config_.provider != "shm" || !config_.remote_provider.empty())) {
    liveness_ = std::make_unique<LivenessListener>(config_.token);
    liveness_->run_in_thread();
    card_.watch = liveness_->port();
  }
  if (config_.part) {
    WorkerSlot& slot = config_.part->shared->slot(config_.part->index);
    shared_.deadline = &slot.deadline_ns[0];
    shared_.stats = &slot.stats[0];
    remote_shared_.deadline = &slot.deadline_ns[1];
    remote_shared_.stats = &slot.stats[1];
  }
  shared_.token = config_.token;
  shared_.loader = &loader_;
  for (const auto& library : config_.preload) {
    if (auto error = loader_.preload(library); !error.empty()) throw std::runtime_error(error);
  }
  // One worker per core on `on`; their addresses, in core order, go into the card.
  auto add_workers = [&](const std::shared_ptr<fabric::Fabric>& on, WorkerShared& shared,
                         const WorkerOptions& options, std::vector<std::string>& addresses) {
    unsigned index = config_.part ? config_.part->index : 0;
    for (int core : config_.cores.cores()) {
      workers_.push_back(std::make_unique<Worker>(index++, core, on, shared, options));
      addresses.push_back(workers_.back()->address());
    }
  };
  add_workers(fabric, shared_, config_.worker, card_.worker_addresses);
  if (!config_.remote_provider.empty()) {
    remote_shared_.token = config_.token;
    remote_shared_.loader = &loader_;
    // Two workers that both busy-poll one core would each hold it for whole time slices: the
    // remote ones spin only for the adaptive window, then sleep on their queue's descriptor.
    WorkerOptions remote_options = config_.worker;
    if (remote_options.poll == PollMode::hot) remote_options.poll = PollMode::adaptive;
    add_workers(fabric::Fabric::open(config_.remote_provider), remote_shared_, remote_options, card_.remote_addresses);
    card_.remote_provider = config_.remote_provider;
  }
  // A worker process says this for its one core at debug level: its supervisor speaks for the executor.
  logger("sidecore.exec")->log(config_.part ? spdlog::level::debug : spdlog::level::info,
                               "executor {} on cores {} provider {}{} poll {} spin {} us, {} worker(s)",
                                card_.executor_id, config_.cores.to_string(), config_.provider,
                                config_.remote_provider.empty() ? "" : " (remote callers: " + config_.remote_provider + ")",
                                to_string(config_.worker.poll), config_.worker.spin_window.count(), workers());
}

Executor::~Executor() { stop(); }

void Executor::start() {
  started_ = std::chrono::steady_clock::now();
  for (auto& worker : workers_) threads_.emplace_back([w = worker.get()] { w->run(); });
}

bool Executor::drain(std::chrono::milliseconds limit) {
  if (threads_.empty()) return true;
  const auto began = std::chrono::steady_clock::now();
  shared_.draining.store(true);
  remote_shared_.draining.store(true);
  for (auto& worker : workers_) worker->wake();
  const auto all_drained = [&] {
    return std::all_of(workers_.begin(), workers_.end(), [](const auto& worker) { return worker->drained(); });
  };
  while (!all_drained() && std::chrono::steady_clock::now() - began < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool drained = all_drained();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
  if (drained) {
    logger("sidecore.exec")->debug("drained in {} ms", took.count());
  } else {
    logger("sidecore.exec")
        ->warn("still busy after draining for {} ms: stopping anyway (tasks in flight end with "
               "EXECUTOR_LOST)",
               took.count());
  }
  return drained;
}

void Executor::stop() {
  if (threads_.empty()) return;
  shared_.stop.store(true);
  remote_shared_.stop.store(true);
  for (auto& worker : workers_) worker->wake();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  stopped_ = std::chrono::steady_clock::now();
}

StatsSnapshot Executor::stats() const {
  StatsSnapshot total;
  for (const auto& worker : workers_) total += worker->stats().snapshot();
  return total;
}

double Executor::running_seconds() const {
  if (started_ == std::chrono::steady_clock::time_point{}) return 0.0;
  const auto end = threads_.empty() && stopped_ != std::chrono::steady_clock::time_point{}
                       ? stopped_
                       : std::chrono::steady_clock::now();
  return std::chrono::duration<double>(end - started_).count();
}

}  // namespace sidecore
