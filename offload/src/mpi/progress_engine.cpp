#include "mpi/progress_engine.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
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

bool ProgressEngine::on_progress_thread() const noexcept {
  // No thread_local: in a shared library each access to one is a call (__tls_get_addr), and this
  // runs on every completion.
  return thread_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
}

void ProgressEngine::add(Pool* pool) {
  std::lock_guard lock(mutex_);
  const size_t end = table_end_.load(std::memory_order_relaxed);
  size_t free_slots = kMaxConnections - end;
  for (size_t i = 0; i < end; ++i) free_slots += table_[i].load(std::memory_order_relaxed) == nullptr ? 1 : 0;
  if (free_slots < pool->connections().size()) throw std::length_error("too many executor connections in this process");
  pools_.reserve(pools_.size() + 1);
  connections_.reserve(connections_.size() + pool->connections().size());
  pools_.push_back(pool);
  if (pools_.size() == 1) {
    stop_ = false;
    try {
      thread_ = std::thread([this] { run(); });
    } catch (...) {
      pools_.pop_back();  // the caller destroys the pool, with its connections
      throw;
    }
    if (auto register_callback = opal_function("opal_progress_register")) {
      hook_registered_ = register_callback(&ProgressEngine::opal_hook) == 0;
    }
    logger("sidecore.mpi")
        ->debug("progress: {}", hook_registered_ ? "hooked into opal_progress"
                                : kMpichGrequests
                                    ? "through MPICH's generalized-request poll and wait functions"
                                    : "no opal_progress hook (not Open MPI): the progress thread completes requests");
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    defer_off_thread_ = hook_registered_ && level < MPI_THREAD_MULTIPLE;  // MPICH: complete() always defers
  }
  // Nothing below throws: room was checked and reserved.
  for (auto& connection : pool->release_connections()) {
    size_t slot = 0;
    while (slot < table_end_.load(std::memory_order_relaxed) &&
           table_[slot].load(std::memory_order_relaxed) != nullptr) {
      ++slot;
    }
    connection->table_slot = slot;
    table_[slot].store(connection.get(), std::memory_order_release);
    if (slot == table_end_.load(std::memory_order_relaxed)) table_end_.store(slot + 1, std::memory_order_release);
    connections_.push_back(std::move(connection));
  }
}

