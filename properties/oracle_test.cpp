// Example-based tests of the tie-aware oracle and the metamorphic helpers: the oracle accepts
// the reference's own output and every alternative tie order, and rejects each planted
// corruption with a printable violation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "harness/core/case.hpp"
#include "harness/core/generators.hpp"
#include "reference/metamorphic.hpp"
#include "reference/oracle.hpp"
#include "reference/routing.hpp"

namespace moecheck {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

/// A contiguous fp32 problem.
struct Problem {
  std::vector<float> x;
  std::int64_t T = 1, E = 0;
  RoutingParams p;
  std::vector<float> scale, bias;
  GatingView view() const { return GatingView{x.data(), DType::f32, T, E, E, 1}; }
  RoutingParams params() const {
    RoutingParams q = p;
    q.scale = scale.empty() ? nullptr : scale.data();
    q.bias = bias.empty() ? nullptr : bias.data();
    return q;
  }
};

Problem problem(std::vector<float> x, std::int64_t E, Family f, int k) {
  Problem pr;
  pr.x = std::move(x);
  pr.E = E;
  pr.T = static_cast<std::int64_t>(pr.x.size()) / E;
  pr.p.family = f;
  pr.p.k = k;
  return pr;
}

struct Out {
  std::vector<float> w;
  std::vector<std::int32_t> ids;
};

Out reference_out(const Problem& pr) {
  Out o;
  o.w.resize(static_cast<std::size_t>(pr.T * pr.p.k));
  o.ids.resize(o.w.size());
  reference_routing_fn()(pr.view(), pr.params(), o.w.data(), o.ids.data());
  return o;
}

/// Weights of the family formula for the given ids of row 0, as fp32.
std::vector<float> weights_for(const Problem& pr, const std::vector<std::int32_t>& ids) {
  std::vector<double> x(pr.x.begin(), pr.x.begin() + pr.E), w(ids.size());
  reference_weights_for_ids(x.data(), pr.E, pr.params(), ids.data(), w.data());
  return std::vector<float>(w.begin(), w.end());
}

CheckReport check(const Problem& pr, const Out& o, OracleOptions opt = {}) {
  return check_routing(pr.view(), pr.params(), o.w.data(), o.ids.data(), opt);
}

bool has(const CheckReport& r, const std::string& check_name) {
  for (const Violation& v : r.violations) {
    if (v.check == check_name) return true;
  }
  return false;
}

// ---- acceptance ----------------------------------------------------------------------

TEST(OracleAccepts, ReferenceOutputOnGeneratedCases) {
  GenConfig cfg;
  cfg.max_T = 24;
  cfg.max_E = 300;
  cfg.max_elems = 1 << 14;
  std::int64_t ties = 0;
  for (std::uint64_t seed = 0; seed < 400; ++seed) {
    const RoutingCase c = generate_case(seed, cfg);
    const MaterializedCase m = materialize(c);
    std::vector<float> w(static_cast<std::size_t>(c.T * c.k));
    std::vector<std::int32_t> ids(w.size());
    poison_outputs(w.data(), ids.data(), static_cast<std::int64_t>(w.size()));
    reference_routing_fn()(m.view, m.params, w.data(), ids.data());
    const CheckReport r = check_routing(m.view, m.params, w.data(), ids.data());
    ASSERT_TRUE(r.ok()) << describe_case(c) << "\n" << r.str();
    EXPECT_EQ(r.rows_checked, c.T);
    ties += r.ties_at_kth;
  }
  EXPECT_GT(ties, 0);
}

TEST(OracleAccepts, AlternativeTieOrders) {
  const Problem pr = problem({3, 2, 2, 0}, 4, Family::softmax_topk, 2);
  const Out ref = reference_out(pr);
  ASSERT_EQ(ref.ids, (std::vector<std::int32_t>{0, 1}));  // reference: lower index wins the tie
  const CheckReport r0 = check(pr, ref);
  EXPECT_TRUE(r0.ok()) << r0.str();
  EXPECT_EQ(r0.ties_at_kth, 1);
  for (const std::vector<std::int32_t>& ids : {std::vector<std::int32_t>{0, 2}, std::vector<std::int32_t>{2, 0},
                                               std::vector<std::int32_t>{1, 0}}) {
    const Out alt{weights_for(pr, ids), ids};
    const CheckReport r = check(pr, alt);
    EXPECT_TRUE(r.ok()) << r.str();
  }
}

TEST(OracleAccepts, TieChoiceWithDifferentScales) {
  // the tied experts have different scales: the weights follow the chosen ids
  Problem pr = problem({3, 2, 2, 0}, 4, Family::gemma4, 2);
  pr.scale = {1, 1, 0.5f, 1};
  const std::vector<std::int32_t> ids = {0, 2};
  const Out alt{weights_for(pr, ids), ids};
  EXPECT_TRUE(check(pr, alt).ok());
  const Out wrong{weights_for(pr, {0, 1}), ids};  // weights of the other tie choice
  const CheckReport r = check(pr, wrong);
  EXPECT_TRUE(has(r, "weight")) << r.str();
}

TEST(OracleAccepts, NanTiesWithNegativeInfinityAndMaskedRows) {
  const Problem pr = problem({kNan, -kInf, 5}, 3, Family::softmax_topk, 2);
  for (const std::vector<std::int32_t>& ids : {std::vector<std::int32_t>{2, 0}, std::vector<std::int32_t>{2, 1}}) {
    const Out o{{1.0f, 0.0f}, ids};
    EXPECT_TRUE(check(pr, o).ok()) << check(pr, o).str();
  }
  const Problem masked = problem({-kInf, kNan, -kInf}, 3, Family::softmax_topk, 2);
  EXPECT_TRUE(check(masked, Out{{0.0f, 0.0f}, {2, 1}}).ok());
  const CheckReport r = check(masked, Out{{kNan, 0.0f}, {2, 1}});  // the zero-sum guard is missing
  ASSERT_TRUE(has(r, "weight")) << r.str();
  std::cout << "masked row with a NaN weight:\n" << r.str() << "\n";
}

TEST(OracleAccepts, GroupLevelTieAlternative) {
  // groups {0,1} and {2,3} have equal scores s(2)+s(0): either group may be chosen
  Problem pr = problem({2, 0, 0, 2}, 4, Family::sigmoid_grouped, 1);
  pr.p.n_group = 2;
  pr.p.topk_group = 1;
  EXPECT_EQ(reference_out(pr).ids, (std::vector<std::int32_t>{0}));
  const Out alt{weights_for(pr, {3}), {3}};
  const CheckReport r = check(pr, alt);
  EXPECT_TRUE(r.ok()) << r.str();
  EXPECT_EQ(r.ties_at_kth, 1);
}

// ---- rejection of planted corruptions ------------------------------------------------

TEST(OracleRejects, WeightAFewUlpsBeyondTolerance) {
  Problem pr = problem({1, 2, 3, 0}, 4, Family::gemma4, 2);
  pr.scale = {1, 0.75f, 1.25f, 1};
  const Out ref = reference_out(pr);
  std::vector<double> x(pr.x.begin(), pr.x.end()), u(2), s(2);
  reference_unscaled_weights_for_ids(x.data(), 4, pr.params(), ref.ids.data(), u.data(), s.data());
  const WeightBoundInputs b = weight_bound_inputs(x.data(), 4, pr.params(), ref.ids.data());
  const double expected = u[0] * s[0];
  const double tol = weight_tolerance(fp32_exact_selection(), u[0], s[0], b.max_arg, b.n_terms, b.denominator);
  Out inside = ref;
  inside.w[0] = static_cast<float>(expected + 0.5 * tol);
  EXPECT_TRUE(check(pr, inside).ok()) << check(pr, inside).str();
  Out beyond = ref;
  float f = static_cast<float>(expected + tol);
  while (static_cast<double>(f) - expected <= tol) f = std::nextafter(f, kInf);
  for (int i = 0; i < 2; ++i) f = std::nextafter(f, kInf);  // 3 ulps beyond the bound
  beyond.w[0] = f;
  const CheckReport r = check(pr, beyond);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.violations.size(), 1u);
  const Violation& v = r.violations[0];
  EXPECT_EQ(v.check, "weight");
  EXPECT_EQ(v.row, 0);
  EXPECT_EQ(v.slot, 0);
  EXPECT_EQ(v.expert, 2);
  EXPECT_EQ(v.tolerance, tol);
  EXPECT_EQ(v.str().rfind("row 0 slot 0 expert 2: weight expected ", 0), 0u) << v.str();
  std::cout << "weight 3 ulps beyond tolerance:\n" << r.str() << "\n";
}

