// moecheck metamorphic relations: implementation of reference/metamorphic.hpp.
//
// The comparisons implemented here are documented in reference/EDGE_CASES.md
// ("Metamorphic relations" under "Oracle rules"); keep them in sync.
#include "reference/metamorphic.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "reference/oracle_detail.hpp"

namespace moecheck {

using namespace oracle_detail;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// Outputs of one run of the implementation.
struct Run {
  std::vector<float> w;
  std::vector<std::int32_t> ids;
};

Run run_impl(const RoutingFn& impl, const GatingView& g, const RoutingParams& p) {
  Run r;
  const std::size_t n = static_cast<std::size_t>(g.T * p.k);
  r.w.resize(n);
  r.ids.resize(n);
  poison_outputs(r.w.data(), r.ids.data(), static_cast<std::int64_t>(n));
  impl(g, p, r.w.data(), r.ids.data());
  return r;
}

/// Stores v (exact in d, checked by callers) at element idx of a dtype buffer.
void store(DType d, std::vector<std::uint8_t>& buf, std::int64_t idx, float v) {
  if (d == DType::f32) {
    std::memcpy(buf.data() + idx * 4, &v, 4);
  } else {
    const std::uint16_t h = d == DType::f16 ? float_to_half_bits(v) : float_to_bf16_bits(v);
    std::memcpy(buf.data() + idx * 2, &h, 2);
  }
}

/// Weight relation of one expert present in both runs. unscaled/mult: reference unscaled
/// weight and final multiplier of the expert under the original params; b: bound inputs of
/// the row for the first run's ids. Returns true when fine; otherwise fills
/// expected/got/tolerance for the violation.
using WeightRelation =
    std::function<bool(std::int32_t expert, double unscaled, double mult, const WeightBoundInputs& b,
                       double wa, double wb, double* expected, double* got, double* tol)>;

/* Compares two runs row by row. ids of run b are mapped to the original numbering with
 * `map_b` (identity when empty). Keys and tolerances come from the original problem (g, p).
 * Equal id sets: weights compared per expert with `rel` (skipped when rel is empty).
 * Different sets: both selections must be valid by the band rule (a tie choice); weights
 * are then compared only for band 0, where tied values are equal. */
CheckReport compare_runs(const GatingView& g, const RoutingParams& p, const Run& a, const Run& b,
                         const std::vector<std::int64_t>& map_b, const WeightRelation& rel,
                         const std::string& what, const OracleOptions& opt) {
  CheckReport rep;
  Sink sink(&rep, opt.max_violations);
  Sink mute(nullptr, 1);
  const int k = p.k;
  std::vector<double> x, key, unscaled(static_cast<std::size_t>(k)), mult(static_cast<std::size_t>(k));
  std::vector<char> wa_ok, wb_ok;
  std::vector<std::int32_t> idb(static_cast<std::size_t>(k));
  const std::string who_a = what + ": first run: ";
  const std::string who_b = what + ": transformed run: ";
  for (std::int64_t t = 0; t < g.T; ++t) {
    load_row(g, t, x);
    row_keys(x, p, key);
    ++rep.rows_checked;
    if (row_has_kth_tie(key, p, g.E)) ++rep.ties_at_kth;
    const float* wa = a.w.data() + t * k;
    const float* wb = b.w.data() + t * k;
    const std::int32_t* ida = a.ids.data() + t * k;
    const std::int32_t* idb_raw = b.ids.data() + t * k;
    const bool oka = structural_row(wa, ida, k, g.E, t, opt.check_poison, who_a, sink, wa_ok);
    const bool okb = structural_row(wb, idb_raw, k, g.E, t, opt.check_poison, who_b, sink, wb_ok);
    if (!oka || !okb) continue;
    for (int j = 0; j < k; ++j) {
      const std::int32_t v = idb_raw[j];
      idb[static_cast<std::size_t>(j)] =
          map_b.empty() ? v : static_cast<std::int32_t>(map_b[static_cast<std::size_t>(v)]);
    }
    std::vector<std::int32_t> sa(ida, ida + k), sb = idb;
    std::sort(sa.begin(), sa.end());
    std::sort(sb.begin(), sb.end());
    bool compare_weights = true;
    if (sa != sb) {
      double vk = 0;
      const double band = opt.precision.select_band_ulps;
      const bool va = check_selection_row(key, p, g.E, ida, band, t, mute, &vk);
      const bool vb = check_selection_row(key, p, g.E, idb.data(), band, t, mute, &vk);
      if (!va || !vb) {
        std::string la, lb;
        for (auto e : sa) la += (la.empty() ? "" : ",") + std::to_string(e);
        for (auto e : sb) lb += (lb.empty() ? "" : ",") + std::to_string(e);
        sink.add(make_violation("metamorphic-ids", t, -1, -1,
                                what + ": expert sets differ ({" + la + "} vs {" + lb + "}) and the " +
                                    (!va ? "first" : "transformed") +
                                    " run's selection is not a valid tie choice"));
        continue;
      }
      // Equal keys give equal weights in the softmax families (the key is the logit), so the
      // experts both runs chose can still be compared. In sigmoid_grouped a tied key can hide
      // different sigmoid values (bias) or different group members, which changes every
      // renormalised weight of the row: only the selection is comparable there.
      compare_weights = !(band > 0.0) && p.family != Family::sigmoid_grouped;
    }
    if (!compare_weights || !rel) continue;
    reference_unscaled_weights_for_ids(x.data(), g.E, p, ida, unscaled.data(), mult.data());
    const WeightBoundInputs bound = weight_bound_inputs(x.data(), g.E, p, ida);
    for (int j = 0; j < k; ++j) {
      if (!wa_ok[static_cast<std::size_t>(j)]) continue;
      int jb = -1;
      for (int i = 0; i < k; ++i) {
        if (idb[static_cast<std::size_t>(i)] == ida[j]) jb = i;
      }
      if (jb < 0 || !wb_ok[static_cast<std::size_t>(jb)]) continue;
      double expected = 0, got = 0, tol = 0;
      if (!rel(ida[j], unscaled[static_cast<std::size_t>(j)], mult[static_cast<std::size_t>(j)], bound, wa[j],
               wb[jb], &expected, &got, &tol)) {
        Violation v = make_violation("metamorphic-weight", t, j, ida[j],
                                     what + " (transformed run slot " + std::to_string(jb) + ")");
        v.expected = expected;
        v.got = got;
        v.tolerance = tol;
        sink.add(std::move(v));
      }
    }
  }
  return rep;
}

/// Relation "same weight in both runs" for shift and permutation: |wa - wb| <= 2 * bound.
WeightRelation equal_weights(const Precision& prec) {
  return [prec](std::int32_t, double u, double mult, const WeightBoundInputs& b, double wa, double wb,
                double* ex, double* gt, double* tl) {
    *ex = wa;
    *gt = wb;
    *tl = 2.0 * weight_tolerance(prec, u, mult, b.max_arg, b.n_terms, b.denominator);
    return std::fabs(wa - wb) <= *tl;
  };
}

}  // namespace

