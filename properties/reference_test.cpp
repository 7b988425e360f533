// Example-based tests of the routing reference: hand-worked examples for every family, every
// edge case of reference/EDGE_CASES.md (errors with their messages), bit-exact dtype
// conversions (exhaustive over binary16 / bfloat16) and the MoE forward reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "harness/core/case.hpp"
#include "harness/core/generators.hpp"
#include "reference/format.hpp"
#include "reference/moe.hpp"
#include "reference/oracle.hpp"
#include "reference/routing.hpp"
#include "reference/splitmix64.hpp"

namespace moecheck {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Routes a contiguous fp32 problem with the reference.
struct Routed {
  std::vector<double> w;
  std::vector<std::int32_t> ids;
};
Routed route(const std::vector<float>& logits, std::int64_t T, std::int64_t E, const RoutingParams& p) {
  GatingView g{logits.empty() ? nullptr : logits.data(), DType::f32, T, E, E, 1};
  Routed r;
  const std::size_t n = static_cast<std::size_t>(std::max<std::int64_t>(T, 0) * std::max(p.k, 0));
  r.w.assign(n, -99.0);
  r.ids.assign(n, -99);
  route_reference(g, p, r.w.data(), r.ids.data());
  return r;
}

RoutingParams params(Family f, int k) {
  RoutingParams p;
  p.family = f;
  p.k = k;
  return p;
}

/// Expects a RoutingError whose message contains `needle`.
template <class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected RoutingError containing \"" << needle << "\"";
  } catch (const RoutingError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

// ---- hand-worked examples ------------------------------------------------------------

TEST(ReferenceExamples, Gemma4) {
  const std::vector<float> x = {1, 2, 3, 0};
  const std::vector<float> scale = {1, 0.5f, 2, 1};
  RoutingParams p = params(Family::gemma4, 2);
  p.scale = scale.data();
  const Routed r = route(x, 1, 4, p);
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{2, 1}));
  // softmax([3, 2]) = [e/(e+1), 1/(e+1)], times scale[2] = 2 and scale[1] = 0.5
  EXPECT_NEAR(r.w[0], 0.7310585786300048 * 2, 1e-15);
  EXPECT_NEAR(r.w[1], 0.2689414213699951 * 0.5, 1e-15);
}

TEST(ReferenceExamples, SoftmaxTopk) {
  const Routed r = route({1, 2, 3, 0}, 1, 4, params(Family::softmax_topk, 2));
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{2, 1}));
  EXPECT_NEAR(r.w[0], 0.7310585786300048, 1e-15);
  EXPECT_NEAR(r.w[1], 0.2689414213699951, 1e-15);
}

TEST(ReferenceExamples, SoftmaxTopkIgnoresScale) {
  const std::vector<float> scale = {kNan, 5, 5, 5};  // not used by this family, not validated
  RoutingParams p = params(Family::softmax_topk, 2);
  p.scale = scale.data();
  const Routed r = route({1, 2, 3, 0}, 1, 4, p);
  EXPECT_NEAR(r.w[0], 0.7310585786300048, 1e-15);
}

TEST(ReferenceExamples, SoftmaxTopkRaw) {
  const Routed r = route({1, 2, 3, 0}, 1, 4, params(Family::softmax_topk_raw, 2));
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{2, 1}));
  // e^3 / (e + e^2 + e^3 + 1), e^2 / (...)
  EXPECT_NEAR(r.w[0], 0.6439142598879724, 1e-15);
  EXPECT_NEAR(r.w[1], 0.23688281808991016, 1e-15);
}

TEST(ReferenceExamples, SigmoidTop1) {
  const Routed r = route({0.5f, -1, 2}, 1, 3, params(Family::sigmoid_top1, 1));
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{2}));
  EXPECT_NEAR(r.w[0], 0.8807970779778823, 1e-15);
}

TEST(ReferenceExamples, SigmoidGroupedPicksGroupsFirst) {
  // groups of 2: g0 = {0, 1}, g1 = {2, 3}, g2 = {4, 5}, g3 = {6, 7}
  // sigmoid: s(0)=.5 s(1)=.731 | s(3)=.953 s(-2)=.119 | s(2)=.881 s(2)=.881 | s(-1)=.269 s(.5)=.622
  // group scores (top-2 sums): 1.231, 1.072, 1.762, 0.891 -> groups 2 and 0 win, so expert 2
  // (the largest single score) is not eligible. Top-3 of {0, 1, 4, 5}: 4, 5 (tie, lower index
  // first), 1.
  const std::vector<float> x = {0, 1, 3, -2, 2, 2, -1, 0.5f};
  RoutingParams p = params(Family::sigmoid_grouped, 3);
  p.n_group = 4;
  p.topk_group = 2;
  p.routed_scaling = 2.5f;
  const Routed r = route(x, 1, 8, p);
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{4, 5, 1}));
  EXPECT_NEAR(r.w[0], 0.8833932879585948, 1e-15);
  EXPECT_NEAR(r.w[1], 0.8833932879585948, 1e-15);
  EXPECT_NEAR(r.w[2], 0.7332134240828102, 1e-15);
}

