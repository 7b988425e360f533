// Device routing with the strict contract (reference/EDGE_CASES.md), shared by the test-only
// CUDA plugins of this folder: one thread per row, every logit widened exactly, selection on the
// exact logits (NaN ranks as -inf, ties to the lowest index, which the strict contract accepts
// like any tie order), weights computed in fp64 with the contract's limit rules (+inf logits
// share the mass, an all-masked selection or row weighs 0) and rounded to fp32 once.
// Any strides (every layout). Include from one .cu file per plugin.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>
#include <string>

#include "kernels/moecheck_plugin.h"
#include "kernels/plugins/plugin_util.hpp"

namespace moecheck_test_plugin {

constexpr int kMaxK = 32;
constexpr int kMaxExperts = 4096;

/// Exact widening of element `off` of a gating buffer of `dtype`, NaN mapped to -inf (its key).
__device__ __forceinline__ double strict_key(const void* base, std::int64_t off, std::int32_t dtype) {
  float x;
  if (dtype == MOECHECK_DTYPE_F32) {
    x = static_cast<const float*>(base)[off];
  } else {
    const unsigned short bits = static_cast<const unsigned short*>(base)[off];
    x = dtype == MOECHECK_DTYPE_F16 ? __half2float(__ushort_as_half(bits))
                                    : __uint_as_float(static_cast<unsigned>(bits) << 16);
  }
  return x != x ? -CUDART_INF : static_cast<double>(x);
}

/// Routes row t (strict contract) and writes its k weights and ids.
__device__ inline void strict_route_row(const void* gating, std::int64_t row_stride, std::int64_t col_stride,
                                        std::int32_t dtype, std::int64_t t, std::int32_t E, std::int32_t k,
                                        std::int32_t family, const float* scale, float* weights,
                                        std::int32_t* ids) {
  const double inf = CUDART_INF;
  const std::int64_t row = t * row_stride;
  // The k largest keys, sorted descending; equal keys stay in index order.
  double top[kMaxK];
  std::int32_t top_id[kMaxK];
  std::int32_t n = 0;
  double row_max = -inf;
  std::int32_t row_pinf = 0;
  for (std::int32_t e = 0; e < E; ++e) {
    const double x = strict_key(gating, row + e * col_stride, dtype);
    row_max = fmax(row_max, x);
    row_pinf += x == inf;
    if (n == k && !(x > top[k - 1])) continue;
    std::int32_t pos = n < k ? n : k - 1;
    while (pos > 0 && top[pos - 1] < x) {
      top[pos] = top[pos - 1];
      top_id[pos] = top_id[pos - 1];
      --pos;
    }
    top[pos] = x;
    top_id[pos] = e;
    if (n < k) ++n;
  }

  double w[kMaxK];
  if (family == MOECHECK_FAMILY_SOFTMAX_TOPK_RAW) {
    // Full softmax over all E; +inf logits (counted over all E) share the mass.
    if (row_max == inf) {
      for (std::int32_t j = 0; j < k; ++j) w[j] = top[j] == inf ? 1.0 / row_pinf : 0.0;
    } else if (row_max == -inf) {
      for (std::int32_t j = 0; j < k; ++j) w[j] = 0.0;
    } else {
      double sum = 0.0;
      for (std::int32_t e = 0; e < E; ++e) sum += exp(strict_key(gating, row + e * col_stride, dtype) - row_max);
      for (std::int32_t j = 0; j < k; ++j) w[j] = exp(top[j] - row_max) / sum;
    }
  } else {
    // Softmax over the selection (the largest selected key is top[0]).
    const double m = top[0];
    if (m == inf) {
      std::int32_t sel_pinf = 0;
      for (std::int32_t j = 0; j < k; ++j) sel_pinf += top[j] == inf;
      for (std::int32_t j = 0; j < k; ++j) w[j] = top[j] == inf ? 1.0 / sel_pinf : 0.0;
    } else if (m == -inf) {
      for (std::int32_t j = 0; j < k; ++j) w[j] = 0.0;
    } else {
      double sum = 0.0;
      for (std::int32_t j = 0; j < k; ++j) sum += (w[j] = exp(top[j] - m));
      for (std::int32_t j = 0; j < k; ++j) w[j] /= sum;
    }
  }
  for (std::int32_t j = 0; j < k; ++j) {
    double v = w[j];
    if (family == MOECHECK_FAMILY_GEMMA4 && scale != nullptr) v *= static_cast<double>(scale[top_id[j]]);
    weights[t * k + j] = static_cast<float>(v);
    ids[t * k + j] = top_id[j];
  }
}

/// Routes the rows t with t % row_step == row_first (grid-stride over them).
__global__ void strict_route_rows(const void* gating, std::int64_t row_stride, std::int64_t col_stride,
                                  std::int32_t dtype, std::int64_t T, std::int32_t E, std::int32_t k,
                                  std::int32_t family, const float* scale, float* weights, std::int32_t* ids,
                                  std::int64_t row_first, std::int64_t row_step) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;; i += stride) {
    const std::int64_t t = row_first + i * row_step;
    if (t >= T) break;
    strict_route_row(gating, row_stride, col_stride, dtype, t, E, k, family, scale, weights, ids);
  }
}

