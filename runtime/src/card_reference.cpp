#include "card_reference.hpp"

#include <fmt/format.h>
#include <signal.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>
#include <thread>

#include "card.hpp"

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;

// Parses "key=<decimal>" at the end of `text` (after its last space) and cuts it off.
bool take_number(std::string_view& text, std::string_view key, long& value) {
  const size_t space = text.rfind(' ');
  if (space == std::string_view::npos) return false;
  std::string_view field = text.substr(space + 1);
  if (field.substr(0, key.size()) != key) return false;
  field.remove_prefix(key.size());
  const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (error != std::errc() || end != field.data() + field.size() || value < 0) return false;
  text = text.substr(0, space);
  return true;
}

bool read_file(const std::string& path, std::string& text) {
  std::ifstream in(path);
  if (!in) return false;
  std::ostringstream content;
  content << in.rdbuf();
  text = content.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return true;
}

// Whether `pid` still runs. A zombie does not: the executor's parent (slurmstepd) may not have
// reaped it yet, and kill() alone would call it alive.
bool running(long pid) {
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  std::string stat;
  if (!read_file("/proc/" + std::to_string(pid) + "/stat", stat)) return true;  // no /proc: trust kill()
  const size_t name_end = stat.rfind(')');  // "pid (name) S ...": the name may hold anything
  return name_end == std::string::npos || name_end + 2 >= stat.size() ||
         (stat[name_end + 2] != 'Z' && stat[name_end + 2] != 'X');
}

struct Reference {
  std::string path;
  long pid = 0;
  long timeout_ms = 0;
};

// "@PATH pid=N timeout_ms=N" taken apart; nullopt when `value` is not a well-formed reference.
std::optional<Reference> parse_reference(std::string_view value) {
  if (value.empty() || value.front() != '@') return std::nullopt;
  std::string_view rest = value.substr(1);
  Reference reference;
  if (!take_number(rest, "timeout_ms=", reference.timeout_ms) || !take_number(rest, "pid=", reference.pid) ||
      rest.empty() || reference.pid == 0) {
    return std::nullopt;
  }
  reference.path = std::string(rest);
  return reference;
}

}  // namespace

std::optional<std::string> current_card(std::string_view reference) {
  const auto parsed = parse_reference(reference);
  std::string text;
  if (!parsed || !read_file(parsed->path, text) || text.empty() || text.rfind("error: ", 0) == 0) return std::nullopt;
  return text;
}

std::string resolve_card(std::string_view value) {
  if (value.empty() || value.front() != '@') return std::string(value);
  const auto parsed = parse_reference(value);
  if (!parsed) {
    throw CardError(fmt::format("SIDECORE_EXECUTOR '{}' is not a card reference of the form "
                                "'@PATH pid=N timeout_ms=N'", value));
  }
  const auto& [path, pid, timeout_ms] = *parsed;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto pause = std::chrono::microseconds(200);
  for (;;) {
    std::string text;
    if (read_file(path, text) && !text.empty()) {
      if (text.rfind("error: ", 0) == 0) {
        throw CardError(fmt::format("the executor (pid {}) could not start: {}", pid, text.substr(7)));
      }
      return text;
    }
    // The card is renamed into place, so a missing file means "not yet": unless the executor is gone.
    if (!running(pid)) {
      if (read_file(path, text) && !text.empty()) continue;  // it wrote the card, then exited
      throw CardError(fmt::format("the executor (pid {}) exited before it was ready", pid));
    }
    if (Clock::now() >= deadline) {
      throw CardError(fmt::format("the executor (pid {}) was not ready within {} ms", pid, timeout_ms));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

}  // namespace sidecore
