// Wire protocol: every message survives encode/decode, and every malformed message is refused with
// an error that names what is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "protocol.hpp"
#include "transport/ring.hpp"

namespace sidecore::protocol {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<std::byte>;
using transport::kRingInlineLimit;

// A message made of a fixed part followed by raw bytes, the way a peer would put it on the wire.
template <typename Fixed>
Bytes message_of(const Fixed& fixed, std::string_view trailer = {}) {
  Bytes bytes(sizeof(Fixed) + trailer.size());
  std::memcpy(bytes.data(), &fixed, sizeof(Fixed));
  if (!trailer.empty()) std::memcpy(bytes.data() + sizeof(Fixed), trailer.data(), trailer.size());
  return bytes;
}

void append(Bytes& bytes, const void* data, size_t size) {
  const auto* first = static_cast<const std::byte*>(data);
  bytes.insert(bytes.end(), first, first + size);
}

// The tail of the error for a message whose size disagrees with the lengths it carries.
std::string lengths_say(size_t actual, size_t expected) {
  return "is " + std::to_string(actual) + " bytes, its lengths say " + std::to_string(expected);
}

std::string_view chars(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A task message as the data path builds it: header, descriptors, then `inline_input`.
Bytes task_message(const TaskMessage& task, const RemoteBuffer* input, const RemoteBuffer* output,
                   std::string_view inline_input = {}) {
  Bytes bytes(kMaxMessageBytes + 64);
  size_t size = encode_task_header(bytes, task, input, output);
  bytes.resize(size);
  append(bytes, inline_input.data(), inline_input.size());
  return bytes;
}

TaskMessage task_fixed(uint32_t flags, uint64_t in_bytes, uint64_t out_capacity) {
  return TaskMessage{make_header(MessageType::task, 7, 0x1234), 42, 3, flags, in_bytes, out_capacity};
}

const std::string kAddress("\x00\x01\x02\xff\x00 addr", 11);  // binary, with NUL bytes

// --- header ----------------------------------------------------------------------------------------

TEST(ProtocolHeader, WireLayoutIsFixedLittleEndian) {
  Bytes buffer(kMaxMessageBytes);
  const size_t size = encode_lookup(buffer, 0x01020304, 0x1122334455667788, 9, "lib.so", "fn");
  ASSERT_GT(size, 0u);
  EXPECT_EQ(chars(std::span(buffer).first(4)), "SDCR");
  EXPECT_EQ(buffer[4], std::byte{1});  // version, low byte first
  EXPECT_EQ(buffer[5], std::byte{0});
  EXPECT_EQ(buffer[6], std::byte{static_cast<uint8_t>(MessageType::lookup)});
  EXPECT_EQ(buffer[8], std::byte{0x04});    // peer id at offset 8
  EXPECT_EQ(buffer[16], std::byte{0x88});   // session at offset 16
  EXPECT_EQ(buffer[23], std::byte{0x11});
}

TEST(ProtocolHeader, DecodesEveryKnownType) {
  for (uint16_t type = 1; type <= 8; ++type) {
    auto bytes = message_of(make_header(static_cast<MessageType>(type), 5, 6));
    std::string error;
    auto header = decode_header(bytes, &error);
    ASSERT_TRUE(header) << "type " << type << ": " << error;
    EXPECT_EQ(static_cast<uint16_t>(header->type), type);
    EXPECT_EQ(header->peer_id, 5u);
    EXPECT_EQ(header->session, 6u);
  }
}

TEST(ProtocolHeader, RejectsMessageShorterThanHeader) {
  for (size_t size : {size_t{0}, size_t{1}, sizeof(MessageHeader) - 1}) {
    auto bytes = message_of(make_header(MessageType::hello));
    bytes.resize(size);
    std::string error;
    EXPECT_FALSE(decode_header(bytes, &error)) << size;
    EXPECT_THAT(error, HasSubstr("shorter than a header")) << size;
  }
}

TEST(ProtocolHeader, RejectsBadMagic) {
  auto header = make_header(MessageType::hello);
  header.magic = 0x52434454;
  std::string error;
  EXPECT_FALSE(decode_header(message_of(header), &error));
  EXPECT_THAT(error, HasSubstr("magic"));
}

TEST(ProtocolHeader, RejectsOtherVersions) {
  for (uint16_t version : {uint16_t{0}, uint16_t{2}, uint16_t{0xffff}}) {
    auto header = make_header(MessageType::hello);
    header.version = version;
    std::string error;
    EXPECT_FALSE(decode_header(message_of(header), &error));
    EXPECT_THAT(error, HasSubstr("version " + std::to_string(version)));
  }
}

TEST(ProtocolHeader, RejectsUnknownTypes) {
  const auto past_last = static_cast<uint16_t>(static_cast<uint16_t>(MessageType::kLast) + 1);
  for (uint16_t type : {uint16_t{0}, past_last, uint16_t{0xffff}}) {
    auto bytes = message_of(make_header(static_cast<MessageType>(type)));
    std::string error;
    EXPECT_FALSE(decode_header(bytes, &error));
    EXPECT_THAT(error, HasSubstr("unknown message type " + std::to_string(type)));
  }
}

TEST(ProtocolHeader, AcceptsDeclined) {
  // A draining worker's answer (the type newest to the protocol) passes the header check.
  auto bytes = message_of(make_header(MessageType::declined, 3, 7));
  std::string error;
  const auto header = decode_header(bytes, &error);
  ASSERT_TRUE(header) << error;
  EXPECT_EQ(header->type, MessageType::declined);
  EXPECT_EQ(header->peer_id, 3u);
  EXPECT_EQ(header->session, 7u);
}

TEST(ProtocolHeader, ErrorArgumentIsOptional) {
  Bytes too_short(3);
  EXPECT_FALSE(decode_header(too_short));
  EXPECT_FALSE(decode_hello(too_short));
  EXPECT_FALSE(decode_task(too_short));
  EXPECT_FALSE(decode_result(too_short, false));
}

TEST(ProtocolHeader, EveryDecoderChecksTheHeader) {
  // A message whose body would be fine but whose magic is wrong.
  WelcomeMessage welcome{make_header(MessageType::welcome), 1, 4, 0, 0, 0};
  welcome.header.magic = 0;
  std::string error;
  EXPECT_FALSE(decode_welcome(message_of(welcome), &error));
  EXPECT_THAT(error, HasSubstr("magic"));
  TaskMessage task = task_fixed(0, 0, 0);
  task.header.version = 3;
  EXPECT_FALSE(decode_task(message_of(task), &error));
  EXPECT_THAT(error, HasSubstr("version"));
}

// --- decoders refuse other message types -------------------------------------------------------------

TEST(ProtocolType, EachDecoderRejectsOtherTypes) {
  // A well-formed lookup handed to every other decoder.
  Bytes lookup(kMaxMessageBytes);
  lookup.resize(encode_lookup(lookup, 1, 2, 3, "lib.so", "fn"));
  ASSERT_FALSE(lookup.empty());
  const std::string expected = "type 4 where";
  std::string error;
  EXPECT_FALSE(decode_hello(lookup, &error));
  EXPECT_THAT(error, HasSubstr(expected));
  EXPECT_FALSE(decode_task(lookup, &error));
  EXPECT_THAT(error, HasSubstr(expected));
  EXPECT_FALSE(decode_result(lookup, false, &error));
  EXPECT_THAT(error, HasSubstr(expected));
  EXPECT_FALSE(decode_welcome(lookup, &error));
  EXPECT_THAT(error, HasSubstr(expected));
  EXPECT_FALSE(decode_refused(lookup, &error));
  EXPECT_THAT(error, HasSubstr(expected));
  EXPECT_FALSE(decode_lookup_reply(lookup, &error));
  EXPECT_THAT(error, HasSubstr(expected));

  Bytes hello(kMaxMessageBytes);
  hello.resize(encode_hello(hello, 1, "token", kAddress));
  EXPECT_FALSE(decode_lookup(hello, &error));
  EXPECT_THAT(error, HasSubstr("type 1 where 4 was expected"));
}

// --- fixed part shorter than the message type needs -------------------------------------------------

TEST(ProtocolShort, HeaderOnlyMessagesAreRejected) {
  struct Case {
    MessageType type;
    size_t fixed_size;
    bool (*decode)(std::span<const std::byte>, std::string*);
  };
  const Case cases[] = {
      {MessageType::hello, sizeof(HelloMessage),
       [](std::span<const std::byte> m, std::string* e) { return decode_hello(m, e).has_value(); }},
      {MessageType::welcome, sizeof(WelcomeMessage),
       [](std::span<const std::byte> m, std::string* e) { return decode_welcome(m, e).has_value(); }},
      {MessageType::refused, sizeof(RefusedMessage),
       [](std::span<const std::byte> m, std::string* e) { return decode_refused(m, e).has_value(); }},
      {MessageType::lookup, sizeof(LookupMessage),
       [](std::span<const std::byte> m, std::string* e) { return decode_lookup(m, e).has_value(); }},
      {MessageType::lookup_reply, sizeof(LookupReplyMessage),
       [](std::span<const std::byte> m, std::string* e) { return decode_lookup_reply(m, e).has_value(); }},
      {MessageType::task, sizeof(TaskMessage),
       [](std::span<const std::byte> m, std::string* e) { return decode_task(m, e).has_value(); }},
      {MessageType::result, sizeof(ResultMessage),
       [](std::span<const std::byte> m, std::string* e) { return decode_result(m, false, e).has_value(); }},
  };
  for (const auto& c : cases) {
    // A header of the right type, zero-padded to one byte less than the type's fixed part.
    Bytes bytes(c.fixed_size - 1);
    auto header = make_header(c.type);
    std::memcpy(bytes.data(), &header, sizeof header);
    std::string error;
    EXPECT_FALSE(c.decode(bytes, &error)) << "type " << static_cast<unsigned>(c.type);
    EXPECT_THAT(error, HasSubstr("shorter than its " + std::to_string(c.fixed_size) + "-byte header"));
  }
}

// --- hello -------------------------------------------------------------------------------------------

TEST(ProtocolHello, RoundTrip) {
  Bytes buffer(kMaxMessageBytes);
  const std::string token = "0123456789abcdef0123456789abcdef";
  const size_t size = encode_hello(buffer, 0xfeedface12345678, token, kAddress);
  ASSERT_EQ(size, sizeof(HelloMessage) + token.size() + kAddress.size());
  std::string error;
  auto hello = decode_hello(std::span(buffer).first(size), &error);
  ASSERT_TRUE(hello) << error;
  EXPECT_EQ(hello->fixed.header.magic, kMagic);
  EXPECT_EQ(hello->fixed.header.version, kVersion);
  EXPECT_EQ(hello->fixed.header.type, MessageType::hello);
  EXPECT_EQ(hello->fixed.nonce, 0xfeedface12345678u);
  EXPECT_EQ(hello->token, token);
  EXPECT_EQ(hello->address, kAddress);
}

TEST(ProtocolHello, RoundTripAtTheLimits) {
  Bytes buffer(kMaxMessageBytes);
  const std::string token(kMaxTokenBytes, 't');
  const std::string address(kMaxAddressBytes, '\0');
  const size_t size = encode_hello(buffer, 1, token, address);
  ASSERT_GT(size, 0u);
  auto hello = decode_hello(std::span(buffer).first(size));
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->token, token);
  EXPECT_EQ(hello->address, address);
}

TEST(ProtocolHello, EncodeRefusesOversizedFieldsAndSmallBuffers) {
  Bytes buffer(kMaxMessageBytes);
  EXPECT_EQ(encode_hello(buffer, 1, std::string(kMaxTokenBytes + 1, 't'), kAddress), 0u);
  EXPECT_EQ(encode_hello(buffer, 1, "token", std::string(kMaxAddressBytes + 1, 'a')), 0u);
  Bytes small(sizeof(HelloMessage) + 5 + kAddress.size() - 1);
  EXPECT_EQ(encode_hello(small, 1, "token", kAddress), 0u);
  small.push_back(std::byte{0});
  EXPECT_EQ(encode_hello(small, 1, "token", kAddress), small.size());
}

HelloMessage hello_fixed(uint16_t token_bytes, uint16_t address_bytes) {
  return HelloMessage{make_header(MessageType::hello), 1, token_bytes, address_bytes, 0, 0};
}

TEST(ProtocolHello, RejectsTokenAboveLimit) {
  const uint16_t token_bytes = kMaxTokenBytes + 1;
  auto bytes = message_of(hello_fixed(token_bytes, 4), std::string(token_bytes, 't') + "addr");
  std::string error;
  EXPECT_FALSE(decode_hello(bytes, &error));
  EXPECT_THAT(error, HasSubstr(std::to_string(token_bytes) + "-byte token"));
}

TEST(ProtocolHello, RejectsAddressOfZeroOrAboveLimit) {
  std::string error;
  EXPECT_FALSE(decode_hello(message_of(hello_fixed(5, 0), "token"), &error));
  EXPECT_THAT(error, HasSubstr("0-byte address"));

  const uint16_t address_bytes = kMaxAddressBytes + 1;
  auto bytes = message_of(hello_fixed(5, address_bytes), "token" + std::string(address_bytes, 'a'));
  EXPECT_FALSE(decode_hello(bytes, &error));
  EXPECT_THAT(error, HasSubstr(std::to_string(address_bytes) + "-byte address"));
}

TEST(ProtocolHello, RejectsLengthsThatDisagreeWithSize) {
  Bytes buffer(kMaxMessageBytes);
  const size_t size = encode_hello(buffer, 1, "token", kAddress);
  ASSERT_GT(size, 0u);
  std::string error;
  EXPECT_FALSE(decode_hello(std::span(buffer).first(size - 1), &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size - 1, size)));
  EXPECT_FALSE(decode_hello(std::span(buffer).first(size + 1), &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size + 1, size)));
}

