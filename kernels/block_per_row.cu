// moecheck fused routing kernels: the correct block_per_row kernels (moecheck::kernels). Their
// planted-bug builds are compiled in mutant_block_per_row.cu (moecheck::kernel_mutants).
#include "kernels/block_per_row.cuh"

namespace moecheck::kernels::detail {

template cudaError_t launch_block_per_row<false>(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream);

}  // namespace moecheck::kernels::detail
