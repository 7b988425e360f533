// The throughput benchmark's random source (properties/throughput_bench.cpp): xorshift64 bits,
// uniform doubles, uniform integers and standard normal deviates by the Ziggurat method
// (Marsaglia & Tsang, "The Ziggurat Method for Generating Random Variables", JSS 5(8), 2000),
// with 256 layers of equal area, the exact wedge rejection and the exact tail sampler: every
// deviate has the N(0, 1) distribution (up to the rounding of doubles), nothing is tabulated
// beyond the layer edges. properties/bench_rng_test.cpp checks the tables and the moments,
// quantiles and histogram of the deviates.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace moecheck::bench {

/// Edges of the 256 equal-area layers of the Ziggurat under f(x) = exp(-x^2 / 2), x >= 0.
/// Layer 0 is the rectangle [0, r] x [0, f(r)] plus the tail {x > r, y < f(x)}, drawn as the
/// rectangle [0, x[0]] x [0, f(r)] of the same area v (x[0] = v / f(r)); layer i >= 1 is the
/// rectangle [0, x[i]] x [f(x[i]), f(x[i + 1])], with x[1] = r > x[2] > ... > x[256] = 0.
/// Built once (ziggurat_tables()); r is solved for so that the top layer has the area v too.
struct ZigguratTables {
  static constexpr int kLayers = 256;
  double r = 0.0;                ///< start of the tail (3.6541528853610088 for 256 layers)
  double v = 0.0;                ///< area of every layer: r f(r) + integral of f over (r, inf)
  double x[kLayers + 1] = {};    ///< layer widths (x[0]: the base layer's virtual width)
  double f[kLayers + 1] = {};    ///< f(x[i]); f[256] = 1
  double scaled[kLayers] = {};   ///< x[i] * 2^-53 (a 53-bit integer times it is u * x[i], u in [0, 1))

  ZigguratTables() { build(); }

  /// Largest relative deviation of a layer's area from v (layer 0 included), or NaN.
  double max_area_error() const {
    double worst = std::fabs(x[0] * f[1] / v - 1.0);
    for (int i = 1; i < kLayers; ++i) worst = std::fmax(worst, std::fabs(x[i] * (f[i + 1] - f[i]) / v - 1.0));
    return std::isfinite(worst) ? worst : std::nan("");
  }

  static double density(double t) { return std::exp(-0.5 * t * t); }
  /// Integral of f over (t, inf).
  static double tail_area(double t) { return std::sqrt(std::acos(-1.0) / 2.0) * std::erfc(t / std::sqrt(2.0)); }

  /// Fills x[1..kLayers-1] from r by the equal-area recursion f(x[i+1]) = f(x[i]) + v / x[i].
  /// Returns the top layer's area minus v (> 0: r too large), or -1 when the recursion passes
  /// the top of the curve before the last layer (r too small).
  double fill(double r_try) {
    r = r_try;
    v = r * density(r) + tail_area(r);
    x[1] = r;
    for (int i = 1; i < kLayers - 1; ++i) {
      const double y = density(x[i]) + v / x[i];
      if (!(y < 1.0)) return -1.0;
      x[i + 1] = std::sqrt(-2.0 * std::log(y));
    }
    return x[kLayers - 1] * (1.0 - density(x[kLayers - 1])) - v;
  }

  void build() {
    double lo = 2.0, hi = 6.0;  // fill(lo) < 0 < fill(hi) for 256 layers
    for (int it = 0; it < 200 && lo < hi; ++it) {
      const double mid = 0.5 * (lo + hi);
      if (mid <= lo || mid >= hi) break;
      (fill(mid) < 0.0 ? lo : hi) = mid;
    }
    fill(hi);
    x[0] = v / density(r);
    x[kLayers] = 0.0;
    for (int i = 0; i <= kLayers; ++i) f[i] = density(x[i]);
    f[kLayers] = 1.0;
    for (int i = 0; i < kLayers; ++i) scaled[i] = x[i] * 0x1p-53;
  }
};

/// The tables, built on first use (the benchmark's generators take them when constructed).
inline const ZigguratTables& ziggurat_tables() {
  static const ZigguratTables t;
  return t;
}

/// xorshift64 generator for the anchor's case class (deterministic, no std distributions).
struct Rng {
  std::uint64_t s;
  const ZigguratTables* z = &ziggurat_tables();

  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  /// Uniform on [0, 1), 53 bits (converted as a signed integer: one instruction).
  double uniform() { return static_cast<double>(static_cast<std::int64_t>(next() >> 11)) * 0x1p-53; }
  /// Uniform integer in [lo, hi].
  int range(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<std::uint64_t>(hi - lo + 1)); }

  /// A standard normal deviate (Ziggurat). One 64-bit draw gives the layer (bits 0-7), the
  /// sign (bit 8) and u in [0, 1) (bits 11-63); x = u * x[i]. Below x[i + 1] the point lies
  /// under the curve in every row of its layer: accepted (~99% of draws). Otherwise layer 0
  /// draws from the tail beyond r, any other layer accepts x when a uniform height in
  /// [f(x[i]), f(x[i + 1])) lies below f(x) and else starts over with a new draw.
  double normal() {
    for (;;) {
      const std::uint64_t b = next();
      const unsigned i = static_cast<unsigned>(b & 0xffu);
      const std::uint64_t sign = (b & 0x100u) << 55;
      const double x = static_cast<double>(static_cast<std::int64_t>(b >> 11)) * z->scaled[i];
      if (x < z->x[i + 1]) return with_sign(x, sign);
      if (i == 0) return with_sign(tail(), sign);
      const double y = z->f[i] + uniform() * (z->f[i + 1] - z->f[i]);
      if (y < ZigguratTables::density(x)) return with_sign(x, sign);
    }
  }

  /// x (>= 0) with its sign bit set to `sign` (0 or bit 63): -x without a branch on a random bit.
  static double with_sign(double x, std::uint64_t sign) {
    std::uint64_t u;
    std::memcpy(&u, &x, sizeof u);
    u |= sign;
    std::memcpy(&x, &u, sizeof u);
    return x;
  }

  /// Marsaglia's tail sampler: r + a with a = -ln(U1) / r, accepted when -2 ln(U2) > a^2;
  /// the accepted values have the density f restricted to (r, inf), renormalised.
  double tail() {
    const double r = z->r;
    for (;;) {
      const double a = -std::log(1.0 - uniform()) / r;  // 1 - uniform() in (0, 1]
      const double c = -std::log(1.0 - uniform());
      if (c + c > a * a) return r + a;
    }
  }
};

}  // namespace moecheck::bench