// --- hello with node-local rings ------------------------------------------------------------------------

const RingOffer kOffer{0x1122334455667788, 0x00007f0012345678, 4321, 17, 3, 0};

// A hello with kOffer as the encoder writes it.
Bytes ring_hello() {
  Bytes buffer(kMaxMessageBytes);
  const size_t size = encode_hello(buffer, 5, "token", kAddress, "/sidecore-abc", &kOffer);
  EXPECT_EQ(size, sizeof(HelloMessage) + 5 + kAddress.size() + 13 + sizeof(RingOffer));
  buffer.resize(size);
  return buffer;
}

void set_hello_flags(Bytes& bytes, uint16_t flags) {
  std::memcpy(bytes.data() + offsetof(HelloMessage, flags), &flags, sizeof flags);
}

TEST(ProtocolHelloRings, OfferRoundTrips) {
  const Bytes bytes = ring_hello();
  std::string error;
  auto hello = decode_hello(bytes, &error);
  ASSERT_TRUE(hello) << error;
  EXPECT_EQ(hello->fixed.flags, kHelloRingOffer);
  EXPECT_EQ(hello->token, "token");
  EXPECT_EQ(hello->address, kAddress);
  EXPECT_EQ(hello->doorbell, "/sidecore-abc");
  ASSERT_TRUE(hello->rings);
  EXPECT_EQ(hello->rings->key, kOffer.key);
  EXPECT_EQ(hello->rings->key_address, kOffer.key_address);
  EXPECT_EQ(hello->rings->pid, kOffer.pid);
  EXPECT_EQ(hello->rings->fd, kOffer.fd);
  EXPECT_EQ(hello->rings->pair, kOffer.pair);
}

