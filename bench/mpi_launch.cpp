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
// mpi-latency and mpi-throughput: MPI-only caller, echo or worker rank, MPIX caller, taking turns.
constexpr size_t kTurnRanks = 3;

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
    const std::string run =
        find_program(options.sidecore_run, {"sidecore-run", "../runtime/sidecore-run", SIDECORE_BENCH_RUN_BUILD_PATH},
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
    if (auto missing = executor.minus(allowed); !missing.empty()) {
      throw std::runtime_error("--executor-cores " + missing.to_string() + " are not available to this process");
    }
    const std::vector<int> executor_cpus = executor.cores();
    const CoreSet idle = allowed.minus(executor);
    // The CPU of each rank of the job, in rank order.
    std::vector<int> rank_cpus;
    unsigned worker_ranks = 0;
    if (harvest) {
      // The farm ranks' CPUs: --rank-cpus, or those the executor leaves idle, as Slurm's --exact would
      // give the ranks. The job has both farms (the MPI-only one first, Sidecore's last), each with
      // --ranks ranks on those CPUs, and one MPI-only worker rank per executor worker on its CPU.
      std::vector<int> farm_cpus = options.rank_cpus.empty() ? idle.cores() : parse_cpu_sequence(options.rank_cpus);
      if (farm_cpus.empty()) throw std::runtime_error("the executor takes every CPU: no CPU is left for the ranks");
      worker_ranks = static_cast<unsigned>(executor_cpus.size());
      for (unsigned r = 0; r < options.ranks; ++r) rank_cpus.push_back(farm_cpus[r % farm_cpus.size()]);
      rank_cpus.insert(rank_cpus.end(), executor_cpus.begin(), executor_cpus.end());
      for (unsigned r = 0; r < options.ranks; ++r) rank_cpus.push_back(farm_cpus[r % farm_cpus.size()]);
      for (size_t r = 0; r < std::min<size_t>(options.ranks, farm_cpus.size()); ++r) {
        if (executor.contains(farm_cpus[r])) {
          std::fprintf(stderr,
                       "sidecore-bench: warning: a rank shares CPU %d with the executor; the harvest figure "
                       "assumes the executor runs on idle cores\n",
                       farm_cpus[r]);
        }
      }
      if (options.ranks > farm_cpus.size()) {
        std::fprintf(stderr, "sidecore-bench: warning: %u ranks on %zu CPUs: ranks share CPUs\n", options.ranks,
                     farm_cpus.size());
      }
    } else if (!options.rank_cpus.empty()) {
      rank_cpus = parse_cpu_sequence(options.rank_cpus);
    } else {
      // 0: the MPI-only caller, 1: its echo or worker rank (next to the executor's worker), 2: the
      // MPIX caller.
      const int caller = idle.empty() ? allowed.cores().front() : idle.cores().front();
      rank_cpus = {caller, executor_cpus.front(), caller};
    }
    for (int cpu : rank_cpus) {
      if (!allowed.contains(cpu)) {
        throw std::runtime_error(
            fmt::format("CPU {} is not available to this process (allowed: {})", cpu, allowed.to_string()));
      }
    }
    const unsigned ranks = static_cast<unsigned>(harvest ? rank_cpus.size() : kTurnRanks);
    if (const double others = other_runnable_threads(); others >= 0.5) {
      std::fprintf(stderr,
                   "sidecore-bench: warning: other programs are using the CPUs (%.1f threads runnable on "
                   "average besides this one): the figures will be noisy\n",
                   others);
    }

    // mpirun refuses root unless told; the bench often runs in containers as root.
    if (geteuid() == 0) {
      setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
      setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    }

    // mpirun counts more ranks than slots as oversubscribed and then has every MPI wait loop call
    // sched_yield() after each empty poll (mpi_yield_when_idle). Only one group of ranks is ever
    // runnable here (the others sleep in sem_wait), so the oversubscription is nominal: keep Open
    // MPI's hot polling, the peer pattern's, unless the user chose otherwise.
    setenv("OMPI_MCA_mpi_yield_when_idle", "0", 0);

    std::vector<std::string> command{run, "--cores", executor.to_string(), "--poll", "adaptive"};
    if (!options.verbose) command.push_back("--quiet");
    // The ranks pin themselves (before MPI_Init, so that MPI's threads follow): no binding by mpirun.
    command.insert(command.end(), {"--", options.mpirun, "-n", std::to_string(ranks)});
    if (*SIDECORE_BENCH_MPIRUN_OVERSUBSCRIBE) command.push_back(SIDECORE_BENCH_MPIRUN_OVERSUBSCRIBE);
    command.insert(command.end(), {"--bind-to", "none", mpi_program});
    if (harvest) {
      command.insert(command.end(),
                     {"harvest", "--task-us", join(options.task_us), "--tasks", std::to_string(options.tasks),
                      "--seconds", fmt::format("{}", options.seconds), "--window-per-worker",
                      std::to_string(options.window_per_worker), "--worker-ranks", std::to_string(worker_ranks)});
    } else if (options.kind == MpiBenchKind::mpi_latency) {
      command.insert(command.end(), {"mpi-latency", "--bytes", join(options.bytes), "--iterations",
                                     std::to_string(options.iterations ? options.iterations : 2000)});
    } else {
      command.insert(command.end(),
                     {"throughput", "--bytes", join(options.bytes), "--window", std::to_string(options.window),
                      "--iterations", std::to_string(options.iterations ? options.iterations : 20000)});
    }
    command.insert(command.end(),
                   {"--quiesce-us", std::to_string(options.quiesce_us), "--rounds", std::to_string(options.rounds),
                    "--library", library, "--rank-cpus", join(rank_cpus), "--transport", options.transport});
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