void ProgressEngine::remove(Pool* pool) {
  std::thread finished;
  {
    std::unique_lock lock(mutex_);
    const auto& mine = pool->connections();
    const auto is_mine = [&](const Connection* c) { return std::find(mine.begin(), mine.end(), c) != mine.end(); };
    // The thread may still sleep on one of them (its tasks completed through the hook): wake it,
    // and wait until it is out of the client.
    while (sleeping_on_ != nullptr && is_mine(sleeping_on_)) {
      {
        std::lock_guard connection_lock(sleeping_on_->mutex);
        if (sleeping_on_->client) sleeping_on_->client->interrupt_sleep();
      }
      thread_back_.wait_for(lock, std::chrono::milliseconds(1));
    }
    for (Connection* connection : mine) {
      table_[connection->table_slot].store(nullptr, std::memory_order_release);
      // A hook that found it in the table just before holds its lock, or finds it retired.
      std::lock_guard connection_lock(connection->mutex);
      connection->retire();
    }
    std::erase(pools_, pool);
    if (pools_.empty()) {
      if (hook_registered_) {
        if (auto unregister = opal_function("opal_progress_unregister")) unregister(&ProgressEngine::opal_hook);
        hook_registered_ = false;
      }
      stop_ = true;
      finished = std::move(thread_);
    }
  }
  idle_.notify_all();
  if (finished.joinable()) {
    finished.join();
    thread_id_.store(std::thread::id{}, std::memory_order_relaxed);  // a new thread may get its id
  }
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

size_t ProgressEngine::progress_connections(bool try_only) noexcept {
  const auto point = try_only ? fault::Point::progress_hook : fault::Point::progress_thread;
  size_t events = 0;
  const size_t end = table_end_.load(std::memory_order_acquire);
  for (size_t i = 0; i < end; ++i) {
    Connection* connection = table_[i].load(std::memory_order_acquire);
    if (connection == nullptr) continue;
    // The application's polls (every MPI call's progress hook) skip connections with nothing in
    // flight, so that they cost the same whatever the number of connections; the progress thread
    // still visits those (a lost executor, a replaced worker).
    if (try_only && connection->tasks.load(std::memory_order_relaxed) == 0) continue;
    std::unique_lock lock(connection->mutex, std::defer_lock);
    if (try_only) {
      if (!lock.try_lock()) continue;  // a submit or the thread is on it: it makes the progress
    } else {
      lock.lock();
    }
    connection->use([&](Client& client) {
      fault::inject(point);
      events += client.progress(connection->completed);
    });
  }
  return events;
}

size_t ProgressEngine::complete_deferred() noexcept {
  if (deferred_.load(std::memory_order_relaxed) == nullptr) return 0;
  size_t events = 0;
  for (OffloadRequest* done = deferred_.exchange(nullptr, std::memory_order_acquire); done != nullptr; ++events) {
    OffloadRequest* next = done->next;  // MPI may free `done` once it completes
    std::atomic<size_t>* pool_in_flight = done->pool_in_flight;
    MPI_Grequest_complete(done->request);
    pool_in_flight->fetch_sub(1, std::memory_order_release);
    active_.fetch_sub(1, std::memory_order_relaxed);
    done = next;
  }
  deferred_count_.fetch_sub(events, std::memory_order_relaxed);
  return events;
}

size_t ProgressEngine::progress_on_application_thread(bool poll_clients) noexcept {
  note_application_poll();
  size_t events = complete_deferred();
  if (poll_clients) {
    events += progress_connections(true);
    events += complete_deferred();  // deferred by the thread meanwhile
  }
  return events;
}

void ProgressEngine::complete(OffloadRequest* request) noexcept {
  request->done.store(true, std::memory_order_release);
  // Under MPICH always: this runs under a connection's lock, and MPICH's MPI_Grequest_complete
  // enters its global critical section, which a thread inside MPI_Cancel holds while its cancel
  // callback waits for that lock. The application's thread completes the queue in the request's
  // poll or wait function, holding no lock of ours.
  if (kMpichGrequests || (defer_off_thread_ && on_progress_thread())) {
    OffloadRequest* head = deferred_.load(std::memory_order_relaxed);
    do {
      request->next = head;
    } while (!deferred_.compare_exchange_weak(head, request, std::memory_order_release, std::memory_order_relaxed));
    deferred_count_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::atomic<size_t>* pool_in_flight = request->pool_in_flight;
  // After this call MPI may free the request (and its state) at any time.
  MPI_Grequest_complete(request->request);
  pool_in_flight->fetch_sub(1, std::memory_order_release);
  active_.fetch_sub(1, std::memory_order_relaxed);
}

int ProgressEngine::opal_hook() noexcept {
  ProgressEngine& engine = instance();
  // opal_progress runs this on every turn of every MPI wait loop: with no offload request in
  // flight it must cost next to nothing.
  if (engine.active_.load(std::memory_order_relaxed) == 0) return 0;
  return static_cast<int>(engine.progress_on_application_thread());
}

void ProgressEngine::run() noexcept {
  // Failures of a client are handled inside (its connection fails); anything else must not end
  // the thread, since requests rely on it: log it once, pause, and go on.
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
  thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  std::unique_lock lock(mutex_);
  uint64_t polls_seen = 0;
  auto sleep_unlocked = [&](Sleep kind, std::chrono::nanoseconds timeout) {
    thread_sleep_.store(kind, std::memory_order_release);
    idle_.wait_for(lock, timeout);
    thread_sleep_.store(Sleep::awake, std::memory_order_release);
  };
  while (!stop_) {
    if (progress_connections(false) > 0) continue;
    // The application has been inside MPI since the thread last looked: its own calls (the hook,
    // submit, wait) make progress at polling latency. Look again in a millisecond, in case it
    // goes off to compute.
    if (application_polled_since(polls_seen)) {
      sleep_unlocked(Sleep::nap, kHookActiveWindow);
      continue;
    }
    size_t in_flight = 0;
    for (Pool* pool : pools_) in_flight += pool->in_flight().load(std::memory_order_relaxed);
    // Those wait for the application's thread.
    in_flight -= std::min(in_flight, deferred_count_.load(std::memory_order_relaxed));
    if (in_flight == 0) {
      sleep_unlocked(Sleep::long_wait, kSleepTimeout);
      continue;
    }
    // Arm every client's wake-up, then sleep on the first one's. Several connections each get a
    // short sleep, since only one can be waited on at a time.
    Connection* sleeper = nullptr;
    size_t clients = 0;
    bool may_sleep = true;
    const size_t end = table_end_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < end; ++i) {
      Connection* connection = table_[i].load(std::memory_order_relaxed);  // the table changes under mutex_ only
      if (connection == nullptr) continue;
      std::lock_guard connection_lock(connection->mutex);
      // Failed, or not connected to any executor yet: nothing to wait for there.
      if (connection->failed.load(std::memory_order_relaxed) || !connection->client) continue;
      const bool ok = connection->use([&](Client& client) {
        ++clients;
        may_sleep = client.prepare_sleep() && may_sleep;
        if (sleeper == nullptr && client.in_flight() > 0) sleeper = connection;
      });
      may_sleep = may_sleep && ok;  // a client that failed just now completed requests
    }
    if (!may_sleep || sleeper == nullptr) continue;
    {
      std::lock_guard connection_lock(sleeper->mutex);
      if (!sleeper->client || sleeper->failed.load(std::memory_order_relaxed)) continue;
      sleeper->thread_sleeping = true;  // a failure meanwhile leaves the client alive until the thread is back
    }
    sleeping_on_ = sleeper;
    lock.unlock();
    std::optional<std::string> failure;
    try {
      sleeper->client->sleep(clients > 1 ? std::chrono::microseconds(1000) : std::chrono::microseconds(kSleepTimeout));
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (...) {
      failure = "unknown exception";
    }
    lock.lock();
    {
      std::lock_guard connection_lock(sleeper->mutex);
      sleeper->thread_sleeping = false;
      if (sleeper->release_on_waking) {
        sleeper->release_on_waking = false;
        sleeper->release_failed_client();
      } else if (failure) {
        sleeper->fail(*failure);
      }
    }
    sleeping_on_ = nullptr;
    thread_back_.notify_all();
  }
}

}  // namespace sidecore::mpi
