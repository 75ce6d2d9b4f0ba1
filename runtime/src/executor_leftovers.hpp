// What an executor that died without stopping (SIGKILL, a crash) leaves in /dev/shm: its doorbell
// and, with the shm provider, one region per worker named after the worker's address. A clean
// stop removes them itself; a supervisor that saw the executor die calls this instead.
#pragma once

#include "card.hpp"

namespace sidecore {

// Unlinks the card's doorbell and shm regions; names that are already gone are fine.
void remove_executor_leftovers(const ExecutorCard& card) noexcept;

}  // namespace sidecore
