// moecheck fused routing kernels: CUDA launcher API (the only kernels header that includes a
// CUDA header). Available when the library was built with CUDA (built_with_cuda()).
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/routing_kernels.hpp"

namespace moecheck::kernels {

/// Launches the fused routing kernel on `stream`. All pointers in `a` are device pointers
/// (scale may be nullptr = all ones; it is only read for KernelFamily::gemma4).
/// Order of checks (check_request): validate_args, variant known and supports E
/// (warp_per_row needs E <= kWarpMaxExperts; block_per_row and thread_per_row take any
/// E <= kMaxExperts) -> cudaErrorInvalidValue without touching the device. T == 0 is a
/// valid no-op (nothing is launched, cudaSuccess). Otherwise the kernel is launched
/// asynchronously and the result of the last CUDA call (cudaGetLastError() right after the
/// launch, or the failing occupancy / attribute query before it) is returned.
/// Output: weights/ids [T, k] row-major contiguous, every element written.
/// The result is bit-identical to emulate_routing(a, v) on the same inputs (same algorithm,
/// same reduction order, explicitly rounded arithmetic). The planted-bug kernels are not part
/// of this library: see launch_routing_mutant (kernels/routing_mutants.hpp).
cudaError_t launch_routing(const RoutingArgs& a, Variant v, cudaStream_t stream);

/// launch_routing(a, Variant::thread_per_row, stream) with `lanes` lanes of a warp per row:
/// 0 = the launcher's choice (row::thread_lanes_per_row), 1 = one thread per row, 2, 4, .., 32
/// = a lane group per row (values below half the top-list bucket next_pow2(k) are raised to
/// it). Layouts that cannot be read in 16-byte units (strided columns, misaligned base or row
/// pitch, E * sizeof(element) % 16 != 0) always run one thread per row. The outputs are the
/// same for every value (bit-identical to emulate_routing(a, Variant::thread_per_row)). Any
/// other `lanes` is cudaErrorInvalidValue, checked with the arguments before the device is
/// touched. For tests and benchmarks.
cudaError_t launch_thread_per_row_lanes(const RoutingArgs& a, int lanes, cudaStream_t stream);

/// The most threads per block a launch of (variant, E, T) uses (for tools and benchmarks; T
/// only matters for Variant::automatic). Launches of few rows use fewer, spreading their warps
/// over the multiprocessors; thread_per_row's lane groups use up to 256.
int threads_per_block(Variant v, int E, std::int64_t T, GatingType dtype);

}  // namespace moecheck::kernels