TEST(ReferenceExamples, SigmoidGroupedBiasSelectsButDoesNotWeigh) {
  // bias[1] = -0.5 lowers group 0 to 0.5 + 0.231 = 0.731 < group 1 (1.072): groups 2 and 1.
  const std::vector<float> x = {0, 1, 3, -2, 2, 2, -1, 0.5f};
  const std::vector<float> bias = {0, -0.5f, 0, 0, 0, 0, 0, 0};
  RoutingParams p = params(Family::sigmoid_grouped, 3);
  p.n_group = 4;
  p.topk_group = 2;
  p.bias = bias.data();
  const Routed r = route(x, 1, 8, p);
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{2, 4, 5}));
  // weights from the unbiased scores s(3), s(2), s(2) renormalised
  EXPECT_NEAR(r.w[0], 0.35096354668450663, 1e-15);
  EXPECT_NEAR(r.w[1], 0.32451822665774666, 1e-15);
  EXPECT_NEAR(r.w[2], 0.32451822665774666, 1e-15);
}

TEST(ReferenceExamples, SigmoidGroupedSingletonGroupsUseTop1) {
  // group size 1: group score = the key itself, so grouping is plain top-k among topk_group
  const std::vector<float> x = {0, 3, 1, 2};
  RoutingParams p = params(Family::sigmoid_grouped, 2);
  p.n_group = 4;
  p.topk_group = 3;
  const Routed r = route(x, 1, 4, p);
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{1, 3}));
}

TEST(ReferenceExamples, MultipleRowsAndStrides) {
  // the same problem stored contiguous and transposed routes identically
  const std::vector<float> x = {1, 2, 3, 0, /* row 1 */ 4, -1, 4, 2};
  std::vector<float> xt(8);
  for (int t = 0; t < 2; ++t) {
    for (int e = 0; e < 4; ++e) xt[static_cast<std::size_t>(e * 2 + t)] = x[static_cast<std::size_t>(t * 4 + e)];
  }
  const RoutingParams p = params(Family::softmax_topk, 2);
  GatingView g{xt.data(), DType::f32, 2, 4, 1, 2};
  std::vector<double> w(4);
  std::vector<std::int32_t> ids(4);
  route_reference(g, p, w.data(), ids.data());
  const Routed r = route(x, 2, 4, p);
  EXPECT_EQ(ids, r.ids);
  EXPECT_EQ(w, r.w);
  EXPECT_EQ(ids, (std::vector<std::int32_t>{2, 1, 0, 2}));  // row 1: tie 4/4 -> lower index first
  EXPECT_DOUBLE_EQ(w[2], 0.5);
}

// ---- edge cases ----------------------------------------------------------------------

TEST(ReferenceEdgeCases, TZeroIsValidAndWritesNothing) {
  GatingView g{nullptr, DType::f16, 0, 8, 8, 1};
  route_reference(g, params(Family::gemma4, 3), nullptr, nullptr);
}

TEST(ReferenceEdgeCases, KEqualsE) {
  const Routed r = route({0, 1, 2}, 1, 3, params(Family::softmax_topk, 3));
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{2, 1, 0}));
  EXPECT_NEAR(r.w[0] + r.w[1] + r.w[2], 1.0, 1e-15);
}

TEST(ReferenceEdgeCases, ArgumentErrors) {
  const std::vector<float> x(8, 0.0f);
  expect_error([&] { route(x, 1, 4, params(Family::gemma4, 0)); }, "k must be >= 1 (got k = 0)");
  expect_error([&] { route(x, 1, 4, params(Family::gemma4, 5)); }, "k must be <= E (got k = 5, E = 4)");
  expect_error([&] { route({}, 0, 0, params(Family::gemma4, 1)); }, "E must be >= 1 (got E = 0)");
  expect_error([&] { route(x, -1, 4, params(Family::gemma4, 1)); }, "T must be >= 0 (got T = -1)");
  expect_error([&] { route(x, 1, 4, params(Family::sigmoid_top1, 2)); }, "sigmoid_top1 requires k == 1 (got k = 2)");
  expect_error(
      [&] {
        GatingView g{nullptr, DType::f32, 2, 4, 4, 1};
        validate_routing(g, params(Family::gemma4, 1));
      },
      "gating data is null but T = 2");
  expect_error(
      [&] {
        GatingView g{x.data(), DType::f32, 2, 4, -4, 1};
        validate_routing(g, params(Family::gemma4, 1));
      },
      "row_stride must be >= 0 (got -4)");
  expect_error(
      [&] {
        GatingView g{x.data(), DType::f32, 2, 4, 0, 1};
        validate_routing(g, params(Family::gemma4, 1));
      },
      "row_stride is 0 but T = 2");
  expect_error(
      [&] {
        GatingView g{x.data(), DType::f32, 1, 4, 4, 0};
        validate_routing(g, params(Family::gemma4, 1));
      },
      "col_stride is 0 but E = 4");
  expect_error(
      [&] {
        GatingView g{x.data(), static_cast<DType>(7), 1, 4, 4, 1};
        validate_routing(g, params(Family::gemma4, 1));
      },
      "unknown dtype value 7");
  expect_error(
      [&] {
        GatingView g{x.data(), DType::f32, 1, 4, 4, 1};
        validate_routing(g, params(static_cast<Family>(9), 1));
      },
      "unknown routing family value 9");
}