RoutingFn reference_routing_fn() {
  return [](const GatingView& g, const RoutingParams& p, float* weights, std::int32_t* ids) {
    std::vector<double> w(static_cast<std::size_t>(std::max<std::int64_t>(g.T, 0) * p.k));
    route_reference(g, p, w.data(), ids);
    for (std::size_t i = 0; i < w.size(); ++i) weights[i] = static_cast<float>(w[i]);
  };
}

CheckReport check_scale_linearity(const GatingView& g, const RoutingParams& p, const RoutingFn& impl,
                                  const std::vector<float>& scale_a, const std::vector<float>& scale_b,
                                  const OracleOptions& opt) {
  for (const auto* s : {&scale_a, &scale_b}) {
    if (static_cast<std::int64_t>(s->size()) != g.E) {
      throw RoutingError("scale vectors must have E = " + std::to_string(g.E) + " entries (got " +
                         std::to_string(s->size()) + ")");
    }
  }
  RoutingParams pa = p, pb = p;
  pa.scale = scale_a.data();
  pb.scale = scale_b.data();
  validate_routing(g, pa);
  validate_routing(g, pb);
  const Run ra = run_impl(impl, g, pa);
  const Run rb = run_impl(impl, g, pb);
  const Precision prec = opt.precision;
  WeightRelation rel;
  if (p.family == Family::gemma4) {
    // w_a(e) = u(e) s_a(e) and w_b(e) = u(e) s_b(e)  =>  w_a s_b == w_b s_a
    rel = [&, prec](std::int32_t e, double u, double, const WeightBoundInputs& b, double wa, double wb,
                    double* ex, double* gt, double* tl) {
      const double sa = scale_a[static_cast<std::size_t>(e)];
      const double sb = scale_b[static_cast<std::size_t>(e)];
      const double ta = weight_tolerance(prec, u, sa, b.max_arg, b.n_terms, b.denominator);
      const double tb = weight_tolerance(prec, u, sb, b.max_arg, b.n_terms, b.denominator);
      if (sa == 0.0 && !(std::fabs(wa) <= ta)) {  // zero scale removes the contribution
        *ex = 0.0, *gt = wa, *tl = ta;
        return false;
      }
      if (sb == 0.0 && !(std::fabs(wb) <= tb)) {
        *ex = 0.0, *gt = wb, *tl = tb;
        return false;
      }
      *ex = wb * sa;
      *gt = wa * sb;
      *tl = ta * std::fabs(sb) + tb * std::fabs(sa);
      return std::fabs(*gt - *ex) <= *tl;
    };
  } else {
    rel = equal_weights(prec);  // the scale is not used by this family: no effect allowed
  }
  return compare_runs(g, pa, ra, rb, {}, rel, "scale linearity", opt);
}

