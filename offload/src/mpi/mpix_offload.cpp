// The C ABI of <mpix_offload.h>: validates every argument, catches everything, and raises errors
// through the communicator's error handler. The PMPIX_ names are the implementations; the MPIX_
// names are weak aliases a profiling tool can override.
#include "mpix_offload.h"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "fault_injection.hpp"
#include "log.hpp"
#include "mpi/error_codes.hpp"
#include "mpi/pool.hpp"
#include "mpi/progress_engine.hpp"

using sidecore::ErrorKind;
using sidecore::fault::Point;
using sidecore::mpi::OffloadFunction;
using sidecore::mpi::Pool;
using sidecore::mpi::PoolError;
using sidecore::mpi::PoolSettings;

namespace {

// Function handles are slots of a table whose chunks are never freed, so the check on every
// submit takes no lock: a handle is live when it points at a slot of one of the chunks and the
// slot holds a function. Creating and freeing them (rare) takes the registry's lock.
class FunctionTable {
 public:
  struct Slot {
    std::atomic<OffloadFunction*> function{nullptr};
  };

  // The live function behind `handle`, or null (a freed or forged handle). Lock-free.
  OffloadFunction* find(const void* handle) const noexcept {
    const auto address = reinterpret_cast<uintptr_t>(handle);
    const size_t chunks = chunk_count_.load(std::memory_order_acquire);
    for (size_t c = 0; c < chunks; ++c) {
      const auto base = reinterpret_cast<uintptr_t>(chunks_[c].load(std::memory_order_acquire));
      if (address < base || address >= base + sizeof(Slot) * kChunkSlots) continue;
      if ((address - base) % sizeof(Slot) != 0) return nullptr;
      return reinterpret_cast<const Slot*>(address)->function.load(std::memory_order_acquire);
    }
    return nullptr;
  }
  // A slot for `function`; the registry's lock is held. Throws std::bad_alloc, or PoolError when
  // the table is full.
  Slot* insert(OffloadFunction* function) {
    if (free_.empty()) {
      const size_t chunks = chunk_count_.load(std::memory_order_relaxed);
      if (chunks == kChunks) throw PoolError(ErrorKind::bad_arg, "function_lookup: too many live functions");
      free_.reserve(kChunkSlots);
      auto* chunk = new Slot[kChunkSlots];  // never freed: stale handles stay safe to check
      for (size_t i = kChunkSlots; i-- > 0;) free_.push_back(&chunk[i]);
      chunks_[chunks].store(chunk, std::memory_order_release);
      chunk_count_.store(chunks + 1, std::memory_order_release);
    }
    Slot* slot = free_.back();
    free_.pop_back();
    slot->function.store(function, std::memory_order_release);
    return slot;
  }
  // Takes the function out of the slot of `handle` (null when not live); the lock is held.
  OffloadFunction* erase(const void* handle) noexcept {
    OffloadFunction* function = find(handle);
    if (function == nullptr) return nullptr;
    auto* slot = const_cast<Slot*>(static_cast<const Slot*>(handle));
    slot->function.store(nullptr, std::memory_order_release);
    free_.push_back(slot);  // reserved when its chunk was made
    return function;
  }
  // Takes out every function of `pool`; the lock is held.
  template <class Each>
  void erase_pool(const Pool* pool, Each&& each) noexcept {
    const size_t chunks = chunk_count_.load(std::memory_order_relaxed);
    for (size_t c = 0; c < chunks; ++c) {
      Slot* chunk = chunks_[c].load(std::memory_order_relaxed);
      for (size_t i = 0; i < kChunkSlots; ++i) {
        OffloadFunction* function = chunk[i].function.load(std::memory_order_relaxed);
        if (function == nullptr || function->pool != pool) continue;
        erase(&chunk[i]);
        each(function);
      }
    }
  }

