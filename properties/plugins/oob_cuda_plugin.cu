// Test-only CUDA plugin (ABI version 1, strict contract): correct outputs, plus a device-side
// out-of-bounds write modelled on a specialised path with a wrong tail bound. For bf16
// softmax_topk_raw problems with T >= 3 a second kernel writes kOverrun ids just past the end of
// `ids` (elements T * k .. T * k + kOverrun - 1). The overrun stays within moecheck's output guard
// region (64 elements), so it is an ordinary memory write, not an illegal address: the harness
// must detect it from the guards (`out-of-bounds-write`), shrink it (to T = 3) and keep going.
// The condition depends only on the problem (dtype, family, T), so the failure shrinks and
// replays deterministically; it covers about a tenth of a campaign's cases.
#include <cstdint>
#include <string>

#include "properties/plugins/strict_rows.cuh"

namespace {

using namespace moecheck_test_plugin;
using moecheck_plugin_util::g_error;

constexpr std::int32_t kOverrun = 4;
constexpr int kThreads = 128;

__global__ void overrun_ids(std::int32_t* ids, std::int64_t n) {
  if (threadIdx.x < kOverrun) ids[n + threadIdx.x] = static_cast<std::int32_t>(threadIdx.x);
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
  if (dtype == MOECHECK_DTYPE_BF16 && family == MOECHECK_FAMILY_SOFTMAX_TOPK_RAW && T >= 3) {
    overrun_ids<<<1, 32, 0, st>>>(ids, T * k);
    if (const int s = launch_status("overrun_ids launch")) return s;
  }
  return MOECHECK_PLUGIN_OK;
}

constexpr moecheck_plugin_desc_v1 kDesc = strict_desc_v1("oob-cuda", &route);

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
