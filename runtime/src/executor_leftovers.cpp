#include "executor_leftovers.hpp"

#include <sys/mman.h>

#include <string>

namespace sidecore {

void remove_executor_leftovers(const ExecutorCard& card) noexcept {
  if (!card.doorbell.empty()) shm_unlink(card.doorbell.c_str());
  if (card.provider != "shm") return;
  // A shm worker's address is "fi_shm://<name>" (NUL-padded): its region is /dev/shm/<name>.
  static constexpr std::string_view kScheme = "fi_shm://";
  for (const auto& raw : card.worker_addresses) {
    const std::string address(raw.c_str());  // up to the padding
    if (address.rfind(kScheme, 0) != 0) continue;
    const std::string name = address.substr(kScheme.size());
    if (name.empty() || name.find('/') != std::string::npos) continue;
    shm_unlink(("/" + name).c_str());
  }
}

}  // namespace sidecore
