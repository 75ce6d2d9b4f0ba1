// sidecore_integration_env_client LIBRARY COUNT: a separate client process, connected the way a
// rank connects (SIDECORE_EXECUTOR and SIDECORE_TOKEN). It echoes COUNT distinct 8-byte values
// through LIBRARY's `echo`, checks every one, and prints "ok COUNT" (exit 0); any failure goes to
// stderr with exit status 1. With --print-provider, it first prints "provider NAME": the provider
// the client reaches the executor over.
//
// sidecore_integration_env_client LIBRARY COUNT --sleep-us N: submits COUNT tasks of LIBRARY's
// `sleep_us` (N us each), prints "ready" once they are submitted, then, when all have completed,
// one line "KIND=COUNT ... ms=ELAPSED" with how many completed with each error kind and how long
// that took after "ready" (exit 0). With --relay PORT after it, the client follows executors on
// other hosts through the liveness relay on this host's PORT (ClientOptions::liveness_relay).
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "sidecore/sidecore.hpp"

namespace {

int sleep_tasks(const std::string& library, size_t count, uint32_t us, uint16_t relay) {
  sidecore::ClientOptions options;
  options.liveness_relay = relay;
  auto client = sidecore::Client::from_environment(options);
  const auto sleep = client.lookup(library, "sleep_us");
  std::vector<sidecore::TaskId> ids;
  for (size_t i = 0; i < count; ++i) ids.push_back(client.submit(sleep, &us, sizeof us, nullptr, 0));
  client.progress();
  std::printf("ready\n");
  std::fflush(stdout);
  const auto started = std::chrono::steady_clock::now();
  std::map<std::string, size_t> kinds;
  for (const auto id : ids) ++kinds[std::string(to_string(client.wait(id).error))];
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  for (const auto& [kind, n] : kinds) std::printf("%s=%zu ", kind.c_str(), n);
  std::printf("ms=%lld\n", static_cast<long long>(ms.count()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool relay = argc == 7 && std::string(argv[5]) == "--relay";
  if ((argc == 5 || relay) && std::string(argv[3]) == "--sleep-us") {
    try {
      return sleep_tasks(argv[1], std::strtoul(argv[2], nullptr, 10),
                         static_cast<uint32_t>(std::strtoul(argv[4], nullptr, 10)),
                         relay ? static_cast<uint16_t>(std::strtoul(argv[6], nullptr, 10)) : 0);
    } catch (const sidecore::Error& e) {
      std::fprintf(stderr, "sidecore error %s: %s\n", std::string(to_string(e.kind())).c_str(), e.what());
      return 1;
    }
  }
  const bool print_provider = argc == 4 && std::string(argv[3]) == "--print-provider";
  if (argc != 3 && !print_provider) {
    std::fprintf(stderr, "usage: %s LIBRARY COUNT [--sleep-us N [--relay PORT] | --print-provider]\n", argv[0]);
    return 2;
  }
  const std::string library = argv[1];
  const size_t count = std::strtoul(argv[2], nullptr, 10);
  try {
    auto client = sidecore::Client::from_environment();
    if (print_provider) std::printf("provider %s\n", client.provider().c_str());
    const auto echo = client.lookup(library, "echo");
    std::vector<uint64_t> in(count), out(count, 0);
    std::vector<sidecore::TaskId> ids(count);
    const uint64_t tag = static_cast<uint64_t>(getpid()) << 32;
    for (size_t i = 0; i < count; ++i) {
      in[i] = tag | i;
      ids[i] = client.submit(echo, &in[i], sizeof in[i], &out[i], sizeof out[i]);
    }
    for (size_t i = 0; i < count; ++i) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      std::optional<sidecore::Completion> done;
      while (!(done = client.test(ids[i])) && std::chrono::steady_clock::now() < deadline) {
      }
      if (!done) {
        std::fprintf(stderr, "task %zu did not complete within 30 s\n", i);
        return 1;
      }
      if (done->error != sidecore::ErrorKind::none || done->out_bytes != sizeof(uint64_t) || out[i] != in[i]) {
        std::fprintf(stderr, "task %zu: error %s, out_bytes %zu, value %llx instead of %llx\n", i,
                     std::string(to_string(done->error)).c_str(), done->out_bytes,
                     static_cast<unsigned long long>(out[i]), static_cast<unsigned long long>(in[i]));
        return 1;
      }
    }
  } catch (const sidecore::Error& e) {
    std::fprintf(stderr, "sidecore error %s: %s\n", std::string(to_string(e.kind())).c_str(), e.what());
    return 1;
  }
  std::printf("ok %zu\n", count);
  return 0;
}
