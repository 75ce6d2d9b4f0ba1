// sidecore-bench: Sidecore's latency, throughput and bandwidth next to a raw libfabric baseline
// measured in the same run, between the same two processes, so every ratio comes from one run; an
// idle executor's wake-up and CPU use (wake); and
// the MPI extension's figures (harvest, mpi-latency, mpi-throughput) next to plain MPI, in one MPI
// job each (mpi_command.cpp); soak (soak/).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "log.hpp"
#include "measure.hpp"
#include "mpi_launch.hpp"
#include "options.hpp"
#include "server.hpp"
#include "soak/soak.hpp"

namespace {

using sidecore::bench::BenchKind;
using sidecore::bench::BenchOptions;

struct Subcommand {
  BenchKind kind;
  const char* description;
  const char* default_bytes;
  const char* iterations_help;
};

constexpr Subcommand kSubcommands[] = {
    {BenchKind::latency,
     "Median round trip of one task (function 'echo', N bytes in and out) against fi_send of N bytes and an "
     "N-byte reply.",
     "64", "round trips per round and side (0: 2000)"},
    {BenchKind::throughput,
     "Tasks per second, one caller to one worker with a window of tasks in flight (function 'echo'), against "
     "the same window of raw messages echoed.",
     "64", "tasks per round and side (0: 20000)"},
    {BenchKind::bandwidth,
     "An N-byte input moved to the executor (function 'consume', 8-byte answer) against the server fi_read'ing "
     "N bytes from the client's registered buffer and answering. Figures in GB/s (10^9 bytes/s).",
     "67108864", "transfers per round and side (0: about 256 MiB worth, 2 to 1000)"},
    {BenchKind::wake,
     "The idle targets of an adaptive executor: each round sleeps --idle-ms (the worker leaves its spin window "
     "and sleeps), then times one 64-byte 'echo' round trip (first_task_us); then the median of --iterations "
     "back-to-back round trips (warm_rtt_us) and the worker's CPU time over --idle-window-s seconds of idleness "
     "(idle_cpu_percent, of one core). No raw baseline.",
     "64", "warm round trips after the rounds"},
};

std::string failure_line(const CLI::App*, const CLI::Error& e) {
  std::string message = e.what();
  for (char& c : message) {
    if (c == '\n') c = ' ';
  }
  return "sidecore-bench: error: " + message + " (see --help)\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sidecore-bench: Sidecore next to a baseline measured in the same run.\n\n"
      "latency, throughput, bandwidth: start a server child pinned to --server-cpu that hosts both the\n"
      "executor (one worker) and a raw libfabric endpoint, pin this process to --client-cpu, alternate\n"
      "rounds of the two sides and print one JSON object per size on stdout.\n"
      "wake: the same two processes, without the raw side: the first task after an idle period, the warm\n"
      "round trip and the idle executor's CPU use, one JSON object.\n"
      "harvest, mpi-latency, mpi-throughput: run one MPI job under `sidecore-run --cores EXECUTOR_CORES --\n"
      "mpirun ...` (program sidecore-bench-mpi), Sidecore next to the MPI-only pattern in alternating rounds,\n"
      "and print one JSON object per task length or size on stdout.\n"
      "soak: one executor, caller processes and a million checked tasks of random sizes; one JSON object.\n"
      "Progress, warnings and errors go to stderr.",
      "sidecore-bench"};
  // --help lists every subcommand with all its options and defaults.
  app.set_help_flag();
  app.set_help_all_flag("-h,--help", "Print this help (every subcommand and option) and exit");
  app.failure_message(failure_line);
  app.require_subcommand(1);