 private:
  static constexpr size_t kChunkSlots = 64;
  static constexpr size_t kChunks = 1024;
  std::array<std::atomic<Slot*>, kChunks> chunks_{};
  std::atomic<size_t> chunk_count_{0};
  std::vector<Slot*> free_;
};

// Live handles, so a freed or forged one is an error instead of a crash.
struct Registry {
  std::mutex mutex;
  std::unordered_set<Pool*> pools;
  FunctionTable functions;
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

// On every submit: no lock.
OffloadFunction* live_function(MPIX_Offload_function handle) noexcept {
  return registry().functions.find(reinterpret_cast<const void*>(handle));
}

// Logs what failed, calls the error handler of `comm` (MPI_COMM_WORLD when there is none) with
// the code of `kind`, and returns that code. Never throws: it also reports the failures of
// allocation.
int raise(MPI_Comm comm, ErrorKind kind, std::string_view why) noexcept {
  sidecore::mpi::register_error_codes();
  try {
    sidecore::logger("sidecore.mpi")->warn("{}: {}", sidecore::to_string(kind), why);
  } catch (...) {
    // Out of memory for the message: the code still tells the caller what happened.
  }
  const int code = sidecore::mpi::error_code(kind);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_call_errhandler(comm == MPI_COMM_NULL ? MPI_COMM_WORLD : comm, code);
  return code;
}

// A failure that is not one of Sidecore's kinds (bad_alloc, a fabric error): the client failed
// internally, which the caller sees as EXECUTOR_LOST.
int raise_internal(MPI_Comm comm, const char* call, const char* what) noexcept {
  try {
    sidecore::logger("sidecore.mpi")->error("{}: internal failure: {}", call, what);
  } catch (...) {
  }
  return raise(comm, ErrorKind::executor_lost, call);
}

// The body of every C entry point runs inside this: whatever it throws becomes an MPI error code
// raised on `comm` (which the body sets to the pool's communicator once it knows the pool), so no
// exception ever crosses into C.
template <class Body>
int guarded(const char* call, sidecore::fault::Point point, const MPI_Comm& comm, Body&& body) noexcept {
  try {
    sidecore::fault::inject(point);
    return body();
  } catch (const PoolError& e) {
    return raise(comm, e.kind(), e.what());
  } catch (const sidecore::Error& e) {
    return raise(comm, e.kind(), e.what());
  } catch (const std::exception& e) {
    return raise_internal(comm, call, e.what());
  } catch (...) {
    return raise_internal(comm, call, "unknown exception");
  }
}

}  // namespace

#define SIDECORE_C_API extern "C" __attribute__((visibility("default")))

SIDECORE_C_API int PMPIX_Offload_pool_create(MPI_Comm comm, MPI_Info info, MPIX_Offload_pool* pool) {
  const MPI_Comm errors = comm == MPI_COMM_NULL ? MPI_COMM_WORLD : comm;
  return guarded("pool_create", Point::pool_create, errors, [&] {
    sidecore::mpi::register_error_codes();
    if (comm == MPI_COMM_NULL) return raise(errors, ErrorKind::bad_arg, "pool_create: comm is MPI_COMM_NULL");
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
    // Registered with the engine while still owned here: if that fails, the pool is destroyed.
    auto& engine = sidecore::mpi::ProgressEngine::instance();
    engine.add(created.get());
    try {
      created->start_lease_watch();
      std::lock_guard lock(registry().mutex);
      registry().pools.insert(created.get());
    } catch (...) {
      created->stop_lease_watch();
      engine.remove(created.get());
      throw;
    }
    *pool = reinterpret_cast<MPIX_Offload_pool>(created.release());
    return MPI_SUCCESS;
  });
}

SIDECORE_C_API int PMPIX_Offload_pool_free(MPIX_Offload_pool* pool) {
  MPI_Comm comm = MPI_COMM_WORLD;
  return guarded("pool_free", Point::pool_free, comm, [&] {
    if (pool == nullptr) return raise(comm, ErrorKind::bad_arg, "pool_free: pool is NULL");
    Pool* live = live_pool(*pool);
    if (live == nullptr) return raise(comm, ErrorKind::bad_arg, "pool_free: not a live pool (freed already?)");
    comm = live->user_comm();
    // No lease executor joins from here on. Tasks whose requests were freed still run; wait for
    // them so nothing completes into a dead pool.
    live->stop_lease_watch();
    live->drain();
    live->report_lease();
    sidecore::mpi::ProgressEngine::instance().remove(live);
    {
      std::lock_guard lock(registry().mutex);
      registry().pools.erase(live);
      registry().functions.erase_pool(live, [](OffloadFunction* function) { delete function; });  // they die with it
    }
    MPI_Barrier(live->comm());
    delete live;
    *pool = MPIX_OFFLOAD_POOL_NULL;
    return MPI_SUCCESS;
  });
}

SIDECORE_C_API int PMPIX_Offload_pool_size(MPIX_Offload_pool pool, int* local_workers, int* total_workers) {
  MPI_Comm comm = MPI_COMM_WORLD;
  return guarded("pool_size", Point::pool_size, comm, [&] {
    Pool* live = live_pool(pool);
    if (live == nullptr) return raise(comm, ErrorKind::bad_arg, "pool_size: not a live pool");
    comm = live->user_comm();
    if (local_workers == nullptr && total_workers == nullptr) {
      return raise(comm, ErrorKind::bad_arg, "pool_size: both outputs are NULL");
    }
    if (local_workers) *local_workers = live->local_workers();
    if (total_workers) *total_workers = live->total_workers();
    return MPI_SUCCESS;
  });
}

SIDECORE_C_API int PMPIX_Offload_function_lookup(MPIX_Offload_pool pool, const char* library, const char* symbol,
                                                 MPIX_Offload_function* fn) {
  MPI_Comm comm = MPI_COMM_WORLD;
  return guarded("function_lookup", Point::function_lookup, comm, [&] {
    Pool* live = live_pool(pool);
    if (live == nullptr) return raise(comm, ErrorKind::bad_arg, "function_lookup: not a live pool");
    comm = live->user_comm();
    if (fn == nullptr) return raise(comm, ErrorKind::bad_arg, "function_lookup: fn is NULL");
    *fn = MPIX_OFFLOAD_FUNCTION_NULL;
    if (library == nullptr || *library == '\0') {
      return raise(comm, ErrorKind::bad_arg, "function_lookup: library is NULL or empty");
    }
    if (symbol == nullptr || *symbol == '\0') {
      return raise(comm, ErrorKind::bad_arg, "function_lookup: symbol is NULL or empty");
    }
    auto function = live->lookup(library, symbol);
    FunctionTable::Slot* slot = nullptr;
    {
      std::lock_guard lock(registry().mutex);
      slot = registry().functions.insert(function.get());
    }
    function.release();  // owned by its slot now
    *fn = reinterpret_cast<MPIX_Offload_function>(slot);
    return MPI_SUCCESS;
  });
}

SIDECORE_C_API int PMPIX_Offload_function_free(MPIX_Offload_function* fn) {
  MPI_Comm comm = MPI_COMM_WORLD;
  return guarded("function_free", Point::function_free, comm, [&] {
    if (fn == nullptr) return raise(comm, ErrorKind::bad_arg, "function_free: fn is NULL");
    OffloadFunction* function = nullptr;
    {
      std::lock_guard lock(registry().mutex);
      function = registry().functions.erase(reinterpret_cast<const void*>(*fn));
    }
    if (function == nullptr)
      return raise(comm, ErrorKind::bad_arg, "function_free: not a live function (freed already?)");
    // Tasks already submitted hold the function's ids, not the handle: freeing it now is safe.
    delete function;
    *fn = MPIX_OFFLOAD_FUNCTION_NULL;
    return MPI_SUCCESS;
  });
}

SIDECORE_C_API int PMPIX_Offload_submit(MPIX_Offload_function fn, const void* in, MPI_Count in_bytes, void* out,
                                        MPI_Count out_bytes, MPI_Request* request) {
  MPI_Comm comm = MPI_COMM_WORLD;
  return guarded("submit", Point::submit, comm, [&] {
    // First: whatever fails below, the caller's MPI_Wait on it then returns at once.
    if (request != nullptr) *request = MPI_REQUEST_NULL;
    OffloadFunction* function = live_function(fn);
    if (function == nullptr) return raise(comm, ErrorKind::bad_arg, "submit: not a live function");
    Pool* pool = function->pool;
    comm = pool->user_comm();
    if (request == nullptr) return raise(comm, ErrorKind::bad_arg, "submit: request is NULL");
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
      return raise(comm, kind,
                   kind == ErrorKind::no_executor     ? "submit: no executor and sidecore_fallback=error"
                   : kind == ErrorKind::executor_lost ? "submit: the client of every executor of the pool has failed"
                                                      : "submit: MPI_Grequest_start failed");
    }
    return MPI_SUCCESS;
  });
}

// For the Fortran binding (offload/fortran/mpix_offload_f08.c), which checks its descriptors
// itself: a refused argument, raised on the function's pool's communicator like the C calls' own.
SIDECORE_C_API int sidecore_mpix_refuse(MPIX_Offload_function fn, const char* why) {
  MPI_Comm comm = MPI_COMM_WORLD;
  return guarded("submit", Point::submit, comm, [&] {
    if (OffloadFunction* function = live_function(fn)) comm = function->pool->user_comm();
    return raise(comm, ErrorKind::bad_arg, why);
  });
}

SIDECORE_C_API int PMPIX_Offload_error_kind(int errorcode, int* kind) {
  return guarded("error_kind", Point::error_kind, MPI_COMM_WORLD, [&] {
    sidecore::mpi::register_error_codes();
    if (kind == nullptr) return raise(MPI_COMM_WORLD, ErrorKind::bad_arg, "error_kind: kind is NULL");
    const auto found = sidecore::mpi::error_kind(errorcode);
    if (!found) return MPI_ERR_ARG;  // not a Sidecore code: nothing to classify
    *kind = static_cast<int>(*found);
    return MPI_SUCCESS;
  });
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
