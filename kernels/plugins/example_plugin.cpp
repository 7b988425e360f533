// Example moecheck plugin: a straightforward, correct host implementation of the softmax
// routing families behind the C ABI of kernels/moecheck_plugin.h. It depends on nothing but
// the C++ standard library, as an external implementation would.
//
// Per row: logits widened to double (NaN -> -inf), a stable selection of the k largest
// (value descending, index ascending), softmax in double with the +inf / all -inf rules,
// weights rounded to fp32 once at the end.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/moecheck_plugin.h"
#include "kernels/plugins/plugin_util.hpp"

namespace {

using namespace moecheck_plugin_util;

int route(const void* gating, std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype,
          std::int64_t T, std::int32_t E, std::int32_t k, std::int32_t family, const float* scale,
          float* weights, std::int32_t* ids, std::int32_t device, void* /*stream*/) {
  g_error.clear();
  if (device != MOECHECK_DEVICE_HOST) return fail(MOECHECK_PLUGIN_UNSUPPORTED, "example plugin runs on the host only");
  if (dtype < MOECHECK_DTYPE_F32 || dtype > MOECHECK_DTYPE_BF16) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "unknown dtype " + std::to_string(dtype));
  if (family < MOECHECK_FAMILY_GEMMA4 || family > MOECHECK_FAMILY_SOFTMAX_TOPK_RAW) return fail(MOECHECK_PLUGIN_UNSUPPORTED, "family " + std::to_string(family) + " is not implemented");
  if (T < 0 || E < 1) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "bad shape T = " + std::to_string(T) + ", E = " + std::to_string(E));
  if (k < 1 || k > E) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "k = " + std::to_string(k) + " outside [1, E = " + std::to_string(E) + "]");
  if (row_stride < 0 || col_stride < 0) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "negative stride");
  if (T == 0) return MOECHECK_PLUGIN_OK;
  if (!gating || !weights || !ids) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "null pointer");

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
      for (std::int32_t j = 0; j < k; ++j) sel[static_cast<std::size_t>(j)] = w[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
    } else {
      std::vector<double> xs(static_cast<std::size_t>(k));
      for (std::int32_t j = 0; j < k; ++j) xs[static_cast<std::size_t>(j)] = x[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
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
  return MOECHECK_PLUGIN_OK;
}

const char* last_error() { return g_error.c_str(); }

const moecheck_plugin_desc_v1 kDesc = {
    MOECHECK_PLUGIN_ABI_VERSION,
    sizeof(moecheck_plugin_desc_v1),
    "example",
    "1.0",
    MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_F32) | MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_F16) |
        MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_BF16),
    MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_GEMMA4) | MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_SOFTMAX_TOPK) |
        MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_SOFTMAX_TOPK_RAW),
    MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_HOST),
    0,
    0,
    &route,
    &last_error,
};

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
