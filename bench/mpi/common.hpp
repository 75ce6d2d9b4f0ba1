// The shared part of sidecore-bench-mpi, the MPI program behind `sidecore-bench harvest`,
// `mpi-latency` and `mpi-throughput` and the MPI-only peer of bench/compare.sh: error handling,
// clocks and CPU times, pinning, the result line, the bench functions loaded locally and through an
// offload pool, the MPI-only worker rank, and the semaphores that let idle ranks sleep.
#pragma once

#include <mpi.h>
#include <mpix_offload.h>
#include <semaphore.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "quantile.hpp"
#include "sidecore/function.h"

namespace sidecore::bench::mpi {

using Clock = std::chrono::steady_clock;
using sidecore::bench::median;
using sidecore::bench::quantile;
using sidecore::bench::Samples;

// --- small helpers ---------------------------------------------------------------------------------

// Prints the message, aborts the job (or exits before MPI_Init).
[[noreturn]] void die(const std::string& message);
std::string mpi_error(int code);
// die() unless `rc` is MPI_SUCCESS.
void check(int rc, const char* what);
// "null" for NaN and infinities, which JSON has no number for.
std::string json_number(double value, int decimals);
// One result line ("sidecore-bench-result {json}") on stdout, flushed.
void print_result(const std::string& json);
double ns_between(Clock::time_point from, Clock::time_point to);
// CPU time of the whole process (all its threads), user and system.
double process_cpu_seconds();
double thread_cpu_seconds();

// Per thread of this process: CPU seconds and context switches (voluntary, involuntary), from
// /proc, for -v: who else runs on a rank's CPU.
struct ThreadUsage {
  std::string name;
  double cpu_seconds = 0;
  long voluntary = 0, involuntary = 0;
};

std::map<int, ThreadUsage> thread_usage();
// One line per thread that used CPU or switched between `before` and now.
void describe_threads(const char* what, const std::map<int, ThreadUsage>& before);

// The rank the launcher gave this process, before MPI_Init (-1 when no known launcher set one).
int launch_rank();
void pin_to(int cpu);

// --- the offload pool and the bench functions -------------------------------------------------------

// One function of the bench library, loaded into this process: the same code the executor runs,
// for the tasks a rank computes itself and for the MPI-only worker ranks.
class LocalFunction {
 public:
  LocalFunction(const std::string& library, const char* symbol);
  ~LocalFunction();
  LocalFunction(const LocalFunction&) = delete;
  LocalFunction& operator=(const LocalFunction&) = delete;

  sidecore_function_t get() const noexcept { return function_; }

 private:
  void* handle_ = nullptr;
  sidecore_function_t function_ = nullptr;
};

// The value of the pools' sidecore_transport info key (--transport): "auto" (node-local rings where
// the executor offers them) or "fabric" (libfabric shm on the node too).
void set_offload_transport(std::string transport);
// That value, as the result lines report it: what was asked for, not what a pool ended up using.
const std::string& offload_transport();

// A pool over `comm` and one function of the bench library, resolved both on the executors and in
// this process (the same code, for the tasks a rank runs itself).
class Offload {
 public:
  Offload(MPI_Comm comm, const std::string& library, const char* symbol);
  ~Offload();
  Offload(const Offload&) = delete;
  Offload& operator=(const Offload&) = delete;

  MPIX_Offload_function remote() const noexcept { return remote_; }
  sidecore_function_t local() const noexcept { return local_.get(); }
  int total_workers() const noexcept { return total_workers_; }

 private:
  LocalFunction local_;
  MPIX_Offload_pool pool_ = MPIX_OFFLOAD_POOL_NULL;
  MPIX_Offload_function remote_ = MPIX_OFFLOAD_FUNCTION_NULL;
  int local_workers_ = 0, total_workers_ = 0;
};

// Tags of the MPI-only peer: a task to a worker rank, its result (or its failure), the end.
enum PeerTag : int { kTagTask = 10, kTagResult = 11, kTagFailed = 12, kTagStop = 13 };

// An MPI-only worker rank: MPI_Recv a task from anyone, run it, MPI_Send the result back, until a
// kTagStop message, or until `count` tasks were served. Inputs and outputs of up to `capacity`
// bytes.
void serve_tasks(sidecore_function_t function, size_t capacity, uint64_t count = UINT64_MAX);

// --- taking turns ---------------------------------------------------------------------------------------
//
// Ranks that share a CPU take turns: whichever ranks are not measuring wait in sem_wait on a named
// semaphore, in the kernel (no MPI call, which would poll), so that each measured pair has its CPUs
// to itself. The driver commands the others with an MPI message followed by a post of their semaphore.

class Wakeups {
 public:
  // Collective over MPI_COMM_WORLD: rank 0 creates one semaphore per rank, the others open them.
  explicit Wakeups(int ranks);
  ~Wakeups();
  Wakeups(const Wakeups&) = delete;
  Wakeups& operator=(const Wakeups&) = delete;

  void wake(int rank) { sem_post(sems_[static_cast<size_t>(rank)]); }
  // Blocks in the kernel (a futex wait): no spinning while another pair measures.
  void sleep(int rank);

 private:
  std::vector<std::string> names_;
  std::vector<sem_t*> sems_;
};

// Commands travel as plain bytes on this tag of MPI_COMM_WORLD.
inline constexpr int kTagCommand = 1;

template <typename Command>
void send_command(int to, const Command& command) {
  check(MPI_Send(&command, sizeof command, MPI_BYTE, to, kTagCommand, MPI_COMM_WORLD), "MPI_Send");
}

template <typename Command>
Command receive_command(int from) {
  Command command;
  check(MPI_Recv(&command, sizeof command, MPI_BYTE, from, kTagCommand, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
  return command;
}

// A vector of samples: its length, then the values.
void send_samples(int to, int tag, const Samples& samples);
Samples receive_samples(int from, int tag);

}  // namespace sidecore::bench::mpi
