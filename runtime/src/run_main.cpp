// sidecore-run: start an executor on this machine, run a command with SIDECORE_EXECUTOR (a
// reference to the executor's card), SIDECORE_TOKEN and SIDECORE_CORES set, stop the executor when
// the command ends, and exit with the command's status.
#include <CLI/CLI.hpp>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "card.hpp"
#include "card_reference.hpp"
#include "core_set.hpp"
#include "executor_leftovers.hpp"
#include "poll_mode.hpp"
#include "process/card_wait.hpp"
#include "process/child_process.hpp"
#include "token.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

volatile sig_atomic_t received_signal = 0;
volatile pid_t command_pid = -1;

// TERM and HUP go on to the command; Ctrl-C's SIGINT has reached it from the terminal already.
// sidecore-run itself stays, to stop the executor and clean up once the command has ended.
void on_signal(int signal_number) {
  received_signal = signal_number;
  if (command_pid > 0 && signal_number != SIGINT) kill(command_pid, signal_number);
}

// Thrown out of the card wait when a signal asks sidecore-run to give up.
struct Interrupted {};

int fail(const std::string& message) {
  std::fprintf(stderr, "sidecore-run: error: %s\n", message.c_str());
  return 125;  // like env(1) and timeout(1): the wrapper itself failed
}

std::string default_executor() {
  std::error_code error;
  auto self = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    auto sibling = self.parent_path() / "sidecore-executor";
    if (access(sibling.c_str(), X_OK) == 0) return sibling;
  }
  return "sidecore-executor";  // from PATH
}

// A folder of our own for the executor's card, under $TMPDIR or /tmp (never the current folder),
// removed with everything in it when sidecore-run returns, however it ends.
class PrivateFolder {
 public:
  PrivateFolder() {
    const char* tmpdir = std::getenv("TMPDIR");
    std::error_code error;
    const fs::path base = tmpdir != nullptr && tmpdir[0] == '/' && fs::is_directory(tmpdir, error) ? tmpdir : "/tmp";
    std::string pattern = (base / "sidecore-run.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("cannot create a private folder under " + base.string() + ": " + std::strerror(errno));
    }
    path_ = pattern;
  }
  ~PrivateFolder() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  PrivateFolder(const PrivateFolder&) = delete;
  PrivateFolder& operator=(const PrivateFolder&) = delete;
  const fs::path& path() const noexcept { return path_; }

 private:
  fs::path path_;
};

// The parent's environment with `changes` ("KEY=VALUE") put in, replacing any same KEY.
std::vector<std::string> environment_with(const std::vector<std::string>& changes) {
  auto key_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> result;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text(*entry);
    bool replaced = false;
    for (const auto& change : changes) replaced = replaced || key_of(change) == key_of(text);
    if (!replaced) result.push_back(text);
  }
  result.insert(result.end(), changes.begin(), changes.end());
  return result;
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (int signal_number : {SIGTERM, SIGHUP, SIGINT}) {
    struct sigaction previous {};
    sigaction(signal_number, nullptr, &previous);
    if (previous.sa_handler == SIG_IGN) continue;  // nohup, or a shell's background job: keep it so
    sigaction(signal_number, &action, nullptr);
  }
}

