// A peer without the token: whatever it sends (lookups and tasks with guessed peer ids and
// sessions, or a hello with a wrong token followed by lookups), the executor loads no library and
// runs no function for it, says so in its log without the secret, and goes on serving the callers
// that have the token. The peer is a bare libfabric endpoint speaking the wire protocol by hand.
#include <gtest/gtest.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#include <cstdlib>
#include <random>

#include "card.hpp"
#include "executor_process.hpp"
#include "fabric/address_vector.hpp"
#include "fabric/completion_queue.hpp"
#include "fabric/domain.hpp"
#include "fabric/endpoint.hpp"
#include "fabric/fabric.hpp"
#include "protocol.hpp"

namespace sidecore_test {
namespace {

using sidecore::ErrorKind;
namespace protocol = sidecore::protocol;
namespace fabric = sidecore::fabric;

std::string marker_library() { return required_env("SIDECORE_TEST_MARKER_LIBRARY"); }

class RawPeer {
 public:
  explicit RawPeer(const std::string& provider) {
    domain_ = std::make_shared<fabric::Domain>(fabric::Fabric::open(provider));
    auto cq = std::make_shared<fabric::CompletionQueue>(domain_, 64, false);
    auto av = std::make_shared<fabric::AddressVector>(domain_);
    endpoint_ = std::make_shared<fabric::Endpoint>(domain_, std::move(cq), std::move(av));
    for (auto& buffer : receive_buffers_) {
      fi_recv(endpoint_->fid(), buffer.data(), buffer.size(), nullptr, FI_ADDR_UNSPEC, nullptr);
    }
  }
  fi_addr_t add(const std::string& raw_address) { return endpoint_->av().insert(raw_address); }
  const std::string& address() const { return endpoint_->name(); }
  // Sends `bytes` and waits until the provider has taken them.
  void send(fi_addr_t to, const std::vector<std::byte>& bytes) {
    ssize_t rc;
    while ((rc = fi_inject(endpoint_->fid(), bytes.data(), bytes.size(), to)) == -FI_EAGAIN) pump();
    ASSERT_EQ(rc, 0) << fi_strerror(static_cast<int>(-rc));
  }
  // Sends `bytes`, however large, and drives the provider for a moment.
  void send_large(fi_addr_t to, const std::vector<std::byte>& bytes) {
    ssize_t rc;
    while ((rc = fi_send(endpoint_->fid(), bytes.data(), bytes.size(), nullptr, to, &sent_)) == -FI_EAGAIN) pump();
    ASSERT_EQ(rc, 0) << fi_strerror(static_cast<int>(-rc));
    pump(10ms);
  }
  // Drives the provider for a while (a connection request, answers that come back).
  void pump(std::chrono::milliseconds for_how_long = 0ms) {
    const auto until = Clock::now() + for_how_long;
    do {
      fi_cq_data_entry entries[8];
      const ssize_t n = endpoint_->cq().read(entries, 8);
      if (n == -FI_EAVAIL) {
        fi_cq_err_entry error{};
        endpoint_->cq().read_error(error);
      }
      for (ssize_t i = 0; i < n; ++i) {  // re-post what came back (refusals): they are not looked at
        if (entries[i].op_context == &sent_) continue;  // a send_large that went out
        fi_recv(endpoint_->fid(), receive_buffers_[0].data(), receive_buffers_[0].size(), nullptr, FI_ADDR_UNSPEC,
                nullptr);
      }
    } while (Clock::now() < until);
  }