TEST(ProtocolHelloRings, AHelloWithoutAnOfferHasNoRings) {
  Bytes buffer(kMaxMessageBytes);
  const size_t size = encode_hello(buffer, 5, "token", kAddress);
  auto hello = decode_hello(std::span(buffer).first(size));
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->fixed.flags, 0u);
  EXPECT_FALSE(hello->rings);
}

TEST(ProtocolHelloRings, RejectsUnknownFlags) {
  for (uint16_t flags : {uint16_t{2}, uint16_t{kHelloRingOffer | 4}, uint16_t{0x8000}}) {
    Bytes bytes = ring_hello();
    set_hello_flags(bytes, flags);
    std::string error;
    EXPECT_FALSE(decode_hello(bytes, &error)) << flags;
    EXPECT_THAT(error, HasSubstr("unknown flags")) << flags;
  }
}

TEST(ProtocolHelloRings, RejectsAFlagWithoutTheOfferOrWithBytesAfterIt) {
  Bytes buffer(kMaxMessageBytes);
  const size_t size = encode_hello(buffer, 5, "token", kAddress);
  buffer.resize(size);
  set_hello_flags(buffer, kHelloRingOffer);
  std::string error;
  EXPECT_FALSE(decode_hello(buffer, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size, size + sizeof(RingOffer))));

  Bytes longer = ring_hello();
  longer.push_back(std::byte{0});
  EXPECT_FALSE(decode_hello(longer, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(longer.size(), longer.size() - 1)));

  Bytes shorter = ring_hello();
  shorter.pop_back();
  EXPECT_FALSE(decode_hello(shorter, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(shorter.size(), shorter.size() + 1)));

  // An offer without the flag is bytes the lengths do not account for.
  Bytes unflagged = ring_hello();
  set_hello_flags(unflagged, 0);
  EXPECT_FALSE(decode_hello(unflagged, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(unflagged.size(), unflagged.size() - sizeof(RingOffer))));
}

