// LeaseWatch (sidecore.hpp): a lease's cards, read from its Slurm job record with squeue.
//
// squeue, not libslurm: the client library stays free of Slurm (it runs where there is none), and
// the command is the one whose output format Slurm keeps stable across versions. It is spawned with
// posix_spawn (vfork semantics: nothing of the rank's memory is copied), from the watch's own
// thread, never from the application's.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "card.hpp"
#include "log.hpp"
#include "sidecore/sidecore.hpp"

extern char** environ;

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;

// Once a second while the lease starts and publishes: one squeue per rank, a light query for
// slurmctld (one job by id). Every 5 s once it has waited a minute (pending behind other jobs: its
// cores come later anyway). Each period is drawn within a quarter of that, so that the ranks of a
// large step, started together, do not query slurmctld in one burst each second.
constexpr auto kPollInterval = std::chrono::milliseconds(1000);
constexpr auto kSlowPollInterval = std::chrono::milliseconds(5000);
constexpr auto kSlowAfter = std::chrono::seconds(60);
constexpr auto kCommandLimit = std::chrono::seconds(10);

// squeue's output for `job` ("STATE|COMMENT"), or nothing when it could not run, timed out, or
// `stop_fd` (an eventfd) became readable: the watch is being destroyed, and a squeue that hangs on
// an unresponsive slurmctld must not hold up the rank's MPIX_Offload_pool_free.
std::optional<std::string> query_job(const std::string& job, int stop_fd) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return std::nullopt;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::string jobs = "--jobs=" + job;
  char* argv[] = {const_cast<char*>("squeue"),         const_cast<char*>("--noheader"),
                  const_cast<char*>("--states=all"),   jobs.data(),
                  const_cast<char*>("--format=%T|%k"), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, "squeue", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return std::nullopt;
  }
  std::string text;
  const auto deadline = Clock::now() + kCommandLimit;
  bool timed_out = false;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2] = {{out[0], POLLIN, 0}, {stop_fd, POLLIN, 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    if (fds[1].revents != 0) {
      timed_out = true;  // stopping: the answer is no longer wanted
      break;
    }
    char buffer[4096];
    const ssize_t got = read(out[0], buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (text.size() < (1u << 20)) text.append(buffer, static_cast<size_t>(got));
  }
  close(out[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return text;
}

std::chrono::milliseconds next_interval(Clock::duration waited, std::minstd_rand& random) {
  const auto base = waited < kSlowAfter ? kPollInterval : kSlowPollInterval;
  std::uniform_int_distribution<long> spread(-base.count() / 4, base.count() / 4);
  return base + std::chrono::milliseconds(spread(random));
}

// Slurm's states of a job that will run no more.
bool finished(std::string_view state) {
  return state != "PENDING" && state != "RUNNING" && state != "CONFIGURING" && state != "COMPLETING" &&
         state != "SUSPENDED" && state != "REQUEUED" && state != "RESIZING" && state != "SIGNALING" &&
         state != "STAGE_OUT";
}

}  // namespace

struct LeaseWatch::Impl {
  std::string job;
  CardsCallback on_cards;
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  int stop_fd = -1;  // readable once stop is set: interrupts a squeue in flight
  std::thread thread;

  void run() noexcept;
};

std::vector<std::string> LeaseWatch::parse_comment(std::string_view comment, size_t* tasks) {
  std::vector<std::string> cards;
  if (tasks) *tasks = 0;
  while (!comment.empty() && (comment.back() == '\n' || comment.back() == ' ')) comment.remove_suffix(1);
  constexpr std::string_view kTag = "sidecore-lease/1";
  if (comment.substr(0, kTag.size()) != kTag) return cards;
  const size_t bar = comment.find('|');
  const std::string_view head = comment.substr(0, bar);
  if (const size_t at = head.find(" tasks="); at != std::string_view::npos && tasks) {
    *tasks = std::strtoul(std::string(head.substr(at + 7)).c_str(), nullptr, 10);
  }
  if (bar == std::string_view::npos) return cards;
  std::string_view rest = comment.substr(bar + 1);
  while (!rest.empty()) {
    const size_t next = rest.find('|');
    const std::string_view card = rest.substr(0, next);
    if (!card.empty()) cards.emplace_back(card);
    if (next == std::string_view::npos) break;
    rest.remove_prefix(next + 1);
  }
  return cards;
}

std::optional<std::string> LeaseWatch::job_from_environment() {
  const char* job = std::getenv("SIDECORE_LEASE_JOB");
  if (job == nullptr || *job == '\0' ||
      std::string_view(job).find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  return std::string(job);
}

void LeaseWatch::Impl::run() noexcept {
  try {
    std::set<std::string> seen;      // executor ids already handed over
    std::set<std::string> rejected;  // malformed cards, warned about once
    bool warned = false;
    const auto started = Clock::now();
    std::minstd_rand random(std::random_device{}());
    while (true) {
      const std::optional<std::string> answer = query_job(job, stop_fd);
      if (answer) {
        const std::string_view line = *answer;
        const size_t bar = line.find('|');
        const std::string_view state = line.substr(0, bar);
        size_t tasks = 0;
        std::vector<std::string> fresh;
        if (bar != std::string_view::npos) {
          for (auto& card : parse_comment(line.substr(bar + 1), &tasks)) {
            try {
              if (seen.insert(parse_card(card).executor_id).second) fresh.push_back(std::move(card));
            } catch (const CardError& e) {
              if (rejected.insert(card).second) {
                logger("sidecore.client")->warn("lease job {}: ignoring a malformed card: {}", job, e.what());
              }
            }
          }
        }
        if (!fresh.empty()) {
          logger("sidecore.client")
              ->debug("lease job {}: {} executor(s) ready after {:.1f} s", job, fresh.size(),
                      std::chrono::duration<double>(Clock::now() - started).count());
          on_cards(fresh);
        }
        if (state.empty() || finished(state)) {
          logger("sidecore.client")
              ->debug("lease job {} is {}: no more executors from it", job, state.empty() ? "gone" : state);
          return;
        }
        if (tasks > 0 && seen.size() >= tasks) return;  // all published
      }
      std::unique_lock lock(mutex);
      if (stop) return;  // the destructor interrupted the squeue
      if (!answer && !warned) {
        warned = true;
        logger("sidecore.client")->warn("cannot read lease job {} through squeue yet; trying again", job);
      }
      if (wake.wait_for(lock, next_interval(Clock::now() - started, random), [this] { return stop; })) return;
    }
  } catch (const std::exception& e) {
    try {
      logger("sidecore.client")->warn("lease job {}: stopped following it: {}", job, e.what());
    } catch (...) {
    }
  } catch (...) {
  }
}

LeaseWatch::LeaseWatch(std::string job, CardsCallback on_cards) : impl_(std::make_unique<Impl>()) {
  impl_->job = std::move(job);
  impl_->on_cards = std::move(on_cards);
  // Without it (-1: poll() skips it) the destructor waits for a squeue in flight, at most kCommandLimit.
  impl_->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

LeaseWatch::~LeaseWatch() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stop = true;
  }
  if (impl_->stop_fd >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t written = write(impl_->stop_fd, &one, sizeof one);
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->stop_fd >= 0) close(impl_->stop_fd);
}

}  // namespace sidecore
