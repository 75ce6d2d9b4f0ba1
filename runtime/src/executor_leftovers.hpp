// What an executor that died without stopping (SIGKILL, a crash) leaves in /dev/shm: its doorbell
// and, with the shm provider, one region per worker named after the worker's address. A clean
// stop removes them itself; a supervisor that saw the executor die calls this instead.
#pragma once

#include "card.hpp"

namespace sidecore {

// Unlinks the card's doorbell and shm regions; names that are already gone are fine.
void remove_executor_leftovers(const ExecutorCard& card) noexcept;

// libfabric's shm provider names an endpoint's region "/dev/shm/<pid>:<n>:<n>" and refuses to
// enable the endpoint (EBUSY) when the name exists. A process killed before it could unlink its
// regions leaves them behind, and once the kernel hands its pid to a new executor (pids wrap at
// 32768 on many systems) that executor could not start. Whatever carries this process's pid and
// belongs to its user is such a leftover, as long as the process has opened no shm endpoint yet:
// the executor's main calls this first thing. Returns how many it removed.
int remove_stale_shm_regions_of_this_process() noexcept;

}  // namespace sidecore
