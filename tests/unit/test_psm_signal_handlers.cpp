// The PSM libraries that Debian's libfabric drags in install crash handlers that write a .btr file
// into the working directory: after drop_psm_signal_handlers(), a crash writes nothing there.
#include <gtest/gtest.h>
#include <rdma/fabric.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "psm_signal_handlers.hpp"

namespace sidecore {
namespace {

// The files a child that crashes with SIGSEGV in `folder` leaves there; `drop` first or not.
std::vector<std::string> files_after_crash(const std::filesystem::path& folder, bool drop) {
  const pid_t child = fork();
  if (child == 0) {
    static_cast<void>(fi_version());  // libfabric, and with it the PSM libraries, are loaded
    const rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    if (chdir(folder.c_str()) != 0) _exit(3);
    if (drop) drop_psm_signal_handlers();
    std::raise(SIGSEGV);
    _exit(4);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) || WIFEXITED(status)) << status;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) files.push_back(entry.path().filename());
  return files;
}

std::filesystem::path fresh_folder(const char* name) {
  auto folder = std::filesystem::temp_directory_path() / (std::string(name) + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder);
  return folder;
}

TEST(PsmSignalHandlers, ACrashAfterDroppingThemWritesNoFile) {
  const auto folder = fresh_folder("sidecore-psm-drop");
  EXPECT_TRUE(files_after_crash(folder, true).empty()) << "a crash left a file in the working directory";
  std::filesystem::remove_all(folder);
}

// Shows that the check above can fail: where the PSM libraries are installed, an undropped crash
// does leave the file.
TEST(PsmSignalHandlers, WithoutDroppingThemACrashLeavesAFileWherePsmIsInstalled) {
  const auto folder = fresh_folder("sidecore-psm-keep");
  const auto files = files_after_crash(folder, false);
  std::filesystem::remove_all(folder);
  if (files.empty()) GTEST_SKIP() << "no PSM crash handler on this machine";
  ASSERT_EQ(files.size(), 1u);
  EXPECT_TRUE(files[0].ends_with(".btr")) << files[0];
}

TEST(PsmSignalHandlers, OtherHandlersAreLeftAlone) {
  struct sigaction own {}, previous {}, after {};
  own.sa_handler = [](int) {};
  sigemptyset(&own.sa_mask);
  ASSERT_EQ(sigaction(SIGQUIT, &own, &previous), 0);
  drop_psm_signal_handlers();
  sigaction(SIGQUIT, nullptr, &after);
  EXPECT_EQ(after.sa_handler, own.sa_handler);
  sigaction(SIGQUIT, &previous, nullptr);
}

}  // namespace
}  // namespace sidecore
