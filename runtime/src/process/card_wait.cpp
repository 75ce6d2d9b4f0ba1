#include "process/card_wait.hpp"

#include <signal.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <thread>

#include "card.hpp"
#include "process/child_process.hpp"

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;

bool read_text(const std::string& path, std::string& text) {
  std::ifstream in(path);
  if (!in) return false;
  std::ostringstream content;
  content << in.rdbuf();
  text = content.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return true;
}

}  // namespace

CardFile read_card_file(const std::string& path) {
  CardFile file;
  if (!read_text(path, file.text) || file.text.empty()) return {};
  static constexpr std::string_view error_prefix = "error: ";
  if (file.text.rfind(error_prefix, 0) == 0) {
    file.state = CardFile::State::error;
    file.text.erase(0, error_prefix.size());
  } else {
    file.state = CardFile::State::card;
  }
  return file;
}

bool process_running(long pid) {
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  std::string stat;
  if (!read_text("/proc/" + std::to_string(pid) + "/stat", stat)) return true;  // no /proc: trust kill()
  const size_t name_end = stat.rfind(')');  // "pid (name) S ...": the name may hold anything
  return name_end == std::string::npos || name_end + 2 >= stat.size() ||
         (stat[name_end + 2] != 'Z' && stat[name_end + 2] != 'X');
}

CardWriter card_writer(ChildProcess& child, std::string name) {
  return {std::move(name), [&child] { return child.running(); },
          [&child] { return child.wait_for(std::chrono::milliseconds(0)).value_or(ExitStatus{}).describe(); }};
}

CardWriter card_writer(long pid) {
  return {"the executor (pid " + std::to_string(pid) + ")", [pid] { return process_running(pid); }, {}};
}

std::string wait_for_card(const std::string& path, const CardWriter& writer, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::microseconds(200);
  while (true) {
    CardFile file = read_card_file(path);
    if (file.state == CardFile::State::card) return std::move(file.text);
    if (file.state == CardFile::State::error) throw CardError(writer.name + " could not start: " + file.text);
    if (!writer.running()) {
      // It may have written the card (or its error) just before it exited.
      if (read_card_file(path).state != CardFile::State::none) continue;
      throw CardError(writer.name + " " + (writer.how_ended ? writer.how_ended() : std::string("exited")) +
                      " before it was ready");
    }
    if (Clock::now() >= deadline) {
      throw CardError(writer.name + " was not ready within " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

}  // namespace sidecore
