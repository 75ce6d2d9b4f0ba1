// Debian's libfabric links the PSM libraries (libpsm2, libpsm_infinipath, libinfinipath) directly,
// so they load with it, before main and whatever FI_PROVIDER says. Their constructors install
// handlers for SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGTERM and SIGINT that write
// "<exe>.<host>-<pid>,<host>.btr" into the working directory on a crash: under Slurm, the user's
// job folder. Sidecore never uses PSM, so the executor puts those signals back to their default.
#pragma once

#include <cstddef>

namespace sidecore {

// Restores the default action of every signal whose handler lives in a PSM library; handlers of
// anything else (a sanitizer, the executor's own) are left alone. Returns how many it restored.
// Call at the start of main, before installing handlers of one's own.
size_t drop_psm_signal_handlers() noexcept;

}  // namespace sidecore
