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
  if (const int s = check_route_args(row_stride, col_stride, dtype, T, E, k, family, device, MOECHECK_DEVICE_HOST,
                                     "example plugin runs on the host only", &g_error)) {
    return s;
  }
  if (T == 0) return MOECHECK_PLUGIN_OK;
  if (!gating || !weights || !ids) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "null pointer");

  route_strict_host(gating, row_stride, col_stride, dtype, T, E, k, family, scale, weights, ids);
  return MOECHECK_PLUGIN_OK;
}

constexpr moecheck_plugin_desc_v1 kDesc = softmax_desc_v1(MOECHECK_PLUGIN_ABI_VERSION, sizeof(moecheck_plugin_desc_v1),
                                                          "example", "1.0", MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_HOST),
                                                          0, 0, &route);

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
