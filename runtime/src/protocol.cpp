#include "protocol.hpp"

#include <fmt/format.h>

namespace sidecore::protocol {
namespace {

template <typename T>
bool fail(std::string* error, T&& message) {
  if (error != nullptr) *error = std::forward<T>(message);
  return false;
}

std::string_view as_chars(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Checks the header and that the message is at least sizeof(Fixed) long and of `expected` type.
template <typename Fixed>
std::optional<Fixed> decode_fixed(std::span<const std::byte> message, MessageType expected, std::string* error) {
  auto header = decode_header(message, error);
  if (!header) return std::nullopt;
  if (header->type != expected) {
    fail(error, fmt::format("message type {} where {} was expected", static_cast<unsigned>(header->type),
                            static_cast<unsigned>(expected)));
    return std::nullopt;
  }
  if (message.size() < sizeof(Fixed)) {
    fail(error, fmt::format("message of type {} is {} bytes, shorter than its {}-byte header",
                            static_cast<unsigned>(expected), message.size(), sizeof(Fixed)));
    return std::nullopt;
  }
  return load<Fixed>(message);
}

// decode_fixed for messages that carry nothing after their fixed part.
template <typename Fixed>
std::optional<Fixed> decode_exact(std::span<const std::byte> message, MessageType expected, std::string* error) {
  auto fixed = decode_fixed<Fixed>(message, expected, error);
  if (fixed && message.size() != sizeof(Fixed)) {
    fail(error, fmt::format("message of type {} is {} bytes, its layout says {}", static_cast<unsigned>(expected),
                            message.size(), sizeof(Fixed)));
    return std::nullopt;
  }
  return fixed;
}

bool valid_error_kind(ErrorKind kind) { return static_cast<uint32_t>(kind) < kErrorKindCount; }

}  // namespace

std::optional<MessageHeader> decode_header(std::span<const std::byte> message, std::string* error) {
  if (message.size() < sizeof(MessageHeader)) {
    fail(error, fmt::format("message of {} bytes is shorter than a header", message.size()));
    return std::nullopt;
  }
  auto header = load<MessageHeader>(message);
  if (header.magic != kMagic) {
    fail(error, fmt::format("bad magic 0x{:08x}", header.magic));
    return std::nullopt;
  }
  if (header.version != kVersion) {
    fail(error, fmt::format("protocol version {} (this build speaks {})", header.version, kVersion));
    return std::nullopt;
  }
  auto type = static_cast<uint16_t>(header.type);
  if (type < static_cast<uint16_t>(MessageType::hello) || type > static_cast<uint16_t>(MessageType::kLast)) {
    fail(error, fmt::format("unknown message type {}", type));
    return std::nullopt;
  }
  return header;
}

std::optional<HelloView> decode_hello(std::span<const std::byte> message, std::string* error) {
  auto fixed = decode_fixed<HelloMessage>(message, MessageType::hello, error);
  if (!fixed) return std::nullopt;
  if (fixed->token_bytes == 0 || fixed->token_bytes > kMaxTokenBytes || fixed->address_bytes == 0 || fixed->address_bytes > kMaxAddressBytes) {
    fail(error, fmt::format("hello with a {}-byte token and a {}-byte address", fixed->token_bytes,
                            fixed->address_bytes));
    return std::nullopt;
  }
  if (fixed->doorbell_bytes > kMaxDoorbellBytes) {
    fail(error, fmt::format("hello with a {}-byte doorbell name", fixed->doorbell_bytes));
    return std::nullopt;
  }
  if (fixed->flags & ~kHelloRingOffer) {
    fail(error, fmt::format("hello with unknown flags 0x{:x}", fixed->flags));
    return std::nullopt;
  }
  const size_t offer_bytes = (fixed->flags & kHelloRingOffer) ? sizeof(RingOffer) : 0;
  const size_t expected =
      sizeof(HelloMessage) + fixed->token_bytes + fixed->address_bytes + fixed->doorbell_bytes + offer_bytes;
  if (message.size() != expected) {
    fail(error, fmt::format("hello is {} bytes, its lengths say {}", message.size(), expected));
    return std::nullopt;
  }
  auto rest = message.subspan(sizeof(HelloMessage));
  HelloView view{*fixed, as_chars(rest.first(fixed->token_bytes)),
                 as_chars(rest.subspan(fixed->token_bytes, fixed->address_bytes)),
                 as_chars(rest.subspan(fixed->token_bytes + fixed->address_bytes, fixed->doorbell_bytes)),
                 std::nullopt};
  if (!view.doorbell.empty() && !valid_doorbell_name(view.doorbell)) {
    fail(error, "hello names a doorbell that is not /sidecore-<name>");
    return std::nullopt;
  }
  if (offer_bytes > 0) {
    view.rings = load<RingOffer>(message.subspan(expected - offer_bytes));
    if (view.rings->pid == 0 || view.rings->fd < 0 || view.rings->key == 0) {
      fail(error, "hello offers rings without a process, a descriptor or a key");
      return std::nullopt;
    }
  }
  return view;
}

bool valid_doorbell_name(std::string_view name) noexcept {
  constexpr std::string_view prefix = "/sidecore-";
  if (name.size() <= prefix.size() || name.size() > kMaxDoorbellBytes || name.substr(0, prefix.size()) != prefix) {
    return false;
  }
  for (char c : name.substr(prefix.size())) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

std::optional<LookupView> decode_lookup(std::span<const std::byte> message, std::string* error) {
  auto fixed = decode_fixed<LookupMessage>(message, MessageType::lookup, error);
  if (!fixed) return std::nullopt;
  if (fixed->library_bytes == 0 || fixed->library_bytes > kMaxLibraryBytes || fixed->symbol_bytes == 0 ||
      fixed->symbol_bytes > kMaxSymbolBytes) {
    fail(error, fmt::format("lookup with a {}-byte library and a {}-byte symbol", fixed->library_bytes,
                            fixed->symbol_bytes));
    return std::nullopt;
  }
  const size_t expected = sizeof(LookupMessage) + fixed->library_bytes + fixed->symbol_bytes;
  if (message.size() != expected) {
    fail(error, fmt::format("lookup is {} bytes, its lengths say {}", message.size(), expected));
    return std::nullopt;
  }
  auto rest = message.subspan(sizeof(LookupMessage));
  auto library = as_chars(rest.first(fixed->library_bytes));
  auto symbol = as_chars(rest.subspan(fixed->library_bytes, fixed->symbol_bytes));
  if (library.find('\0') != std::string_view::npos || symbol.find('\0') != std::string_view::npos) {
    fail(error, "lookup names contain a NUL byte");
    return std::nullopt;
  }
  return LookupView{*fixed, library, symbol};
}

std::optional<TaskView> decode_task(std::span<const std::byte> message, std::string* error, size_t limit) {
  auto fixed = decode_fixed<TaskMessage>(message, MessageType::task, error);
  if (!fixed) return std::nullopt;
  if (fixed->flags & ~kKnownTaskFlags) {
    fail(error, fmt::format("task with unknown flags 0x{:x}", fixed->flags));
    return std::nullopt;
  }
  TaskView view{*fixed, std::nullopt, std::nullopt, {}};
  size_t offset = sizeof(TaskMessage);
  const bool input_remote = fixed->flags & kInputRemote;
  const bool output_remote = fixed->flags & kOutputRemote;
  const size_t descriptors = (input_remote ? 1 : 0) + (output_remote ? 1 : 0);
  if (message.size() < offset + descriptors * sizeof(RemoteBuffer)) {
    fail(error, "task is shorter than its remote-buffer descriptors");
    return std::nullopt;
  }
  if (input_remote) {
    view.input = load<RemoteBuffer>(message.subspan(offset));
    offset += sizeof(RemoteBuffer);
  }
  if (output_remote) {
    view.output = load<RemoteBuffer>(message.subspan(offset));
    offset += sizeof(RemoteBuffer);
  }
  const uint64_t inline_limit = input_remote ? kMaxTransferBytes : limit;
  if (fixed->in_bytes > inline_limit) {
    fail(error, fmt::format("task input of {} bytes exceeds the {}-byte limit", fixed->in_bytes, inline_limit));
    return std::nullopt;
  }
  const uint64_t out_limit = output_remote ? kMaxTransferBytes : limit;
  if (fixed->out_capacity > out_limit) {
    fail(error, fmt::format("task output capacity of {} bytes exceeds the {}-byte limit", fixed->out_capacity,
                            out_limit));
    return std::nullopt;
  }
  const size_t inline_bytes = input_remote ? 0 : static_cast<size_t>(fixed->in_bytes);
  if (message.size() != offset + inline_bytes) {
    fail(error, fmt::format("task is {} bytes, its lengths say {}", message.size(), offset + inline_bytes));
    return std::nullopt;
  }
  view.inline_input = message.subspan(offset, inline_bytes);
  return view;
}

std::optional<ResultView> decode_result(std::span<const std::byte> message, bool output_remote, std::string* error,
                                        size_t limit) {
  auto fixed = decode_fixed<ResultMessage>(message, MessageType::result, error);
  if (!fixed) return std::nullopt;
  if (!valid_error_kind(fixed->error)) {
    fail(error, fmt::format("result with unknown error kind {}", static_cast<uint32_t>(fixed->error)));
    return std::nullopt;
  }
  if (fixed->out_bytes > (output_remote ? kMaxTransferBytes : limit)) {
    fail(error, fmt::format("result of {} bytes exceeds the limit", fixed->out_bytes));
    return std::nullopt;
  }
  const size_t inline_bytes = output_remote ? 0 : static_cast<size_t>(fixed->out_bytes);
  if (message.size() != sizeof(ResultMessage) + inline_bytes) {
    fail(error, fmt::format("result is {} bytes, its lengths say {}", message.size(),
                            sizeof(ResultMessage) + inline_bytes));
    return std::nullopt;
  }
  return ResultView{*fixed, message.subspan(sizeof(ResultMessage), inline_bytes)};
}

std::optional<WelcomeMessage> decode_welcome(std::span<const std::byte> message, std::string* error) {
  auto fixed = decode_exact<WelcomeMessage>(message, MessageType::welcome, error);
  if (fixed && fixed->credits == 0) {
    fail(error, "welcome grants no credits");
    return std::nullopt;
  }
  return fixed;
}

std::optional<RefusedMessage> decode_refused(std::span<const std::byte> message, std::string* error) {
  auto fixed = decode_exact<RefusedMessage>(message, MessageType::refused, error);
  if (fixed && !valid_error_kind(fixed->error)) {
    fail(error, "refusal with an unknown error kind");
    return std::nullopt;
  }
  return fixed;
}

std::optional<LookupReplyMessage> decode_lookup_reply(std::span<const std::byte> message, std::string* error) {
  auto fixed = decode_exact<LookupReplyMessage>(message, MessageType::lookup_reply, error);
  if (fixed && !valid_error_kind(fixed->error)) {
    fail(error, "lookup reply with an unknown error kind");
    return std::nullopt;
  }
  return fixed;
}

size_t encode_hello(std::span<std::byte> buffer, uint64_t nonce, std::string_view token, std::string_view address,
                    std::string_view doorbell, const RingOffer* rings) {
  const size_t offer_bytes = rings != nullptr ? sizeof *rings : 0;
  const size_t total = sizeof(HelloMessage) + token.size() + address.size() + doorbell.size() + offer_bytes;
  if (token.empty() || token.size() > kMaxTokenBytes || address.empty() || address.size() > kMaxAddressBytes ||
      (!doorbell.empty() && !valid_doorbell_name(doorbell)) || total > buffer.size() ||
      (rings != nullptr && (rings->pid == 0 || rings->fd < 0 || rings->key == 0))) {
    return 0;
  }
  HelloMessage hello{make_header(MessageType::hello),        nonce,
                     static_cast<uint16_t>(token.size()),    static_cast<uint16_t>(address.size()),
                     static_cast<uint16_t>(doorbell.size()), rings != nullptr ? kHelloRingOffer : uint16_t{0}};
  std::byte* out = buffer.data();
  std::memcpy(out, &hello, sizeof hello);
  std::memcpy(out + sizeof hello, token.data(), token.size());
  std::memcpy(out + sizeof hello + token.size(), address.data(), address.size());
  if (!doorbell.empty()) {  // an empty view may hold a null pointer, which memcpy must not get
    std::memcpy(out + sizeof hello + token.size() + address.size(), doorbell.data(), doorbell.size());
  }
  if (rings != nullptr) std::memcpy(out + total - offer_bytes, rings, offer_bytes);
  return total;
}

size_t encode_lookup(std::span<std::byte> buffer, uint32_t peer_id, uint64_t session, uint64_t request_id,
                     std::string_view library, std::string_view symbol) {
  const size_t total = sizeof(LookupMessage) + library.size() + symbol.size();
  if (library.empty() || library.size() > kMaxLibraryBytes || symbol.empty() || symbol.size() > kMaxSymbolBytes ||
      library.find('\0') != std::string_view::npos || symbol.find('\0') != std::string_view::npos ||
      total > buffer.size()) {
    return 0;
  }
  LookupMessage lookup{make_header(MessageType::lookup, peer_id, session), request_id,
                       static_cast<uint16_t>(library.size()), static_cast<uint16_t>(symbol.size()), 0};
  std::memcpy(buffer.data(), &lookup, sizeof lookup);
  std::memcpy(buffer.data() + sizeof lookup, library.data(), library.size());
  std::memcpy(buffer.data() + sizeof lookup + library.size(), symbol.data(), symbol.size());
  return total;
}

size_t encode_task_header(std::span<std::byte> buffer, const TaskMessage& task, const RemoteBuffer* input,
                          const RemoteBuffer* output) {
  const size_t needed = sizeof task + (input ? sizeof *input : 0) + (output ? sizeof *output : 0);
  if (buffer.size() < needed) return 0;
  size_t offset = 0;
  std::memcpy(buffer.data(), &task, sizeof task);
  offset += sizeof task;
  if (input != nullptr) {
    std::memcpy(buffer.data() + offset, input, sizeof *input);
    offset += sizeof *input;
  }
  if (output != nullptr) {
    std::memcpy(buffer.data() + offset, output, sizeof *output);
    offset += sizeof *output;
  }
  return offset;
}

}  // namespace sidecore::protocol
