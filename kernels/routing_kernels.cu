// moecheck fused routing kernels (CUDA). The per-row algorithm lives in routing_row.hpp and
// is shared with the host emulation; this file holds the device warp context, the loads,
// the three kernel variants and the launcher.
//
// warp_per_row (E <= 512): one warp owns a row. Lane l holds V = next_pow2(ceil(E/32))
//   elements (16-byte, 8-byte... vector loads interleaved across lanes when the layout
//   allows), turns them into unique order-preserving entries and sorts them in registers
//   (Batcher network). Top-k = k rounds of one warp max-reduction (redux.sync; two for
//   fp32's 64-bit entries) and a conditional shift of the winning lane's list. A warp
//   processes R rows per batch (R = 4 for k <= 8 and V <= 4): the rows' k slots sit side by
//   side in the warp so that one epilogue (exp, sum, divide, scale, coalesced stores) serves
//   R rows, and the next batch is prefetched into registers while this one is computed.
//   Grid-stride over batches (1-D grid sized from the occupancy), so any T works.
// block_per_row (any E <= 4096): W = ceil(E / 256) warps own a row, each a chunk of 256
//   experts (8 per lane, as above) from which it selects its own top k, publishing each
//   round's winner in shared memory. After a barrier warp 0 merges the W sorted candidate
//   lists (lane i walks list i, k rounds of a warp max) and runs the same epilogue. For
//   softmax_topk_raw each warp also publishes its chunk's softmax sum relative to its chunk
//   maximum; warp 0 rescales and adds them. A second barrier protects the candidate lists
//   before the next row (grid-stride over rows, next row prefetched) overwrites them.
// thread_per_row (any E <= 4096; chosen for large T): one thread owns a row and runs
//   row::thread_row (the same routine as the emulation): it streams the row in expert order
//   in batches of B <= 8 elements, sorts each batch (Batcher network) and merges it into its
//   sorted top-KB register list (bitonic merge; KB = next_pow2(k) is a template parameter),
//   then runs the weight epilogue. A warp owns a tile of 32 consecutive rows; warps
//   grid-stride over tiles (1-D grid sized from the occupancy). Contiguous aligned rows
//   (col_stride 1, 16-byte aligned base and row pitch, E * bytes % 16 == 0) are staged through
//   shared memory: the warp copies its 32 rows' next 128-byte column chunk with 16-byte
//   cp.async (8 lanes per row: full cache lines), double-buffered and continued across tiles
//   so that one chunk is always in flight, and each lane reads its own row's chunk (row pitch
//   padded by 16 bytes: conflict-free 16-byte reads). Other layouts load element by element
//   (coalesced for transposed layouts, where the lanes' rows are adjacent). fp16 / bf16 entries
//   are built two per 32-bit word (row::thread_entry_pair). Each lane writes its k weights /
//   ids into a shared output tile (for k <= 16 in the chunk buffer read last); with k % 4 == 0
//   and 16-byte aligned outputs each lane then stores its row with 16-byte stores, otherwise
//   the warp stores the tile's 32 * k outputs with coalesced stores. 4 warps per block; with
//   k <= 8 a warp needs 9 KiB of shared memory and <= 80 registers: 6 blocks (24 warps) per SM.
//   Measured on an H100 (Nsight Compute, bf16 E=128 k=8 T=250000): the integer ALU pipe is the
//   limit (min/max of the sorting networks; stalls mostly "not selected" and "math pipe
//   throttle"), not memory: ~1.7x the memory floor (reports/baselines/README.md).
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "kernels/routing_cuda.hpp"
#include "kernels/routing_row.hpp"

