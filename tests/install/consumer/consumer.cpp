// Built against an installed Sidecore, once through pkg-config and once through find_package.
#include <sidecore/function.h>
#include <sidecore/sidecore.hpp>

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto client = sidecore::Client::from_environment();
  auto echo = client.lookup(argv[1], "echo");
  const char text[] = "installed";
  char out[sizeof text] = {};
  auto done = client.wait(client.submit(echo, text, sizeof text, out, sizeof out));
  const bool ok = done.error == sidecore::ErrorKind::none && done.out_bytes == sizeof text && std::strcmp(out, text) == 0;
  std::printf("consumer: %s\n", ok ? "ok" : "wrong result");
  return ok ? 0 : 1;
}
