// moecheck fused routing kernels: the correct warp_per_row kernels (moecheck::kernels). Their
// planted-bug builds are compiled in mutant_warp_per_row.cu (moecheck::kernel_mutants).
#include "kernels/warp_per_row.cuh"

namespace moecheck::kernels::detail {

template cudaError_t launch_warp_per_row<false>(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream);

}  // namespace moecheck::kernels::detail