  BenchOptions options;
  std::vector<std::string> bytes_text;
  std::string poll_text = "adaptive";
  for (const auto& sub : kSubcommands) {
    CLI::App* command = app.add_subcommand(std::string(to_string(sub.kind)), sub.description);
    command->callback([&options, kind = sub.kind] { options.kind = kind; });
    command->add_option("--provider", options.provider, "libfabric provider: shm, tcp;ofi_rxm or net")
        ->capture_default_str();
    command
        ->add_option("--transport", options.transport,
                     "how the client reaches the executor on this host: auto (its node-local rings, where the "
                     "provider is shm), rings (the same, failing where the client does not take them) or "
                     "fabric (the provider)")
        ->check(CLI::IsMember({"auto", "rings", "fabric"}))
        ->capture_default_str();
    const bool wake = sub.kind == BenchKind::wake;
    if (wake) {
      command->add_option("--rounds", options.rounds, "first tasks, each after an idle period")
          ->check(CLI::Range(1u, 100000u))
          ->capture_default_str();
      command->add_option("--iterations", options.iterations, sub.iterations_help)
          ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}))
          ->default_str("20");
      command->add_option("--idle-ms", options.idle_ms, "milliseconds the client sleeps before each first task")
          ->check(CLI::Range(1u, 60000u))
          ->capture_default_str();
      command
          ->add_option("--idle-window-s", options.idle_window_s,
                       "seconds over which the idle executor's CPU time is measured")
          ->check(CLI::Range(1u, 60u))
          ->capture_default_str();
      // The idle targets are those of the adaptive mode, the executor's default.
      command->add_option("--poll", poll_text, "executor worker poll mode: adaptive only (the targets' mode)")
          ->check(CLI::IsMember({"adaptive"}))
          ->capture_default_str();
    } else {
      command->add_option("--bytes", bytes_text, "sizes in bytes, repeatable or comma-separated; K, M, G suffixes")
          ->delimiter(',')
          ->default_str(sub.default_bytes);
      command->add_option("--rounds", options.rounds, "rounds of each side, alternated")
          ->check(CLI::Range(1u, 100000u))
          ->capture_default_str();
      command->add_option("--iterations", options.iterations, sub.iterations_help)->default_str("0");
      command
          ->add_option("--poll", poll_text,
                       "executor worker poll mode: adaptive or warm (hot would spin through "
                       "the raw rounds)")
          ->check(CLI::IsMember({"adaptive", "warm"}))
          ->capture_default_str();
    }
    if (sub.kind == BenchKind::throughput) {
      command->add_option("--window", options.window, "tasks (and raw messages) in flight")
          ->check(CLI::Range(1u, 1024u))
          ->capture_default_str();
    }
    command->add_option("--spin-us", options.spin_us, "adaptive: microseconds the worker spins after its last task")
        ->check(CLI::Range(0L, 100000L))
        ->capture_default_str();
    command->add_option("--client-cpu", options.client_cpu, "CPU of this process")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    command->add_option("--server-cpu", options.server_cpu, "CPU of the server child (executor worker, raw echo)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
    command->add_option("--library", options.library,
                        "bench function library (default: libsidecore_bench_functions.so next to the binary)");
    command->add_option("--server-netns", options.server_netns,
                        "run the server child in this network namespace (ip netns name, needs root), e.g. "
                        "sidecore-node2 of slurm/local-cluster.sh up --nodes 2: a round trip between two "
                        "simulated nodes (bench/cross-node.sh)");
    command->add_flag("-v,--verbose", options.verbose, "per-size sample counts and quantiles on stderr");
  }

  // The MPI subcommands (harvest, mpi-latency, mpi-throughput): one MPI job each, started under
  // sidecore-run; options and running live in mpi_command.cpp.
  sidecore::bench::MpiCommands mpi;
  mpi.add_to(app);

  // The server child: re-executed by the bench itself, hidden from --help.
  sidecore::bench::ServerOptions server;
  std::string server_poll = "adaptive";
  CLI::App* serve = app.add_subcommand("serve", "internal: the bench's server child")->group("");
  serve->add_option("--provider", server.provider)->required();
  serve->add_option("--cpu", server.cpu)->required();
  serve->add_option("--library", server.library)->required();
  serve->add_option("--poll", server_poll);
  serve->add_option("--spin-us", server.spin_us);
  serve->add_option("--credits", server.credits)->check(CLI::Range(1u, 4096u));
  serve->add_option("--netns", server.netns);

  // soak and its hidden caller child: options and running live in soak/.
  sidecore::bench::SoakCommand soak;
  soak.add_to(app);

  CLI11_PARSE(app, argc, argv);

  if (soak.selected()) return soak.run(argv[0]);

  if (serve->parsed()) {
    const auto mode = sidecore::parse_poll_mode(server_poll);
    if (!mode) {
      std::fprintf(stderr, "sidecore-bench serve: unknown poll mode '%s'\n", server_poll.c_str());
      return 2;
    }
    server.poll = *mode;
    return sidecore::bench::run_server(server);
  }

  if (mpi.selected()) return mpi.run(argv[0]);

  options.poll = *sidecore::parse_poll_mode(poll_text);
  for (const auto& sub : kSubcommands) {
    if (sub.kind == options.kind && bytes_text.empty()) bytes_text.push_back(sub.default_bytes);
  }
  for (const auto& text : bytes_text) {
    std::string error;
    const auto bytes = sidecore::bench::parse_byte_count(text, error);
    if (!bytes) {
      std::fprintf(stderr, "sidecore-bench: error: --bytes %s\n", error.c_str());
      return 2;
    }
    if (options.kind == BenchKind::bandwidth && *bytes == 0) {
      std::fprintf(stderr, "sidecore-bench: error: --bytes 0: bandwidth needs at least one byte\n");
      return 2;
    }
    options.bytes.push_back(*bytes);
  }
  // Quiet libraries unless asked: stdout carries only JSON, and the executor's start-up line is noise.
  setenv("SIDECORE_LOG_LEVEL", options.verbose ? "info" : "warn", 0);
  sidecore::set_log_level_from_env();
  return sidecore::bench::run_bench(options, argv[0]);
}
