#include "card_reference.hpp"

#include <fmt/format.h>

#include <charconv>

#include "card.hpp"
#include "process/card_wait.hpp"

namespace sidecore {
namespace {

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

}  // namespace

std::optional<CardReference> parse_reference(std::string_view value) {
  if (value.empty() || value.front() != '@') return std::nullopt;
  std::string_view rest = value.substr(1);
  CardReference reference;
  if (!take_number(rest, "timeout_ms=", reference.timeout_ms) || !take_number(rest, "pid=", reference.pid) ||
      rest.empty() || reference.pid == 0) {
    return std::nullopt;
  }
  reference.path = std::string(rest);
  return reference;
}

std::optional<std::string> current_card(std::string_view reference) {
  const auto parsed = parse_reference(reference);
  if (!parsed) return std::nullopt;
  CardFile file = read_card_file(parsed->path);
  if (file.state != CardFile::State::card) return std::nullopt;
  return std::move(file.text);
}

std::string resolve_card(std::string_view value) {
  if (value.empty() || value.front() != '@') return std::string(value);
  const auto parsed = parse_reference(value);
  if (!parsed) {
    throw CardError(fmt::format("SIDECORE_EXECUTOR '{}' is not a card reference of the form "
                                "'@PATH pid=N timeout_ms=N'", value));
  }
  return wait_for_card(parsed->path, card_writer(parsed->pid), std::chrono::milliseconds(parsed->timeout_ms));
}

}  // namespace sidecore
