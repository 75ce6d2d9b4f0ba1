#include "doorbell.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

namespace sidecore {
namespace {

long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout) {
  // Shared (not FUTEX_PRIVATE) because the word lives in memory mapped by several processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

}  // namespace

Doorbell Doorbell::create(const std::string& name, unsigned workers) {
  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "shm_open " + name);
  const size_t bytes = sizeof(Slot) * workers;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    int error = errno;
    close(fd);
    shm_unlink(name.c_str());
    throw std::system_error(error, std::generic_category(), "ftruncate " + name);
  }
  void* mapping = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int error = errno;
  close(fd);
  if (mapping == MAP_FAILED) {
    shm_unlink(name.c_str());
    throw std::system_error(error, std::generic_category(), "mmap " + name);
  }
  Doorbell doorbell;
  doorbell.words_ = static_cast<Slot*>(mapping);
  doorbell.workers_ = workers;
  doorbell.name_ = name;
  doorbell.owner_ = true;
  return doorbell;
}

Doorbell Doorbell::open(const std::string& name, unsigned workers) {
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "shm_open " + name);
  struct stat info {};
  const size_t bytes = sizeof(Slot) * workers;
  if (fstat(fd, &info) != 0 || static_cast<size_t>(info.st_size) < bytes) {
    close(fd);
    throw std::system_error(EINVAL, std::generic_category(), "doorbell " + name + " is smaller than its card says");
  }
  void* mapping = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int error = errno;
  close(fd);
  if (mapping == MAP_FAILED) throw std::system_error(error, std::generic_category(), "mmap " + name);
  Doorbell doorbell;
  doorbell.words_ = static_cast<Slot*>(mapping);
  doorbell.workers_ = workers;
  doorbell.name_ = name;
  return doorbell;
}

Doorbell::~Doorbell() { unmap(); }

Doorbell::Doorbell(Doorbell&& other) noexcept
    : words_(std::exchange(other.words_, nullptr)),
      workers_(std::exchange(other.workers_, 0)),
      name_(std::move(other.name_)),
      owner_(std::exchange(other.owner_, false)) {}

Doorbell& Doorbell::operator=(Doorbell&& other) noexcept {
  if (this != &other) {
    unmap();
    words_ = std::exchange(other.words_, nullptr);
    workers_ = std::exchange(other.workers_, 0);
    name_ = std::move(other.name_);
    owner_ = std::exchange(other.owner_, false);
  }
  return *this;
}

void Doorbell::unmap() noexcept {
  if (words_ != nullptr) {
    munmap(words_, sizeof(Slot) * workers_);
    if (owner_) shm_unlink(name_.c_str());
    words_ = nullptr;
  }
}

void Doorbell::prepare_sleep(unsigned worker) noexcept {
  if (worker >= workers_) return;
  word(worker).store(kAsleep, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void Doorbell::wait(unsigned worker, std::chrono::microseconds timeout) noexcept {
  if (worker >= workers_) return;
  timespec ts{static_cast<time_t>(timeout.count() / 1000000), static_cast<long>(timeout.count() % 1000000) * 1000};
  futex(&word(worker), FUTEX_WAIT, kAsleep, &ts);
  word(worker).store(kAwake, std::memory_order_relaxed);
}

void Doorbell::cancel_sleep(unsigned worker) noexcept {
  if (worker < workers_) word(worker).store(kAwake, std::memory_order_relaxed);
}

void Doorbell::wake(unsigned worker) noexcept {
  if (word(worker).exchange(kAwake, std::memory_order_relaxed) == kAsleep) futex(&word(worker), FUTEX_WAKE, 1, nullptr);
}

}  // namespace sidecore
