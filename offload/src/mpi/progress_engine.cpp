#include "mpi/progress_engine.hpp"

#include <dlfcn.h>

#include <algorithm>

#include "mpi/pool.hpp"

namespace sidecore::mpi {
namespace {

using Clock = std::chrono::steady_clock;
// While the opal_progress hook ran this recently, the application is polling: the thread naps
// instead of arming its doorbell, so workers need not wake it.
constexpr auto kHookActiveWindow = std::chrono::milliseconds(1);
constexpr auto kSleepTimeout = std::chrono::milliseconds(100);

// Set while the current thread is the application's, running the hook or a blocking MPIX call.
thread_local bool on_application_thread = false;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Open MPI's progress-callback registration (libopen-pal), looked up at run time so the library
// also loads under other MPIs.
using OpalCallback = int (*)();
using OpalRegister = int (*)(OpalCallback);

OpalRegister opal_function(const char* name) {
  return reinterpret_cast<OpalRegister>(dlsym(RTLD_DEFAULT, name));
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
    thread_ = std::thread([this] { run(); });
    if (auto register_callback = opal_function("opal_progress_register")) {
      hook_registered_ = register_callback(&ProgressEngine::opal_hook) == 0;
    }
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

void ProgressEngine::submitted() noexcept {
  if (thread_idle_.load(std::memory_order_acquire)) idle_.notify_one();
}

size_t ProgressEngine::progress_locked() {
  size_t events = 0;
  for (Pool* pool : pools_) {
    for (auto& executor : pool->executors()) events += executor.client->progress();
  }
  return events;
}

size_t ProgressEngine::progress_on_application_thread_locked() {
  on_application_thread = true;
  size_t events = deferred_.size();
  for (const Deferred& done : deferred_) {
    MPI_Grequest_complete(done.request);
    done.pool_in_flight->fetch_sub(1, std::memory_order_release);
  }
  deferred_.clear();
  events += progress_locked();
  on_application_thread = false;
  return events;
}

void ProgressEngine::complete(MPI_Request request, std::atomic<size_t>* pool_in_flight) {
  if (defer_off_thread_ && !on_application_thread) {
    deferred_.push_back({request, pool_in_flight});
    return;
  }
  // After this call MPI may free the request (and its state) at any time.
  MPI_Grequest_complete(request);
  pool_in_flight->fetch_sub(1, std::memory_order_release);
}

int ProgressEngine::opal_hook() {
  ProgressEngine& engine = instance();
  std::unique_lock lock(engine.mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return 0;
  engine.hook_last_poll_ns_.store(now_ns(), std::memory_order_relaxed);
  return static_cast<int>(engine.progress_on_application_thread_locked());
}

void ProgressEngine::run() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    if (progress_locked() > 0) continue;
    size_t in_flight = 0;
    for (Pool* pool : pools_) in_flight += pool->in_flight().load(std::memory_order_relaxed);
    in_flight -= std::min(in_flight, deferred_.size());  // those wait for the application's thread
    if (in_flight == 0) {
      thread_idle_.store(true, std::memory_order_release);
      idle_.wait_for(lock, kSleepTimeout);
      thread_idle_.store(false, std::memory_order_release);
      continue;
    }
    const auto since_hook = std::chrono::nanoseconds(now_ns() - hook_last_poll_ns_.load(std::memory_order_relaxed));
    if (since_hook < kHookActiveWindow) {
      lock.unlock();
      std::this_thread::sleep_for(kHookActiveWindow);
      lock.lock();
      continue;
    }
    // Arm every client's wake-up, then sleep on the first one's. Several clients (executors) each
    // get a short sleep, since only one can be waited on at a time.
    Client* sleeper = nullptr;
    size_t clients = 0;
    bool may_sleep = true;
    for (Pool* pool : pools_) {
      for (auto& executor : pool->executors()) {
        ++clients;
        may_sleep = executor.client->prepare_sleep() && may_sleep;
        if (sleeper == nullptr && executor.client->in_flight() > 0) sleeper = executor.client.get();
      }
    }
    if (!may_sleep || sleeper == nullptr) continue;
    lock.unlock();
    sleeper->sleep(clients > 1 ? std::chrono::microseconds(1000) : std::chrono::microseconds(kSleepTimeout));
    lock.lock();
  }
}

}  // namespace sidecore::mpi
