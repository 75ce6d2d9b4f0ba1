#include "mpi/pool_settings.hpp"

#include <charconv>
#include <string>
#include <vector>

namespace sidecore::mpi {
namespace {

std::string info_value(MPI_Info info, const char* key) {
  int length = 0, found = 0;
  MPI_Info_get_valuelen(info, key, &length, &found);
  if (!found) return {};
  std::vector<char> value(static_cast<size_t>(length) + 1, '\0');
  MPI_Info_get(info, key, length, value.data(), &found);
  return found ? std::string(value.data()) : std::string();
}

}  // namespace

std::variant<PoolSettings, std::string> parse_pool_settings(const std::string& scope, const std::string& fallback,
                                                            const std::string& timeout_ms, const std::string& transport,
                                                            const std::string& remote_executors,
                                                            const std::string& retry) {
  PoolSettings settings;
  if (scope == "node") {
    settings.scope = Scope::node;
  } else if (scope == "job" || scope.empty()) {
    settings.scope = Scope::job;
  } else {
    return "sidecore_scope='" + scope + "' is not node or job";
  }
  if (fallback == "error") {
    settings.fallback = Fallback::error;
  } else if (fallback == "inline" || fallback.empty()) {
    settings.fallback = Fallback::inline_call;
  } else {
    return "sidecore_fallback='" + fallback + "' is not inline or error";
  }
  if (!timeout_ms.empty()) {
    long long value = -1;
    auto [end, ec] = std::from_chars(timeout_ms.data(), timeout_ms.data() + timeout_ms.size(), value);
    if (ec != std::errc{} || end != timeout_ms.data() + timeout_ms.size() || value < 0 || value > 86'400'000) {
      return "sidecore_timeout_ms='" + timeout_ms + "' is not a number of milliseconds from 0 to 86400000";
    }
    settings.timeout = std::chrono::milliseconds(value);
  }
  if (transport == "fabric") {
    settings.transport = Transport::fabric;
  } else if (transport == "auto" || transport.empty()) {
    settings.transport = Transport::automatic;
  } else {
    return "sidecore_transport='" + transport + "' is not auto or fabric";
  }
  if (!remote_executors.empty()) {
    long long value = -1;
    const char* first = remote_executors.data();
    const char* last = first + remote_executors.size();
    auto [end, ec] = std::from_chars(first, last, value);
    if (ec != std::errc{} || end != last || value < 0 ||
        value > static_cast<long long>(PoolSettings::kMaxRemoteExecutors)) {
      return "sidecore_remote_executors='" + remote_executors + "' is not a number from 0 to " +
             std::to_string(PoolSettings::kMaxRemoteExecutors);
    }
    settings.remote_executors = static_cast<size_t>(value);
  }
  if (retry == "lost") {
    settings.retry_lost = true;
  } else if (!retry.empty() && retry != "none") {
    return "sidecore_retry='" + retry + "' is not none or lost";
  }
  return settings;
}

std::variant<PoolSettings, std::string> parse_pool_settings(MPI_Info info) {
  if (info == MPI_INFO_NULL) return PoolSettings{};
  return parse_pool_settings(info_value(info, "sidecore_scope"), info_value(info, "sidecore_fallback"),
                             info_value(info, "sidecore_timeout_ms"), info_value(info, "sidecore_transport"),
                             info_value(info, "sidecore_remote_executors"), info_value(info, "sidecore_retry"));
}

}  // namespace sidecore::mpi
