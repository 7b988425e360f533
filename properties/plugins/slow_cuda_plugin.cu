// Test-only CUDA plugin (ABI version 1, strict contract): a correct router whose work on the
// caller's stream is deliberately spread out in time, to expose host/device handoff races in the
// harness (inputs or output poison copied on another stream than the plugin's, results copied
// back before the plugin's stream is done). On the stream it queues
//   1. the even rows, written as soon as the kernel starts: a poison or input copy that lands
//      after the plugin started overwrites them (`unwritten`) or feeds them stale logits;
//   2. a single-thread kernel that waits kDelayNs on the device clock;
//   3. the odd rows, written only after that wait: a copy-back not ordered after the plugin's
//      stream returns them still poisoned (`unwritten`).
// A harness that orders every copy with the plugin's stream sees only correct outputs.
#include <cstdint>
#include <string>

#include "properties/plugins/strict_rows.cuh"

namespace {

using namespace moecheck_test_plugin;
using moecheck_plugin_util::g_error;

constexpr unsigned long long kDelayNs = 100000;  // 100 us between the two halves of the rows
constexpr int kThreads = 128;

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

/// Waits `ns` nanoseconds of device time (bounded by a cycle cap should the timer not advance).
__global__ void wait_on_device(unsigned long long ns) {
  const unsigned long long t0 = global_ns();
  const long long c0 = clock64();
  while (global_ns() - t0 < ns && clock64() - c0 < (1ll << 32)) __nanosleep(1000);
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
  const std::int64_t even = (T + 1) / 2, odd = T / 2;
  cudaGetLastError();  // clear an earlier non-sticky error so that the checks below are ours
  strict_route_rows<<<blocks_for(even, kThreads), kThreads, 0, st>>>(gating, row_stride, col_stride, dtype, T, E, k,
                                                                     family, scale, weights, ids, 0, 2);
  if (const int s = launch_status("strict_route_rows (even rows) launch")) return s;
  wait_on_device<<<1, 1, 0, st>>>(kDelayNs);
  if (const int s = launch_status("wait_on_device launch")) return s;
  if (odd > 0) {
    strict_route_rows<<<blocks_for(odd, kThreads), kThreads, 0, st>>>(gating, row_stride, col_stride, dtype, T, E, k,
                                                                      family, scale, weights, ids, 1, 2);
    if (const int s = launch_status("strict_route_rows (odd rows) launch")) return s;
  }
  return MOECHECK_PLUGIN_OK;
}

constexpr moecheck_plugin_desc_v1 kDesc = strict_desc_v1("slow-cuda", &route);

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
