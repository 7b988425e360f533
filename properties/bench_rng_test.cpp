// The throughput benchmark's normal sampler (properties/support/bench_rng.hpp) against N(0, 1):
// the Ziggurat's tables (equal layer areas, the known r and v of 256 layers), then the deviates
// themselves: moments up to the sixth, the CDF at fixed points (the tail beyond r included),
// a histogram (chi-square) and the tail sampler alone. The bounds are about five standard
// errors of each statistic at these sample sizes, so a fault in a table, the wedge test or the
// tail step shows, while a correct sampler passes for any seed (the seeds are fixed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "properties/support/bench_rng.hpp"

namespace moecheck::bench {
namespace {

double phi_cdf(double q) { return 0.5 * std::erfc(-q / std::sqrt(2.0)); }

TEST(BenchRng, ZigguratTablesHaveEqualLayerAreas) {
  const ZigguratTables& z = ziggurat_tables();
  constexpr int N = ZigguratTables::kLayers;
  // Published constants of the 256-layer normal Ziggurat.
  EXPECT_NEAR(z.r, 3.6541528853610088, 1e-12);
  EXPECT_NEAR(z.v, 0.00492867323399, 1e-13);
  EXPECT_DOUBLE_EQ(z.v, z.r * ZigguratTables::density(z.r) + ZigguratTables::tail_area(z.r));
  EXPECT_EQ(z.x[1], z.r);
  EXPECT_EQ(z.x[N], 0.0);
  EXPECT_EQ(z.f[N], 1.0);
  EXPECT_NEAR(z.x[0] * z.f[1], z.v, 1e-15) << "base layer";
  EXPECT_LT(z.max_area_error(), 1e-9);  // the throughput benchmark's own check
  for (int i = 0; i <= N; ++i) {
    if (i < N) {
      EXPECT_GT(z.x[i], z.x[i + 1]) << "x not decreasing at " << i;
      EXPECT_EQ(z.scaled[i], z.x[i] * 0x1p-53) << i;
    }
    if (i >= 1 && i < N) {
      EXPECT_NEAR(z.x[i] * (z.f[i + 1] - z.f[i]) / z.v, 1.0, 1e-9) << "area of layer " << i;
    }
    if (i < N) {
      EXPECT_EQ(z.f[i], ZigguratTables::density(z.x[i])) << i;
    }
  }
}

struct Moments {
  double n = 0, m[7] = {};  // m[p] = mean of x^p
};

TEST(BenchRng, NormalDeviatesMatchTheStandardNormal) {
  const int n = 1 << 22;
  Rng rng{0x9e3779b97f4a7c15ull};
  const double qs[] = {-4.0, -3.6541528853610088, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, -0.1, 0.0,
                       0.1,  0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.6541528853610088, 4.0};
  constexpr int nq = sizeof qs / sizeof qs[0];
  std::vector<double> below(nq, 0.0);
  // Histogram: 80 bins of width 0.1 over [-4, 4) plus the two tails.
  std::vector<double> bins(82, 0.0);
  Moments mo;
  for (int i = 0; i < n; ++i) {
    const double x = rng.normal();
    ASSERT_TRUE(std::isfinite(x));
    double p = 1.0;
    for (int j = 1; j <= 6; ++j) {
      p *= x;
      mo.m[j] += p;
    }
    for (int j = 0; j < nq; ++j) below[j] += x < qs[j];
    int b = 0;
    if (x >= 4.0) {
      b = 81;
    } else if (x >= -4.0) {
      b = 1 + std::min(79, std::max(0, static_cast<int>(std::floor((x + 4.0) * 10.0))));
    }
    bins[static_cast<std::size_t>(b)] += 1.0;
  }
  for (double& v : mo.m) v /= n;
  const double sn = std::sqrt(static_cast<double>(n));
  // Raw moments of N(0, 1): 0, 1, 0, 3, 0, 15; standard errors sqrt(Var(x^p) / n) with
  // Var(x^p) = E x^2p - (E x^p)^2 = 1, 2, 15, 96, 945, 10170.
  const double expect[7] = {0, 0, 1, 0, 3, 0, 15};
  const double var[7] = {0, 1, 2, 15, 96, 945, 10170};
  for (int p = 1; p <= 6; ++p) {
    EXPECT_NEAR(mo.m[p], expect[p], 5.0 * std::sqrt(var[p]) / sn) << "moment " << p;
  }
  for (int j = 0; j < nq; ++j) {
    const double P = phi_cdf(qs[j]);
    EXPECT_NEAR(below[static_cast<std::size_t>(j)] / n, P, 5.0 * std::sqrt(P * (1.0 - P)) / sn + 1.0 / n)
        << "P(X < " << qs[j] << ")";
  }
  double chi2 = 0.0;
  for (int b = 0; b < 82; ++b) {
    const double lo = b == 0 ? -INFINITY : -4.0 + 0.1 * (b - 1), hi = b == 81 ? INFINITY : -4.0 + 0.1 * b;
    const double e = n * (phi_cdf(hi) - phi_cdf(lo));
    ASSERT_GT(e, 50.0) << "bin " << b;
    chi2 += (bins[static_cast<std::size_t>(b)] - e) * (bins[static_cast<std::size_t>(b)] - e) / e;
  }
  const double dof = 81.0;
  EXPECT_LT(chi2, dof + 5.0 * std::sqrt(2.0 * dof)) << "histogram";
}

TEST(BenchRng, TailSamplerHasTheNormalTail) {
  // Conditional on X > r: P(X > r + d | X > r) = Q(r + d) / Q(r), Q = 1 - Phi.
  const int n = 1 << 19;
  Rng rng{0x2545f4914f6cdd1dull};
  const double r = rng.z->r;
  const double ds[] = {0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2};
  constexpr int nd = sizeof ds / sizeof ds[0];
  std::vector<double> above(nd, 0.0);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    const double t = rng.tail();
    ASSERT_GT(t, r);
    sum += t - r;
    for (int j = 0; j < nd; ++j) above[static_cast<std::size_t>(j)] += t > r + ds[j];
  }
  const double sn = std::sqrt(static_cast<double>(n));
  const double Qr = 1.0 - phi_cdf(r);
  for (int j = 0; j < nd; ++j) {
    const double P = (1.0 - phi_cdf(r + ds[j])) / Qr;
    EXPECT_NEAR(above[static_cast<std::size_t>(j)] / n, P, 5.0 * std::sqrt(P * (1.0 - P)) / sn + 1.0 / n)
        << "P(X > r + " << ds[j] << " | X > r)";
  }
  // E[X - r | X > r] = phi(r) / Q(r) - r; its standard deviation is below 1 / r.
  const double mean = std::exp(-0.5 * r * r) / std::sqrt(2.0 * std::acos(-1.0)) / Qr - r;
  EXPECT_NEAR(sum / n, mean, 5.0 / r / sn) << "mean excess over r";
}

}  // namespace
}  // namespace moecheck::bench
