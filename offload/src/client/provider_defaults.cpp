// libfabric settings the client needs from the process's first libfabric call on, set when the
// library loads: libfabric reads its providers' parameters once, when it first initialises them,
// and under MPI that happens inside MPI_Init, long before the first pool.
//
// FI_OFI_RXM_MSG_RX_SIZE: tcp;ofi_rxm's default (2048 receives of 16 KiB for its connections'
// messages) touches about 68 MiB when the client's endpoint is enabled; 256, the executor's own
// setting (executor_main.cpp), touches about 18 MiB and is plenty for Sidecore's credits. A value
// the user or site set wins.
#include <cstdlib>

namespace sidecore {
namespace {

__attribute__((constructor)) void set_provider_defaults() { setenv("FI_OFI_RXM_MSG_RX_SIZE", "256", 0); }

}  // namespace
}  // namespace sidecore
