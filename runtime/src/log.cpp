#include "log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>
#include <mutex>

namespace sidecore {
namespace {

spdlog::level::level_enum level_from_env() {
  const char* value = std::getenv("SIDECORE_LOG_LEVEL");
  if (value == nullptr || *value == '\0') return spdlog::level::info;
  auto level = spdlog::level::from_str(value);
  // from_str maps unknown names to "off"; only accept "off" when it was asked for.
  if (level == spdlog::level::off && std::string(value) != "off") return spdlog::level::info;
  return level;
}

std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  std::lock_guard lock(registry_mutex());
  if (auto existing = spdlog::get(name)) return existing;
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto created = std::make_shared<spdlog::logger>(name, sink);
  created->set_pattern("[%H:%M:%S.%e] [%n] [%l] %v");
  created->set_level(level_from_env());
  spdlog::register_logger(created);
  return created;
}

void set_log_level_from_env() {
  std::lock_guard lock(registry_mutex());
  auto level = level_from_env();
  spdlog::apply_all([level](const std::shared_ptr<spdlog::logger>& l) {
    if (l->name().rfind("sidecore.", 0) == 0) l->set_level(level);
  });
}

}  // namespace sidecore
