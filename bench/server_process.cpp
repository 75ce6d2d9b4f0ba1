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
  SpawnOptions options;
  options.argv = {"/proc/self/exe"};  // the same binary, re-executed
  options.argv.insert(options.argv.end(), arguments.begin(), arguments.end());
  options.in = Stdio::pipe();
  options.out = Stdio::pipe();
  try {
    child_ = ChildProcess::spawn(options);
  } catch (const SpawnError& e) {
    throw std::runtime_error(std::string("cannot start the bench server: ") + e.what());
  }
}

ServerProcess::~ServerProcess() {
  // Closing its input ends the child's command loop; it then stops the executor and exits.
  child_.close_stdin();
  if (!child_.wait_for(std::chrono::milliseconds(3000))) {
    child_.signal(SIGKILL);
    child_.wait();
  }
}

void ServerProcess::send(std::string_view line) {
  std::string text(line);
  text.push_back('\n');
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(child_.stdin_fd(), text.data() + written, text.size() - written);
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
    pollfd fd{child_.stdout_fd(), POLLIN, 0};
    const int ready = ::poll(&fd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) fail("poll");
    if (ready == 0) continue;
    char chunk[4096];
    const ssize_t n = read(child_.stdout_fd(), chunk, sizeof chunk);
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
  if (!child_.running()) return false;
  bool said_bye = false;
  try {
    send("quit");
    expect("bye", std::chrono::seconds(10));
    said_bye = true;
  } catch (const std::exception&) {
    // Fall through: the stop below kills it if it does not exit.
  }
  child_.close_stdin();
  auto status = child_.wait_for(std::chrono::seconds(5));
  if (!status) {
    child_.signal(SIGKILL);
    child_.wait();
    return false;
  }
  return said_bye && status->success();
}

}  // namespace sidecore::bench
