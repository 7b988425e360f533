// Example moecheck plugin of ABI version 2: a host implementation with the semantics of a widely
// deployed fused softmax-top-k router, declared through its contract
// ("dense-probability-nan-zeroes-row", reference/CONTRACTS.md) instead of being reported as
// failures of the strict contract:
//   * a NaN or +inf anywhere in a row zeroes the row: ids 0..k-1, weights 0;
//   * the selection ranks the fp32 softmax probabilities over all E experts (exp(x - max) / sum,
//     computed in fp32), ties - equal or underflowed probabilities - to the lowest index;
//   * weights are the selected probabilities renormalised in fp32 (softmax_topk_raw: the
//     probabilities themselves), gemma4 times per_expert_scale[id];
//   * input must be dense (row stride E, column stride 1): other layouts are UNSUPPORTED,
//     which the declared layouts tell moecheck, so it never passes them.
//
// MOECHECK_EXAMPLE_V2_VARIANT selects the descriptor (the test suite builds every variant):
//   0  contract by built-in name, layouts and alignment in the descriptor fields (the example);
//   1  the same contract as inline contract text;
//   2  inline contract text with an unknown key (the loader must refuse the plugin);
//   3  a struct_size smaller than moecheck_plugin_desc_v2 (the loader must refuse the plugin).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/moecheck_plugin.h"
#include "kernels/plugins/plugin_util.hpp"

#ifndef MOECHECK_EXAMPLE_V2_VARIANT
#define MOECHECK_EXAMPLE_V2_VARIANT 0
#endif

namespace {

using namespace moecheck_plugin_util;

int route(const void* gating, std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype,
          std::int64_t T, std::int32_t E, std::int32_t k, std::int32_t family, const float* scale,
          float* weights, std::int32_t* ids, std::int32_t device, void* /*stream*/) {
  g_error.clear();
  if (const int s = check_route_args(row_stride, col_stride, dtype, T, E, k, family, device, MOECHECK_DEVICE_HOST,
                                     "this plugin runs on the host only", &g_error)) {
    return s;
  }
  if (T == 0) return MOECHECK_PLUGIN_OK;
  if ((E > 1 && col_stride != 1) || (T > 1 && row_stride != E)) {
    return fail(MOECHECK_PLUGIN_UNSUPPORTED, "dense input only (row_stride = E, col_stride = 1)");
  }
  if (!gating || !weights || !ids) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "null pointer");

  const float inf = std::numeric_limits<float>::infinity();
  const auto n = static_cast<std::size_t>(E);
  std::vector<float> x(n), p(n);
  std::vector<std::int32_t> order(n);
  for (std::int64_t t = 0; t < T; ++t) {
    bool zero_row = false;
    float m = -inf;
    for (std::size_t e = 0; e < n; ++e) {
      x[e] = static_cast<float>(load(gating, t * E + static_cast<std::int64_t>(e), dtype));
      zero_row = zero_row || std::isnan(x[e]) || x[e] == inf;
      m = std::max(m, x[e]);
    }
    float* w = weights + t * k;
    std::int32_t* id = ids + t * k;
    if (zero_row) {
      for (std::int32_t j = 0; j < k; ++j) {
        id[j] = j;
        w[j] = 0.0f;
      }
      continue;
    }
    // fp32 probabilities over all E (an all -inf row: all 0)
    float sum = 0.0f;
    for (std::size_t e = 0; e < n; ++e) {
      p[e] = m == -inf ? 0.0f : std::exp(x[e] - m);
      sum += p[e];
    }
    for (std::size_t e = 0; e < n; ++e) p[e] = sum > 0.0f ? p[e] / sum : 0.0f;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](std::int32_t a, std::int32_t b) {
      const float pa = p[static_cast<std::size_t>(a)], pb = p[static_cast<std::size_t>(b)];
      return pa > pb || (pa == pb && a < b);
    });
    float sel = 0.0f;
    for (std::int32_t j = 0; j < k; ++j) sel += p[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
    for (std::int32_t j = 0; j < k; ++j) {
      const std::int32_t e = order[static_cast<std::size_t>(j)];
      float v = p[static_cast<std::size_t>(e)];
      if (family != MOECHECK_FAMILY_SOFTMAX_TOPK_RAW) v = sel > 0.0f ? v / sel : 0.0f;
      if (family == MOECHECK_FAMILY_GEMMA4 && scale) v *= scale[e];
      w[j] = v;
      id[j] = e;
    }
  }
  return MOECHECK_PLUGIN_OK;
}

#if MOECHECK_EXAMPLE_V2_VARIANT == 0
constexpr const char* kContract = "dense-probability-nan-zeroes-row";
constexpr std::uint32_t kLayouts = MOECHECK_PLUGIN_BIT(MOECHECK_LAYOUT_CONTIGUOUS);
constexpr std::uint32_t kAlignment = 16;
#elif MOECHECK_EXAMPLE_V2_VARIANT == 1 || MOECHECK_EXAMPLE_V2_VARIANT == 3
constexpr const char* kContract =
    "# the deployed router's semantics, written out\n"
    "name = \"example-v2-inline\"\n"
    "base = \"strict\"\n"
    "nan = \"zeroes-row\"\n"
    "pos_inf = \"zeroes-row\"\n"
    "selection = \"fp32-probabilities\"\n"
    "ties = \"lowest-index\"\n"
    "layouts = [\"contiguous\"]\n";
constexpr std::uint32_t kLayouts = 0;
constexpr std::uint32_t kAlignment = 0;
#else
constexpr const char* kContract = "name = \"broken\"\nnan = \"zeroes-row\"\nzero_rows = \"yes\"\n";
constexpr std::uint32_t kLayouts = 0;
constexpr std::uint32_t kAlignment = 0;
#endif

const moecheck_plugin_desc_v2 kDesc = {
    {
        MOECHECK_PLUGIN_ABI_VERSION_2,
#if MOECHECK_EXAMPLE_V2_VARIANT == 3
        sizeof(moecheck_plugin_desc_v1),
#else
        sizeof(moecheck_plugin_desc_v2),
#endif
        "example-v2",
        "1.0",
        kAllDtypes,
        kSoftmaxFamilies,
        MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_HOST),
        0,
        0,
        &route,
        &last_error,
    },
    kContract,
    kLayouts,
    kAlignment,
    0,
};

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v2* moecheck_plugin_v2(void) { return &kDesc; }
