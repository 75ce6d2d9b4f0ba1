// Fuzzes every decoder of the wire protocol with the same bytes, as a worker or a caller would get
// them from an unknown peer. Besides the sanitizers, it checks what the decoders promise:
//   - a refusal always says why, and asking without an error string gives the same answer;
//   - only the decoder of the header's type accepts a message, and never one larger than
//     kMaxMessageBytes or with views reaching outside it;
//   - whatever is accepted survives re-encoding (hello with its ring offer, lookup, task) and decodes
//     to the same fields;
//   - tasks and results are also decoded with the rings' inline limit (kRingInlineLimit): what the
//     fabric limit accepts, that limit accepts too, and the same fields come out;
//   - valid_doorbell_name and decode_hello/encode_hello agree on which doorbell names are valid.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "protocol.hpp"
#include "transport/ring.hpp"

namespace sidecore::protocol {
namespace {

using Message = std::span<const std::byte>;
using transport::kRingInlineLimit;

// The largest task a ring carries: descriptors for both buffers and kRingInlineLimit inline.
constexpr size_t kMaxRingMessageBytes = sizeof(TaskMessage) + 2 * sizeof(RemoteBuffer) + kRingInlineLimit;

bool within(Message message, const void* data, size_t size) {
  const auto* first = static_cast<const std::byte*>(data);
  const std::byte* begin = message.data();
  const std::byte* end = begin + message.size();
  // An empty view may point anywhere; a non-empty one must lie inside the message.
  return size == 0 || (first >= begin && size <= static_cast<size_t>(end - first));
}

bool within(Message message, std::string_view view) { return within(message, view.data(), view.size()); }
bool within(Message message, std::span<const std::byte> view) { return within(message, view.data(), view.size()); }

bool same_bytes(Message a, Message b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

bool same_header(const MessageHeader& a, const MessageHeader& b) {
  return a.magic == b.magic && a.version == b.version && a.type == b.type && a.peer_id == b.peer_id &&
         a.deadline_ms == b.deadline_ms && a.session == b.session;
}

// Runs `decode(message, error)` with and without an error string and checks the two agree and that a
// refusal explains itself. Returns the result of the call with the error string.
template <typename Decode>
auto decode_both_ways(Decode decode, Message message) {
  std::string error;
  auto with_error = decode(message, &error);
  auto without_error = decode(message, nullptr);
  SIDECORE_FUZZ_CHECK(with_error.has_value() == without_error.has_value());
  SIDECORE_FUZZ_CHECK(with_error.has_value() || !error.empty());
  return with_error;
}

void check_header(Message message) {
  auto header = decode_both_ways([](Message m, std::string* e) { return decode_header(m, e); }, message);
  if (!header) return;
  SIDECORE_FUZZ_CHECK(message.size() >= sizeof(MessageHeader));
  SIDECORE_FUZZ_CHECK(header->magic == kMagic && header->version == kVersion);
  const auto type = static_cast<uint16_t>(header->type);
  SIDECORE_FUZZ_CHECK(type >= static_cast<uint16_t>(MessageType::hello) &&
                      type <= static_cast<uint16_t>(MessageType::kLast));
}

// Every accepted message: a valid header of the decoder's type, and no larger than any buffer the
// data path posts (over libfabric: kMaxMessageBytes; on a ring: `max_bytes`).
void check_accepted(Message message, MessageType type, size_t max_bytes = kMaxMessageBytes) {
  auto header = decode_header(message);
  SIDECORE_FUZZ_CHECK(header.has_value() && header->type == type);
  SIDECORE_FUZZ_CHECK(message.size() <= max_bytes);
}

bool check_hello(Message message) {
  auto hello = decode_both_ways([](Message m, std::string* e) { return decode_hello(m, e); }, message);
  if (!hello) return false;
  check_accepted(message, MessageType::hello);
  const auto& fixed = hello->fixed;
  SIDECORE_FUZZ_CHECK(hello->token.size() == fixed.token_bytes && !hello->token.empty() &&
                      hello->token.size() <= kMaxTokenBytes);
  SIDECORE_FUZZ_CHECK(hello->address.size() == fixed.address_bytes && !hello->address.empty() &&
                      hello->address.size() <= kMaxAddressBytes);
  SIDECORE_FUZZ_CHECK(hello->doorbell.size() == fixed.doorbell_bytes);
  SIDECORE_FUZZ_CHECK(hello->doorbell.empty() || valid_doorbell_name(hello->doorbell));
  SIDECORE_FUZZ_CHECK(within(message, hello->token) && within(message, hello->address) &&
                      within(message, hello->doorbell));
  SIDECORE_FUZZ_CHECK((fixed.flags & ~kHelloRingOffer) == 0);
  SIDECORE_FUZZ_CHECK(hello->rings.has_value() == ((fixed.flags & kHelloRingOffer) != 0));
  const size_t offer_bytes = hello->rings ? sizeof(RingOffer) : 0;
  SIDECORE_FUZZ_CHECK(message.size() == sizeof(HelloMessage) + hello->token.size() + hello->address.size() +
                                            hello->doorbell.size() + offer_bytes);
  if (hello->rings) {
    SIDECORE_FUZZ_CHECK(hello->rings->pid != 0 && hello->rings->fd >= 0 && hello->rings->key != 0);
    // The offer is the message's last 32 bytes, as they came.
    SIDECORE_FUZZ_CHECK(std::memcmp(&*hello->rings, message.data() + message.size() - offer_bytes, offer_bytes) == 0);
  }

  std::vector<std::byte> buffer(kMaxMessageBytes);
  const size_t size = encode_hello(buffer, fixed.nonce, hello->token, hello->address, hello->doorbell,
                                   hello->rings ? &*hello->rings : nullptr);
  SIDECORE_FUZZ_CHECK(size == message.size());
  auto again = decode_hello(std::span<const std::byte>(buffer).first(size));
  SIDECORE_FUZZ_CHECK(again.has_value());
  SIDECORE_FUZZ_CHECK(again->fixed.nonce == fixed.nonce && again->fixed.flags == fixed.flags &&
                      again->token == hello->token && again->address == hello->address &&
                      again->doorbell == hello->doorbell);
  SIDECORE_FUZZ_CHECK(again->rings.has_value() == hello->rings.has_value());
  if (hello->rings) {
    // The offer re-encodes byte for byte (its reserved field included).
    SIDECORE_FUZZ_CHECK(std::memcmp(&*again->rings, &*hello->rings, sizeof(RingOffer)) == 0);
  }
  // encode_hello writes zeros where the sender may have put anything; otherwise the bytes agree.
  if (same_header(fixed.header, make_header(MessageType::hello))) {
    SIDECORE_FUZZ_CHECK(same_bytes(message, std::span<const std::byte>(buffer).first(size)));
  }
  return true;
}

bool check_lookup(Message message) {
  auto lookup = decode_both_ways([](Message m, std::string* e) { return decode_lookup(m, e); }, message);
  if (!lookup) return false;
  check_accepted(message, MessageType::lookup);
  const auto& fixed = lookup->fixed;
  SIDECORE_FUZZ_CHECK(lookup->library.size() == fixed.library_bytes && !lookup->library.empty() &&
                      lookup->library.size() <= kMaxLibraryBytes);
  SIDECORE_FUZZ_CHECK(lookup->symbol.size() == fixed.symbol_bytes && !lookup->symbol.empty() &&
                      lookup->symbol.size() <= kMaxSymbolBytes);
  SIDECORE_FUZZ_CHECK(lookup->library.find('\0') == std::string_view::npos &&
                      lookup->symbol.find('\0') == std::string_view::npos);
  SIDECORE_FUZZ_CHECK(within(message, lookup->library) && within(message, lookup->symbol));

  std::vector<std::byte> buffer(kMaxMessageBytes);
  const size_t size = encode_lookup(buffer, fixed.header.peer_id, fixed.header.session, fixed.request_id,
                                    lookup->library, lookup->symbol);
  SIDECORE_FUZZ_CHECK(size == message.size());
  auto again = decode_lookup(std::span<const std::byte>(buffer).first(size));
  SIDECORE_FUZZ_CHECK(again.has_value());
  SIDECORE_FUZZ_CHECK(again->fixed.header.peer_id == fixed.header.peer_id &&
                      again->fixed.header.session == fixed.header.session &&
                      again->fixed.request_id == fixed.request_id && again->library == lookup->library &&
                      again->symbol == lookup->symbol);
  if (fixed.header.deadline_ms == 0 && fixed.reserved == 0) {
    SIDECORE_FUZZ_CHECK(same_bytes(message, std::span<const std::byte>(buffer).first(size)));
  }
  return true;
}

// `limit`: kInlineLimit (libfabric, the decoder's default) or kRingInlineLimit (a ring task).
bool check_task(Message message, size_t limit) {
  auto task = decode_both_ways([limit](Message m, std::string* e) { return decode_task(m, e, limit); }, message);
  if (!task) return false;
  check_accepted(message, MessageType::task, limit == kInlineLimit ? kMaxMessageBytes : kMaxRingMessageBytes);
  const auto& fixed = task->fixed;
  const bool input_remote = fixed.flags & kInputRemote;
  const bool output_remote = fixed.flags & kOutputRemote;
  SIDECORE_FUZZ_CHECK((fixed.flags & ~kKnownTaskFlags) == 0);
  SIDECORE_FUZZ_CHECK(task->input.has_value() == input_remote && task->output.has_value() == output_remote);
  SIDECORE_FUZZ_CHECK(fixed.in_bytes <= (input_remote ? kMaxTransferBytes : limit));
  SIDECORE_FUZZ_CHECK(fixed.out_capacity <= (output_remote ? kMaxTransferBytes : limit));
  SIDECORE_FUZZ_CHECK(task->inline_input.size() == (input_remote ? 0 : fixed.in_bytes));
  SIDECORE_FUZZ_CHECK(within(message, task->inline_input));

  // The data path's own encoder followed by the inline input gives back the very same bytes.
  std::vector<std::byte> buffer(std::max(kMaxMessageBytes, message.size()));
  const size_t header_size = encode_task_header(buffer, fixed, task->input ? &*task->input : nullptr,
                                                task->output ? &*task->output : nullptr);
  SIDECORE_FUZZ_CHECK(header_size != 0 && header_size + task->inline_input.size() == message.size());
  if (!task->inline_input.empty()) {
    std::memcpy(buffer.data() + header_size, task->inline_input.data(), task->inline_input.size());
  }
  SIDECORE_FUZZ_CHECK(same_bytes(message, std::span<const std::byte>(buffer).first(message.size())));
  return true;
}

bool check_result(Message message, bool output_remote, size_t limit) {
  auto result = decode_both_ways(
      [output_remote, limit](Message m, std::string* e) { return decode_result(m, output_remote, e, limit); }, message);
  if (!result) return false;
  check_accepted(message, MessageType::result, limit == kInlineLimit ? kMaxMessageBytes : kMaxRingMessageBytes);
  SIDECORE_FUZZ_CHECK(static_cast<uint32_t>(result->fixed.error) < kErrorKindCount);
  SIDECORE_FUZZ_CHECK(result->fixed.out_bytes <= (output_remote ? kMaxTransferBytes : limit));
  SIDECORE_FUZZ_CHECK(result->inline_output.size() == (output_remote ? 0 : result->fixed.out_bytes));
  SIDECORE_FUZZ_CHECK(message.size() == sizeof(ResultMessage) + result->inline_output.size());
  SIDECORE_FUZZ_CHECK(within(message, result->inline_output));
  return true;
}

template <typename Fixed, typename Decode>
std::optional<Fixed> check_exact(Message message, MessageType type, Decode decode) {
  auto fixed = decode_both_ways(decode, message);
  if (!fixed) return std::nullopt;
  check_accepted(message, type);
  SIDECORE_FUZZ_CHECK(message.size() == sizeof(Fixed));
  return fixed;
}

bool check_fixed_size_messages(Message message) {
  int accepted = 0;
  if (auto welcome = check_exact<WelcomeMessage>(message, MessageType::welcome,
                                                 [](Message m, std::string* e) { return decode_welcome(m, e); })) {
    SIDECORE_FUZZ_CHECK(welcome->credits != 0);
    ++accepted;
  }
  if (auto refused = check_exact<RefusedMessage>(message, MessageType::refused,
                                                 [](Message m, std::string* e) { return decode_refused(m, e); })) {
    SIDECORE_FUZZ_CHECK(static_cast<uint32_t>(refused->error) < kErrorKindCount);
    ++accepted;
  }
  if (auto reply = check_exact<LookupReplyMessage>(
          message, MessageType::lookup_reply, [](Message m, std::string* e) { return decode_lookup_reply(m, e); })) {
    SIDECORE_FUZZ_CHECK(static_cast<uint32_t>(reply->error) < kErrorKindCount);
    ++accepted;
  }
  SIDECORE_FUZZ_CHECK(accepted <= 1);
  return accepted == 1;
}

// valid_doorbell_name against its own description and against what encode_hello/decode_hello accept.
void check_doorbell_name(std::string_view name) {
  const bool valid = valid_doorbell_name(name);
  constexpr std::string_view prefix = "/sidecore-";
  if (valid) {
    SIDECORE_FUZZ_CHECK(name.size() > prefix.size() && name.size() <= kMaxDoorbellBytes);
    SIDECORE_FUZZ_CHECK(name.substr(0, prefix.size()) == prefix);
  }
  if (name.empty()) return;
  std::vector<std::byte> buffer(kMaxMessageBytes);
  const size_t size = encode_hello(buffer, 1, "token", "address", name);
  SIDECORE_FUZZ_CHECK((size != 0) == valid);
  if (size == 0) return;
  auto hello = decode_hello(std::span<const std::byte>(buffer).first(size));
  SIDECORE_FUZZ_CHECK(hello.has_value() && hello->doorbell == name);
}

}  // namespace
}  // namespace sidecore::protocol

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sidecore::protocol;
  const Message message(reinterpret_cast<const std::byte*>(data), size);
  check_header(message);
  int accepted = 0;
  accepted += check_hello(message);
  accepted += check_lookup(message);
  const bool task_fabric = check_task(message, kInlineLimit);
  const bool task_ring = check_task(message, kRingInlineLimit);
  // The rings' limit is the larger one: it refuses nothing the fabric's accepts.
  if (task_fabric) SIDECORE_FUZZ_CHECK(task_ring);
  accepted += task_ring;
  const bool result_inline = check_result(message, false, kInlineLimit);
  const bool result_remote = check_result(message, true, kInlineLimit);
  const bool result_ring = check_result(message, false, kRingInlineLimit);
  if (result_inline) SIDECORE_FUZZ_CHECK(result_ring);
  // Over the fabric's limit only by its inline bytes: a ring result the fabric refuses.
  if (result_ring && !result_inline) SIDECORE_FUZZ_CHECK(message.size() > sizeof(ResultMessage) + kInlineLimit);
  accepted += result_inline || result_remote || result_ring;
  accepted += check_fixed_size_messages(message);
  // A type field names one message; no two decoders may claim the same bytes.
  SIDECORE_FUZZ_CHECK(accepted <= 1);
  // A result with nothing inline reads the same whether or not the output went by RMA.
  if (result_inline && message.size() == sizeof(ResultMessage)) SIDECORE_FUZZ_CHECK(result_remote);
  if (result_remote) SIDECORE_FUZZ_CHECK(message.size() == sizeof(ResultMessage));
  check_doorbell_name(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
