// 02: a task farm that harvests idle cores. Integrates sin(x)^2 over [0, 1000] in many small
// tasks, first on this core alone, then on this core plus the executor's cores (this core keeps
// computing while a few tasks per worker run elsewhere), checks the answer and prints the speedup.
//
//   sidecore-run --cores 1 -- ./02_task_farm ./libsidecore_examples.so [TASKS] [STEPS_PER_TASK]
#include <dlfcn.h>
#include <sidecore/function.h>
#include <sidecore/sidecore.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace {

struct IntegrateArgs {  // the layout example_functions.c expects
  double from, to;
  uint64_t steps;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FUNCTION_LIBRARY [TASKS] [STEPS_PER_TASK]\n", argv[0]);
    return 2;
  }
  const size_t tasks = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 2000;
  const uint64_t steps = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 20000;
  const double from = 0.0, to = 1000.0, width = (to - from) / static_cast<double>(tasks);
  const double exact = (to - from) / 2 - (std::sin(2 * to) - std::sin(2 * from)) / 4;
  std::vector<IntegrateArgs> args(tasks);
  for (size_t i = 0; i < tasks; ++i) args[i] = {from + i * width, from + (i + 1) * width, steps};

  // The same function, called in this process: the baseline.
  void* library = dlopen(argv[1], RTLD_NOW);
  auto* integrate = library ? reinterpret_cast<sidecore_function_t>(dlsym(library, "integrate")) : nullptr;
  if (integrate == nullptr) {
    std::fprintf(stderr, "cannot load integrate from %s\n", argv[1]);
    return 1;
  }
  auto start = std::chrono::steady_clock::now();
  double local_sum = 0;
  for (const auto& a : args) {
    double part = 0;
    size_t n = 0;
    integrate(&a, sizeof a, &part, sizeof part, &n);
    local_sum += part;
  }
  const double local_seconds = seconds_since(start);

  try {
    auto client = sidecore::Client::from_environment();
    auto remote = client.lookup(argv[1], "integrate");
    // Harvest: this core keeps computing tasks itself while the executor's cores take others.
    // A few tasks per worker stay in flight so the workers never wait for this core.
    const size_t window = 2 * client.workers();
    std::vector<double> parts(tasks);
    std::vector<sidecore::TaskId> in_flight;
    std::vector<size_t> in_flight_index;
    size_t next = 0, offloaded = 0;
    start = std::chrono::steady_clock::now();
    while (next < tasks || !in_flight.empty()) {
      while (next < tasks && in_flight.size() < window) {
        in_flight.push_back(client.submit(remote, &args[next], sizeof args[next], &parts[next], sizeof(double)));
        in_flight_index.push_back(next++);
        ++offloaded;
      }
      if (next < tasks) {  // one task on this core, then collect whatever finished meanwhile
        size_t n = 0;
        const size_t mine = next++;
        integrate(&args[mine], sizeof args[mine], &parts[mine], sizeof(double), &n);
      }
      for (size_t k = 0; k < in_flight.size();) {
        auto done = next < tasks ? client.test(in_flight[k]) : std::optional(client.wait(in_flight[k]));
        if (!done) {
          ++k;
          continue;
        }
        if (done->error != sidecore::ErrorKind::none) {
          std::fprintf(stderr, "task %zu failed: %s\n", in_flight_index[k], std::string(sidecore::to_string(done->error)).c_str());
          return 1;
        }
        in_flight[k] = in_flight.back();
        in_flight.pop_back();
        in_flight_index[k] = in_flight_index.back();
        in_flight_index.pop_back();
      }
    }
    const double harvest_seconds = seconds_since(start);
    double harvest_sum = 0;
    for (double part : parts) harvest_sum += part;

    std::printf("integral of sin(x)^2 over [0, 1000]: exact %.9f\n", exact);
    std::printf("  this core alone:           %.9f in %.3f s (%zu tasks of %llu steps)\n", local_sum, local_seconds,
                tasks, static_cast<unsigned long long>(steps));
    std::printf("  this core + %zu idle core(s): %.9f in %.3f s, %zu tasks offloaded over %s\n", client.workers(),
                harvest_sum, harvest_seconds, offloaded, client.provider().c_str());
    std::printf("  speedup %.2fx\n", local_seconds / harvest_seconds);
    const bool correct = std::fabs(harvest_sum - exact) < 1e-6 * exact;
    std::printf("  result correct: %s\n", correct ? "yes" : "NO");
    return correct ? 0 : 1;
  } catch (const sidecore::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
