// One client, several executors: what a rank's pool does with the executors of other nodes (one
// endpoint, one completion queue, one address-vector entry per worker, whatever their number).
// Tasks spread over the executors by load, functions looked up before an executor was added are
// looked up there too, a bad card leaves the client as it was, a lost executor fails only its
// own tasks while the others go on (or, with retry_lost, its tasks run again on the others), and
// an executor that drains on SIGTERM hands its tasks to the others without failing any.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "executor_process.hpp"

namespace sidecore_test {
namespace {

using sidecore::ErrorKind;

// The "host:pid" answers of `count` tasks of function `where` (each sleeping `us` first), all
// submitted at once.
std::vector<std::string> where_answers(sidecore::Client& client, const sidecore::Function& where, size_t count,
                                       uint32_t us) {
  std::vector<std::array<char, 300>> outs(count);
  std::vector<sidecore::TaskId> ids;
  for (size_t i = 0; i < count; ++i)
    ids.push_back(client.submit(where, &us, sizeof us, outs[i].data(), outs[i].size()));
  std::vector<std::string> answers;
  for (size_t i = 0; i < count; ++i) {
    const auto done = wait_for(client, ids[i]);
    if (!done) {
      ADD_FAILURE() << "task " << i << " did not complete";
      continue;
    }
    EXPECT_EQ(done->error, ErrorKind::none) << "task " << i;
    answers.emplace_back(outs[i].data(), done->out_bytes);
  }
  return answers;
}

TEST(SeveralExecutors, OneClientSpreadsTasksOverTheExecutorsItAdded) {
  const std::string token = fresh_token();
  ExecutorProcess first(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  ExecutorProcess second(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token, .cores = "0"});
  auto client = sidecore::Client::connect(first.card(), token);
  const auto where = client.lookup(functions_library(), "where");  // before the second executor
  EXPECT_EQ(client.executors(), 1u);
  const size_t workers_before = client.workers();

  client.add_executor(second.card());
  EXPECT_EQ(client.executors(), 2u);
  EXPECT_EQ(client.workers(), workers_before + sidecore::parse_card(second.card()).worker_addresses.size());

  // Eight 50 ms tasks at once: the least loaded executor takes each, so both serve.
  const auto answers = where_answers(client, where, 8, 50'000);
  const std::set<std::string> distinct(answers.begin(), answers.end());
  EXPECT_GE(distinct.size(), 2u) << "every task went to one executor: " << *distinct.begin();

  // A function looked up after the second executor joined runs on both as well.
  const auto echo = client.lookup(functions_library(), "echo");
  for (uint64_t i = 0; i < 64; ++i) {
    uint64_t out = 0;
    const auto done = wait_for(client, client.submit(echo, &i, sizeof i, &out, sizeof out));
    ASSERT_TRUE(done);
    EXPECT_EQ(done->error, ErrorKind::none);
    EXPECT_EQ(out, i);
  }
}

TEST(SeveralExecutors, ABadOrRepeatedCardLeavesTheClientAsItWas) {
  const std::string token = fresh_token();
  ExecutorProcess executor(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  auto client = sidecore::Client::connect(executor.card(), token);
  const auto echo = client.lookup(functions_library(), "echo");

  try {
    client.add_executor(executor.card());
    FAIL() << "the same executor was added twice";
  } catch (const sidecore::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_arg);
    EXPECT_NE(std::string(e.what()).find("already"), std::string::npos) << e.what();
  }
  try {
    client.add_executor("sidecore/1 not a card");
    FAIL() << "a malformed card was accepted";
  } catch (const sidecore::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_arg);
  }
  // An executor of another provider cannot share this client's endpoint.
  ExecutorProcess other(ExecutorOptions{.provider = "shm", .token = token, .cores = "0"});
  try {
    client.add_executor(other.card());
    FAIL() << "an shm executor joined a tcp;ofi_rxm client";
  } catch (const sidecore::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_arg);
  }
  EXPECT_EQ(client.executors(), 1u);
  uint64_t in = 7, out = 0;
  const auto done = wait_for(client, client.submit(echo, &in, sizeof in, &out, sizeof out));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->error, ErrorKind::none);
  EXPECT_EQ(out, in);
}

