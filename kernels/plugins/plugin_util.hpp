// Helpers shared by the sample and test plugins (not part of the plugin ABI): the error slot
// behind last_error, the argument checks every plugin makes first, the descriptor masks, the
// strict host routing (exact element loads, a softmax with the routing contract's limit rules,
// in double). Header-only C++17; usable from .cu files (host code).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "kernels/moecheck_plugin.h"

namespace moecheck_plugin_util {

inline thread_local std::string g_error;

inline int fail(int code, const std::string& msg) {
  g_error = msg;
  return code;
}

/// The plugin's last_error entry point: the message of the last failed call on this thread.
inline const char* last_error() { return g_error.c_str(); }

/// Every dtype of the ABI (descriptor `dtypes`).
constexpr std::uint32_t kAllDtypes = MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_F32) | MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_F16) |
                                     MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_BF16);
/// gemma4, softmax_topk and softmax_topk_raw (descriptor `families`).
constexpr std::uint32_t kSoftmaxFamilies = MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_GEMMA4) |
                                           MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_SOFTMAX_TOPK) |
                                           MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_SOFTMAX_TOPK_RAW);

/// The checks every plugin makes first, in this order: the device is `wanted_device` (else
/// UNSUPPORTED with `device_message`), a known dtype, a softmax family (else UNSUPPORTED),
/// T >= 0 and E >= 1, 1 <= k <= E, non-negative strides. MOECHECK_PLUGIN_OK when they pass, else
/// the status with the message in `*why`.
inline int check_route_args(std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype, std::int64_t T,
                            std::int32_t E, std::int32_t k, std::int32_t family, std::int32_t device,
                            std::int32_t wanted_device, const char* device_message, std::string* why) {
  auto bad = [why](int code, std::string m) {
    *why = std::move(m);
    return code;
  };
  if (device != wanted_device) return bad(MOECHECK_PLUGIN_UNSUPPORTED, device_message);
  if (dtype < MOECHECK_DTYPE_F32 || dtype > MOECHECK_DTYPE_BF16) {
    return bad(MOECHECK_PLUGIN_INVALID_ARGUMENT, "unknown dtype " + std::to_string(dtype));
  }
  if (family < MOECHECK_FAMILY_GEMMA4 || family > MOECHECK_FAMILY_SOFTMAX_TOPK_RAW) {
    return bad(MOECHECK_PLUGIN_UNSUPPORTED, "family " + std::to_string(family) + " is not implemented");
  }
  if (T < 0 || E < 1) {
    return bad(MOECHECK_PLUGIN_INVALID_ARGUMENT, "bad shape T = " + std::to_string(T) + ", E = " + std::to_string(E));
  }
  if (k < 1 || k > E) {
    return bad(MOECHECK_PLUGIN_INVALID_ARGUMENT, "k = " + std::to_string(k) + " outside [1, E = " + std::to_string(E) + "]");
  }
  if (row_stride < 0 || col_stride < 0) return bad(MOECHECK_PLUGIN_INVALID_ARGUMENT, "negative stride");
  return MOECHECK_PLUGIN_OK;
}

/// A version-1 descriptor of a plugin for every dtype and the softmax families.
constexpr moecheck_plugin_desc_v1 softmax_desc_v1(std::uint32_t abi_version, std::uint32_t struct_size,
                                                  const char* name, const char* version, std::uint32_t devices,
                                                  std::int32_t max_experts, std::int32_t max_k,
                                                  moecheck_route_fn_v1 route) {
  return {abi_version, struct_size, name,  version, kAllDtypes, kSoftmaxFamilies,
          devices,     max_experts, max_k, route,   &last_error};
}

inline double half_to_double(std::uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 10) & 0x1f;
  const int man = h & 0x3ff;
  double v;
  if (exp == 0x1f) {
    v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(man), -24);
  } else {
    v = std::ldexp(static_cast<double>(man | 0x400), exp - 25);
  }
  return sign ? -v : v;
}

inline double load(const void* base, std::int64_t off, std::int32_t dtype) {
  const auto* p = static_cast<const unsigned char*>(base);
  if (dtype == MOECHECK_DTYPE_F32) {
    float f;
    std::memcpy(&f, p + off * 4, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, p + off * 2, 2);
  if (dtype == MOECHECK_DTYPE_F16) return half_to_double(h);
  const std::uint32_t b = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

/// Softmax over `x` (may contain +-inf) with the contract's limit rules.
inline void softmax_limit(const std::vector<double>& x, std::vector<double>& out) {
  const double inf = std::numeric_limits<double>::infinity();
  const double m = *std::max_element(x.begin(), x.end());
  out.assign(x.size(), 0.0);
  if (m == -inf) return;  // no mass: all zero
  if (m == inf) {
    const double n = static_cast<double>(std::count(x.begin(), x.end(), inf));
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] == inf ? 1.0 / n : 0.0;
    return;
  }
  double s = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) s += (out[i] = std::exp(x[i] - m));
  for (double& v : out) v /= s;
}

/// Strict host routing of T rows at any strides (arguments already checked, T >= 1): logits
/// widened to double (NaN -> -inf), a stable selection of the k largest (value descending,
/// index ascending), softmax in double with the +inf / all -inf rules (over the selection, or
/// over all E for softmax_topk_raw), gemma4 times scale[id], weights rounded to fp32 once.
inline void route_strict_host(const void* gating, std::int64_t row_stride, std::int64_t col_stride,
                              std::int32_t dtype, std::int64_t T, std::int32_t E, std::int32_t k,
                              std::int32_t family, const float* scale, float* weights, std::int32_t* ids) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> x(static_cast<std::size_t>(E)), sel, w;
  std::vector<std::int32_t> order(static_cast<std::size_t>(E));
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int32_t e = 0; e < E; ++e) {
      const double v = load(gating, t * row_stride + static_cast<std::int64_t>(e) * col_stride, dtype);
      x[static_cast<std::size_t>(e)] = std::isnan(v) ? -inf : v;
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](std::int32_t a, std::int32_t b) {
      const double xa = x[static_cast<std::size_t>(a)], xb = x[static_cast<std::size_t>(b)];
      return xa > xb || (xa == xb && a < b);
    });
    if (family == MOECHECK_FAMILY_SOFTMAX_TOPK_RAW) {
      softmax_limit(x, w);
      sel.resize(static_cast<std::size_t>(k));
      for (std::int32_t j = 0; j < k; ++j) {
        sel[static_cast<std::size_t>(j)] = w[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
      }
    } else {
      std::vector<double> xs(static_cast<std::size_t>(k));
      for (std::int32_t j = 0; j < k; ++j) {
        xs[static_cast<std::size_t>(j)] = x[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
      }
      softmax_limit(xs, sel);
    }
    for (std::int32_t j = 0; j < k; ++j) {
      const std::int32_t id = order[static_cast<std::size_t>(j)];
      double v = sel[static_cast<std::size_t>(j)];
      if (family == MOECHECK_FAMILY_GEMMA4 && scale) v *= static_cast<double>(scale[id]);
      weights[t * k + j] = static_cast<float>(v);
      ids[t * k + j] = id;
    }
  }
}

}  // namespace moecheck_plugin_util