// Stops the executor and, when it could not clean up after itself, removes its shared memory.
void stop_executor(sidecore::ChildProcess& executor, const std::string& first_card, const std::string& card_file) {
  using namespace sidecore;
  // Read before the stop, which removes it: replaced workers are in this card, not in the first.
  const CardFile last = read_card_file(card_file);
  const ExitStatus status = executor.stop(5000ms);
  if (executor.needed_kill()) std::fprintf(stderr, "sidecore-run: the executor did not stop within 5 s; killed it\n");
  if (status.kind != ExitStatus::Kind::signaled || status.value == SIGTERM) return;
  // It died during the run (or had to be killed): it could not clean up after itself.
  if (!executor.needed_kill()) std::fprintf(stderr, "sidecore-run: the executor %s during the run\n", status.describe().c_str());
  for (const auto& card : {first_card, last.state == CardFile::State::card ? last.text : std::string()}) {
    try {
      if (!card.empty()) remove_executor_leftovers(parse_card(card));
    } catch (const CardError&) {
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sidecore;
  CLI::App app{"sidecore-run: run COMMAND with a Sidecore executor on this machine.\n\n"
               "Starts sidecore-executor, exports SIDECORE_EXECUTOR (a reference to the executor's card,\n"
               "kept in a private folder under $TMPDIR), SIDECORE_TOKEN and SIDECORE_CORES to\n"
               "COMMAND, stops the executor (printing its summary) when COMMAND ends, and exits with\n"
               "COMMAND's status (125 when sidecore-run itself fails).",
               "sidecore-run"};
  app.set_version_flag("--version", std::string("sidecore-run ") + SIDECORE_VERSION);
  std::string cores_text;
  std::string provider = "shm";
  std::string poll_text = "adaptive";
  std::string executor_path = default_executor();
  double ready_timeout = 10.0;
  unsigned max_task_s = 0;
  bool quiet = false;
  std::vector<std::string> command;
  app.add_option("--cores", cores_text, "CPU list for the executor's workers (default: every CPU this process may use)");
  app.add_option("--provider", provider, "libfabric provider for the executor")->capture_default_str();
  app.add_option("--poll", poll_text, "executor poll mode: hot, warm or adaptive")->capture_default_str();
  app.add_option("--executor", executor_path, "sidecore-executor binary to start")->capture_default_str();
  app.add_option("--ready-timeout", ready_timeout, "seconds to wait for the executor to come up")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_option("--max-task-s", max_task_s,
                 "bound on any task, in seconds: past it the caller gets TIMEOUT and the worker is replaced (0: none)")
      ->check(CLI::Range(0u, 31'536'000u))
      ->capture_default_str();
  app.add_flag("--quiet", quiet, "do not print the executor's summary at the end");
  app.add_option("command", command, "the command to run, after --")->required();
  app.positionals_at_end();
  CLI11_PARSE(app, argc, argv);

  CoreSet cores;
  try {
    cores = cores_text.empty() ? CoreSet::allowed() : CoreSet::parse(cores_text);
  } catch (const CoreSetError& e) {
    return fail(e.what());
  }
  if (auto missing = cores.minus(CoreSet::online()); !missing.empty()) {
    return fail("cores " + missing.to_string() + " do not exist on this machine (it has " +
                CoreSet::online().to_string() + ")");
  }
  if (!parse_poll_mode(poll_text)) return fail("unknown poll mode '" + poll_text + "' (use hot, warm or adaptive)");

  install_signal_handlers();
  std::optional<PrivateFolder> folder;
  try {
    folder.emplace();
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  const std::string card_file = (folder->path() / "card").string();
  const std::string token = generate_token();
  const std::string cores_list = cores.to_string();
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(ready_timeout));

  SpawnOptions executor_options;
  executor_options.argv = {executor_path, "--cores", cores_list, "--provider", provider, "--poll", poll_text,
                           "--card-file", card_file, "--remove-card-folder"};
  if (max_task_s > 0) executor_options.argv.insert(executor_options.argv.end(), {"--max-task-s", std::to_string(max_task_s)});
  if (!quiet) executor_options.argv.push_back("--stats");
  std::vector<std::string> executor_env{"SIDECORE_TOKEN=" + token};  // not argv: argv is world-readable
  if (std::getenv("SIDECORE_LOG_LEVEL") == nullptr) executor_env.push_back("SIDECORE_LOG_LEVEL=warn");  // quiet terminal
  executor_options.env = environment_with(executor_env);
  executor_options.out = Stdio::null();  // it prints its card there: keep the command's stdout clean
  // Its own process group, so that Ctrl-C reaches the command only: the executor serves until the
  // command has ended. Should sidecore-run be killed outright, the executor stops (and removes
  // its card folder) by itself.
  executor_options.group = SpawnOptions::Group::own_group;
  executor_options.parent_death_signal = SIGTERM;
  ChildProcess executor;
  try {
    executor = ChildProcess::spawn(executor_options);
  } catch (const SpawnError& e) {
    return fail(std::string("cannot start the executor: ") + e.what());
  }

  std::string card;
  try {
    CardWriter writer = card_writer(executor);
    writer.running = [&executor] {
      if (received_signal != 0) throw Interrupted{};
      return executor.running();
    };
    card = wait_for_card(card_file, writer, timeout);
    parse_card(card);
  } catch (const Interrupted&) {
    executor.stop(2000ms);
    return 128 + received_signal;
  } catch (const CardError& e) {
    executor.stop(2000ms);
    return fail(e.what());
  }

  // A reference, not the card itself: when the executor restarts a server, the card file is
  // rewritten, and callers re-read it (card_reference.hpp).
  SpawnOptions command_options;
  command_options.argv = command;
  // As a shell would run it: what we catch is default again after exec, what we ignore stays so,
  // and descriptors the user handed us (`3>log`) reach it.
  command_options.reset_signals = false;
  command_options.keep_descriptors = true;
  command_options.env = environment_with({"SIDECORE_EXECUTOR=" + format_card_reference(card_file, executor.pid(), timeout),
                                          "SIDECORE_TOKEN=" + token, "SIDECORE_CORES=" + cores_list});
  ChildProcess child;
  try {
    child = ChildProcess::spawn(command_options);
  } catch (const SpawnError& e) {
    std::fprintf(stderr, "sidecore-run: error: cannot run '%s': %s\n", command.front().c_str(),
                 std::strerror(e.error_number()));
    stop_executor(executor, card, card_file);
    return e.error_number() == ENOENT ? 127 : 126;
  }
  command_pid = child.pid();
  // A TERM or HUP that came while the command started up.
  if (received_signal != 0 && received_signal != SIGINT) child.signal(received_signal);
  const ExitStatus status = child.wait();
  command_pid = -1;
  stop_executor(executor, card, card_file);
  return status.shell_code();
}
