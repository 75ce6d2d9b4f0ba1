// Named spdlog loggers per subsystem ("sidecore.fabric", "sidecore.exec", ...), never the global one.
// The level comes from SIDECORE_LOG_LEVEL (trace, debug, info, warn, error, off; default info).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace sidecore {

// The logger `name`, created on first use with a stderr sink and the level from the environment.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

// Re-reads SIDECORE_LOG_LEVEL for loggers created from now on and for existing ones.
void set_log_level_from_env();

}  // namespace sidecore
