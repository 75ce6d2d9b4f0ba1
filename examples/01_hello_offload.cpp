// 01: the smallest offload. Connect to the executor that sidecore-run (or srun --offload) started,
// look up a function by library path and symbol, run it once, print its output.
//
//   sidecore-run -- ./01_hello_offload ./libsidecore_examples.so
#include <sidecore/sidecore.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FUNCTION_LIBRARY\n", argv[0]);
    return 2;
  }
  try {
    auto client = sidecore::Client::from_environment();  // SIDECORE_EXECUTOR and SIDECORE_TOKEN
    auto hello = client.lookup(argv[1], "hello");
    char text[64];
    sidecore::Completion done = client.wait(client.submit(hello, nullptr, 0, text, sizeof text));
    if (done.error != sidecore::ErrorKind::none) {
      std::fprintf(stderr, "task failed: %s\n", std::string(sidecore::to_string(done.error)).c_str());
      return 1;
    }
    std::printf("%.*s (%zu workers, provider %s)\n", static_cast<int>(done.out_bytes), text, client.workers(),
                client.provider().c_str());
  } catch (const sidecore::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
