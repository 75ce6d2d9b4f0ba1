// spank_sidecore.so: the extern "C" SPANK callbacks and the option table, over the plain C++ core
// in plugin.cpp. Every callback catches everything; only the option callbacks ever return an error
// (that is how srun refuses a bad value), and nothing here can fail a step or drain a node.
extern "C" {
#include <slurm/slurm.h>
#include <slurm/spank.h>
}

#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "plugin.hpp"

// SPANK_PLUGIN() gives these internal linkage in C++, and Slurm then refuses the plugin.
#define SIDECORE_EXPORT __attribute__((visibility("default")))
extern "C" {
SIDECORE_EXPORT extern const char plugin_name[];
SIDECORE_EXPORT extern const char plugin_type[];
SIDECORE_EXPORT extern const unsigned int plugin_version;
SIDECORE_EXPORT extern const unsigned int spank_plugin_version;
const char plugin_name[] = "sidecore";
const char plugin_type[] = "spank";
const unsigned int plugin_version = SLURM_VERSION_NUMBER;
const unsigned int spank_plugin_version = 1;
}

namespace {

using sidecore::spank::Context;
using sidecore::spank::LogLevel;
using sidecore::spank::OptionId;
using sidecore::spank::StepItems;

class SlurmSpankHost final : public sidecore::spank::SpankHost {
 public:
  void bind(spank_t spank) noexcept { spank_ = spank; }

  Context context() override {
    switch (spank_context()) {
      case S_CTX_LOCAL: return Context::local;
      case S_CTX_REMOTE: return Context::remote;
      case S_CTX_ALLOCATOR: return Context::allocator;
      case S_CTX_SLURMD: return Context::slurmd;
      case S_CTX_JOB_SCRIPT: return Context::job_script;
      default: return Context::unknown;
    }
  }

  std::optional<std::string> step_items(StepItems& items) override {
    auto check = [](spank_err_t rc, const char* what) -> std::optional<std::string> {
      if (rc == ESPANK_SUCCESS) return std::nullopt;
      return std::string("cannot read ") + what + " from Slurm: " + spank_strerror(rc);
    };
    if (auto e = check(spank_get_item(spank_, S_JOB_ID, &items.job_id), "S_JOB_ID")) return e;
    if (auto e = check(spank_get_item(spank_, S_JOB_STEPID, &items.step_id), "S_JOB_STEPID")) return e;
    if (auto e = check(spank_get_item(spank_, S_JOB_NODEID, &items.node_id), "S_JOB_NODEID")) return e;
    if (auto e = check(spank_get_item(spank_, S_JOB_NNODES, &items.node_count), "S_JOB_NNODES")) return e;
    if (auto e = check(spank_get_item(spank_, S_JOB_LOCAL_TASK_COUNT, &items.local_task_count), "S_JOB_LOCAL_TASK_COUNT")) return e;
    if (auto e = check(spank_get_item(spank_, S_JOB_UID, &items.uid), "S_JOB_UID")) return e;
    if (auto e = check(spank_get_item(spank_, S_JOB_GID, &items.gid), "S_JOB_GID")) return e;
    gid_t* groups = nullptr;
    int group_count = 0;
    if (auto e = check(spank_get_item(spank_, S_JOB_SUPPLEMENTARY_GIDS, &groups, &group_count), "S_JOB_SUPPLEMENTARY_GIDS")) return e;
    items.groups.assign(groups, groups + (groups ? group_count : 0));
    char* cores = nullptr;
    if (auto e = check(spank_get_item(spank_, S_JOB_ALLOC_CORES, &cores), "S_JOB_ALLOC_CORES")) return e;
    items.job_cores = cores ? cores : "";
    cores = nullptr;
    if (auto e = check(spank_get_item(spank_, S_STEP_ALLOC_CORES, &cores), "S_STEP_ALLOC_CORES")) return e;
    items.step_cores = cores ? cores : "";
    char** env = nullptr;
    if (auto e = check(spank_get_item(spank_, S_JOB_ENV, &env), "S_JOB_ENV")) return e;
    items.job_env.clear();
    for (char** entry = env; entry && *entry; ++entry) items.job_env.emplace_back(*entry);
    return std::nullopt;
  }

