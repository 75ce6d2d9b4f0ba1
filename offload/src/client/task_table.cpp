#include "client/task_table.hpp"

namespace sidecore::client {

uint32_t TaskTable::start(bool hand_back) {
  // Every task in flight may complete before the next take_completions(): room for all of them.
  if (hand_back) handed_back_.reserve(handed_back_.size() + in_flight_ + 1);
  uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    if (slots_.size() >= kMaxSlots) return kFull;
    slots_.emplace_back();
    index = static_cast<uint32_t>(slots_.size() - 1);
  }
  TaskSlot& slot = slots_[index];
  slot.id = (next_sequence_++ << kSlotBits) | index;
  slot.used = true;
  slot.hand_back = hand_back;
  ++in_flight_;
  return index;
}

TaskSlot* TaskTable::find(TaskId id) noexcept {
  const uint64_t index = id & kSlotMask;
  if (id == kNoTask || index >= slots_.size() || slots_[index].id != id) return nullptr;
  return &slots_[index];
}

// Back to TaskSlot{} field by field: the registrations are already released (deliver), so this
// skips constructing, moving and destroying two MemoryRegions per task.
void TaskTable::reset(TaskSlot& slot) noexcept {
  if (slot.in_region) slot.in_region = {};
  if (slot.out_region) slot.out_region = {};
  slot.id = kNoTask;
  slot.used = slot.waiting = slot.on_wire = slot.collectable = slot.delivered = false;
  slot.deadline = {};
  slot.executor = slot.worker = slot.function_id = slot.function = 0;
  slot.in = nullptr;
  slot.in_bytes = 0;
  slot.out = nullptr;
  slot.out_capacity = 0;
  slot.out_remote = false;
  slot.completion = Completion{};
  slot.callback = nullptr;
  slot.user = nullptr;
  slot.hand_back = false;
  slot.lost_retries = 0;
}

void TaskTable::release_if_finished(uint32_t index) {
  TaskSlot& slot = slots_[index];
  if (slot.on_wire || slot.waiting || !slot.delivered) return;
  reset(slot);
  free_slots_.push_back(index);
}

void TaskTable::deliver(uint32_t index, const Completion& completion) {
  TaskSlot& slot = slots_[index];
  if (slot.in_region) slot.in_region = {};
  if (slot.out_region) slot.out_region = {};
  slot.waiting = false;
  slot.completion = completion;
  --in_flight_;
  if (slot.hand_back) {
    handed_back_.push_back(TaskCompletion{slot.id, completion, slot.user});  // room reserved at start()
    slot.hand_back = false;
    slot.delivered = true;
    release_if_finished(index);
  } else if (slot.callback != nullptr) {
    const auto callback = slot.callback;
    void* user = slot.user;
    const TaskId id = slot.id;
    slot.callback = nullptr;
    slot.delivered = true;
    release_if_finished(index);
    callback(user, id, completion);  // last: it may submit again and reuse the slot
  } else {
    slot.collectable = true;
  }
}

std::optional<Completion> TaskTable::collect(uint32_t index) {
  TaskSlot& slot = slots_[index];
  if (!slot.collectable) return std::nullopt;
  Completion completion = slot.completion;
  slot.collectable = false;
  slot.delivered = true;
  release_if_finished(index);
  return completion;
}

void TaskTable::take_completions(std::vector<TaskCompletion>& completed) {
  if (handed_back_.empty()) return;
  if (completed.empty()) {
    completed.swap(handed_back_);  // the two buffers take turns: no allocation once both are grown
    try {
      handed_back_.reserve(in_flight_);  // the tasks still in flight: deliver() must not allocate
    } catch (const std::bad_alloc&) {
      // deliver() then tries again, and a failure there fails the client like any other
    }
    return;
  }
  completed.insert(completed.end(), handed_back_.begin(), handed_back_.end());
  handed_back_.clear();
}

size_t TaskTable::expire(Clock::time_point now) {
  size_t expired = 0;
  while (!deadlines_.empty() && deadlines_.front().first <= now) {
    const TaskId id = deadlines_.front().second;
    deadlines_.pop_front();
    TaskSlot* slot = find(id);
    if (slot == nullptr || slot->collectable || slot->delivered) continue;
    // deliver() revokes the executor's access to the buffers first: a late RMA must fail, not land.
    deliver(index_of(id), Completion{ErrorKind::timeout, 0, 0, false});
    ++expired;
  }
  return expired;
}

void TaskTable::abandon_all() noexcept {
  for (TaskSlot& slot : slots_) {
    if (!slot.used || slot.delivered) continue;
    slot.in_region = {};
    slot.out_region = {};
    slot.callback = nullptr;
    slot.waiting = false;
    slot.collectable = false;
    slot.delivered = true;  // a late result is dropped, as after a timeout
  }
}

void TaskTable::clear() noexcept {
  slots_.clear();
  free_slots_.clear();
}

}  // namespace sidecore::client