TEST(OracleRejects, SwappedIds) {
  const Problem pr = problem({1, 2, 3, 0}, 4, Family::softmax_topk, 2);
  Out o = reference_out(pr);
  std::swap(o.ids[0], o.ids[1]);
  const CheckReport r = check(pr, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.violations_total, 2);
  EXPECT_EQ(r.violations[0].check, "weight");
  std::cout << "swapped ids:\n" << r.str() << "\n";
}

TEST(OracleRejects, DuplicateId) {
  const Problem pr = problem({1, 2, 3, 0}, 4, Family::softmax_topk, 2);
  Out o = reference_out(pr);
  o.ids[1] = o.ids[0];
  const CheckReport r = check(pr, o);
  ASSERT_TRUE(has(r, "duplicate-id")) << r.str();
  EXPECT_NE(r.violations[0].str().find("expert 2 also in slot 0"), std::string::npos) << r.str();
  std::cout << "duplicate id:\n" << r.str() << "\n";
}

TEST(OracleRejects, OutOfRangeId) {
  const Problem pr = problem({1, 2, 3, 0}, 4, Family::softmax_topk, 2);
  for (std::int32_t bad : {4, -1, 1 << 30}) {
    Out o = reference_out(pr);
    o.ids[1] = bad;
    const CheckReport r = check(pr, o);
    ASSERT_TRUE(has(r, "id-range")) << r.str();
    if (bad == 4) std::cout << "out-of-range id:\n" << r.str() << "\n";
  }
}