TEST(ProtocolHelloRings, RejectsAnOfferWithoutProcessDescriptorOrKey) {
  const size_t at = ring_hello().size() - sizeof(RingOffer);
  auto with = [&](auto change) {
    RingOffer offer = kOffer;
    change(offer);
    Bytes bytes = ring_hello();
    std::memcpy(bytes.data() + at, &offer, sizeof offer);
    // The encoder refuses what the decoder would refuse.
    Bytes buffer(kMaxMessageBytes);
    EXPECT_EQ(encode_hello(buffer, 5, "token", kAddress, "/sidecore-abc", &offer), 0u);
    return bytes;
  };
  for (const Bytes& bytes : {with([](RingOffer& o) { o.pid = 0; }), with([](RingOffer& o) { o.fd = -1; }),
                             with([](RingOffer& o) { o.key = 0; })}) {
    std::string error;
    EXPECT_FALSE(decode_hello(bytes, &error));
    EXPECT_THAT(error, HasSubstr("offers rings without a process, a descriptor or a key"));
  }
  // Descriptor 0 is a descriptor.
  RingOffer offer = kOffer;
  offer.fd = 0;
  Bytes buffer(kMaxMessageBytes);
  const size_t size = encode_hello(buffer, 5, "token", kAddress, {}, &offer);
  ASSERT_GT(size, 0u);
  auto hello = decode_hello(std::span(buffer).first(size));
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->rings->fd, 0);
}

// --- lookup ------------------------------------------------------------------------------------------

TEST(ProtocolLookup, RoundTrip) {
  Bytes buffer(kMaxMessageBytes);
  const std::string library = "/home/user/lib/libphysics.so";
  const size_t size = encode_lookup(buffer, 17, 0xabcdef0011223344, 99, library, "integrate");
  ASSERT_EQ(size, sizeof(LookupMessage) + library.size() + 9);
  std::string error;
  auto lookup = decode_lookup(std::span(buffer).first(size), &error);
  ASSERT_TRUE(lookup) << error;
  EXPECT_EQ(lookup->fixed.header.type, MessageType::lookup);
  EXPECT_EQ(lookup->fixed.header.peer_id, 17u);
  EXPECT_EQ(lookup->fixed.header.session, 0xabcdef0011223344u);
  EXPECT_EQ(lookup->fixed.request_id, 99u);
  EXPECT_EQ(lookup->library, library);
  EXPECT_EQ(lookup->symbol, "integrate");
}

TEST(ProtocolLookup, RoundTripAtTheLimits) {
  Bytes buffer(kMaxMessageBytes);
  const std::string library(kMaxLibraryBytes, 'l'), symbol(kMaxSymbolBytes, 's');
  const size_t size = encode_lookup(buffer, 1, 2, 3, library, symbol);
  ASSERT_GT(size, 0u);
  auto lookup = decode_lookup(std::span(buffer).first(size));
  ASSERT_TRUE(lookup);
  EXPECT_EQ(lookup->library, library);
  EXPECT_EQ(lookup->symbol, symbol);
}

TEST(ProtocolLookup, EncodeRefusesOversizedNamesAndSmallBuffers) {
  Bytes buffer(kMaxMessageBytes);
  EXPECT_EQ(encode_lookup(buffer, 1, 2, 3, std::string(kMaxLibraryBytes + 1, 'l'), "fn"), 0u);
  EXPECT_EQ(encode_lookup(buffer, 1, 2, 3, "lib.so", std::string(kMaxSymbolBytes + 1, 's')), 0u);
  Bytes small(sizeof(LookupMessage) + 6 + 2 - 1);
  EXPECT_EQ(encode_lookup(small, 1, 2, 3, "lib.so", "fn"), 0u);
}

LookupMessage lookup_fixed(uint16_t library_bytes, uint16_t symbol_bytes) {
  return LookupMessage{make_header(MessageType::lookup, 1, 2), 3, library_bytes, symbol_bytes, 0};
}

TEST(ProtocolLookup, RejectsNameLengthsOfZeroOrAboveLimits) {
  struct Case {
    uint16_t library_bytes, symbol_bytes;
    std::string named;  // what the error must mention
  };
  const uint16_t long_library = kMaxLibraryBytes + 1, long_symbol = kMaxSymbolBytes + 1;
  const Case cases[] = {
      {0, 2, "0-byte library"},
      {long_library, 2, std::to_string(long_library) + "-byte library"},
      {6, 0, "0-byte symbol"},
      {6, long_symbol, std::to_string(long_symbol) + "-byte symbol"},
  };
  for (const auto& c : cases) {
    auto bytes = message_of(lookup_fixed(c.library_bytes, c.symbol_bytes),
                            std::string(c.library_bytes, 'l') + std::string(c.symbol_bytes, 's'));
    std::string error;
    EXPECT_FALSE(decode_lookup(bytes, &error)) << c.named;
    EXPECT_THAT(error, HasSubstr(c.named));
  }
}

