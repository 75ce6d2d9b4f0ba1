#include "executor_leftovers.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

int remove_stale_shm_regions_of_this_process() noexcept {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return 0;
  const std::string prefix = std::to_string(getpid()) + ":";
  int removed = 0;
  while (const dirent* entry = readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name.rfind(prefix, 0) != 0) continue;
    struct stat info{};
    if (fstatat(dirfd(dir), entry->d_name, &info, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(info.st_mode) ||
        info.st_uid != geteuid()) {
      continue;
    }
    if (shm_unlink(("/" + std::string(name)).c_str()) == 0) ++removed;
  }
  closedir(dir);
  return removed;
}

}  // namespace sidecore
