// A fake SPANK API: plays slurmstepd's side (items, job environment, log) for the plugin core, and
// drives its callbacks in the order PLATFORM.md lists for each context.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "plugin.hpp"
#include "spank_host.hpp"

namespace sidecore::spank::testing {

class FakeSpank final : public SpankHost {
 public:
  Context current = Context::remote;
  StepItems items;
  std::map<std::string, std::string> env;  // the job's environment, as spank_getenv/setenv see it
  std::vector<std::pair<LogLevel, std::string>> messages;
  int stderr_fd = -1;
  std::optional<pid_t> task;  // S_TASK_PID in task_post_fork

  Context context() override { return current; }
  std::optional<std::string> step_items(StepItems& out) override {
    out = items;
    out.job_env.clear();
    for (const auto& [name, value] : env) out.job_env.push_back(name + "=" + value);
    return std::nullopt;
  }
  std::optional<std::string> getenv(const std::string& name) override {
    auto found = env.find(name);
    if (found == env.end()) return std::nullopt;
    return found->second;
  }
  bool setenv(const std::string& name, const std::string& value) override {
    env[name] = value;
    return true;
  }
  std::vector<std::string> environment() override {
    std::vector<std::string> entries;
    for (const auto& [name, value] : env) entries.push_back(name + "=" + value);
    return entries;
  }
  void log(LogLevel level, const std::string& message) override { messages.emplace_back(level, message); }
  std::optional<pid_t> task_pid() override { return task; }
  int step_stderr_fd() override { return stderr_fd; }

  // True if some message at `level` contains `text`.
  bool logged(LogLevel level, const std::string& text) const {
    for (const auto& [at, message] : messages) {
      if (at == level && message.find(text) != std::string::npos) return true;
    }
    return false;
  }
  std::string all_messages() const {
    std::string text;
    for (const auto& entry : messages) text += entry.second + "\n";
    return text;
  }
};

// One job option as srun passes it: the option id and its value (null for none).
struct Flag {
  OptionId id;
  const char* value;
};

// slurmstepd up to the tasks: init, each option callback twice, init_post_opt, user_init, and
// task_post_fork per local task. Returns false if any callback returned non-zero.
inline bool start_step(Plugin& plugin, FakeSpank& host, const std::vector<std::string>& admin_args,
                       const std::vector<Flag>& flags) {
  host.current = Context::remote;
  int rc = plugin.init(admin_args);
  for (int round = 0; round < 2; ++round) {
    for (const auto& flag : flags) rc |= plugin.option(flag.id, flag.value, true);
  }
  rc |= plugin.init_post_opt();
  rc |= plugin.user_init();
  for (uint32_t task = 0; task < host.items.local_task_count; ++task) rc |= plugin.task_post_fork();
  return rc == 0;
}

// The rest of the step: task_exit per local task, then exit.
inline bool end_step(Plugin& plugin, FakeSpank& host) {
  int rc = 0;
  for (uint32_t task = 0; task < host.items.local_task_count; ++task) rc |= plugin.task_exit();
  rc |= plugin.exit();
  return rc == 0;
}

}  // namespace sidecore::spank::testing
