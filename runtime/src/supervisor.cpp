#include "supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>

#include "card.hpp"
#include "executor_leftovers.hpp"

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

// Everything the server wrote to the card pipe so far; keeps the last complete line in `card`.
void read_card_lines(int fd, std::string& pending, std::string& card) {
  char buffer[4096];
  ssize_t got;
  while ((got = read(fd, buffer, sizeof buffer)) > 0) pending.append(buffer, static_cast<size_t>(got));
  for (size_t end; (end = pending.find('\n')) != std::string::npos; pending.erase(0, end + 1)) {
    card = pending.substr(0, end);
  }
}

}  // namespace

int supervise(const std::function<int(int card_fd)>& serve, const SupervisorOptions& options) {
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const pid_t supervisor = getpid();

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "sidecore-executor: error: pipe2: %s\n", std::strerror(errno));
    return 1;
  }
  fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);

  auto start_server = [&]() -> pid_t {
    const pid_t child = fork();
    if (child != 0) return child;
    // The server: dies with its supervisor, keeps the stop signals blocked for its own sigwait.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != supervisor) _exit(1);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &chld, nullptr);
    close(pipe_fds[0]);
    std::fflush(stdout);
    _exit(serve(pipe_fds[1]));
  };

  pid_t server = start_server();
  if (server < 0) {
    std::fprintf(stderr, "sidecore-executor: error: fork: %s\n", std::strerror(errno));
    return 1;
  }
  std::string pending, card;
  std::deque<Clock::time_point> restarts;
  bool stopping = false;
  while (true) {
    siginfo_t info{};
    const int signal_number = sigwaitinfo(&signals, &info);
    if (signal_number < 0) continue;  // EINTR
    if (signal_number != SIGCHLD) {
      stopping = true;
      kill(server, signal_number);
      continue;
    }
    int status = 0;
    const pid_t done = waitpid(server, &status, WNOHANG);
    if (done != server) continue;
    read_card_lines(pipe_fds[0], pending, card);
    if (stopping) {
      // Killed while it stopped (proctrack's SIGKILL for the step, say): it left what a clean stop
      // removes.
      if (WIFSIGNALED(status) && !card.empty()) {
        try {
          remove_executor_leftovers(parse_card(card));
        } catch (const CardError&) {
        }
        if (!options.card_file.empty()) std::remove(options.card_file.c_str());
      }
      return exit_code(status);
    }
    if (card.empty()) return exit_code(status);  // it never served: a restart would fail the same way

    // The server died while serving: a function crashed it, called exit(), or it was killed.
    try {
      remove_executor_leftovers(parse_card(card));
    } catch (const CardError&) {
      // not a card we can read: nothing to clean up by name
    }
    if (!options.card_file.empty()) std::remove(options.card_file.c_str());
    const auto now = Clock::now();
    while (!restarts.empty() && now - restarts.front() > options.window) restarts.pop_front();
    if (restarts.size() >= options.max_restarts) {
      std::fprintf(stderr,
                   "sidecore-executor: error: the server (pid %d) %s; not restarting it: %zu restarts in the last "
                   "%lld s\n",
                   static_cast<int>(server), describe(status).c_str(), restarts.size(),
                   static_cast<long long>(options.window.count()));
      return 1;
    }
    restarts.push_back(now);
    std::fprintf(stderr, "sidecore-executor: the server (pid %d) %s; starting a new one (restart %zu of %u in %lld s)\n",
                 static_cast<int>(server), describe(status).c_str(), restarts.size(), options.max_restarts,
                 static_cast<long long>(options.window.count()));
    card.clear();
    server = start_server();
    if (server < 0) {
      std::fprintf(stderr, "sidecore-executor: error: fork: %s\n", std::strerror(errno));
      return 1;
    }
  }
}

}  // namespace sidecore