TEST(ProtocolLookup, RejectsLengthsThatDisagreeWithSize) {
  Bytes buffer(kMaxMessageBytes);
  const size_t size = encode_lookup(buffer, 1, 2, 3, "lib.so", "fn");
  ASSERT_GT(size, 0u);
  std::string error;
  EXPECT_FALSE(decode_lookup(std::span(buffer).first(size - 1), &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size - 1, size)));
  EXPECT_FALSE(decode_lookup(std::span(buffer).first(size + 1), &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size + 1, size)));
}

TEST(ProtocolLookup, RejectsNulInsideNames) {
  std::string error;
  auto in_library = message_of(lookup_fixed(6, 2), std::string("li\0.so", 6) + "fn");
  EXPECT_FALSE(decode_lookup(in_library, &error));
  EXPECT_THAT(error, HasSubstr("NUL"));
  error.clear();
  auto in_symbol = message_of(lookup_fixed(6, 2), "lib.so" + std::string("f\0", 2));
  EXPECT_FALSE(decode_lookup(in_symbol, &error));
  EXPECT_THAT(error, HasSubstr("NUL"));
}

// --- task --------------------------------------------------------------------------------------------

TEST(ProtocolTask, RoundTripInlineInput) {
  const std::string input("in\0put", 6);
  auto bytes = task_message(task_fixed(0, input.size(), 100), nullptr, nullptr, input);
  EXPECT_EQ(bytes.size(), sizeof(TaskMessage) + input.size());
  std::string error;
  auto task = decode_task(bytes, &error);
  ASSERT_TRUE(task) << error;
  EXPECT_EQ(task->fixed.header.type, MessageType::task);
  EXPECT_EQ(task->fixed.header.peer_id, 7u);
  EXPECT_EQ(task->fixed.header.session, 0x1234u);
  EXPECT_EQ(task->fixed.request_id, 42u);
  EXPECT_EQ(task->fixed.function_id, 3u);
  EXPECT_EQ(task->fixed.in_bytes, input.size());
  EXPECT_EQ(task->fixed.out_capacity, 100u);
  EXPECT_FALSE(task->input);
  EXPECT_FALSE(task->output);
  EXPECT_EQ(chars(task->inline_input), input);
}

TEST(ProtocolTask, RoundTripEmptyInlineInput) {
  auto bytes = task_message(task_fixed(0, 0, 0), nullptr, nullptr);
  auto task = decode_task(bytes);
  ASSERT_TRUE(task);
  EXPECT_TRUE(task->inline_input.empty());
}

TEST(ProtocolTask, RoundTripInlineInputAtLimit) {
  const std::string input(kInlineLimit, 'x');
  // The decoded view points into the message: keep the message alive while the view is used.
  const auto bytes = task_message(task_fixed(0, input.size(), kInlineLimit), nullptr, nullptr, input);
  auto task = decode_task(bytes);
  ASSERT_TRUE(task);
  EXPECT_EQ(chars(task->inline_input), input);
}

TEST(ProtocolTask, RoundTripRemoteInput) {
  const RemoteBuffer input{0x7f0000001000, 0xaaaa};
  const uint64_t in_bytes = uint64_t{1} << 30;
  auto bytes = task_message(task_fixed(kInputRemote, in_bytes, 64), &input, nullptr);
  EXPECT_EQ(bytes.size(), sizeof(TaskMessage) + sizeof(RemoteBuffer));
  std::string error;
  auto task = decode_task(bytes, &error);
  ASSERT_TRUE(task) << error;
  ASSERT_TRUE(task->input);
  EXPECT_EQ(task->input->address, input.address);
  EXPECT_EQ(task->input->key, input.key);
  EXPECT_FALSE(task->output);
  EXPECT_EQ(task->fixed.in_bytes, in_bytes);
  EXPECT_TRUE(task->inline_input.empty());
}

TEST(ProtocolTask, RoundTripRemoteOutput) {
  const RemoteBuffer output{0x7f0000002000, 0xbbbb};
  const uint64_t out_capacity = uint64_t{1} << 32;
  auto bytes = task_message(task_fixed(kOutputRemote, 3, out_capacity), nullptr, &output, "abc");
  EXPECT_EQ(bytes.size(), sizeof(TaskMessage) + sizeof(RemoteBuffer) + 3);
  std::string error;
  auto task = decode_task(bytes, &error);
  ASSERT_TRUE(task) << error;
  EXPECT_FALSE(task->input);
  ASSERT_TRUE(task->output);
  EXPECT_EQ(task->output->address, output.address);
  EXPECT_EQ(task->output->key, output.key);
  EXPECT_EQ(task->fixed.out_capacity, out_capacity);
  EXPECT_EQ(chars(task->inline_input), "abc");
}

TEST(ProtocolTask, RoundTripRemoteInputAndOutput) {
  const RemoteBuffer input{0x1000, 1}, output{0x2000, 2};
  auto bytes = task_message(task_fixed(kInputRemote | kOutputRemote, kMaxTransferBytes, kMaxTransferBytes), &input,
                            &output);
  EXPECT_EQ(bytes.size(), sizeof(TaskMessage) + 2 * sizeof(RemoteBuffer));
  std::string error;
  auto task = decode_task(bytes, &error);
  ASSERT_TRUE(task) << error;
  ASSERT_TRUE(task->input);
  ASSERT_TRUE(task->output);
  // Input descriptor first, then output: a swap would hand the worker the wrong buffers.
  EXPECT_EQ(task->input->address, 0x1000u);
  EXPECT_EQ(task->input->key, 1u);
  EXPECT_EQ(task->output->address, 0x2000u);
  EXPECT_EQ(task->output->key, 2u);
  EXPECT_TRUE(task->inline_input.empty());
}