/// Validation shared by the test plugins (host side): 0 when the call is one they handle, else
/// a moecheck_status with `*why` set.
inline int validate(const void* gating, std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype,
                    std::int64_t T, std::int32_t E, std::int32_t k, std::int32_t family, const float* weights,
                    const std::int32_t* ids, std::int32_t device, std::string* why) {
  auto bad = [&](int code, std::string m) {
    *why = std::move(m);
    return code;
  };
  if (const int s = moecheck_plugin_util::check_route_args(row_stride, col_stride, dtype, T, E, k, family, device,
                                                           MOECHECK_DEVICE_CUDA, "this plugin runs on CUDA devices only",
                                                           why)) {
    return s;
  }
  if (E > kMaxExperts || k > kMaxK) {
    return bad(MOECHECK_PLUGIN_UNSUPPORTED, "E = " + std::to_string(E) + ", k = " + std::to_string(k) +
                                                " exceeds the limits (" + std::to_string(kMaxExperts) + ", " +
                                                std::to_string(kMaxK) + ")");
  }
  if (T > 0 && (!gating || !weights || !ids)) return bad(MOECHECK_PLUGIN_INVALID_ARGUMENT, "null pointer");
  return MOECHECK_PLUGIN_OK;
}

/// Blocks of `threads` covering `rows` rows, at least 1, capped (the kernels stride).
inline unsigned blocks_for(std::int64_t rows, int threads) {
  const std::int64_t want = (rows + threads - 1) / threads;
  return static_cast<unsigned>(want < 1 ? 1 : want < 65535 ? want : 65535);
}

/// "what: <name> (<description>)" for a failed CUDA call.
inline std::string cuda_message(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

/// The status of the launch just made (cudaGetLastError): MOECHECK_PLUGIN_OK, or
/// MOECHECK_PLUGIN_INTERNAL_ERROR with "what: <name> (<description>)" as the plugin's last error.
inline int launch_status(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return MOECHECK_PLUGIN_OK;
  moecheck_plugin_util::g_error = cuda_message(what, e);
  return MOECHECK_PLUGIN_INTERNAL_ERROR;
}

/// The version-1 descriptor of a test plugin: every dtype, the softmax families, CUDA devices,
/// this file's limits, last_error from the shared error slot.
constexpr moecheck_plugin_desc_v1 strict_desc_v1(const char* name, moecheck_route_fn_v1 route) {
  return moecheck_plugin_util::softmax_desc_v1(MOECHECK_PLUGIN_ABI_VERSION, sizeof(moecheck_plugin_desc_v1), name,
                                               "1.0", MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_CUDA), kMaxExperts, kMaxK,
                                               route);
}

}  // namespace moecheck_test_plugin
