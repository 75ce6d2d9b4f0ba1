// The C ABI of <mpix_offload.h>: validates every argument, catches everything, and raises errors
// through the communicator's error handler. The PMPIX_ names are the implementations; the MPIX_
// names are weak aliases a profiling tool can override.
#include "mpix_offload.h"

#include <fmt/format.h>

#include <limits>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "log.hpp"
#include "mpi/error_codes.hpp"
#include "mpi/pool.hpp"
#include "mpi/progress_engine.hpp"

using sidecore::ErrorKind;
using sidecore::mpi::OffloadFunction;
using sidecore::mpi::Pool;
using sidecore::mpi::PoolError;
using sidecore::mpi::PoolSettings;

namespace {

// Live handles, so a freed or forged one is an error instead of a crash.
struct Registry {
  std::mutex mutex;
  std::unordered_set<Pool*> pools;
  std::unordered_map<OffloadFunction*, Pool*> functions;
};
Registry& registry() {
  static Registry* instance = new Registry();
  return *instance;
}

Pool* live_pool(MPIX_Offload_pool handle) {
  auto* pool = reinterpret_cast<Pool*>(handle);
  std::lock_guard lock(registry().mutex);
  return registry().pools.count(pool) ? pool : nullptr;
}

OffloadFunction* live_function(MPIX_Offload_function handle) {
  auto* function = reinterpret_cast<OffloadFunction*>(handle);
  std::lock_guard lock(registry().mutex);
  return registry().functions.count(function) ? function : nullptr;
}

// Logs `why`, calls the error handler of `comm` (MPI_COMM_WORLD when there is none) with the code
// of `kind`, and returns that code.
int raise(MPI_Comm comm, ErrorKind kind, const std::string& why) {
  sidecore::mpi::register_error_codes();
  sidecore::logger("sidecore.mpi")->warn("{}: {}", sidecore::to_string(kind), why);
  const int code = sidecore::mpi::error_code(kind);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_call_errhandler(comm == MPI_COMM_NULL ? MPI_COMM_WORLD : comm, code);
  return code;
}

#define SIDECORE_CATCH_ALL(comm)                                               \
  catch (const PoolError& e) {                                                 \
    return raise(comm, e.kind(), e.what());                                    \
  }                                                                            \
  catch (const std::exception& e) {                                            \
    return raise(comm, ErrorKind::bad_arg, std::string("internal: ") + e.what()); \
  }                                                                            \
  catch (...) {                                                                \
    return raise(comm, ErrorKind::bad_arg, "internal: unknown exception");     \
  }

}  // namespace

#define SIDECORE_C_API extern "C" __attribute__((visibility("default")))

SIDECORE_C_API int PMPIX_Offload_pool_create(MPI_Comm comm, MPI_Info info, MPIX_Offload_pool* pool) {
  try {
    sidecore::mpi::register_error_codes();
    if (comm == MPI_COMM_NULL) return raise(MPI_COMM_WORLD, ErrorKind::bad_arg, "pool_create: comm is MPI_COMM_NULL");
    if (pool == nullptr) return raise(comm, ErrorKind::bad_arg, "pool_create: pool is NULL");
    *pool = MPIX_OFFLOAD_POOL_NULL;
    auto parsed = sidecore::mpi::parse_pool_settings(info);
    // Agree on validity first, so one rank's bad info cannot leave the others in a collective.
    int valid = std::holds_alternative<PoolSettings>(parsed) ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &valid, 1, MPI_INT, MPI_MIN, comm);
    if (!valid) {
      return raise(comm, ErrorKind::bad_arg,
                   std::holds_alternative<std::string>(parsed)
                       ? "pool_create: " + std::get<std::string>(parsed)
                       : std::string("pool_create: another rank passed an invalid info value"));
    }
    auto created = std::make_unique<Pool>(comm, std::get<PoolSettings>(parsed));
    Pool* raw = created.release();
    {
      std::lock_guard lock(registry().mutex);
      registry().pools.insert(raw);
    }
    sidecore::mpi::ProgressEngine::instance().add(raw);
    *pool = reinterpret_cast<MPIX_Offload_pool>(raw);
    return MPI_SUCCESS;
  }
  SIDECORE_CATCH_ALL(comm)
}

