#include "supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include "card.hpp"
#include "executor_leftovers.hpp"
#include "liveness_listener.hpp"
#include "log.hpp"
#include "shared_state.hpp"
#include "token.hpp"

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTick = std::chrono::milliseconds(20);        // how often deadlines are checked
constexpr int64_t kDeadlineSlackNs = 100'000'000;            // callers time out first, then the worker goes
constexpr auto kStopGrace = std::chrono::seconds(3);         // then workers still stopping are killed
static_assert(kDrainLimit < kStopGrace, "a worker process drains (executor.hpp) within the grace it is given");
constexpr size_t kMaxReportBytes = 3500;                     // below PIPE_BUF: one report, one write

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

class Supervisor {
 public:
  Supervisor(const ExecutorConfig& config, const SupervisorOptions& options) : config_(config), options_(options) {}
  ~Supervisor() { SharedState::destroy(shared_); }
  int run();

 private:
  struct WorkerProcess {
    int core = -1;
    pid_t pid = -1;
    bool reported = false;       // sent its card since it started
    bool killed_stuck = false;   // we killed it for running past a deadline
  };

  void start_worker(unsigned index);
  [[noreturn]] void serve_worker(unsigned index);
  void read_reports();
  void on_report(unsigned index, std::string_view kind, std::string_view text);
  void reap();
  void on_worker_exit(unsigned index, int status);
  void check_deadlines();
  void begin_stop(int signal_number);
  void publish();
  int fail(const std::string& message);
  // The one-worker card of worker `index` as it is now: what leftovers of it to remove.
  ExecutorCard part_card(unsigned index) const;

  const ExecutorConfig& config_;
  const SupervisorOptions& options_;
  pid_t self_ = getpid();
  SharedState* shared_ = nullptr;
  Doorbell doorbell_;
  std::unique_ptr<LivenessListener> liveness_;
  int signal_fd_ = -1;
  int report_fds_[2] = {-1, -1};
  std::string pending_reports_;
  std::vector<WorkerProcess> workers_;
  ExecutorCard card_;
  bool published_ = false;
  bool doorbell_used_ = false;  // a worker sleeps on it: callers must ring it
  bool stopping_ = false;
  int exit_status_ = 0;
  Clock::time_point started_{}, stop_began_{};
  std::deque<Clock::time_point> restarts_;
};

int Supervisor::fail(const std::string& message) {
  std::fprintf(stderr, "sidecore-executor: error: %s\n", message.c_str());
  if (!options_.card_file.empty()) {
    try {
      write_card_file(options_.card_file, "error: " + message);  // a caller waiting on it learns why
    } catch (const std::exception&) {
    }
  }
  exit_status_ = 1;
  begin_stop(SIGTERM);
  return 1;
}

void Supervisor::start_worker(unsigned index) {
  WorkerProcess& worker = workers_[index];
  worker.reported = false;
  worker.killed_stuck = false;
  for (auto& deadline : shared_->slot(index).deadline_ns) deadline.store(0);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = fork();
  if (child == 0) serve_worker(index);
  worker.pid = child;
  if (child < 0) {
    fail(std::string("fork: ") + std::strerror(errno));
  }
}

