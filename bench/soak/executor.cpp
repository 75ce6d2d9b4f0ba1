#include "soak/executor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "process/card_wait.hpp"

namespace sidecore::bench::soak {
namespace {

using Clock = std::chrono::steady_clock;

// `root` and its descendants, from the parent pid in every /proc/N/stat.
std::vector<pid_t> process_tree(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> children;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string text;
    if (!std::getline(stat, text)) continue;  // gone meanwhile
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
    const auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 1));
    std::string state;
    pid_t parent = 0;
    if (rest >> state >> parent) children[parent].push_back(static_cast<pid_t>(std::stol(name)));
  }
  std::vector<pid_t> tree{root};
  for (size_t i = 0; i < tree.size(); ++i) {
    const auto found = children.find(tree[i]);
    // One push_back at a time: g++ 14 takes the range insert here for an overflow (-Wstringop-overflow).
    if (found == children.end()) continue;
    for (pid_t child : found->second) tree.push_back(child);
  }
  return tree;
}

}  // namespace

ExecutorChild::ExecutorChild(const std::string& program, const SoakOptions& options, const std::string& library) {
  char directory[] = "/tmp/sidecore-bench-soak.XXXXXX";
  if (mkdtemp(directory) == nullptr) {
    throw std::runtime_error(std::string("cannot create a temporary directory: ") + std::strerror(errno));
  }
  directory_ = directory;
  const std::string card_file = directory_ + "/card";
  SpawnOptions spawn;
  spawn.argv = {program,
                "--cores",
                options.executor_cores,
                "--provider",
                options.provider,
                "--poll",
                "adaptive",
                "--preload",
                library,
                "--credits",
                std::to_string(std::max(64u, options.window)),
                "--card-file",
                card_file};
  if (options.verbose) spawn.argv.push_back("--stats");
  spawn.out = Stdio::null();            // it prints its card there too; the bench's stdout carries only the JSON
  spawn.parent_death_signal = SIGTERM;  // should the bench be killed outright
  try {
    child_ = ChildProcess::spawn(spawn);
    card_ = wait_for_card(card_file, card_writer(child_, program), std::chrono::seconds(60));
  } catch (const std::exception& e) {
    child_.stop(std::chrono::seconds(2));
    remove_directory();
    throw std::runtime_error(std::string("the executor did not start: ") + e.what());
  }
}

ExecutorChild::~ExecutorChild() {
  stop();
  remove_directory();
}

bool ExecutorChild::stop() {
  const ExitStatus status = child_.stop(std::chrono::seconds(10));
  if (child_.needed_kill()) {
    std::fprintf(stderr, "sidecore-bench: warning: the executor did not stop within 10 s; killed it\n");
  }
  return status.success();
}

void ExecutorChild::remove_directory() {
  std::error_code ignored;
  std::filesystem::remove_all(directory_, ignored);
}

Memory read_memory(pid_t root) {
  Memory total;
  for (pid_t pid : process_tree(root)) {
    Memory memory;
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      long* field = nullptr;
      if (line.starts_with("VmRSS:")) field = &memory.rss;
      if (line.starts_with("VmHWM:")) field = &memory.hwm;
      if (line.starts_with("RssAnon:")) field = &memory.anon;
      if (line.starts_with("RssFile:")) field = &memory.file;
      if (line.starts_with("RssShmem:")) field = &memory.shmem;
      if (field != nullptr) *field = std::strtol(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
    if (memory.rss < 0) continue;  // exited, or a zombie
    ++total.processes;
    for (auto field : {&Memory::rss, &Memory::hwm, &Memory::anon, &Memory::file, &Memory::shmem}) {
      total.*field = std::max(total.*field, 0L) + std::max(memory.*field, 0L);
    }
  }
  return total;
}

std::string describe(const Memory& memory) {
  return fmt::format("VmRSS {} KiB (anon {}, file {}, shmem {}; VmHWM {}) in {} process{}", memory.rss, memory.anon,
                     memory.file, memory.shmem, memory.hwm, memory.processes, memory.processes == 1 ? "" : "es");
}

RssSampler::RssSampler(pid_t pid, long start_kib, bool verbose) : pid_(pid), peak_(start_kib), verbose_(verbose) {
  thread_ = std::thread([this] { sample(); });
}

void RssSampler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RssSampler::sample() {
  const auto start = Clock::now();
  auto next_report = start + std::chrono::seconds(10);
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; })) {
    const long rss = read_memory(pid_).rss;
    if (rss < 0) {
      std::fprintf(stderr, "sidecore-bench: warning: cannot read the executor's memory (has it exited?)\n");
      return;
    }
    samples_.fetch_add(1);
    if (rss > peak_.load()) peak_.store(rss);
    const auto now = Clock::now();
    if (verbose_ && now > next_report) {
      std::fprintf(stderr, "sidecore-bench soak: %.0f s, executor VmRSS %ld KiB (peak %ld)\n",
                   std::chrono::duration<double>(now - start).count(), rss, peak_.load());
      next_report = now + std::chrono::seconds(10);
    }
  }
}

}  // namespace sidecore::bench::soak
