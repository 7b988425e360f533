// Broken moecheck plugin: the example plugin with two planted defects, as a target the fuzzer
// must find and shrink (it is never a reference for anything):
//   1. gemma4: the per-expert scale is applied to experts 0..7 only (an "8 experts per
//      shard" assumption); weights of experts >= 8 stay unscaled. Needs E > 8, a non-unit
//      scale on a selected expert >= 8 -> minimal case T = 1, E = 9, k = 1.
//   2. T > 1000 is refused with MOECHECK_PLUGIN_INTERNAL_ERROR ("workspace exhausted")
//      although the problem is valid.
//   3. a +inf logit sends the "overflow" path through an unset table pointer: the process
//      dies with SIGSEGV (the harness must contain the crash and report it as a failure).
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
  if (const int s = check_route_args(row_stride, col_stride, dtype, T, E, k, family, device, MOECHECK_DEVICE_HOST,
                                     "example plugin runs on the host only", &g_error)) {
    return s;
  }
  if (T == 0) return MOECHECK_PLUGIN_OK;
  if (T > 1000) return fail(MOECHECK_PLUGIN_INTERNAL_ERROR, "workspace exhausted: T = " + std::to_string(T) + " rows");
  if (!gating || !weights || !ids) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "null pointer");

  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> x(static_cast<std::size_t>(E)), sel, w;
  std::vector<std::int32_t> order(static_cast<std::size_t>(E));
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int32_t e = 0; e < E; ++e) {
      const double v = load(gating, t * row_stride + static_cast<std::int64_t>(e) * col_stride, dtype);
      x[static_cast<std::size_t>(e)] = std::isnan(v) ? -inf : v;
      if (v == inf) {
        volatile std::int32_t* overflow_table = nullptr;
        overflow_table[e] = 1;
      }
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
      if (family == MOECHECK_FAMILY_GEMMA4 && scale && id < 8) v *= static_cast<double>(scale[id]);
      weights[t * k + j] = static_cast<float>(v);
      ids[t * k + j] = id;
    }
  }
  return MOECHECK_PLUGIN_OK;
}

constexpr moecheck_plugin_desc_v1 kDesc = softmax_desc_v1(MOECHECK_PLUGIN_ABI_VERSION, sizeof(moecheck_plugin_desc_v1),
                                                          "broken", "0.1", MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_HOST),
                                                          0, 0, &route);

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