TEST(ReferenceEdgeCases, GroupErrors) {
  const std::vector<float> x(8, 0.0f);
  RoutingParams p = params(Family::sigmoid_grouped, 2);
  p.n_group = 3;
  expect_error([&] { route(x, 1, 8, p); }, "E must be divisible by n_group (got E = 8, n_group = 3)");
  p.n_group = 0;
  expect_error([&] { route(x, 1, 8, p); }, "n_group must be >= 1 (got n_group = 0)");
  p.n_group = 2;
  p.topk_group = 3;
  expect_error([&] { route(x, 1, 8, p); }, "topk_group must be in [1, n_group] (got topk_group = 3, n_group = 2)");
  p.n_group = 4;  // groups of 2
  p.topk_group = 2;
  p.k = 5;
  expect_error([&] { route(x, 1, 8, p); },
               "k must be <= topk_group * (E / n_group) (got k = 5, topk_group = 2, E / n_group = 2)");
  p.k = 4;
  route(x, 1, 8, p);  // exactly the available experts: fine
  p.routed_scaling = kInf;
  expect_error([&] { route(x, 1, 8, p); }, "routed_scaling is inf (must be finite)");
}

TEST(ReferenceEdgeCases, NonFiniteScalesAndBiasAreErrors) {
  const std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> scale = {1, 1, 1, kNan};
  RoutingParams p = params(Family::gemma4, 2);
  p.scale = scale.data();
  expect_error([&] { route(x, 1, 4, p); }, "per_expert_scale[3] is nan");
  scale = {1, kInf, 1, 1};
  expect_error([&] { route(x, 1, 4, p); }, "per_expert_scale[1] is inf");
  scale = {-kInf, 1, 1, 1};
  expect_error([&] { route(x, 1, 4, p); }, "per_expert_scale[0] is -inf");
  // bias
  std::vector<float> bias = {0, 0, kNan, 0};
  RoutingParams q = params(Family::sigmoid_grouped, 1);
  q.bias = bias.data();
  expect_error([&] { route(x, 1, 4, q); }, "bias[2] is nan");
}

TEST(ReferenceEdgeCases, ZeroAndNegativeScalesAreLinear) {
  const std::vector<float> scale = {0, -2, 1, 1};
  RoutingParams p = params(Family::gemma4, 2);
  p.scale = scale.data();
  const Routed r = route({3, 2, 0, 0}, 1, 4, p);
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(r.w[0], 0.0);
  EXPECT_NEAR(r.w[1], -2 * 0.2689414213699951, 1e-15);
}

TEST(ReferenceEdgeCases, NanRanksAsNegativeInfinityWithZeroMass) {
  const Routed r = route({kNan, 1, kNan, 0}, 1, 4, params(Family::softmax_topk, 3));
  // 1 > 0 > NaN(-inf) = NaN(-inf): the NaN tie goes to the lower index 0
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{1, 3, 0}));
  EXPECT_NEAR(r.w[0], 0.7310585786300048, 1e-15);
  EXPECT_NEAR(r.w[1], 0.2689414213699951, 1e-15);
  EXPECT_EQ(r.w[2], 0.0);
}

TEST(ReferenceEdgeCases, NanTiesWithNegativeInfinity) {
  const Routed r = route({kNan, -kInf, 5}, 1, 3, params(Family::softmax_topk, 2));
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{2, 0}));
  EXPECT_EQ(r.w[0], 1.0);
  EXPECT_EQ(r.w[1], 0.0);
  const Routed s = route({-kInf, kNan, 5}, 1, 3, params(Family::softmax_topk, 2));
  EXPECT_EQ(s.ids, (std::vector<std::int32_t>{2, 0}));
}

