// The info keys of MPIX_Offload_pool_create, parsed and checked.
#pragma once

#include <mpi.h>

#include <chrono>
#include <string>
#include <variant>

#include "sidecore/sidecore.hpp"

namespace sidecore::mpi {

enum class Scope { node, job };
enum class Fallback { inline_call, error };

struct PoolSettings {
  Scope scope = Scope::job;                   // sidecore_scope: use executors of this node only, or all
  Fallback fallback = Fallback::inline_call;  // sidecore_fallback: without executors, run in the rank or fail
  std::chrono::milliseconds timeout{0};       // sidecore_timeout_ms: 0 = none
  Transport transport = Transport::automatic;  // sidecore_transport: node-local rings where offered, or fabric
  // sidecore_remote_executors: with scope job, how many executors on other nodes a rank may use
  // (connected when it first needs them, the nearest nodes in the job's order first).
  size_t remote_executors = kDefaultRemoteExecutors;
  // sidecore_retry: lost runs a task whose executor died under it again elsewhere (up to
  // ClientOptions::kMaxLostRetries times); none completes it with EXECUTOR_LOST.
  bool retry_lost = false;
  static constexpr size_t kDefaultRemoteExecutors = 16;
  static constexpr size_t kMaxRemoteExecutors = 65536;
};

// Reads the sidecore_* keys of `info` (MPI_INFO_NULL gives the defaults). On an unknown value,
// returns a message naming the key and the value.
std::variant<PoolSettings, std::string> parse_pool_settings(MPI_Info info);

// The same parsing from plain strings (empty = key absent), shared with the unit tests.
std::variant<PoolSettings, std::string> parse_pool_settings(const std::string& scope, const std::string& fallback,
                                                            const std::string& timeout_ms,
                                                            const std::string& transport = {},
                                                            const std::string& remote_executors = {},
                                                            const std::string& retry = {});

}  // namespace sidecore::mpi