TEST(OracleRejects, UnwrittenSlot) {
  const Problem pr = problem({1, 2, 3, 0, 5, 4, 3, 2}, 4, Family::softmax_topk, 2);
  const Out ref = reference_out(pr);
  Out o = ref;
  poison_outputs(o.w.data(), o.ids.data(), 4);
  for (int i = 0; i < 3; ++i) {  // the last slot of the last row is never written
    o.w[static_cast<std::size_t>(i)] = ref.w[static_cast<std::size_t>(i)];
    o.ids[static_cast<std::size_t>(i)] = ref.ids[static_cast<std::size_t>(i)];
  }
  const CheckReport r = check(pr, o);
  ASSERT_EQ(r.violations_total, 2) << r.str();  // the id and the weight of row 1 slot 1
  EXPECT_EQ(r.violations[0].check, "unwritten");
  EXPECT_EQ(r.violations[0].row, 1);
  EXPECT_EQ(r.violations[0].slot, 1);
  std::cout << "unwritten slot:\n" << r.str() << "\n";
  // only the weight unwritten
  Out w_only = ref;
  poison_outputs(w_only.w.data() + 3, std::vector<std::int32_t>(1).data(), 1);
  const CheckReport r2 = check(pr, w_only);
  ASSERT_EQ(r2.violations_total, 1) << r2.str();
  EXPECT_NE(r2.violations[0].detail.find("weight slot never written"), std::string::npos);
}

TEST(OracleRejects, SelectionOutsideTheBand) {
  const Problem pr = problem({1, 2, 3, 0}, 4, Family::softmax_topk, 2);
  const std::vector<std::int32_t> ids = {2, 0};  // expert 1 (logit 2) beats expert 0 (logit 1)
  const Out o{weights_for(pr, ids), ids};  // weights consistent with the wrong ids
  const CheckReport r = check(pr, o);
  // Expert 1 (unselected, key 2) is not itself a violation: it equals the k-th key, which the
  // valid-selection rule allows; the selected expert 0 below the k-th key is.
  ASSERT_EQ(r.violations_total, 1) << r.str();
  const Violation& sel = r.violations[0];
  EXPECT_EQ(sel.check, "selection");
  EXPECT_EQ(sel.expert, 0);
  EXPECT_EQ(sel.expected, 2.0);  // the k-th key
  EXPECT_EQ(sel.margin, -1.0);
  std::cout << "selection outside the band:\n" << r.str() << "\n";
}