  std::optional<std::string> getenv(const std::string& name) override {
    // spank_getenv reads the job's environment, which only slurmstepd has: srun's is its own.
    if (spank_context() == S_CTX_LOCAL) {
      const char* value = ::getenv(name.c_str());
      if (value == nullptr) return std::nullopt;
      return std::string(value);
    }
    std::vector<char> buffer(4096);
    while (true) {
      spank_err_t rc = spank_getenv(spank_, name.c_str(), buffer.data(), static_cast<int>(buffer.size()));
      if (rc == ESPANK_SUCCESS) return std::string(buffer.data());
      if (rc != ESPANK_NOSPACE || buffer.size() > (1u << 20)) return std::nullopt;
      buffer.resize(buffer.size() * 4);
    }
  }

  bool setenv(const std::string& name, const std::string& value) override {
    // In srun (local context) spank_setenv is not available: srun's own environment is what it
    // passes on to the step's tasks on every node.
    if (spank_context() == S_CTX_LOCAL) return ::setenv(name.c_str(), value.c_str(), 1) == 0;
    return spank_setenv(spank_, name.c_str(), value.c_str(), 1) == ESPANK_SUCCESS;
  }

  std::vector<std::string> environment() override {
    std::vector<std::string> env;
    for (char** entry = environ; entry && *entry; ++entry) env.emplace_back(*entry);
    return env;
  }

  void log(LogLevel level, const std::string& message) override {
    switch (level) {
      case LogLevel::debug: slurm_debug("%s", message.c_str()); break;
      case LogLevel::info: slurm_info("%s", message.c_str()); break;
      // Slurm's info() only reaches the log; this reaches the user's srun too.
      case LogLevel::warn: slurm_spank_log("%s", message.c_str()); break;
      case LogLevel::error: slurm_error("%s", message.c_str()); break;
    }
  }

  std::optional<pid_t> task_pid() override {
    pid_t pid = 0;
    if (spank_get_item(spank_, S_TASK_PID, &pid) != ESPANK_SUCCESS || pid <= 0) return std::nullopt;
    return pid;
  }

  int step_stderr_fd() override { return STDERR_FILENO; }

 private:
  spank_t spank_ = nullptr;
};

SlurmSpankHost host;
std::unique_ptr<sidecore::spank::Plugin> core;

sidecore::spank::Plugin& plugin(spank_t spank) {
  if (spank != nullptr) host.bind(spank);
  if (!core) core = std::make_unique<sidecore::spank::Plugin>(host, SIDECORE_DEFAULT_EXECUTOR);
  return *core;
}

int option_callback(OptionId id, const char* value, int remote) noexcept {
  try {
    return plugin(nullptr).option(id, value, remote != 0);
  } catch (...) {
    return remote ? 0 : -1;
  }
}
int offload_cb(int, const char* value, int remote) { return option_callback(OptionId::offload, value, remote); }
int poll_cb(int, const char* value, int remote) { return option_callback(OptionId::poll, value, remote); }
int lib_cb(int, const char* value, int remote) { return option_callback(OptionId::lib, value, remote); }
int stats_cb(int, const char* value, int remote) { return option_callback(OptionId::stats, value, remote); }
int lease_cb(int, const char* value, int remote) { return option_callback(OptionId::lease, value, remote); }

struct spank_option options[] = {
    {const_cast<char*>("offload"), const_cast<char*>("N|idle"),
     const_cast<char*>("Sidecore: start a function executor on N idle cores of the job on each node "
                       "(idle, the default, takes them all)"),
     2, static_cast<int>(OptionId::offload), offload_cb},
    {const_cast<char*>("offload-poll"), const_cast<char*>("hot|warm|adaptive"),
     const_cast<char*>("Sidecore: how idle executor workers wait for work"), 1, static_cast<int>(OptionId::poll),
     poll_cb},
    {const_cast<char*>("offload-lib"), const_cast<char*>("PATH[,PATH]"),
     const_cast<char*>("Sidecore: function libraries the executor loads at start"), 1, static_cast<int>(OptionId::lib),
     lib_cb},
    {const_cast<char*>("offload-stats"), nullptr,
     const_cast<char*>("Sidecore: print each executor's summary to the step's stderr at step end"), 0,
     static_cast<int>(OptionId::stats), stats_cb},
    {const_cast<char*>("offload-lease"), const_cast<char*>("N"),
     const_cast<char*>("Sidecore: borrow N idle cores on other nodes for the step's tasks, as a job in the site's "
                       "lease partition that Slurm may take back"),
     1, static_cast<int>(OptionId::lease), lease_cb},
};

template <typename Call>
int guarded(spank_t spank, Call call) noexcept {
  try {
    return call(plugin(spank));
  } catch (...) {
    return 0;
  }
}

}  // namespace

