// Sets of CPU ids, written as Linux cpulists ("0-3,6,8-9").
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sidecore {

class CoreSetError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class CoreSet {
 public:
  static constexpr int kMaxCpu = 65535;

  CoreSet() = default;
  explicit CoreSet(std::vector<int> cores);

  // Parses a cpulist; throws CoreSetError naming the bad part.
  static CoreSet parse(std::string_view text);
  // The CPUs this process may run on (its affinity mask).
  static CoreSet allowed();
  // The CPUs this machine has online (/sys/devices/system/cpu/online); allowed() if unreadable.
  static CoreSet online();

  const std::vector<int>& cores() const noexcept { return cores_; }
  size_t size() const noexcept { return cores_.size(); }
  bool empty() const noexcept { return cores_.empty(); }
  bool contains(int core) const noexcept;
  // The cores of this set missing from `other`.
  CoreSet minus(const CoreSet& other) const;
  // Canonical cpulist form, ranges collapsed ("0-3,6").
  std::string to_string() const;
  bool operator==(const CoreSet&) const = default;

 private:
  std::vector<int> cores_;  // sorted, unique
};

}  // namespace sidecore