TEST(OracleRejects, NearTieIsInsideTheBandOnlyWhenBandIsSet) {
  const float a = 1.0f, b = std::nextafter(1.0f, 0.0f);  // adjacent fp32 values
  const Problem pr = problem({a, b, 0}, 3, Family::softmax_topk, 1);
  const Out o{weights_for(pr, {1}), {1}};
  const CheckReport exact = check(pr, o);
  EXPECT_TRUE(has(exact, "selection")) << exact.str();
  OracleOptions banded;
  banded.precision.select_band_ulps = 2;
  EXPECT_TRUE(check(pr, o, banded).ok()) << check(pr, o, banded).str();
}

TEST(OracleRejects, ExpertFromALosingGroup) {
  // g0 = s(2) + s(0) = 1.381 < g1 = 2 s(1) = 1.462: only group 1 may be used
  Problem pr = problem({2, 0, 1, 1}, 4, Family::sigmoid_grouped, 1);
  pr.p.n_group = 2;
  pr.p.topk_group = 1;
  EXPECT_EQ(reference_out(pr).ids, (std::vector<std::int32_t>{2}));
  const Out o{weights_for(pr, {0}), {0}};
  const CheckReport r = check(pr, o);
  ASSERT_TRUE(has(r, "group-selection")) << r.str();
  std::cout << "expert from a losing group:\n" << r.str() << "\n";
  // two groups used with topk_group = 1
  Problem pr2 = problem({2, 0, 1, 1}, 4, Family::sigmoid_grouped, 2);
  pr2.p.n_group = 2;
  pr2.p.topk_group = 1;
  const Out o2{weights_for(pr2, {2, 0}), {2, 0}};
  EXPECT_TRUE(has(check(pr2, o2), "group-selection"));
}

TEST(OracleRejects, MisuseIsAnError) {
  const Problem pr = problem({1, 2, 3, 0}, 4, Family::softmax_topk, 5);
  const std::vector<float> w(5);
  const std::vector<std::int32_t> ids(5);
  EXPECT_THROW(check_routing(pr.view(), pr.params(), w.data(), ids.data()), RoutingError);
}

TEST(OracleReport, ViolationCapAndTotal) {
  const Problem pr = problem(std::vector<float>(20 * 3, 1.0f), 3, Family::softmax_topk, 1);
  std::vector<float> w(20);
  std::vector<std::int32_t> ids(20);
  poison_outputs(w.data(), ids.data(), 20);
  const CheckReport r = check_routing(pr.view(), pr.params(), w.data(), ids.data());
  EXPECT_EQ(r.violations.size(), 8u);
  EXPECT_EQ(r.violations_total, 40);
  EXPECT_EQ(r.rows_checked, 20);
  EXPECT_EQ(r.ties_at_kth, 20);
  EXPECT_NE(r.str().find("FAILED: 40 violation(s) in 20 row(s)"), std::string::npos) << r.str();
}

// ---- bound helpers -------------------------------------------------------------------

TEST(OracleBounds, UlpFp32) {
  EXPECT_EQ(ulp_fp32(1.0), 0x1p-23);
  EXPECT_EQ(ulp_fp32(1.999), 0x1p-23);
  EXPECT_EQ(ulp_fp32(-2.0), 0x1p-22);
  EXPECT_EQ(ulp_fp32(0.0), 0x1p-149);
  EXPECT_EQ(ulp_fp32(1e-40), 0x1p-149);
  EXPECT_EQ(ulp_fp32(0x1p-126), 0x1p-149);
  EXPECT_TRUE(std::isinf(ulp_fp32(-INFINITY)));
}

