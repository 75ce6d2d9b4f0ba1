#include "server_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace sidecore::bench {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

}  // namespace

ServerProcess::ServerProcess(const std::vector<std::string>& arguments) {
  // Everything the child needs is computed before fork(): after it, only async-signal-safe calls.
  std::vector<std::string> argv_storage;
  argv_storage.push_back("sidecore-bench");
  argv_storage.insert(argv_storage.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& argument : argv_storage) argv.push_back(argument.data());
  argv.push_back(nullptr);

  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) fail("pipe");
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    const int error = errno;
    close(in_pipe[0]);
    close(in_pipe[1]);
    errno = error;
    fail("pipe");
  }
  pid_ = fork();
  if (pid_ < 0) {
    const int error = errno;
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) close(fd);
    errno = error;
    fail("fork");
  }
  if (pid_ == 0) {
    // dup2 clears close-on-exec on the new descriptors; the originals close at exec.
    if (dup2(in_pipe[0], STDIN_FILENO) < 0 || dup2(out_pipe[1], STDOUT_FILENO) < 0) _exit(127);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  to_child_ = in_pipe[1];
  from_child_ = out_pipe[0];
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    // Closing its input ends the child's command loop; it then stops the executor and exits.
    if (to_child_ >= 0) close(to_child_);
    to_child_ = -1;
    reap(std::chrono::milliseconds(3000));
  }
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
}

void ServerProcess::send(std::string_view line) {
  std::string text(line);
  text.push_back('\n');
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(to_child_, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("the bench server is gone (write to its control pipe failed)");
    written += static_cast<size_t>(n);
  }
}

std::string ServerProcess::read_line(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (const auto end = buffered_.find('\n'); end != std::string::npos) {
      std::string line = buffered_.substr(0, end);
      buffered_.erase(0, end + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw std::runtime_error("the bench server did not answer in time");
    pollfd fd{from_child_, POLLIN, 0};
    const int ready = ::poll(&fd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) fail("poll");
    if (ready == 0) continue;
    char chunk[4096];
    const ssize_t n = read(from_child_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read from the bench server");
    if (n == 0) throw std::runtime_error("the bench server exited unexpectedly");
    buffered_.append(chunk, static_cast<size_t>(n));
  }
}

std::string ServerProcess::expect(std::string_view keyword, std::chrono::seconds timeout) {
  const std::string line = read_line(timeout);
  const auto space = line.find(' ');
  const std::string_view word = std::string_view(line).substr(0, space);
  const std::string rest = space == std::string::npos ? std::string() : line.substr(space + 1);
  if (word == "error") throw std::runtime_error("bench server: " + rest);
  if (word != keyword) {
    throw std::runtime_error("bench server said '" + line + "' where '" + std::string(keyword) + "' was expected");
  }
  return rest;
}

bool ServerProcess::quit() {
  if (pid_ <= 0) return false;
  bool said_bye = false;
  try {
    send("quit");
    expect("bye", std::chrono::seconds(10));
    said_bye = true;
  } catch (const std::exception&) {
    // Fall through: reap() below kills it if it does not exit.
  }
  close(to_child_);
  to_child_ = -1;
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) break;
    if (done < 0 || std::chrono::steady_clock::now() > deadline) {
      reap(std::chrono::milliseconds(0));
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  return said_bye && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void ServerProcess::reap(std::chrono::milliseconds patience) noexcept {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
}

}  // namespace sidecore::bench
