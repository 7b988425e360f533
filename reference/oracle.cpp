// moecheck oracles: implementation of reference/oracle.hpp (the tie-aware oracle, its
// precision model and error bounds). The metamorphic relations are in metamorphic.cpp.
//
// The selection rule and the weight bound implemented here are documented in
// reference/EDGE_CASES.md ("Oracle rules" and "Error bounds"); keep them in sync.
#include "reference/oracle.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <numeric>
#include <sstream>
#include <utility>

#include "reference/oracle_detail.hpp"
#include "reference/row_select.hpp"

namespace moecheck {

using namespace oracle_detail;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
/// Arguments of exp beyond this are irrelevant in fp32: exp(-104) < 2^-149 rounds to zero.
constexpr double kMaxExpArg = 104.0;

std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// delta of the band rule: band_ulps * ulp_fp32(v); 0 for band 0 or infinite v.
double band_delta(double band_ulps, double v) {
  if (!(band_ulps > 0.0) || !std::isfinite(v)) return 0.0;
  return band_ulps * ulp_fp32(v);
}

/// key - vk for a margin message: 0 when the keys are equal, so two equal infinite keys give 0
/// rather than inf - inf = NaN.
double key_margin(double key, double vk) { return key == vk ? 0.0 : key - vk; }

/// n-th largest (1-based) of vals[0..size) (no NaN): the value std::nth_element(greater) puts
/// at position n - 1 of a copy (row_select::kth_largest), in per-thread scratch.
double nth_largest(const double* vals, std::size_t size, std::size_t n) {
  thread_local std::vector<double> a, b;
  if (a.size() < size) {
    a.resize(size);
    b.resize(size);
  }
  return row_select::kth_largest(vals, size, n, a.data(), b.data());
}
double nth_largest(const std::vector<double>& vals, std::size_t n) { return nth_largest(vals.data(), vals.size(), n); }

/// Whether the n-th and (n+1)-th largest of vals[0..size) are equal, given vn, the n-th largest:
/// more than n values are >= vn.
bool tie_after(const double* vals, std::size_t size, std::size_t n, double vn) {
  if (n >= size) return false;
  std::size_t ge = 0;
  for (std::size_t i = 0; i < size; ++i) ge += vals[i] >= vn ? 1 : 0;
  return ge > n;
}

/// Largest of key[0..E) outside the experts ids[0..k) (unique and in range), -inf when none is
/// left. The selected keys are set aside (-inf) for one branch-free pass with four running
/// maxima, then restored. The keys hold no NaN, so the value is that of any pass order (only
/// the sign of a zero maximum may differ, which a comparison does not see).
double max_unselected(double* key, std::size_t E, const std::int32_t* ids, int k, double* saved) {
  for (int j = 0; j < k; ++j) {
    saved[j] = key[ids[j]];
    key[ids[j]] = -kInf;
  }
  double h0 = -kInf, h1 = -kInf, h2 = -kInf, h3 = -kInf;
  std::size_t e = 0;
  for (; e + 4 <= E; e += 4) {
    h0 = key[e] > h0 ? key[e] : h0;
    h1 = key[e + 1] > h1 ? key[e + 1] : h1;
    h2 = key[e + 2] > h2 ? key[e + 2] : h2;
    h3 = key[e + 3] > h3 ? key[e + 3] : h3;
  }
  for (; e < E; ++e) h0 = key[e] > h0 ? key[e] : h0;
  for (int j = k - 1; j >= 0; --j) key[ids[j]] = saved[j];
  h0 = h1 > h0 ? h1 : h0;
  h2 = h3 > h2 ? h3 : h2;
  return h2 > h0 ? h2 : h0;
}

/// True when the n-th and (n+1)-th largest of vals are equal (an ambiguous cut).
bool tie_at(const std::vector<double>& vals, std::size_t n) {
  if (n >= vals.size()) return false;
  return tie_after(vals.data(), vals.size(), n, nth_largest(vals, n));
}

double group_score(const std::vector<double>& key, std::int64_t begin, std::int64_t size) {
  double a = -kInf, b = -kInf;
  for (std::int64_t e = begin; e < begin + size; ++e) {
    const double v = key[static_cast<std::size_t>(e)];
    if (v > a) {
      b = a;
      a = v;
    } else if (v > b) {
      b = v;
    }
  }
  return size == 1 ? a : a + b;
}

/// Band rule over the candidate experts cand[0..n_cand) (ascending expert ids; cand == nullptr
/// means experts 0..n_cand-1). ids are the k selected experts (unique, in range, all members of
/// cand or reported); selected[e] marks them. Returns validity; records violations in sink;
/// *vk receives the k-th largest candidate key (`known_vk` when the caller computed it).
bool check_experts(const double* key, const std::int32_t* cand, std::size_t n_cand, const char* selected,
                   const std::int32_t* ids, int k, double band_ulps, std::int64_t row, Sink& sink, double* vk,
                   const double* known_vk = nullptr) {
  const auto cand_at = [&](std::size_t i) { return cand ? cand[i] : static_cast<std::int32_t>(i); };
  double v;
  if (known_vk) {
    v = *known_vk;
  } else {
    thread_local std::vector<double> ck;
    if (ck.size() < n_cand) ck.resize(n_cand);
    for (std::size_t i = 0; i < n_cand; ++i) ck[i] = key[static_cast<std::size_t>(cand_at(i))];
    v = nth_largest(ck.data(), n_cand, static_cast<std::size_t>(k));
  }
  *vk = v;
  const double d = band_delta(band_ulps, v);
  {  // the verdict without a branch per expert; violations are then collected below
    const double lo = v - d, hi = v + d;
    bool bad = false;
    for (int j = 0; j < k; ++j) bad |= !(key[static_cast<std::size_t>(ids[j])] >= lo);
    for (std::size_t i = 0; i < n_cand; ++i) {
      const auto e = static_cast<std::size_t>(cand_at(i));
      bad |= !selected[e] & !(key[e] <= hi);
    }
    if (!bad) return true;
  }
  bool ok = true;
  for (int j = 0; j < k; ++j) {
    const double kj = key[static_cast<std::size_t>(ids[j])];
    if (!(kj >= v - d)) {
      ok = false;
      if (!sink.active()) return false;
      Violation vi = make_violation(
          "selection", row, j, ids[j],
          "selected expert " + std::to_string(ids[j]) + " has key " + fmt("%.9g", kj) +
              " below the k-th key " + fmt("%.9g", v) + " - band " + fmt("%.3g", d));
      vi.expected = v;
      vi.got = kj;
      vi.tolerance = d;
      vi.margin = key_margin(kj, v);
      sink.add(std::move(vi));
    }
  }
  for (std::size_t i = 0; i < n_cand; ++i) {
    const std::int32_t e = cand_at(i);
    if (selected[static_cast<std::size_t>(e)]) continue;
    const double ke = key[static_cast<std::size_t>(e)];
    if (!(ke <= v + d)) {
      ok = false;
      if (!sink.active()) return false;
      Violation vi = make_violation(
          "selection", row, -1, e,
          "unselected expert " + std::to_string(e) + " has key " + fmt("%.9g", ke) +
              " above the k-th key " + fmt("%.9g", v) + " + band " + fmt("%.3g", d));
      vi.expected = v;
      vi.got = ke;
      vi.tolerance = d;
      vi.margin = key_margin(ke, v);
      sink.add(std::move(vi));
    }
  }
  return ok;
}

bool check_experts(const std::vector<double>& key, const std::vector<std::int32_t>& cand,
                   const std::vector<char>& selected, const std::int32_t* ids, int k, double band_ulps,
                   std::int64_t row, Sink& sink, double* vk) {
  return check_experts(key.data(), cand.data(), cand.size(), selected.data(), ids, k, band_ulps, row, sink, vk);
}

/// Final multiplier of slot j (per_expert_scale for gemma4, routed_scaling for sigmoid_grouped).
double slot_multiplier(const RoutingParams& p, std::int32_t id) {
  if (p.family == Family::gemma4) return p.scale ? static_cast<double>(p.scale[id]) : 1.0;
  if (p.family == Family::sigmoid_grouped) return static_cast<double>(p.routed_scaling);
  return 1.0;
}

/* gemma4 / softmax_topk: reference_unscaled_weights_for_ids and weight_bound_inputs of one
 * selection in one pass, each exp(y_j - m) evaluated once. The same operations in the same order
 * as the two separate computations (softmax_limit in routing.cpp and `spread` in
 * weight_bound_inputs): the denominators agree bit for bit because the terms spread leaves out
 * (-inf logits) are exact zeros in softmax_limit's sum. */
WeightBoundInputs softmax_weights_and_bound(const double* logits, const RoutingParams& p, const std::int32_t* ids,
                                            double* unscaled_out, double* scale_out) {
  const int k = p.k;
  WeightBoundInputs b;
  b.n_terms = k;
  int n_pinf = 0;
  double m = -kInf;
  for (int j = 0; j < k; ++j) {
    const double y = logits[ids[j]];
    const double v = std::isnan(y) ? -kInf : y;
    if (v == kInf) ++n_pinf;
    m = std::max(m, v);
  }
  if (n_pinf > 0 || m == -kInf) {
    for (int j = 0; j < k; ++j) {
      const double y = logits[ids[j]];
      unscaled_out[j] = n_pinf > 0 && y == kInf ? 1.0 / n_pinf : 0.0;
    }
    b.max_arg = 0.0;
    b.denominator = 1.0;
  } else {
    double a = 0.0, sum = 0.0;
    for (int j = 0; j < k; ++j) {
      const double y = logits[ids[j]];
      const double v = std::isnan(y) ? -kInf : y;
      unscaled_out[j] = std::exp(v - m);  // exp(-inf) = 0
      sum += unscaled_out[j];
      if (v != -kInf) a = std::max(a, m - v);
    }
    for (int j = 0; j < k; ++j) unscaled_out[j] /= sum;
    b.max_arg = std::min(a, kMaxExpArg);
    b.denominator = sum;
  }
  for (int j = 0; j < k; ++j) scale_out[j] = slot_multiplier(p, ids[j]);
  return b;
}

/// Row t of the view as the selection keys of a family whose key is the logit (row_keys' rule:
/// NaN -> -inf), in one pass for fp32 (key[e] == g.at(t, e) bit for bit otherwise).
void load_logit_keys(const GatingView& g, std::int64_t t, std::vector<double>& key) {
  const auto E = static_cast<std::size_t>(g.E);
  key.resize(E);
  if (g.dtype == DType::f32) {
    const auto* r = static_cast<const std::uint8_t*>(g.data) + t * g.row_stride * 4;
    const auto cs = static_cast<std::size_t>(g.col_stride);
    for (std::size_t e = 0; e < E; ++e) {
      float f;
      std::memcpy(&f, r + e * cs * 4, 4);
      key[e] = f == f ? static_cast<double>(f) : -kInf;
    }
    return;
  }
  row_select::load_row(g, t, key.data());
  for (std::size_t e = 0; e < E; ++e) {
    if (std::isnan(key[e])) key[e] = -kInf;
  }
}

}  // namespace