void Supervisor::serve_worker(unsigned index) {
  // A worker never outlives its supervisor (a SIGKILL for the step reaches the supervisor first).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != self_) _exit(1);
  close(signal_fd_);
  close(report_fds_[0]);
  if (liveness_) liveness_->close_after_fork();
  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  pthread_sigmask(SIG_UNBLOCK, &child, nullptr);  // TERM, INT and HUP stay blocked for sigwait below
  auto report = [&](const std::string& line) {
    std::string message = std::to_string(index) + " " + line;
    if (message.size() > kMaxReportBytes) message.resize(kMaxReportBytes);
    message.push_back('\n');
    [[maybe_unused]] ssize_t written = write(report_fds_[1], message.data(), message.size());
  };
  int status = 0;
  {
    if (const int removed = remove_stale_shm_regions_of_this_process(); removed > 0) {
      logger("sidecore.exec")->info("removed {} shared-memory region(s) a dead process with this pid left", removed);
    }
    std::unique_ptr<Executor> executor;
    try {
      ExecutorConfig mine = config_;
      mine.cores = CoreSet::parse(std::to_string(workers_[index].core));
      mine.part = ExecutorConfig::Part{card_.executor_id, index, static_cast<unsigned>(workers_.size()), card_.doorbell,
                                       shared_};
      executor = std::make_unique<Executor>(std::move(mine));
      executor->start();
      report("card " + executor->card_text());
    } catch (const std::exception& e) {
      report(std::string("error ") + e.what());
      status = 1;
    }
    if (executor) {
      sigset_t stop;
      sigemptyset(&stop);
      for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop, s);
      int signal_number = 0;
      sigwait(&stop, &signal_number);
      executor->drain(kDrainLimit);
      executor->stop();
    }
  }  // the executor closes its endpoints here, which removes their shared memory
  std::fflush(stderr);
  _exit(status);
}

ExecutorCard Supervisor::part_card(unsigned index) const {
  ExecutorCard part;
  part.provider = card_.provider;
  if (index < card_.worker_addresses.size()) part.worker_addresses.push_back(card_.worker_addresses[index]);
  if (!card_.remote_provider.empty() && index < card_.remote_addresses.size()) {
    part.remote_provider = card_.remote_provider;
    part.remote_addresses.push_back(card_.remote_addresses[index]);
  }
  return part;
}

void Supervisor::read_reports() {
  char buffer[4096];
  ssize_t got;
  while ((got = read(report_fds_[0], buffer, sizeof buffer)) > 0) pending_reports_.append(buffer, static_cast<size_t>(got));
  for (size_t end; (end = pending_reports_.find('\n')) != std::string::npos; pending_reports_.erase(0, end + 1)) {
    const std::string_view line(pending_reports_.data(), end);
    const size_t first = line.find(' ');
    const size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
    if (second == std::string_view::npos) continue;
    const unsigned index = static_cast<unsigned>(std::strtoul(std::string(line.substr(0, first)).c_str(), nullptr, 10));
    if (index >= workers_.size()) continue;
    on_report(index, line.substr(first + 1, second - first - 1), line.substr(second + 1));
  }
}

void Supervisor::on_report(unsigned index, std::string_view kind, std::string_view text) {
  WorkerProcess& worker = workers_[index];
  if (kind == "error") {
    if (!published_ && !stopping_) {
      fail(std::string(text));
    } else {
      std::fprintf(stderr, "sidecore-executor: worker %u on CPU %d could not start again: %.*s\n", index, worker.core,
                   static_cast<int>(text.size()), text.data());
    }
    return;
  }
  if (kind != "card" || stopping_) return;
  ExecutorCard part;
  try {
    part = parse_card(text);
  } catch (const CardError& e) {
    fail(std::string("worker reported a card this build cannot read: ") + e.what());
    return;
  }
  card_.worker_addresses[index] = part.worker_addresses.at(0);
  if (!part.remote_provider.empty()) {
    card_.remote_provider = part.remote_provider;
    card_.remote_addresses[index] = part.remote_addresses.at(0);
  }
  if (!part.doorbell.empty()) doorbell_used_ = true;
  if (part.rings) card_.rings = true;
  card_.worker_pids[index] = worker.pid;
  worker.reported = true;
  if (published_) {
    publish();
    logger("sidecore.exec")->info("worker {} on CPU {} serves again (pid {})", index, worker.core, worker.pid);
    return;
  }
  for (const auto& other : workers_) {
    if (!other.reported) return;
  }
  publish();
}

