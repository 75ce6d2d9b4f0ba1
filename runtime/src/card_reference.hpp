// SIDECORE_EXECUTOR holds an executor's card, or a reference to a card that is still being made:
//
//   @<path> pid=<executor pid> timeout_ms=<n>
//
// The Slurm plugin hands tasks a reference instead of waiting for the card itself, so a step starts
// while its executor is still loading libfabric (about 0.3 s on Debian 12, most of it in libraries
// libfabric pulls in). sidecore-run hands one out too, so that callers find the new card when the
// executor restarts a server and rewrites the file. The executor writes the card to <path>
// atomically once it serves, or a line "error: <why>" when it cannot start. A caller resolves the
// reference when it connects: by then (after MPI_Init, typically) the card is nearly always there.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sidecore {

// Formats a reference (inline: the plugin takes only this header of card_reference).
inline std::string format_card_reference(const std::string& path, long pid, std::chrono::milliseconds timeout) {
  return "@" + path + " pid=" + std::to_string(pid) + " timeout_ms=" + std::to_string(timeout.count());
}

// A card reference taken apart.
struct CardReference {
  std::string path;
  long pid = 0;
  long timeout_ms = 0;
};
// "@PATH pid=N timeout_ms=N" taken apart; nullopt when `value` is not a well-formed reference.
std::optional<CardReference> parse_reference(std::string_view value);

// The card itself when `value` is one; for a reference, the card once the executor has written it.
// Waits while the executor runs, up to the reference's timeout. Throws CardError saying why there
// is no card: the executor's own error line, its exit before it was ready, or the timeout.
std::string resolve_card(std::string_view value);

// For a reference: the card its file holds right now, if any (no wait; nullopt while there is
// none, or when it holds an error line). For a card: nullopt.
std::optional<std::string> current_card(std::string_view reference);

}  // namespace sidecore