// ---- row-level checks shared with metamorphic.cpp (oracle_detail.hpp) ---------------

namespace oracle_detail {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

Violation make_violation(const char* check, std::int64_t row, std::int64_t slot, std::int64_t expert,
                         std::string detail) {
  Violation v;
  v.check = check;
  v.row = row;
  v.slot = slot;
  v.expert = expert;
  v.detail = std::move(detail);
  return v;
}

/// Loads row t of the view into x (exact values as double).
void load_row(const GatingView& g, std::int64_t t, std::vector<double>& x) {
  x.resize(static_cast<std::size_t>(g.E));
  row_select::load_row(g, t, x.data());
}

/// Selection keys of a row (selection_key per expert; NaN logits -> -inf).
void row_keys(const std::vector<double>& x, const RoutingParams& p, std::vector<double>& key) {
  key.resize(x.size());
  if (p.family != Family::sigmoid_grouped) {  // selection_key: the logit, NaN -> -inf
    for (std::size_t e = 0; e < x.size(); ++e) key[e] = std::isnan(x[e]) ? -kInf : x[e];
    return;
  }
  for (std::size_t e = 0; e < x.size(); ++e) {
    const double b = (p.family == Family::sigmoid_grouped && p.bias) ? p.bias[e] : 0.0;
    key[e] = selection_key(p.family, x[e], b);
  }
}

/* Selection validity of one row (ids unique and in [0, E)).
 * Softmax families and sigmoid_top1: the band rule on the keys of all E experts.
 * sigmoid_grouped: the band rule on group scores first. The groups the selected experts
 * come from must each be eligible (score >= g_k - delta_g, g_k the topk_group-th largest
 * group score); groups strictly above g_k + delta_g are mandatory; the chosen set S is the
 * used groups plus the mandatory ones (at most topk_group, else a violation), completed with
 * eligible groups of smallest maximum key (ties: lower group index) - the completion that
 * makes the expert-level rule easiest to satisfy, optimal for band 0. Then the band rule
 * on the experts of S. */
bool check_selection_row(const std::vector<double>& key, const RoutingParams& p, std::int64_t E,
                         const std::int32_t* ids, double band_ulps, std::int64_t row, Sink& sink,
                         double* vk) {
  const int k = p.k;
  thread_local std::vector<char> selected;
  selected.assign(static_cast<std::size_t>(E), 0);
  for (int j = 0; j < k; ++j) selected[static_cast<std::size_t>(ids[j])] = 1;
  if (p.family != Family::sigmoid_grouped) {
    return check_experts(key.data(), nullptr, static_cast<std::size_t>(E), selected.data(), ids, k, band_ulps, row,
                         sink, vk);
  }
  std::vector<std::int32_t> cand;
  const int G = p.n_group;
  const std::int64_t gs = E / G;
  const int tg = p.topk_group;
  std::vector<double> gscore(static_cast<std::size_t>(G));
  std::vector<double> gmax(static_cast<std::size_t>(G));
  for (int gi = 0; gi < G; ++gi) {
    gscore[static_cast<std::size_t>(gi)] = group_score(key, gi * gs, gs);
    gmax[static_cast<std::size_t>(gi)] =
        *std::max_element(key.begin() + gi * gs, key.begin() + (gi + 1) * gs);
  }
  const double gk = nth_largest(gscore, static_cast<std::size_t>(tg));
  const double dg = band_delta(band_ulps, gk);
  *vk = gk;
  std::vector<char> in_s(static_cast<std::size_t>(G), 0);
  bool ok = true;
  int n_used = 0;
  for (int j = 0; j < k; ++j) {
    const int gi = static_cast<int>(ids[j] / gs);
    if (in_s[static_cast<std::size_t>(gi)]) continue;
    in_s[static_cast<std::size_t>(gi)] = 1;
    ++n_used;
    const double sc = gscore[static_cast<std::size_t>(gi)];
    if (!(sc >= gk - dg)) {
      ok = false;
      if (!sink.active()) return false;
      Violation vi = make_violation(
          "group-selection", row, j, ids[j],
          "expert " + std::to_string(ids[j]) + " is in group " + std::to_string(gi) +
              " whose score " + fmt("%.9g", sc) + " is below the topk_group-th group score " +
              fmt("%.9g", gk) + " - band " + fmt("%.3g", dg));
      vi.expected = gk;
      vi.got = sc;
      vi.tolerance = dg;
      vi.margin = key_margin(sc, gk);
      sink.add(std::move(vi));
    }
  }
  if (n_used > tg) {
    ok = false;
    if (!sink.active()) return false;
    sink.add(make_violation("group-selection", row, -1, -1,
                            "selected experts come from " + std::to_string(n_used) +
                                " groups but topk_group = " + std::to_string(tg)));
  }
  if (!ok) return false;
  int n_s = n_used;
  for (int gi = 0; gi < G; ++gi) {
    const double sc = gscore[static_cast<std::size_t>(gi)];
    if (!in_s[static_cast<std::size_t>(gi)] && sc > gk + dg) {
      in_s[static_cast<std::size_t>(gi)] = 1;
      ++n_s;
      if (n_s > tg) {
        ok = false;
        if (!sink.active()) return false;
        Violation vi = make_violation(
            "group-selection", row, -1, -1,
            "group " + std::to_string(gi) + " has score " + fmt("%.9g", sc) +
                " above the topk_group-th group score " + fmt("%.9g", gk) + " + band " +
                fmt("%.3g", dg) + " so it must be chosen, but the selected experts already use " +
                std::to_string(n_used) + " other group(s) (topk_group = " + std::to_string(tg) +
                ")");
        vi.expected = gk;
        vi.got = sc;
        vi.tolerance = dg;
        vi.margin = key_margin(sc, gk);
        sink.add(std::move(vi));
      }
    }
  }
  if (!ok) return false;
  std::vector<int> fill;
  for (int gi = 0; gi < G; ++gi) {
    if (!in_s[static_cast<std::size_t>(gi)] && gscore[static_cast<std::size_t>(gi)] >= gk - dg) {
      fill.push_back(gi);
    }
  }
  std::stable_sort(fill.begin(), fill.end(), [&](int a, int b) {
    return gmax[static_cast<std::size_t>(a)] < gmax[static_cast<std::size_t>(b)];
  });
  for (std::size_t i = 0; i < fill.size() && n_s < tg; ++i, ++n_s) {
    in_s[static_cast<std::size_t>(fill[i])] = 1;
  }
  for (int gi = 0; gi < G; ++gi) {
    if (!in_s[static_cast<std::size_t>(gi)]) continue;
    for (std::int64_t e = gi * gs; e < (gi + 1) * gs; ++e) cand.push_back(static_cast<std::int32_t>(e));
  }
  return check_experts(key, cand, selected, ids, k, band_ulps, row, sink, vk);
}

/// Whether the row's canonical cut is ambiguous (statistics for ties_at_kth).
bool row_has_kth_tie(const std::vector<double>& key, const RoutingParams& p, std::int64_t E) {
  if (p.family != Family::sigmoid_grouped) return tie_at(key, static_cast<std::size_t>(p.k));
  const int G = p.n_group;
  const std::int64_t gs = E / G;
  std::vector<double> gscore(static_cast<std::size_t>(G));
  for (int gi = 0; gi < G; ++gi) gscore[static_cast<std::size_t>(gi)] = group_score(key, gi * gs, gs);
  if (tie_at(gscore, static_cast<std::size_t>(p.topk_group))) return true;
  // expert-level tie inside the canonical chosen groups
  std::vector<int> order(static_cast<std::size_t>(G));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return gscore[static_cast<std::size_t>(a)] > gscore[static_cast<std::size_t>(b)];
  });
  std::vector<double> ck;
  for (int i = 0; i < p.topk_group; ++i) {
    const int gi = order[static_cast<std::size_t>(i)];
    ck.insert(ck.end(), key.begin() + gi * gs, key.begin() + (gi + 1) * gs);
  }
  return tie_at(ck, static_cast<std::size_t>(p.k));
}

