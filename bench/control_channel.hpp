// The control channel of a child the bench re-executes (the server, soak callers): a private copy
// of stdout for the protocol lines, with fd 1 itself pointed at stderr, so that nothing else the
// process prints (libraries included) can corrupt the protocol. Lines from the bench come on stdin.
#pragma once

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

namespace sidecore::bench {

class ControlChannel {
 public:
  ControlChannel() {
    const int fd = dup(STDOUT_FILENO);
    if (fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) throw std::runtime_error("cannot set up the control pipe");
    out_ = fdopen(fd, "w");
    if (out_ == nullptr) throw std::runtime_error("cannot set up the control pipe");
  }
  ~ControlChannel() {
    if (out_ != nullptr) std::fclose(out_);
  }
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  void say(const std::string& line) {
    std::fputs(line.c_str(), out_);
    std::fputc('\n', out_);
    std::fflush(out_);
  }
  // The next line from the bench; false at end of input (the bench is gone).
  bool next(std::string& line) { return static_cast<bool>(std::getline(std::cin, line)); }

 private:
  std::FILE* out_ = nullptr;
};

// The start of every child the bench runs: Ctrl-C reaches the whole process group, so the bench
// alone decides (the child ends with its pipe), a closed pipe is an error rather than a signal,
// and the control channel is set up. Null, with the reason on stderr after `who`, when it cannot be.
inline std::unique_ptr<ControlChannel> open_child_control(const char* who) {
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    return std::make_unique<ControlChannel>();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", who, e.what());
    return nullptr;
  }
}

}  // namespace sidecore::bench