SIDECORE_C_API int PMPIX_Offload_pool_free(MPIX_Offload_pool* pool) {
  MPI_Comm comm = MPI_COMM_WORLD;
  try {
    if (pool == nullptr) return raise(comm, ErrorKind::bad_arg, "pool_free: pool is NULL");
    Pool* live = live_pool(*pool);
    if (live == nullptr) return raise(comm, ErrorKind::bad_arg, "pool_free: not a live pool (freed already?)");
    comm = live->user_comm();
    // Tasks whose requests were freed still run; wait for them so nothing completes into a dead pool.
    live->drain();
    sidecore::mpi::ProgressEngine::instance().remove(live);
    {
      std::lock_guard lock(registry().mutex);
      registry().pools.erase(live);
      std::erase_if(registry().functions, [&](const auto& entry) {
        if (entry.second != live) return false;
        delete entry.first;  // functions die with their pool
        return true;
      });
    }
    MPI_Barrier(live->comm());
    delete live;
    *pool = MPIX_OFFLOAD_POOL_NULL;
    return MPI_SUCCESS;
  }
  SIDECORE_CATCH_ALL(comm)
}

SIDECORE_C_API int PMPIX_Offload_pool_size(MPIX_Offload_pool pool, int* local_workers, int* total_workers) {
  Pool* live = live_pool(pool);
  if (live == nullptr) return raise(MPI_COMM_WORLD, ErrorKind::bad_arg, "pool_size: not a live pool");
  if (local_workers == nullptr && total_workers == nullptr) {
    return raise(live->user_comm(), ErrorKind::bad_arg, "pool_size: both outputs are NULL");
  }
  if (local_workers) *local_workers = live->local_workers();
  if (total_workers) *total_workers = live->total_workers();
  return MPI_SUCCESS;
}

SIDECORE_C_API int PMPIX_Offload_function_lookup(MPIX_Offload_pool pool, const char* library, const char* symbol,
                                                 MPIX_Offload_function* fn) {
  Pool* live = live_pool(pool);
  if (live == nullptr) return raise(MPI_COMM_WORLD, ErrorKind::bad_arg, "function_lookup: not a live pool");
  try {
    if (fn == nullptr) return raise(live->user_comm(), ErrorKind::bad_arg, "function_lookup: fn is NULL");
    *fn = MPIX_OFFLOAD_FUNCTION_NULL;
    if (library == nullptr || *library == '\0') {
      return raise(live->user_comm(), ErrorKind::bad_arg, "function_lookup: library is NULL or empty");
    }
    if (symbol == nullptr || *symbol == '\0') {
      return raise(live->user_comm(), ErrorKind::bad_arg, "function_lookup: symbol is NULL or empty");
    }
    auto function = live->lookup(library, symbol);
    OffloadFunction* raw = function.release();
    {
      std::lock_guard lock(registry().mutex);
      registry().functions.emplace(raw, live);
    }
    *fn = reinterpret_cast<MPIX_Offload_function>(raw);
    return MPI_SUCCESS;
  }
  SIDECORE_CATCH_ALL(live->user_comm())
}

SIDECORE_C_API int PMPIX_Offload_function_free(MPIX_Offload_function* fn) {
  if (fn == nullptr) return raise(MPI_COMM_WORLD, ErrorKind::bad_arg, "function_free: fn is NULL");
  auto* function = reinterpret_cast<OffloadFunction*>(*fn);
  {
    std::lock_guard lock(registry().mutex);
    if (registry().functions.erase(function) == 0) {
      return raise(MPI_COMM_WORLD, ErrorKind::bad_arg, "function_free: not a live function (freed already?)");
    }
  }
  // Tasks already submitted hold the function's ids, not the handle: freeing it now is safe.
  delete function;
  *fn = MPIX_OFFLOAD_FUNCTION_NULL;
  return MPI_SUCCESS;
}

