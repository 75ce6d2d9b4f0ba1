// Executor address cards: what format_card writes, parse_card reads back; a malformed card is
// refused with a CardError that names the field at fault.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "card.hpp"

namespace sidecore {
namespace {

using ::testing::HasSubstr;

ExecutorCard sample_card() {
  ExecutorCard card;
  card.executor_id = "0123456789abcdef";
  card.host = "node01";
  card.provider = "tcp;ofi_rxm";
  card.doorbell = "/sidecore-0123456789abcdef";
  card.worker_addresses = {std::string("\x00\xff\x10", 3), std::string("\x0a\x00\x00\x01", 4)};
  return card;
}

const std::string kSampleText =
    "sidecore/1 id=0123456789abcdef host=node01 provider=tcp;ofi_rxm workers=2 "
    "doorbell=/sidecore-0123456789abcdef addrs=00ff10,0a000001";

void expect_same(const ExecutorCard& a, const ExecutorCard& b) {
  EXPECT_EQ(a.executor_id, b.executor_id);
  EXPECT_EQ(a.host, b.host);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.watch, b.watch);
  EXPECT_EQ(a.provider, b.provider);
  EXPECT_EQ(a.doorbell, b.doorbell);
  EXPECT_EQ(a.worker_addresses, b.worker_addresses);
  EXPECT_EQ(a.remote_provider, b.remote_provider);
  EXPECT_EQ(a.remote_addresses, b.remote_addresses);
}

// The message of the CardError that parsing `text` throws, or a note that none was thrown.
std::string parse_error(std::string_view text) {
  try {
    parse_card(text);
  } catch (const CardError& error) {
    return error.what();
  }
  return "<no CardError for: " + std::string(text) + ">";
}

// The sample card's text with `field=...` replaced by `replacement` (empty: removed).
std::string with_field(const std::string& field, const std::string& replacement) {
  std::string text = kSampleText;
  const auto start = text.find(" " + field + "=");
  EXPECT_NE(start, std::string::npos) << field;
  auto end = text.find(' ', start + 1);
  if (end == std::string::npos) end = text.size();
  text.replace(start, end - start, replacement.empty() ? "" : " " + replacement);
  return text;
}

// --- format and round trips --------------------------------------------------------------------------

TEST(Card, FormatWritesTheDocumentedLine) { EXPECT_EQ(format_card(sample_card()), kSampleText); }

TEST(Card, RoundTripWithProviderContainingSemicolonAndBinaryAddresses) {
  const auto card = sample_card();
  const auto parsed = parse_card(format_card(card));
  expect_same(parsed, card);
  EXPECT_EQ(parsed.worker_addresses[0].size(), 3u);  // the zero bytes survive
  EXPECT_EQ(parsed.worker_addresses[1][1], '\0');
}

TEST(Card, RoundTripOneWorkerWithoutDoorbell) {
  ExecutorCard card;
  card.executor_id = "ffffffffffffffff";
  card.host = "login-2.cluster.example.org";
  card.provider = "shm";
  card.worker_addresses = {std::string(1, '\0')};
  const auto text = format_card(card);
  EXPECT_THAT(text, HasSubstr(" doorbell=- "));
  EXPECT_THAT(text, HasSubstr(" workers=1 "));
  const auto parsed = parse_card(text);
  expect_same(parsed, card);
  EXPECT_TRUE(parsed.doorbell.empty());
}

TEST(Card, RoundTripMaximumWorkersWithLongAddresses) {
  ExecutorCard card = sample_card();
  card.worker_addresses.clear();
  for (size_t i = 0; i < ExecutorCard::kMaxWorkers; ++i) {
    std::string address(i % 64 + 1, '\0');
    for (size_t j = 0; j < address.size(); ++j) address[j] = static_cast<char>((i * 7 + j * 13) & 0xff);
    card.worker_addresses.push_back(address);
  }
  card.worker_addresses.back() = std::string(512, '\xab');  // the longest address the protocol carries
  expect_same(parse_card(format_card(card)), card);
}

TEST(Card, ParseToleratesSurroundingWhitespaceAndUppercaseHex) {
  const auto parsed = parse_card("  " + kSampleText + "\r\n");
  expect_same(parsed, sample_card());
  std::string upper = kSampleText;
  upper.replace(upper.find("00ff10"), 6, "00FF10");
  expect_same(parse_card(upper), sample_card());
}

TEST(Card, FieldOrderDoesNotMatter) {
  const std::string text =
      "sidecore/1 addrs=00ff10,0a000001 doorbell=/sidecore-0123456789abcdef workers=2 provider=tcp;ofi_rxm "
      "host=node01 id=0123456789abcdef";
  expect_same(parse_card(text), sample_card());
}

// --- malformed cards ---------------------------------------------------------------------------------

TEST(CardMalformed, Empty) {
  EXPECT_THAT(parse_error(""), HasSubstr("empty"));
  EXPECT_THAT(parse_error("  \n"), HasSubstr("empty"));
}

TEST(CardMalformed, WrongPrefix) {
  std::string text = kSampleText;
  text.replace(0, 8, "sidecar/");
  EXPECT_THAT(parse_error(text), HasSubstr("sidecore/<version>"));
  EXPECT_THAT(parse_error("hello world"), HasSubstr("sidecore/<version>"));
}

TEST(CardMalformed, OtherVersions) {
  for (std::string version : {"2", "0", "", "1.0", "01"}) {
    std::string text = kSampleText;
    text.replace(9, 1, version);
    EXPECT_THAT(parse_error(text), HasSubstr("version '" + version + "'")) << text;
  }
}

TEST(CardMalformed, MissingEachField) {
  for (std::string field : {"id", "host", "provider", "workers", "doorbell", "addrs"}) {
    EXPECT_THAT(parse_error(with_field(field, "")), HasSubstr("lacks the '" + field + "' field"));
  }
}

TEST(CardMalformed, UnknownField) {
  EXPECT_THAT(parse_error(kSampleText + " color=red"), HasSubstr("unknown field 'color'"));
}

TEST(CardMalformed, FieldWithoutValueSeparator) {
  EXPECT_THAT(parse_error(kSampleText + " junk"), HasSubstr("'junk' is not key=value"));
  EXPECT_THAT(parse_error(kSampleText + " =x"), HasSubstr("'=x' is not key=value"));
}

TEST(CardMalformed, RepeatedField) {
  EXPECT_THAT(parse_error(kSampleText + " workers=2"), HasSubstr("repeats field 'workers'"));
  EXPECT_THAT(parse_error(kSampleText + " id=0123456789abcdef"), HasSubstr("repeats field 'id'"));
}

TEST(CardMalformed, WorkerCountOutOfRangeOrNotANumber) {
  for (std::string workers : {"0", "two", "-1", "+2", "2x", "", "1025", "99999999999999999999999"}) {
    EXPECT_THAT(parse_error(with_field("workers", "workers=" + workers)),
                HasSubstr("worker count '" + workers + "'"))
        << workers;
  }
}

TEST(CardMalformed, AddressCountMismatch) {
  EXPECT_THAT(parse_error(with_field("workers", "workers=3")), HasSubstr("lists 2 addresses for 3 workers"));
  EXPECT_THAT(parse_error(with_field("workers", "workers=1")), HasSubstr("lists 2 addresses for 1 workers"));
}

TEST(CardMalformed, OddHexLength) {
  EXPECT_THAT(parse_error(with_field("addrs", "addrs=00ff1,0a000001")), HasSubstr("address 0 has 5 hex digits"));
}

TEST(CardMalformed, EmptyAddress) {
  EXPECT_THAT(parse_error(with_field("addrs", "addrs=00ff10,")), HasSubstr("address 1 has 0 hex digits"));
}

TEST(CardMalformed, NonHexAddress) {
  EXPECT_THAT(parse_error(with_field("addrs", "addrs=00ff10,0a0g0001")), HasSubstr("address 1 is not hexadecimal"));
}

TEST(CardMalformed, AddressLongerThanProtocolCarries) {
  std::string text = with_field("addrs", "addrs=00ff10," + std::string(2 * 513, 'a'));
  EXPECT_THAT(parse_error(text), HasSubstr("address 1 is longer than 512 bytes"));
}

TEST(CardMalformed, IdNotSixteenLowercaseHexDigits) {
  for (std::string id : {"0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "0123456789abcdeg", ""}) {
    EXPECT_THAT(parse_error(with_field("id", "id=" + id)), HasSubstr("card id")) << id;
  }
}

TEST(CardMalformed, DoorbellNotASharedMemoryName) {
  for (std::string doorbell : {std::string("sidecore-1"), std::string("/"), std::string("/a/b"), std::string(),
                               "/" + std::string(255, 'd')}) {
    EXPECT_THAT(parse_error(with_field("doorbell", "doorbell=" + doorbell)), HasSubstr("doorbell")) << doorbell;
  }
}

TEST(CardMalformed, EmptyHostOrProvider) {
  EXPECT_THAT(parse_error(with_field("host", "host=")), HasSubstr("host"));
  EXPECT_THAT(parse_error(with_field("provider", "provider=")), HasSubstr("provider"));
}

TEST(CardMalformed, ErrorIsACardError) {
  EXPECT_THROW(parse_card("sidecore/2"), CardError);
  EXPECT_THROW(parse_card(with_field("workers", "workers=0")), std::runtime_error);
}

// --- the executor's pid (optional) ------------------------------------------------------------------

TEST(CardPid, IsWrittenAfterTheHostAndReadBack) {
  ExecutorCard card = sample_card();
  card.pid = 4242;
  const std::string text = format_card(card);
  EXPECT_THAT(text, HasSubstr(" host=node01 pid=4242 provider="));
  expect_same(parse_card(text), card);
}

TEST(CardPid, IsOptional) {
  EXPECT_EQ(parse_card(kSampleText).pid, 0);
  EXPECT_EQ(format_card(sample_card()).find("pid="), std::string::npos);
}

TEST(CardPid, ThatIsNotAProcessIdIsNamed) {
  for (const char* bad : {"pid=", "pid=0", "pid=-3", "pid=12ab", "pid=99999999999"}) {
    EXPECT_THAT(parse_error(with_field("host", std::string("host=node01 ") + bad)), HasSubstr("pid")) << bad;
  }
}

TEST(CardWatch, TheLivenessPortIsOptionalWrittenAfterThePidAndReadBack) {
  ExecutorCard card = sample_card();
  card.pid = 7;
  card.watch = 40123;
  const std::string text = format_card(card);
  EXPECT_THAT(text, HasSubstr(" host=node01 pid=7 watch=40123 provider="));
  expect_same(parse_card(text), card);
  EXPECT_EQ(parse_card(kSampleText).watch, 0u);
  for (const char* bad : {"watch=", "watch=0", "watch=65536", "watch=-1", "watch=http"}) {
    EXPECT_THAT(parse_error(with_field("host", std::string("host=node01 ") + bad)), HasSubstr("watch")) << bad;
  }
}

// --- the remote part (an executor of a step on several nodes) -------------------------------------

ExecutorCard two_provider_card() {
  ExecutorCard card = sample_card();
  card.provider = "shm";
  card.remote_provider = "tcp;ofi_rxm";
  card.remote_addresses = {std::string("\x7f\x00", 2), std::string("\x7f\x01", 2)};
  return card;
}

TEST(CardRemote, IsWrittenAfterTheAddressesAndReadBack) {
  const ExecutorCard card = two_provider_card();
  const std::string text = format_card(card);
  EXPECT_THAT(text, HasSubstr(" addrs=00ff10,0a000001 remote=tcp;ofi_rxm raddrs=7f00,7f01"));
  expect_same(parse_card(text), card);
  EXPECT_TRUE(parse_card(kSampleText).remote_provider.empty());
  EXPECT_EQ(format_card(sample_card()).find("remote="), std::string::npos);
}

TEST(CardRemote, MalformedRemotePartsAreNamed) {
  EXPECT_THAT(parse_error(kSampleText + " remote=tcp;ofi_rxm"), HasSubstr("'raddrs'"));
  EXPECT_THAT(parse_error(kSampleText + " raddrs=7f00,7f01"), HasSubstr("'remote'"));
  EXPECT_THAT(parse_error(kSampleText + " remote=tcp raddrs=7f00"), HasSubstr("1 remote addresses for 2 workers"));
  EXPECT_THAT(parse_error(kSampleText + " remote=tcp raddrs=7f00,zz"), HasSubstr("remote address 1 is not hexadecimal"));
  EXPECT_THAT(parse_error(kSampleText + " remote= raddrs=7f00,7f01"), HasSubstr("remote provider"));
}

TEST(CardRemote, CallersOnOtherHostsUseTheRemoteProviderAndNoDoorbell) {
  const ExecutorCard card = two_provider_card();
  const ExecutorCard remote = route_for_caller(card, "node02");
  EXPECT_EQ(remote.provider, "tcp;ofi_rxm");
  EXPECT_EQ(remote.worker_addresses, card.remote_addresses);
  EXPECT_TRUE(remote.doorbell.empty());
  EXPECT_TRUE(remote.remote_provider.empty());
  EXPECT_EQ(remote.executor_id, card.executor_id);

  const ExecutorCard local = route_for_caller(card, "node01");
  EXPECT_EQ(local.provider, "shm");
  EXPECT_EQ(local.worker_addresses, card.worker_addresses);
  EXPECT_EQ(local.doorbell, card.doorbell);
  EXPECT_TRUE(local.remote_addresses.empty());
}

TEST(CardRemote, WithoutARemotePartEveryCallerUsesTheOneProvider) {
  const ExecutorCard card = sample_card();
  const ExecutorCard routed = route_for_caller(card, "elsewhere");
  EXPECT_EQ(routed.provider, card.provider);
  EXPECT_EQ(routed.worker_addresses, card.worker_addresses);
  EXPECT_EQ(routed.doorbell, card.doorbell);
}

// --- paths (optional): node-local rings besides libfabric ---------------------------------------------

TEST(CardPaths, RingsAreWrittenLastAndReadBack) {
  ExecutorCard card = sample_card();
  card.max_task_s = 30;
  card.rings = true;
  const std::string text = format_card(card);
  EXPECT_THAT(text, HasSubstr(" max_task_s=30 paths=rings,fabric"));
  EXPECT_EQ(text.substr(text.size() - 19), " paths=rings,fabric");
  const ExecutorCard parsed = parse_card(text);
  expect_same(parsed, card);
  EXPECT_TRUE(parsed.rings);
  EXPECT_EQ(format_card(parsed), text);
  EXPECT_TRUE(parse_card(kSampleText + " paths=fabric,rings").rings) << "the order of the paths does not matter";
}

TEST(CardPaths, FabricAloneOrNoPathsMeansNoRings) {
  EXPECT_FALSE(parse_card(kSampleText + " paths=fabric").rings);
  EXPECT_FALSE(parse_card(kSampleText).rings);
  EXPECT_EQ(format_card(sample_card()).find("paths="), std::string::npos);
}

TEST(CardPaths, MalformedPathsAreNamed) {
  EXPECT_THAT(parse_error(kSampleText + " paths=rings,fabric,carrier-pigeon"),
              HasSubstr("paths 'rings,fabric,carrier-pigeon' names an unknown path (known: rings, fabric)"));
  EXPECT_THAT(parse_error(kSampleText + " paths="), HasSubstr("executor card paths"));
  EXPECT_THAT(parse_error(kSampleText + " paths=rings"), HasSubstr("paths must include fabric"));
  EXPECT_THAT(parse_error(with_field("doorbell", "doorbell=-") + " paths=rings,fabric"),
              HasSubstr("offers rings without a doorbell"));
  EXPECT_FALSE(parse_card(with_field("doorbell", "doorbell=-") + " paths=fabric").rings);
  EXPECT_THAT(parse_error(kSampleText + " paths=fabric paths=fabric"), HasSubstr("repeats field 'paths'"));
}

TEST(CardPaths, CallersOnOtherHostsGetNoRings) {
  ExecutorCard card = two_provider_card();
  card.rings = true;
  EXPECT_FALSE(route_for_caller(card, "node02").rings);
  EXPECT_TRUE(route_for_caller(card, "node01").rings);
  // Without a remote part the card goes unchanged (card.hpp): the client compares hosts itself
  // before it offers rings.
  ExecutorCard single = sample_card();
  single.rings = true;
  EXPECT_TRUE(route_for_caller(single, "elsewhere").rings);
}

}  // namespace
}  // namespace sidecore
