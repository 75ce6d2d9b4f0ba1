// Fuzzes parse_reference with what a task finds in SIDECORE_EXECUTOR under Slurm: a reference
// "@PATH pid=N timeout_ms=N" to a card that is still being made. It never throws; a reference it
// accepts has a path and a pid, and formatting it (format_card_reference, what the plugin writes)
// gives text that parses back to the same reference.
//
// Needs parse_reference and CardReference declared in runtime/src/card_reference.hpp.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "card_reference.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecore;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::optional<CardReference> reference = parse_reference(text);
  if (!reference) return 0;
  SIDECORE_FUZZ_CHECK(!text.empty() && text.front() == '@');
  SIDECORE_FUZZ_CHECK(!reference->path.empty());
  SIDECORE_FUZZ_CHECK(reference->pid > 0 && reference->timeout_ms >= 0);
  const std::string formatted =
      format_card_reference(reference->path, reference->pid, std::chrono::milliseconds(reference->timeout_ms));
  const std::optional<CardReference> again = parse_reference(formatted);
  SIDECORE_FUZZ_CHECK(again.has_value());
  SIDECORE_FUZZ_CHECK(again->path == reference->path && again->pid == reference->pid &&
                      again->timeout_ms == reference->timeout_ms);
  SIDECORE_FUZZ_CHECK(format_card_reference(again->path, again->pid, std::chrono::milliseconds(again->timeout_ms)) ==
                      formatted);
  return 0;
}
