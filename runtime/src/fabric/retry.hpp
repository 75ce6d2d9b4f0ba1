// Bounded retries on libfabric's "try again" (-FI_EAGAIN), for the executor's workers and the
// client alike. A peer that never drains its queue (dead, or stuck; shm can refuse a dead peer for
// ever) then costs the one operation, never the caller's progress.
#pragma once

#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#include <chrono>

namespace sidecore::fabric {

// How long an operation may meet "try again" before it is given up.
inline constexpr auto kRetryLimit = std::chrono::seconds(2);

// Runs `operation` until the provider stops saying "try again" or kRetryLimit passes, making
// progress on `cq` in between (without consuming completions). Returns the last result.
template <typename Operation>
ssize_t retry_while_busy(fid_cq* cq, Operation&& operation) {
  using Clock = std::chrono::steady_clock;
  ssize_t rc;
  Clock::time_point give_up{};
  while ((rc = operation()) == -FI_EAGAIN) {
    const auto now = Clock::now();
    if (give_up == Clock::time_point{}) {
      give_up = now + kRetryLimit;
    } else if (now > give_up) {
      break;
    }
    fi_cq_read(cq, nullptr, 0);
  }
  return rc;
}

}  // namespace sidecore::fabric