/// Structural check of one row of an output. Returns true when ids are usable (written,
/// in range, unique); weight_written[j] tells whether slot j's weight was written.
bool structural_row(const float* w, const std::int32_t* ids, int k, std::int64_t E,
                    std::int64_t row, bool check_poison, const std::string& who, Sink& sink,
                    std::vector<char>& weight_written) {
  weight_written.assign(static_cast<std::size_t>(k), 1);
  {  // the common case first: everything written, in range and unique
    thread_local std::vector<char> seen;  // all zero between calls
    if (seen.size() < static_cast<std::size_t>(E)) seen.resize(static_cast<std::size_t>(E), 0);
    bool clean = true;
    for (int j = 0; j < k && clean; ++j) {
      const std::int32_t id = ids[j];
      clean = !(check_poison && (id == kPoisonId || float_bits(w[j]) == kPoisonWeightBits)) && id >= 0 && id < E &&
              !seen[static_cast<std::size_t>(id)];
      if (clean) seen[static_cast<std::size_t>(id)] = 1;
    }
    for (int j = 0; j < k; ++j) {
      if (ids[j] >= 0 && ids[j] < E) seen[static_cast<std::size_t>(ids[j])] = 0;
    }
    if (clean) return true;
  }
  bool ids_ok = true;
  for (int j = 0; j < k; ++j) {
    const std::int32_t id = ids[j];
    if (check_poison && id == kPoisonId) {
      ids_ok = false;
      sink.add(make_violation("unwritten", row, j, -1, who + "id slot never written (still the poison pattern)"));
    } else if (id < 0 || id >= E) {
      ids_ok = false;
      sink.add(make_violation("id-range", row, j, id,
                              who + "id " + std::to_string(id) + " outside [0, " + std::to_string(E) + ")"));
    } else {
      for (int i = 0; i < j; ++i) {
        if (ids[i] == id) {
          ids_ok = false;
          sink.add(make_violation("duplicate-id", row, j, id,
                                  who + "expert " + std::to_string(id) + " also in slot " + std::to_string(i)));
          break;
        }
      }
    }
    if (check_poison && float_bits(w[j]) == kPoisonWeightBits) {
      weight_written[static_cast<std::size_t>(j)] = 0;
      sink.add(make_violation("unwritten", row, j, ids_ok ? id : -1,
                              who + "weight slot never written (still the poison pattern)"));
    }
  }
  return ids_ok;
}

}  // namespace oracle_detail