TEST(ProtocolTask, RejectsUnknownFlags) {
  for (uint32_t flags : {1u << 2, 1u << 31, kKnownTaskFlags | 1u << 5}) {
    auto bytes = task_message(task_fixed(flags, 0, 0), nullptr, nullptr);
    std::string error;
    EXPECT_FALSE(decode_task(bytes, &error));
    EXPECT_THAT(error, HasSubstr("unknown flags"));
  }
}

TEST(ProtocolTask, RejectsInlineInputAboveLimit) {
  const std::string input(kInlineLimit + 1, 'x');
  auto bytes = task_message(task_fixed(0, input.size(), 0), nullptr, nullptr, input);
  std::string error;
  EXPECT_FALSE(decode_task(bytes, &error));
  EXPECT_THAT(error, HasSubstr("input of " + std::to_string(kInlineLimit + 1) + " bytes exceeds"));
}

TEST(ProtocolTask, RejectsHugeInputLengthWithoutTheBytes) {
  // A lying length must be refused before anything reads that many bytes.
  auto bytes = task_message(task_fixed(0, UINT64_MAX, 0), nullptr, nullptr, "abc");
  std::string error;
  EXPECT_FALSE(decode_task(bytes, &error));
  EXPECT_THAT(error, HasSubstr("exceeds"));
}

TEST(ProtocolTask, RejectsRemoteInputAboveTransferLimit) {
  const RemoteBuffer input{0x1000, 1};
  auto bytes = task_message(task_fixed(kInputRemote, kMaxTransferBytes + 1, 0), &input, nullptr);
  std::string error;
  EXPECT_FALSE(decode_task(bytes, &error));
  EXPECT_THAT(error, HasSubstr("input of " + std::to_string(kMaxTransferBytes + 1) + " bytes exceeds"));
}

TEST(ProtocolTask, RejectsOutputCapacityAboveLimits) {
  std::string error;
  EXPECT_FALSE(decode_task(task_message(task_fixed(0, 0, kInlineLimit + 1), nullptr, nullptr), &error));
  EXPECT_THAT(error, HasSubstr("output capacity of " + std::to_string(kInlineLimit + 1)));
  const RemoteBuffer output{0x2000, 2};
  EXPECT_FALSE(decode_task(task_message(task_fixed(kOutputRemote, 0, kMaxTransferBytes + 1), nullptr, &output), &error));
  EXPECT_THAT(error, HasSubstr("output capacity of " + std::to_string(kMaxTransferBytes + 1)));
}

TEST(ProtocolTask, RejectsMissingRemoteDescriptors) {
  const RemoteBuffer input{0x1000, 1};
  std::string error;
  // Both flagged, one descriptor present.
  auto bytes = task_message(task_fixed(kInputRemote | kOutputRemote, 10, 10), &input, nullptr);
  EXPECT_FALSE(decode_task(bytes, &error));
  EXPECT_THAT(error, HasSubstr("remote-buffer descriptors"));
  // Flagged, none present.
  EXPECT_FALSE(decode_task(message_of(task_fixed(kOutputRemote, 0, 10)), &error));
  EXPECT_THAT(error, HasSubstr("remote-buffer descriptors"));
}

TEST(ProtocolTask, RejectsLengthsThatDisagreeWithSize) {
  std::string error;
  auto bytes = task_message(task_fixed(0, 8, 0), nullptr, nullptr, "12345678");
  const size_t size = bytes.size();
  EXPECT_FALSE(decode_task(std::span(bytes).first(size - 1), &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size - 1, size)));
  bytes.push_back(std::byte{0});
  EXPECT_FALSE(decode_task(bytes, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size + 1, size)));
}

TEST(ProtocolTask, RejectsInlineBytesAfterRemoteInput) {
  const RemoteBuffer input{0x1000, 1};
  const size_t size = sizeof(TaskMessage) + sizeof(RemoteBuffer);
  auto bytes = task_message(task_fixed(kInputRemote, 4, 0), &input, nullptr, "abcd");
  std::string error;
  EXPECT_FALSE(decode_task(bytes, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size + 4, size)));
}

// --- result ------------------------------------------------------------------------------------------

ResultMessage result_fixed(ErrorKind error, int32_t function_return, uint64_t out_bytes) {
  return ResultMessage{make_header(MessageType::result, 7, 0x1234), 42, error, function_return, out_bytes};
}

TEST(ProtocolResult, RoundTripInlineOutput) {
  const std::string output("out\0put", 7);
  auto bytes = message_of(result_fixed(ErrorKind::none, 0, output.size()), output);
  std::string error;
  auto result = decode_result(bytes, false, &error);
  ASSERT_TRUE(result) << error;
  EXPECT_EQ(result->fixed.header.type, MessageType::result);
  EXPECT_EQ(result->fixed.request_id, 42u);
  EXPECT_EQ(result->fixed.error, ErrorKind::none);
  EXPECT_EQ(result->fixed.out_bytes, output.size());
  EXPECT_EQ(chars(result->inline_output), output);
}

TEST(ProtocolResult, RoundTripInlineOutputAtLimit) {
  const std::string output(kInlineLimit, 'o');
  // The decoded view points into the message: keep the message alive while the view is used.
  const auto bytes = message_of(result_fixed(ErrorKind::none, 0, output.size()), output);
  auto result = decode_result(bytes, false);
  ASSERT_TRUE(result);
  EXPECT_EQ(chars(result->inline_output), output);
}

