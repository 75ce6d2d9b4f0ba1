// Fuzzes the Slurm plugin's two outside inputs (spank-plugin/src/options.cpp) with the same bytes:
//   - as a plugstack.conf line for parse_admin_args, split into arguments where Slurm splits them
//     (space, tab, newline; a NUL ends a C string, so it separates too);
//   - as the value of each job option flag (up to the first NUL, since Slurm passes a C string),
//     and each flag once more without a value (null), the way `srun --offload` arrives.
// Besides the sanitizers, it checks what admins and users rely on (spank_sidecore(8)):
//   - nothing throws; each refused argument gives one error line, in order, quoting the argument
//     (only its key when the key is unknown);
//   - an argument is accepted exactly when the man page's spelling allows it, a refused one changes
//     nothing, the last accepted value of a key wins, and every value is within its documented range;
//   - describe() of the configuration, read back as a plugstack line, gives the same configuration;
//   - a flag value is accepted exactly when documented, lands in range, and a refused one leaves the
//     options as they were and gives a message naming the flag.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "options.hpp"

namespace sidecore::spank {
namespace {

constexpr unsigned kMaxCores = 65536;  // spank_sidecore(8): max_cores=N, 0 to 65536
constexpr const char* kDefaultExecutor = "/usr/bin/sidecore-executor";

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// The documented spellings, written from the man page rather than taken from options.cpp, so that a
// change in what the parser accepts shows up here.

// A whole-string decimal number from `low` to `high` (leading zeros are still decimal).
std::optional<unsigned> documented_number(std::string_view text, unsigned low, unsigned high) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  text.remove_prefix(std::min(text.find_first_not_of('0'), text.size()));
  if (text.size() > 9) return std::nullopt;  // more than any bound below, and no overflow
  unsigned value = 0;
  for (char c : text) value = value * 10 + static_cast<unsigned>(c - '0');
  if (value < low || value > high) return std::nullopt;
  return value;
}

// N: cores, 0 to kMaxCores.
std::optional<unsigned> documented_count(std::string_view text) { return documented_number(text, 0, kMaxCores); }

// max_task_s: 1 to 31536000 seconds (a year).
std::optional<unsigned> documented_seconds(std::string_view text) { return documented_number(text, 1, 31'536'000); }

// lease_time: 1 to 525600 minutes (a year).
std::optional<unsigned> documented_minutes(std::string_view text) { return documented_number(text, 1, 525'600); }

// A,B,...: the non-empty names between commas.
std::vector<std::string> documented_list(std::string_view text) {
  std::vector<std::string> names;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = std::min(text.find(',', start), text.size());
    if (end > start) names.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return names;
}

std::optional<PollMode> documented_poll(std::string_view text) {
  if (text == "hot") return PollMode::hot;
  if (text == "warm") return PollMode::warm;
  if (text == "adaptive") return PollMode::adaptive;
  return std::nullopt;
}

// The man page names debug, info, warn and error; the parser also takes "warning" for warn.
std::optional<LogLevel> documented_log_level(std::string_view text) {
  if (text == "debug") return LogLevel::debug;
  if (text == "info") return LogLevel::info;
  if (text == "warn" || text == "warning") return LogLevel::warn;
  if (text == "error") return LogLevel::error;
  return std::nullopt;
}

struct ExpectedAdmin {
  AdminConfig config;
  // For each refused argument, in order, what its error line must quote.
  std::vector<std::string> refused_names;
};

// What parse_admin_args must give for `args`, from the documented keys and values alone.
ExpectedAdmin expected_admin(const std::vector<std::string>& args) {
  ExpectedAdmin expected;
  AdminConfig& config = expected.config;
  config.executor = kDefaultExecutor;
  for (const std::string& arg : args) {
    const size_t equals = arg.find('=');
    if (equals == std::string::npos) {
      expected.refused_names.push_back(arg);
      continue;
    }
    const std::string_view key = std::string_view(arg).substr(0, equals);
    const std::string_view value = std::string_view(arg).substr(equals + 1);
    bool accepted = true;
    if (key == "max_cores") {
      auto count = documented_count(value);
      if ((accepted = count.has_value())) config.max_cores = *count;
    } else if (key == "default") {
      if (value == "off") config.default_request = OffloadRequest::off();
      else if (value == "idle") config.default_request = OffloadRequest::idle();
      else if (auto count = documented_count(value)) config.default_request = OffloadRequest::cores(*count);
      else accepted = false;
    } else if (key == "poll") {
      auto poll = documented_poll(value);
      if ((accepted = poll.has_value())) config.poll = *poll;
    } else if (key == "provider") {
      if ((accepted = !value.empty())) config.provider = value;
    } else if (key == "executor") {
      if ((accepted = !value.empty() && value.front() == '/')) config.executor = value;
    } else if (key == "allow_partitions") {
      config.allow_partitions = documented_list(value);
    } else if (key == "start") {
      if (value == "async") config.wait_ready = false;
      else if (value == "wait") config.wait_ready = true;
      else accepted = false;
    } else if (key == "cgroup") {
      if (value == "auto") config.cgroup = CgroupMode::automatic;
      else if (value == "v1") config.cgroup = CgroupMode::v1;
      else if (value == "v2") config.cgroup = CgroupMode::v2;
      else if (value == "off") config.cgroup = CgroupMode::off;
      else accepted = false;
    } else if (key == "max_task_s") {
      auto seconds = documented_seconds(value);
      if ((accepted = seconds.has_value())) config.max_task_s = *seconds;
    } else if (key == "lease_partition") {
      config.lease_partition = value;  // empty: no leases
    } else if (key == "lease_max_cores") {
      auto count = documented_count(value);
      if ((accepted = count.has_value())) config.lease_max_cores = *count;
    } else if (key == "lease_time") {
      auto minutes = documented_minutes(value);
      if ((accepted = minutes.has_value())) config.lease_time_min = *minutes;
    } else if (key == "log_level") {
      auto level = documented_log_level(value);
      if ((accepted = level.has_value())) config.log_level = *level;
    } else {
      expected.refused_names.emplace_back(key);  // unknown: the line names the key
      continue;
    }
    if (!accepted) expected.refused_names.push_back(arg);
  }
  return expected;
}

// The first field in which two configurations differ, or null when they are the same.
const char* config_difference(const AdminConfig& a, const AdminConfig& b) {
  if (a.max_cores != b.max_cores) return "max_cores";
  if (a.default_request != b.default_request) return "default";
  if (a.poll != b.poll) return "poll";
  if (a.provider != b.provider) return "provider";
  if (a.executor != b.executor) return "executor";
  if (a.allow_partitions != b.allow_partitions) return "allow_partitions";
  if (a.wait_ready != b.wait_ready) return "start";
  if (a.cgroup != b.cgroup) return "cgroup";
  if (a.max_task_s != b.max_task_s) return "max_task_s";
  if (a.lease_partition != b.lease_partition) return "lease_partition";
  if (a.lease_max_cores != b.lease_max_cores) return "lease_max_cores";
  if (a.lease_time_min != b.lease_time_min) return "lease_time";
  if (a.log_level != b.log_level) return "log_level";
  if (a.ready_timeout != b.ready_timeout) return "ready_timeout";
  if (a.stop_grace != b.stop_grace) return "stop_grace";
  return nullptr;
}

void check_same_config(const AdminConfig& parsed, const AdminConfig& expected, const char* what) {
  if (const char* field = config_difference(parsed, expected)) {
    std::fprintf(stderr, "%s: %s differs: '%s', expected '%s'\n", what, field, describe(parsed).c_str(),
                 describe(expected).c_str());
    __builtin_trap();
  }
}

// Every accepted value is one the man page allows.
void check_ranges(const AdminConfig& config) {
  if (config.max_cores) SIDECORE_FUZZ_CHECK(*config.max_cores <= kMaxCores);
  if (config.default_request.kind == OffloadRequest::Kind::count) {
    SIDECORE_FUZZ_CHECK(config.default_request.count >= 1 && config.default_request.count <= kMaxCores);
  } else {
    SIDECORE_FUZZ_CHECK(config.default_request.count == 0);
  }
  SIDECORE_FUZZ_CHECK(!config.provider.empty());
  SIDECORE_FUZZ_CHECK(!config.executor.empty() && config.executor.front() == '/');
  for (const auto& partition : config.allow_partitions) {
    SIDECORE_FUZZ_CHECK(!partition.empty() && !contains(partition, ","));
  }
  if (config.lease_max_cores) SIDECORE_FUZZ_CHECK(*config.lease_max_cores <= kMaxCores);
  SIDECORE_FUZZ_CHECK(config.lease_time_min >= 1 && config.lease_time_min <= 525'600);
}

// Slurm's plugstack.conf reader splits a line at spaces, tabs and newlines (strtok_r with " \t\n");
// a NUL would end the line's C string, so here it separates arguments as well.
std::vector<std::string> plugstack_arguments(std::string_view line) {
  std::vector<std::string> args;
  size_t start = 0;
  while (start < line.size()) {
    const size_t end = std::min(line.find_first_of(std::string_view(" \t\n\0", 4), start), line.size());
    if (end > start) args.emplace_back(line.substr(start, end - start));
    start = end + 1;
  }
  return args;
}

void check_admin_args(std::string_view line) {
  const std::vector<std::string> args = plugstack_arguments(line);
  const AdminParse parsed = parse_admin_args(args, kDefaultExecutor);
  const ExpectedAdmin expected = expected_admin(args);

  SIDECORE_FUZZ_CHECK(parsed.errors.size() == expected.refused_names.size());
  for (size_t i = 0; i < parsed.errors.size(); ++i) {
    const std::string& error = parsed.errors[i];
    SIDECORE_FUZZ_CHECK(!error.empty() && !contains(error, "\n"));
    if (!contains(error, "'" + expected.refused_names[i] + "'")) {
      std::fprintf(stderr, "error line %zu does not quote '%s': %s\n", i, expected.refused_names[i].c_str(),
                   error.c_str());
      __builtin_trap();
    }
  }
  // This also says that a refused argument leaves the value before it, and that the last accepted
  // value of a key wins.
  check_same_config(parsed.config, expected.config, "parse_admin_args against the man page");
  check_ranges(parsed.config);

  // describe() is the configuration in plugstack.conf syntax: read back as a line, it must give the
  // same configuration.
  const std::string described = describe(parsed.config);
  const std::vector<std::string> again_args = plugstack_arguments(described);
  // Another default executor, so that executor= has to come from the description.
  const AdminParse again = parse_admin_args(again_args, "/nonexistent/other-default");
  if (!again.errors.empty()) {
    std::fprintf(stderr, "describe gave '%s', which reads back with %zu error(s): %s\n", described.c_str(),
                 again.errors.size(), again.errors.front().c_str());
    __builtin_trap();
  }
  check_same_config(again.config, parsed.config, "describe() read back");
  SIDECORE_FUZZ_CHECK(describe(again.config) == described);
}

// The job's options as an earlier flag left them, so a refusal that changes anything shows.
JobOptions earlier_options() {
  JobOptions options;
  options.offload = OffloadRequest::cores(3);
  options.poll = PollMode::hot;
  options.libraries = {"/earlier/libf.so"};
  options.lease = 5;
  return options;
}

bool same_options(const JobOptions& a, const JobOptions& b) {
  return a.offload == b.offload && a.poll == b.poll && a.libraries == b.libraries && a.stats == b.stats &&
         a.lease == b.lease;
}

// A refused flag: a message naming the flag (and the value, where the flag has one) and no change.
void check_refused(const std::optional<std::string>& error, const JobOptions& options, const std::string& names) {
  SIDECORE_FUZZ_CHECK(error.has_value() && !error->empty());
  if (!contains(*error, names)) {
    std::fprintf(stderr, "the message does not name '%s': %s\n", names.c_str(), error->c_str());
    __builtin_trap();
  }
  SIDECORE_FUZZ_CHECK(same_options(options, earlier_options()));
}

// --offload[=N|idle]: no value, an empty one, "(null)" (Slurm 22.05's valueless flag through the
// environment) and "idle" take every idle core; N from 0 (none) to kMaxCores.
void check_offload_flag(const char* value) {
  JobOptions options = earlier_options();
  const auto error = parse_offload_flag(value, options);
  const std::string_view text = value ? value : "";
  std::optional<OffloadRequest> expected;
  if (text.empty() || text == "(null)" || text == "idle") expected = OffloadRequest::idle();
  else if (auto count = documented_count(text)) expected = OffloadRequest::cores(*count);

  if (!expected) {
    check_refused(error, options, "--offload=" + std::string(text));
    return;
  }
  SIDECORE_FUZZ_CHECK(!error.has_value());
  SIDECORE_FUZZ_CHECK(options.offload == *expected);
  const OffloadRequest& request = *options.offload;
  if (request.kind == OffloadRequest::Kind::count) {
    SIDECORE_FUZZ_CHECK(request.count >= 1 && request.count <= kMaxCores);
  }
  // The request written back the way the plugin logs it reads the same (off is spelled 0 as a flag).
  const std::string written = request.kind == OffloadRequest::Kind::off ? "0" : to_string(request);
  JobOptions again;
  SIDECORE_FUZZ_CHECK(!parse_offload_flag(written.c_str(), again) && again.offload == request);
  options.offload = earlier_options().offload;
  SIDECORE_FUZZ_CHECK(same_options(options, earlier_options()));
}

// --offload-poll=MODE: exactly hot, warm or adaptive; a value is required.
void check_poll_flag(const char* value) {
  JobOptions options = earlier_options();
  const auto error = parse_poll_flag(value, options);
  const auto expected = value ? documented_poll(value) : std::nullopt;
  if (!expected) {
    check_refused(error, options, "--offload-poll=" + std::string(value ? value : ""));
    return;
  }
  SIDECORE_FUZZ_CHECK(!error.has_value() && options.poll == *expected);
  options.poll = earlier_options().poll;
  SIDECORE_FUZZ_CHECK(same_options(options, earlier_options()));
}

// --offload-lib=PATH[,PATH...]: at least one path; the list replaces an earlier one.
void check_lib_flag(const char* value) {
  JobOptions options = earlier_options();
  const auto error = parse_lib_flag(value, options);
  const auto expected = documented_list(value ? value : "");
  if (expected.empty()) {
    check_refused(error, options, "--offload-lib");
    return;
  }
  SIDECORE_FUZZ_CHECK(!error.has_value() && options.libraries == expected);
  for (const auto& library : options.libraries) SIDECORE_FUZZ_CHECK(!library.empty() && !contains(library, ","));
  options.libraries = earlier_options().libraries;
  SIDECORE_FUZZ_CHECK(same_options(options, earlier_options()));
}

// --offload-stats takes no value (Slurm passes null); whatever arrives, it only turns stats on.
void check_stats_flag(const char* value) {
  JobOptions options = earlier_options();
  SIDECORE_FUZZ_CHECK(!parse_stats_flag(value, options).has_value());
  SIDECORE_FUZZ_CHECK(options.stats);
  options.stats = false;
  SIDECORE_FUZZ_CHECK(same_options(options, earlier_options()));
}

// --offload-lease=N: cores to lease on other nodes, 0 (none) to kMaxCores; a value is required.
void check_lease_flag(const char* value) {
  JobOptions options = earlier_options();
  const auto error = parse_lease_flag(value, options);
  const auto expected = value ? documented_count(value) : std::nullopt;
  if (!expected) {
    check_refused(error, options, "--offload-lease=" + std::string(value ? value : ""));
    return;
  }
  SIDECORE_FUZZ_CHECK(!error.has_value() && options.lease == *expected);
  options.lease = earlier_options().lease;
  SIDECORE_FUZZ_CHECK(same_options(options, earlier_options()));
}

void check_job_flags(const char* value) {
  check_offload_flag(value);
  check_poll_flag(value);
  check_lib_flag(value);
  check_lease_flag(value);
  check_stats_flag(value);
}

}  // namespace
}  // namespace sidecore::spank

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecore::spank;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // What a C string holding these bytes would say: everything before the first NUL.
  const std::string value(text.substr(0, std::min(text.find('\0'), text.size())));
  try {
    check_admin_args(text);
    check_job_flags(value.c_str());
    check_job_flags(nullptr);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "an exception escaped the option parsers: %s\n", error.what());
    __builtin_trap();
  } catch (...) {
    std::fprintf(stderr, "an exception of unknown type escaped the option parsers\n");
    __builtin_trap();
  }
  return 0;
}