TEST(ReferenceEdgeCases, PositiveInfinitiesShareTheMass) {
  const Routed r = route({kInf, 1, kInf, 2}, 1, 4, params(Family::softmax_topk, 3));
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{0, 2, 3}));
  EXPECT_EQ(r.w, (std::vector<double>{0.5, 0.5, 0.0}));
  // raw: full-softmax mass of each +inf expert is 1 / (number of +inf experts in the row)
  const Routed raw = route({kInf, 1, kInf, kInf}, 1, 4, params(Family::softmax_topk_raw, 1));
  EXPECT_EQ(raw.ids, (std::vector<std::int32_t>{0}));
  EXPECT_DOUBLE_EQ(raw.w[0], 1.0 / 3.0);
  // renormalising over a selection holding only some of the +inf experts: shared among them
  const Routed part = route({kInf, 1, kInf, kInf}, 1, 4, params(Family::softmax_topk, 2));
  EXPECT_EQ(part.w, (std::vector<double>{0.5, 0.5}));
}

TEST(ReferenceEdgeCases, AllMaskedRowHasZeroWeightsNeverNan) {
  const std::vector<float> scale = {-3, 2, 1};
  for (Family f : {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw}) {
    RoutingParams p = params(f, 2);
    p.scale = scale.data();
    for (const std::vector<float>& row : {std::vector<float>{-kInf, -kInf, -kInf}, std::vector<float>{kNan, kNan, kNan},
                                          std::vector<float>{kNan, -kInf, kNan}}) {
      const Routed r = route(row, 1, 3, p);
      EXPECT_EQ(r.ids, (std::vector<std::int32_t>{0, 1})) << family_name(f);
      EXPECT_EQ(r.w[0], 0.0) << family_name(f);
      EXPECT_EQ(r.w[1], 0.0) << family_name(f);
    }
  }
  // sigmoid families: NaN scores 0; all-NaN selection sums to 0 -> divide by 1 -> zeros
  RoutingParams g = params(Family::sigmoid_grouped, 2);
  const Routed r = route({kNan, kNan, kNan}, 1, 3, g);
  EXPECT_EQ(r.w, (std::vector<double>{0.0, 0.0}));
}

TEST(ReferenceEdgeCases, SigmoidKeysOfInfinities) {
  // sigmoid_top1 ranks by the logit: NaN = -inf, tie broken by index
  const Routed a = route({kNan, -kInf}, 1, 2, params(Family::sigmoid_top1, 1));
  EXPECT_EQ(a.ids, (std::vector<std::int32_t>{0}));
  EXPECT_EQ(a.w[0], 0.0);
  const Routed b = route({1, kInf}, 1, 2, params(Family::sigmoid_top1, 1));
  EXPECT_EQ(b.ids, (std::vector<std::int32_t>{1}));
  EXPECT_EQ(b.w[0], 1.0);
  // sigmoid_grouped: key = sigmoid(x) + bias; a NaN logit's key is -inf, below a -inf logit's 0
  EXPECT_EQ(selection_key(Family::sigmoid_grouped, -INFINITY, 0.25), 0.25);
  EXPECT_EQ(selection_key(Family::sigmoid_grouped, NAN, 0.25), -INFINITY);
  EXPECT_EQ(selection_key(Family::softmax_topk, NAN, 0.0), -INFINITY);
  const Routed c = route({kNan, -kInf}, 1, 2, params(Family::sigmoid_grouped, 1));
  EXPECT_EQ(c.ids, (std::vector<std::int32_t>{1}));
}

TEST(ReferenceEdgeCases, HugeMagnitudesAndDenormals) {
  const Routed r = route({3e38f, -3e38f, 1}, 1, 3, params(Family::softmax_topk, 2));
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{0, 2}));
  EXPECT_EQ(r.w[0], 1.0);
  EXPECT_EQ(r.w[1], 0.0);
  const float d1 = from_bits(1), d2 = from_bits(2);  // 2^-149 and 2^-148
  const Routed s = route({d1, d2, 0}, 1, 3, params(Family::softmax_topk, 1));
  EXPECT_EQ(s.ids, (std::vector<std::int32_t>{1}));  // subnormals compare exactly
  EXPECT_EQ(s.w[0], 1.0);
}

TEST(ReferenceEdgeCases, LargeNonPowerOfTwoE) {
  const std::int64_t E = 1500;
  std::vector<float> x(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e) x[static_cast<std::size_t>(e)] = static_cast<float>((e * 37) % 1499) / 64.0f;
  const Routed r = route(x, 1, E, params(Family::softmax_topk, 8));
  double sum = 0;
  for (int j = 0; j < 8; ++j) {
    sum += r.w[static_cast<std::size_t>(j)];
    if (j > 0) {
      EXPECT_GE(x[static_cast<std::size_t>(r.ids[static_cast<std::size_t>(j - 1)])],
                x[static_cast<std::size_t>(r.ids[static_cast<std::size_t>(j)])]);
    }
  }
  EXPECT_NEAR(sum, 1.0, 1e-15);
  EXPECT_EQ(x[static_cast<std::size_t>(r.ids[0])], 1498.0f / 64.0f);
}

