// 03: large inputs and outputs. Buffers above 4 KiB are not copied into messages: the executor
// reads the input from, and writes the output into, this process's memory by RMA. The buffers
// must stay valid until the task completes.
//
//   sidecore-run -- ./03_large_buffers ./libsidecore_examples.so [MEBIBYTES]
#include <sidecore/sidecore.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FUNCTION_LIBRARY [MEBIBYTES]\n", argv[0]);
    return 2;
  }
  const size_t bytes = (argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 64) << 20;
  std::vector<unsigned char> in(bytes), out(bytes);
  for (size_t i = 0; i < bytes; ++i) in[i] = static_cast<unsigned char>(i * 13);
  try {
    auto client = sidecore::Client::from_environment();
    auto increment = client.lookup(argv[1], "increment_bytes");
    const auto start = std::chrono::steady_clock::now();
    sidecore::Completion done = client.wait(client.submit(increment, in.data(), bytes, out.data(), bytes));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (done.error != sidecore::ErrorKind::none) {
      std::fprintf(stderr, "task failed: %s\n", std::string(sidecore::to_string(done.error)).c_str());
      return 1;
    }
    size_t wrong = 0;
    for (size_t i = 0; i < bytes; ++i) wrong += out[i] != static_cast<unsigned char>(in[i] + 1);
    std::printf("%zu MiB in and out in %.1f ms (%.2f GB/s each way), %zu wrong bytes\n", bytes >> 20, seconds * 1e3,
                bytes / seconds / 1e9, wrong);
    return wrong == 0 && done.out_bytes == bytes ? 0 : 1;
  } catch (const sidecore::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