TEST(ProtocolResult, RoundTripFunctionError) {
  auto bytes = message_of(result_fixed(ErrorKind::function, -17, 0));
  auto result = decode_result(bytes, false);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->fixed.error, ErrorKind::function);
  EXPECT_EQ(result->fixed.function_return, -17);
  EXPECT_TRUE(result->inline_output.empty());
}

TEST(ProtocolResult, RoundTripRemoteOutput) {
  const uint64_t out_bytes = uint64_t{1} << 33;
  auto bytes = message_of(result_fixed(ErrorKind::none, 0, out_bytes));
  std::string error;
  auto result = decode_result(bytes, true, &error);
  ASSERT_TRUE(result) << error;
  EXPECT_EQ(result->fixed.out_bytes, out_bytes);
  EXPECT_TRUE(result->inline_output.empty());
}

TEST(ProtocolResult, RejectsInlineBytesWhenOutputIsRemote) {
  auto bytes = message_of(result_fixed(ErrorKind::none, 0, 4), "abcd");
  std::string error;
  EXPECT_FALSE(decode_result(bytes, true, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(sizeof(ResultMessage) + 4, sizeof(ResultMessage))));
}

TEST(ProtocolResult, RejectsOutputAboveLimits) {
  std::string error;
  const std::string output(kInlineLimit + 1, 'o');
  EXPECT_FALSE(decode_result(message_of(result_fixed(ErrorKind::none, 0, output.size()), output), false, &error));
  EXPECT_THAT(error, HasSubstr("exceeds the limit"));
  EXPECT_FALSE(decode_result(message_of(result_fixed(ErrorKind::none, 0, kMaxTransferBytes + 1)), true, &error));
  EXPECT_THAT(error, HasSubstr("exceeds the limit"));
}

TEST(ProtocolResult, RejectsLengthsThatDisagreeWithSize) {
  auto bytes = message_of(result_fixed(ErrorKind::none, 0, 8), "12345678");
  const size_t size = bytes.size();
  std::string error;
  EXPECT_FALSE(decode_result(std::span(bytes).first(size - 1), false, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size - 1, size)));
  bytes.push_back(std::byte{0});
  EXPECT_FALSE(decode_result(bytes, false, &error));
  EXPECT_THAT(error, HasSubstr(lengths_say(size + 1, size)));
}

TEST(ProtocolResult, RejectsUnknownErrorKind) {
  for (uint32_t kind : {kErrorKindCount, uint32_t{0xffffffff}}) {
    std::string error;
    EXPECT_FALSE(decode_result(message_of(result_fixed(static_cast<ErrorKind>(kind), 0, 0)), false, &error));
    EXPECT_THAT(error, HasSubstr("unknown error kind " + std::to_string(kind)));
  }
}

TEST(ProtocolResult, AcceptsEveryKnownErrorKind) {
  for (uint32_t kind = 0; kind < kErrorKindCount; ++kind) {
    auto result = decode_result(message_of(result_fixed(static_cast<ErrorKind>(kind), 0, 0)), false);
    ASSERT_TRUE(result) << kind;
    EXPECT_EQ(static_cast<uint32_t>(result->fixed.error), kind);
  }
}

// --- inline limits on rings ------------------------------------------------------------------------

TEST(ProtocolRingLimit, TaskInlineInputUpToTheRingLimit) {
  const std::string input(kRingInlineLimit, 'r');
  const auto bytes = task_message(task_fixed(0, input.size(), kRingInlineLimit), nullptr, nullptr, input);
  std::string error;
  auto task = decode_task(bytes, &error, transport::kRingInlineLimit);
  ASSERT_TRUE(task) << error;
  EXPECT_EQ(chars(task->inline_input), input);
  EXPECT_EQ(task->fixed.out_capacity, kRingInlineLimit);
  // Over libfabric the same task is too large.
  EXPECT_FALSE(decode_task(bytes, &error));
  EXPECT_THAT(error, HasSubstr("input of " + std::to_string(kRingInlineLimit) + " bytes exceeds the 4096-byte"));
}

TEST(ProtocolRingLimit, TaskInlineInputAboveTheRingLimitIsRefused) {
  const std::string input(kRingInlineLimit + 1, 'r');
  const auto bytes = task_message(task_fixed(0, input.size(), 0), nullptr, nullptr, input);
  std::string error;
  EXPECT_FALSE(decode_task(bytes, &error, kRingInlineLimit));
  EXPECT_THAT(error, HasSubstr("input of " + std::to_string(kRingInlineLimit + 1) + " bytes exceeds the " +
                               std::to_string(kRingInlineLimit) + "-byte limit"));
  const auto capacity = task_message(task_fixed(0, 0, kRingInlineLimit + 1), nullptr, nullptr);
  EXPECT_FALSE(decode_task(capacity, &error, kRingInlineLimit));
  EXPECT_THAT(error, HasSubstr("output capacity of " + std::to_string(kRingInlineLimit + 1) + " bytes exceeds"));
}

TEST(ProtocolRingLimit, TheDefaultLimitIsTheFabricOne) {
  const std::string input(kInlineLimit + 1, 'x');
  const auto bytes = task_message(task_fixed(0, input.size(), 0), nullptr, nullptr, input);
  std::string error;
  EXPECT_FALSE(decode_task(bytes, &error));
  EXPECT_THAT(error, HasSubstr("input of 4097 bytes exceeds the 4096-byte limit"));
  EXPECT_TRUE(decode_task(bytes, &error, kRingInlineLimit)) << error;
}

