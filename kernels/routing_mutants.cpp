// moecheck fused routing kernels: launch_routing_mutant (moecheck::kernel_mutants), the
// planted-bug kernels' entry point; same checks and dispatch as launch_routing.
#include "kernels/routing_mutants.hpp"

#include "kernels/routing_launch.hpp"

namespace moecheck::kernels {

cudaError_t launch_routing_mutant(const RoutingArgs& a, Variant v, cudaStream_t stream, Mutant m) {
  if (m == Mutant::none) return launch_routing(a, v, stream);
  detail::KernelParams p;
  if (const cudaError_t e = detail::prepare_launch(a, &v, m, &p); e != cudaSuccess) return e;
  if (a.T == 0) return cudaSuccess;
  return detail::launch_variant<true>(a, v, p, stream);
}

cudaError_t launch_thread_per_row_lanes_mutant(const RoutingArgs& a, int lanes, cudaStream_t stream, Mutant m) {
  if (m == Mutant::none) return launch_thread_per_row_lanes(a, lanes, stream);
  if (!detail::valid_lanes(lanes)) return cudaErrorInvalidValue;
  Variant v = Variant::thread_per_row;
  detail::KernelParams p;
  if (const cudaError_t e = detail::prepare_launch(a, &v, m, &p); e != cudaSuccess) return e;
  if (a.T == 0) return cudaSuccess;
  p.lanes = lanes;
  return detail::launch_thread_per_row<true>(a, p, stream);
}

}  // namespace moecheck::kernels