CheckReport check_scale_multiple(const GatingView& g, const RoutingParams& p, const RoutingFn& impl,
                                 float c, const OracleOptions& opt) {
  std::vector<float> a(static_cast<std::size_t>(std::max<std::int64_t>(g.E, 0)), 1.0f);
  if (p.scale) a.assign(p.scale, p.scale + g.E);
  std::vector<float> b(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) b[i] = a[i] * c;
  return check_scale_linearity(g, p, impl, a, b, opt);
}

bool row_shift_applies(Family f) { return f != Family::sigmoid_grouped; }

std::vector<double> exact_row_shifts(const GatingView& g) {
  std::vector<double> shifts(static_cast<std::size_t>(std::max<std::int64_t>(g.T, 0)), 0.0);
  std::vector<double> vals;
  for (std::int64_t t = 0; t < g.T; ++t) {
    vals.clear();
    for (std::int64_t e = 0; e < g.E; ++e) {
      const double x = g.at(t, e);
      if (std::isfinite(x)) vals.push_back(x);
    }
    if (vals.empty()) {
      shifts[static_cast<std::size_t>(t)] = 1.0;  // nothing finite: every shift is exact
      continue;
    }
    double q = kInf, mx = -kInf, mn = kInf;
    for (double x : vals) {
      mx = std::max(mx, x);
      mn = std::min(mn, x);
      if (x == 0.0) continue;
      int ex = 0;
      const double m = std::frexp(std::fabs(x), &ex);  // |x| = m * 2^ex, m in [0.5, 1)
      auto mant = static_cast<std::uint64_t>(std::ldexp(m, 53));
      int tz = 0;
      while ((mant & 1u) == 0) {
        mant >>= 1;
        ++tz;
      }
      q = std::min(q, std::ldexp(1.0, ex - 53 + tz));  // value of the lowest set bit of x
    }
    if (!std::isfinite(q)) q = 1.0;
    const double cands[] = {-mx, -mn, 1, -1, 3, -3, 0.5, -0.5, 16, -16, 256, -256, q, -q, 2 * q, -2 * q};
    for (double c : cands) {
      if (c == 0.0 || !std::isfinite(c)) continue;
      bool ok = true;
      for (double x : vals) {
        const double s = x + c;
        const float f = static_cast<float>(s);
        if (s - c != x || s - x != c || !std::isfinite(f) || static_cast<double>(f) != s ||
            round_to_dtype(f, g.dtype) != f) {
          ok = false;
          break;
        }
      }
      if (ok) {
        shifts[static_cast<std::size_t>(t)] = c;
        break;
      }
    }
  }
  return shifts;
}