SIDECORE_C_API int PMPIX_Offload_submit(MPIX_Offload_function fn, const void* in, MPI_Count in_bytes, void* out,
                                        MPI_Count out_bytes, MPI_Request* request) {
  OffloadFunction* function = live_function(fn);
  if (function == nullptr) return raise(MPI_COMM_WORLD, ErrorKind::bad_arg, "submit: not a live function");
  Pool* pool = function->pool;
  const MPI_Comm comm = pool->user_comm();
  try {
    if (request == nullptr) return raise(comm, ErrorKind::bad_arg, "submit: request is NULL");
    *request = MPI_REQUEST_NULL;
    if (in_bytes < 0 || out_bytes < 0) {
      return raise(comm, ErrorKind::bad_arg, fmt::format("submit: negative size (in {}, out {})", in_bytes, out_bytes));
    }
    if ((in == nullptr && in_bytes > 0) || (out == nullptr && out_bytes > 0)) {
      return raise(comm, ErrorKind::bad_arg, "submit: NULL buffer with a non-zero size");
    }
    const int rc = pool->submit(*function, in, static_cast<size_t>(in_bytes), out, static_cast<size_t>(out_bytes),
                                request);
    if (rc != MPI_SUCCESS) {
      const auto kind = sidecore::mpi::error_kind(rc).value_or(ErrorKind::bad_arg);
      return raise(comm, kind, kind == ErrorKind::no_executor ? "submit: no executor and sidecore_fallback=error"
                                                              : "submit: MPI_Grequest_start failed");
    }
    return MPI_SUCCESS;
  }
  SIDECORE_CATCH_ALL(comm)
}

SIDECORE_C_API int PMPIX_Offload_error_kind(int errorcode, int* kind) {
  sidecore::mpi::register_error_codes();
  if (kind == nullptr) return raise(MPI_COMM_WORLD, ErrorKind::bad_arg, "error_kind: kind is NULL");
  const auto found = sidecore::mpi::error_kind(errorcode);
  if (!found) return MPI_ERR_ARG;  // not a Sidecore code: nothing to classify
  *kind = static_cast<int>(*found);
  return MPI_SUCCESS;
}

#define SIDECORE_WEAK_ALIAS(name) __attribute__((weak, alias("P" #name)))
SIDECORE_C_API int MPIX_Offload_pool_create(MPI_Comm, MPI_Info, MPIX_Offload_pool*)
    SIDECORE_WEAK_ALIAS(MPIX_Offload_pool_create);
SIDECORE_C_API int MPIX_Offload_pool_free(MPIX_Offload_pool*) SIDECORE_WEAK_ALIAS(MPIX_Offload_pool_free);
SIDECORE_C_API int MPIX_Offload_pool_size(MPIX_Offload_pool, int*, int*) SIDECORE_WEAK_ALIAS(MPIX_Offload_pool_size);
SIDECORE_C_API int MPIX_Offload_function_lookup(MPIX_Offload_pool, const char*, const char*, MPIX_Offload_function*)
    SIDECORE_WEAK_ALIAS(MPIX_Offload_function_lookup);
SIDECORE_C_API int MPIX_Offload_function_free(MPIX_Offload_function*) SIDECORE_WEAK_ALIAS(MPIX_Offload_function_free);
SIDECORE_C_API int MPIX_Offload_submit(MPIX_Offload_function, const void*, MPI_Count, void*, MPI_Count, MPI_Request*)
    SIDECORE_WEAK_ALIAS(MPIX_Offload_submit);
SIDECORE_C_API int MPIX_Offload_error_kind(int, int*) SIDECORE_WEAK_ALIAS(MPIX_Offload_error_kind);
