// The client's tasks: one slot per task from submit until both sides are done with it, the ids
// that name them, their deadlines, and the hand-over of completions to the user (collected by
// test(), passed to a callback, or handed back in a list). Nothing here talks to an executor.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "fabric/memory_region.hpp"
#include "sidecore/sidecore.hpp"

namespace sidecore::client {

using Clock = std::chrono::steady_clock;

// A task's slot lives until both sides are done with it: the user has (or was handed) the
// completion, and no result can arrive for it any more. A timed-out task is handed to the user
// at once but keeps its slot (and its worker's credit) until the late result comes back.
struct TaskSlot {
  TaskId id = kNoTask;
  bool used = false;
  bool waiting = false;      // queued in the client for a credit
  bool on_wire = false;      // sent to a worker, result not back yet
  bool collectable = false;  // completion ready for test()/wait()
  bool delivered = false;    // the user has the completion (collected or via callback)
  Clock::time_point deadline{};
  uint32_t executor = 0, worker = 0, function_id = 0;
  uint32_t function = 0;  // the client's index of the function (its id differs per executor)
  const void* in = nullptr;
  size_t in_bytes = 0;
  void* out = nullptr;
  size_t out_capacity = 0;
  bool out_remote = false;  // the output is not inline in the result (RMA, or cross-memory attach)
  fabric::MemoryRegion in_region, out_region;
  Completion completion;
  CompletionCallback callback = nullptr;
  void* user = nullptr;
  bool hand_back = false;     // submit_handed_back(): the completion goes to the handed-back list
  unsigned lost_retries = 0;  // times it ran again after its executor was lost (retry_lost)
  // (TaskTable::reset clears every field: keep it in step when adding one)
};

class TaskTable {
 public:
  static constexpr uint32_t kFull = UINT32_MAX;

  // A fresh slot for a task the user submits, with its id; kFull when 2^24 tasks are unfinished.
  // Counts the task in flight. With `hand_back`, first reserves room to hand back every task in
  // flight, so that deliver() does not allocate.
  uint32_t start(bool hand_back);

  TaskSlot& operator[](uint32_t index) noexcept { return slots_[index]; }
  size_t size() const noexcept { return slots_.size(); }
  // The slot of task `id` while the id still names it, else nullptr.
  TaskSlot* find(TaskId id) noexcept;
  static uint32_t index_of(TaskId id) noexcept { return static_cast<uint32_t>(id & kSlotMask); }

  // Hands `completion` to the user: to the callback, to the handed-back list, or for test() and
  // wait() to collect. Releases the task's registrations first. The callback runs last: it may
  // submit again and reuse (or grow) the table.
  void deliver(uint32_t index, const Completion& completion);
  // Frees the slot once no result can arrive for it and the user has its completion.
  void release_if_finished(uint32_t index);
  // test(): the completion of a collectable slot, which is then forgotten.
  std::optional<Completion> collect(uint32_t index);

  // Completions of submit_handed_back() tasks since the last call (see Client::take_completions).
  void take_completions(std::vector<TaskCompletion>& completed);
  bool has_handed_back() const noexcept { return !handed_back_.empty(); }

  // Deadlines, in submit order (so in deadline order: one timeout for all tasks).
  void add_deadline(Clock::time_point when, TaskId id) { deadlines_.emplace_back(when, id); }
  bool has_deadlines() const noexcept { return !deadlines_.empty(); }
  Clock::time_point next_deadline() const noexcept {
    return deadlines_.empty() ? Clock::time_point::max() : deadlines_.front().first;
  }
  // Times out every task whose deadline has passed; returns how many.
  size_t expire(Clock::time_point now);

  size_t in_flight() const noexcept { return in_flight_; }
  // The client is being destroyed: every unfinished task is dropped without a completion, and the
  // executors lose their access to its buffers, so that no result arriving while the client says
  // goodbye touches memory the user may have freed already.
  void abandon_all() noexcept;
  // Forgets every slot (their registrations go with them): the client is being destroyed.
  void clear() noexcept;

 private:
  static constexpr unsigned kSlotBits = 24;  // TaskId = sequence << 24 | slot
  static constexpr uint64_t kSlotMask = (uint64_t{1} << kSlotBits) - 1;
  static constexpr size_t kMaxSlots = size_t{1} << kSlotBits;

  static void reset(TaskSlot& slot) noexcept;

  std::vector<TaskSlot> slots_;
  std::vector<uint32_t> free_slots_;
  uint64_t next_sequence_ = 1;
  size_t in_flight_ = 0;
  // Completions of submit_handed_back() tasks not yet handed back; start() and take_completions()
  // reserve room for every task in flight.
  std::vector<TaskCompletion> handed_back_;
  std::deque<std::pair<Clock::time_point, TaskId>> deadlines_;
};

}  // namespace sidecore::client
