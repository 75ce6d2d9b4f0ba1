#include "options.hpp"

#include <charconv>

namespace sidecore::spank {
namespace {

// A whole-string decimal number in [0, limit], or nothing.
std::optional<unsigned> parse_count(std::string_view text, unsigned limit) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value > limit) return std::nullopt;
  return value;
}

constexpr unsigned kMaxCores = 65536;
constexpr unsigned kMaxTaskSeconds = 31'536'000;  // a year: anything longer is a typo
constexpr unsigned kMaxLeaseMinutes = 525'600;    // a year too

std::optional<OffloadRequest> parse_request(std::string_view text) {
  if (text == "idle") return OffloadRequest::idle();
  if (auto count = parse_count(text, kMaxCores)) return OffloadRequest::cores(*count);
  return std::nullopt;
}

std::optional<LogLevel> parse_log_level(std::string_view text) {
  if (text == "debug") return LogLevel::debug;
  if (text == "info") return LogLevel::info;
  if (text == "warn" || text == "warning") return LogLevel::warn;
  if (text == "error") return LogLevel::error;
  return std::nullopt;
}

std::string_view to_string(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "?";
}

}  // namespace

std::vector<std::string> split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) parts.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

std::string to_string(const OffloadRequest& request) {
  switch (request.kind) {
    case OffloadRequest::Kind::off: return "off";
    case OffloadRequest::Kind::idle: return "idle";
    case OffloadRequest::Kind::count: return std::to_string(request.count);
  }
  return "?";
}

std::optional<CgroupMode> parse_cgroup_mode(const std::string& text) {
  if (text == "auto") return CgroupMode::automatic;
  if (text == "v1") return CgroupMode::v1;
  if (text == "v2") return CgroupMode::v2;
  if (text == "off") return CgroupMode::off;
  return std::nullopt;
}

const char* to_string(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::automatic: return "auto";
    case CgroupMode::v1: return "v1";
    case CgroupMode::v2: return "v2";
    case CgroupMode::off: return "off";
  }
  return "?";
}

AdminParse parse_admin_args(const std::vector<std::string>& args, std::string default_executor) {
  AdminParse result;
  AdminConfig& config = result.config;
  config.executor = std::move(default_executor);
  for (const std::string& arg : args) {
    const auto equals = arg.find('=');
    if (equals == std::string::npos) {
      result.errors.push_back("argument '" + arg + "' is not key=value");
      continue;
    }
    const std::string key = arg.substr(0, equals);
    const std::string value = arg.substr(equals + 1);
    auto refuse = [&](std::string_view expected) {
      result.errors.push_back("argument '" + arg + "': " + std::string(expected) + "; keeping the default");
    };
    if (key == "max_cores") {
      if (auto count = parse_count(value, kMaxCores)) config.max_cores = *count;
      else refuse("expected a number of cores");
    } else if (key == "default") {
      if (value == "off") config.default_request = OffloadRequest::off();
      else if (auto request = parse_request(value)) config.default_request = *request;
      else refuse("expected off, idle or a number of cores");
    } else if (key == "poll") {
      if (auto poll = parse_poll_mode(value)) config.poll = *poll;
      else refuse("expected hot, warm or adaptive");
    } else if (key == "provider") {
      if (!value.empty()) config.provider = value;
      else refuse("expected auto or a libfabric provider name");
    } else if (key == "executor") {
      if (!value.empty() && value.front() == '/') config.executor = value;
      else refuse("expected an absolute path");
    } else if (key == "allow_partitions") {
      config.allow_partitions = split(value, ',');
    } else if (key == "start") {
      if (value == "async") config.wait_ready = false;
      else if (value == "wait") config.wait_ready = true;
      else refuse("expected async or wait");
    } else if (key == "cgroup") {
      if (auto mode = parse_cgroup_mode(value)) config.cgroup = *mode;
      else refuse("expected auto, v1, v2 or off");
    } else if (key == "max_task_s") {
      if (auto seconds = parse_count(value, kMaxTaskSeconds); seconds && *seconds > 0) config.max_task_s = *seconds;
      else refuse("expected a number of seconds from 1 to 31536000");
    } else if (key == "lease_partition") {
      config.lease_partition = value;
    } else if (key == "lease_max_cores") {
      if (auto count = parse_count(value, kMaxCores))
        config.lease_max_cores = *count;
      else
        refuse("expected a number of cores");
    } else if (key == "lease_time") {
      if (auto minutes = parse_count(value, kMaxLeaseMinutes); minutes && *minutes > 0)
        config.lease_time_min = *minutes;
      else
        refuse("expected a number of minutes from 1 to 525600");
    } else if (key == "log_level") {
      if (auto level = parse_log_level(value)) config.log_level = *level;
      else refuse("expected debug, info, warn or error");
    } else {
      result.errors.push_back(
          "unknown argument '" + key +
          "' (known: max_cores, default, poll, provider, "
          "executor, allow_partitions, start, cgroup, max_task_s, lease_partition, lease_max_cores, "
          "lease_time, log_level); ignored");
    }
  }
  return result;
}

