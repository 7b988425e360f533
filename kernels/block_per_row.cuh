// moecheck fused routing kernels: block_per_row (any E <= kMaxExperts). W = ceil(E / 256) warps
// own a row, each selecting the top k of its 256-expert chunk and publishing the winners in
// shared memory; after a barrier warp 0 merges the W candidate lists and runs the epilogue.
// Grid-stride over rows, the next row prefetched. Design: DESIGN.md, section "Fused routing
// kernels". Included by block_per_row.cu (correct kernels) and mutant_block_per_row.cu.
#pragma once

#include "kernels/routing_device.cuh"

namespace moecheck::kernels::detail {

template <class Tr, bool kMut>
__global__ void __launch_bounds__(row::kBlockMaxWarps * 32) block_per_row_kernel(const KernelParams p) {
  using Entry = typename Tr::Entry;
  constexpr int V = row::kBlockV;
  constexpr int NW = row::raw_words<Tr, V>();
  __shared__ Entry cand[row::kBlockMaxWarps][kMaxK];
  __shared__ float part[row::kBlockMaxWarps];
  const Mutant m = kMut ? p.mutant : Mutant::none;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int warp = static_cast<int>(threadIdx.x >> 5);
  const int W = static_cast<int>(blockDim.x >> 5);
  const int chunk = warp * 32 * V;
  const DeviceWarp ctx{lane};
  const int E = p.cfg.E;
  const std::int64_t row_bytes = p.row_stride * Tr::kBytes;

  std::uint32_t cur[NW], nxt[NW];
  std::int64_t row = blockIdx.x;
  if (row < p.T_eff) load_lane<Tr, V>(p.gating + row * row_bytes, lane, chunk, E, p.col_stride, p.vec, cur);
  for (; row < p.T_eff; row += gridDim.x) {
    const std::int64_t next = row + gridDim.x;
    if (next < p.T_eff) load_lane<Tr, V>(p.gating + next * row_bytes, lane, chunk, E, p.col_stride, p.vec, nxt);
    Entry list[1][V];
    row::build_list<Tr, V>(cur, lane, chunk, p.cfg, m, list[0]);
    row::block_phase1<Tr, V>(
        ctx, list, p.cfg, m, [&](int r, Entry w) {
          if (lane == 0) cand[warp][r] = w;
        },
        [&](const float* s) {
          if (lane == 0) part[warp] = s[0];
        });
    __syncthreads();
    if (warp == 0) {
      // volatile: the merge re-reads each list head from shared memory every round.
      const volatile Entry* vc = &cand[0][0];
      const volatile float* vp = part;
      row::block_phase2<Tr>(
          ctx, W, [&](int l, int pos) -> Entry { return vc[l * kMaxK + pos]; },
          [&](int l) -> float { return vp[l]; }, row, p.cfg, m, p.weights, p.ids);
    }
    // The candidate lists are rewritten by the next row's phase 1. (Planted bug
    // shared_race: this barrier is missing, so a fast warp overwrites its list while warp 0
    // is still merging it.)
    if (!(kMut && m == Mutant::shared_race)) __syncthreads();
#pragma unroll
    for (int w = 0; w < NW; ++w) cur[w] = nxt[w];
  }
}

template <class Tr, bool kMut>
cudaError_t launch_block_typed(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream) {
  KernelParams q = p;
  constexpr int VE = row::vec_elems<Tr, row::kBlockV>();
  q.vec = aligned_for(a, Tr::kBytes, VE * Tr::kBytes, VE);
  const int threads = 32 * row::block_warps(a.E);
  return launch_capped<block_per_row_kernel<Tr, kMut>>(q, q.T_eff, threads, stream);
}

template <bool kMut>
cudaError_t launch_block_per_row(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream) {
  return row::with_element_traits(a.dtype, cudaErrorInvalidValue,
                                  [&](auto tr) { return launch_block_typed<decltype(tr), kMut>(a, p, stream); });
}

}  // namespace moecheck::kernels::detail