void Supervisor::publish() {
  ExecutorCard card = card_;
  if (!doorbell_used_) {
    card.doorbell.clear();
    card.rings = false;
  }
  const std::string text = format_card(card);
  if (!published_) {
    published_ = true;
    started_ = Clock::now();
    std::printf("SIDECORE_EXECUTOR='%s'\n", text.c_str());
    if (!options_.printed_token.empty()) std::printf("SIDECORE_TOKEN=%s\n", options_.printed_token.c_str());
    std::fflush(stdout);
    logger("sidecore.exec")->info("executor {} on cores {} provider {}{} poll {} spin {} us, {} worker process(es)",
                                  card.executor_id, config_.cores.to_string(), config_.provider,
                                  config_.remote_provider.empty() ? "" : " (remote callers: " + config_.remote_provider + ")",
                                  to_string(config_.worker.poll), config_.worker.spin_window.count(), workers_.size());
  }
  if (!options_.card_file.empty()) {
    try {
      write_card_file(options_.card_file, text);
    } catch (const std::exception& e) {
      if (!stopping_) fail(e.what());
      return;
    }
  }
  if (liveness_) liveness_->broadcast("card " + text + "\n");
}

void Supervisor::reap() {
  int status = 0;
  pid_t done;
  while ((done = waitpid(-1, &status, WNOHANG)) > 0) {
    for (unsigned i = 0; i < workers_.size(); ++i) {
      if (workers_[i].pid == done) {
        workers_[i].pid = -1;
        on_worker_exit(i, status);
        break;
      }
    }
  }
}

void Supervisor::on_worker_exit(unsigned index, int status) {
  WorkerProcess& worker = workers_[index];
  const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!clean && worker.reported) remove_executor_leftovers(part_card(index));
  if (stopping_) {
    if (!clean && exit_status_ == 0) exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return;
  }
  if (!published_) {
    fail("worker " + std::to_string(index) + " on CPU " + std::to_string(worker.core) + " " + describe(status) +
         " before it served");
    return;
  }
  if (!worker.killed_stuck) {
    const auto now = Clock::now();
    while (!restarts_.empty() && now - restarts_.front() > options_.window) restarts_.pop_front();
    if (restarts_.size() >= options_.max_restarts) {
      std::fprintf(stderr,
                   "sidecore-executor: error: worker %u (pid %d) %s; not restarting it: %zu restarts in the last "
                   "%lld s; the executor stops\n",
                   index, static_cast<int>(card_.worker_pids[index]), describe(status).c_str(), restarts_.size(),
                   static_cast<long long>(options_.window.count()));
      if (!options_.card_file.empty()) std::remove(options_.card_file.c_str());
      exit_status_ = 1;
      begin_stop(SIGTERM);
      return;
    }
    restarts_.push_back(now);
    std::fprintf(stderr,
                 "sidecore-executor: worker %u on CPU %d (pid %d) %s; starting a new one (restart %zu of %u in %lld s)\n",
                 index, worker.core, static_cast<int>(card_.worker_pids[index]), describe(status).c_str(),
                 restarts_.size(), options_.max_restarts, static_cast<long long>(options_.window.count()));
  }
  start_worker(index);
}

void Supervisor::check_deadlines() {
  const int64_t now = SharedState::now_ns();
  for (unsigned i = 0; i < workers_.size(); ++i) {
    WorkerProcess& worker = workers_[i];
    if (worker.pid <= 0 || worker.killed_stuck) continue;
    for (auto& deadline : shared_->slot(i).deadline_ns) {
      const int64_t due = deadline.load(std::memory_order_relaxed);
      if (due == 0 || now < due + kDeadlineSlackNs) continue;
      std::fprintf(stderr,
                   "sidecore-executor: worker %u on CPU %d (pid %d) ran a task %.1f s past its deadline; replacing it\n",
                   i, worker.core, static_cast<int>(worker.pid), static_cast<double>(now - due) / 1e9);
      worker.killed_stuck = true;
      kill(worker.pid, SIGKILL);
      break;
    }
  }
}

void Supervisor::begin_stop(int signal_number) {
  if (!stopping_) {
    stopping_ = true;
    stop_began_ = Clock::now();
  }
  for (const auto& worker : workers_) {
    if (worker.pid > 0) kill(worker.pid, signal_number);
  }
}