TEST(ReferenceEdgeCases, HalfAndBf16Views) {
  const std::vector<std::uint16_t> h = {float_to_half_bits(1.5f), float_to_half_bits(-2.0f), float_to_half_bits(3.0f)};
  GatingView g{h.data(), DType::f16, 1, 3, 3, 1};
  EXPECT_EQ(g.at(0, 0), 1.5);
  EXPECT_EQ(g.at(0, 2), 3.0);
  const std::vector<std::uint16_t> b = {float_to_bf16_bits(1.5f), float_to_bf16_bits(-2.0f), float_to_bf16_bits(3.0f)};
  GatingView gb{b.data(), DType::bf16, 1, 3, 3, 1};
  std::vector<double> w(2);
  std::vector<std::int32_t> ids(2);
  route_reference(gb, params(Family::softmax_topk, 2), w.data(), ids.data());
  EXPECT_EQ(ids, (std::vector<std::int32_t>{2, 0}));
}

// ---- names ---------------------------------------------------------------------------

TEST(ReferenceNames, ParseAndPrint) {
  DType d = DType::f32;
  EXPECT_TRUE(parse_dtype("bfloat16", &d));
  EXPECT_EQ(d, DType::bf16);
  EXPECT_TRUE(parse_dtype("half", &d));
  EXPECT_EQ(d, DType::f16);
  EXPECT_TRUE(parse_dtype("FP32", &d));
  EXPECT_EQ(d, DType::f32);
  EXPECT_FALSE(parse_dtype("f64", &d));
  EXPECT_EQ(d, DType::f32);
  EXPECT_STREQ(dtype_name(DType::bf16), "bf16");
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  EXPECT_EQ(dtype_unit_roundoff(DType::bf16), 0x1p-8);
  Family f = Family::gemma4;
  for (Family g : {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw, Family::sigmoid_grouped,
                   Family::sigmoid_top1}) {
    EXPECT_TRUE(parse_family(family_name(g), &f));
    EXPECT_EQ(f, g);
  }
  EXPECT_TRUE(parse_family("sigmoid-grouped", &f));
  EXPECT_EQ(f, Family::sigmoid_grouped);
  EXPECT_FALSE(parse_family("softmax", &f));
}

// ---- conversions ---------------------------------------------------------------------

/// Independent decoding of binary16 by formula.
double half_value(std::uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  const double sign = s ? -1.0 : 1.0;
  if (e == 31) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

TEST(Conversions, HalfDecodeExhaustive) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = half_bits_to_float(static_cast<std::uint16_t>(h));
    const double want = half_value(static_cast<std::uint16_t>(h));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_TRUE(bits(f) & 0x400000u) << "quiet bit, half 0x" << std::hex << h;
      ASSERT_EQ((bits(f) >> 13) & 0x1ffu, h & 0x1ffu) << "payload, half 0x" << std::hex << h;
      ASSERT_EQ(bits(f) >> 31, h >> 15);
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << std::hex << h;
      ASSERT_EQ(std::signbit(f), (h >> 15) != 0) << std::hex << h;
    }
  }
}