TEST(SeveralExecutors, ALostExecutorFailsOnlyItsOwnTasks) {
  const std::string token = fresh_token();
  ExecutorProcess survivor(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  ExecutorProcess doomed(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token, .cores = "0"});
  auto client = sidecore::Client::connect(survivor.card(), token);
  client.add_executor(doomed.card());
  const auto where = client.lookup(functions_library(), "where");
  const std::string survivor_answer = where_answers(client, where, 1, 0).at(0);

  // Tasks on both, then the second executor dies under its tasks.
  const uint32_t us = 300'000;
  std::vector<std::array<char, 300>> outs(4);
  std::vector<sidecore::TaskId> ids;
  for (auto& out : outs) ids.push_back(client.submit(where, &us, sizeof us, out.data(), out.size()));
  ASSERT_EQ(kill(doomed.pid(), SIGKILL), 0);
  size_t lost = 0, served = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto done = wait_for(client, ids[i]);
    ASSERT_TRUE(done) << "task " << i << " never completed";
    if (done->error == ErrorKind::executor_lost) {
      ++lost;
    } else {
      EXPECT_EQ(done->error, ErrorKind::none);
      EXPECT_EQ(std::string(outs[i].data(), done->out_bytes), survivor_answer);
      ++served;
    }
  }
  EXPECT_GT(lost, 0u) << "no task was on the executor that died";
  EXPECT_GT(served, 0u) << "the surviving executor's tasks failed with the other's";
  EXPECT_FALSE(client.executor_lost()) << "one executor is left";

  // Later tasks all go to the one left.
  for (const auto& answer : where_answers(client, where, 4, 0)) EXPECT_EQ(answer, survivor_answer);
}

TEST(SeveralExecutors, RetryLostRunsALostExecutorsTasksAgainOnTheOthers) {
  // ALostExecutorFailsOnlyItsOwnTasks, with retry_lost: the tasks that were on the executor that
  // died run again on the one left, and none fails.
  const std::string token = fresh_token();
  ExecutorProcess survivor(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  ExecutorProcess doomed(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token, .cores = "0"});
  sidecore::ClientOptions options;
  options.retry_lost = true;
  auto client = sidecore::Client::connect(survivor.card(), token, options);
  client.add_executor(doomed.card());
  const auto where = client.lookup(functions_library(), "where");
  const std::string survivor_answer = where_answers(client, where, 1, 0).at(0);
  // Both serve (the spread is by load): the ones on `doomed` below are lost and run again.
  const auto spread = where_answers(client, where, 2, 100'000);
  ASSERT_EQ(spread.size(), 2u);
  EXPECT_NE(spread[0], spread[1]) << "two tasks at once did not reach both executors";

  const uint32_t us = 300'000;
  std::vector<std::array<char, 300>> outs(4);
  std::vector<sidecore::TaskId> ids;
  for (auto& out : outs) ids.push_back(client.submit(where, &us, sizeof us, out.data(), out.size()));
  ASSERT_EQ(kill(doomed.pid(), SIGKILL), 0);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto done = wait_for(client, ids[i]);
    ASSERT_TRUE(done) << "task " << i << " never completed";
    EXPECT_EQ(done->error, ErrorKind::none) << "task " << i << " was not run again";
    if (done->error == ErrorKind::none) {
      EXPECT_EQ(std::string(outs[i].data(), done->out_bytes), survivor_answer);
    }
  }
  EXPECT_FALSE(client.executor_lost());
}

TEST(SeveralExecutors, RetryLostGivesUpAfterItsRetries) {
  // A task that kills every worker it runs on: with retry_lost it runs 1 + kMaxLostRetries times
  // (each time on the worker's replacement), then completes with EXECUTOR_LOST; the executor
  // goes on serving.
  const std::string token = fresh_token();
  ExecutorProcess executor(
      ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token, .extra_args = {"--restarts", "8"}});
  sidecore::ClientOptions options;
  options.retry_lost = true;
  auto client = sidecore::Client::connect(executor.card(), token, options);
  const auto crash = client.lookup(functions_library(), "crash_abort");
  const auto done = wait_for(client, client.submit(crash, nullptr, 0, nullptr, 0), 60s);
  ASSERT_TRUE(done) << "the crashing task never completed";
  EXPECT_EQ(done->error, ErrorKind::executor_lost);

  const auto echo = client.lookup(functions_library(), "echo");
  uint64_t in = 11, out = 0;
  const auto after = wait_for(client, client.submit(echo, &in, sizeof in, &out, sizeof out), 30s);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->error, ErrorKind::none);
  EXPECT_EQ(out, in);
  EXPECT_EQ(executor.stop(), 0);
  const std::string log = executor.stderr_text();
  size_t crashes = 0;
  const std::string crashed = "was killed by signal " + std::to_string(SIGABRT);
  for (size_t at = log.find(crashed); at != std::string::npos; at = log.find(crashed, at + 1)) ++crashes;
  EXPECT_EQ(crashes, 1 + sidecore::ClientOptions::kMaxLostRetries) << log;
}

