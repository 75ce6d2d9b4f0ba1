// Fuzzes CoreSet::parse with cpulists as they come from plugstack arguments, job options and
// /sys/devices/system/cpu/online. parse may only refuse with CoreSetError; a set it accepts is
// sorted, unique and in range, and its canonical form parses back to the same set and is stable.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include "core_set.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sidecore::CoreSet;
  using sidecore::CoreSetError;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CoreSet set;
  try {
    set = CoreSet::parse(text);
  } catch (const CoreSetError& error) {
    SIDECORE_FUZZ_CHECK(error.what()[0] != '\0');
    return 0;
  }
  const auto& cores = set.cores();
  SIDECORE_FUZZ_CHECK(!cores.empty());
  SIDECORE_FUZZ_CHECK(std::adjacent_find(cores.begin(), cores.end(), std::greater_equal<int>()) == cores.end());
  SIDECORE_FUZZ_CHECK(cores.front() >= 0 && cores.back() <= CoreSet::kMaxCpu);
  SIDECORE_FUZZ_CHECK(set.contains(cores.front()) && set.contains(cores.back()));
  SIDECORE_FUZZ_CHECK(set.minus(set).empty() && set.minus(CoreSet()) == set);

  const std::string canonical = set.to_string();
  CoreSet again;
  try {
    again = CoreSet::parse(canonical);
  } catch (const CoreSetError& error) {
    std::fprintf(stderr, "to_string gave '%s', which parse refuses: %s\n", canonical.c_str(), error.what());
    __builtin_trap();
  }
  SIDECORE_FUZZ_CHECK(again == set);
  SIDECORE_FUZZ_CHECK(again.to_string() == canonical);
  return 0;
}
