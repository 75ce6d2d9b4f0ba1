// sidecore-executor: runs an executor by hand (the Slurm plugin and sidecore-run start it too).
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "executor.hpp"
#include "executor_leftovers.hpp"
#include "fabric/error.hpp"
#include "log.hpp"
#include "provider_choice.hpp"
#include "psm_signal_handlers.hpp"
#include "supervisor.hpp"
#include "token.hpp"


int main(int argc, char** argv) {
  using namespace sidecore;
  // Before anything can crash: libfabric's PSM libraries install handlers that would write backtrace
  // files into the working directory (under Slurm, the user's job folder).
  drop_psm_signal_handlers();
  // Nor may the kernel write a core file there when a function crashes a worker: no core files from
  // this executor's processes (the hard limit stays; a core_pattern that pipes to a collector such
  // as systemd-coredump still gets the crash).
  if (rlimit core{}; getrlimit(RLIMIT_CORE, &core) == 0 && core.rlim_cur != 0) {
    core.rlim_cur = 0;
    setrlimit(RLIMIT_CORE, &core);
  }
  CLI::App app{"sidecore-executor: serve Sidecore functions on the given cores.\n\n"
               "Prints its address card on stdout as SIDECORE_EXECUTOR='...'. Callers must present the\n"
               "token from the SIDECORE_TOKEN environment variable; without one, a fresh token is\n"
               "generated and printed as SIDECORE_TOKEN=... Stops on SIGTERM, SIGINT or SIGHUP, after\n"
               "draining for at most 2.5 s: tasks that arrive are declined (callers send them to\n"
               "their other executors), the ones accepted finish.",
               "sidecore-executor"};
  app.set_version_flag("--version", std::string("sidecore-executor ") + SIDECORE_VERSION);
  std::string cores_text;
  std::string provider = "shm";
  std::string remote_provider;
  std::string poll_text = "adaptive";
  long spin_us = 1000;
  std::string card_file;
  std::vector<std::string> preload;
  unsigned credits = 64;
  bool print_stats = false;
  std::string log_level;
  unsigned restarts = 5;
  unsigned max_task_s = 0;
  bool remove_card_folder = false;
  app.add_option("--cores", cores_text,
                 "CPU list to run workers on, one pinned worker per CPU (e.g. 2-5,8); affinity: the CPUs this "
                 "process may run on (a Slurm task's own, as a lease job's executors take them)")
      ->required();
  app.add_option("--provider", provider, "libfabric provider for callers on this host: shm, tcp;ofi_rxm, net, verbs;ofi_rxm, ...")
      ->capture_default_str();
  app.add_option("--remote-provider", remote_provider,
                 "also serve callers on other hosts over this provider (tcp;ofi_rxm, verbs;ofi_rxm, cxi, ...); "
                 "auto: an RDMA provider when this node has an active RDMA port, else tcp;ofi_rxm");
  app.add_option("--poll", poll_text, "how idle workers wait: hot (busy poll), warm (sleep), adaptive (spin, then sleep)")
      ->capture_default_str();
  app.add_option("--spin-us", spin_us, "adaptive mode: microseconds to busy-poll after the last message")
      ->check(CLI::Range(0L, 10'000'000L))
      ->capture_default_str();
  app.add_option("--card-file", card_file, "also write the address card to this file once ready (atomically)");
  app.add_flag("--remove-card-folder", remove_card_folder,
               "at exit, also remove the folder of --card-file once it is empty (a folder made for this executor "
               "alone, as the Slurm plugin makes one; it then disappears even if nobody is left to remove it)");
  app.add_option("--preload", preload, "function library to load at start (repeatable)");
  app.add_option("--credits", credits, "tasks one caller may have outstanding per worker")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  app.add_flag("--stats", print_stats, "print a one-line summary (tasks, bytes, busy %, mean and p99 service time) at exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off (default: $SIDECORE_LOG_LEVEL, else info)");
  app.add_option("--max-task-s", max_task_s,
                 "bound on any task, in seconds: past it the caller gets TIMEOUT and the worker is replaced (a "
                 "caller's own timeout can only shorten it; 0: no bound)")
      ->check(CLI::Range(0u, 31'536'000u))
      ->capture_default_str();
  app.add_option("--restarts", restarts,
                 "run each worker in a process of its own and replace one that a function crashed, at most this "
                 "many times a minute in all (0: serve every worker in this process, no replacements, no deadlines)")
      ->check(CLI::Range(0u, 1000u))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // tcp;ofi_rxm posts 4096 bounce buffers of 16 KiB on each endpoint's shared receive context
  // unless told otherwise: 70 MB per endpoint, one per worker. 256 is plenty behind Sidecore's own
  // per-caller credits (messages beyond it wait in the kernel's socket buffers) and costs 18 MB;
  // latency and throughput measured the same. Its buffers are 16 KiB, where Sidecore's largest
  // message is 4 184 bytes: 8 KiB halves what the endpoint and each connection touch (docs/scaling.md).
  // An explicit setting in the environment wins.
  setenv("FI_OFI_RXM_MSG_RX_SIZE", "256", 0);
  setenv("FI_OFI_RXM_BUFFER_SIZE", "8192", 0);

  // A cross-node worker holds one connection per caller, and the liveness listener one per caller
  // on another node: thousands in a large job, past the usual soft limit of 1 024 descriptors.
  // The soft limit goes up to the hard one, which the site (or Slurm's PropagateResourceLimits) sets.
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  if (!log_level.empty()) {
    setenv("SIDECORE_LOG_LEVEL", log_level.c_str(), 1);
    set_log_level_from_env();
  }
  // A caller may be waiting on the card file (the Slurm plugin hands tasks a reference to it): tell
  // it why there will be no card instead of leaving it to time out.
  auto fail = [&card_file](const std::string& message) {
    std::fprintf(stderr, "sidecore-executor: error: %s\n", message.c_str());
    if (!card_file.empty()) {
      try {
        write_card_file(card_file, "error: " + message);
      } catch (const std::exception&) {
        // the message is on stderr; a waiting caller sees the exit instead
      }
    }
    return 1;
  };

  ExecutorConfig config;
  try {
    config.cores = cores_text == "affinity" ? CoreSet::allowed() : CoreSet::parse(cores_text);
  } catch (const CoreSetError& e) {
    return fail(e.what());
  }
  auto poll = parse_poll_mode(poll_text);
  if (!poll) return fail("unknown poll mode '" + poll_text + "' (use hot, warm or adaptive)");
  config.provider = provider;
  // Only the providers this executor uses are loaded (unless the admin chose with FI_PROVIDER).
  limit_provider_discovery(provider, remote_provider);
  if (remote_provider == "auto") {
    const ProviderChoice choice = choose_cross_node_provider();
    logger("sidecore.exec")->info("remote provider {}: {}", choice.provider, choice.reason);
    remote_provider = choice.provider;
  }
  config.remote_provider = remote_provider;
  config.worker.poll = *poll;
  config.worker.spin_window = std::chrono::microseconds(spin_us);
  config.worker.credits_per_peer = credits;
  config.worker.max_task = std::chrono::seconds(max_task_s);
  config.preload = preload;
  bool generated_token = false;
  if (const char* token = std::getenv("SIDECORE_TOKEN"); token != nullptr && *token != '\0') {
    config.token = token;
  } else {
    config.token = generate_token();
    generated_token = true;
  }

  // Its stderr is often a pipe that can lose its reader first: under Slurm, the step's stderr,
  // read by slurmstepd, which may be killed while the executor runs. A warning or the --stats
  // summary written on the way out would then kill it with SIGPIPE before it removed its card and
  // shared memory; ignored, the write fails with EPIPE and the stop goes on.
  signal(SIGPIPE, SIG_IGN);

  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string printed_token = generated_token ? config.token : std::string();
  int status = 0;
  if (restarts > 0) {
    status = supervise(config, SupervisorOptions{restarts, std::chrono::seconds(60), card_file, print_stats, printed_token});
  } else {
    // Every worker a thread of this process: a crash takes them all, nothing is replaced.
    std::unique_ptr<Executor> executor;
    if (const int removed = remove_stale_shm_regions_of_this_process(); removed > 0) {
      logger("sidecore.exec")->info("removed {} shared-memory region(s) a dead process with this pid left", removed);
    }
    try {
      executor = std::make_unique<Executor>(config);
      executor->start();
      std::printf("SIDECORE_EXECUTOR='%s'\n", executor->card_text().c_str());
      if (generated_token) std::printf("SIDECORE_TOKEN=%s\n", printed_token.c_str());
      std::fflush(stdout);
      if (!card_file.empty()) write_card_file(card_file, executor->card_text());
    } catch (const std::exception& e) {
      return fail(e.what());
    }
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    logger("sidecore.exec")->debug("stopping on signal {}", signal_number);
    executor->drain(kDrainLimit);
    executor->stop();
    if (print_stats) {
      std::fprintf(stderr, "sidecore: executor %s on %zu worker(s): %s\n", executor->card().executor_id.c_str(),
                   executor->workers(),
                   format_summary(executor->stats(), executor->running_seconds(), executor->workers()).c_str());
    }
    if (!card_file.empty()) std::remove(card_file.c_str());
  }
  // The card is gone by now (removed on stop, or by the supervisor when its server died). rmdir
  // removes only an empty folder: anything else in it stays, and so does the folder.
  if (remove_card_folder && !card_file.empty()) {
    const auto slash = card_file.find_last_of('/');
    if (slash != std::string::npos && slash > 0) rmdir(card_file.substr(0, slash).c_str());
  }
  return status;
}