// A stream of tasks over two executors while one of them gets SIGTERM (what Slurm sends a lease
// it reclaims, SIGKILL following after its GraceTime): that one declines what arrives from then on,
// finishes what it runs and exits; its tasks go to the other. No task fails.
// The worker count in an executor's card.
size_t card_workers(const std::string& card) {
  const auto at = card.find(" workers=");
  return at == std::string::npos ? 0 : std::stoul(card.substr(at + 9));
}

void stream_through_a_drain(const std::string& provider, const std::vector<std::string>& extra_args) {
  const std::string token = fresh_token();
  ExecutorProcess leaving(ExecutorOptions{.provider = provider, .token = token, .extra_args = extra_args});
  ExecutorProcess staying(
      ExecutorOptions{.provider = provider, .token = token, .cores = "0", .extra_args = extra_args});
  const auto answer_of = [&](const ExecutorProcess& executor) {
    auto reference = sidecore::Client::connect(executor.card(), token);
    return where_answers(reference, reference.lookup(functions_library(), "where"), 1, 0).at(0);
  };
  const std::string leaving_answer = answer_of(leaving), staying_answer = answer_of(staying);
  auto client = sidecore::Client::connect(leaving.card(), token);  // on shm, the one with rings
  client.add_executor(staying.card());
  const auto where = client.lookup(functions_library(), "where");
  EXPECT_EQ(client.workers_gone(), 0u);

  struct Streamed {
    sidecore::TaskId id = sidecore::kNoTask;
    std::array<char, 300> out{};
  };
  constexpr size_t kWindow = 8;
  const uint32_t us = 5'000;
  std::deque<std::unique_ptr<Streamed>> flight;
  size_t by_leaving = 0, by_staying = 0, failed = 0, finished = 0;
  const auto finish_one = [&] {
    const Streamed& task = *flight.front();
    const auto done = wait_for(client, task.id);
    if (!done) {
      ADD_FAILURE() << "task " << finished << " never completed";
    } else if (done->error != ErrorKind::none) {
      ++failed;
      ADD_FAILURE() << "task " << finished << " failed: kind " << static_cast<int>(done->error);
    } else {
      const std::string answer(task.out.data(), done->out_bytes);
      if (answer == leaving_answer) {
        ++by_leaving;
      } else {
        EXPECT_EQ(answer, staying_answer);
        ++by_staying;
      }
    }
    flight.pop_front();
    ++finished;
  };
  const auto started = Clock::now();
  bool signalled = false;
  while (Clock::now() - started < 2s) {
    if (!signalled && Clock::now() - started > 300ms) {
      ASSERT_EQ(kill(leaving.pid(), SIGTERM), 0);
      signalled = true;
    }
    while (flight.size() < kWindow) {
      flight.push_back(std::make_unique<Streamed>());
      flight.back()->id = client.submit(where, &us, sizeof us, flight.back()->out.data(), flight.back()->out.size());
    }
    finish_one();
  }
  while (!flight.empty()) finish_one();

  const auto status = leaving.wait_exit(10s);
  ASSERT_TRUE(status) << "the draining executor did not exit";
  EXPECT_EQ(*status, 0) << leaving.stderr_text();
  EXPECT_FALSE(leaving.needed_sigkill());
  EXPECT_EQ(failed, 0u);
  EXPECT_GT(by_leaving, 0u) << "the executor that drained never served";
  EXPECT_GT(by_staying, 0u);
  // Later tasks all go to the one left, which the client does not count as lost.
  for (const auto& answer : where_answers(client, where, 4, 0)) EXPECT_EQ(answer, staying_answer);
  EXPECT_FALSE(client.executor_lost());
  // What a pool subtracts from MPIX_Offload_pool_size: the workers of the one that left.
  EXPECT_EQ(client.workers_gone(), card_workers(leaving.card()));
}