// ---- precision -----------------------------------------------------------------------

Precision fp32_exact_selection() { return Precision{}; }

Precision compute_precision(DType compute, double select_band_ulps) {
  Precision p;
  p.compute_eps = dtype_unit_roundoff(compute);
  p.select_band_ulps = select_band_ulps;
  p.exp_ulps = 2.0;
  p.min_normal = compute == DType::f16 ? 0x1p-14 : 0x1p-126;
  return p;
}

double ulp_fp32(double v) {
  const double a = std::fabs(v);
  if (std::isnan(a)) return std::numeric_limits<double>::quiet_NaN();
  if (std::isinf(a)) return kInf;
  if (a < 0x1p-126) return 0x1p-149;
  int ex = 0;
  std::frexp(a, &ex);  // a = m * 2^ex, m in [0.5, 1): floor(log2 a) = ex - 1
  return std::ldexp(1.0, ex - 1 - 23);
}

/* Weight bound (EDGE_CASES.md "Error bounds"), u = compute_eps, A = max_arg in [0, 104],
 * X = exp_ulps, n = terms of the denominator:
 *   per term  e_i = exp(x_i - m) [/ S]:  (2A + X + 2) u
 *   weight    w = e_j / sum_i e_i, times the scale:  2 (2A + X + 2) u + (n - 1) u + 2 u
 *   tol = 1.05 * rel * |unscaled * scale| + min_normal * (1 + |scale|) * (n + 1) / min(den, 1)
 * (1.05 absorbs second-order terms while rel is small.) */
double weight_tolerance(const Precision& prec, double unscaled, double scale, double max_arg, int k,
                        double denominator) {
  const double u = prec.compute_eps;
  double a = std::isnan(max_arg) ? kMaxExpArg : std::min(std::max(max_arg, 0.0), kMaxExpArg);
  const double n = static_cast<double>(std::max(k, 1));
  const double rel = (4.0 * a + 2.0 * prec.exp_ulps + n + 5.0) * u;
  const double den = (denominator > 0.0 && std::isfinite(denominator)) ? std::min(denominator, 1.0) : 1.0;
  const double floor = prec.min_normal * (1.0 + std::fabs(scale)) * (n + 1.0) / den;
  return 1.05 * rel * std::fabs(unscaled * scale) + floor;
}

WeightBoundInputs weight_bound_inputs(const double* logits, std::int64_t E, const RoutingParams& p,
                                      const std::int32_t* ids) {
  WeightBoundInputs b;
  const auto clean = [](double x) { return std::isnan(x) ? -kInf : x; };
  const auto spread = [&](auto&& values, std::int64_t n) {
    // max over finite values of (max - value) and sum of exp(value - max), limit semantics
    double m = -kInf;
    bool pinf = false;
    for (std::int64_t i = 0; i < n; ++i) {
      const double v = clean(values(i));
      if (v == kInf) pinf = true;
      m = std::max(m, v);
    }
    if (pinf || m == -kInf) {
      b.max_arg = 0.0;
      b.denominator = 1.0;
      return;
    }
    double a = 0.0, s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double v = clean(values(i));
      if (v == -kInf) continue;
      if (v != -kInf) a = std::max(a, m - v);
      s += std::exp(v - m);
    }
    b.max_arg = std::min(a, kMaxExpArg);
    b.denominator = s;
  };
  switch (p.family) {
    case Family::gemma4:
    case Family::softmax_topk:
      b.n_terms = p.k;
      spread([&](std::int64_t j) { return logits[ids[j]]; }, p.k);
      break;
    case Family::softmax_topk_raw:
      b.n_terms = static_cast<int>(std::min<std::int64_t>(E, std::numeric_limits<int>::max()));
      spread([&](std::int64_t e) { return logits[e]; }, E);
      break;
    case Family::sigmoid_grouped: {
      b.n_terms = p.k;
      b.max_arg = 0.0;  // sigmoid evaluates exp(-x) on the exact input: no argument rounding
      double s = 0.0;
      for (int j = 0; j < p.k; ++j) {
        const double x = clean(logits[ids[j]]);
        s += x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
      }
      b.denominator = s > 0.0 ? s : 1.0;
      break;
    }
    case Family::sigmoid_top1:
      b.n_terms = 1;
      b.max_arg = 0.0;
      b.denominator = 1.0;
      break;
  }
  return b;
}

void reference_unscaled_weights_for_ids(const double* logits, std::int64_t E, const RoutingParams& p,
                                        const std::int32_t* ids, double* unscaled_out,
                                        double* scale_out) {
  RoutingParams q = p;
  q.scale = nullptr;
  q.routed_scaling = 1.0f;
  reference_weights_for_ids(logits, E, q, ids, unscaled_out);
  for (int j = 0; j < p.k; ++j) scale_out[j] = slot_multiplier(p, ids[j]);
}

// ---- reports -------------------------------------------------------------------------

