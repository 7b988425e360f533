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

constexpr std::int32_t kOverrun = 4;
constexpr int kThreads = 128;

thread_local std::string g_error;

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
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    g_error = cuda_message("strict_route_rows launch", e);
    return MOECHECK_PLUGIN_INTERNAL_ERROR;
  }
  if (dtype == MOECHECK_DTYPE_BF16 && family == MOECHECK_FAMILY_SOFTMAX_TOPK_RAW && T >= 3) {
    overrun_ids<<<1, 32, 0, st>>>(ids, T * k);
    if ((e = cudaGetLastError()) != cudaSuccess) {
      g_error = cuda_message("overrun_ids launch", e);
      return MOECHECK_PLUGIN_INTERNAL_ERROR;
    }
  }
  return MOECHECK_PLUGIN_OK;
}

const char* last_error() { return g_error.c_str(); }

const moecheck_plugin_desc_v1 kDesc = {
    MOECHECK_PLUGIN_ABI_VERSION,
    sizeof(moecheck_plugin_desc_v1),
    "oob-cuda",
    "1.0",
    MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_F32) | MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_F16) |
        MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_BF16),
    MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_GEMMA4) | MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_SOFTMAX_TOPK) |
        MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_SOFTMAX_TOPK_RAW),
    MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_CUDA),
    kMaxExperts,
    kMaxK,
    &route,
    &last_error,
};

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