TEST(SeveralExecutors, AnExecutorThatDrainsOnSigtermHandsItsTasksToTheOthers) {
  stream_through_a_drain("tcp;ofi_rxm", {});  // worker processes under a supervisor (the default)
}

TEST(SeveralExecutors, AnExecutorThatDrainsOnSigtermHandsItsTasksToTheOthersShm) {
  stream_through_a_drain("shm", {"--restarts", "0"});  // node-local rings; worker threads
}

TEST(SeveralExecutors, StandbyExecutorsJoinOnlyWhenNoWorkerIsIdle) {
  const std::string token = fresh_token();
  ExecutorProcess first(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  ExecutorProcess second(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token, .cores = "0"});
  auto client = sidecore::Client::standby({first.card(), second.card()}, token);
  EXPECT_EQ(client.executors(), 0u) << "a standby client connects to nothing before its first task";
  EXPECT_EQ(client.standby_left(), 2u);
  const auto where = client.lookup(functions_library(), "where");  // asked of each as it joins
  ASSERT_TRUE(where.valid());

  // One task at a time: the first executor joins and serves them all.
  const std::string first_answer = where_answers(client, where, 1, 0).at(0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(where_answers(client, where, 1, 0).at(0), first_answer);
  EXPECT_EQ(client.executors(), 1u);
  EXPECT_EQ(client.standby_left(), 1u);

  // Two at once: the second finds no idle worker, and the second executor joins for it.
  const auto answers = where_answers(client, where, 2, 100'000);
  EXPECT_EQ(client.executors(), 2u);
  EXPECT_EQ(client.standby_left(), 0u);
  EXPECT_NE(answers.at(0), answers.at(1)) << "both tasks ran on one executor";
}

TEST(SeveralExecutors, AStandbyExecutorThatRefusesHandsItsTasksToTheNext) {
  const std::string token = fresh_token();
  ExecutorProcess refusing(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = fresh_token("other")});
  ExecutorProcess serving(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token, .cores = "0"});
  auto reference = sidecore::Client::connect(serving.card(), token);
  const std::string serving_answer =
      where_answers(reference, reference.lookup(functions_library(), "where"), 1, 0).at(0);

  auto client = sidecore::Client::standby({refusing.card(), serving.card()}, token);
  const auto where = client.lookup(functions_library(), "where");
  // The task goes to the refusing executor first (the nearest), then to the next: it never fails.
  for (const auto& answer : where_answers(client, where, 4, 0)) EXPECT_EQ(answer, serving_answer);
  EXPECT_EQ(client.standby_left(), 0u);
  EXPECT_FALSE(client.executor_lost());
  EXPECT_EQ(client.workers_gone(), card_workers(refusing.card())) << "the refusing executor's workers";
}

TEST(SeveralExecutors, AStandbyExecutorThatIsGoneHandsItsTasksToTheNext) {
  const std::string token = fresh_token();
  std::string gone_card;
  {
    ExecutorProcess gone(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
    gone_card = gone.card();
  }  // stopped: nothing answers at its addresses any more
  ExecutorProcess serving(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token, .cores = "0"});
  sidecore::ClientOptions options;
  options.connect_timeout = 500ms;
  auto client = sidecore::Client::standby({gone_card, serving.card()}, token, options);
  const auto where = client.lookup(functions_library(), "where");
  const auto started = Clock::now();
  const auto answers = where_answers(client, where, 4, 0);
  EXPECT_EQ(answers.size(), 4u);
  EXPECT_LT(Clock::now() - started, 10s) << "the tasks waited far longer than the connect timeout";
  EXPECT_EQ(client.standby_left(), 0u);
  EXPECT_FALSE(client.executor_lost());
}

TEST(SeveralExecutors, AStandbyClientKeepsTheTaskTimeout) {
  const std::string token = fresh_token();
  ExecutorProcess executor(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  sidecore::ClientOptions options;
  options.task_timeout = 300ms;
  auto client = sidecore::Client::standby({executor.card()}, token, options);
  const auto sleep_us = client.lookup(functions_library(), "sleep_us");
  const uint32_t us = 3'000'000;
  const auto done = wait_for(client, client.submit(sleep_us, &us, sizeof us, nullptr, 0));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->error, ErrorKind::timeout) << "a task on a joined standby executor ignored the 300 ms timeout";
}

}  // namespace
}  // namespace sidecore_test