TEST(Conversions, HalfRoundTripExhaustive) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const std::uint16_t back = float_to_half_bits(half_bits_to_float(static_cast<std::uint16_t>(h)));
    const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
    if (nan) {
      ASSERT_EQ(back, h | 0x200u) << "NaN becomes quiet with its payload, half 0x" << std::hex << h;
    } else {
      ASSERT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(Conversions, HalfRoundsToNearestEvenAtEveryMidpoint) {
  // For every pair of adjacent finite halves (a, b): values below the midpoint go to a, above to
  // b, the midpoint itself to the one with an even mantissa.
  for (std::uint32_t h = 0; h < 0x7bffu; ++h) {
    for (std::uint32_t sign : {0u, 0x8000u}) {
      const auto a = static_cast<std::uint16_t>(h | sign), b = static_cast<std::uint16_t>((h + 1) | sign);
      const double mid = (half_value(a) + half_value(b)) / 2;  // exact in float
      const float fm = static_cast<float>(mid);
      ASSERT_EQ(static_cast<double>(fm), mid);
      const std::uint16_t even = (h & 1u) ? b : a;
      ASSERT_EQ(float_to_half_bits(fm), even) << std::hex << h;
      ASSERT_EQ(float_to_half_bits(std::nextafter(fm, 0.0f)), a) << std::hex << h;
      ASSERT_EQ(float_to_half_bits(std::nextafter(fm, sign ? -kInf : kInf)), b) << std::hex << h;
    }
  }
  // overflow boundary: 65520 is the midpoint between 65504 (odd mantissa) and 2^16 -> inf
  EXPECT_EQ(float_to_half_bits(65520.0f), 0x7c00u);
  EXPECT_EQ(float_to_half_bits(std::nextafter(65520.0f, 0.0f)), 0x7bffu);
  EXPECT_EQ(float_to_half_bits(-65520.0f), 0xfc00u);
  EXPECT_EQ(float_to_half_bits(1e10f), 0x7c00u);
  EXPECT_EQ(float_to_half_bits(kInf), 0x7c00u);
  // underflow: 2^-25 is the midpoint between 0 and the smallest subnormal -> 0 (even)
  EXPECT_EQ(float_to_half_bits(0x1p-25f), 0x0000u);
  EXPECT_EQ(float_to_half_bits(std::nextafter(0x1p-25f, 1.0f)), 0x0001u);
  EXPECT_EQ(float_to_half_bits(-0x1p-26f), 0x8000u);
  EXPECT_EQ(float_to_half_bits(from_bits(1)), 0x0000u);
  EXPECT_EQ(float_to_half_bits(-0.0f), 0x8000u);
  // NaN: quiet, sign and top payload bits kept
  EXPECT_EQ(float_to_half_bits(from_bits(0x7f800001u)), 0x7e00u);  // signalling, low payload lost
  EXPECT_EQ(float_to_half_bits(from_bits(0xffc02000u)), 0xfe01u);
}

#if defined(__FLT16_MAX__)
TEST(Conversions, HalfMatchesCompilerFloat16OnRandomFloats) {
  Rng rng(0x5eed);
  for (int i = 0; i < 2000000; ++i) {
    const float f = from_bits(static_cast<std::uint32_t>(rng.next()));
    if (std::isnan(f)) continue;
    const _Float16 h = static_cast<_Float16>(f);
    std::uint16_t hb;
    std::memcpy(&hb, &h, 2);
    ASSERT_EQ(float_to_half_bits(f), hb) << std::hexfloat << f;
  }
}
#endif

TEST(Conversions, Bf16DecodeAndRoundTripExhaustive) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_bits_to_float(static_cast<std::uint16_t>(b));
    ASSERT_EQ(bits(f), b << 16) << std::hex << b;  // bit-exact, NaNs included
    const std::uint16_t back = float_to_bf16_bits(f);
    const bool nan = (b & 0x7f80u) == 0x7f80u && (b & 0x7fu);
    ASSERT_EQ(back, nan ? (b | 0x40u) : b) << std::hex << b;
  }
}

/// Independent bf16 rounding: nearest of the two neighbours by magnitude, ties to even.
std::uint16_t bf16_reference(float f) {
  const std::uint32_t u = bits(f);
  const std::uint32_t lo = u & 0xffff0000u;        // truncation (towards zero)
  const std::uint32_t hi = lo + 0x10000u;          // next magnitude (may be inf)
  const double dl = std::fabs(static_cast<double>(f) - static_cast<double>(from_bits(lo)));
  const double dh = std::fabs(static_cast<double>(from_bits(hi)) - static_cast<double>(f));
  if ((lo & 0x7fffffffu) == 0x7f7f0000u && (u & 0xffffu) >= 0x8000u) return static_cast<std::uint16_t>((u >> 16) + 1);
  if (dl < dh) return static_cast<std::uint16_t>(lo >> 16);
  if (dh < dl) return static_cast<std::uint16_t>(hi >> 16);
  return static_cast<std::uint16_t>(((lo >> 16) & 1u) ? hi >> 16 : lo >> 16);
}

TEST(Conversions, Bf16RoundsToNearestEven) {
  Rng rng(0xbf16);
  for (int i = 0; i < 2000000; ++i) {
    const float f = from_bits(static_cast<std::uint32_t>(rng.next()));
    if (std::isnan(f) || std::isinf(f)) continue;
    ASSERT_EQ(float_to_bf16_bits(f), bf16_reference(f)) << std::hexfloat << f;
  }
  // every midpoint: 0x8000 in the low half is a tie
  for (std::uint32_t b = 0; b < 0x7f7fu; ++b) {
    const float mid = from_bits((b << 16) | 0x8000u);
    ASSERT_EQ(float_to_bf16_bits(mid), (b & 1u) ? b + 1 : b) << std::hex << b;
    ASSERT_EQ(float_to_bf16_bits(from_bits((b << 16) | 0x7fffu)), b);
    ASSERT_EQ(float_to_bf16_bits(from_bits((b << 16) | 0x8001u)), b + 1);
  }
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80u);  // rounds up to inf
  EXPECT_EQ(float_to_bf16_bits(from_bits(0x7f800001u)), 0x7fc0u);
  EXPECT_EQ(float_to_bf16_bits(from_bits(0xff812345u)), 0xffc1u);
  EXPECT_EQ(float_to_bf16_bits(from_bits(0x00018000u)), 0x0002u);  // subnormal tie -> even
}

