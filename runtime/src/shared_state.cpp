#include "shared_state.hpp"

#include <sys/mman.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <system_error>

namespace sidecore {

SharedState* SharedState::create(unsigned workers) {
  if (workers == 0) workers = 1;
  const size_t bytes = sizeof(SharedState) + (workers - 1) * sizeof(WorkerSlot);
  // MAP_NORESERVE: the name space is reserved, not used; pages appear as names are written.
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the executor's shared state");
  auto* state = new (memory) SharedState();
  for (unsigned i = 1; i < workers; ++i) new (&state->slots_[i]) WorkerSlot();
  state->workers_ = workers;
  state->mapped_bytes_ = bytes;
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&state->mutex_, &attributes);
  pthread_mutexattr_destroy(&attributes);
  return state;
}

void SharedState::destroy(SharedState* state) noexcept {
  if (state != nullptr) munmap(state, state->mapped_bytes_);
}

int64_t SharedState::now_ns() noexcept {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

void SharedState::lock() noexcept {
  // A worker killed inside the lock (it holds it only to copy a name, but SIGKILL can come at any
  // time) leaves it "owner died": the table itself is consistent, since count_ moves last.
  if (pthread_mutex_lock(&mutex_) == EOWNERDEAD) pthread_mutex_consistent(&mutex_);
}

uint32_t SharedState::register_function(std::string_view library, std::string_view symbol) noexcept {
  if (library.size() > UINT16_MAX || symbol.size() > UINT16_MAX) return UINT32_MAX;
  lock();
  const uint32_t count = count_.load(std::memory_order_relaxed);
  for (uint32_t id = 0; id < count; ++id) {
    const Entry& entry = entries_[id];
    if (std::string_view(names_ + entry.offset, entry.library_bytes) == library &&
        std::string_view(names_ + entry.offset + entry.library_bytes, entry.symbol_bytes) == symbol) {
      unlock();
      return id;
    }
  }
  const size_t bytes = library.size() + symbol.size();
  if (count >= kMaxFunctions || name_bytes_ + bytes > kNameBytes) {
    unlock();
    return UINT32_MAX;
  }
  std::memcpy(names_ + name_bytes_, library.data(), library.size());
  std::memcpy(names_ + name_bytes_ + library.size(), symbol.data(), symbol.size());
  entries_[count] = {name_bytes_, static_cast<uint16_t>(library.size()), static_cast<uint16_t>(symbol.size())};
  name_bytes_ += static_cast<uint32_t>(bytes);
  count_.store(count + 1, std::memory_order_release);
  unlock();
  return count;
}

bool SharedState::function_name(uint32_t id, std::string& library, std::string& symbol) const {
  if (id >= count_.load(std::memory_order_acquire)) return false;
  const Entry& entry = entries_[id];  // written before count_ moved past it, never changed after
  library.assign(names_ + entry.offset, entry.library_bytes);
  symbol.assign(names_ + entry.offset + entry.library_bytes, entry.symbol_bytes);
  return true;
}

}  // namespace sidecore
