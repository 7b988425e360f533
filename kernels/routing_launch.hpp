// moecheck fused routing kernels: launch plumbing shared by the dispatcher (routing_launch.cpp),
// the per-variant launchers (warp_per_row.cu, block_per_row.cu, thread_per_row.cu) and the
// planted-bug library (routing_mutants.cpp, mutant_*.cu). Internal: not installed, not for
// consumers (they include routing_cuda.hpp / routing_mutants.hpp). Host code only; the
// device side of the launchers lives in routing_device.cuh and the <variant>.cuh headers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/routing_kernels.hpp"
#include "kernels/routing_row.hpp"

namespace moecheck::kernels::detail {

constexpr int kWarpThreads = 256;  ///< warp_per_row: 8 warps per block
constexpr int kThreadWarps = 4;    ///< thread_per_row: warps per block

/// Uniform launch parameters (the kernels' only argument).
struct KernelParams {
  const char* gating = nullptr;  ///< byte pointer
  std::int64_t T_eff = 0;        ///< rows processed (T, fewer under grid_overflow)
  std::int64_t row_stride = 0;   ///< elements
  std::int64_t col_stride = 1;   ///< elements (1 under ignore_col_stride)
  bool vec = false;              ///< vector loads allowed (contiguous, aligned, E % VE == 0)
  bool vec_out = false;          ///< thread_per_row: 16-byte output stores (k % 4 == 0, aligned outputs)
  int lanes = 0;                 ///< thread_per_row: lanes per row requested (0: thread_lanes_per_row)
  row::RowConfig cfg;
  Mutant mutant = Mutant::none;
  float* weights = nullptr;
  std::int32_t* ids = nullptr;
};

/// Checks a launch request in the order launch_routing documents (validate_args, mutant in
/// range, variant known and able to take E) and resolves Variant::automatic into *v. On
/// success fills *p (params of mutant m) and returns cudaSuccess; otherwise
/// cudaErrorInvalidValue without touching the device. T == 0 passes (nothing to launch).
cudaError_t prepare_launch(const RoutingArgs& a, Variant* v, Mutant m, KernelParams* p);

/// True when `lanes` is a valid lanes-per-row request of the thread variant (0 = automatic, or
/// a power of two up to 32).
inline bool valid_lanes(int lanes) { return lanes == 0 || (lanes > 0 && lanes <= 32 && (lanes & (lanes - 1)) == 0); }

/// Streaming multiprocessors of the current device (cached per device id).
cudaError_t sm_count(int* out);

/// Per-variant launchers: dtype and template-bucket dispatch, grid sizing, one checked launch.
/// kMut = false: the correct kernels (moecheck::kernels); kMut = true: the planted-bug builds,
/// which read p.mutant (moecheck::kernel_mutants). Explicitly instantiated in one translation
/// unit each.
template <bool kMut>
cudaError_t launch_warp_per_row(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream);
template <bool kMut>
cudaError_t launch_block_per_row(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream);
template <bool kMut>
cudaError_t launch_thread_per_row(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream);

/// Launches the resolved (concrete) variant v.
template <bool kMut>
cudaError_t launch_variant(const RoutingArgs& a, Variant v, const KernelParams& p, cudaStream_t stream) {
  switch (v) {
    case Variant::warp_per_row: return launch_warp_per_row<kMut>(a, p, stream);
    case Variant::block_per_row: return launch_block_per_row<kMut>(a, p, stream);
    case Variant::thread_per_row: return launch_thread_per_row<kMut>(a, p, stream);
    case Variant::automatic: break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace moecheck::kernels::detail