TEST(Conversions, RoundToDtype) {
  EXPECT_EQ(round_to_dtype(1.0f + 0x1p-12f, DType::f16), 1.0f);
  EXPECT_EQ(round_to_dtype(1.0f + 0x1p-10f, DType::f16), 1.0f + 0x1p-10f);
  EXPECT_EQ(round_to_dtype(1.0f + 0x1p-8f, DType::bf16), 1.0f);  // tie -> even
  EXPECT_EQ(round_to_dtype(1.0f + 0x1p-7f, DType::bf16), 1.0f + 0x1p-7f);
  EXPECT_EQ(round_to_dtype(70000.0f, DType::f16), kInf);
  EXPECT_TRUE(std::isnan(round_to_dtype(kNan, DType::bf16)));
  EXPECT_EQ(round_to_dtype(0.1f, DType::f32), 0.1f);
}

// ---- MoE forward ---------------------------------------------------------------------

TEST(MoeReference, GeluTanhValues) {
  EXPECT_EQ(gelu_tanh(0.0), 0.0);
  EXPECT_NEAR(gelu_tanh(1.0), 0.8411919906082768, 1e-15);
  EXPECT_NEAR(gelu_tanh(-2.0), -0.04540230591222494, 1e-15);
  EXPECT_NEAR(gelu_tanh(0.5), 0.34571400982514394, 1e-15);
}

MoeWeights small_layer() {
  MoeWeights w;
  w.H = 2;
  w.I = 1;
  w.E = 2;
  w.k = 2;
  w.router_scale = {1, 1};
  w.router_proj = {1, 0, 0, 1};  // logits = normalised x
  w.per_expert_scale = {1, 1};
  w.w_gate = {1, 0, /* e1 */ 0, 1};
  w.w_up = {1, 1, /* e1 */ 1, -1};
  w.w_down = {1, 0, /* e1 */ 0, 2};
  return w;
}

TEST(MoeReference, RouterIsRmsNormScaledProjection) {
  const MoeWeights w = small_layer();
  const double x[2] = {3, 4};
  double logits[2];
  moe_router_logits(w, x, 1, logits);
  // rms = sqrt((9 + 16) / 2 + 1e-6); logits = x / rms / sqrt(2)
  EXPECT_NEAR(logits[0], 0.5999999760000014, 1e-15);
  EXPECT_NEAR(logits[1], 0.799999968000002, 1e-15);
}

TEST(MoeReference, ForwardIsWeightedSumOfExperts) {
  const MoeWeights w = small_layer();
  const double x[2] = {3, 4};
  double y[2];
  MoeTrace tr;
  moe_forward(w, x, 1, y, &tr);
  // expert 0: h = gelu(3) * (3 + 4), out = (h, 0); expert 1: h = gelu(4) * (3 - 4), out = (0, 2h)
  const double f0 = gelu_tanh(3.0) * 7.0, f1 = gelu_tanh(4.0) * -1.0;
  ASSERT_EQ(tr.ids, (std::vector<std::int32_t>{1, 0}));
  const double w1 = tr.weights[0], w0 = tr.weights[1];
  EXPECT_NEAR(w0 + w1, 1.0, 1e-15);
  EXPECT_NEAR(w1, 1.0 / (1.0 + std::exp(tr.logits[0] - tr.logits[1])), 1e-15);
  EXPECT_NEAR(y[0], w0 * f0, 1e-12);
  EXPECT_NEAR(y[1], w1 * 2 * f1, 1e-12);
}

TEST(MoeReference, ZeroScaleRemovesTheExpertAndScaleIsLinear) {
  MoeWeights w = small_layer();
  const double x[4] = {3, 4, -1, 0.5};
  double y[4], y0[4], y2[4];
  MoeTrace tr;
  moe_forward(w, x, 2, y, &tr);
  w.per_expert_scale = {0, 1};
  moe_forward(w, x, 2, y0);
  for (int t = 0; t < 2; ++t) {
    double out[2];
    // contribution of expert 0 in the full output
    const int slot0 = tr.ids[static_cast<std::size_t>(t * 2)] == 0 ? 0 : 1;
    moe_expert_forward(w, 0, x + t * 2, out);
    for (int h = 0; h < 2; ++h) {
      EXPECT_NEAR(y0[t * 2 + h], y[t * 2 + h] - tr.weights[static_cast<std::size_t>(t * 2 + slot0)] * out[h], 1e-12);
    }
  }
  w.per_expert_scale = {2, 2};
  moe_forward(w, x, 2, y2);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y2[i], 2 * y[i], 1e-12);
}

TEST(MoeReference, ShapeErrors) {
  MoeWeights w = small_layer();
  w.w_up.pop_back();
  expect_error([&] { w.check(); }, "w_up [E, I, H] must have 4 elements (got 3)");
  w = small_layer();
  w.per_expert_scale[1] = kNan;
  expect_error([&] { w.check(); }, "per_expert_scale[1] is nan");
  w = small_layer();
  w.k = 3;
  expect_error([&] { w.check(); }, "k must be in [1, E] (got k = 3, E = 2)");
}