TEST(OracleBounds, WeightToleranceFormula) {
  // reference/EDGE_CASES.md "Error bounds": rel = (4A + 2X + n + 5) u; tol = 1.05 rel |w| + min_normal (1 + |s|)(n + 1) / min(den, 1)
  const Precision p = fp32_exact_selection();
  const double u = 0x1p-24;
  EXPECT_DOUBLE_EQ(weight_tolerance(p, 0.5, 2.0, 3.0, 4),
                   1.05 * (12 + 4 + 4 + 5) * u * 1.0 + 0x1p-126 * 3 * 5);
  EXPECT_DOUBLE_EQ(weight_tolerance(p, 0.5, 1.0, 500.0, 2), 1.05 * (416 + 4 + 2 + 5) * u * 0.5 + 0x1p-126 * 2 * 3);
  EXPECT_DOUBLE_EQ(weight_tolerance(p, 0.5, 1.0, 0.0, 2, 0x1p-100), 1.05 * 11 * u * 0.5 + 0x1p-126 * 2 * 3 * 0x1p100);
  const Precision h = compute_precision(DType::f16);
  EXPECT_EQ(h.compute_eps, 0x1p-11);
  EXPECT_EQ(h.min_normal, 0x1p-14);
}

// ---- metamorphic helpers -------------------------------------------------------------

RoutingFn scale_by_slot_impl() {
  return [](const GatingView& g, const RoutingParams& p, float* w, std::int32_t* ids) {
    RoutingParams q = p;
    q.scale = nullptr;
    reference_routing_fn()(g, q, w, ids);
    for (std::int64_t t = 0; t < g.T; ++t) {
      for (int j = 0; j < p.k; ++j) w[t * p.k + j] *= p.scale ? p.scale[j] : 1.0f;
    }
  };
}

TEST(Metamorphic, ReferencePassesAllRelations) {
  GenConfig cfg;
  cfg.max_T = 16;
  cfg.max_E = 200;
  cfg.max_elems = 1 << 13;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const RoutingCase c = generate_case(seed, cfg);
    const MaterializedCase m = materialize(c);
    const RoutingFn ref = reference_routing_fn();
    std::vector<float> sb(static_cast<std::size_t>(c.E));
    for (std::size_t e = 0; e < sb.size(); ++e) sb[e] = static_cast<float>(e % 5) - 1.5f;
    std::vector<float> sa = c.scale.empty() ? std::vector<float>(sb.size(), 1.0f) : c.scale;
    const CheckReport a = check_scale_linearity(m.view, m.params, ref, sa, sb);
    ASSERT_TRUE(a.ok()) << describe_case(c) << "\n" << a.str();
    ASSERT_TRUE(check_scale_multiple(m.view, m.params, ref, -3.0f).ok());
    if (row_shift_applies(c.family)) {
      const CheckReport b = check_row_shift(m.view, m.params, ref);
      ASSERT_TRUE(b.ok()) << describe_case(c) << "\n" << b.str();
    }
    const CheckReport p = check_permutation(m.view, m.params, ref, make_permutation(c.E, c.n_group, seed));
    ASSERT_TRUE(p.ok()) << describe_case(c) << "\n" << p.str();
  }
}

TEST(Metamorphic, ScaleLinearityCatchesScaleBySlot) {
  Problem pr = problem({1, 2, 3, 0}, 4, Family::gemma4, 2);
  const std::vector<float> sa = {1, 1, 1, 1}, sb = {1, 2, 3, 4};
  const CheckReport r = check_scale_linearity(pr.view(), pr.params(), scale_by_slot_impl(), sa, sb);
  ASSERT_TRUE(has(r, "metamorphic-weight")) << r.str();
  std::cout << "scale linearity, scale by slot:\n" << r.str() << "\n";
}