CheckReport check_row_shift(const GatingView& g, const RoutingParams& p, const RoutingFn& impl,
                            const std::vector<double>& shifts, const OracleOptions& opt) {
  validate_routing(g, p);
  if (!row_shift_applies(p.family)) {
    throw RoutingError(std::string("row-shift invariance does not hold for family ") + family_name(p.family) +
                       " (sigmoid scores are not shift-invariant)");
  }
  if (static_cast<std::int64_t>(shifts.size()) != g.T) {
    throw RoutingError("shifts must have T = " + std::to_string(g.T) + " entries (got " +
                       std::to_string(shifts.size()) + ")");
  }
  const std::int64_t T = g.T, E = g.E;
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(T * E) * dtype_size(g.dtype));
  for (std::int64_t t = 0; t < T; ++t) {
    const double c = shifts[static_cast<std::size_t>(t)];
    for (std::int64_t e = 0; e < E; ++e) {
      const double x = g.at(t, e);
      double s = x;
      if (std::isfinite(x)) {
        s = x + c;
        const float f = static_cast<float>(s);
        if (s - c != x || !std::isfinite(f) || static_cast<double>(f) != s || round_to_dtype(f, g.dtype) != f) {
          throw RoutingError("shifts[" + std::to_string(t) + "] = " + fmt("%.9g", c) + " makes logit " +
                             fmt("%.9g", x) + " (expert " + std::to_string(e) + ") inexact in " +
                             dtype_name(g.dtype));
        }
      }
      store(g.dtype, buf, t * E + e, static_cast<float>(s));
    }
  }
  const GatingView gs{buf.empty() ? nullptr : buf.data(), g.dtype, T, E, E, 1};
  const Run ra = run_impl(impl, g, p);
  const Run rb = run_impl(impl, gs, p);
  // sigmoid_top1: ids only (its weight sigmoid(x) is not shift-invariant)
  const WeightRelation rel = p.family == Family::sigmoid_top1 ? WeightRelation{} : equal_weights(opt.precision);
  return compare_runs(g, p, ra, rb, {}, rel, "row shift", opt);
}

CheckReport check_row_shift(const GatingView& g, const RoutingParams& p, const RoutingFn& impl,
                            const OracleOptions& opt) {
  validate_routing(g, p);
  return check_row_shift(g, p, impl, exact_row_shifts(g), opt);
}

CheckReport check_permutation(const GatingView& g, const RoutingParams& p, const RoutingFn& impl,
                              const std::vector<std::int64_t>& perm, const OracleOptions& opt) {
  validate_routing(g, p);
  const std::int64_t T = g.T, E = g.E;
  if (static_cast<std::int64_t>(perm.size()) != E) {
    throw RoutingError("perm must have E = " + std::to_string(E) + " entries (got " + std::to_string(perm.size()) +
                       ")");
  }
  std::vector<char> seen(static_cast<std::size_t>(E), 0);
  for (std::int64_t j = 0; j < E; ++j) {
    const std::int64_t v = perm[static_cast<std::size_t>(j)];
    if (v < 0 || v >= E || seen[static_cast<std::size_t>(v)]) {
      throw RoutingError("perm is not a permutation of [0, E): perm[" + std::to_string(j) + "] = " +
                         std::to_string(v));
    }
    seen[static_cast<std::size_t>(v)] = 1;
  }
  if (p.family == Family::sigmoid_grouped) {
    const std::int64_t gs = E / p.n_group;
    for (std::int64_t j = 0; j < E; ++j) {
      const std::int64_t first = perm[static_cast<std::size_t>((j / gs) * gs)] / gs;
      if (perm[static_cast<std::size_t>(j)] / gs != first) {
        throw RoutingError("perm moves expert " + std::to_string(perm[static_cast<std::size_t>(j)]) +
                           " across groups (sigmoid_grouped needs whole groups mapped onto whole groups)");
      }
    }
  }
  const std::size_t es = dtype_size(g.dtype);
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(T * E) * es);
  const auto* src = static_cast<const std::uint8_t*>(g.data);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t j = 0; j < E; ++j) {  // raw bytes: NaN payloads move unchanged
      const std::int64_t from = t * g.row_stride + perm[static_cast<std::size_t>(j)] * g.col_stride;
      std::memcpy(buf.data() + static_cast<std::size_t>(t * E + j) * es,
                  src + from * static_cast<std::int64_t>(es), es);
    }
  }
  std::vector<float> sc, bi;
  RoutingParams pp = p;
  if (p.scale) {
    sc.resize(static_cast<std::size_t>(E));
    for (std::int64_t j = 0; j < E; ++j) sc[static_cast<std::size_t>(j)] = p.scale[perm[static_cast<std::size_t>(j)]];
    pp.scale = sc.data();
  }
  if (p.bias) {
    bi.resize(static_cast<std::size_t>(E));
    for (std::int64_t j = 0; j < E; ++j) bi[static_cast<std::size_t>(j)] = p.bias[perm[static_cast<std::size_t>(j)]];
    pp.bias = bi.data();
  }
  const GatingView gp{buf.empty() ? nullptr : buf.data(), g.dtype, T, E, E, 1};
  const Run ra = run_impl(impl, g, p);
  const Run rb = run_impl(impl, gp, pp);
  return compare_runs(g, p, ra, rb, perm, equal_weights(opt.precision), "expert permutation", opt);
}

}  // namespace moecheck
