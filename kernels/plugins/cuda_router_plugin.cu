// CUDA moecheck plugin (ABI version 2) with the semantics of a widely deployed fused
// softmax-top-k router, declared as the contract "dense-probability-nan-zeroes-row"
// (reference/CONTRACTS.md), so that moecheck judges it by what it promises:
//   * a NaN or +inf anywhere in a row zeroes the row: ids 0..k-1, weights 0;
//   * the selection ranks the fp32 softmax probabilities over all E experts,
//     p_e = expf(x_e - max) / sum (one fp32 sum per row, in index order), ties (equal or
//     underflowed probabilities) to the lowest index; an all -inf row has every p_e = 0;
//   * weights are the selected probabilities renormalised in fp32 (softmax_topk_raw: the
//     probabilities themselves), gemma4 times per_expert_scale[id];
//   * dense input only (row stride E, column stride 1) with a 16-byte aligned base pointer, as
//     the descriptor declares: anything else is UNSUPPORTED, and moecheck never passes it.
// Device pointers only (device == MOECHECK_DEVICE_CUDA); host calls are UNSUPPORTED.
//
// One thread per row (correctness over speed): three passes over the row (max and the
// NaN / +inf scan, the sum, the selection by insertion into a sorted list of k entries),
// then the k weights. Every probability is the same expression of (x_e, max, sum), so equal
// logits give equal probabilities, which the tie rule relies on. No fast math: expf is the
// accurate one (at most 2 ulp), subnormals are kept.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string>

#include "kernels/moecheck_plugin.h"
#include "kernels/plugins/plugin_util.hpp"

namespace {

using namespace moecheck_plugin_util;

constexpr int kMaxK = 32;
constexpr int kMaxExperts = 4096;
constexpr unsigned kAlignment = 16;
constexpr int kThreads = 128;

/// Exact widening of element `off` of a gating buffer of `dtype` to fp32.
__device__ __forceinline__ float load_logit(const void* base, std::int64_t off, std::int32_t dtype) {
  if (dtype == MOECHECK_DTYPE_F32) return static_cast<const float*>(base)[off];
  const unsigned short bits = static_cast<const unsigned short*>(base)[off];
  if (dtype == MOECHECK_DTYPE_F16) return __half2float(__ushort_as_half(bits));
  return __uint_as_float(static_cast<unsigned>(bits) << 16);  // bf16: the top half of an fp32
}

__global__ void route_rows(const void* __restrict__ gating, std::int32_t dtype, std::int64_t T,
                           std::int32_t E, std::int32_t k, std::int32_t family,
                           const float* __restrict__ scale, float* __restrict__ weights,
                           std::int32_t* __restrict__ ids) {
  const float inf = __int_as_float(0x7f800000);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < T; t += stride) {
    const std::int64_t row = t * E;
    float* w = weights + t * k;
    std::int32_t* id = ids + t * k;

    // Pass 1: maximum, and whether the row is zeroed (a NaN or +inf anywhere).
    float m = -inf;
    bool zeroed = false;
    for (std::int32_t e = 0; e < E; ++e) {
      const float x = load_logit(gating, row + e, dtype);
      zeroed = zeroed || x != x || x == inf;
      m = fmaxf(m, x);
    }
    // A zeroed row, and an all -inf row (every probability 0, so the selection is the lowest
    // indices and the renormalisation guard gives 0): ids 0..k-1, weights 0.
    if (zeroed || m == -inf) {
      for (std::int32_t j = 0; j < k; ++j) {
        id[j] = j;
        w[j] = 0.0f;
      }
      continue;
    }

    // Pass 2: the full softmax denominator in fp32, in index order (>= 1: the max term is 1).
    float sum = 0.0f;
    for (std::int32_t e = 0; e < E; ++e) sum += expf(load_logit(gating, row + e, dtype) - m);

    // Pass 3: the k largest probabilities, kept sorted descending; scanning e upwards and
    // inserting only above strictly smaller entries keeps equal probabilities in index order,
    // so ties (underflowed zeros included) go to the lowest index.
    float top_p[kMaxK];
    std::int32_t top_id[kMaxK];
    std::int32_t n = 0;
    for (std::int32_t e = 0; e < E; ++e) {
      const float p = expf(load_logit(gating, row + e, dtype) - m) / sum;
      if (n == k && !(p > top_p[k - 1])) continue;
      std::int32_t pos = n < k ? n : k - 1;  // the slot the new entry enters from
      while (pos > 0 && top_p[pos - 1] < p) {
        top_p[pos] = top_p[pos - 1];
        top_id[pos] = top_id[pos - 1];
        --pos;
      }
      top_p[pos] = p;
      top_id[pos] = e;
      if (n < k) ++n;
    }

    // Weights: renormalised over the selection (softmax_topk_raw: as they are), gemma4 scaled.
    float sel = 0.0f;
    for (std::int32_t j = 0; j < k; ++j) sel += top_p[j];
    for (std::int32_t j = 0; j < k; ++j) {
      float v = top_p[j];
      if (family != MOECHECK_FAMILY_SOFTMAX_TOPK_RAW) v = sel > 0.0f ? v / sel : 0.0f;
      if (family == MOECHECK_FAMILY_GEMMA4 && scale != nullptr) v *= scale[top_id[j]];
      id[j] = top_id[j];
      w[j] = v;
    }
  }
}

