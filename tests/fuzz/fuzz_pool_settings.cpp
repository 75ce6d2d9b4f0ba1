// Fuzzes the string overload of parse_pool_settings with the six info values a user passes to
// MPIX_Offload_pool_create (sidecore_scope, sidecore_fallback, sidecore_transport,
// sidecore_remote_executors, sidecore_retry, sidecore_timeout_ms). The input is split with
// FuzzedDataProvider: five strings each ended by a backslash and any other character (a doubled
// backslash is a literal one), then the rest of the bytes as the timeout.
//
// Accepted settings must come from the documented words and ranges; a refusal must name the first
// key whose value is wrong, in the order the parser checks them (scope, fallback, timeout,
// transport, remote executors, retry); accepted numbers read the same when written back.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_check.hpp"
#include "mpi/pool_settings.hpp"

namespace {

bool starts_with(const std::string& text, std::string_view prefix) { return text.rfind(prefix, 0) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecore::mpi;
  FuzzedDataProvider provider(data, size);
  const std::string scope = provider.ConsumeRandomLengthString();
  const std::string fallback = provider.ConsumeRandomLengthString();
  const std::string transport = provider.ConsumeRandomLengthString();
  const std::string remote = provider.ConsumeRandomLengthString();
  const std::string retry = provider.ConsumeRandomLengthString();
  const std::string timeout_ms = provider.ConsumeRemainingBytesAsString();

  const auto parsed = parse_pool_settings(scope, fallback, timeout_ms, transport, remote, retry);
  const bool scope_known = scope.empty() || scope == "node" || scope == "job";
  const bool fallback_known = fallback.empty() || fallback == "inline" || fallback == "error";
  const bool transport_known = transport.empty() || transport == "auto" || transport == "fabric";
  const bool retry_known = retry.empty() || retry == "none" || retry == "lost";
  // Whether the timeout alone is accepted, with every other value absent.
  const bool timeout_ok = std::holds_alternative<PoolSettings>(parse_pool_settings("", "", timeout_ms, ""));
  const bool remote_ok = std::holds_alternative<PoolSettings>(parse_pool_settings("", "", "", "", remote));

  if (const auto* message = std::get_if<std::string>(&parsed)) {
    if (!scope_known) {
      SIDECORE_FUZZ_CHECK(starts_with(*message, "sidecore_scope='"));
    } else if (!fallback_known) {
      SIDECORE_FUZZ_CHECK(starts_with(*message, "sidecore_fallback='"));
    } else if (!timeout_ok) {
      SIDECORE_FUZZ_CHECK(!timeout_ms.empty() && starts_with(*message, "sidecore_timeout_ms='"));
    } else if (!transport_known) {
      SIDECORE_FUZZ_CHECK(*message == "sidecore_transport='" + transport + "' is not auto or fabric");
    } else if (!remote_ok) {
      SIDECORE_FUZZ_CHECK(!remote.empty());
      SIDECORE_FUZZ_CHECK(*message == "sidecore_remote_executors='" + remote + "' is not a number from 0 to 65536");
    } else {
      SIDECORE_FUZZ_CHECK(!retry_known);
      SIDECORE_FUZZ_CHECK(*message == "sidecore_retry='" + retry + "' is not none or lost");
    }
    return 0;
  }

  const auto& settings = std::get<PoolSettings>(parsed);
  SIDECORE_FUZZ_CHECK(scope_known && fallback_known && transport_known && timeout_ok && remote_ok && retry_known);
  SIDECORE_FUZZ_CHECK(settings.retry_lost == (retry == "lost"));
  SIDECORE_FUZZ_CHECK(settings.remote_executors <= PoolSettings::kMaxRemoteExecutors);
  if (remote.empty()) SIDECORE_FUZZ_CHECK(settings.remote_executors == PoolSettings::kDefaultRemoteExecutors);
  SIDECORE_FUZZ_CHECK((settings.scope == Scope::node) == (scope == "node"));
  SIDECORE_FUZZ_CHECK((settings.fallback == Fallback::error) == (fallback == "error"));
  SIDECORE_FUZZ_CHECK((settings.transport == sidecore::Transport::fabric) == (transport == "fabric"));
  SIDECORE_FUZZ_CHECK(settings.transport == sidecore::Transport::fabric ||
                      settings.transport == sidecore::Transport::automatic);
  const auto timeout = settings.timeout.count();
  SIDECORE_FUZZ_CHECK(timeout >= 0 && timeout <= 86'400'000);
  if (timeout_ms.empty()) SIDECORE_FUZZ_CHECK(timeout == 0);

  // The timeout written back as a plain number gives the same settings.
  const auto again = parse_pool_settings(scope, fallback, std::to_string(timeout), transport,
                                         std::to_string(settings.remote_executors), retry);
  SIDECORE_FUZZ_CHECK(std::holds_alternative<PoolSettings>(again));
  const auto& settings_again = std::get<PoolSettings>(again);
  SIDECORE_FUZZ_CHECK(settings_again.scope == settings.scope && settings_again.fallback == settings.fallback &&
                      settings_again.timeout == settings.timeout && settings_again.transport == settings.transport &&
                      settings_again.remote_executors == settings.remote_executors &&
                      settings_again.retry_lost == settings.retry_lost);
  return 0;
}