std::string Violation::str() const {
  std::string s;
  const auto part = [&](const char* name, std::int64_t v) {
    if (v < 0) return;
    if (!s.empty()) s += ' ';
    s += name;
    s += ' ';
    s += std::to_string(v);
  };
  part("row", row);
  part("slot", slot);
  part("expert", expert);
  s += s.empty() ? "" : ": ";
  s += check;
  if (check == "weight" || check == "metamorphic-weight") {
    s += " expected " + fmt("%.12g", expected) + " got " + fmt("%.9g", got) + " (|diff| " +
         fmt("%.3g", std::fabs(got - expected)) + " > tol " + fmt("%.3g", tolerance) + ")";
    // A margin is a difference of keys; NaN would only say that it is undefined: not printed.
    if (margin != 0.0 && !std::isnan(margin)) s += " margin to k-th key " + fmt("%.6g", margin);
  } else if (check == "nan-weight" || check == "zeroed-row-weight") {
    s += std::string(" expected ") + (check == "nan-weight" ? "NaN" : "0") + " got " + fmt("%.9g", got);
  } else if (check == "selection" || check == "group-selection") {
    if ((slot >= 0 || expert >= 0) && !std::isnan(expected)) {
      s += " key " + fmt("%.9g", got) + " vs k-th key " + fmt("%.9g", expected) + " (margin " +
           (std::isnan(margin) ? std::string("undefined") : fmt("%+.3g", margin)) + ", band " +
           fmt("%.3g", tolerance) + ")";
    }
  }
  if (!detail.empty()) s += ": " + detail;
  return s;
}

std::string CheckReport::str() const {
  std::ostringstream os;
  if (ok()) {
    os << "OK: " << rows_checked << " row(s) checked, " << ties_at_kth << " with a tie at the k-th place";
    return os.str();
  }
  os << "FAILED: " << violations_total << " violation(s) in " << rows_checked << " row(s) ("
     << ties_at_kth << " with a tie at the k-th place); first " << violations.size() << ":";
  for (const Violation& v : violations) os << "\n  " << v.str();
  return os.str();
}

void poison_outputs(float* weights, std::int32_t* ids, std::int64_t count) {
  float pw;
  std::memcpy(&pw, &kPoisonWeightBits, sizeof pw);
  for (std::int64_t i = 0; i < count; ++i) {
    weights[i] = pw;
    ids[i] = kPoisonId;
  }
}

// ---- the oracle under a declared contract (CONTRACTS.md "Semantics") ------------------------

