// Shared by the plugin's unit tests: the fake executor, private folders, process inspection.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace sidecore::spank::testing {

inline std::string fake_executor() {
  const char* path = std::getenv("SIDECORE_FAKE_EXECUTOR");
  return path ? path : "";
}

// A private folder, removed at the end of the test; world-writable so a dropped child can use it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sidecore-spank-test.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = pattern;
    chmod(path_.c_str(), 01777);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The value of `field` in /proc/PID/status ("Uid", "SigBlk", ...), or "" if the process is gone.
inline std::string proc_status(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      auto value = line.substr(field.size() + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return "";
}

// A process counts as gone once it has exited, zombie or not.
inline bool process_gone(pid_t pid) {
  if (kill(pid, 0) != 0) return true;
  auto state = proc_status(pid, "State");
  return state.empty() || state[0] == 'Z';
}

inline bool wait_gone(pid_t pid, std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!process_gone(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace sidecore::spank::testing
