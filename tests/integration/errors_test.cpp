// How failures reach the caller, on each provider: missing functions, functions that fail, bad
// submit arguments, a wrong token, a malformed card and an executor that is gone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include <cstdint>
#include <vector>

#include "executor_leftovers.hpp"
#include "executor_process.hpp"
#include "provider_test.hpp"

namespace sidecore_test {
namespace {

using sidecore::Completion;
using sidecore::ErrorKind;

// The Error that `call` throws; fails the test when it throws nothing or something else.
template <typename Call>
std::optional<sidecore::Error> error_from(Call call) {
  try {
    call();
  } catch (const sidecore::Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a " << typeid(e).name() << " instead of sidecore::Error: " << e.what();
    return std::nullopt;
  }
  ADD_FAILURE() << "threw nothing";
  return std::nullopt;
}

class Failures : public ProviderTest {
 protected:
  Completion run(const sidecore::Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity) {
    const auto id = client().submit(function, in, in_bytes, out, out_capacity);
    auto done = wait_for(client(), id);
    if (!done) {
      ADD_FAILURE() << "no completion within the deadline";
      return Completion{ErrorKind::timeout, 0, 0};
    }
    return *done;
  }
  Completion run_return_value(int32_t value) {
    const auto function = lookup("return_value");
    return run(function, &value, sizeof value, nullptr, 0);
  }
  // The echo of one 8-byte value, to show the client and executor still work.
  void expect_echo_works() {
    const auto echo = lookup("echo");
    const uint64_t in = 0x0123456789abcdefull;
    uint64_t out = 0;
    const auto done = run(echo, &in, sizeof in, &out, sizeof out);
    EXPECT_EQ(done.error, ErrorKind::none) << to_string(done.error);
    EXPECT_EQ(done.out_bytes, sizeof out);
    EXPECT_EQ(out, in);
  }
};

TEST_P(Failures, MissingSymbolIsNotFoundAndNamesIt) {
  const std::string symbol = "no_such_function_in_this_library";
  auto error = error_from([&] { lookup(symbol.c_str()); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::not_found) << to_string(error->kind());
  EXPECT_TRUE(mentions(error->what(), symbol)) << "message: " << error->what();
  expect_echo_works();
}

TEST_P(Failures, MissingLibraryIsNotFoundAndNamesIt) {
  const std::string library = "/nonexistent/libsidecore_missing.so";
  auto error = error_from([&] { client().lookup(library, "echo"); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::not_found) << to_string(error->kind());
  EXPECT_TRUE(mentions(error->what(), library)) << "message: " << error->what();
  expect_echo_works();
}

TEST_P(Failures, LibraryThatIsNotASharedObjectIsNotFound) {
  auto error = error_from([&] { client().lookup("/etc/hostname", "echo"); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::not_found) << to_string(error->kind());
  EXPECT_TRUE(mentions(error->what(), "/etc/hostname")) << "message: " << error->what();
}

TEST_P(Failures, EmptyLookupNamesAreBadArg) {
  auto no_library = error_from([&] { client().lookup("", "echo"); });
  ASSERT_TRUE(no_library);
  EXPECT_EQ(no_library->kind(), ErrorKind::bad_arg) << to_string(no_library->kind());
  auto no_symbol = error_from([&] { client().lookup(functions_library(), ""); });
  ASSERT_TRUE(no_symbol);
  EXPECT_EQ(no_symbol->kind(), ErrorKind::bad_arg) << to_string(no_symbol->kind());
  expect_echo_works();
}

TEST_P(Failures, NonZeroReturnIsFunctionErrorWithTheValue) {
  auto failed = run_return_value(42);
  EXPECT_EQ(failed.error, ErrorKind::function) << to_string(failed.error);
  EXPECT_EQ(failed.function_return, 42);
  EXPECT_EQ(failed.out_bytes, 0u);

  auto negative = run_return_value(-7);
  EXPECT_EQ(negative.error, ErrorKind::function) << to_string(negative.error);
  EXPECT_EQ(negative.function_return, -7);

  auto fine = run_return_value(0);
  EXPECT_EQ(fine.error, ErrorKind::none) << to_string(fine.error);
  EXPECT_EQ(fine.function_return, 0);
  EXPECT_EQ(fine.out_bytes, 0u);
}

TEST_P(Failures, OverflowingOutputIsFunctionError) {
  const auto overflow = lookup("overflow");
  // Output inline (small) and by RMA (large): both must be rejected, and nothing reported as written.
  for (size_t capacity : {size_t{16}, size_t{64 * 1024}}) {
    SCOPED_TRACE(testing::Message() << "out_capacity " << capacity);
    std::vector<uint8_t> out(capacity, 0x5A);
    auto done = run(overflow, nullptr, 0, out.data(), out.size());
    EXPECT_EQ(done.error, ErrorKind::function) << to_string(done.error);
    EXPECT_EQ(done.out_bytes, 0u);
  }
  expect_echo_works();
}

TEST_P(Failures, BadSubmitArgumentsCompleteWithBadArg) {
  const auto echo = lookup("echo");
  uint64_t out = 0;
  {
    SCOPED_TRACE("null input with a non-zero size");
    auto done = run(echo, nullptr, 8, &out, sizeof out);
    EXPECT_EQ(done.error, ErrorKind::bad_arg) << to_string(done.error);
  }
  {
    SCOPED_TRACE("null output with a non-zero capacity");
    const uint64_t in = 1;
    auto done = run(echo, &in, sizeof in, nullptr, 8);
    EXPECT_EQ(done.error, ErrorKind::bad_arg) << to_string(done.error);
  }
  {
    SCOPED_TRACE("a default-constructed (invalid) Function");
    const uint64_t in = 1;
    auto done = run(sidecore::Function{}, &in, sizeof in, &out, sizeof out);
    EXPECT_EQ(done.error, ErrorKind::bad_arg) << to_string(done.error);
  }
  {
    SCOPED_TRACE("a TaskId that was never handed out");
    auto done = client().test(sidecore::TaskId{0x7777'0000'0000'0042ull});
    ASSERT_TRUE(done);
    EXPECT_EQ(done->error, ErrorKind::bad_arg) << to_string(done->error);
  }
  EXPECT_EQ(client().in_flight(), 0u);
  expect_echo_works();
}

TEST_P(Failures, FunctionOfAnotherClientIsBadArg) {
  auto other = sidecore::Client::connect(executor_->card(), token_);
  const auto foreign = other.lookup(functions_library(), "echo");
  const uint64_t in = 5;
  uint64_t out = 0;
  auto done = run(foreign, &in, sizeof in, &out, sizeof out);
  EXPECT_EQ(done.error, ErrorKind::bad_arg) << to_string(done.error);
  EXPECT_EQ(out, 0u);
}

TEST_P(Failures, WrongTokenIsRefusedQuicklyAndTheExecutorKeepsServing) {
  client_.reset();
  const std::string wrong = fresh_token("WRONG");
  const auto started = Clock::now();
  auto error = error_from(
      [&] { sidecore::Client::connect(executor_->card(), wrong, sidecore::ClientOptions{.connect_timeout = scaled(3000ms)}); });
  const auto elapsed = Clock::now() - started;
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::auth) << to_string(error->kind()) << ": " << error->what();
  EXPECT_LT(elapsed, scaled(2500ms)) << "the refusal took as long as a timeout";
  EXPECT_FALSE(mentions(error->what(), wrong)) << "the error repeats the token: " << error->what();

  // The right token still works, on the same executor.
  client_.emplace(sidecore::Client::connect(executor_->card(), token_));
  expect_echo_works();
  client_.reset();

  ASSERT_EQ(executor_->stop(), 0);
  const std::string log = executor_->stderr_text() + executor_->stdout_text();
  EXPECT_TRUE(mentions(log, "refused") || mentions(log, "token")) << "the executor did not log the refusal:\n" << log;
  EXPECT_FALSE(mentions(log, wrong)) << "the executor logged the wrong token:\n" << log;
  EXPECT_FALSE(mentions(log, token_)) << "the executor logged its own token:\n" << log;
}

TEST_P(Failures, ExecutorThatIsGoneIsNoExecutorWithinTheTimeout) {
  client_.reset();
  const std::string card = executor_->card();
  ASSERT_EQ(executor_->stop(), 0);
  const auto started = Clock::now();
  auto error =
      error_from([&] { sidecore::Client::connect(card, token_, sidecore::ClientOptions{.connect_timeout = 500ms}); });
  const auto elapsed = Clock::now() - started;
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::no_executor) << to_string(error->kind()) << ": " << error->what();
  EXPECT_LT(elapsed, scaled(2000ms)) << "connect to a dead executor ignored its 500 ms timeout";
}

// The shared-memory objects a killed executor could not remove.
void remove_leftovers_of(const std::string& card) { sidecore::remove_executor_leftovers(sidecore::parse_card(card)); }

TEST_P(Failures, ExecutorThatWasKilledIsNoExecutorWithinTheTimeout) {
  client_.reset();
  const std::string card = executor_->card();
  kill(executor_->pid(), SIGKILL);
  EXPECT_EQ(executor_->stop(), 128 + SIGKILL);
  const auto started = Clock::now();
  auto error =
      error_from([&] { sidecore::Client::connect(card, token_, sidecore::ClientOptions{.connect_timeout = 500ms}); });
  const auto elapsed = Clock::now() - started;
  remove_leftovers_of(card);
  executor_.reset();  // it did not exit cleanly, on purpose
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::no_executor) << to_string(error->kind()) << ": " << error->what();
  EXPECT_LT(elapsed, scaled(2000ms)) << "connect to a dead executor ignored its 500 ms timeout";
}

TEST_P(Failures, ExecutorKilledMidFlightFailsEveryTaskWithExecutorLostWithinTwoSeconds) {
  // Long tasks on the worker and more waiting in the client for a credit.
  const auto sleep = lookup("sleep_us");
  const uint32_t us = 5'000'000;
  std::vector<sidecore::TaskId> ids;
  for (int i = 0; i < 80; ++i) ids.push_back(client().submit(sleep, &us, sizeof us, nullptr, 0));
  client().progress();
  std::this_thread::sleep_for(100ms);  // the first task is running
  const std::string card = executor_->card();
  ASSERT_EQ(kill(executor_->pid(), SIGKILL), 0);
  const auto killed = Clock::now();
  for (const auto id : ids) {
    const auto done = wait_for(client(), id, scaled(10000ms));
    ASSERT_TRUE(done) << "a task on the killed executor never completed";
    EXPECT_EQ(done->error, ErrorKind::executor_lost) << to_string(done->error);
    EXPECT_EQ(done->out_bytes, 0u);
  }
  EXPECT_LT(Clock::now() - killed, scaled(2000ms)) << "EXECUTOR_LOST took longer than the 2 s default bound";
  EXPECT_TRUE(client().executor_lost());
  // Later tasks fail at once instead of waiting for a dead executor.
  const auto late = client().submit(sleep, &us, sizeof us, nullptr, 0);
  const auto done = client().test(late);
  ASSERT_TRUE(done) << "a task submitted after the loss did not complete at once";
  EXPECT_EQ(done->error, ErrorKind::executor_lost) << to_string(done->error);
  EXPECT_EQ(client().in_flight(), 0u);
  client_.reset();  // says goodbye to nobody, without hanging
  EXPECT_EQ(executor_->stop(), 128 + SIGKILL);
  remove_leftovers_of(card);
  executor_.reset();
}

INSTANTIATE_TEST_SUITE_P(Providers, Failures, ::testing::ValuesIn(providers()), provider_name);

// --- cards -----------------------------------------------------------------------------------------

struct BadCard {
  const char* card;
  const char* named;  // a word the error message must contain
};

TEST(Connect, MalformedCardIsBadArgNamingTheProblem) {
  const std::string good_addrs = "addrs=0200af637f0000010000000000000000";
  const BadCard cards[] = {
      {"", "empty"},
      {"hello world", "sidecore/"},
      {"sidecore/9 id=0123456789abcdef host=h provider=tcp;ofi_rxm workers=1 doorbell=- addrs=00", "version"},
      {"sidecore/1 id=xyz host=h provider=tcp;ofi_rxm workers=1 doorbell=- addrs=00", "id"},
      {"sidecore/1 id=0123456789abcdef host=h provider=tcp;ofi_rxm workers=1 doorbell=-", "addrs"},
      {"sidecore/1 id=0123456789abcdef host=h provider=tcp;ofi_rxm workers=zero doorbell=- addrs=00", "worker count"},
      {"sidecore/1 id=0123456789abcdef host=h provider=tcp;ofi_rxm workers=2 doorbell=- addrs=00", "addresses"},
      {"sidecore/1 id=0123456789abcdef host=h provider=tcp;ofi_rxm workers=1 doorbell=- addrs=0g", "hex"},
      {"sidecore/1 id=0123456789abcdef host=h provider=tcp;ofi_rxm workers=1 doorbell=- addrs=00 color=red", "color"},
  };
  for (const auto& bad : cards) {
    SCOPED_TRACE(testing::Message() << "card '" << bad.card << "'");
    const auto started = Clock::now();
    auto error = error_from(
        [&] { sidecore::Client::connect(bad.card, "token", sidecore::ClientOptions{.connect_timeout = 500ms}); });
    ASSERT_TRUE(error);
    EXPECT_EQ(error->kind(), ErrorKind::bad_arg) << to_string(error->kind()) << ": " << error->what();
    EXPECT_TRUE(mentions(error->what(), bad.named)) << "message: " << error->what();
    EXPECT_LT(Clock::now() - started, scaled(1000ms));
  }
}

TEST(Connect, FromEnvironmentWithoutAnExecutorIsNoExecutor) {
  const char* saved = std::getenv("SIDECORE_EXECUTOR");
  ASSERT_EQ(saved, nullptr) << "this test expects SIDECORE_EXECUTOR unset";
  auto error = error_from([&] { sidecore::Client::from_environment(); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::no_executor) << to_string(error->kind());
  EXPECT_TRUE(mentions(error->what(), "SIDECORE_EXECUTOR")) << "message: " << error->what();
}

}  // namespace
}  // namespace sidecore_test