TEST(ProtocolRingLimit, ResultInlineOutputUpToTheRingLimit) {
  const std::string output(kRingInlineLimit, 'o');
  const auto bytes = message_of(result_fixed(ErrorKind::none, 0, output.size()), output);
  std::string error;
  auto result = decode_result(bytes, false, &error, kRingInlineLimit);
  ASSERT_TRUE(result) << error;
  EXPECT_EQ(chars(result->inline_output), output);
  EXPECT_FALSE(decode_result(bytes, false, &error));
  EXPECT_THAT(error, HasSubstr("exceeds the limit"));
  const std::string more(kRingInlineLimit + 1, 'o');
  EXPECT_FALSE(
      decode_result(message_of(result_fixed(ErrorKind::none, 0, more.size()), more), false, &error, kRingInlineLimit));
  EXPECT_THAT(error, HasSubstr("result of " + std::to_string(kRingInlineLimit + 1) + " bytes exceeds the limit"));
}

// --- welcome, refused, lookup reply --------------------------------------------------------------------

TEST(ProtocolWelcome, RoundTrip) {
  const WelcomeMessage sent{make_header(MessageType::welcome, 12, 0x5e55101), 0xabc, 64, 3, 0, 0};
  std::string error;
  auto welcome = decode_welcome(message_of(sent), &error);
  ASSERT_TRUE(welcome) << error;
  EXPECT_EQ(welcome->header.peer_id, 12u);
  EXPECT_EQ(welcome->header.session, 0x5e55101u);
  EXPECT_EQ(welcome->nonce, 0xabcu);
  EXPECT_EQ(welcome->credits, 64u);
  EXPECT_EQ(welcome->worker_index, 3u);
}

TEST(ProtocolWelcome, RejectsZeroCredits) {
  const WelcomeMessage sent{make_header(MessageType::welcome, 12, 1), 0xabc, 0, 3, 0, 0};
  std::string error;
  EXPECT_FALSE(decode_welcome(message_of(sent), &error));
  EXPECT_THAT(error, HasSubstr("credits"));
}

TEST(ProtocolWelcome, CarriesTheRingFlagsIn48Bytes) {
  static_assert(sizeof(WelcomeMessage) == 48);
  const WelcomeMessage sent{make_header(MessageType::welcome, 12, 1), 0xabc, 8, 1, kWelcomeRings | kWelcomeCma, 0};
  std::string error;
  auto welcome = decode_welcome(message_of(sent), &error);
  ASSERT_TRUE(welcome) << error;
  EXPECT_EQ(welcome->flags, kWelcomeRings | kWelcomeCma);
  const WelcomeMessage plain{make_header(MessageType::welcome, 12, 1), 0xabc, 8, 1, 0, 0};
  welcome = decode_welcome(message_of(plain), &error);
  ASSERT_TRUE(welcome) << error;
  EXPECT_EQ(welcome->flags, 0u);
}

TEST(ProtocolWelcome, RejectsTheOld40ByteWelcome) {
  const WelcomeMessage sent{make_header(MessageType::welcome, 12, 1), 0xabc, 8, 1, 0, 0};
  Bytes bytes = message_of(sent);
  bytes.resize(40);
  std::string error;
  EXPECT_FALSE(decode_welcome(bytes, &error));
  EXPECT_THAT(error, HasSubstr("is 40 bytes, shorter than its 48-byte header"));
}

TEST(ProtocolRefused, RoundTrip) {
  const RefusedMessage sent{make_header(MessageType::refused), 0xabc, ErrorKind::auth, 0};
  std::string error;
  auto refused = decode_refused(message_of(sent), &error);
  ASSERT_TRUE(refused) << error;
  EXPECT_EQ(refused->nonce, 0xabcu);
  EXPECT_EQ(refused->error, ErrorKind::auth);
}

TEST(ProtocolRefused, RejectsUnknownErrorKind) {
  const RefusedMessage sent{make_header(MessageType::refused), 0xabc, static_cast<ErrorKind>(kErrorKindCount), 0};
  std::string error;
  EXPECT_FALSE(decode_refused(message_of(sent), &error));
  EXPECT_THAT(error, HasSubstr("unknown error kind"));
}

TEST(ProtocolLookupReply, RoundTrip) {
  const LookupReplyMessage found{make_header(MessageType::lookup_reply, 1, 2), 77, ErrorKind::none, 5};
  std::string error;
  auto reply = decode_lookup_reply(message_of(found), &error);
  ASSERT_TRUE(reply) << error;
  EXPECT_EQ(reply->request_id, 77u);
  EXPECT_EQ(reply->error, ErrorKind::none);
  EXPECT_EQ(reply->function_id, 5u);

  const LookupReplyMessage missing{make_header(MessageType::lookup_reply, 1, 2), 78, ErrorKind::not_found,
                                   kNoFunction};
  reply = decode_lookup_reply(message_of(missing), &error);
  ASSERT_TRUE(reply) << error;
  EXPECT_EQ(reply->error, ErrorKind::not_found);
  EXPECT_EQ(reply->function_id, kNoFunction);
}

TEST(ProtocolLookupReply, RejectsUnknownErrorKind) {
  const LookupReplyMessage sent{make_header(MessageType::lookup_reply, 1, 2), 77, static_cast<ErrorKind>(99), 5};
  std::string error;
  EXPECT_FALSE(decode_lookup_reply(message_of(sent), &error));
  EXPECT_THAT(error, HasSubstr("unknown error kind"));
}

}  // namespace
}  // namespace sidecore::protocol