namespace {

bool softmax_family(Family f) {
  return f == Family::gemma4 || f == Family::softmax_topk || f == Family::softmax_topk_raw;
}

/// Tie order "lowest index": an unselected candidate whose ranking key equals a selected
/// expert's key must have a higher index than that expert ("tie-order" otherwise). Equal keys
/// are equal values for the implementation too (the same logit gives the same fp32 probability).
void check_lowest_index_ties(const std::vector<double>& key, const std::vector<std::int32_t>& cand,
                             const std::vector<char>& selected, const std::int32_t* ids, int k,
                             std::int64_t row, Sink& sink) {
  std::vector<std::pair<double, std::int32_t>> sel;  // (key, index), by key then index
  sel.reserve(static_cast<std::size_t>(k));
  for (int j = 0; j < k; ++j) sel.emplace_back(key[static_cast<std::size_t>(ids[j])], ids[j]);
  std::sort(sel.begin(), sel.end());
  for (std::int32_t e : cand) {
    if (selected[static_cast<std::size_t>(e)]) continue;
    const double ke = key[static_cast<std::size_t>(e)];
    // last selected entry with this key holds the highest selected index of that key
    auto it = std::upper_bound(sel.begin(), sel.end(), std::make_pair(ke, std::numeric_limits<std::int32_t>::max()));
    if (it == sel.begin() || std::prev(it)->first != ke) continue;
    const std::int32_t a = std::prev(it)->second;
    if (e < a) {
      Violation vi = make_violation("tie-order", row, -1, e,
                                    "unselected expert " + std::to_string(e) + " ties selected expert " +
                                        std::to_string(a) + " (key " + fmt("%.9g", ke) +
                                        ") and ties go to the lowest index");
      vi.expected = ke;
      vi.got = ke;
      sink.add(std::move(vi));
    }
  }
}

/* Probability-ranked selection (softmax families): the implementation ranks p_e, the fp32
 * full-softmax probabilities, ties (equal p, underflowed p = 0 included) to the lowest index
 * when the tie order says so. Each p_e lies in [lo_e, hi_e] around the fp64 probability q_e:
 * relative error r_e = 1.05 (2 A_e + X + 2) u (the per-term bound of EDGE_CASES.md "Error
 * bounds", A_e = min(m - x_e, 104)); the common division by the row sum keeps the order and is
 * not counted. hi_e = 0 when q_e (1 + r_e) <= 2^-150 (rounds to zero in fp32); lo_e = 0 when
 * q_e (1 - r_e) < min_normal (flush to zero or subnormal rounding); hi_e gains 2^-149 below
 * min_normal. The selection is valid iff some choice of p_e in the intervals makes it the top
 * k: min hi over the selected >= max lo over the unselected, an exact equality counting as a
 * tie; and experts with equal logits have equal p. */
void check_probability_selection(const std::vector<double>& x, const std::vector<double>& key, std::int64_t E,
                                 const std::int32_t* ids, int k, const std::vector<char>& selected,
                                 const Precision& prec, TieOrder ties, std::int64_t row, Sink& sink) {
  const std::size_t n = static_cast<std::size_t>(E);
  std::vector<double> q(n, 0.0), lo(n, 0.0), hi(n, 0.0);
  double m = -kInf;
  double n_pinf = 0.0;
  for (std::size_t e = 0; e < n; ++e) {
    const double v = std::isnan(x[e]) ? -kInf : x[e];
    m = std::max(m, v);
    if (v == kInf) n_pinf += 1.0;
  }
  const double u = prec.compute_eps;
  double sum = 0.0;
  if (std::isfinite(m)) {
    for (std::size_t e = 0; e < n; ++e) {
      const double v = std::isnan(x[e]) ? -kInf : x[e];
      sum += std::exp(v - m);
    }
  }
  for (std::size_t e = 0; e < n; ++e) {
    const double v = std::isnan(x[e]) ? -kInf : x[e];
    double a = 0.0;
    if (m == kInf) {
      q[e] = v == kInf ? 1.0 / n_pinf : 0.0;
    } else if (m == -kInf) {
      q[e] = 0.0;
    } else {
      q[e] = std::exp(v - m) / sum;
      a = v == -kInf ? kMaxExpArg : std::min(m - v, kMaxExpArg);
    }
    const double r = 1.05 * (2.0 * a + prec.exp_ulps + 2.0) * u;
    lo[e] = q[e] * (1.0 - r);
    hi[e] = q[e] * (1.0 + r);
    if (hi[e] <= 0x1p-150) {
      hi[e] = 0.0;
    } else if (hi[e] < prec.min_normal) {
      hi[e] += 0x1p-149;
    }
    if (lo[e] < prec.min_normal) lo[e] = 0.0;
  }
  // weakest selected (highest index among equal hi) and strongest unselected (lowest index)
  std::int32_t wa = -1, sb = -1;
  for (int j = 0; j < k; ++j) {
    const std::int32_t a = ids[j];
    const double h = hi[static_cast<std::size_t>(a)];
    if (wa < 0 || h < hi[static_cast<std::size_t>(wa)] || (h == hi[static_cast<std::size_t>(wa)] && a > wa)) wa = a;
  }
  for (std::size_t e = 0; e < n; ++e) {
    if (selected[e]) continue;
    const auto b = static_cast<std::int32_t>(e);
    if (sb < 0 || lo[e] > lo[static_cast<std::size_t>(sb)]) sb = b;  // ascending e: the first is the lowest index
  }
  if (sb < 0) return;  // k == E: nothing unselected
  const double min_hi = hi[static_cast<std::size_t>(wa)];
  const double max_lo = lo[static_cast<std::size_t>(sb)];
  const auto prob_violation = [&](const char* check, std::int64_t slot, std::int32_t e, std::int32_t other,
                                  const std::string& what) {
    Violation vi = make_violation(
        check, row, slot, e,
        what + " (fp32 probability of expert " + std::to_string(e) + " in [" + fmt("%.9g", lo[static_cast<std::size_t>(e)]) +
            ", " + fmt("%.9g", hi[static_cast<std::size_t>(e)]) + "], of expert " + std::to_string(other) + " in [" +
            fmt("%.9g", lo[static_cast<std::size_t>(other)]) + ", " + fmt("%.9g", hi[static_cast<std::size_t>(other)]) +
            "])");
    vi.expected = q[static_cast<std::size_t>(other)];
    vi.got = q[static_cast<std::size_t>(e)];
    vi.tolerance = hi[static_cast<std::size_t>(e)] - q[static_cast<std::size_t>(e)];
    vi.margin = q[static_cast<std::size_t>(e)] - q[static_cast<std::size_t>(other)];
    sink.add(std::move(vi));
  };
  const bool lowest = ties == TieOrder::lowest_index;
  for (int j = 0; j < k; ++j) {
    const std::int32_t a = ids[j];
    if (hi[static_cast<std::size_t>(a)] < max_lo) {
      prob_violation("selection", j, a, sb,
                     "selected expert " + std::to_string(a) + " has a lower probability than unselected expert " +
                         std::to_string(sb));
    }
  }
  std::vector<char> reported(n, 0);
  for (std::size_t e = 0; e < n; ++e) {
    if (selected[e]) continue;
    const auto b = static_cast<std::int32_t>(e);
    if (lo[e] > min_hi) {
      reported[e] = 1;
      prob_violation("selection", -1, b, wa,
                     "unselected expert " + std::to_string(b) + " has a higher probability than selected expert " +
                         std::to_string(wa));
    } else if (lowest && lo[e] == min_hi && b < wa) {
      reported[e] = 1;
      prob_violation("tie-order", -1, b, wa,
                     "unselected expert " + std::to_string(b) + " can only tie selected expert " + std::to_string(wa) +
                         " and ties go to the lowest index");
    }
  }
  if (lowest) {
    std::vector<std::int32_t> cand;
    for (std::size_t e = 0; e < n; ++e) {
      if (!reported[e]) cand.push_back(static_cast<std::int32_t>(e));
    }
    check_lowest_index_ties(key, cand, selected, ids, k, row, sink);
  }
}

/// Whether the weight denominator of the row has no unmasked term (the masked-row rule):
/// renormalising families when every selected logit is -inf or NaN, softmax_topk_raw when all
/// E are; never for sigmoid_top1 (no division).
bool denominator_masked(const std::vector<double>& x, const RoutingParams& p, const std::int32_t* ids) {
  const auto masked = [](double v) { return std::isnan(v) || v == -kInf; };
  switch (p.family) {
    case Family::softmax_topk_raw:
      return std::all_of(x.begin(), x.end(), masked);
    case Family::sigmoid_top1:
      return false;
    default:
      for (int j = 0; j < p.k; ++j) {
        if (!masked(x[static_cast<std::size_t>(ids[j])])) return false;
      }
      return true;
  }
}

/// Weight bound of one slot under the contract's tolerance. Probability-ranked selection means
/// the weights are renormalised fp32 probabilities: two more roundings per weight (each term's
/// division by the full softmax sum, in the numerator and in the denominator), modelled as two
/// more terms of the derived bound.
double contract_tolerance(const Contract& c, const Precision& prec, double unscaled, double scale,
                          const WeightBoundInputs& b, bool probability_ranked) {
  const double expected = unscaled * scale;
  switch (c.tolerance.kind) {
    case ToleranceKind::absolute_relative:
      return c.tolerance.absolute + c.tolerance.relative * std::fabs(expected);
    case ToleranceKind::derived:
    case ToleranceKind::scaled: {
      const double d = weight_tolerance(prec, unscaled, scale, b.max_arg, b.n_terms + (probability_ranked ? 2 : 0),
                                        b.denominator);
      return c.tolerance.kind == ToleranceKind::scaled ? c.tolerance.scale * d : d;
    }
  }
  return 0.0;
}

CheckReport check_routing_contract(const GatingView& g, const RoutingParams& p, const float* weights,
                                   const std::int32_t* ids, const OracleOptions& opt) {
  const Contract& c = opt.contract;
  CheckReport rep;
  Sink sink(&rep, opt.max_violations);
  const int k = p.k;
  const std::size_t E = static_cast<std::size_t>(g.E);
  const double band = opt.precision.select_band_ulps;
  const bool by_probability = c.selection == SelectionBasis::fp32_probabilities && softmax_family(p.family);
  const bool lowest = c.ties == TieOrder::lowest_index;
  std::vector<double> x, key, unscaled(static_cast<std::size_t>(k)), mult(static_cast<std::size_t>(k));
  std::vector<char> written, selected;
  std::vector<std::int32_t> all(E), rest_ids, rest_cand;
  std::iota(all.begin(), all.end(), 0);
  for (std::int64_t t = 0; t < g.T; ++t) {
    load_row(g, t, x);
    row_keys(x, p, key);
    ++rep.rows_checked;
    if (row_has_kth_tie(key, p, g.E)) ++rep.ties_at_kth;
    const float* w = weights + t * k;
    const std::int32_t* id = ids + t * k;
    if (!structural_row(w, id, k, g.E, t, opt.check_poison, "", sink, written)) continue;
    std::size_t n_nan = 0;
    bool has_pinf = false;
    for (double v : x) {
      n_nan += std::isnan(v) ? 1 : 0;
      has_pinf = has_pinf || v == kInf;
    }
    // 1. rows the contract zeroes: ids 0..k-1 (any slot order), every weight 0
    const bool nan_zero = c.nan == NanPolicy::zeroes_row && n_nan > 0;
    if (nan_zero || (c.pos_inf == PosInfPolicy::zeroes_row && has_pinf)) {
      const std::string why = std::string("the row has a ") + (nan_zero ? "NaN" : "+inf") + " logit and contract '" +
                              c.name + "' zeroes such rows";
      for (int j = 0; j < k; ++j) {
        if (id[j] >= k) {
          sink.add(make_violation("zeroed-row-ids", t, j, id[j],
                                  why + ": ids must be 0.." + std::to_string(k - 1) + ", got " + std::to_string(id[j])));
        }
        if (written[static_cast<std::size_t>(j)] && !(w[j] == 0.0f)) {
          Violation v = make_violation("zeroed-row-weight", t, j, id[j], why);
          v.expected = 0.0;
          v.got = w[j];
          sink.add(std::move(v));
        }
      }
      continue;
    }
    selected.assign(E, 0);
    for (int j = 0; j < k; ++j) selected[static_cast<std::size_t>(id[j])] = 1;
    const auto nan_weights = [&](const std::string& why) {
      for (int j = 0; j < k; ++j) {
        if (!written[static_cast<std::size_t>(j)] || std::isnan(w[j])) continue;
        Violation v = make_violation("nan-weight", t, j, id[j], why);
        v.expected = std::numeric_limits<double>::quiet_NaN();
        v.got = w[j];
        sink.add(std::move(v));
      }
    };
    // 2. NaN propagates: NaN ranks above every value, every weight of the row is NaN
    if (c.nan == NanPolicy::propagates && n_nan > 0) {
      const std::string why = "the row has a NaN logit and contract '" + c.name + "' propagates NaN";
      if (p.family == Family::sigmoid_grouped) {
        std::vector<double> rk = key;  // a NaN key (sigmoid(NaN) + b) is the largest
        for (std::size_t e = 0; e < E; ++e) {
          if (std::isnan(x[e])) rk[e] = kInf;
        }
        double vk = 0.0;
        check_selection_row(rk, p, g.E, id, band, t, sink, &vk);
      } else {
        std::int32_t max_sel_nan = -1;
        rest_ids.clear();
        for (int j = 0; j < k; ++j) {
          if (std::isnan(x[static_cast<std::size_t>(id[j])])) {
            max_sel_nan = std::max(max_sel_nan, id[j]);
          } else {
            rest_ids.push_back(id[j]);
            if (n_nan >= static_cast<std::size_t>(k)) {
              Violation v = make_violation("selection", t, j, id[j],
                                           "selected expert " + std::to_string(id[j]) + " (logit " +
                                               fmt("%.9g", x[static_cast<std::size_t>(id[j])]) + ") is not NaN, but " +
                                               why + ", ranking its " + std::to_string(n_nan) + " NaN logit(s) highest");
              v.expected = std::numeric_limits<double>::quiet_NaN();
              sink.add(std::move(v));
            }
          }
        }
        for (std::size_t e = 0; e < E; ++e) {
          if (!std::isnan(x[e]) || selected[e]) continue;
          const auto ee = static_cast<std::int32_t>(e);
          if (n_nan < static_cast<std::size_t>(k)) {
            Violation v = make_violation("selection", t, -1, ee,
                                         "unselected expert " + std::to_string(e) + " has a NaN logit, which ranks "
                                         "highest: " + why);
            v.expected = std::numeric_limits<double>::quiet_NaN();
            sink.add(std::move(v));
          } else if (lowest && ee < max_sel_nan) {
            sink.add(make_violation("tie-order", t, -1, ee,
                                    "unselected expert " + std::to_string(e) + " has a NaN logit like selected expert " +
                                        std::to_string(max_sel_nan) + " and ties go to the lowest index"));
          }
        }
        // The other selected experts: the usual rule among the non-NaN experts. With probability
        // ranking every probability of the row is NaN, so their order is not defined.
        if (!by_probability && n_nan < static_cast<std::size_t>(k) &&
            rest_ids.size() == static_cast<std::size_t>(k) - n_nan) {
          rest_cand.clear();
          for (std::size_t e = 0; e < E; ++e) {
            if (!std::isnan(x[e])) rest_cand.push_back(static_cast<std::int32_t>(e));
          }
          double vk = 0.0;
          check_experts(key, rest_cand, selected, rest_ids.data(), static_cast<int>(rest_ids.size()), band, t, sink,
                        &vk);
          if (lowest) {
            check_lowest_index_ties(key, rest_cand, selected, rest_ids.data(), static_cast<int>(rest_ids.size()), t,
                                    sink);
          }
        }
      }
      nan_weights(why);
      continue;
    }
    // 3. selection on the contract's basis
    double vk = 0.0;
    if (by_probability) {
      check_probability_selection(x, key, g.E, id, k, selected, opt.precision, c.ties, t, sink);
    } else {
      check_selection_row(key, p, g.E, id, band, t, sink, &vk);
      if (lowest) {
        if (p.family == Family::sigmoid_grouped) {  // expert ties inside the groups the selection uses
          const std::int64_t gs = g.E / p.n_group;
          std::vector<char> used(static_cast<std::size_t>(p.n_group), 0);
          for (int j = 0; j < k; ++j) used[static_cast<std::size_t>(id[j] / gs)] = 1;
          rest_cand.clear();
          for (std::size_t e = 0; e < E; ++e) {
            if (used[e / static_cast<std::size_t>(gs)]) rest_cand.push_back(static_cast<std::int32_t>(e));
          }
          check_lowest_index_ties(key, rest_cand, selected, id, k, t, sink);
        } else {
          check_lowest_index_ties(key, all, selected, id, k, t, sink);
        }
      }
    }
    // 4. weights: NaN where the contract says so, else the family formula for the chosen ids
    if (c.pos_inf == PosInfPolicy::propagates_nan && has_pinf && softmax_family(p.family)) {
      bool meets = p.family == Family::softmax_topk_raw;
      for (int j = 0; j < k && !meets; ++j) meets = x[static_cast<std::size_t>(id[j])] == kInf;
      if (meets) {
        nan_weights("a +inf enters the row's softmax and contract '" + c.name + "' propagates it as NaN");
        continue;
      }
    }
    const bool masked = c.masked_row != MaskedRowWeights::zero && denominator_masked(x, p, id);
    if (masked && c.masked_row == MaskedRowWeights::nan) {
      nan_weights("every term of the row's weight denominator is masked and contract '" + c.name +
                  "' gives such rows NaN weights");
      continue;
    }
    reference_unscaled_weights_for_ids(x.data(), g.E, p, id, unscaled.data(), mult.data());
    const WeightBoundInputs b = weight_bound_inputs(x.data(), g.E, p, id);
    for (int j = 0; j < k; ++j) {
      if (!written[static_cast<std::size_t>(j)]) continue;
      if (masked && std::isnan(w[j])) continue;  // zero-or-nan
      const double u = unscaled[static_cast<std::size_t>(j)];
      const double s = mult[static_cast<std::size_t>(j)];
      const double expected = u * s;
      const double tol = contract_tolerance(c, opt.precision, u, s, b, by_probability);
      const double got = w[j];
      if (!(std::fabs(got - expected) <= tol)) {
        Violation v = make_violation("weight", t, j, id[j], "");
        v.expected = expected;
        v.got = got;
        v.tolerance = tol;
        if (!by_probability && p.family != Family::sigmoid_grouped) {
          v.margin = key_margin(key[static_cast<std::size_t>(id[j])], vk);
        }
        sink.add(std::move(v));
      }
    }
  }
  return rep;
}

}  // namespace

