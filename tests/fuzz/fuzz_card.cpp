// Fuzzes parse_card with the text a caller reads from an executor's card file or environment.
// parse_card may only refuse with CardError (any other exception escapes and counts as a crash); a
// card it accepts must meet the limits the rest of the client relies on, and formatting it must
// give text that parses back to the same card and formats to the same text.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "card.hpp"
#include "fuzz_check.hpp"
#include "protocol.hpp"

namespace sidecore {
namespace {

bool same_card(const ExecutorCard& a, const ExecutorCard& b) {
  return a.executor_id == b.executor_id && a.host == b.host && a.provider == b.provider &&
         a.doorbell == b.doorbell && a.worker_addresses == b.worker_addresses;
}

void check_limits(const ExecutorCard& card) {
  SIDECORE_FUZZ_CHECK(card.executor_id.size() == 16);
  SIDECORE_FUZZ_CHECK(!card.host.empty() && !card.provider.empty());
  SIDECORE_FUZZ_CHECK(card.doorbell.empty() || card.doorbell.front() == '/');
  SIDECORE_FUZZ_CHECK(!card.worker_addresses.empty() && card.worker_addresses.size() <= ExecutorCard::kMaxWorkers);
  for (const auto& address : card.worker_addresses) {
    SIDECORE_FUZZ_CHECK(!address.empty() && address.size() <= protocol::kMaxAddressBytes);
  }
}

}  // namespace
}  // namespace sidecore

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecore;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ExecutorCard card;
  try {
    card = parse_card(text);
  } catch (const CardError& error) {
    SIDECORE_FUZZ_CHECK(error.what()[0] != '\0');
    return 0;
  }
  check_limits(card);
  const std::string formatted = format_card(card);
  ExecutorCard again;
  try {
    again = parse_card(formatted);
  } catch (const CardError& error) {
    std::fprintf(stderr, "format_card gave '%s', which parse_card refuses: %s\n", formatted.c_str(), error.what());
    __builtin_trap();
  }
  SIDECORE_FUZZ_CHECK(same_card(card, again));
  SIDECORE_FUZZ_CHECK(format_card(again) == formatted);
  return 0;
}
