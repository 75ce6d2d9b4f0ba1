// A doorbell per worker in a shared-memory segment, for providers whose completion queues have no
// file descriptor to sleep on (shm in libfabric 1.17).
//
// A worker about to sleep marks its word "asleep", checks its queue once more, and futex-waits.
// A caller that has just sent to that worker rings: one load of the word, and a futex wake only
// when the worker said it sleeps. Both sides put a full fence between their store and their load,
// so either the worker sees the new message or the caller sees the "asleep" mark (no lost wakeup).
// The awake path costs the caller one shared load, nothing else.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace sidecore {

class Doorbell {
 public:
  Doorbell() = default;
  // Executor side: creates the segment `name` ("/sidecore-<id>", mode 0600) and unlinks it when
  // destroyed. Throws std::system_error.
  static Doorbell create(const std::string& name, unsigned workers);
  // Caller side: maps an existing segment. Throws std::system_error.
  static Doorbell open(const std::string& name, unsigned workers);
  ~Doorbell();
  Doorbell(Doorbell&& other) noexcept;
  Doorbell& operator=(Doorbell&& other) noexcept;
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;

  explicit operator bool() const noexcept { return words_ != nullptr; }
  const std::string& name() const noexcept { return name_; }

  // Worker side: announce sleep; the worker must check its queue after this and before wait().
  void prepare_sleep(unsigned worker) noexcept;
  // Worker side: sleeps until rung or `timeout` passes; clears the mark.
  void wait(unsigned worker, std::chrono::microseconds timeout) noexcept;
  // Worker side: clears the mark without sleeping (work was found).
  void cancel_sleep(unsigned worker) noexcept;
  // Caller side, after sending to `worker`: wakes it if it sleeps.
  void ring(unsigned worker) noexcept {
    if (worker >= workers_) return;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (word(worker).load(std::memory_order_relaxed) == kAsleep) wake(worker);
  }

 private:
  static constexpr uint32_t kAwake = 0;
  static constexpr uint32_t kAsleep = 1;
  // One cache line per worker so rings to one worker do not disturb another.
  struct alignas(64) Slot {
    std::atomic<uint32_t> state;
  };
  std::atomic<uint32_t>& word(unsigned worker) noexcept { return words_[worker].state; }
  void wake(unsigned worker) noexcept;
  void unmap() noexcept;

  Slot* words_ = nullptr;
  unsigned workers_ = 0;
  std::string name_;
  bool owner_ = false;
};

}  // namespace sidecore
