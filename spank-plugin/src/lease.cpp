#include "lease.hpp"

#include <poll.h>
#include <unistd.h>

#include <charconv>

#include "process/child_process.hpp"

namespace sidecore::spank {
namespace {

std::optional<unsigned> parse_number(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Whether the variable `entry` ("NAME=VALUE") stays in the lease job's environment.
bool keep_for_lease(std::string_view entry) {
  const std::string_view name = entry.substr(0, entry.find('='));
  if (name == "SLURM_CONF") return true;  // which cluster: the lease's sbatch needs it
  for (std::string_view prefix :
       {"SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SPANK_", "_SLURM_SPANK_", "OMPI_", "PMIX_", "PMI_", "SIDECORE_"}) {
    if (name.substr(0, prefix.size()) == prefix) return false;
  }
  return true;
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          std::chrono::milliseconds limit) {
  CommandResult result;
  SpawnOptions options;
  options.argv = argv;
  options.env = env;
  options.in = Stdio::null();
  options.out = Stdio::pipe();
  options.err = Stdio::pipe();
  options.exec_timeout = limit;
  ChildProcess child;
  try {
    child = ChildProcess::spawn(options);
  } catch (const SpawnError& e) {
    result.err = e.what();
    return result;
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  pollfd fds[2] = {{child.stdout_fd(), POLLIN, 0}, {child.stderr_fd(), POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_streams = 2;
  while (open_streams > 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (poll(fds, 2, static_cast<int>(left.count())) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t got = read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0) {
        if (sinks[i]->size() < (1u << 20)) sinks[i]->append(buffer, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_streams;
      }
    }
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  std::optional<ExitStatus> status = child.wait_for(std::max(left, std::chrono::milliseconds(0)));
  if (!status) {
    child.stop(std::chrono::milliseconds(0));
    result.err = argv.front() + " did not finish within " + std::to_string(limit.count() / 1000) + " s";
    return result;
  }
  result.ran = true;
  result.exit_code = status->shell_code();
  return result;
}

std::optional<unsigned> parse_time_left_minutes(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  unsigned days = 0;
  if (const auto dash = text.find('-'); dash != std::string_view::npos) {
    auto parsed = parse_number(text.substr(0, dash));
    if (!parsed) return std::nullopt;
    days = *parsed;
    text.remove_prefix(dash + 1);
  }
  // HH:MM:SS or MM:SS (Slurm drops the hours under one hour).
  std::vector<unsigned> fields;
  while (true) {
    const auto colon = text.find(':');
    auto parsed = parse_number(text.substr(0, colon));
    if (!parsed) return std::nullopt;
    fields.push_back(*parsed);
    if (colon == std::string_view::npos) break;
    text.remove_prefix(colon + 1);
  }
  unsigned hours = 0, minutes = 0;
  if (fields.size() == 3) {
    hours = fields[0];
    minutes = fields[1];
  } else if (fields.size() == 2) {
    minutes = fields[0];
  } else {
    return std::nullopt;
  }
  return days * 24 * 60 + hours * 60 + minutes;
}

std::vector<std::string> lease_environment(const std::vector<std::string>& env, const std::string& token) {
  std::vector<std::string> kept;
  for (const auto& entry : env) {
    if (keep_for_lease(entry)) kept.push_back(entry);
  }
  kept.push_back(std::string(kLeaseTokenVariable) + "=" + token);
  return kept;
}

std::vector<std::string> sbatch_arguments(const LeaseRequest& request) {
  // Not --quiet: Slurm 22.05's sbatch then prints no job id, even with --parsable.
  std::vector<std::string> args{"sbatch", "--parsable", "--partition=" + request.partition,
                                "--ntasks=" + std::to_string(request.cores), "--cpus-per-task=1",
                                "--time=" + std::to_string(request.minutes),
                                "--job-name=sidecore-lease." + std::to_string(request.consumer_job),
                                // Nothing in the user's folders: the executors' stderr goes nowhere
                                // (what they would say there is about a job the user never sees).
                                "--output=/dev/null", "--error=/dev/null", "--chdir=/", "--comment=sidecore-lease/1"};
  if (!request.account.empty()) args.push_back("--account=" + request.account);
  args.push_back(request.script);
  args.push_back(request.executor);
  args.push_back(request.provider);
  args.insert(args.end(), request.executor_args.begin(), request.executor_args.end());
  return args;
}

std::optional<uint32_t> parse_sbatch_job_id(std::string_view out) {
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.remove_suffix(1);
  out = out.substr(0, out.find(';'));
  auto id = parse_number(out);
  if (!id || *id == 0) return std::nullopt;
  return static_cast<uint32_t>(*id);
}

}  // namespace sidecore::spank
