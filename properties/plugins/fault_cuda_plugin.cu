// Test-only CUDA plugin (ABI version 1, strict contract): correct outputs, except that a row
// holding a NaN logit makes its thread misbehave on the device, as the environment variable
// MOECHECK_CUDA_FAULT says (read on every call):
//   illegal-address (default)  stores through a wild pointer (the first page of the address
//                              space, which no allocation ever covers): cudaErrorIllegalAddress,
//                              a sticky error that destroys the CUDA context of the process;
//   trap                       executes a trap instruction (a sticky launch failure);
//   hang                       sleeps forever (the kernel never completes).
// The condition depends only on the problem (a NaN somewhere), so the fault shrinks (to one
// row) and replays deterministically. Rows without a NaN are routed correctly: a harness that
// contains the fault keeps judging every later case as before.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "properties/plugins/strict_rows.cuh"

namespace {

using namespace moecheck_test_plugin;
using moecheck_plugin_util::g_error;

constexpr int kThreads = 128;

enum Fault : int { kIllegalAddress = 0, kTrap = 1, kHang = 2 };

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

/// True when row t holds a NaN logit.
__device__ bool row_has_nan(const void* gating, std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype,
                            std::int64_t t, std::int32_t E) {
  for (std::int32_t e = 0; e < E; ++e) {
    const std::int64_t off = t * row_stride + e * col_stride;
    float x;
    if (dtype == MOECHECK_DTYPE_F32) {
      x = static_cast<const float*>(gating)[off];
    } else {
      const unsigned short bits = static_cast<const unsigned short*>(gating)[off];
      x = dtype == MOECHECK_DTYPE_F16 ? __half2float(__ushort_as_half(bits))
                                      : __uint_as_float(static_cast<unsigned>(bits) << 16);
    }
    if (x != x) return true;
  }
  return false;
}

__global__ void fault_on_nan_rows(const void* gating, std::int64_t row_stride, std::int64_t col_stride,
                                  std::int32_t dtype, std::int64_t T, std::int32_t E, int fault) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= T || !row_has_nan(gating, row_stride, col_stride, dtype, t, E)) return;
  if (fault == kTrap) __trap();
  if (fault == kHang) {
    // Reads of the device clock (volatile asm) keep the loop: a loop without side effects may
    // be removed by the compiler, and then the thread would go on to the store below.
    while (global_ns() != 0ull) __nanosleep(100000);
  }
  // A store through a wild pointer: address 0x100 lies in the first page, never mapped.
  volatile std::int32_t* wild = reinterpret_cast<volatile std::int32_t*>(static_cast<std::uintptr_t>(0x100));
  *wild = static_cast<std::int32_t>(t);
}

int fault_mode() {
  const char* m = std::getenv("MOECHECK_CUDA_FAULT");
  if (!m || !*m || std::strcmp(m, "illegal-address") == 0) return kIllegalAddress;
  if (std::strcmp(m, "trap") == 0) return kTrap;
  if (std::strcmp(m, "hang") == 0) return kHang;
  return kIllegalAddress;
}

int route(const void* gating, std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype,
          std::int64_t T, std::int32_t E, std::int32_t k, std::int32_t family, const float* scale,
          float* weights, std::int32_t* ids, std::int32_t device, void* stream) {
  g_error.clear();
  if (const int s = validate(gating, row_stride, col_stride, dtype, T, E, k, family, weights, ids, device, &g_error)) {
    return s;
  }
  if (T == 0) return MOECHECK_PLUGIN_OK;
  const auto st = static_cast<cudaStream_t>(stream);
  cudaGetLastError();  // clear an earlier non-sticky error so that the checks below are ours
  strict_route_rows<<<blocks_for(T, kThreads), kThreads, 0, st>>>(gating, row_stride, col_stride, dtype, T, E, k,
                                                                  family, scale, weights, ids, 0, 1);
  if (const int s = launch_status("strict_route_rows launch")) return s;
  fault_on_nan_rows<<<static_cast<unsigned>((T + kThreads - 1) / kThreads), kThreads, 0, st>>>(
      gating, row_stride, col_stride, dtype, T, E, fault_mode());
  if (const int s = launch_status("fault_on_nan_rows launch")) return s;
  return MOECHECK_PLUGIN_OK;
}

constexpr moecheck_plugin_desc_v1 kDesc = strict_desc_v1("fault-cuda", &route);

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