TEST(Metamorphic, ScaleLinearityCatchesAnIgnoredScale) {
  const Problem pr = problem({1, 2, 3, 0}, 4, Family::gemma4, 2);
  const RoutingFn ignore = [](const GatingView& g, const RoutingParams& p, float* w, std::int32_t* ids) {
    RoutingParams q = p;
    q.scale = nullptr;
    reference_routing_fn()(g, q, w, ids);
  };
  EXPECT_FALSE(check_scale_multiple(pr.view(), pr.params(), ignore, 2.0f).ok());
  // and a zero scale must remove the contribution
  const std::vector<float> sa = {1, 1, 1, 1}, sb = {0, 0, 0, 0};
  EXPECT_FALSE(check_scale_linearity(pr.view(), pr.params(), ignore, sa, sb).ok());
}

TEST(Metamorphic, RowShiftCatchesShiftDependentWeights) {
  const Problem pr = problem({1, 2, 3, 0, 0.5f, 0.25f, -1, 4}, 4, Family::softmax_topk, 2);
  const RoutingFn skewed = [](const GatingView& g, const RoutingParams& p, float* w, std::int32_t* ids) {
    reference_routing_fn()(g, p, w, ids);
    for (std::int64_t t = 0; t < g.T; ++t) {
      for (int j = 0; j < p.k; ++j) w[t * p.k + j] *= static_cast<float>(1.0 + 0.01 * g.at(t, ids[t * p.k + j]));
    }
  };
  const std::vector<double> shifts = exact_row_shifts(pr.view());
  EXPECT_NE(shifts[0], 0.0);
  const CheckReport r = check_row_shift(pr.view(), pr.params(), skewed);
  ASSERT_TRUE(has(r, "metamorphic-weight")) << r.str();
  std::cout << "row shift, shift-dependent weights:\n" << r.str() << "\n";
  EXPECT_THROW(check_row_shift(pr.view(), pr.params(), skewed, std::vector<double>{0.1, 0.0}), RoutingError);  // inexact shift
  Problem grouped = pr;
  grouped.p.family = Family::sigmoid_grouped;
  EXPECT_THROW(check_row_shift(grouped.view(), grouped.params(), skewed), RoutingError);
}

TEST(Metamorphic, PermutationCatchesAPositionDependentKernel) {
  // a kernel that never selects the last column
  const RoutingFn blind = [](const GatingView& g, const RoutingParams& p, float* w, std::int32_t* ids) {
    std::vector<float> x(static_cast<std::size_t>(g.T * g.E));
    for (std::int64_t t = 0; t < g.T; ++t) {
      for (std::int64_t e = 0; e < g.E; ++e) {
        x[static_cast<std::size_t>(t * g.E + e)] = e == g.E - 1 ? -kInf : static_cast<float>(g.at(t, e));
      }
    }
    const GatingView h{x.data(), DType::f32, g.T, g.E, g.E, 1};
    reference_routing_fn()(h, p, w, ids);
  };
  const Problem pr = problem({1, 2, 3, 0}, 4, Family::softmax_topk, 2);
  const CheckReport r = check_permutation(pr.view(), pr.params(), blind, {3, 0, 1, 2});
  ASSERT_TRUE(has(r, "metamorphic-ids")) << r.str();
  std::cout << "permutation, position-dependent kernel:\n" << r.str() << "\n";
  EXPECT_THROW(check_permutation(pr.view(), pr.params(), blind, {0, 0, 1, 2}), RoutingError);
  Problem grouped = problem({1, 2, 3, 0}, 4, Family::sigmoid_grouped, 1);
  grouped.p.n_group = 2;
  EXPECT_THROW(check_permutation(grouped.view(), grouped.params(), blind, {0, 2, 1, 3}), RoutingError);
  EXPECT_TRUE(check_permutation(grouped.view(), grouped.params(), reference_routing_fn(), {3, 2, 0, 1}).ok());
}

TEST(Metamorphic, ScaleBySlotIsCaughtByPermutation) {
  Problem pr = problem({1, 2, 3, 0}, 4, Family::gemma4, 2);
  pr.scale = {1, 2, 3, 4};
  const CheckReport r = check_permutation(pr.view(), pr.params(), scale_by_slot_impl(), {3, 2, 1, 0});
  EXPECT_TRUE(has(r, "metamorphic-weight")) << r.str();
}

}  // namespace
}  // namespace moecheck
