// What an executor's supervisor and its worker processes share: one anonymous MAP_SHARED mapping,
// made by the supervisor before it forks the first worker, so a worker started later to replace a
// dead one finds it as it was.
//
// - Function names. A lookup on any worker registers (library, symbol) here and answers with its
//   index, so a function id means the same on every worker of the executor and survives a worker's
//   restart: callers never look a function up again. Each worker process resolves an id it has not
//   seen yet from the name (dlopen, dlsym) on first use.
// - Per worker: the deadline of the task each of its two threads (local and remote callers) runs
//   right now, which the supervisor watches to replace a worker stuck past it, and the worker's
//   counters, which outlive a crash and which the supervisor sums for --stats.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "service_stats.hpp"

namespace sidecore {

struct WorkerSlot {
  // CLOCK_MONOTONIC nanoseconds at which the task running now must have finished; 0: no task with a
  // deadline is running. [0]: the thread serving this host's callers, [1]: the remote callers'.
  std::atomic<int64_t> deadline_ns[2] = {0, 0};
  ServiceStats stats[2];
};

class SharedState {
 public:
  static constexpr uint32_t kMaxFunctions = 4096;
  static constexpr size_t kNameBytes = 4 << 20;  // every library path and symbol, end to end

  // Maps a fresh state for `workers` workers. Throws std::system_error.
  static SharedState* create(unsigned workers);
  // Unmaps it (the supervisor, at exit).
  static void destroy(SharedState* state) noexcept;

  // The id of (library, symbol): the one it already has, or a new one. UINT32_MAX when the table
  // or its name space is full. Safe against a worker that dies holding the lock.
  uint32_t register_function(std::string_view library, std::string_view symbol) noexcept;
  // The names behind `id`; false for an id never handed out.
  bool function_name(uint32_t id, std::string& library, std::string& symbol) const;

  WorkerSlot& slot(unsigned worker) noexcept { return slots_[worker]; }
  unsigned workers() const noexcept { return workers_; }
  static int64_t now_ns() noexcept;

 private:
  struct Entry {
    uint32_t offset;
    uint16_t library_bytes, symbol_bytes;
  };
  SharedState() = default;
  void lock() noexcept;
  void unlock() noexcept { pthread_mutex_unlock(&mutex_); }

  pthread_mutex_t mutex_;
  std::atomic<uint32_t> count_{0};
  uint32_t name_bytes_ = 0;
  unsigned workers_ = 0;
  size_t mapped_bytes_ = 0;
  Entry entries_[kMaxFunctions];
  char names_[kNameBytes];
  WorkerSlot slots_[1];  // `workers_` of them: the mapping extends past the struct
};

}  // namespace sidecore
