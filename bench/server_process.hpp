// The bench process's handle on its server child: spawns `sidecore-bench serve ...` (the same
// binary, re-executed) with pipes on its stdin and stdout, and exchanges control lines with it.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "process/child_process.hpp"

namespace sidecore::bench {

class ServerProcess {
 public:
  // Starts /proc/self/exe with `arguments` (argv[1..]). Throws std::runtime_error.
  explicit ServerProcess(const std::vector<std::string>& arguments);
  // Asks the child to quit (or closes its input), waits a little, and kills it if it lingers.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  void send(std::string_view line);
  // The next line, which must start with `keyword`; returns the rest after one space. Throws with
  // the child's own message for "error ...", and on end of file, timeout or another keyword.
  std::string expect(std::string_view keyword, std::chrono::seconds timeout = std::chrono::seconds(120));
  // Sends "quit" and waits for the child to exit; true when it said "bye" and exited with 0.
  bool quit();

 private:
  std::string read_line(std::chrono::seconds timeout);

  ChildProcess child_;  // its stdin and stdout are pipes to us
  std::string buffered_;
};

}  // namespace sidecore::bench
