// moecheck fused routing kernels: warp_per_row (E <= kWarpMaxExperts). One warp owns a row:
// each lane sorts its V = next_pow2(ceil(E / 32)) entries in registers, top-k is k rounds of a
// warp max-reduction, and a warp handles R rows per batch (one shared epilogue, the next batch
// prefetched). Grid-stride over batches. Design and measurements: DESIGN.md, section "Fused
// routing kernels". Included by warp_per_row.cu (correct kernels) and mutant_warp_per_row.cu.
#pragma once

#include "kernels/routing_device.cuh"

namespace moecheck::kernels::detail {

static_assert(row::warp_lane_elems(kWarpMaxExperts) == 16, "warp_per_row: at most 16 elements per lane");

template <class Tr, int V, int R, bool kMut>
__global__ void __launch_bounds__(kWarpThreads) warp_per_row_kernel(const KernelParams p) {
  using Entry = typename Tr::Entry;
  constexpr int NW = row::raw_words<Tr, V>();
  constexpr int SW = 32 / R;  // lanes per row group in the epilogue
  static_assert(R == 1 || R == 2 || R == 4, "rows per batch");
  const Mutant m = kMut ? p.mutant : Mutant::none;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const DeviceWarp ctx{lane};
  const int E = p.cfg.E;
  const std::int64_t nb = (p.T_eff + R - 1) / R;
  const std::int64_t nwarps = (static_cast<std::int64_t>(gridDim.x) * blockDim.x) >> 5;
  std::int64_t b = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const std::int64_t row_bytes = p.row_stride * Tr::kBytes;

  std::uint32_t cur[R][NW], nxt[R][NW];
  if (b < nb) {
#pragma unroll
    for (int q = 0; q < R; ++q) {
      const std::int64_t r = b * R + q;
      if (r < p.T_eff) load_lane<Tr, V>(p.gating + r * row_bytes, lane, 0, E, p.col_stride, p.vec, cur[q]);
    }
  }
  for (; b < nb; b += nwarps) {
    const std::int64_t bn = b + nwarps;
    if (bn < nb) {
#pragma unroll
      for (int q = 0; q < R; ++q) {
        const std::int64_t r = bn * R + q;
        if (r < p.T_eff) load_lane<Tr, V>(p.gating + r * row_bytes, lane, 0, E, p.col_stride, p.vec, nxt[q]);
      }
    }
    Entry mine[1] = {0};
    float full[1] = {0.0f};
#pragma unroll
    for (int q = 0; q < R; ++q) {
      if (b * R + q < p.T_eff) {
        Entry list[1][V];
        row::build_list<Tr, V>(cur[q], lane, 0, p.cfg, m, list[0]);
        row::select_rounds<Tr, V>(ctx, list, p.cfg, m, q * SW, SW, mine, full);
      }
    }
    std::int64_t rows[1] = {b * R + lane / SW};
    if (rows[0] >= p.T_eff) rows[0] = -1;
    row::finish_rows<Tr>(ctx, mine, full, rows, SW, p.cfg, m, p.weights, p.ids);
#pragma unroll
    for (int q = 0; q < R; ++q) {
#pragma unroll
      for (int w = 0; w < NW; ++w) cur[q][w] = nxt[q][w];
    }
  }
}

template <class Tr, int V, int R, bool kMut>
cudaError_t launch_warp_vr(const KernelParams& p, cudaStream_t stream) {
  const std::int64_t batches = (p.T_eff + R - 1) / R;
  int threads = kWarpThreads;
  if (const cudaError_t e = spread_threads(batches, kWarpThreads, &threads); e != cudaSuccess) return e;
  const std::int64_t blocks = (batches + threads / 32 - 1) / (threads / 32);
  return launch_capped<warp_per_row_kernel<Tr, V, R, kMut>>(p, blocks, threads, stream);
}

/// V elements per lane. The planted-bug builds always take one row per warp.
template <class Tr, int V, bool kMut>
cudaError_t launch_warp_v(const RoutingArgs& a, KernelParams p, cudaStream_t stream) {
  constexpr int VE = row::vec_elems<Tr, V>();
  p.vec = aligned_for(a, Tr::kBytes, VE * Tr::kBytes, VE);
  if constexpr (kMut) {
    return launch_warp_vr<Tr, V, 1, true>(p, stream);
  } else {
    // Few rows (at most 16 per multiprocessor): one row per warp, so that every row gets its
    // own warp instead of waiting for its batch neighbours.
    int sms = 0;
    if (const cudaError_t e = sm_count(&sms); e != cudaSuccess) return e;
    const int R = p.T_eff <= 16 * static_cast<std::int64_t>(sms) ? 1 : row::warp_batch_rows(V, a.k);
    if constexpr (V <= 4) {
      if (R == 4) return launch_warp_vr<Tr, V, 4, false>(p, stream);
    }
    if constexpr (V <= 8) {
      if (R == 2) return launch_warp_vr<Tr, V, 2, false>(p, stream);
    }
    return launch_warp_vr<Tr, V, 1, false>(p, stream);
  }
}

/// Element type x elements per lane (next_pow2(ceil(E / 32))).
template <bool kMut>
cudaError_t launch_warp_per_row(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream) {
  return row::with_traits_and_bucket<16>(a.dtype, row::warp_lane_elems(a.E), cudaErrorInvalidValue,
                                         [&](auto tr, auto v) {
                                           return launch_warp_v<decltype(tr), decltype(v)::value, kMut>(a, p, stream);
                                         });
}

}  // namespace moecheck::kernels::detail
