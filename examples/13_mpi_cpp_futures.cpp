// 13: the C API from idiomatic C++. std::unique_ptr owns the pool and the function and frees them
// however the scope ends; offload_map() submits one task per input, completes them all with one
// MPI_Waitall on a std::vector<MPI_Request> and returns typed results. Each rank integrates sin(x)^2
// over its part of [0, 100] in 16 tasks; MPI_Allreduce adds the parts; the sum is checked.
//
//   sidecore-run --cores 1 -- mpirun -n 2 ./13_mpi_cpp_futures ./libsidecore_examples.so
#include <mpi.h>
#include <mpix_offload.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw std::runtime_error(std::string(what) + ": " + text);
}

// The C handles are pointers to opaque structs, so std::unique_ptr owns them; its deleter calls the
// matching free. A pool's free is collective: every rank must leave the pool's scope.
using Pool = std::unique_ptr<std::remove_pointer_t<MPIX_Offload_pool>,
                             decltype([](MPIX_Offload_pool pool) { MPIX_Offload_pool_free(&pool); })>;
using Function = std::unique_ptr<std::remove_pointer_t<MPIX_Offload_function>,
                                 decltype([](MPIX_Offload_function fn) { MPIX_Offload_function_free(&fn); })>;

Pool make_pool(MPI_Comm comm) {
  MPIX_Offload_pool pool;
  check(MPIX_Offload_pool_create(comm, MPI_INFO_NULL, &pool), "pool_create");
  return Pool(pool);
}

Function lookup(const Pool& pool, const char* library, const char* symbol) {
  MPIX_Offload_function fn;
  check(MPIX_Offload_function_lookup(pool.get(), library, symbol, &fn), "function_lookup");
  return Function(fn);
}

// One task per input, all in flight at once; one Out per input, in order. Throws if any task fails.
template <typename Out, typename In>
std::vector<Out> offload_map(const Function& fn, const std::vector<In>& inputs) {
  std::vector<Out> outputs(inputs.size());
  std::vector<MPI_Request> requests(inputs.size(), MPI_REQUEST_NULL);
  for (size_t i = 0; i < inputs.size(); ++i) {
    check(MPIX_Offload_submit(fn.get(), &inputs[i], sizeof(In), &outputs[i], sizeof(Out), &requests[i]), "submit");
  }
  std::vector<MPI_Status> statuses(inputs.size());
  const int rc = MPI_Waitall(static_cast<int>(requests.size()), requests.data(), statuses.data());
  for (const MPI_Status& status : statuses) {
    int bytes = 0;
    MPI_Get_count(&status, MPI_BYTE, &bytes);
    check(rc == MPI_ERR_IN_STATUS ? status.MPI_ERROR : rc, "task");
    if (bytes != sizeof(Out)) throw std::runtime_error("task: short output");
  }
  return outputs;
}

struct IntegrateArgs {  // the layout example_functions.c's integrate expects
  double from, to;
  uint64_t steps;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (argc != 2) {
    if (rank == 0) std::fprintf(stderr, "usage: %s FUNCTION_LIBRARY\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  double sum = 0;
  int ok = 1;
  // Nothing collective in here but the pool's create and free, so a rank that throws still meets
  // the others in the pool's free, which runs as it unwinds.
  try {
    const Pool pool = make_pool(MPI_COMM_WORLD);
    const Function integrate = lookup(pool, argv[1], "integrate");  // declared after the pool: freed first
    constexpr int kTasks = 16;
    const double width = 100.0 / (ranks * kTasks);
    std::vector<IntegrateArgs> parts;
    for (int i = rank * kTasks; i < (rank + 1) * kTasks; ++i) parts.push_back({i * width, (i + 1) * width, 100000});
    for (double part : offload_map<double>(integrate, parts)) sum += part;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    ok = 0;
  }
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  const double exact = 50.0 - std::sin(200.0) / 4;
  const bool correct = ok && std::fabs(sum - exact) < 1e-9 * exact;
  if (rank == 0) {
    std::printf("integral of sin(x)^2 over [0, 100] in %d tasks: %.12f, exact %.12f: %s\n", 16 * ranks, sum, exact,
                correct ? "correct" : "WRONG");
  }
  MPI_Finalize();
  return correct ? 0 : 1;
}
