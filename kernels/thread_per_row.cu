// moecheck fused routing kernels: the correct thread_per_row kernels (moecheck::kernels). Their
// planted-bug builds are compiled in mutant_thread_per_row.cu (moecheck::kernel_mutants).
#include "kernels/thread_per_row.cuh"

namespace moecheck::kernels::detail {

template cudaError_t launch_thread_per_row<false>(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream);

}  // namespace moecheck::kernels::detail