int Supervisor::run() {
  Executor::check(config_);  // the errors a worker would find, once and before any fork
  shared_ = SharedState::create(static_cast<unsigned>(config_.cores.size()));
  card_.executor_id = generate_id();
  card_.host = local_host_name();
  card_.pid = self_;
  card_.provider = config_.provider;
  card_.max_task_s = static_cast<unsigned>(config_.worker.max_task.count() / 1000);
  // shm's queues have no descriptor to sleep on: its workers and callers use a doorbell, which
  // must outlive any one worker. Other providers' workers never open it.
  if (config_.provider == "shm") {
    card_.doorbell = "/sidecore-" + card_.executor_id;
    doorbell_ = Doorbell::create(card_.doorbell, static_cast<unsigned>(config_.cores.size()));
  }
  // Always a liveness port: callers on other hosts watch it, and callers on this host that hold the
  // card itself rather than a reference to its file learn replaced workers' cards there.
  liveness_ = std::make_unique<LivenessListener>(config_.token);  // relays for this host's callers too
  card_.watch = liveness_->port();
  const size_t n = config_.cores.size();
  card_.worker_addresses.resize(n);
  if (!config_.remote_provider.empty()) card_.remote_addresses.resize(n);
  card_.worker_pids.resize(n);
  workers_.resize(n);
  for (size_t i = 0; i < n; ++i) workers_[i].core = config_.cores.cores()[i];

  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal_fd_ = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0 || pipe2(report_fds_, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "sidecore-executor: error: %s\n", std::strerror(errno));
    return 1;
  }
  fcntl(report_fds_[0], F_SETFL, O_NONBLOCK);
  for (unsigned i = 0; i < n && !stopping_; ++i) start_worker(i);

  std::vector<pollfd> fds;
  while (true) {
    bool running = false;
    for (const auto& worker : workers_) running = running || worker.pid > 0;
    if (stopping_ && !running) break;
    if (stopping_ && Clock::now() - stop_began_ > kStopGrace) begin_stop(SIGKILL);
    fds.assign({{signal_fd_, POLLIN, 0}, {report_fds_[0], POLLIN, 0}});
    if (liveness_) liveness_->add_descriptors(fds);
    if (poll(fds.data(), fds.size(), static_cast<int>(kTick.count())) < 0 && errno != EINTR) break;
    if (fds[1].revents != 0) read_reports();
    if (fds[0].revents != 0) {
      signalfd_siginfo info{};
      bool child = false;
      while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo == SIGCHLD) {
          child = true;
        } else {
          begin_stop(static_cast<int>(info.ssi_signo));
        }
      }
      if (child) {
        read_reports();  // a worker's last words before its exit
        reap();
      }
    }
    if (liveness_) liveness_->handle(fds.data() + 2, fds.size() - 2);
    if (published_ && !stopping_) check_deadlines();
  }
  if (published_ && options_.print_stats) {
    StatsSnapshot total;
    for (unsigned i = 0; i < n; ++i) {
      for (const auto& stats : shared_->slot(i).stats) total += stats.snapshot();
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - started_).count();
    std::fprintf(stderr, "sidecore: executor %s on %zu worker(s): %s\n", card_.executor_id.c_str(), n,
                 format_summary(total, seconds, n).c_str());
  }
  // The card goes with the executor; an error line written before it ever served stays for the
  // caller waiting on it.
  if ((exit_status_ == 0 || published_) && !options_.card_file.empty()) std::remove(options_.card_file.c_str());
  return exit_status_;
}

}  // namespace

void write_card_file(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << text << '\n';
    out.close();
    if (!out) throw std::runtime_error("cannot write card file " + temporary);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw std::runtime_error("cannot move card file into place at " + path);
  }
}

int supervise(const ExecutorConfig& config, const SupervisorOptions& options) {
  try {
    Supervisor supervisor(config, options);
    return supervisor.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sidecore-executor: error: %s\n", e.what());
    if (!options.card_file.empty()) {
      try {
        write_card_file(options.card_file, std::string("error: ") + e.what());
      } catch (const std::exception&) {
      }
    }
    return 1;
  }
}

}  // namespace sidecore
