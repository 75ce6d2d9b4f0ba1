#include "mpi/common.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sidecore::bench::mpi {
namespace {

constexpr const char* kResultPrefix = "sidecore-bench-result ";

}  // namespace

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "sidecore-bench-mpi: error: %s\n", message.c_str());
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);
}

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(text, static_cast<size_t>(length));
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) die(fmt::format("{}: {}", what, mpi_error(rc)));
}

std::string json_number(double value, int decimals) {
  if (!std::isfinite(value)) return "null";
  return fmt::format("{:.{}f}", value, decimals);
}

void print_result(const std::string& json) {
  std::printf("%s%s\n", kResultPrefix, json.c_str());
  std::fflush(stdout);
}

double ns_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::nano>(to - from).count();
}

double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

std::map<int, ThreadUsage> thread_usage() {
  std::map<int, ThreadUsage> threads;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return threads;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const int tid = std::atoi(entry->d_name);
    ThreadUsage usage;
    std::ifstream stat(fmt::format("/proc/self/task/{}/stat", tid));
    std::string line;
    if (!std::getline(stat, line)) continue;
    const auto open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    usage.name = line.substr(open + 1, close - open - 1);
    std::istringstream fields(line.substr(close + 2));
    std::string field;
    unsigned long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14) utime = std::stoul(field);
      if (i == 15) stime = std::stoul(field);
    }
    usage.cpu_seconds = static_cast<double>(utime + stime) / tick;
    std::ifstream status(fmt::format("/proc/self/task/{}/status", tid));
    while (std::getline(status, line)) {
      if (line.starts_with("voluntary_ctxt_switches:")) usage.voluntary = std::atol(line.c_str() + 24);
      if (line.starts_with("nonvoluntary_ctxt_switches:")) usage.involuntary = std::atol(line.c_str() + 27);
    }
    threads[tid] = usage;
  }
  closedir(dir);
  return threads;
}

void describe_threads(const char* what, const std::map<int, ThreadUsage>& before) {
  const auto after = thread_usage();
  for (const auto& [tid, now] : after) {
    const auto found = before.find(tid);
    const ThreadUsage old = found == before.end() ? ThreadUsage{} : found->second;
    const double cpu = now.cpu_seconds - old.cpu_seconds;
    const long voluntary = now.voluntary - old.voluntary, involuntary = now.involuntary - old.involuntary;
    if (cpu < 0.005 && voluntary + involuntary < 100) continue;
    std::fprintf(
        stderr,
        "sidecore-bench:   %s: thread %d (%s): %.3f s CPU, %ld voluntary and %ld involuntary context switches\n", what,
        tid, now.name.c_str(), cpu, voluntary, involuntary);
  }
}

int launch_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return -1;
}

void pin_to(int cpu) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  CPU_SET(cpu, &mask);
  if (sched_setaffinity(0, sizeof mask, &mask) != 0) {
    std::fprintf(stderr, "sidecore-bench-mpi: error: cannot pin to CPU %d: %s\n", cpu, std::strerror(errno));
    std::exit(1);
  }
}

LocalFunction::LocalFunction(const std::string& library, const char* symbol) {
  handle_ = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) die(fmt::format("dlopen {}: {}", library, dlerror()));
  function_ = reinterpret_cast<sidecore_function_t>(dlsym(handle_, symbol));
  if (function_ == nullptr) die(fmt::format("{} has no symbol {}", library, symbol));
}

LocalFunction::~LocalFunction() {
  if (handle_ != nullptr) dlclose(handle_);
}

namespace {
std::string& transport_setting() {
  static std::string transport = "auto";
  return transport;
}
}  // namespace

void set_offload_transport(std::string transport) { transport_setting() = std::move(transport); }

const std::string& offload_transport() { return transport_setting(); }