int route(const void* gating, std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype,
          std::int64_t T, std::int32_t E, std::int32_t k, std::int32_t family, const float* scale,
          float* weights, std::int32_t* ids, std::int32_t device, void* stream) {
  g_error.clear();
  if (const int s = check_route_args(row_stride, col_stride, dtype, T, E, k, family, device, MOECHECK_DEVICE_CUDA,
                                     "this plugin runs on CUDA devices only", &g_error)) {
    return s;
  }
  if (E > kMaxExperts) return fail(MOECHECK_PLUGIN_UNSUPPORTED, "E = " + std::to_string(E) + " > " + std::to_string(kMaxExperts));
  if (k > kMaxK) return fail(MOECHECK_PLUGIN_UNSUPPORTED, "k = " + std::to_string(k) + " > " + std::to_string(kMaxK));
  if (T == 0) return MOECHECK_PLUGIN_OK;
  // Dense rows only, exactly the layout moecheck calls contiguous.
  if ((E > 1 && col_stride != 1) || (T > 1 && row_stride != E)) {
    return fail(MOECHECK_PLUGIN_UNSUPPORTED, "dense input only (row_stride = E, col_stride = 1), got row_stride " +
                                                 std::to_string(row_stride) + ", col_stride " + std::to_string(col_stride));
  }
  if (!gating || !weights || !ids) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "null pointer");
  if (reinterpret_cast<std::uintptr_t>(gating) % kAlignment != 0) {
    return fail(MOECHECK_PLUGIN_UNSUPPORTED, "gating base pointer is not " + std::to_string(kAlignment) + "-byte aligned");
  }

  // Enough blocks to cover T (the kernel strides over rows), capped well inside the grid limit.
  const std::int64_t want = (T + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(want < 65535 ? want : 65535);
  cudaGetLastError();  // clear an error left by someone else, so the check below is ours
  route_rows<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(gating, dtype, T, E, k, family, scale,
                                                                         weights, ids);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    return fail(MOECHECK_PLUGIN_INTERNAL_ERROR,
                std::string("route_rows launch: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
  return MOECHECK_PLUGIN_OK;
}

const moecheck_plugin_desc_v2 kDesc = {
    {
        MOECHECK_PLUGIN_ABI_VERSION_2,
        sizeof(moecheck_plugin_desc_v2),
        "cuda-router",
        "1.0",
        kAllDtypes,
        kSoftmaxFamilies,
        MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_CUDA),
        kMaxExperts,
        kMaxK,
        &route,
        &last_error,
    },
    "dense-probability-nan-zeroes-row",
    MOECHECK_PLUGIN_BIT(MOECHECK_LAYOUT_CONTIGUOUS),
    kAlignment,
    0,
};

/// The version-1 view for older loaders: the same routine and limits with abi_version 1 (such a
/// loader judges it by the strict contract, which its deliberate semantics do not follow).
constexpr moecheck_plugin_desc_v1 kDescV1 =
    softmax_desc_v1(MOECHECK_PLUGIN_ABI_VERSION, sizeof(moecheck_plugin_desc_v1), "cuda-router", "1.0",
                    MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_CUDA), kMaxExperts, kMaxK, &route);

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v2* moecheck_plugin_v2(void) { return &kDesc; }
extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDescV1; }