std::string describe(const AdminConfig& config) {
  std::string partitions;
  for (const auto& partition : config.allow_partitions) {
    partitions += (partitions.empty() ? "" : ",") + partition;
  }
  // Words parse_admin_args reads back as the same configuration, so a logged line can be pasted into
  // plugstack.conf: no cap is no max_cores at all, every partition an empty allow_partitions.
  return (config.max_cores ? "max_cores=" + std::to_string(*config.max_cores) + " " : std::string()) +
         "default=" + to_string(config.default_request) + " poll=" + std::string(to_string(config.poll)) +
         " provider=" + config.provider + " executor=" + config.executor + " allow_partitions=" + partitions +
         " start=" + (config.wait_ready ? "wait" : "async") + " cgroup=" + to_string(config.cgroup) +
         (config.max_task_s ? " max_task_s=" + std::to_string(*config.max_task_s) : std::string()) +
         (config.lease_partition.empty() ? std::string() : " lease_partition=" + config.lease_partition) +
         (config.lease_max_cores ? " lease_max_cores=" + std::to_string(*config.lease_max_cores) : std::string()) +
         " lease_time=" + std::to_string(config.lease_time_min) +
         " log_level=" + std::string(to_string(config.log_level));
}

std::optional<std::string> parse_offload_flag(const char* value, JobOptions& options) {
  // Slurm 22.05 passes a valueless option on through the environment (#SBATCH --offload, then srun
  // in the batch script) as the literal text "(null)".
  if (value == nullptr || *value == '\0' || std::string_view(value) == "(null)") {
    options.offload = OffloadRequest::idle();
    return std::nullopt;
  }
  if (auto request = parse_request(value)) {
    options.offload = *request;
    return std::nullopt;
  }
  return "--offload=" + std::string(value) + ": expected a number of cores (0 for none) or 'idle'";
}

std::optional<std::string> parse_poll_flag(const char* value, JobOptions& options) {
  if (value != nullptr) {
    if (auto poll = parse_poll_mode(value)) {
      options.poll = *poll;
      return std::nullopt;
    }
  }
  return "--offload-poll=" + std::string(value ? value : "") + ": expected hot, warm or adaptive";
}

std::optional<std::string> parse_lib_flag(const char* value, JobOptions& options) {
  auto libraries = split(value ? value : "", ',');
  if (libraries.empty()) return "--offload-lib: expected PATH[,PATH...]";
  options.libraries = std::move(libraries);
  return std::nullopt;
}

std::optional<std::string> parse_lease_flag(const char* value, JobOptions& options) {
  if (value != nullptr) {
    if (auto count = parse_count(value, kMaxCores)) {
      options.lease = *count;
      return std::nullopt;
    }
  }
  return "--offload-lease=" + std::string(value ? value : "") + ": expected a number of cores to lease (0 for none)";
}

std::optional<std::string> parse_stats_flag(const char* /*value*/, JobOptions& options) {
  options.stats = true;
  return std::nullopt;
}

}  // namespace sidecore::spank
