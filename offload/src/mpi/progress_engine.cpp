#include "mpi/progress_engine.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <optional>
#include <string>

#include "fault_injection.hpp"
#include "log.hpp"
#include "mpi/pool.hpp"

namespace sidecore::mpi {
namespace {

// While the application makes MPI calls this often, it is polling: the thread naps this long at a
// time instead of arming its doorbell, so workers need not wake it.
constexpr auto kHookActiveWindow = std::chrono::milliseconds(1);
constexpr auto kSleepTimeout = std::chrono::milliseconds(100);
// After the progress thread failed outside any client: not a busy loop if it keeps failing.
constexpr auto kRetryPause = std::chrono::milliseconds(10);

// Set while the current thread is the application's, running the hook or a blocking MPIX call.
thread_local bool on_application_thread = false;

// Open MPI's progress-callback registration (libopen-pal), looked up at run time so the library
// also loads under other MPIs. Open MPI 4.1 (libopen-pal.so.40) and 5.0 (libopen-pal.so.80, still a
// library of its own in Debian's build) export both with the same signature, int (*)(void).
using OpalCallback = int (*)();
using OpalRegister = int (*)(OpalCallback);

OpalRegister opal_function(const char* name) {
  return reinterpret_cast<OpalRegister>(dlsym(RTLD_DEFAULT, name));
}

void log_once(bool& logged, const char* where, const char* what) noexcept {
  if (logged) return;
  logged = true;
  try {
    logger("sidecore.mpi")->error("{} failed: {} (carrying on; further failures there are not logged)", where, what);
  } catch (...) {
  }
}

}  // namespace

ProgressEngine& ProgressEngine::instance() {
  static ProgressEngine* engine = new ProgressEngine();  // never destroyed: the hook may outlive main
  return *engine;
}

void ProgressEngine::add(Pool* pool) {
  std::lock_guard lock(mutex_);
  pools_.push_back(pool);
  if (pools_.size() == 1) {
    stop_ = false;
    try {
      thread_ = std::thread([this] { run(); });
    } catch (...) {
      pools_.pop_back();  // the caller destroys the pool
      throw;
    }
    if (auto register_callback = opal_function("opal_progress_register")) {
      hook_registered_ = register_callback(&ProgressEngine::opal_hook) == 0;
    }
    logger("sidecore.mpi")->debug("progress: {}", hook_registered_
                                                      ? "hooked into opal_progress"
                                                      : "no opal_progress hook (not Open MPI): the progress thread completes requests");
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    defer_off_thread_ = hook_registered_ && level < MPI_THREAD_MULTIPLE;
  }
}

void ProgressEngine::remove(Pool* pool) {
  std::thread finished;
  {
    std::lock_guard lock(mutex_);
    std::erase(pools_, pool);
    if (!pools_.empty()) return;
    if (hook_registered_) {
      if (auto unregister = opal_function("opal_progress_unregister")) unregister(&ProgressEngine::opal_hook);
      hook_registered_ = false;
    }
    stop_ = true;
    finished = std::move(thread_);
  }
  idle_.notify_all();
  if (finished.joinable()) finished.join();
}

void ProgressEngine::reserve_completion() {
  // deferred_ never holds more than the tasks in flight (active_), the new one included.
  deferred_.reserve(active_.load(std::memory_order_relaxed) + 1);
}

void ProgressEngine::started(std::atomic<size_t>& pool_in_flight) noexcept {
  pool_in_flight.fetch_add(1, std::memory_order_relaxed);
  active_.fetch_add(1, std::memory_order_relaxed);
}

void ProgressEngine::submitted() noexcept {
  // A napping thread looks again within a millisecond anyway: waking it would only take the
  // rank's core from the application that just called us.
  if (thread_sleep_.load(std::memory_order_acquire) == Sleep::long_wait) idle_.notify_one();
}

void ProgressEngine::note_application_poll() noexcept {
  // A plain load and store, not an atomic increment: it runs on every opal_progress turn, and all
  // the thread needs to see is that the count moved.
  application_polls_.store(application_polls_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

bool ProgressEngine::application_polled_since(uint64_t& seen) const noexcept {
  const uint64_t now = application_polls_.load(std::memory_order_relaxed);
  const bool polled = now != seen;
  seen = now;
  return polled;
}

size_t ProgressEngine::progress_locked() noexcept {
  const auto point = on_application_thread ? fault::Point::progress_hook : fault::Point::progress_thread;
  size_t events = 0;
  for (Pool* pool : pools_) {
    for (size_t i = 0; i < pool->executors().size(); ++i) {
      pool->use_client(i, [&](Client& client) {
        fault::inject(point);
        events += client.progress();
      });
    }
  }
  return events;
}

size_t ProgressEngine::progress_on_application_thread_locked(bool poll_clients) noexcept {
  note_application_poll();
  on_application_thread = true;
  size_t events = deferred_.size();
  for (const Deferred& done : deferred_) {
    MPI_Grequest_complete(done.request);
    done.pool_in_flight->fetch_sub(1, std::memory_order_release);
    active_.fetch_sub(1, std::memory_order_relaxed);
  }
  deferred_.clear();
  if (poll_clients) events += progress_locked();
  on_application_thread = false;
  return events;
}

bool ProgressEngine::release_later(Pool* pool, size_t index, Client& client) noexcept {
  if (sleeping_on_ != &client) return false;
  release_on_waking_.emplace(pool, index);  // one client is slept on, so it fails at most once
  client.interrupt_sleep();
  return true;
}

void ProgressEngine::complete(MPI_Request request, std::atomic<size_t>* pool_in_flight) noexcept {
  if (defer_off_thread_ && !on_application_thread) {
    deferred_.push_back({request, pool_in_flight});  // never allocates: see reserve_completion()
    return;
  }
  // After this call MPI may free the request (and its state) at any time.
  MPI_Grequest_complete(request);
  pool_in_flight->fetch_sub(1, std::memory_order_release);
  active_.fetch_sub(1, std::memory_order_relaxed);
}

int ProgressEngine::opal_hook() noexcept {
  ProgressEngine& engine = instance();
  // opal_progress runs this on every turn of every MPI wait loop: with no offload request in
  // flight it must cost next to nothing.
  if (engine.active_.load(std::memory_order_relaxed) == 0) return 0;
  // Noted before the lock: an application polling while the thread holds the lock is polling too.
  engine.note_application_poll();
  std::unique_lock lock(engine.mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return 0;
  return static_cast<int>(engine.progress_on_application_thread_locked());
}

void ProgressEngine::run() noexcept {
  // Failures of a client are handled inside (its executor fails); anything else must not end the
  // thread, since requests rely on it: log it once, pause, and go on.
  bool logged = false;
  for (;;) {
    try {
      run_loop();
      return;
    } catch (const std::exception& e) {
      log_once(logged, "progress thread", e.what());
    } catch (...) {
      log_once(logged, "progress thread", "unknown exception");
    }
    std::this_thread::sleep_for(kRetryPause);
  }
}

void ProgressEngine::run_loop() {
  std::unique_lock lock(mutex_);
  uint64_t polls_seen = 0;
  auto sleep_unlocked = [&](Sleep kind, std::chrono::nanoseconds timeout) {
    thread_sleep_.store(kind, std::memory_order_release);
    idle_.wait_for(lock, timeout);
    thread_sleep_.store(Sleep::awake, std::memory_order_release);
  };
  while (!stop_) {
    if (progress_locked() > 0) continue;
    // The application has been inside MPI since the thread last looked: its own calls (the hook,
    // submit, wait) make progress at polling latency. Look again in a millisecond, in case it
    // goes off to compute.
    if (application_polled_since(polls_seen)) {
      sleep_unlocked(Sleep::nap, kHookActiveWindow);
      continue;
    }
    size_t in_flight = 0;
    for (Pool* pool : pools_) in_flight += pool->in_flight().load(std::memory_order_relaxed);
    in_flight -= std::min(in_flight, deferred_.size());  // those wait for the application's thread
    if (in_flight == 0) {
      sleep_unlocked(Sleep::long_wait, kSleepTimeout);
      continue;
    }
    // Arm every client's wake-up, then sleep on the first one's. Several clients (executors) each
    // get a short sleep, since only one can be waited on at a time.
    Pool* sleeper_pool = nullptr;
    size_t sleeper = 0;
    size_t clients = 0;
    bool may_sleep = true;
    for (Pool* pool : pools_) {
      for (size_t i = 0; i < pool->executors().size(); ++i) {
        if (pool->executors()[i].failed) continue;  // out of the pool: nothing to wait for there
        const bool ok = pool->use_client(i, [&](Client& client) {
          ++clients;
          may_sleep = client.prepare_sleep() && may_sleep;
          if (sleeper_pool == nullptr && client.in_flight() > 0) {
            sleeper_pool = pool;
            sleeper = i;
          }
        });
        may_sleep = may_sleep && ok;  // a client that failed just now completed requests
      }
    }
    if (!may_sleep || sleeper_pool == nullptr) continue;
    Client& client = *sleeper_pool->executors()[sleeper].client;
    sleeping_on_ = &client;  // a client failing meanwhile stays alive until the thread is back
    lock.unlock();
    std::optional<std::string> failure;
    try {
      client.sleep(clients > 1 ? std::chrono::microseconds(1000) : std::chrono::microseconds(kSleepTimeout));
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (...) {
      failure = "unknown exception";
    }
    lock.lock();
    sleeping_on_ = nullptr;
    const auto registered = [&](Pool* pool) { return std::find(pools_.begin(), pools_.end(), pool) != pools_.end(); };
    if (release_on_waking_) {
      // (Its tasks keep the pool from being freed meanwhile; checked all the same.)
      if (registered(release_on_waking_->first)) release_on_waking_->first->release_failed_client(release_on_waking_->second);
      release_on_waking_.reset();
    } else if (failure && registered(sleeper_pool)) {
      sleeper_pool->fail_executor(sleeper, *failure);
    }
  }
}

}  // namespace sidecore::mpi
