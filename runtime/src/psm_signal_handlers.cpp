#include "psm_signal_handlers.hpp"

#include <dlfcn.h>

#include <csignal>
#include <cstring>
#include <string_view>

namespace sidecore {
namespace {

// The library that holds `handler`, or empty when dladdr cannot tell.
std::string_view library_of(const void* handler) noexcept {
  Dl_info info{};
  if (dladdr(handler, &info) == 0 || info.dli_fname == nullptr) return {};
  return info.dli_fname;
}

bool is_psm_library(std::string_view path) noexcept {
  const size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  for (const std::string_view prefix : {"libpsm2.", "libpsm_infinipath.", "libinfinipath."}) {
    if (name.starts_with(prefix)) return true;
  }
  return false;
}

}  // namespace

size_t drop_psm_signal_handlers() noexcept {
  size_t restored = 0;
  for (const int signal : {SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE, SIGTERM, SIGINT, SIGQUIT}) {
    struct sigaction current {};
    if (sigaction(signal, nullptr, &current) != 0) continue;
    const void* handler = (current.sa_flags & SA_SIGINFO) != 0 ? reinterpret_cast<const void*>(current.sa_sigaction)
                                                                : reinterpret_cast<const void*>(current.sa_handler);
    if (handler == reinterpret_cast<const void*>(SIG_DFL) || handler == reinterpret_cast<const void*>(SIG_IGN)) continue;
    if (!is_psm_library(library_of(handler))) continue;
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    if (sigaction(signal, &default_action, nullptr) == 0) ++restored;
  }
  return restored;
}

}  // namespace sidecore