namespace moecheck::kernels {
namespace {

using row::RowConfig;

constexpr unsigned kFull = 0xffffffffu;
constexpr int kWarpThreads = 256;  ///< warp_per_row: 8 warps per block

/// Device warp context: holds the calling lane only; collectives are warp intrinsics with
/// the same reduction order as row::HostWarp.
struct DeviceWarp {
  static constexpr int N = 1;
  int lane_;
  __device__ __forceinline__ int lane(int) const { return lane_; }
  template <class F>
  __device__ __forceinline__ void each(F&& f) const {
    f(0);
  }
  __device__ __forceinline__ std::uint32_t max(const std::uint32_t* v) const {
#if __CUDA_ARCH__ >= 800
    return __reduce_max_sync(kFull, v[0]);
#else
    std::uint32_t x = v[0];
    for (int o = 16; o > 0; o >>= 1) x = ::max(x, __shfl_xor_sync(kFull, x, o));
    return x;
#endif
  }
  __device__ __forceinline__ std::uint64_t max(const std::uint64_t* v) const {
    const std::uint32_t h = static_cast<std::uint32_t>(v[0] >> 32);
    const std::uint32_t hi = max(&h);
    const std::uint32_t l = h == hi ? static_cast<std::uint32_t>(v[0]) : 0u;
    const std::uint32_t lo = max(&l);
    return (static_cast<std::uint64_t>(hi) << 32) | lo;
  }
  __device__ __forceinline__ void shfl(std::uint32_t* out, const std::uint32_t* v,
                                       const int* src) const {
    out[0] = __shfl_sync(kFull, v[0], src[0]);
  }
  __device__ __forceinline__ void shfl(std::uint64_t* out, const std::uint64_t* v,
                                       const int* src) const {
    const std::uint32_t lo = __shfl_sync(kFull, static_cast<std::uint32_t>(v[0]), src[0]);
    const std::uint32_t hi = __shfl_sync(kFull, static_cast<std::uint32_t>(v[0] >> 32), src[0]);
    out[0] = (static_cast<std::uint64_t>(hi) << 32) | lo;
  }
  __device__ __forceinline__ void xor_sum(float* v, int width, bool fp16) const {
    for (int o = 1; o < width; o <<= 1) {
      v[0] = row::accumulate(v[0], __shfl_xor_sync(kFull, v[0], o), fp16);
    }
  }
  __device__ __forceinline__ static float load_scale(const float* p) { return __ldg(p); }
  __device__ __forceinline__ static void store(float* w, float wv, std::int32_t* id,
                                               std::int32_t idv) {
    __stcs(w, wv);
    __stcs(id, idv);
  }
};

/// Uniform launch parameters.
struct KernelParams {
  const char* gating = nullptr;  ///< byte pointer
  std::int64_t T_eff = 0;        ///< rows processed (T, fewer under grid_overflow)
  std::int64_t row_stride = 0;   ///< elements
  std::int64_t col_stride = 1;   ///< elements (1 under ignore_col_stride)
  bool vec = false;              ///< vector loads allowed (contiguous, aligned, E % VE == 0)
  bool vec_out = false;          ///< thread_per_row: 16-byte output stores (k % 4 == 0, aligned outputs)
  RowConfig cfg;
  Mutant mutant = Mutant::none;
  float* weights = nullptr;
  std::int32_t* ids = nullptr;
};

/// Loads the V raw elements of one lane (chunk starting at expert chunk_base) of a row.
/// Elements at index >= E are not read (left 0; they become padding in build_list).
template <class Tr, int V>
__device__ __forceinline__ void load_lane(const char* row_ptr, int lane, int chunk_base, int E,
                                          std::int64_t cs, bool vec, std::uint32_t* words) {
  constexpr int VE = row::vec_elems<Tr, V>();
  constexpr int NU = V / VE;
  constexpr int VB = VE * Tr::kBytes;
  constexpr int NW = row::raw_words<Tr, V>();
#pragma unroll
  for (int w = 0; w < NW; ++w) words[w] = 0;
  if (vec) {
#pragma unroll
    for (int u = 0; u < NU; ++u) {
      const int idx = chunk_base + (u * 32 + lane) * VE;
      if (idx < E) {
        const char* p = row_ptr + static_cast<std::int64_t>(idx) * Tr::kBytes;
        if constexpr (VB == 16) {
          const uint4 x = __ldcs(reinterpret_cast<const uint4*>(p));
          words[4 * u + 0] = x.x;
          words[4 * u + 1] = x.y;
          words[4 * u + 2] = x.z;
          words[4 * u + 3] = x.w;
        } else if constexpr (VB == 8) {
          const uint2 x = __ldcs(reinterpret_cast<const uint2*>(p));
          words[0] = x.x;
          words[1] = x.y;
        } else if constexpr (VB == 4) {
          words[0] = __ldcs(reinterpret_cast<const unsigned int*>(p));
        } else {
          words[0] = __ldcs(reinterpret_cast<const unsigned short*>(p));
        }
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int idx = chunk_base + row::lane_elem_index<Tr, V>(lane, j);
      if (idx < E) {
        const char* p = row_ptr + static_cast<std::int64_t>(idx) * cs * Tr::kBytes;
        if constexpr (Tr::kBytes == 4) {
          words[j] = __ldcs(reinterpret_cast<const unsigned int*>(p));
        } else {
          const std::uint32_t h = __ldcs(reinterpret_cast<const unsigned short*>(p));
          words[j >> 1] |= h << ((j & 1) * 16);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// warp_per_row
// ---------------------------------------------------------------------------------------

template <class Tr, int V, int R, bool kMut>
__global__ void __launch_bounds__(kWarpThreads) warp_per_row_kernel(const KernelParams p) {
  using Entry = typename Tr::Entry;
  constexpr int NW = row::raw_words<Tr, V>();
  constexpr int SW = 32 / R;  // lanes per row group in the epilogue
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

// ---------------------------------------------------------------------------------------
// block_per_row
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// thread_per_row
// ---------------------------------------------------------------------------------------

constexpr int kThreadWarps = 4;                    ///< warps per block
constexpr int kChunkBytes = 128;                   ///< bytes of one row per staged chunk
constexpr int kChunkVecs = kChunkBytes / 16;       ///< 16-byte copies per row and chunk
constexpr int kStagePitch = kChunkBytes + 16;      ///< smem row pitch (16-byte reads conflict-free)
constexpr int kStageBytes = 2 * 32 * kStagePitch;  ///< two chunk buffers of a warp's 32 rows

/// Bytes of a warp's output tile: 32 rows x (KB + 1) floats, then the same for ids (odd
/// pitch: conflict-free lane stores).
constexpr int thread_out_bytes(int KB) { return 32 * (KB + 1) * 8; }

/// Staged kernels keep the output tile in the chunk buffer read last (free from the end of
/// the tile's selection until the next tile's first copy) when it fits (KB <= 16).
constexpr bool thread_out_in_stage(int KB) { return thread_out_bytes(KB) <= 32 * kStagePitch; }

/// Shared memory of one warp: the chunk buffers (staged kernels) and the output tile.
constexpr int thread_warp_smem(int KB, bool staged) {
  return staged ? kStageBytes + (thread_out_in_stage(KB) ? 0 : thread_out_bytes(KB)) : thread_out_bytes(KB);
}

__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src) {
#if __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem_src) : "memory");
#else
  *static_cast<uint4*>(smem_dst) = __ldcs(static_cast<const uint4*>(gmem_src));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
/// Waits until at most N of this thread's committed copy groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/// Calls f(raw, base, n) for the batches of B elements in a group of G = max(B, 16 / bytes)
/// elements held in the 16-byte words v[] (expert `base0` first); `E` bounds the last group
/// (kWhole: the group lies below E).
template <class Tr, int B, bool kWhole, class F>
__device__ __forceinline__ void visit_group(const uint4* v, int base0, int E, F& f) {
  constexpr int UE = 16 / Tr::kBytes;
  constexpr int G = B > UE ? B : UE;
  std::uint32_t w[G * Tr::kBytes / 4];
#pragma unroll
  for (int q = 0; q < G / UE; ++q) {
    w[4 * q + 0] = v[q].x;
    w[4 * q + 1] = v[q].y;
    w[4 * q + 2] = v[q].z;
    w[4 * q + 3] = v[q].w;
  }
#pragma unroll
  for (int b0 = 0; b0 < G; b0 += B) {
    std::uint32_t raw[B];
#pragma unroll
    for (int j = 0; j < B; ++j) raw[j] = row::raw_elem<Tr, G>(w, b0 + j);
    const int base = base0 + b0;
    if constexpr (B > UE && !kWhole) {
      // fp32 batches of 8 span two 16-byte words; E may end after the first.
      if (base + B <= E) {
        f(static_cast<const std::uint32_t*>(raw), base, B);
      } else {
        f(static_cast<const std::uint32_t*>(raw), base, E - base);
      }
    } else {
      f(static_cast<const std::uint32_t*>(raw), base, B);  // E % UE == 0: whole batches
    }
  }
}

/// Direct element source: the row's elements at row + e * cs * bytes, read by this thread.
/// kVec: contiguous 16-byte aligned row with E * bytes % 16 == 0 (16-byte loads).
template <class Tr, int B, bool kVec>
struct DirectRowSource {
  const char* row;
  int E;
  std::int64_t cs;
  template <class F>
  __device__ __forceinline__ void scan(F&& f) const {
    if constexpr (kVec) {
      constexpr int UE = 16 / Tr::kBytes;
      constexpr int G = B > UE ? B : UE;
      for (int g = 0; g < E; g += G) {
        uint4 v[G / UE];
#pragma unroll
        for (int q = 0; q < G / UE; ++q) {
          v[q] = g + q * UE < E ? __ldg(reinterpret_cast<const uint4*>(row + static_cast<std::int64_t>(g + q * UE) * Tr::kBytes))
                                : make_uint4(0, 0, 0, 0);
        }
        visit_group<Tr, B, false>(v, g, E, f);
      }
    } else {
      for (int base = 0; base < E; base += B) {
        const int n = E - base < B ? E - base : B;
        std::uint32_t raw[B];
#pragma unroll
        for (int j = 0; j < B; ++j) {
          raw[j] = 0u;
          if (j < n) {
            const char* p = row + static_cast<std::int64_t>(base + j) * cs * Tr::kBytes;
            if constexpr (Tr::kBytes == 4) {
              raw[j] = __ldg(reinterpret_cast<const unsigned int*>(p));
            } else {
              raw[j] = __ldg(reinterpret_cast<const unsigned short*>(p));
            }
          }
        }
        f(static_cast<const std::uint32_t*>(raw), base, n);
      }
    }
  }
  template <class F>
  __device__ __forceinline__ void scan_full(F&& f) const {
    scan(f);
  }
};

/// A warp's stream of staged chunks: chunk c of every row of tile t, for the warp's tiles
/// t = first, first + step, .. in order. issue() starts the copy of the next chunk of the
/// stream into the other buffer (one commit group per chunk, possibly empty); consume_row
/// walks the current tile's chunks: start the next copy, wait for this one, read it.
/// kMut && race (the shared_race mutant): no wait / __syncwarp between the copy and the
/// reads, so a lane may read a chunk before its copies (or the other lanes') have landed.
template <class Tr, bool kMut>
struct ChunkStream {
  static constexpr int CHE = kChunkBytes / Tr::kBytes;  ///< elements per chunk
  static constexpr int UE = 16 / Tr::kBytes;            ///< elements per 16-byte word
  const char* gating;
  std::int64_t row_bytes;
  std::int64_t T;
  int E;
  int nc;  ///< chunks per row
  std::int64_t ntiles, step;
  unsigned char* stage;
  int lane;
  std::int64_t iss_tile;
  bool race = false;
  int iss_c = 0;
  int iss_buf = 0;  ///< buffer of the next copy; right after issue() also the one to read

  __device__ __forceinline__ void issue() {
    if (iss_tile < ntiles) {
      unsigned char* dst = stage + iss_buf * (32 * kStagePitch);
      const int vec = lane % kChunkVecs;
      const int e0 = iss_c * CHE + vec * UE;
      if (e0 < E) {
        const char* src = gating + static_cast<std::int64_t>(e0) * Tr::kBytes;
#pragma unroll
        for (int u = 0; u < kChunkVecs; ++u) {
          const int r = u * (32 / kChunkVecs) + lane / kChunkVecs;
          const std::int64_t row = iss_tile * 32 + r;
          if (row < T) cp_async16(dst + r * kStagePitch + vec * 16, src + row * row_bytes);
        }
      }
      if (++iss_c == nc) {
        iss_c = 0;
        iss_tile += step;
      }
    }
    cp_async_commit();
    iss_buf ^= 1;
  }

  template <int B, class F>
  __device__ __forceinline__ void consume_row(F& f) {
    constexpr int G = B > UE ? B : UE;
    for (int c = 0; c < nc; ++c) {
      issue();
      if (!kMut || !race) {
        cp_async_wait<1>();
        __syncwarp();
      }
      // issue() filled the other buffer and toggled iss_buf back to the one to read now.
      const unsigned char* src = stage + iss_buf * (32 * kStagePitch) + lane * kStagePitch;
      const int e_base = c * CHE;
      if (E - e_base >= CHE) {  // whole chunk: no bound checks
#pragma unroll
        for (int g = 0; g < CHE; g += G) {
          uint4 v[G / UE];
#pragma unroll
          for (int q = 0; q < G / UE; ++q) v[q] = *reinterpret_cast<const uint4*>(src + (g + q * UE) * Tr::kBytes);
          visit_group<Tr, B, true>(v, e_base + g, E, f);
        }
      } else {
#pragma unroll
        for (int g = 0; g < CHE; g += G) {
          if (e_base + g >= E) break;
          uint4 v[G / UE];
#pragma unroll
          for (int q = 0; q < G / UE; ++q) v[q] = *reinterpret_cast<const uint4*>(src + (g + q * UE) * Tr::kBytes);
          visit_group<Tr, B, false>(v, e_base + g, E, f);
        }
      }
      __syncwarp();  // every lane has read this buffer before it is refilled
    }
  }
};

/// Staged element source: the selection pass reads the warp's chunk stream, the all-expert
/// pass reads the row directly (16-byte loads).
template <class Tr, int B, bool kMut>
struct StagedRowSource {
  ChunkStream<Tr, kMut>* stream;
  DirectRowSource<Tr, B, true> direct;
  template <class F>
  __device__ __forceinline__ void scan(F&& f) {
    stream->template consume_row<B>(f);
  }
  template <class F>
  __device__ __forceinline__ void scan_full(F&& f) const {
    direct.scan(f);
  }
};

/// Output of one lane's row: its slots in the warp's shared output tile.
struct SmemRowOut {
  float* wp;
  std::int32_t* ip;
  __device__ __forceinline__ static float scale(const float* p) { return __ldg(p); }
  __device__ __forceinline__ float weight(int slot) const { return wp[slot]; }
  __device__ __forceinline__ std::int32_t id(int slot) const { return ip[slot]; }
  __device__ __forceinline__ void store(int slot, float wv, std::int32_t idv) const {
    wp[slot] = wv;
    ip[slot] = idv;
  }
};

/// 32-row tiles of T rows. Planted bug skip_partial_warp: the last partial tile is dropped.
__host__ __device__ constexpr std::int64_t thread_tiles(std::int64_t T, Mutant m) {
  return m == Mutant::skip_partial_warp ? T / 32 : (T + 31) / 32;
}

/// Resident blocks per SM the register allocation aims at: staged kernels with KB <= 8 fit 6
/// blocks in shared memory (36 KiB each), which needs <= 80 registers per thread; larger
/// lists get what they need (1: no cap, no spills).
constexpr int thread_min_blocks(int KB, bool staged) { return staged && KB <= 8 ? 6 : 1; }

template <class Tr, int KB, bool kMut, bool kStaged>
__global__ void __launch_bounds__(kThreadWarps * 32, thread_min_blocks(KB, kStaged))
    thread_per_row_kernel(const KernelParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int B = row::thread_batch(KB);
  constexpr int OP = KB + 1;  // output tile pitch
  const Mutant m = kMut ? p.mutant : Mutant::none;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int warp = static_cast<int>(threadIdx.x >> 5);
  unsigned char* ws = smem + warp * thread_warp_smem(KB, kStaged);
  constexpr bool kOutInStage = kStaged && thread_out_in_stage(KB);
  const std::int64_t T = p.T_eff;
  const int E = p.cfg.E;
  const int k = p.cfg.k;
  const std::int64_t ntiles = thread_tiles(T, m);
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * kThreadWarps;
  std::int64_t tile = static_cast<std::int64_t>(blockIdx.x) * kThreadWarps + warp;
  const std::int64_t row_bytes = p.row_stride * Tr::kBytes;

  ChunkStream<Tr, kMut> s{p.gating, row_bytes, T, E, (E * Tr::kBytes + kChunkBytes - 1) / kChunkBytes,
                          ntiles, step, ws, lane, tile, m == Mutant::shared_race};
  if constexpr (kStaged) s.issue();
  for (; tile < ntiles; tile += step) {
    const std::int64_t row0 = tile * 32;
    // Lanes past T (last tile) compute a copy of the last row and store nothing.
    const std::int64_t row = row0 + lane < T ? row0 + lane : T - 1;
    const char* rp = p.gating + row * row_bytes;
    // Output tile: its own region, or the chunk buffer this tile reads last (each of its
    // nc chunk copies toggles the buffer once).
    float* ow = reinterpret_cast<float*>(
        kOutInStage ? ws + (s.iss_buf ^ (s.nc & 1)) * (32 * kStagePitch) : ws + (kStaged ? kStageBytes : 0));
    std::int32_t* oi = reinterpret_cast<std::int32_t*>(ow + 32 * OP);
    SmemRowOut out{ow + lane * OP, oi + lane * OP};
    if constexpr (kStaged) {
      StagedRowSource<Tr, B, kMut> src{&s, {rp, E, 1}};
      row::thread_row<Tr, KB>(src, p.cfg, m, out);
    } else {
      DirectRowSource<Tr, B, false> src{rp, E, p.col_stride};
      row::thread_row<Tr, KB>(src, p.cfg, m, out);
    }
    if (p.vec_out) {
      // k % 4 == 0 and 16-byte aligned outputs: each lane stores its own row's k weights and
      // ids with 16-byte stores (two per 32-byte sector, adjacent in time), no tile walk.
      if (row0 + lane < T) {
        float4* wd = reinterpret_cast<float4*>(p.weights + (row0 + lane) * k);
        int4* id = reinterpret_cast<int4*>(p.ids + (row0 + lane) * k);
#pragma unroll
        for (int q = 0; q < (KB + 3) / 4; ++q) {
          if (4 * q < k) {
            __stcs(wd + q, make_float4(out.weight(4 * q), out.weight(4 * q + 1), out.weight(4 * q + 2),
                                       out.weight(4 * q + 3)));
            __stcs(id + q, make_int4(out.id(4 * q), out.id(4 * q + 1), out.id(4 * q + 2), out.id(4 * q + 3)));
          }
        }
      }
      __syncwarp();  // the lanes' output rows are read before the next tile overwrites them
      continue;
    }
    __syncwarp();
    const int n = static_cast<int>(T - row0 < 32 ? T - row0 : 32) * k;
    float* wdst = p.weights + row0 * k;
    std::int32_t* idst = p.ids + row0 * k;
    // Walk (row r, slot c) of output i = lane, lane + 32, .. (computed here rather than kept
    // live across the row: fewer registers held around the division's slow-path call).
    const int r_step = 32 / k, c_step = 32 - r_step * k;
    int r = lane / k, c = lane - (lane / k) * k;
    for (int i = lane; i < n; i += 32) {
      __stcs(wdst + i, ow[r * OP + c]);
      __stcs(idst + i, oi[r * OP + c]);
      r += r_step;
      c += c_step;
      if (c >= k) {
        c -= k;
        ++r;
      }
    }
    __syncwarp();  // the tile's outputs are read before the next tile's lanes overwrite them
  }
  if constexpr (kStaged) cp_async_wait<0>();
}

// ---------------------------------------------------------------------------------------
// Launch helpers
// ---------------------------------------------------------------------------------------

/// Streaming multiprocessors of the current device (cached per device id).
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

constexpr int kCachedDevices = 16;  ///< devices whose occupancy queries are cached

/// Resident blocks per SM of kernel K at `threads` threads and `smem` bytes of dynamic shared
/// memory per block (a kernel instantiation always uses the same smem). The first query on a
/// device also raises K's dynamic shared-memory limit when smem exceeds the default 48 KiB.
/// Cached per kernel, device and block size.
template <auto K>
cudaError_t blocks_per_sm(int threads, int smem, int* out) {
  static std::atomic<int> cache[kCachedDevices][row::kBlockMaxWarps + 1] = {};
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  const int slot = threads / 32;
  std::atomic<int>* cached =
      dev >= 0 && dev < kCachedDevices && slot <= row::kBlockMaxWarps ? &cache[dev][slot] : nullptr;
  if (cached != nullptr) {
    const int c = cached->load(std::memory_order_relaxed);
    if (c > 0) {
      *out = c;
      return cudaSuccess;
    }
  }
  if (smem > 48 * 1024) {
    e = cudaFuncSetAttribute(K, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
  }
  int n = 0;
  e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, K, threads, static_cast<std::size_t>(smem));
  if (e != cudaSuccess) return e;
  if (n < 1) n = 1;
  if (cached != nullptr) cached->store(n, std::memory_order_relaxed);
  *out = n;
  return cudaSuccess;
}

/// Launches K over `work_blocks` blocks' worth of work (`smem` bytes of dynamic shared memory
/// per block), capped at what is resident at once (the kernels are grid-stride loops).
template <auto K>
cudaError_t launch_capped(const KernelParams& p, std::int64_t work_blocks, int threads, cudaStream_t stream,
                          int smem = 0) {
  int sms = 0, per_sm = 0;
  cudaError_t e = sm_count(&sms);
  if (e != cudaSuccess) return e;
  e = blocks_per_sm<K>(threads, smem, &per_sm);
  if (e != cudaSuccess) return e;
  const std::int64_t cap = static_cast<std::int64_t>(sms) * per_sm;
  const std::int64_t grid = work_blocks < cap ? work_blocks : cap;
  K<<<static_cast<unsigned>(grid), static_cast<unsigned>(threads), static_cast<std::size_t>(smem), stream>>>(p);
  return cudaGetLastError();
}

bool aligned_for(const RoutingArgs& a, int bytes, int vec_bytes, int vec_elems) {
  if (a.col_stride != 1 || a.E % vec_elems != 0) return false;
  if (reinterpret_cast<std::uintptr_t>(a.gating) % static_cast<std::uintptr_t>(vec_bytes) != 0) return false;
  return a.T <= 1 || (a.row_stride * bytes) % vec_bytes == 0;
}

template <class Tr, int V, int R, bool kMut>
cudaError_t launch_warp_vr(const KernelParams& p, cudaStream_t stream) {
  const std::int64_t batches = (p.T_eff + R - 1) / R;
  const std::int64_t blocks = (batches + kWarpThreads / 32 - 1) / (kWarpThreads / 32);
  return launch_capped<warp_per_row_kernel<Tr, V, R, kMut>>(p, blocks, kWarpThreads, stream);
}

template <class Tr, int V>
cudaError_t launch_warp_v(const RoutingArgs& a, KernelParams p, bool mut, cudaStream_t stream) {
  constexpr int VE = row::vec_elems<Tr, V>();
  p.vec = aligned_for(a, Tr::kBytes, VE * Tr::kBytes, VE);
  if (mut) return launch_warp_vr<Tr, V, 1, true>(p, stream);
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

template <class Tr, int KB>
cudaError_t launch_thread_kb(const RoutingArgs& a, const KernelParams& p, bool mut, cudaStream_t stream) {
  // Staged loads need whole 16-byte words: contiguous columns, aligned base and row pitch,
  // rows of a whole number of words.
  const bool staged = p.col_stride == 1 && reinterpret_cast<std::uintptr_t>(a.gating) % 16 == 0 &&
                      (a.T <= 1 || (p.row_stride * Tr::kBytes) % 16 == 0) && (a.E * Tr::kBytes) % 16 == 0;
  const std::int64_t ntiles = thread_tiles(p.T_eff, p.mutant);
  if (ntiles == 0) return cudaSuccess;
  const std::int64_t blocks = (ntiles + kThreadWarps - 1) / kThreadWarps;  // a warp per tile
  KernelParams q = p;
  q.vec_out = a.k % 4 == 0 && reinterpret_cast<std::uintptr_t>(a.weights) % 16 == 0 &&
              reinterpret_cast<std::uintptr_t>(a.ids) % 16 == 0;
  constexpr int kStagedSmem = kThreadWarps * thread_warp_smem(KB, true);
  constexpr int kDirectSmem = kThreadWarps * thread_warp_smem(KB, false);
  constexpr int kThreads = kThreadWarps * 32;
  if (staged) {
    if (mut) return launch_capped<thread_per_row_kernel<Tr, KB, true, true>>(q, blocks, kThreads, stream, kStagedSmem);
    return launch_capped<thread_per_row_kernel<Tr, KB, false, true>>(q, blocks, kThreads, stream, kStagedSmem);
  }
  if (mut) return launch_capped<thread_per_row_kernel<Tr, KB, true, false>>(q, blocks, kThreads, stream, kDirectSmem);
  return launch_capped<thread_per_row_kernel<Tr, KB, false, false>>(q, blocks, kThreads, stream, kDirectSmem);
}

template <class Tr>
cudaError_t launch_typed(const RoutingArgs& a, Variant v, const KernelParams& p, bool mut,
                         cudaStream_t stream) {
  if (v == Variant::thread_per_row) {
    switch (row::thread_bucket(a.k)) {
      case 1: return launch_thread_kb<Tr, 1>(a, p, mut, stream);
      case 2: return launch_thread_kb<Tr, 2>(a, p, mut, stream);
      case 4: return launch_thread_kb<Tr, 4>(a, p, mut, stream);
      case 8: return launch_thread_kb<Tr, 8>(a, p, mut, stream);
      case 16: return launch_thread_kb<Tr, 16>(a, p, mut, stream);
      case 32: return launch_thread_kb<Tr, 32>(a, p, mut, stream);
      default: return cudaErrorInvalidValue;
    }
  }
  if (v == Variant::warp_per_row) {
    switch (row::warp_lane_elems(a.E)) {
      case 1: return launch_warp_v<Tr, 1>(a, p, mut, stream);
      case 2: return launch_warp_v<Tr, 2>(a, p, mut, stream);
      case 4: return launch_warp_v<Tr, 4>(a, p, mut, stream);
      case 8: return launch_warp_v<Tr, 8>(a, p, mut, stream);
      case 16: return launch_warp_v<Tr, 16>(a, p, mut, stream);
      default: return cudaErrorInvalidValue;
    }
  }
  KernelParams q = p;
  constexpr int VE = row::vec_elems<Tr, row::kBlockV>();
  q.vec = aligned_for(a, Tr::kBytes, VE * Tr::kBytes, VE);
  const int threads = 32 * row::block_warps(a.E);
  if (mut) return launch_capped<block_per_row_kernel<Tr, true>>(q, q.T_eff, threads, stream);
  return launch_capped<block_per_row_kernel<Tr, false>>(q, q.T_eff, threads, stream);
}

}  // namespace

int threads_per_block(Variant v, int E, std::int64_t T, GatingType dtype) {
  if (v == Variant::automatic) v = choose_variant(E, T, dtype);
  if (v == Variant::thread_per_row) return kThreadWarps * 32;
  return v == Variant::warp_per_row ? kWarpThreads : 32 * row::block_warps(E);
}

cudaError_t launch_routing(const RoutingArgs& a, Variant v, cudaStream_t stream, Mutant m) {
  if (validate_args(a, nullptr) != ArgStatus::ok) return cudaErrorInvalidValue;
  if (static_cast<int>(m) < 0 || m >= Mutant::count_) return cudaErrorInvalidValue;
  if (v == Variant::automatic) v = choose_variant(a.E, a.T, a.dtype);
  if (v != Variant::warp_per_row && v != Variant::block_per_row && v != Variant::thread_per_row)
    return cudaErrorInvalidValue;
  if (v == Variant::warp_per_row && a.E > kWarpMaxExperts) return cudaErrorInvalidValue;
  if (a.T == 0) return cudaSuccess;

  KernelParams p;
  p.gating = static_cast<const char*>(a.gating);
  p.T_eff = (m == Mutant::grid_overflow && a.T > 65536) ? 65536 : a.T;
  p.row_stride = a.row_stride;
  p.col_stride = m == Mutant::ignore_col_stride ? 1 : a.col_stride;
  p.cfg = row::make_row_config(a.E, a.k, a.family, a.scale, m);
  p.mutant = m;
  p.weights = a.weights;
  p.ids = a.ids;
  const bool mut = m != Mutant::none;
  switch (a.dtype) {
    case GatingType::f32: return launch_typed<row::F32>(a, v, p, mut, stream);
    case GatingType::f16: return launch_typed<row::F16>(a, v, p, mut, stream);
    case GatingType::bf16: return launch_typed<row::BF16>(a, v, p, mut, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace moecheck::kernels
