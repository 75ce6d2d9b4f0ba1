#include "function_loader.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include "log.hpp"

namespace sidecore {

FunctionLoader::~FunctionLoader() {
  // Libraries stay loaded as long as the loader lives; the executor destroys it only after every
  // worker thread has stopped, so no function pointer outlives its library.
  for (auto& [path, handle] : libraries_) dlclose(handle);
}

void* FunctionLoader::open_library(const std::string& library, std::string& error) {
  if (auto it = libraries_.find(library); it != libraries_.end()) return it->second;
  dlerror();
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    error = fmt::format("cannot load library '{}': {}", library, reason ? reason : "unknown dlopen error");
    return nullptr;
  }
  libraries_.emplace(library, handle);
  logger("sidecore.exec")->debug("loaded function library {}", library);
  return handle;
}

FunctionLoader::Lookup FunctionLoader::lookup(std::string_view library, std::string_view symbol) {
  std::string key;
  key.reserve(library.size() + symbol.size() + 1);
  key.append(library).push_back('\0');
  key.append(symbol);

  std::lock_guard lock(mutex_);
  if (auto it = by_name_.find(key); it != by_name_.end()) return {it->second, {}};

  Lookup result;
  void* handle = open_library(std::string(library), result.error);
  if (handle == nullptr) return result;
  dlerror();
  void* address = dlsym(handle, std::string(symbol).c_str());
  if (address == nullptr) {
    result.error = fmt::format("library '{}' has no symbol '{}'", library, symbol);
    return result;
  }
  const uint32_t id = shared_ != nullptr ? shared_->register_function(library, symbol)
                                         : count_.load(std::memory_order_relaxed);
  if (id >= kMaxFunctions) {
    result.error = fmt::format("executor already holds the maximum of {} functions", kMaxFunctions);
    return result;
  }
  table_[id].store(reinterpret_cast<sidecore_function_t>(address), std::memory_order_release);
  if (id >= count_.load(std::memory_order_relaxed)) count_.store(id + 1, std::memory_order_release);
  by_name_.emplace(std::move(key), id);
  result.id = id;
  return result;
}

sidecore_function_t FunctionLoader::resolve(uint32_t id) noexcept {
  try {
    std::string library, symbol;
    if (!shared_->function_name(id, library, symbol)) return nullptr;
    const Lookup found = lookup(library, symbol);
    if (!found.error.empty()) {
      logger("sidecore.exec")->warn("function {} ('{}' in '{}') cannot be loaded here: {}", id, symbol, library,
                                    found.error);
      return nullptr;
    }
    return table_[id].load(std::memory_order_acquire);
  } catch (...) {  // bad_alloc: the task fails with NOT_FOUND, the worker goes on
    return nullptr;
  }
}

std::string FunctionLoader::preload(std::string_view library) {
  std::lock_guard lock(mutex_);
  std::string error;
  open_library(std::string(library), error);
  return error;
}

}  // namespace sidecore
