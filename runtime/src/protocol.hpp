// The versioned wire protocol between callers and executor workers.
//
// Every message starts with a MessageHeader. A caller first sends Hello (its token and its own
// address) to each worker; the worker answers Welcome (a peer id, a random session number and the
// number of credits, i.e. tasks the caller may have outstanding there) or Refused. Every later
// message carries peer id and session, and a worker drops messages whose pair it did not hand out.
// Tasks carry small inputs inline and describe large ones as remote buffers the worker reads by
// RMA; results carry small outputs inline and large ones are written by RMA before the result.
//
// Layouts are fixed, little-endian as on every platform Sidecore targets, and static_assert'ed.
// decode_* functions check every length and field before anything uses them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "sidecore/error_kind.hpp"

namespace sidecore::protocol {

inline constexpr uint32_t kMagic = 0x52434453;  // "SDCR"
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kInlineLimit = 4096;       // payload bytes carried inside a message
inline constexpr size_t kMaxTokenBytes = 128;
inline constexpr size_t kMaxAddressBytes = 512;
inline constexpr size_t kMaxDoorbellBytes = 64;
inline constexpr size_t kMaxLibraryBytes = 3072;
inline constexpr size_t kMaxSymbolBytes = 1024;
inline constexpr uint64_t kMaxTransferBytes = uint64_t{1} << 40;  // 1 TiB: anything larger is garbage
inline constexpr uint32_t kNoFunction = UINT32_MAX;

enum class MessageType : uint16_t {
  hello = 1,
  welcome = 2,
  refused = 3,
  lookup = 4,
  lookup_reply = 5,
  task = 6,
  result = 7,
  goodbye = 8,
  // A draining worker's answer to a task it will not run (ResultMessage layout, no output): the
  // caller sends the task elsewhere. The executor stops soon after (a lease being reclaimed).
  declined = 9,
  kLast = declined,
};

struct MessageHeader {
  uint32_t magic;
  uint16_t version;
  MessageType type;
  uint32_t peer_id;   // index the worker gave this caller in Welcome
  // Tasks: the caller's time budget for the task in milliseconds, 0 for none. The worker counts
  // it from the task's arrival (clocks of two hosts do not agree) and its executor replaces a
  // worker whose function runs past it. Other messages: 0.
  uint32_t deadline_ms;
  uint64_t session;   // random number the worker gave this caller in Welcome
};
static_assert(sizeof(MessageHeader) == 24);

struct HelloMessage {
  MessageHeader header;
  uint64_t nonce;          // echoed in Welcome/Refused so the caller can match the answer
  uint16_t token_bytes;
  uint16_t address_bytes;
  uint16_t doorbell_bytes;  // 0, or the length of the caller's own doorbell name
  uint16_t flags;           // kHelloRingOffer, or 0
  // followed by token_bytes of token, address_bytes of the caller's endpoint address, then the
  // name of the caller's doorbell (shm callers that sleep while waiting for results), then a
  // RingOffer when flagged
};
static_assert(sizeof(HelloMessage) == 40);

inline constexpr uint16_t kHelloRingOffer = 1u << 0;

// A caller on the worker's host offers node-local rings (transport/ring.hpp): the worker maps the
// caller's segment through /proc/<pid>/fd/<fd> and serves this caller's tasks on pair `pair`.
struct RingOffer {
  uint64_t key;          // the segment's key
  uint64_t key_address;  // where the key lies in the caller (the worker's cross-memory-attach probe)
  uint32_t pid;
  int32_t fd;
  uint32_t pair;
  uint32_t reserved;
};
static_assert(sizeof(RingOffer) == 32);

struct WelcomeMessage {
  MessageHeader header;  // peer_id and session to use from now on
  uint64_t nonce;
  uint32_t credits;      // tasks and lookups the caller may have outstanding at this worker
  uint32_t worker_index;
  uint32_t flags;  // kWelcomeRings, kWelcomeCma
  uint32_t reserved;
};
static_assert(sizeof(WelcomeMessage) == 48);

// The worker mapped the offered rings: tasks may come on them, and their results go back there.
inline constexpr uint32_t kWelcomeRings = 1u << 0;
// ... and it can reach the caller's memory by cross-memory attach: large inputs and outputs of ring
// tasks are remote buffers given by their address in the caller (key 0), moved with one copy.
inline constexpr uint32_t kWelcomeCma = 1u << 1;

struct RefusedMessage {
  MessageHeader header;
  uint64_t nonce;
  ErrorKind error;
  uint32_t reserved;
};
static_assert(sizeof(RefusedMessage) == 40);

struct LookupMessage {
  MessageHeader header;
  uint64_t request_id;
  uint16_t library_bytes;
  uint16_t symbol_bytes;
  uint32_t reserved;
  // followed by the library path, then the symbol name (neither NUL-terminated)
};
static_assert(sizeof(LookupMessage) == 40);

struct LookupReplyMessage {
  MessageHeader header;
  uint64_t request_id;
  ErrorKind error;
  uint32_t function_id;
};
static_assert(sizeof(LookupReplyMessage) == 40);

// A buffer of the caller's that the worker reaches by RMA.
struct RemoteBuffer {
  uint64_t address;
  uint64_t key;
};
static_assert(sizeof(RemoteBuffer) == 16);

inline constexpr uint32_t kInputRemote = 1u << 0;   // a RemoteBuffer for the input follows
inline constexpr uint32_t kOutputRemote = 1u << 1;  // a RemoteBuffer for the output follows
inline constexpr uint32_t kKnownTaskFlags = kInputRemote | kOutputRemote;

struct TaskMessage {
  MessageHeader header;
  uint64_t request_id;
  uint32_t function_id;
  uint32_t flags;
  uint64_t in_bytes;
  uint64_t out_capacity;
  // followed by [RemoteBuffer input][RemoteBuffer output] as flagged, then in_bytes inline input
  // when the input is not remote
};
static_assert(sizeof(TaskMessage) == 56);

struct ResultMessage {
  MessageHeader header;
  uint64_t request_id;
  ErrorKind error;
  int32_t function_return;
  uint64_t out_bytes;
  // followed by out_bytes of output when the task's output is not remote
};
static_assert(sizeof(ResultMessage) == 48);

inline constexpr size_t kMaxMessageBytes = sizeof(TaskMessage) + 2 * sizeof(RemoteBuffer) + kInlineLimit;
static_assert(kMaxMessageBytes >=
              sizeof(HelloMessage) + kMaxTokenBytes + kMaxAddressBytes + kMaxDoorbellBytes + sizeof(RingOffer));
static_assert(kMaxMessageBytes >= sizeof(LookupMessage) + kMaxLibraryBytes + kMaxSymbolBytes);

constexpr MessageHeader make_header(MessageType type, uint32_t peer_id = 0, uint64_t session = 0) {
  return MessageHeader{kMagic, kVersion, type, peer_id, 0, session};
}

// --- decoding: each returns nullopt and sets `error` (when given) on malformed input -------------

// The header of any message: magic, version and a known type.
std::optional<MessageHeader> decode_header(std::span<const std::byte> message, std::string* error = nullptr);

struct HelloView {
  HelloMessage fixed;
  std::string_view token;
  std::string_view address;
  std::string_view doorbell;  // empty when the caller has none
  std::optional<RingOffer> rings;
};

// True for names of the form "/sidecore-<letters, digits, '-'>", at most kMaxDoorbellBytes long.
bool valid_doorbell_name(std::string_view name) noexcept;
std::optional<HelloView> decode_hello(std::span<const std::byte> message, std::string* error = nullptr);

struct LookupView {
  LookupMessage fixed;
  std::string_view library;
  std::string_view symbol;
};
std::optional<LookupView> decode_lookup(std::span<const std::byte> message, std::string* error = nullptr);

struct TaskView {
  TaskMessage fixed;
  std::optional<RemoteBuffer> input;   // set when the input is remote
  std::optional<RemoteBuffer> output;  // set when the output is remote
  std::span<const std::byte> inline_input;
};
// `limit`: the most inline input and output bytes (kInlineLimit over libfabric, more on rings).
std::optional<TaskView> decode_task(std::span<const std::byte> message, std::string* error = nullptr,
                                    size_t limit = kInlineLimit);

struct ResultView {
  ResultMessage fixed;
  std::span<const std::byte> inline_output;
};
// `output_remote`: whether the task asked for its output by RMA (then no inline bytes may follow).
std::optional<ResultView> decode_result(std::span<const std::byte> message, bool output_remote,
                                        std::string* error = nullptr, size_t limit = kInlineLimit);

std::optional<WelcomeMessage> decode_welcome(std::span<const std::byte> message, std::string* error = nullptr);
std::optional<RefusedMessage> decode_refused(std::span<const std::byte> message, std::string* error = nullptr);
std::optional<LookupReplyMessage> decode_lookup_reply(std::span<const std::byte> message,
                                                      std::string* error = nullptr);

// --- encoding into a caller-provided buffer; each returns the bytes written, or 0 when the ---------
// --- buffer is too small or the fields are ones the decoders would refuse ------------------------

size_t encode_hello(std::span<std::byte> buffer, uint64_t nonce, std::string_view token, std::string_view address,
                    std::string_view doorbell = {}, const RingOffer* rings = nullptr);
size_t encode_lookup(std::span<std::byte> buffer, uint32_t peer_id, uint64_t session, uint64_t request_id,
                     std::string_view library, std::string_view symbol);

// Task and result headers are written in place by the data path; these helpers keep it in one spot.
// Returns the size of the header part (before any inline input), 0 when `buffer` is too small.
size_t encode_task_header(std::span<std::byte> buffer, const TaskMessage& task, const RemoteBuffer* input,
                          const RemoteBuffer* output);

template <typename T>
T load(std::span<const std::byte> bytes) {
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  return value;
}

// The data path's shortcut: the header of `message` when it is at least `Fixed` long and its fixed
// fields say a message of `type` in this protocol version, for the handler to decode once (the
// full decoder checks the header again, and everything after it); nullopt otherwise, and the
// message then takes the general path through decode_header.
template <typename Fixed>
std::optional<MessageHeader> peek_header(std::span<const std::byte> message, MessageType type) {
  if (message.size() < sizeof(Fixed)) return std::nullopt;
  const auto header = load<MessageHeader>(message);
  if (header.type != type || header.magic != kMagic || header.version != kVersion) return std::nullopt;
  return header;
}

}  // namespace sidecore::protocol