// ---- the oracle ----------------------------------------------------------------------

CheckReport check_routing(const GatingView& g, const RoutingParams& p, const float* weights,
                          const std::int32_t* ids, const OracleOptions& opt) {
  validate_routing(g, p);
  if (!opt.contract.strict_semantics()) return check_routing_contract(g, p, weights, ids, opt);
  CheckReport rep;
  Sink sink(&rep, opt.max_violations);
  const int k = p.k;
  const auto E = static_cast<std::size_t>(g.E);
  const bool grouped = p.family == Family::sigmoid_grouped;
  const bool renormalised_softmax = p.family == Family::gemma4 || p.family == Family::softmax_topk;
  // Scratch of this thread, sized here (allocated only when a larger case comes along).
  thread_local std::vector<double> x, key, unscaled, mult, saved;
  thread_local std::vector<char> written, selected;
  unscaled.resize(static_cast<std::size_t>(k));
  mult.resize(static_cast<std::size_t>(k));
  saved.resize(static_cast<std::size_t>(k));
  selected.assign(grouped ? 0 : E, 0);
  for (std::int64_t t = 0; t < g.T; ++t) {
    if (renormalised_softmax) {
      /* Only the keys are read: the selection checks read them, and softmax_weights_and_bound
       * maps a NaN logit to -inf itself, which is the key's value; so the row is loaded straight
       * into the keys, with no copy of the logits. */
      load_logit_keys(g, t, key);
    } else {
      load_row(g, t, x);
      row_keys(x, p, key);
    }
    ++rep.rows_checked;
    const float* w = weights + t * k;
    const std::int32_t* id = ids + t * k;
    double vk = 0.0;
    if (grouped) {
      if (row_has_kth_tie(key, p, g.E)) ++rep.ties_at_kth;
      if (!structural_row(w, id, k, g.E, t, opt.check_poison, "", sink, written)) continue;
      check_selection_row(key, p, g.E, id, opt.precision.select_band_ulps, t, sink, &vk);
    } else {
      const bool ids_ok = structural_row(w, id, k, g.E, t, opt.check_poison, "", sink, written);
      /* With usable ids, lo = the smallest selected key and hi = the largest unselected one:
       * when lo >= hi the chosen experts are a top k, so the k-th key is lo, the band rule holds
       * for any band, and the cut is tied exactly when hi == lo. Otherwise (and for a zero lo,
       * whose sign nth_element decides) the k-th key is computed and the band rule applied. */
      double lo = kInf, hi = -kInf;
      if (ids_ok) {
        for (int j = 0; j < k; ++j) {
          const double v = key[static_cast<std::size_t>(id[j])];
          selected[static_cast<std::size_t>(id[j])] = 1;
          lo = v < lo ? v : lo;
        }
        hi = max_unselected(key.data(), E, id, k, saved.data());
      }
      if (ids_ok && lo >= hi && lo != 0.0) {
        if (static_cast<std::size_t>(k) < E && lo == hi) ++rep.ties_at_kth;
        vk = lo;
      } else {
        const double kth = nth_largest(key.data(), E, static_cast<std::size_t>(k));
        if (tie_after(key.data(), E, static_cast<std::size_t>(k), kth)) ++rep.ties_at_kth;
        if (ids_ok) {
          check_experts(key.data(), nullptr, E, selected.data(), id, k, opt.precision.select_band_ulps, t, sink, &vk,
                        &kth);
        }
      }
      if (!ids_ok) continue;
      for (int j = 0; j < k; ++j) selected[static_cast<std::size_t>(id[j])] = 0;
    }
    // Weights are checked even after a selection violation: they must still follow the
    // family's formula for the ids that were chosen.
    WeightBoundInputs b;
    if (renormalised_softmax) {
      b = softmax_weights_and_bound(key.data(), p, id, unscaled.data(), mult.data());
    } else {
      reference_unscaled_weights_for_ids(x.data(), g.E, p, id, unscaled.data(), mult.data());
      b = weight_bound_inputs(x.data(), g.E, p, id);
    }
    for (int j = 0; j < k; ++j) {
      if (!written[static_cast<std::size_t>(j)]) continue;
      const double u = unscaled[static_cast<std::size_t>(j)];
      const double s = mult[static_cast<std::size_t>(j)];
      const double expected = u * s;
      const double tol = weight_tolerance(opt.precision, u, s, b.max_arg, b.n_terms, b.denominator);
      const double got = w[j];
      if (!(std::fabs(got - expected) <= tol)) {
        Violation v = make_violation("weight", t, j, id[j], "");
        v.expected = expected;
        v.got = got;
        v.tolerance = tol;
        v.margin = key_margin(key[static_cast<std::size_t>(id[j])], vk);
        if (p.family == Family::sigmoid_grouped) v.margin = 0.0;  // vk is a group score there
        sink.add(std::move(v));
      }
    }
  }
  return rep;
}

ContractCheck check_with_contract(const GatingView& g, const RoutingParams& p, const float* weights,
                                  const std::int32_t* ids, const OracleOptions& opt) {
  validate_routing(g, p);
  ContractCheck r;
  r.outside = outside_contract(opt.contract, g, &r.outside_key);
  if (r.covered()) r.report = check_routing(g, p, weights, ids, opt);
  return r;
}

}  // namespace moecheck