Offload::Offload(MPI_Comm comm, const std::string& library, const char* symbol) : local_(library, symbol) {
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "sidecore_transport", offload_transport().c_str());
  const int created = MPIX_Offload_pool_create(comm, info, &pool_);
  MPI_Info_free(&info);
  check(created, "MPIX_Offload_pool_create");
  check(MPIX_Offload_pool_size(pool_, &local_workers_, &total_workers_), "MPIX_Offload_pool_size");
  if (total_workers_ == 0) {
    die("the pool has no executor worker (is SIDECORE_EXECUTOR set? run under sidecore-run); without one "
        "tasks would run inline and the figures would mean nothing");
  }
  check(MPIX_Offload_function_lookup(pool_, library.c_str(), symbol, &remote_), "MPIX_Offload_function_lookup");
}

Offload::~Offload() {
  MPIX_Offload_function_free(&remote_);
  MPIX_Offload_pool_free(&pool_);
}

void serve_tasks(sidecore_function_t function, size_t capacity, uint64_t count) {
  std::vector<std::byte> in(std::max<size_t>(capacity, 1)), out(in.size());
  for (uint64_t served = 0; served < count; ++served) {
    MPI_Status status;
    check(MPI_Recv(in.data(), static_cast<int>(in.size()), MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD,
                   &status),
          "MPI_Recv");
    if (status.MPI_TAG == kTagStop) return;
    int received = 0;
    MPI_Get_count(&status, MPI_BYTE, &received);
    size_t out_bytes = 0;
    const int rc = function(in.data(), static_cast<size_t>(received), out.data(), out.size(), &out_bytes);
    check(MPI_Send(out.data(), rc == 0 ? static_cast<int>(out_bytes) : 0, MPI_BYTE, status.MPI_SOURCE,
                   rc == 0 ? kTagResult : kTagFailed, MPI_COMM_WORLD),
          "MPI_Send");
  }
}

Wakeups::Wakeups(int ranks) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char base[64] = {};
  if (rank == 0)
    std::snprintf(base, sizeof base, "/sidecore-bench-%d-%lld", static_cast<int>(getpid()),
                  static_cast<long long>(Clock::now().time_since_epoch().count() % 1000000007));
  check(MPI_Bcast(base, sizeof base, MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
  for (int r = 0; r < ranks; ++r) {
    const std::string name = fmt::format("{}-{}", base, r);
    sem_t* sem = rank == 0 ? sem_open(name.c_str(), O_CREAT | O_EXCL, 0600, 0) : SEM_FAILED;
    if (rank == 0 && sem == SEM_FAILED) die(fmt::format("sem_open {}: {}", name, std::strerror(errno)));
    names_.push_back(name);
    sems_.push_back(sem);
  }
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  if (rank != 0) {
    for (int r = 0; r < ranks; ++r) {
      sems_[static_cast<size_t>(r)] = sem_open(names_[static_cast<size_t>(r)].c_str(), 0);
      if (sems_[static_cast<size_t>(r)] == SEM_FAILED) {
        die(fmt::format("sem_open {}: {}", names_[static_cast<size_t>(r)], std::strerror(errno)));
      }
    }
  }
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  if (rank == 0) {
    for (const auto& name : names_) sem_unlink(name.c_str());  // open ones stay usable
  }
}

Wakeups::~Wakeups() {
  for (sem_t* sem : sems_) {
    if (sem != SEM_FAILED) sem_close(sem);
  }
}

void Wakeups::sleep(int rank) {
  while (sem_wait(sems_[static_cast<size_t>(rank)]) != 0 && errno == EINTR) {
  }
}

void send_samples(int to, int tag, const Samples& samples) {
  const uint64_t count = samples.size();
  check(MPI_Send(&count, 1, MPI_UINT64_T, to, tag, MPI_COMM_WORLD), "MPI_Send");
  check(MPI_Send(samples.data(), static_cast<int>(count), MPI_DOUBLE, to, tag, MPI_COMM_WORLD), "MPI_Send");
}

Samples receive_samples(int from, int tag) {
  uint64_t count = 0;
  check(MPI_Recv(&count, 1, MPI_UINT64_T, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
  Samples samples(count);
  check(MPI_Recv(samples.data(), static_cast<int>(count), MPI_DOUBLE, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
        "MPI_Recv");
  return samples;
}

}  // namespace sidecore::bench::mpi
