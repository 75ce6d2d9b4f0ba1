// libfabric settings the client needs from the process's first libfabric call on, set when the
// library loads: libfabric reads its providers' parameters once, when it first initialises them,
// and under MPI that happens inside MPI_Init, long before the first pool. A value the user or the
// site set wins.
//
// tcp;ofi_rxm's defaults make each endpoint touch about 68 MiB when it is enabled (2048 receives
// of 16 KiB bounce buffers for its connections' messages), and each connection more. Sidecore's
// largest message is 4 184 bytes, and its credits bound what is in flight:
// - FI_OFI_RXM_MSG_RX_SIZE=256, the executor's own setting (executor_main.cpp): about 18 MiB;
// - FI_OFI_RXM_BUFFER_SIZE=8192: half of that again, and half per connection. It also moves the
//   eager limit of any other tcp;ofi_rxm or verbs;ofi_rxm user in the process (MPI over libfabric)
//   from 16 to 8 KiB; a site that tunes it sets it itself (docs/scaling.md measures both).
#include <cstdlib>

namespace sidecore {
namespace {

__attribute__((constructor)) void set_provider_defaults() {
  setenv("FI_OFI_RXM_MSG_RX_SIZE", "256", 0);
  setenv("FI_OFI_RXM_BUFFER_SIZE", "8192", 0);
}

}  // namespace
}  // namespace sidecore
