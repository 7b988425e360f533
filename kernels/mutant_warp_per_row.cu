// moecheck fused routing kernels: the planted-bug builds of the warp_per_row kernels (every
// kernel instantiation with kMut = true; moecheck::kernel_mutants, for mutation testing only).
#include "kernels/warp_per_row.cuh"

namespace moecheck::kernels::detail {

template cudaError_t launch_warp_per_row<true>(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream);

}  // namespace moecheck::kernels::detail
