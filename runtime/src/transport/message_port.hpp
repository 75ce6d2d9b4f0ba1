// Where one side's messages to the other go: a caller's tasks to one worker, a worker's results to
// one caller. Two implementations sit behind it, the node-local rings (transport/ring.hpp) and
// libfabric; the worker (worker.hpp) and the client (offload/src/client.cpp) write their messages
// through it, so the code that builds a task or runs a function and fills in its result does not
// know which path it uses.
//
// A message is written in place: reserve room, write the message into it, commit. On rings the
// room is the ring's next record, so a function writes its output straight into the reply; over
// libfabric it is a registered message buffer.
#pragma once

#include <cstddef>
#include <span>

namespace sidecore::transport {

class MessagePort {
 public:
  virtual ~MessagePort() = default;
  // Room for a message of up to `bytes`, or an empty span when the path cannot take one now
  // (back-pressure: the caller keeps the message for later). One reserve, then one commit.
  virtual std::span<std::byte> reserve(size_t bytes) = 0;
  // Sends the message written into the reserved room, shortened to `bytes`.
  virtual void commit(size_t bytes) = 0;
};

}  // namespace sidecore::transport