 private:
  std::shared_ptr<fabric::Domain> domain_;
  std::shared_ptr<fabric::Endpoint> endpoint_;
  std::array<std::array<std::byte, protocol::kMaxMessageBytes>, 4> receive_buffers_{};
  int sent_ = 0;  // the context of send_large's sends
};

std::vector<std::byte> lookup_message(uint32_t peer_id, uint64_t session, const std::string& library,
                                      const std::string& symbol) {
  std::vector<std::byte> bytes(protocol::kMaxMessageBytes);
  bytes.resize(protocol::encode_lookup(bytes, peer_id, session, 1, library, symbol));
  return bytes;
}

std::vector<std::byte> task_message(uint32_t peer_id, uint64_t session, uint32_t function_id, const std::string& input) {
  protocol::TaskMessage task{protocol::make_header(protocol::MessageType::task, peer_id, session), 7, function_id, 0,
                             input.size(), 0};
  std::vector<std::byte> bytes(protocol::kMaxMessageBytes);
  const size_t header = protocol::encode_task_header(bytes, task, nullptr, nullptr);
  std::memcpy(bytes.data() + header, input.data(), input.size());
  bytes.resize(header + input.size());
  return bytes;
}

TEST(HostilePeer, WithoutTheTokenNothingIsLoadedOrRunAndCallersWithItAreStillServed) {
  TempDir dir;
  const auto load_marker = dir.path() / "marker-library-was-loaded";
  const auto run_marker = dir.path() / "a-task-ran";
  setenv("SIDECORE_TEST_LOAD_MARKER", load_marker.c_str(), 1);  // inherited by the executor
  const std::string token = fresh_token("secret");
  // Hot polling: the worker reads the peer's messages at once (an idle adaptive worker sleeps on its
  // doorbell, which only callers that connected properly know to ring).
  ExecutorProcess executor(ExecutorOptions{.provider = "shm", .token = token, .extra_args = {"--poll", "hot"}});
  unsetenv("SIDECORE_TEST_LOAD_MARKER");

  // A caller with the token has touch_file looked up, so a function id exists to be guessed.
  auto client = sidecore::Client::connect(executor.card(), token);
  const auto touch = client.lookup(functions_library(), "touch_file");

  RawPeer peer("shm");
  const auto card = sidecore::parse_card(executor.card());
  const fi_addr_t worker = peer.add(card.worker_addresses[0]);
  ASSERT_NE(worker, FI_ADDR_NOTAVAIL);
  std::mt19937_64 random(42);
  const std::vector<std::pair<uint32_t, uint64_t>> guesses{{0, 0}, {0, 1}, {1, 0}, {1, 1}, {0, random()}, {2, random()}};
  for (const auto& [peer_id, session] : guesses) {
    peer.send(worker, lookup_message(peer_id, session, marker_library(), "marker_noop"));
    for (uint32_t function_id = 0; function_id < 4; ++function_id) {
      peer.send(worker, task_message(peer_id, session, function_id, run_marker.string()));
    }
  }
  // A hello with a wrong token is refused; the lookups and tasks after it are no better.
  std::vector<std::byte> hello(protocol::kMaxMessageBytes);
  hello.resize(protocol::encode_hello(hello, 99, "not-the-token", peer.address()));
  peer.send(worker, hello);
  peer.pump(scaled(100ms));
  peer.send(worker, lookup_message(0, 0, marker_library(), "marker_noop"));
  peer.send(worker, task_message(0, 0, 0, run_marker.string()));
  peer.pump(scaled(300ms));  // long enough for the worker to read and log them

  // The worker has seen the messages (and said so) before anything below could mask them.
  const std::string early_log = executor.stderr_text();
  EXPECT_TRUE(mentions(early_log, "has not presented the token")) << "the worker did not see the peer:\n" << early_log;
  // (The refused hello is logged too, but within the same second as this: warnings are limited to
  // one a second per worker. Failures.WrongTokenIsRefused... checks that one.)
  EXPECT_FALSE(std::filesystem::exists(load_marker)) << "a peer without the token made the executor load a library";
  EXPECT_FALSE(std::filesystem::exists(run_marker)) << "a peer without the token made the executor run a function";

  // The caller with the token is still served, and the checks above could have seen a breach.
  const std::string path = run_marker.string();
  const auto done = wait_for(client, client.submit(touch, path.data(), path.size(), nullptr, 0), scaled(10000ms));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->error, ErrorKind::none) << to_string(done->error);
  EXPECT_TRUE(std::filesystem::exists(run_marker)) << "touch_file did not leave its file: the check proves nothing";
  client.lookup(marker_library(), "marker_noop");
  EXPECT_TRUE(std::filesystem::exists(load_marker)) << "the marker library left no file: the check proves nothing";

  const std::string log = executor.stderr_text();
  EXPECT_FALSE(mentions(log, token)) << "the executor logged its token:\n" << log;
  EXPECT_EQ(executor.stop(), 0) << log;
}

// Messages larger than any the protocol has (a peer without the token, or a broken one): the
// worker's receive buffers, shared by every caller where the provider packs messages into them,
// survive them all, and callers with the token are still served.
TEST(HostilePeer, OversizedMessagesDoNotUseUpTheWorkersReceiveBuffers) {
  for (const std::string provider : {"tcp;ofi_rxm", "shm"}) {
    SCOPED_TRACE(provider);
    const std::string token = fresh_token("secret");
    ExecutorProcess executor(ExecutorOptions{.provider = provider, .token = token, .extra_args = {"--poll", "hot"}});
    RawPeer peer(provider);
    const fi_addr_t worker = peer.add(sidecore::parse_card(executor.card()).worker_addresses[0]);
    ASSERT_NE(worker, FI_ADDR_NOTAVAIL);
    // More than the shared buffers hold (4 x 64 KiB), had each kept what it took; of sizes that
    // sometimes fit in what is left of a buffer and sometimes do not.
    for (size_t i = 0; i < 64; ++i) {
      const std::vector<std::byte> oversized(protocol::kMaxMessageBytes + 100 + (i * 997) % 3800, std::byte{0x5a});
      peer.send_large(worker, oversized);
    }
    peer.pump(scaled(200ms));

    auto client = sidecore::Client::connect(executor.card(), token);
    const auto echo = client.lookup(functions_library(), "echo");
    constexpr uint64_t kTasks = 4000;  // their messages fill the shared buffers several times over
    std::vector<uint64_t> in(kTasks), out(kTasks, ~0ull);
    std::vector<sidecore::TaskId> ids(kTasks);
    for (uint64_t i = 0; i < kTasks; ++i) {
      in[i] = i;
      ids[i] = client.submit(echo, &in[i], sizeof in[i], &out[i], sizeof out[i]);
    }
    for (uint64_t i = 0; i < kTasks; ++i) {
      const auto done = wait_for(client, ids[i], scaled(10000ms));
      ASSERT_TRUE(done) << "task " << i << " did not complete; executor log:\n" << executor.stderr_text();
      ASSERT_EQ(done->error, ErrorKind::none) << to_string(done->error);
      ASSERT_EQ(out[i], i);
    }
    EXPECT_TRUE(mentions(executor.stderr_text(), "dropped a malformed message")) << "the worker never saw them";
    EXPECT_EQ(executor.stop(), 0) << executor.stderr_text();
  }
}

}  // namespace
}  // namespace sidecore_test
