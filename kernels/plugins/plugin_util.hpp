// Helpers shared by the two sample plugins (not part of the plugin ABI): exact element loads
// and a softmax with the routing contract's limit rules, in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/moecheck_plugin.h"

namespace moecheck_plugin_util {

inline thread_local std::string g_error;

inline int fail(int code, const std::string& msg) {
  g_error = msg;
  return code;
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

}  // namespace moecheck_plugin_util
