// moecheck fused routing kernels: launch_routing (checks, parameters, dispatch to the
// per-variant launchers in warp_per_row.cu, block_per_row.cu and thread_per_row.cu).
#include <cuda_runtime_api.h>

#include <atomic>

#include "kernels/routing_cuda.hpp"
#include "kernels/routing_launch.hpp"

namespace moecheck::kernels {
namespace detail {

cudaError_t sm_count(int* out) {
  static std::atomic<int> cache[64] = {};
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (dev >= 0 && dev < 64) {
    const int c = cache[dev].load(std::memory_order_relaxed);
    if (c > 0) {
      *out = c;
      return cudaSuccess;
    }
  }
  int n = 0;
  e = cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  if (dev >= 0 && dev < 64) cache[dev].store(n, std::memory_order_relaxed);
  *out = n;
  return cudaSuccess;
}

cudaError_t prepare_launch(const RoutingArgs& a, Variant* v, Mutant m, KernelParams* p) {
  if (check_request(a, v, m, nullptr) != ArgStatus::ok) return cudaErrorInvalidValue;
  p->gating = static_cast<const char*>(a.gating);
  p->T_eff = (m == Mutant::grid_overflow && a.T > 65536) ? 65536 : a.T;
  p->row_stride = a.row_stride;
  p->col_stride = m == Mutant::ignore_col_stride ? 1 : a.col_stride;
  p->cfg = row::make_row_config(a.E, a.k, a.family, a.scale, m);
  p->mutant = m;
  p->weights = a.weights;
  p->ids = a.ids;
  return cudaSuccess;
}

}  // namespace detail

int threads_per_block(Variant v, int E, std::int64_t T, GatingType dtype) {
  if (v == Variant::automatic) v = choose_variant(E, T, dtype);
  if (v == Variant::thread_per_row) return 256;  // lane groups: kGroupThreads (one thread per row: 128)
  return v == Variant::warp_per_row ? detail::kWarpThreads : 32 * row::block_warps(E);
}

cudaError_t launch_thread_per_row_lanes(const RoutingArgs& a, int lanes, cudaStream_t stream) {
  if (!detail::valid_lanes(lanes)) return cudaErrorInvalidValue;
  Variant v = Variant::thread_per_row;
  detail::KernelParams p;
  if (const cudaError_t e = detail::prepare_launch(a, &v, Mutant::none, &p); e != cudaSuccess) return e;
  if (a.T == 0) return cudaSuccess;
  p.lanes = lanes;
  return detail::launch_thread_per_row<false>(a, p, stream);
}

cudaError_t launch_routing(const RoutingArgs& a, Variant v, cudaStream_t stream) {
  detail::KernelParams p;
  if (const cudaError_t e = detail::prepare_launch(a, &v, Mutant::none, &p); e != cudaSuccess) return e;
  if (a.T == 0) return cudaSuccess;
  return detail::launch_variant<false>(a, v, p, stream);
}

}  // namespace moecheck::kernels
