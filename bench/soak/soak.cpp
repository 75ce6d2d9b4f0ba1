// sidecore-bench soak, the bench process: starts the executor and the caller processes, samples the
// executor's memory, adds up the callers' tallies and prints the JSON line.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core_set.hpp"
#include "fabric/error.hpp"
#include "server_process.hpp"
#include "setup.hpp"
#include "sidecore/sidecore.hpp"
#include "soak/executor.hpp"
#include "soak/soak.hpp"
#include "soak/tasks.hpp"
#include "token.hpp"

namespace sidecore::bench {
namespace {

using namespace soak;
using Clock = std::chrono::steady_clock;

// One caller process: the bench re-executed as `soak-caller`, with a control pipe (ServerProcess).
struct CallerProcess {
  unsigned index;
  std::unique_ptr<ServerProcess> process;
  Tally tally;
};

std::string expect_from(CallerProcess& caller, std::string_view keyword, std::chrono::seconds timeout) {
  try {
    return caller.process->expect(keyword, timeout);
  } catch (const std::exception& e) {
    // ServerProcess names its child "the bench server"; here it is a caller.
    std::string message = e.what();
    for (size_t at; (at = message.find("bench server")) != std::string::npos;) message.replace(at, 12, "caller");
    if (message.starts_with("caller: ")) message.erase(0, 8);
    throw std::runtime_error(fmt::format("soak caller {}: {}", caller.index, message));
  }
}

void print_sizes(const Tally& total) {
  auto line = [&](const char* what, const uint64_t* classes, uint64_t bytes, uint64_t largest) {
    const uint64_t tasks = total.completed == 0 ? 1 : total.completed;
    std::string counts;
    for (size_t i = 0; i < kClasses; ++i) {
      counts += fmt::format("{}{} {} ({:.2f} %)", counts.empty() ? "" : ", ", kSizeClasses[i].name, classes[i],
                            100.0 * static_cast<double>(classes[i]) / static_cast<double>(tasks));
    }
    const std::string mean = format_bytes(std::round(static_cast<double>(bytes) / static_cast<double>(tasks)));
    std::fprintf(stderr, "sidecore-bench soak: %s sizes used: %s; mean %s, largest %s, %.2f GiB in all\n", what,
                 counts.c_str(), mean.c_str(), format_bytes(static_cast<double>(largest)).c_str(),
                 static_cast<double>(bytes) / (1 << 30));
  };
  line("input", total.in_classes, total.in_bytes, total.max_in);
  line("output", total.out_classes, total.out_bytes, total.max_out);
}

}  // namespace

int run_soak(const SoakOptions& options, const char* program) {
  try {
    use_provider_on_loopback(options.provider);

    if (options.max_bytes < kHeaderBytes) {
      throw std::runtime_error(fmt::format("--max-bytes must be at least {} (the input's header)", kHeaderBytes));
    }
    const double buffers = 2.0 * options.callers * options.window * static_cast<double>(options.max_bytes);
    if (buffers > 8.0 * (1 << 30)) {
      throw std::runtime_error(fmt::format("--callers x --window x --max-bytes x 2 needs {:.1f} GiB of caller buffers "
                                           "(at most 8 GiB)",
                                           buffers / (1 << 30)));
    }
    if (options.tasks < options.callers) throw std::runtime_error("--tasks must be at least --callers");

    CoreSet executor_cores;
    try {
      executor_cores = CoreSet::parse(options.executor_cores);
    } catch (const CoreSetError& e) {
      throw std::runtime_error("--executor-cores: " + std::string(e.what()));
    }
    const CoreSet allowed = CoreSet::allowed();
    if (auto missing = executor_cores.minus(allowed); !missing.empty()) {
      throw std::runtime_error("--executor-cores " + missing.to_string() + " are not available to this process");
    }
    // The callers run on the CPUs the executor leaves idle, as ranks do next to an executor on
    // the idle cores of their job; with none left they share the executor's.
    CoreSet caller_cpus = allowed.minus(executor_cores);
    if (caller_cpus.empty()) {
      std::fprintf(stderr, "sidecore-bench: warning: the executor takes every CPU; the callers share them\n");
      caller_cpus = allowed;
    }

    const std::string library = find_library(options.library, program);
    const std::string executor_program = find_program(
        options.executor, {"sidecore-executor", "../runtime/sidecore-executor", SIDECORE_BENCH_EXECUTOR_BUILD_PATH},
        "sidecore-executor");
    const uint64_t seed = options.seed != 0 ? options.seed : (random_u64() | 1);

    if (const double others = other_runnable_threads(); others >= 0.5) {
      std::fprintf(stderr,
                   "sidecore-bench: warning: other programs are using the CPUs (%.1f threads runnable on "
                   "average besides this one): the rate will be low and noisy\n",
                   others);
    }
    std::fprintf(stderr,
                 "sidecore-bench soak: %llu tasks from %u caller%s (%u in flight each, CPUs %s), executor "
                 "on CPUs %s over %s, seed %llu\n",
                 static_cast<unsigned long long>(options.tasks), options.callers, options.callers == 1 ? "" : "s",
                 options.window, caller_cpus.to_string().c_str(), executor_cores.to_string().c_str(),
                 options.provider.c_str(), static_cast<unsigned long long>(seed));
    std::fprintf(stderr, "sidecore-bench soak: input and output sizes, each drawn on its own: %s\n",
                 describe_sizes(options.max_bytes).c_str());

    // A child that dies shows up as an error on its control pipe, not as a silent SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    // The executor and the callers take the token from the environment (argv is world-readable).
    setenv("SIDECORE_TOKEN", generate_token().c_str(), 1);
    ExecutorChild executor(executor_program, options, library);
    setenv("SIDECORE_EXECUTOR", executor.card().c_str(), 1);

    std::vector<CallerProcess> callers;
    for (unsigned i = 0; i < options.callers; ++i) {
      const uint64_t first = options.tasks * i / options.callers;
      const uint64_t end = options.tasks * (i + 1) / options.callers;
      std::vector<std::string> arguments{"soak-caller",
                                         "--index",
                                         std::to_string(i),
                                         "--first",
                                         std::to_string(first),
                                         "--count",
                                         std::to_string(end - first),
                                         "--max-bytes",
                                         std::to_string(options.max_bytes),
                                         "--seed",
                                         std::to_string(seed),
                                         "--window",
                                         std::to_string(options.window),
                                         "--library",
                                         library,
                                         "--cpus",
                                         caller_cpus.to_string()};
      if (options.verbose) arguments.push_back("-v");
      callers.push_back({i, std::make_unique<ServerProcess>(arguments), {}});
    }
    for (auto& caller : callers) expect_from(caller, "ready", std::chrono::seconds(300));

    // Memory after the warm-up, when every caller is connected and every buffer has its size.
    const Memory start_memory = read_memory(executor.pid());
    if (start_memory.rss < 0) throw std::runtime_error("cannot read the executor's VmRSS");
    RssSampler sampler(executor.pid(), start_memory.rss, options.verbose);
    const auto start = Clock::now();
    for (auto& caller : callers) caller.process->send("go");
    Tally total;
    // No time limit here: a caller whose tasks stop completing reports them lost after 60 s.
    for (auto& caller : callers) {
      caller.tally = Tally::from_line(expect_from(caller, "result", std::chrono::hours(24 * 7)));
      total.add(caller.tally);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    sampler.stop();
    const Memory end_memory = read_memory(executor.pid());
    const long peak = std::max(sampler.peak(), end_memory.rss);
    for (auto& caller : callers) {
      if (!caller.process->quit()) {
        std::fprintf(stderr, "sidecore-bench: warning: soak caller %u did not exit cleanly\n", caller.index);
      }
    }
    const Memory after_memory = read_memory(executor.pid());
    if (!executor.stop()) std::fprintf(stderr, "sidecore-bench: warning: the executor did not exit cleanly\n");

    print_sizes(total);
    if (options.verbose) {
      for (auto& caller : callers) {
        std::fprintf(stderr, "sidecore-bench soak: caller %u: %llu tasks in %.1f s\n", caller.index,
                     static_cast<unsigned long long>(caller.tally.completed), caller.tally.milliseconds / 1000.0);
      }
      std::fprintf(stderr, "sidecore-bench soak: executor memory at start: %s\n", describe(start_memory).c_str());
      std::fprintf(stderr, "sidecore-bench soak: executor memory at end:   %s\n", describe(end_memory).c_str());
      std::fprintf(stderr, "sidecore-bench soak: executor memory once the callers had left: %s\n",
                   describe(after_memory).c_str());
      std::fprintf(stderr, "sidecore-bench soak: %llu memory samples, %.2f GB/s of task data moved and checked\n",
                   static_cast<unsigned long long>(sampler.samples()),
                   static_cast<double>(total.in_bytes + total.out_bytes) / seconds / 1e9);
    }

    const uint64_t corrupted = total.corrupted_inputs + total.corrupted_outputs;
    // Tasks that completed and passed every check; in a clean run, all of them.
    const uint64_t good = total.completed - std::min(total.completed, corrupted + total.failed);
    // null where the executor could no longer be read (it died).
    const bool ended = end_memory.rss >= 0;
    const std::string end_kib = ended ? std::to_string(end_memory.rss) : "null";
    const std::string growth_kib = ended ? std::to_string(end_memory.rss - start_memory.rss) : "null";
    std::printf("%s\n",
                fmt::format("{{\"bench\":\"soak\",\"provider\":\"{}\",\"tasks\":{},\"callers\":{},\"max_bytes\":{},"
                            "\"seed\":{},\"seconds\":{:.3f},\"tasks_per_s\":{:.0f},\"bytes_verified\":{},\"lost\":{},"
                            "\"duplicated\":{},\"corrupted\":{},\"failed\":{},\"rss_start_kib\":{},\"rss_peak_kib\":{},"
                            "\"rss_end_kib\":{},\"rss_growth_kib\":{}}}",
                            options.provider, options.tasks, options.callers, options.max_bytes, seed, seconds,
                            static_cast<double>(good) / seconds, total.bytes_verified, total.lost, total.duplicated,
                            corrupted, total.failed, start_memory.rss, peak, end_kib, growth_kib)
                    .c_str());
    std::fflush(stdout);
    if (!total.clean()) {
      std::fprintf(stderr,
                   "sidecore-bench soak: error: %llu lost, %llu duplicated, %llu corrupted (%llu inputs, %llu "
                   "outputs), %llu failed\n",
                   static_cast<unsigned long long>(total.lost), static_cast<unsigned long long>(total.duplicated),
                   static_cast<unsigned long long>(corrupted), static_cast<unsigned long long>(total.corrupted_inputs),
                   static_cast<unsigned long long>(total.corrupted_outputs),
                   static_cast<unsigned long long>(total.failed));
      return 1;
    }
    return 0;
  } catch (const fabric::FabricError& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  } catch (const Error& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  }
  return 1;
}

}  // namespace sidecore::bench
