#include "mpi_launch.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "core_set.hpp"
#include "process/child_process.hpp"
#include "setup.hpp"

namespace sidecore::bench {
namespace {

// What sidecore-bench-mpi's rank 0 puts before each result.
constexpr std::string_view kResultPrefix = "sidecore-bench-result ";
constexpr unsigned kLatencyRanks = 3;

// "0,1,0": a CPU per rank, in rank order (repeats allowed, unlike a cpulist).
std::vector<int> parse_cpu_sequence(const std::string& text) {
  std::vector<int> cpus;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    int cpu = -1;
    const auto [stop, rc] = std::from_chars(text.data() + begin, text.data() + end, cpu);
    if (rc != std::errc() || stop != text.data() + end || cpu < 0 || cpu > CoreSet::kMaxCpu) {
      throw std::runtime_error("--rank-cpus '" + text + "': expected CPU numbers separated by commas");
    }
    cpus.push_back(cpu);
    begin = end + 1;
  }
  return cpus;
}

template <typename T>
std::string join(const std::vector<T>& values) {
  std::string out;
  for (const T& value : values) out += (out.empty() ? "" : ",") + std::to_string(value);
  return out;
}

// Runs `arguments` with its stdout on a pipe; result lines go to our stdout without their
// prefix, every other line to stderr. Returns the exit status and counts the results.
int run_forwarding(const std::vector<std::string>& arguments, size_t& results) {
  SpawnOptions options;
  options.argv = arguments;
  options.out = Stdio::pipe();
  std::fflush(stdout);
  std::fflush(stderr);
  ChildProcess child;
  try {
    child = ChildProcess::spawn(options);
  } catch (const SpawnError& e) {
    throw std::runtime_error(e.what());
  }
  // fdopen takes the descriptor over: ChildProcess must not close it too.
  const int out_fd = dup(child.stdout_fd());
  if (out_fd < 0) throw std::runtime_error(std::string("dup: ") + std::strerror(errno));
  std::FILE* from_child = fdopen(out_fd, "r");
  if (from_child == nullptr) throw std::runtime_error(std::string("fdopen: ") + std::strerror(errno));
  std::string line;
  int c;
  while ((c = std::fgetc(from_child)) != EOF) {
    if (c != '\n') {
      line.push_back(static_cast<char>(c));
      continue;
    }
    if (line.starts_with(kResultPrefix)) {
      std::fprintf(stdout, "%s\n", line.c_str() + kResultPrefix.size());
      std::fflush(stdout);
      ++results;
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    line.clear();
  }
  if (!line.empty()) std::fprintf(stderr, "%s\n", line.c_str());
  std::fclose(from_child);
  return child.wait().shell_code();
}

}  // namespace

int run_mpi_bench(const MpiBenchOptions& options, const char* program) {
  try {
    const bool harvest = options.kind == MpiBenchKind::harvest;
    const std::string library = find_library(options.library, program);
    const std::string run = find_program(options.sidecore_run,
                                         {"sidecore-run", "../runtime/sidecore-run", SIDECORE_BENCH_RUN_BUILD_PATH},
                                         "sidecore-run");
    const std::string mpi_program =
        find_program("",
                     {"sidecore-bench-mpi", "../" SIDECORE_BENCH_RELATIVE_LIBEXECDIR "/sidecore-bench-mpi",
                      SIDECORE_BENCH_LIBEXECDIR "/sidecore-bench-mpi"},
                     "");
    if (mpi_program.empty()) {
      throw std::runtime_error("cannot find sidecore-bench-mpi next to the binary or in " SIDECORE_BENCH_LIBEXECDIR);
    }

    // CPUs: the executor's workers, and one per rank.
    CoreSet executor;
    try {
      executor = CoreSet::parse(options.executor_cores);
    } catch (const CoreSetError& e) {
      throw std::runtime_error("--executor-cores: " + std::string(e.what()));
    }
    const CoreSet allowed = CoreSet::allowed();
    const unsigned ranks = harvest ? options.ranks : kLatencyRanks;
    std::vector<int> rank_cpus;
    if (!options.rank_cpus.empty()) {
      rank_cpus = parse_cpu_sequence(options.rank_cpus);
    } else if (harvest) {
      // The CPUs the executor leaves idle, as Slurm's --exact would give the ranks.
      const CoreSet idle = allowed.minus(executor);
      rank_cpus = idle.cores();
      if (rank_cpus.empty()) throw std::runtime_error("the executor takes every CPU: no CPU is left for the ranks");
    } else {
      // 0: the MPI-only caller, 1: its echo rank (next to the executor's worker), 2: the MPIX caller.
      const CoreSet idle = allowed.minus(executor);
      const int caller = idle.empty() ? allowed.cores().front() : idle.cores().front();
      rank_cpus = {caller, executor.cores().front(), caller};
    }
    for (int cpu : rank_cpus) {
      if (!allowed.contains(cpu)) {
        throw std::runtime_error(fmt::format("CPU {} is not available to this process (allowed: {})", cpu,
                                             allowed.to_string()));
      }
    }
    if (auto missing = executor.minus(allowed); !missing.empty()) {
      throw std::runtime_error("--executor-cores " + missing.to_string() + " are not available to this process");
    }
    if (harvest) {
      std::vector<int> used(rank_cpus.begin(), rank_cpus.begin() + std::min<size_t>(ranks, rank_cpus.size()));
      for (int cpu : used) {
        if (executor.contains(cpu)) {
          std::fprintf(stderr, "sidecore-bench: warning: a rank shares CPU %d with the executor; the harvest figure "
                       "assumes the executor runs on idle cores\n", cpu);
        }
      }
      if (ranks > rank_cpus.size()) {
        std::fprintf(stderr, "sidecore-bench: warning: %u ranks on %zu CPUs: ranks share CPUs\n", ranks,
                     rank_cpus.size());
      }
    }
    if (const double others = other_runnable_threads(); others >= 0.5) {
      std::fprintf(stderr, "sidecore-bench: warning: other programs are using the CPUs (%.1f threads runnable on "
                   "average besides this one): the figures will be noisy\n", others);
    }

    // mpirun refuses root unless told; the bench often runs in containers as root.
    if (geteuid() == 0) {
      setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
      setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    }

    if (!harvest) {
      // mpirun counts 3 ranks on 2 slots as oversubscribed and then has every MPI wait loop call
      // sched_yield() after each empty poll (mpi_yield_when_idle). Only one pair of ranks is ever
      // runnable here (the others sleep in sem_wait), so the oversubscription is nominal: keep
      // Open MPI's hot polling, the peer pattern's, unless the user chose otherwise.
      setenv("OMPI_MCA_mpi_yield_when_idle", "0", 0);
    }

    std::vector<std::string> command{run, "--cores", executor.to_string(), "--poll", "adaptive"};
    if (!options.verbose) command.push_back("--quiet");
    // The ranks pin themselves (before MPI_Init, so that MPI's threads follow): no binding by mpirun.
    command.insert(command.end(), {"--", options.mpirun, "-n", std::to_string(ranks), "--oversubscribe", "--bind-to",
                                   "none", mpi_program});
    if (harvest) {
      command.insert(command.end(), {"harvest", "--task-us", join(options.task_us), "--tasks",
                                     std::to_string(options.tasks), "--seconds", fmt::format("{}", options.seconds),
                                     "--window-per-worker", std::to_string(options.window_per_worker)});
    } else {
      command.insert(command.end(), {"mpi-latency", "--bytes", join(options.bytes), "--iterations",
                                     std::to_string(options.iterations), "--quiesce-us",
                                     std::to_string(options.quiesce_us)});
    }
    command.insert(command.end(), {"--rounds", std::to_string(options.rounds), "--library", library, "--rank-cpus",
                                   join(rank_cpus)});
    if (options.verbose) {
      command.push_back("-v");
      std::string shown;
      for (const auto& argument : command) shown += (shown.empty() ? "" : " ") + argument;
      std::fprintf(stderr, "sidecore-bench: running %s\n", shown.c_str());
    }

    size_t results = 0;
    const int status = run_forwarding(command, results);
    const size_t expected = harvest ? options.task_us.size() : options.bytes.size();
    if (status != 0) throw std::runtime_error(fmt::format("the MPI job failed (exit status {})", status));
    if (results != expected) {
      throw std::runtime_error(fmt::format("the MPI job printed {} results of {}", results, expected));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  }
  return 1;
}

}  // namespace sidecore::bench