// ---- cases ---------------------------------------------------------------------------

TEST(Cases, LayoutsAndGapFill) {
  RoutingCase c;
  c.T = 2;
  c.E = 3;
  c.k = 1;
  c.dtype = DType::f16;
  c.logits = {1, 2, 3, 4, 5, 6};
  for (Layout l : {Layout::contiguous, Layout::padded, Layout::transposed, Layout::strided}) {
    c.layout = l;
    c.pad = (l == Layout::padded || l == Layout::strided) ? 2 : 0;
    c.check_consistent();
    const MaterializedCase m = materialize(c);
    EXPECT_EQ(static_cast<std::int64_t>(m.storage.size()), c.storage_elems() * 2);
    std::int64_t gaps = 0;
    for (std::int64_t i = 0; i < c.storage_elems(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, m.storage.data() + i * 2, 2);
      if (std::isnan(half_bits_to_float(h))) ++gaps;
    }
    EXPECT_EQ(gaps, c.storage_elems() - 6) << layout_name(l);
    for (int t = 0; t < 2; ++t) {
      for (int e = 0; e < 3; ++e) EXPECT_EQ(m.view.at(t, e), c.logits[static_cast<std::size_t>(t * 3 + e)]) << layout_name(l);
    }
    Layout back;
    EXPECT_TRUE(parse_layout(layout_name(l), &back));
    EXPECT_EQ(back, l);
  }
  c.layout = Layout::strided;
  c.pad = 2;
  EXPECT_EQ(c.row_stride(), 9);
  EXPECT_EQ(c.col_stride(), 3);
  c.layout = Layout::transposed;
  EXPECT_EQ(c.row_stride(), 1);
  EXPECT_EQ(c.col_stride(), 2);
}

TEST(Cases, ConsistencyErrors) {
  RoutingCase c;
  c.T = 2;
  c.E = 3;
  c.logits = {1, 2, 3, 4, 5};
  expect_error([&] { c.check_consistent(); }, "logits has 5 values but T * E = 2 * 3 = 6");
  c.logits.push_back(6);
  c.scale = {1, 1};
  expect_error([&] { c.check_consistent(); }, "scale has 2 values but E = 3");
  c.scale.clear();
  c.layout = Layout::padded;
  expect_error([&] { c.check_consistent(); }, "layout padded needs pad >= 1 (got pad = 0)");
  c.layout = Layout::contiguous;
  c.dtype = DType::bf16;
  c.logits[4] = 1.0f + 0x1p-10f;
  expect_error([&] { c.check_consistent(); }, "logits[1, 1] = 1.00097656 is not exactly representable in bf16");
  c.logits[4] = kNan;
  c.check_consistent();
  const RoutingParams p = c.params();
  EXPECT_EQ(p.scale, nullptr);
  EXPECT_EQ(p.k, c.k);
}

// The shared helpers of reference/format.hpp and reference/splitmix64.hpp: corpus files, case
// seeds and generated cases depend on their exact output.
TEST(SharedHelpers, NumIsNineSignificantDigitsWithCSpellings) {
  EXPECT_EQ(num(0.1f), "0.100000001");
  EXPECT_EQ(num(1.0), "1");
  EXPECT_EQ(num(-0.0), "-0");
  EXPECT_EQ(num(3.4028234663852886e38), "3.40282347e+38");
  EXPECT_EQ(num(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(num(-std::numeric_limits<double>::infinity()), "-inf");
  EXPECT_EQ(num(std::numeric_limits<double>::quiet_NaN()), "nan");
}

TEST(SharedHelpers, Splitmix64FollowsThePublishedSequence) {
  // First outputs of the splitmix64 generator seeded with 0 and with 1234567.
  static_assert(splitmix64(std::uint64_t{0}) == 0xe220a8397b1dcdafull, "constexpr and stateless");
  std::uint64_t state = 0;
  EXPECT_EQ(splitmix64(&state), 0xe220a8397b1dcdafull);
  EXPECT_EQ(splitmix64(&state), 0x6e789e6aa1b965f4ull);
  EXPECT_EQ(splitmix64(&state), 0x06c45d188009454full);
  EXPECT_EQ(state, 3 * kSplitmix64Gamma);
  state = 1234567;
  EXPECT_EQ(splitmix64(&state), 0x599ed017fb08fc85ull);
  EXPECT_EQ(splitmix64(&state), 0x2c73f08458540fa5ull);
  // The stateless form is the step's output for the state before the step.
  EXPECT_EQ(splitmix64(std::uint64_t{1234567} + kSplitmix64Gamma), 0x2c73f08458540fa5ull);
}

}  // namespace
}  // namespace moecheck
