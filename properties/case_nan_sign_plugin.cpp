// Test plugin for the corpus format: a host router that ranks NaNs by their bits, as some real
// kernels do (a NaN compared as a signed integer, or with its sign and quiet bit significant).
// A NaN whose sign bit is set, or an fp32 NaN whose quiet bit is clear (signalling), ranks
// above every value (as +inf); every other NaN ranks as -inf (the strict contract). Otherwise
// it is the strict host router, so exactly the cases whose NaNs carry a sign or a signalling
// bit make it fail: replaying them needs the NaN bits recorded exactly (format version 2).
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/moecheck_plugin.h"
#include "kernels/plugins/plugin_util.hpp"

namespace {

using namespace moecheck_plugin_util;

/// True for the NaNs this router ranks highest.
bool ranks_high(const void* gating, std::int64_t off, std::int32_t dtype) {
  if (dtype == MOECHECK_DTYPE_F32) {
    std::uint32_t u;
    std::memcpy(&u, static_cast<const char*>(gating) + off * 4, 4);
    const bool nan = (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0;
    return nan && ((u & 0x80000000u) != 0 || (u & 0x00400000u) == 0);
  }
  std::uint16_t h;
  std::memcpy(&h, static_cast<const char*>(gating) + off * 2, 2);
  const std::uint16_t exp = dtype == MOECHECK_DTYPE_F16 ? 0x7c00u : 0x7f80u;
  const std::uint16_t man = dtype == MOECHECK_DTYPE_F16 ? 0x03ffu : 0x007fu;
  return (h & exp) == exp && (h & man) != 0 && (h & 0x8000u) != 0;
}

int route(const void* gating, std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype, std::int64_t T,
          std::int32_t E, std::int32_t k, std::int32_t family, const float* scale, float* weights, std::int32_t* ids,
          std::int32_t device, void* /*stream*/) {
  g_error.clear();
  if (const int s = check_route_args(row_stride, col_stride, dtype, T, E, k, family, device, MOECHECK_DEVICE_HOST,
                                     "nan_sign plugin runs on the host only", &g_error)) {
    return s;
  }
  if (T == 0) return MOECHECK_PLUGIN_OK;
  if (!gating || !weights || !ids) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "null pointer");
  // The logits as fp32, contiguous, with the high-ranking NaNs turned into +inf.
  std::vector<float> x(static_cast<std::size_t>(T) * static_cast<std::size_t>(E));
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t e = 0; e < E; ++e) {
      const std::int64_t off = t * row_stride + e * col_stride;
      x[static_cast<std::size_t>(t * E + e)] = ranks_high(gating, off, dtype) ? std::numeric_limits<float>::infinity()
                                                                               : static_cast<float>(load(gating, off, dtype));
    }
  }
  route_strict_host(x.data(), E, 1, MOECHECK_DTYPE_F32, T, E, k, family, scale, weights, ids);
  return MOECHECK_PLUGIN_OK;
}

constexpr moecheck_plugin_desc_v1 kDesc =
    softmax_desc_v1(MOECHECK_PLUGIN_ABI_VERSION, sizeof(moecheck_plugin_desc_v1), "nan_sign", "1.0",
                    MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_HOST), 0, 0, &route);

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
