// The program behind bench/lease-throughput.sh: inside a step started with
// `srun --offload --offload-lease=1`, the tasks per second of the job's own executor (node-local,
// SIDECORE_EXECUTOR) and of the lease's executor on another node (its card read from the lease
// job's record, reached over the cross-node provider), measured in alternating rounds by one
// process with the same loop, function and window.
//
//   sidecore-lease-throughput LIBRARY [TASKS [WINDOW [ROUNDS [BYTES]]]]
//
// Prints one JSON object on stdout; errors as one line on stderr (exit status 1).
#include <sidecore/sidecore.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "quantile.hpp"

namespace {

using sidecore::bench::median;
using sidecore::bench::Samples;

using Clock = std::chrono::steady_clock;

struct Settings {
  std::string library;
  size_t tasks = 20000;  // per round
  size_t window = 64;    // in flight (sidecore-bench throughput's default)
  size_t rounds = 5;     // per executor, alternating
  size_t bytes = 64;     // each way (echo)
};

size_t positive(const char* text, const char* what) {
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || value == 0)
    throw std::runtime_error(std::string(what) + ": expected a positive number, got '" + text + "'");
  return value;
}

// The lease's cards, once its executors have published them (up to `timeout`).
std::vector<std::string> lease_cards(std::chrono::seconds timeout) {
  const auto job = sidecore::LeaseWatch::job_from_environment();
  if (!job)
    throw std::runtime_error(
        "no SIDECORE_LEASE_JOB: run the step with --offload-lease=1 on a cluster that lends cores");
  std::mutex mutex;
  std::condition_variable ready;
  std::vector<std::string> cards;
  sidecore::LeaseWatch watch(*job, [&](const std::vector<std::string>& more) {
    std::lock_guard lock(mutex);
    cards.insert(cards.end(), more.begin(), more.end());
    ready.notify_all();
  });
  std::unique_lock lock(mutex);
  if (!ready.wait_for(lock, timeout, [&] { return !cards.empty(); })) {
    throw std::runtime_error("lease job " + *job + " published no executor within " + std::to_string(timeout.count()) +
                             " s");
  }
  return cards;
}

// Tasks per second of `tasks` echo tasks kept `window` in flight, each result checked.
double round_tasks_per_s(sidecore::Client& client, const sidecore::Function& echo, const Settings& settings) {
  std::vector<std::vector<unsigned char>> in(settings.window, std::vector<unsigned char>(settings.bytes));
  std::vector<std::vector<unsigned char>> out(settings.window, std::vector<unsigned char>(settings.bytes));
  std::vector<sidecore::TaskCompletion> completed;
  size_t submitted = 0, done = 0;
  const auto submit = [&](size_t slot) {
    std::memset(in[slot].data(), static_cast<int>((submitted + 1) & 0xff), settings.bytes);
    client.submit_handed_back(echo, in[slot].data(), settings.bytes, out[slot].data(), settings.bytes,
                              reinterpret_cast<void*>(slot));
    ++submitted;
  };
  const auto start = Clock::now();
  for (size_t slot = 0; slot < settings.window && submitted < settings.tasks; ++slot) submit(slot);
  while (done < settings.tasks) {
    client.progress(completed);
    for (const auto& task : completed) {
      const auto slot = reinterpret_cast<size_t>(task.user);
      if (task.completion.error != sidecore::ErrorKind::none || task.completion.out_bytes != settings.bytes ||
          std::memcmp(in[slot].data(), out[slot].data(), settings.bytes) != 0) {
        throw std::runtime_error("a task failed or came back wrong (error " +
                                 std::to_string(static_cast<int>(task.completion.error)) + ")");
      }
      ++done;
      if (submitted < settings.tasks) submit(slot);
    }
    completed.clear();
  }
  return static_cast<double>(settings.tasks) / std::chrono::duration<double>(Clock::now() - start).count();
}

// "[median,min,max]" of a side's rates.
std::string triple(const Samples& rates) {
  const auto [low, high] = std::minmax_element(rates.begin(), rates.end());
  char text[96];
  std::snprintf(text, sizeof text, "[%.0f,%.0f,%.0f]", median(rates), *low, *high);
  return text;
}

int run(const Settings& settings) {
  const char* token = std::getenv("SIDECORE_TOKEN");
  if (token == nullptr) throw std::runtime_error("no SIDECORE_TOKEN: run the step with --offload");
  auto own = sidecore::Client::from_environment();
  auto lease = sidecore::Client::standby(lease_cards(std::chrono::seconds(60)), token);
  const auto own_echo = own.lookup(settings.library, "echo");
  const auto lease_echo = lease.lookup(settings.library, "echo");

  // Warm-up (the lease's executor joins at its first task), not counted.
  Settings warm = settings;
  warm.tasks = std::min<size_t>(settings.tasks, 2000);
  round_tasks_per_s(own, own_echo, warm);
  round_tasks_per_s(lease, lease_echo, warm);

  Samples own_rates, lease_rates;
  for (size_t round = 0; round < settings.rounds; ++round) {
    own_rates.push_back(round_tasks_per_s(own, own_echo, settings));
    lease_rates.push_back(round_tasks_per_s(lease, lease_echo, settings));
  }
  std::printf("{\"bench\":\"lease-throughput\",\"bytes\":%zu,\"window\":%zu,\"tasks\":%zu,\"rounds\":%zu,"
              "\"own_host\":\"%s\",\"own_provider\":\"%s\",\"own_on_rings\":%s,\"own_tasks_per_s\":%s,"
              "\"lease_host\":\"%s\",\"lease_provider\":\"%s\",\"lease_tasks_per_s\":%s,\"ratio\":%.4f}\n",
              settings.bytes, settings.window, settings.tasks, settings.rounds, own.executor_host().c_str(),
              own.provider().c_str(), own.on_rings() ? "true" : "false", triple(own_rates).c_str(),
              lease.executor_host().c_str(), lease.provider().c_str(), triple(lease_rates).c_str(),
              median(lease_rates) / median(own_rates));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 6 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fprintf(argc < 2 || argc > 6 ? stderr : stdout,
                 "usage: %s LIBRARY [TASKS [WINDOW [ROUNDS [BYTES]]]]\n"
                 "  in a step started with srun --offload --offload-lease=1 (see bench/lease-throughput.sh)\n",
                 argv[0]);
    return argc < 2 || argc > 6 ? 2 : 0;
  }
  try {
    Settings settings;
    settings.library = argv[1];
    if (argc > 2) settings.tasks = positive(argv[2], "TASKS");
    if (argc > 3) settings.window = positive(argv[3], "WINDOW");
    if (argc > 4) settings.rounds = positive(argv[4], "ROUNDS");
    if (argc > 5) settings.bytes = positive(argv[5], "BYTES");
    return run(settings);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sidecore-lease-throughput: %s\n", e.what());
    return 1;
  }
}
