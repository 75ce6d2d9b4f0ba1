#include "setup.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "fabric/compat.hpp"
#include "fabric/info.hpp"

namespace sidecore::bench {
namespace {

// The directory of this binary ("." when /proc is unavailable and argv[0] has no slash).
std::string own_directory(const char* program) {
  std::string directory = ".";
  if (char* self = realpath("/proc/self/exe", nullptr)) {
    directory = self;
    std::free(self);
    directory.erase(directory.rfind('/'));
  } else if (program != nullptr && std::strchr(program, '/') != nullptr) {
    directory = std::string(program).substr(0, std::string(program).rfind('/'));
  }
  return directory;
}

}  // namespace

std::string find_library(const std::string& requested, const char* program) {
  if (!requested.empty()) {
    char* resolved = realpath(requested.c_str(), nullptr);
    if (resolved == nullptr) throw std::runtime_error("--library " + requested + ": " + std::strerror(errno));
    std::string path = resolved;
    std::free(resolved);
    return path;
  }
  static constexpr const char* kName = "libsidecore_bench_functions.so";
  const std::string directory = own_directory(program);
  // The build tree (next to the binary), a relocated install (bin/../lib/sidecore), the install prefix.
  const std::vector<std::string> candidates{directory + "/" + kName,
                                            directory + "/../" SIDECORE_BENCH_RELATIVE_LIBDIR "/" + kName,
                                            std::string(SIDECORE_BENCH_LIBDIR "/") + kName};
  for (const auto& candidate : candidates) {
    if (access(candidate.c_str(), R_OK) == 0) return find_library(candidate, program);
  }
  throw std::runtime_error(std::string("cannot find ") + kName + " next to the binary or in " SIDECORE_BENCH_LIBDIR
                           "; pass --library PATH");
}

std::string find_program(const std::string& requested, const std::vector<std::string>& candidates,
                         const std::string& fallback) {
  if (!requested.empty()) return requested;
  const std::string directory = own_directory(nullptr);
  for (const auto& candidate : candidates) {
    const std::string path = candidate.starts_with('/') ? candidate : directory + "/" + candidate;
    if (access(path.c_str(), X_OK) == 0) {
      if (char* resolved = realpath(path.c_str(), nullptr)) {
        std::string absolute = resolved;
        std::free(resolved);
        return absolute;
      }
      return path;
    }
  }
  return fallback;
}

double other_runnable_threads() {
  double sum = 0;
  constexpr int kSamples = 10;
  for (int i = 0; i < kSamples; ++i) {
    std::FILE* file = std::fopen("/proc/loadavg", "r");
    if (file == nullptr) return 0;
    double one, five, fifteen;
    int running = 0, total = 0;
    const int fields = std::fscanf(file, "%lf %lf %lf %d/%d", &one, &five, &fifteen, &running, &total);
    std::fclose(file);
    if (fields != 5) return 0;
    sum += running - 1;  // this thread, reading the file, is running
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return sum / kSamples;
}

void use_provider_on_loopback(const std::string& provider) {
  const auto& known = fabric::supported_providers();
  if (std::find(known.begin(), known.end(), provider) == known.end()) {
    std::string list;
    for (const auto& name : known) list += (list.empty() ? "" : ", ") + name;
    throw std::runtime_error("unknown provider '" + provider + "' (known: " + list + ")");
  }
  // Bench traffic stays on loopback: tcp and net otherwise bind eth0's address.
  // ("net" is libfabric's "tcp" provider from 1.18 on, which reads FI_TCP_IFACE.)
  if (fabric::libfabric_provider_name(provider).find("tcp") != std::string::npos) setenv("FI_TCP_IFACE", "lo", 0);
  if (provider.find("net") != std::string::npos) setenv("FI_NET_IFACE", "lo", 0);
  fabric::find_provider(provider);  // a clear error now rather than from a child
}

}  // namespace sidecore::bench
