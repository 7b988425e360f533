// moecheck fused routing kernels: the shared device header of the per-variant launchers
// (warp_per_row.cuh, block_per_row.cuh, thread_per_row.cuh). The per-row algorithm itself is
// routing_row.hpp (shared with the host emulation); this header adds the device warp context,
// the lanes' gating loads and the occupancy-capped launch. Design: DESIGN.md, section
// "Fused routing kernels".
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "kernels/routing_launch.hpp"
#include "kernels/routing_row.hpp"

namespace moecheck::kernels::detail {

constexpr unsigned kFull = 0xffffffffu;

static_assert(kWarpThreads % 32 == 0 && kWarpThreads <= 1024, "warp_per_row: whole warps per block");
static_assert(row::kBlockMaxWarps * 32 * row::kBlockV == kMaxExperts,
              "block_per_row: kBlockMaxWarps warps of 32 lanes x kBlockV elements cover kMaxExperts");

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
  __device__ __forceinline__ bool any(const bool* v) const { return __any_sync(kFull, v[0]) != 0; }
  __device__ __forceinline__ static float load_scale(const float* p) { return __ldg(p); }
  __device__ __forceinline__ static void store(float* w, float wv, std::int32_t* id,
                                               std::int32_t idv) {
    __stcs(w, wv);
    __stcs(id, idv);
  }
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
// Launch helpers (host)
// ---------------------------------------------------------------------------------------

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

/// Threads per block for a grid-stride kernel of one warp per work item that needs `warps`
/// warps in all (at most max_threads per block): few warps are spread one block per
/// multiprocessor first (small T: no two rows share a multiprocessor while others idle), then
/// blocks grow up to max_threads.
inline cudaError_t spread_threads(std::int64_t warps, int max_threads, int* threads) {
  int sms = 0;
  if (const cudaError_t e = sm_count(&sms); e != cudaSuccess) return e;
  const std::int64_t per_sm = (warps + sms - 1) / sms;
  const std::int64_t cap = max_threads / 32;
  *threads = 32 * static_cast<int>(per_sm < 1 ? 1 : (per_sm > cap ? cap : per_sm));
  return cudaSuccess;
}

/// True when vector loads of vec_bytes (vec_elems elements) can read every row: contiguous
/// columns, E a multiple of vec_elems, base pointer and row pitch aligned to vec_bytes.
inline bool aligned_for(const RoutingArgs& a, int bytes, int vec_bytes, int vec_elems) {
  if (a.col_stride != 1 || a.E % vec_elems != 0) return false;
  if (reinterpret_cast<std::uintptr_t>(a.gating) % static_cast<std::uintptr_t>(vec_bytes) != 0) return false;
  return a.T <= 1 || (a.row_stride * bytes) % vec_bytes == 0;
}

}  // namespace moecheck::kernels::detail