extern "C" {

SIDECORE_EXPORT int slurm_spank_init(spank_t spank, int argc, char** argv) {
  return guarded(spank, [&](sidecore::spank::Plugin& p) {
    for (auto& option : options) {
      spank_err_t rc = spank_option_register(spank, &option);
      if (rc != ESPANK_SUCCESS) slurm_error("sidecore: cannot register --%s: %s", option.name, spank_strerror(rc));
    }
    return p.init(std::vector<std::string>(argv, argv + argc));
  });
}

SIDECORE_EXPORT int slurm_spank_job_prolog(spank_t spank, int argc, char** argv) {
  // No init in the prolog context: the arguments are read here (only to report errors in them).
  return guarded(spank, [&](sidecore::spank::Plugin& p) { return p.init(std::vector<std::string>(argv, argv + argc)); });
}

SIDECORE_EXPORT int slurm_spank_job_epilog(spank_t spank, int argc, char** argv) {
  // After the job, as root: what a killed slurmstepd could not clean up.
  return guarded(spank, [&](sidecore::spank::Plugin& p) {
    uint32_t job_id = 0;
    if (spank_get_item(spank, S_JOB_ID, &job_id) != ESPANK_SUCCESS || job_id == 0) {
      if (const char* text = std::getenv("SLURM_JOB_ID")) job_id = static_cast<uint32_t>(std::strtoul(text, nullptr, 10));
    }
    const char* node = std::getenv("SLURMD_NODENAME");
    return p.job_epilog(std::vector<std::string>(argv, argv + argc), job_id, node ? node : "");
  });
}

SIDECORE_EXPORT int slurm_spank_init_post_opt(spank_t spank, int, char**) {
  return guarded(spank, [](sidecore::spank::Plugin& p) { return p.init_post_opt(); });
}

SIDECORE_EXPORT int slurm_spank_local_user_init(spank_t spank, int, char**) {
  return guarded(spank, [](sidecore::spank::Plugin& p) { return p.local_user_init(); });
}

SIDECORE_EXPORT int slurm_spank_user_init(spank_t spank, int, char**) {
  return guarded(spank, [](sidecore::spank::Plugin& p) { return p.user_init(); });
}

SIDECORE_EXPORT int slurm_spank_task_post_fork(spank_t spank, int, char**) {
  return guarded(spank, [](sidecore::spank::Plugin& p) { return p.task_post_fork(); });
}

SIDECORE_EXPORT int slurm_spank_task_exit(spank_t spank, int, char**) {
  return guarded(spank, [](sidecore::spank::Plugin& p) { return p.task_exit(); });
}

SIDECORE_EXPORT int slurm_spank_exit(spank_t spank, int, char**) {
  return guarded(spank, [](sidecore::spank::Plugin& p) { return p.exit(); });
}

}  // extern "C"
