// The one wait for an executor's card file: sidecore-run, the Slurm plugin (start=wait), card
// references (card_reference.hpp), the bench and the tests all wait through it.
//
// An executor started with --card-file writes its card there atomically (a rename) once it serves,
// or a line "error: <why>" when it cannot start; a supervisor that restarts its server removes the
// file meanwhile. So a missing or empty file means "not yet", unless the writer has exited.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace sidecore {

class ChildProcess;

// What the card file holds right now.
struct CardFile {
  enum class State { none, card, error };
  State state = State::none;
  std::string text;  // the card, or the reason after "error: "
};
CardFile read_card_file(const std::string& path);

// Who writes the card, as the wait needs it: whether it still runs, and words for messages.
struct CardWriter {
  std::string name;                        // "the executor (pid 42)"
  std::function<bool()> running;           // may throw, to abandon the wait (sidecore-run on a signal)
  std::function<std::string()> how_ended;  // "exited with status 3"; empty: "exited"
};

// The writer is a child of ours (its exit status goes into the message; it is reaped).
CardWriter card_writer(ChildProcess& child, std::string name = "the executor");
// The writer is any process (zombies count as gone: their parent may not have reaped them yet).
CardWriter card_writer(long pid);

// Waits until `path` holds a card and returns it. Throws CardError naming why there is none: the
// writer's error line ("<name> could not start: <why>"), its exit ("<name> exited with status 3
// before it was ready"), or the timeout ("<name> was not ready within <n> ms").
std::string wait_for_card(const std::string& path, const CardWriter& writer, std::chrono::milliseconds timeout);

// Whether process `pid` runs (a zombie does not).
bool process_running(long pid);

}  // namespace sidecore
