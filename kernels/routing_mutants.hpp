// moecheck fused routing kernels: the planted-bug kernels (mutation testing). Provided by
// moecheck::kernel_mutants, a separate library so that users of moecheck::kernels do not carry
// the mutant instantiations; the harness and the kill matrix link it.
#pragma once

#include "kernels/routing_cuda.hpp"

namespace moecheck::kernels {

/// launch_routing with planted bug m. Mutant::none runs launch_routing itself; a mutant out of
/// range is cudaErrorInvalidValue (checked with the arguments, before the device is touched).
/// The result is bit-identical to emulate_routing(a, v, m), except for the GPU-only mutants
/// grid_overflow and shared_race, which the emulation runs as Mutant::none.
cudaError_t launch_routing_mutant(const RoutingArgs& a, Variant v, cudaStream_t stream, Mutant m);

/// launch_thread_per_row_lanes with planted bug m (same checks; shared_race always runs one
/// thread per row, the staged kernel whose missing wait it plants).
cudaError_t launch_thread_per_row_lanes_mutant(const RoutingArgs& a, int lanes, cudaStream_t stream, Mutant m);

}  // namespace moecheck::kernels
