// moecheck fused routing kernels: thread_per_row (any E <= kMaxExperts; chosen for large T).
// One thread owns a row and runs row::thread_row (the routine the host emulation runs): the
// row is streamed in expert order in sorted batches merged into a register top list, then the
// weight epilogue. A warp owns a tile of 32 rows; contiguous aligned rows are staged through
// shared memory with double-buffered cp.async chunks, other layouts load element by element.
// Design and measurements: DESIGN.md, section "Fused routing kernels". Included by
// thread_per_row.cu (correct kernels) and mutant_thread_per_row.cu.
#pragma once

#include "kernels/routing_device.cuh"

namespace moecheck::kernels::detail {

constexpr int kChunkBytes = 128;                   ///< bytes of one row per staged chunk
constexpr int kChunkVecs = kChunkBytes / 16;       ///< 16-byte copies per row and chunk
constexpr int kStagePitch = kChunkBytes + 16;      ///< smem row pitch (16-byte reads conflict-free)
constexpr int kStageBytes = 2 * 32 * kStagePitch;  ///< two chunk buffers of a warp's 32 rows

static_assert(kChunkBytes % 16 == 0 && 32 % kChunkVecs == 0, "a chunk is whole 16-byte copies, lanes split evenly");

/// Bytes of a warp's output tile: 32 rows x (KB + 1) floats, then the same for ids (odd
/// pitch: conflict-free lane stores).
MOECHECK_HD constexpr int thread_out_bytes(int KB) { return 32 * (KB + 1) * 8; }

/// Staged kernels keep the output tile in the chunk buffer read last (free from the end of
/// the tile's selection until the next tile's first copy) when it fits (KB <= 16).
MOECHECK_HD constexpr bool thread_out_in_stage(int KB) { return thread_out_bytes(KB) <= 32 * kStagePitch; }

static_assert(thread_out_in_stage(16) && !thread_out_in_stage(32),
              "the output tile shares the chunk buffer exactly for k <= 16");

/// Shared memory of one warp: the chunk buffers (staged kernels) and the output tile.
MOECHECK_HD constexpr int thread_warp_smem(int KB, bool staged) {
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
  template <class F>
  __device__ __forceinline__ void rescan(F&& f) const {
    scan(f);
  }
  /// Raw bits of expert i (16-bit types in the low half).
  __device__ __forceinline__ std::uint32_t load(int i) const {
    const char* p = row + static_cast<std::int64_t>(i) * cs * Tr::kBytes;
    if constexpr (Tr::kBytes == 4) {
      return __ldg(reinterpret_cast<const unsigned int*>(p));
    } else {
      return __ldg(reinterpret_cast<const unsigned short*>(p));
    }
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
/// pass, a second selection pass and single experts read the row directly.
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
  template <class F>
  __device__ __forceinline__ void rescan(F&& f) const {
    direct.scan(f);
  }
  __device__ __forceinline__ std::uint32_t load(int i) const { return direct.load(i); }
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
MOECHECK_HD constexpr std::int64_t thread_tiles(std::int64_t T, Mutant m) {
  return m == Mutant::skip_partial_warp ? T / 32 : (T + 31) / 32;
}

/// Resident blocks per SM the register allocation aims at: staged kernels with KB <= 8 fit 6
/// blocks in shared memory (36 KiB each), which needs <= 80 registers per thread; larger
/// lists get what they need (1: no cap, no spills).
MOECHECK_HD constexpr int thread_min_blocks(int KB, bool staged) { return staged && KB <= 8 ? 6 : 1; }

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
// Lane groups: S lanes of a warp share a row (row::group_row; fewer rows than fill the GPU)
// ---------------------------------------------------------------------------------------

constexpr int kGroupThreads = 256;  ///< lane-group kernel: 8 warps per block

/// Device share of lane g of a group of S lanes, in row::HostLaneSource's order: the row's
/// 16-byte units g, g + S, g + 2S, .., up to four loads in flight per step.
template <class Tr, int Bt>
struct DeviceLaneSource {
  static constexpr int kBatch = Bt;
  static constexpr int UE = 16 / Tr::kBytes;
  const char* row;
  int units;
  int S;
  int g;
  template <class F>
  __device__ __forceinline__ void scan(F&& f) const {
    const uint4* rv = reinterpret_cast<const uint4*>(row);
    for (int u0 = g; u0 < units; u0 += 4 * S) {
      uint4 v[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int u = u0 + q * S;
        // Cached normally (not evict-first): the fp32 coarse selection reloads its k winners.
        v[q] = u < units ? __ldg(rv + u) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int u = u0 + q * S;
        if (u < units) {
          const std::uint32_t w[4] = {v[q].x, v[q].y, v[q].z, v[q].w};
#pragma unroll
          for (int b0 = 0; b0 < UE; b0 += Bt) {
            std::uint32_t raw[Bt];
#pragma unroll
            for (int j = 0; j < Bt; ++j) raw[j] = row::raw_elem<Tr, UE>(w, b0 + j);
            f(static_cast<const std::uint32_t*>(raw), u * UE + b0, Bt);
          }
        }
      }
    }
  }
};

/// Output of a lane group's row: the lanes store their own slots directly.
struct GroupRowOut {
  float* wp;
  std::int32_t* ip;
  bool on;
  __device__ __forceinline__ bool active() const { return on; }
  __device__ __forceinline__ static float scale(const float* p) { return __ldg(p); }
  __device__ __forceinline__ void store(int slot, float wv, std::int32_t idv) const {
    __stcs(wp + slot, wv);
    __stcs(ip + slot, idv);
  }
};

/// One row per group of p.lanes lanes (2..32), 32 / p.lanes rows per warp, grid-stride over
/// the warps' row batches (any whole number of warps per block, at most kGroupThreads). Rows
/// must be readable in 16-byte units (contiguous columns, aligned base and pitch,
/// E * bytes % 16 == 0). Lanes past T (last batch) compute a copy of
/// the last row and store nothing. skip_partial_warp: rows of the last partial 32-row tile
/// are skipped, as in thread_per_row_kernel.
template <class Tr, int KB, bool kMut>
__global__ void __launch_bounds__(kGroupThreads) thread_group_kernel(const KernelParams p) {
  constexpr int B = row::thread_batch(KB);
  constexpr int Bt = row::group_batch<Tr>(KB);
  const Mutant m = kMut ? p.mutant : Mutant::none;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int S = p.lanes;
  const int rpw = 32 / S;
  const std::int64_t tiles_rows = thread_tiles(p.T_eff, m) * 32;
  const std::int64_t T = p.T_eff < tiles_rows ? p.T_eff : tiles_rows;
  const std::int64_t nb = (T + rpw - 1) / rpw;
  const std::int64_t nw = static_cast<std::int64_t>(gridDim.x) * (blockDim.x >> 5);
  const DeviceWarp ctx{lane};
  const int E = p.cfg.E;
  const int k = p.cfg.k;
  const int units = E * Tr::kBytes / 16;
  const std::int64_t row_bytes = p.row_stride * Tr::kBytes;
  for (std::int64_t b = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; b < nb; b += nw) {
    const std::int64_t r = b * rpw + lane / S;
    const bool on = r < T;
    const std::int64_t rr = on ? r : T - 1;
    const char* rp = p.gating + rr * row_bytes;
    DeviceLaneSource<Tr, Bt> ls{rp, units, S, lane & (S - 1)};
    DirectRowSource<Tr, B, true> rs{rp, E, 1};
    GroupRowOut out{p.weights + rr * k, p.ids + rr * k, on};
    row::group_row<Tr, KB>(ctx, S, &ls, &rs, p.cfg, m, &out);
  }
}

template <class Tr, int KB, bool kMut>
cudaError_t launch_thread_kb(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream) {
  // Staged loads need whole 16-byte words: contiguous columns, aligned base and row pitch,
  // rows of a whole number of words.
  const bool staged = p.col_stride == 1 && reinterpret_cast<std::uintptr_t>(a.gating) % 16 == 0 &&
                      (a.T <= 1 || (p.row_stride * Tr::kBytes) % 16 == 0) && (a.E * Tr::kBytes) % 16 == 0;
  const std::int64_t ntiles = thread_tiles(p.T_eff, p.mutant);
  if (ntiles == 0) return cudaSuccess;
  KernelParams q = p;
  // Lanes per row: one thread per row for layouts without 16-byte units and for the
  // shared_race mutant (planted in the staged one-thread kernel); otherwise the request, at
  // least KB / 2, or the heuristic.
  int lanes = 1;
  if (staged && !(kMut && p.mutant == Mutant::shared_race)) {
    if (p.lanes > 0) {
      lanes = p.lanes == 1 ? 1 : (p.lanes < KB / 2 ? KB / 2 : p.lanes);
    } else {
      int sms = 0;
      if (const cudaError_t e = sm_count(&sms); e != cudaSuccess) return e;
      lanes = row::thread_lanes_per_row(a.E, Tr::kBytes, KB, p.T_eff, sms);
    }
  }
  if (lanes > 1) {
    q.lanes = lanes;
    const std::int64_t rows = ntiles * 32 < p.T_eff ? ntiles * 32 : p.T_eff;
    const std::int64_t batches = (rows + (32 / lanes) - 1) / (32 / lanes);
    int threads = kGroupThreads;
    if (const cudaError_t e = spread_threads(batches, kGroupThreads, &threads); e != cudaSuccess) return e;
    const std::int64_t blocks = (batches + threads / 32 - 1) / (threads / 32);
    return launch_capped<thread_group_kernel<Tr, KB, kMut>>(q, blocks, threads, stream);
  }
  q.lanes = 1;
  const std::int64_t blocks = (ntiles + kThreadWarps - 1) / kThreadWarps;  // a warp per tile
  q.vec_out = a.k % 4 == 0 && reinterpret_cast<std::uintptr_t>(a.weights) % 16 == 0 &&
              reinterpret_cast<std::uintptr_t>(a.ids) % 16 == 0;
  constexpr int kStagedSmem = kThreadWarps * thread_warp_smem(KB, true);
  constexpr int kDirectSmem = kThreadWarps * thread_warp_smem(KB, false);
  constexpr int kThreads = kThreadWarps * 32;
  if (staged) return launch_capped<thread_per_row_kernel<Tr, KB, kMut, true>>(q, blocks, kThreads, stream, kStagedSmem);
  return launch_capped<thread_per_row_kernel<Tr, KB, kMut, false>>(q, blocks, kThreads, stream, kDirectSmem);
}

/// Element type x top-list bucket (next_pow2(k)).
template <bool kMut>
cudaError_t launch_thread_per_row(const RoutingArgs& a, const KernelParams& p, cudaStream_t stream) {
  return row::with_traits_and_bucket<kMaxK>(a.dtype, row::thread_bucket(a.k), cudaErrorInvalidValue,
                                            [&](auto tr, auto kb) {
                                              return launch_thread_kb<decltype(tr), decltype(kb)::value, kMut>(a, p, stream);
                                            });
}

}  // namespace moecheck::kernels::detail
