// The hot paths of generation, the fp64 reference and the oracle are tuned for speed; these tests
// pin that the tuning changed nothing a user can see:
//  * generated cases: a hash of every field and value bit of generate_case for fixed seeds and
//    configurations (the generators use no libm, so the hashes hold on every platform);
//  * the reference: bit-identical weights and ids to the straightforward implementation kept
//    below (`plain`), on generated cases of every family, dtype, layout and value family;
//  * the oracle: identical reports (every violation field and sentence, counts, tie statistics)
//    to the straightforward strict oracle below, on the reference's output, the planted kernel
//    mutants' outputs and randomly corrupted outputs, and identical results of its row-level
//    building blocks (shared with the contract oracle and the metamorphic relations).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "harness/core/case.hpp"
#include "harness/core/generators.hpp"
#include "harness/core/target.hpp"
#include "kernels/routing_kernels.hpp"
#include "reference/oracle.hpp"
#include "reference/oracle_detail.hpp"
#include "reference/routing.hpp"

namespace moecheck {
namespace {

// ---- the straightforward implementation the fast paths must reproduce ------------------------

namespace plain {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kMaxExpArg = 104.0;

double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

double nan_as_neg_inf(double x) { return std::isnan(x) ? -kInf : x; }

struct KeyDescIndexAsc {
  const double* key;
  bool operator()(std::int32_t a, std::int32_t b) const {
    if (key[a] != key[b]) return key[a] > key[b];
    return a < b;
  }
};

void softmax_limit(const double* y, int n, double* w) {
  int n_pinf = 0;
  double m = -kInf;
  for (int j = 0; j < n; ++j) {
    if (y[j] == kInf) ++n_pinf;
    m = std::max(m, y[j]);
  }
  if (n_pinf > 0) {
    for (int j = 0; j < n; ++j) w[j] = (y[j] == kInf) ? 1.0 / n_pinf : 0.0;
    return;
  }
  if (m == -kInf) {
    for (int j = 0; j < n; ++j) w[j] = 0.0;
    return;
  }
  double sum = 0.0;
  for (int j = 0; j < n; ++j) {
    w[j] = std::exp(y[j] - m);
    sum += w[j];
  }
  for (int j = 0; j < n; ++j) w[j] /= sum;
}

double selection_key(Family f, double logit, double bias) {
  if (std::isnan(logit)) return -kInf;
  if (f == Family::sigmoid_grouped) return sigmoid(logit) + bias;
  return logit;
}

void select_canonical(const double* key, std::vector<std::int32_t>& cand, int k, std::int32_t* ids) {
  std::partial_sort(cand.begin(), cand.begin() + k, cand.end(), KeyDescIndexAsc{key});
  for (int j = 0; j < k; ++j) ids[j] = cand[static_cast<std::size_t>(j)];
}

double group_score(const double* key, std::int64_t begin, std::int64_t size) {
  double a = -kInf, b = -kInf;
  for (std::int64_t e = begin; e < begin + size; ++e) {
    if (key[e] > a) {
      b = a;
      a = key[e];
    } else if (key[e] > b) {
      b = key[e];
    }
  }
  return size == 1 ? a : a + b;
}

void reference_weights_for_ids(const double* logits, std::int64_t E, const RoutingParams& p,
                               const std::int32_t* ids, double* weights_out) {
  const int k = p.k;
  std::vector<double> y(static_cast<std::size_t>(k));
  for (int j = 0; j < k; ++j) y[static_cast<std::size_t>(j)] = nan_as_neg_inf(logits[ids[j]]);
  switch (p.family) {
    case Family::gemma4:
    case Family::softmax_topk: {
      softmax_limit(y.data(), k, weights_out);
      if (p.family == Family::gemma4 && p.scale != nullptr) {
        for (int j = 0; j < k; ++j) weights_out[j] *= static_cast<double>(p.scale[ids[j]]);
      }
      return;
    }
    case Family::softmax_topk_raw: {
      int n_pinf = 0;
      double m = -kInf;
      for (std::int64_t e = 0; e < E; ++e) {
        const double x = nan_as_neg_inf(logits[e]);
        if (x == kInf) ++n_pinf;
        m = std::max(m, x);
      }
      if (n_pinf > 0) {
        for (int j = 0; j < k; ++j) weights_out[j] = (y[static_cast<std::size_t>(j)] == kInf) ? 1.0 / n_pinf : 0.0;
        return;
      }
      if (m == -kInf) {
        for (int j = 0; j < k; ++j) weights_out[j] = 0.0;
        return;
      }
      double sum = 0.0;
      for (std::int64_t e = 0; e < E; ++e) sum += std::exp(nan_as_neg_inf(logits[e]) - m);
      for (int j = 0; j < k; ++j) weights_out[j] = std::exp(y[static_cast<std::size_t>(j)] - m) / sum;
      return;
    }
    case Family::sigmoid_grouped: {
      double sum = 0.0;
      for (int j = 0; j < k; ++j) {
        weights_out[j] = sigmoid(y[static_cast<std::size_t>(j)]);
        sum += weights_out[j];
      }
      if (sum == 0.0) sum = 1.0;
      const double rs = static_cast<double>(p.routed_scaling);
      for (int j = 0; j < k; ++j) weights_out[j] = weights_out[j] / sum * rs;
      return;
    }
    case Family::sigmoid_top1: {
      for (int j = 0; j < k; ++j) weights_out[j] = sigmoid(y[static_cast<std::size_t>(j)]);
      return;
    }
  }
}

void route_row_reference(const double* logits, std::int64_t E, const RoutingParams& p, double* weights,
                         std::int32_t* ids) {
  std::vector<double> key(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e) {
    const double b = (p.family == Family::sigmoid_grouped && p.bias) ? p.bias[e] : 0.0;
    key[static_cast<std::size_t>(e)] = plain::selection_key(p.family, logits[e], b);
  }
  std::vector<std::int32_t> cand;
  if (p.family == Family::sigmoid_grouped) {
    const std::int64_t gsize = E / p.n_group;
    std::vector<double> gscore(static_cast<std::size_t>(p.n_group));
    std::vector<std::int32_t> groups(static_cast<std::size_t>(p.n_group));
    for (int gi = 0; gi < p.n_group; ++gi) {
      gscore[static_cast<std::size_t>(gi)] = group_score(key.data(), gi * gsize, gsize);
      groups[static_cast<std::size_t>(gi)] = gi;
    }
    std::vector<std::int32_t> chosen(static_cast<std::size_t>(p.topk_group));
    select_canonical(gscore.data(), groups, p.topk_group, chosen.data());
    std::sort(chosen.begin(), chosen.end());
    for (std::int32_t gi : chosen) {
      for (std::int64_t e = gi * gsize; e < (gi + 1) * gsize; ++e) cand.push_back(static_cast<std::int32_t>(e));
    }
  } else {
    cand.resize(static_cast<std::size_t>(E));
    std::iota(cand.begin(), cand.end(), 0);
  }
  select_canonical(key.data(), cand, p.k, ids);
  plain::reference_weights_for_ids(logits, E, p, ids, weights);
}

void route_reference(const GatingView& g, const RoutingParams& p, double* weights, std::int32_t* ids) {
  validate_routing(g, p);
  std::vector<double> row(static_cast<std::size_t>(g.E));
  for (std::int64_t t = 0; t < g.T; ++t) {
    for (std::int64_t e = 0; e < g.E; ++e) row[static_cast<std::size_t>(e)] = g.at(t, e);
    plain::route_row_reference(row.data(), g.E, p, weights + t * p.k, ids + t * p.k);
  }
}

// -- oracle --

using oracle_detail::fmt;
using oracle_detail::make_violation;
using oracle_detail::Sink;

double band_delta(double band_ulps, double v) {
  if (!(band_ulps > 0.0) || !std::isfinite(v)) return 0.0;
  return band_ulps * ulp_fp32(v);
}

double key_margin(double key, double vk) { return key == vk ? 0.0 : key - vk; }

double nth_largest(const std::vector<double>& vals, std::size_t n) {
  std::vector<double> v(vals);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n - 1), v.end(), std::greater<double>());
  return v[n - 1];
}

bool tie_at(const std::vector<double>& vals, std::size_t n) {
  if (n >= vals.size()) return false;
  std::vector<double> v(vals);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n - 1), v.end(), std::greater<double>());
  const double vn = v[n - 1];
  const double next = *std::max_element(v.begin() + static_cast<std::ptrdiff_t>(n), v.end());
  return vn == next;
}

double group_score(const std::vector<double>& key, std::int64_t begin, std::int64_t size) {
  return group_score(key.data(), begin, size);
}

bool check_experts(const std::vector<double>& key, const std::vector<std::int32_t>& cand,
                   const std::vector<char>& selected, const std::int32_t* ids, int k, double band_ulps,
                   std::int64_t row, Sink& sink, double* vk) {
  std::vector<double> ck;
  for (std::int32_t e : cand) ck.push_back(key[static_cast<std::size_t>(e)]);
  const double v = nth_largest(ck, static_cast<std::size_t>(k));
  *vk = v;
  const double d = band_delta(band_ulps, v);
  bool ok = true;
  for (int j = 0; j < k; ++j) {
    const double kj = key[static_cast<std::size_t>(ids[j])];
    if (!(kj >= v - d)) {
      ok = false;
      if (!sink.active()) return false;
      Violation vi = make_violation("selection", row, j, ids[j],
                                    "selected expert " + std::to_string(ids[j]) + " has key " + fmt("%.9g", kj) +
                                        " below the k-th key " + fmt("%.9g", v) + " - band " + fmt("%.3g", d));
      vi.expected = v;
      vi.got = kj;
      vi.tolerance = d;
      vi.margin = key_margin(kj, v);
      sink.add(std::move(vi));
    }
  }
  for (std::int32_t e : cand) {
    if (selected[static_cast<std::size_t>(e)]) continue;
    const double ke = key[static_cast<std::size_t>(e)];
    if (!(ke <= v + d)) {
      ok = false;
      if (!sink.active()) return false;
      Violation vi = make_violation("selection", row, -1, e,
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

double slot_multiplier(const RoutingParams& p, std::int32_t id) {
  if (p.family == Family::gemma4) return p.scale ? static_cast<double>(p.scale[id]) : 1.0;
  if (p.family == Family::sigmoid_grouped) return static_cast<double>(p.routed_scaling);
  return 1.0;
}

void load_row(const GatingView& g, std::int64_t t, std::vector<double>& x) {
  x.resize(static_cast<std::size_t>(g.E));
  for (std::int64_t e = 0; e < g.E; ++e) x[static_cast<std::size_t>(e)] = g.at(t, e);
}

void row_keys(const std::vector<double>& x, const RoutingParams& p, std::vector<double>& key) {
  key.resize(x.size());
  for (std::size_t e = 0; e < x.size(); ++e) {
    const double b = (p.family == Family::sigmoid_grouped && p.bias) ? p.bias[e] : 0.0;
    key[e] = plain::selection_key(p.family, x[e], b);
  }
}

bool check_selection_row(const std::vector<double>& key, const RoutingParams& p, std::int64_t E,
                         const std::int32_t* ids, double band_ulps, std::int64_t row, Sink& sink, double* vk) {
  const int k = p.k;
  std::vector<char> selected(static_cast<std::size_t>(E), 0);
  for (int j = 0; j < k; ++j) selected[static_cast<std::size_t>(ids[j])] = 1;
  std::vector<std::int32_t> cand;
  if (p.family != Family::sigmoid_grouped) {
    cand.resize(static_cast<std::size_t>(E));
    std::iota(cand.begin(), cand.end(), 0);
    return check_experts(key, cand, selected, ids, k, band_ulps, row, sink, vk);
  }
  const int G = p.n_group;
  const std::int64_t gs = E / G;
  const int tg = p.topk_group;
  std::vector<double> gscore(static_cast<std::size_t>(G));
  std::vector<double> gmax(static_cast<std::size_t>(G));
  for (int gi = 0; gi < G; ++gi) {
    gscore[static_cast<std::size_t>(gi)] = group_score(key, gi * gs, gs);
    gmax[static_cast<std::size_t>(gi)] = *std::max_element(key.begin() + gi * gs, key.begin() + (gi + 1) * gs);
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
      Violation vi = make_violation("group-selection", row, j, ids[j],
                                    "expert " + std::to_string(ids[j]) + " is in group " + std::to_string(gi) +
                                        " whose score " + fmt("%.9g", sc) +
                                        " is below the topk_group-th group score " + fmt("%.9g", gk) + " - band " +
                                        fmt("%.3g", dg));
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
                            "selected experts come from " + std::to_string(n_used) + " groups but topk_group = " +
                                std::to_string(tg)));
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
                " above the topk_group-th group score " + fmt("%.9g", gk) + " + band " + fmt("%.3g", dg) +
                " so it must be chosen, but the selected experts already use " + std::to_string(n_used) +
                " other group(s) (topk_group = " + std::to_string(tg) + ")");
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
    if (!in_s[static_cast<std::size_t>(gi)] && gscore[static_cast<std::size_t>(gi)] >= gk - dg) fill.push_back(gi);
  }
  std::stable_sort(fill.begin(), fill.end(), [&](int a, int b) {
    return gmax[static_cast<std::size_t>(a)] < gmax[static_cast<std::size_t>(b)];
  });
  for (std::size_t i = 0; i < fill.size() && n_s < tg; ++i, ++n_s) in_s[static_cast<std::size_t>(fill[i])] = 1;
  for (int gi = 0; gi < G; ++gi) {
    if (!in_s[static_cast<std::size_t>(gi)]) continue;
    for (std::int64_t e = gi * gs; e < (gi + 1) * gs; ++e) cand.push_back(static_cast<std::int32_t>(e));
  }
  return check_experts(key, cand, selected, ids, k, band_ulps, row, sink, vk);
}

bool row_has_kth_tie(const std::vector<double>& key, const RoutingParams& p, std::int64_t E) {
  if (p.family != Family::sigmoid_grouped) return tie_at(key, static_cast<std::size_t>(p.k));
  const int G = p.n_group;
  const std::int64_t gs = E / G;
  std::vector<double> gscore(static_cast<std::size_t>(G));
  for (int gi = 0; gi < G; ++gi) gscore[static_cast<std::size_t>(gi)] = group_score(key, gi * gs, gs);
  if (tie_at(gscore, static_cast<std::size_t>(p.topk_group))) return true;
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

std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

bool structural_row(const float* w, const std::int32_t* ids, int k, std::int64_t E, std::int64_t row,
                    bool check_poison, const std::string& who, Sink& sink, std::vector<char>& weight_written) {
  bool ids_ok = true;
  weight_written.assign(static_cast<std::size_t>(k), 1);
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

WeightBoundInputs weight_bound_inputs(const double* logits, std::int64_t E, const RoutingParams& p,
                                      const std::int32_t* ids) {
  WeightBoundInputs b;
  const auto clean = [](double x) { return std::isnan(x) ? -kInf : x; };
  const auto spread = [&](auto&& values, std::int64_t n) {
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
      a = std::max(a, m - v);
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
      b.max_arg = 0.0;
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
                                        const std::int32_t* ids, double* unscaled_out, double* scale_out) {
  RoutingParams q = p;
  q.scale = nullptr;
  q.routed_scaling = 1.0f;
  plain::reference_weights_for_ids(logits, E, q, ids, unscaled_out);
  for (int j = 0; j < p.k; ++j) scale_out[j] = slot_multiplier(p, ids[j]);
}

/// The strict oracle (check_routing with the strict contract).
CheckReport check_routing(const GatingView& g, const RoutingParams& p, const float* weights,
                          const std::int32_t* ids, const OracleOptions& opt) {
  validate_routing(g, p);
  CheckReport rep;
  Sink sink(&rep, opt.max_violations);
  const int k = p.k;
  std::vector<double> x, key, unscaled(static_cast<std::size_t>(k)), mult(static_cast<std::size_t>(k));
  std::vector<char> written;
  for (std::int64_t t = 0; t < g.T; ++t) {
    plain::load_row(g, t, x);
    plain::row_keys(x, p, key);
    ++rep.rows_checked;
    if (plain::row_has_kth_tie(key, p, g.E)) ++rep.ties_at_kth;
    const float* w = weights + t * k;
    const std::int32_t* id = ids + t * k;
    if (!plain::structural_row(w, id, k, g.E, t, opt.check_poison, "", sink, written)) continue;
    double vk = 0.0;
    plain::check_selection_row(key, p, g.E, id, opt.precision.select_band_ulps, t, sink, &vk);
    plain::reference_unscaled_weights_for_ids(x.data(), g.E, p, id, unscaled.data(), mult.data());
    const WeightBoundInputs b = plain::weight_bound_inputs(x.data(), g.E, p, id);
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
        if (p.family == Family::sigmoid_grouped) v.margin = 0.0;
        sink.add(std::move(v));
      }
    }
  }
  return rep;
}

/// The case classifier (classify in generators.cpp).
std::vector<std::string> classify(const RoutingCase& c) {
  constexpr float kInfF = std::numeric_limits<float>::infinity();
  const auto is_pow2 = [](std::int64_t v) { return v > 0 && (v & (v - 1)) == 0; };
  std::vector<std::string> tags;
  tags.push_back(std::string("dtype=") + dtype_name(c.dtype));
  tags.push_back(std::string("family=") + family_name(c.family));
  tags.push_back(std::string("layout=") + layout_name(c.layout));
  if (!c.value_family.empty()) tags.push_back("values=" + c.value_family);
  if (!c.scale_family.empty()) tags.push_back("scales=" + c.scale_family);
  if (c.T == 0) tags.push_back("T=0");
  if (c.T == 1) tags.push_back("T=1");
  if (c.T > 64) tags.push_back("T>64");
  if (c.T >= 65536) tags.push_back("T>=65536");
  if (c.E == 1) tags.push_back("E=1");
  if (is_pow2(c.E)) tags.push_back("E=pow2");
  if (!is_pow2(c.E) && (is_pow2(c.E - 1) || is_pow2(c.E + 1))) tags.push_back("E=pow2±1");
  if (c.E > 512) tags.push_back("E>512");
  if (c.E > 1024) tags.push_back("E>1024");
  if (c.E % 32 != 0) tags.push_back("E%32!=0");
  if (c.k == 1) tags.push_back("k=1");
  if (c.k == c.E) tags.push_back("k=E");

  bool tie = false, near_tie = false, constant = false, has_inf = false, has_pinf = false, has_nan = false,
       masked = false, denormal = false, huge = false;
  const float huge_at = dtype_max_finite(c.dtype) / 16.0f;
  const float min_normal = dtype_min_normal(c.dtype);
  std::vector<double> key(static_cast<std::size_t>(c.E));
  const bool rows_ok = static_cast<std::int64_t>(c.logits.size()) == c.T * c.E && c.k >= 1 && c.k <= c.E;
  for (std::int64_t t = 0; rows_ok && t < c.T; ++t) {
    const float* x = c.logits.data() + t * c.E;
    bool all_masked = true, all_same = c.E > 1;
    for (std::int64_t e = 0; e < c.E; ++e) {
      const float v = x[e];
      if (std::isnan(v)) has_nan = true;
      if (std::isinf(v)) has_inf = true;
      if (v == kInfF) has_pinf = true;
      if (!(std::isnan(v) || v == -kInfF)) all_masked = false;
      if (v != 0.0f && std::fabs(v) < min_normal) denormal = true;
      if (std::isfinite(v) && std::fabs(v) >= huge_at) huge = true;
      if (!(v == x[0])) all_same = false;
      const double b = (c.family == Family::sigmoid_grouped && !c.bias.empty()) ? c.bias[static_cast<std::size_t>(e)] : 0.0;
      key[static_cast<std::size_t>(e)] = plain::selection_key(c.family, v, b);
    }
    masked = masked || all_masked;
    constant = constant || all_same;
    if (c.k < c.E && (!tie || !near_tie)) {
      std::vector<double> sk = key;
      std::nth_element(sk.begin(), sk.begin() + c.k, sk.end(), std::greater<double>());
      const double next = sk[static_cast<std::size_t>(c.k)];
      const double vk = *std::min_element(sk.begin(), sk.begin() + c.k);
      if (vk == next) tie = true;
      if (c.family != Family::sigmoid_grouped && std::isfinite(vk) && vk != next &&
          static_cast<double>(next_in_dtype(static_cast<float>(next), c.dtype, true)) == vk) {
        near_tie = true;
      }
    }
  }
  if (tie) tags.push_back("tie-at-k");
  if (near_tie) tags.push_back("near-tie-at-k");
  if (constant) tags.push_back("constant-row");
  if (has_inf) tags.push_back("has-inf");
  if (has_pinf) tags.push_back("has-pos-inf");
  if (has_nan) tags.push_back("has-nan");
  if (masked) tags.push_back("masked-row");
  if (denormal) tags.push_back("denormal");
  if (huge) tags.push_back("huge");
  if (c.layout != Layout::contiguous) tags.push_back("non-contiguous");
  if (c.family == Family::gemma4) {
    bool zero = false, neg = false;
    for (float s : c.scale) {
      if (s == 0.0f) zero = true;
      if (s < 0.0f) neg = true;
    }
    if (zero) tags.push_back("zero-scale");
    if (neg) tags.push_back("negative-scale");
  }
  if (c.family == Family::sigmoid_grouped && !c.bias.empty()) tags.push_back("bias");
  return tags;
}

}  // namespace plain

// ---- helpers -------------------------------------------------------------------------------

/// FNV-1a over bytes.
struct Hash {
  std::uint64_t h = 0xcbf29ce484222325ull;
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 0x100000001b3ull;
    }
  }
  template <class T>
  void pod(const T& v) {
    bytes(&v, sizeof v);
  }
  void str(const std::string& s) {
    pod(s.size());
    bytes(s.data(), s.size());
  }
  template <class T>
  void vec(const std::vector<T>& v) {
    pod(v.size());
    if (!v.empty()) bytes(v.data(), v.size() * sizeof(T));
  }
};

void hash_case(Hash& h, const RoutingCase& c) {
  h.pod(static_cast<int>(c.family));
  h.pod(static_cast<int>(c.dtype));
  h.pod(c.T);
  h.pod(c.E);
  h.pod(c.k);
  h.pod(static_cast<int>(c.layout));
  h.pod(c.pad);
  h.vec(c.logits);  // raw float bits (NaN payloads included)
  h.vec(c.scale);
  h.vec(c.bias);
  h.pod(c.n_group);
  h.pod(c.topk_group);
  h.pod(c.routed_scaling);
  h.pod(c.seed);
  h.str(c.value_family);
  h.str(c.scale_family);
}

std::uint64_t hash_cases(std::uint64_t first_seed, int n, const GenConfig& cfg) {
  Hash h;
  for (int i = 0; i < n; ++i) hash_case(h, generate_case(first_seed + static_cast<std::uint64_t>(i), cfg));
  return h.h;
}

/// Small configurations: every family, dtype, layout and value family, shapes kept small.
GenConfig small_config() {
  GenConfig cfg;
  cfg.max_T = 96;
  cfg.max_E = 300;
  cfg.max_elems = 1 << 15;
  return cfg;
}

void expect_same_violation(const Violation& a, const Violation& b, const std::string& where) {
  EXPECT_EQ(a.check, b.check) << where;
  EXPECT_EQ(a.row, b.row) << where;
  EXPECT_EQ(a.slot, b.slot) << where;
  EXPECT_EQ(a.expert, b.expert) << where;
  const auto same = [](double x, double y) {
    return std::memcmp(&x, &y, sizeof x) == 0 || (std::isnan(x) && std::isnan(y));
  };
  EXPECT_TRUE(same(a.expected, b.expected)) << where << ": expected " << a.expected << " vs " << b.expected;
  EXPECT_TRUE(same(a.got, b.got)) << where;
  EXPECT_TRUE(same(a.tolerance, b.tolerance)) << where << ": tolerance " << a.tolerance << " vs " << b.tolerance;
  EXPECT_TRUE(same(a.margin, b.margin)) << where << ": margin " << a.margin << " vs " << b.margin;
  EXPECT_EQ(a.detail, b.detail) << where;
  EXPECT_EQ(a.str(), b.str()) << where;
}

void expect_same_report(const CheckReport& a, const CheckReport& b, const std::string& where) {
  EXPECT_EQ(a.violations_total, b.violations_total) << where << "\n" << a.str() << "\n--\n" << b.str();
  EXPECT_EQ(a.rows_checked, b.rows_checked) << where;
  EXPECT_EQ(a.ties_at_kth, b.ties_at_kth) << where;
  ASSERT_EQ(a.violations.size(), b.violations.size()) << where << "\n" << a.str() << "\n--\n" << b.str();
  for (std::size_t i = 0; i < a.violations.size(); ++i) {
    expect_same_violation(a.violations[i], b.violations[i], where + " violation " + std::to_string(i));
  }
}

std::string describe(const RoutingCase& c) { return describe_case(c, 0); }

/// Outputs to judge: the reference's own, corrupted in a seed-dependent way.
void corrupt(Rng& rng, const RoutingCase& c, std::vector<float>& w, std::vector<std::int32_t>& ids) {
  if (c.T == 0) return;
  const int k = c.k;
  const int mode = static_cast<int>(rng.below(9));
  const auto slot = [&] { return static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(c.T * k))); };
  switch (mode) {
    case 0: break;  // unchanged
    case 1: {       // a few weights nudged by 1..8 ulps or scaled
      for (int i = 0; i < 3; ++i) {
        float& v = w[slot()];
        v = rng.chance(0.5) ? std::nextafter(v, rng.chance(0.5) ? 1e30f : -1e30f) : v * 1.001f;
      }
      break;
    }
    case 2: {  // an id replaced by a random expert (duplicate or wrong selection)
      for (int i = 0; i < 2; ++i) ids[slot()] = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(c.E)));
      break;
    }
    case 3: ids[slot()] = rng.chance(0.5) ? static_cast<std::int32_t>(c.E) : -1; break;
    case 4: {  // unwritten slots
      float pw;
      std::memcpy(&pw, &kPoisonWeightBits, sizeof pw);
      w[slot()] = pw;
      ids[slot()] = kPoisonId;
      break;
    }
    case 5: {  // two slots of a row swapped (weights stay): weight violations
      const std::size_t t = static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(c.T)));
      std::swap(ids[t * k], ids[t * k + static_cast<std::size_t>(k - 1)]);
      break;
    }
    case 6: {  // every row: the last slot moved to the next unselected expert (selection violations)
      for (std::int64_t t = 0; t < c.T; ++t) {
        std::int32_t* r = ids.data() + t * k;
        for (std::int32_t e = 0; e < c.E; ++e) {
          if (std::find(r, r + k, e) == r + k) {
            r[k - 1] = e;
            break;
          }
        }
      }
      break;
    }
    case 7: {  // weights of many rows replaced by garbage
      for (auto& v : w) {
        if (rng.chance(0.3)) v = static_cast<float>(rng.uniform(-2, 2));
      }
      break;
    }
    default: {  // NaN / inf weights
      w[slot()] = rng.chance(0.5) ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
      break;
    }
  }
}

// ---- generated cases are pinned ---------------------------------------------------------------

TEST(FastPaths, GeneratedCasesArePinned) {
  // Recorded with the generators before their hot paths were tuned. A change here changes
  // which case a seed stands for: corpora, shard plans and replay lines would all move.
  EXPECT_EQ(hash_cases(0, 300, GenConfig{}), 0x3e7241ad9b52b845ull) << std::hex << hash_cases(0, 300, GenConfig{});
  EXPECT_EQ(hash_cases(12345, 400, small_config()), 0x5f7eb121366f3aa2ull) << std::hex << hash_cases(12345, 400, small_config());
  GenConfig f32n;
  f32n.dtypes = {DType::f32};
  f32n.families = {Family::gemma4};
  f32n.value_families = {"normal"};
  f32n.scale_families = {"uniform"};
  EXPECT_EQ(hash_cases(0xfeedull, 300, f32n), 0x11276ae658239c4aull) << std::hex << hash_cases(0xfeedull, 300, f32n);
  GenConfig big;
  big.max_T = 250000;
  big.large_T_probability = 0.5;
  big.max_E = 4096;
  big.dtypes = {DType::bf16, DType::f16};
  EXPECT_EQ(hash_cases(777, 60, big), 0x6ea289cd1687da7cull) << std::hex << hash_cases(777, 60, big);
  Hash one;  // build_case directly, for each value family
  for (const std::string& vf : all_value_families()) {
    CaseShape s;
    s.T = 5;
    s.E = 37;
    s.k = 6;
    s.value_family = vf;
    s.scale_family = "mixed";
    hash_case(one, build_case(s, 99));
  }
  EXPECT_EQ(one.h, 0x94a3c37af29f510aull) << std::hex << one.h;
}

// ---- the reference is bit-identical --------------------------------------------------------------

void expect_reference_identical(const RoutingCase& c) {
  const MaterializedCase m = materialize(c);
  const std::size_t n = static_cast<std::size_t>(c.T * c.k);
  std::vector<double> w1(n), w2(n);
  std::vector<std::int32_t> i1(n), i2(n);
  route_reference(m.view, m.params, w1.data(), i1.data());
  plain::route_reference(m.view, m.params, w2.data(), i2.data());
  ASSERT_EQ(i1, i2) << describe(c);
  ASSERT_EQ(std::memcmp(w1.data(), w2.data(), n * sizeof(double)), 0) << describe(c);
  // reference_weights_for_ids on the row's canonical and on shuffled selections
  Rng rng(c.seed ^ 0x5eedull);
  std::vector<double> x(static_cast<std::size_t>(c.E)), a(static_cast<std::size_t>(c.k)), b(a.size());
  for (std::int64_t t = 0; t < std::min<std::int64_t>(c.T, 4); ++t) {
    for (std::int64_t e = 0; e < c.E; ++e) x[static_cast<std::size_t>(e)] = m.view.at(t, e);
    std::vector<std::int32_t> ids(i1.begin() + t * c.k, i1.begin() + (t + 1) * c.k);
    for (std::size_t j = ids.size(); j > 1; --j) std::swap(ids[j - 1], ids[rng.below(j)]);
    reference_weights_for_ids(x.data(), c.E, m.params, ids.data(), a.data());
    plain::reference_weights_for_ids(x.data(), c.E, m.params, ids.data(), b.data());
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)), 0) << describe(c);
  }
}

TEST(FastPaths, ReferenceIsBitIdenticalOnGeneratedCases) {
  for (std::uint64_t seed = 0; seed < 3000; ++seed) {
    expect_reference_identical(generate_case(seed, small_config()));
    if (HasFatalFailure()) return;
  }
  GenConfig wide;  // larger E and k, every value family
  wide.max_T = 8;
  wide.max_E = 2048;
  wide.max_k = 300;
  for (std::uint64_t seed = 0; seed < 300; ++seed) {
    expect_reference_identical(generate_case(seed, wide));
    if (HasFatalFailure()) return;
  }
}

// ---- the oracle judges identically ---------------------------------------------------------------

void expect_oracle_identical(const RoutingCase& c, const std::vector<float>& w, const std::vector<std::int32_t>& ids,
                             const std::string& what) {
  const MaterializedCase m = materialize(c);
  for (double band : {0.0, 2.0}) {
    for (int maxv : {1, 8, 1000}) {
      OracleOptions opt;
      opt.precision.select_band_ulps = band;
      opt.max_violations = maxv;
      const CheckReport a = check_routing(m.view, m.params, w.data(), ids.data(), opt);
      const CheckReport b = plain::check_routing(m.view, m.params, w.data(), ids.data(), opt);
      expect_same_report(a, b, what + " band " + std::to_string(band) + " max " + std::to_string(maxv) + "\n" +
                                   describe(c));
    }
  }
}

TEST(FastPaths, OracleReportsAreIdenticalOnCorruptedOutputs) {
  GenConfig cfg = small_config();
  for (std::uint64_t seed = 0; seed < 2500; ++seed) {
    const RoutingCase c = generate_case(seed, cfg);
    const MaterializedCase m = materialize(c);
    const std::size_t n = static_cast<std::size_t>(c.T * c.k);
    std::vector<double> wd(n);
    std::vector<std::int32_t> ids(n);
    route_reference(m.view, m.params, wd.data(), ids.data());
    std::vector<float> w(wd.begin(), wd.end());
    Rng rng(seed * 31 + 7);
    corrupt(rng, c, w, ids);
    expect_oracle_identical(c, w, ids, "seed " + std::to_string(seed));
    if (HasFailure()) return;
  }
}

TEST(FastPaths, OracleReportsAreIdenticalOnKernelMutants) {
  GenConfig cfg = small_config();
  cfg.families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw};
  cfg.max_k = 32;
  for (int mi = 0; mi < static_cast<int>(kernels::Mutant::count_); ++mi) {
    const auto mutant = static_cast<kernels::Mutant>(mi);
    TargetOptions topt;
    topt.mutant = kernels::mutant_name(mutant);
    auto target = make_core_target("kernel:auto", topt);
    for (std::uint64_t seed = 0; seed < 150; ++seed) {
      const RoutingCase c = generate_case(seed * 7 + static_cast<std::uint64_t>(mi), cfg);
      if (!target->unsupported(c).empty()) continue;
      const MaterializedCase m = materialize(c);
      const std::size_t n = static_cast<std::size_t>(c.T * c.k);
      const std::size_t g = kOutputGuardElements;
      std::vector<float> wp(n + 2 * g);
      std::vector<std::int32_t> ip(n + 2 * g);
      poison_outputs(wp.data(), ip.data(), static_cast<std::int64_t>(wp.size()));
      if (target->run(m, wp.data() + g, ip.data() + g).status != RunOutcome::Status::ok) continue;
      std::vector<float> w(wp.begin() + g, wp.begin() + g + n);
      std::vector<std::int32_t> ids(ip.begin() + g, ip.begin() + g + n);
      expect_oracle_identical(c, w, ids, std::string("mutant ") + topt.mutant + " seed " + std::to_string(seed));
      if (HasFailure()) return;
    }
  }
}


// ---- case classes are identical -------------------------------------------------------------------

TEST(FastPaths, CaseClassesAreIdentical) {
  GenConfig cfg = small_config();
  cfg.max_k = 64;
  for (std::uint64_t seed = 0; seed < 4000; ++seed) {
    const RoutingCase c = generate_case(seed, cfg);
    ASSERT_EQ(classify(c), plain::classify(c)) << describe(c);
  }
}

// ---- the row-level building blocks (shared with the contract oracle and metamorphic.cpp) --------

TEST(FastPaths, OracleRowBlocksAreIdentical) {
  namespace od = oracle_detail;
  GenConfig cfg = small_config();
  cfg.max_k = 64;
  for (std::uint64_t seed = 0; seed < 2000; ++seed) {
    const RoutingCase c = generate_case(seed, cfg);
    if (c.T == 0) continue;
    const MaterializedCase m = materialize(c);
    const RoutingParams& p = m.params;
    Rng rng(seed + 1000003);
    std::vector<double> x1, x2, k1, k2;
    for (std::int64_t t = 0; t < std::min<std::int64_t>(c.T, 3); ++t) {
      od::load_row(m.view, t, x1);
      plain::load_row(m.view, t, x2);
      ASSERT_EQ(x1.size(), x2.size());
      ASSERT_EQ(std::memcmp(x1.data(), x2.data(), x1.size() * sizeof(double)), 0) << describe(c);
      od::row_keys(x1, p, k1);
      plain::row_keys(x2, p, k2);
      ASSERT_EQ(std::memcmp(k1.data(), k2.data(), k1.size() * sizeof(double)), 0) << describe(c);
      // the contract oracle ranks NaN logits as +inf keys: include such keys too
      if (rng.chance(0.3)) {
        for (std::size_t e = 0; e < k1.size(); ++e) {
          if (std::isnan(x1[e]) || rng.chance(0.05)) k1[e] = k2[e] = std::numeric_limits<double>::infinity();
        }
      }
      EXPECT_EQ(od::row_has_kth_tie(k1, p, c.E), plain::row_has_kth_tie(k2, p, c.E)) << describe(c);
      // a valid selection, a corrupted one, and unique random ones
      std::vector<std::int32_t> ids(static_cast<std::size_t>(c.k));
      std::vector<double> wd(ids.size());
      route_row_reference(x1.data(), c.E, p, wd.data(), ids.data());
      for (int variant = 0; variant < 3; ++variant) {
        if (variant == 1) {
          std::vector<std::int32_t> perm(static_cast<std::size_t>(c.E));
          std::iota(perm.begin(), perm.end(), 0);
          for (std::size_t j = perm.size(); j > 1; --j) std::swap(perm[j - 1], perm[rng.below(j)]);
          std::copy(perm.begin(), perm.begin() + c.k, ids.begin());
        } else if (variant == 2) {
          std::reverse(ids.begin(), ids.end());
        }
        for (double band : {0.0, 4.0}) {
          for (bool active : {true, false}) {
            CheckReport r1, r2;
            od::Sink s1(active ? &r1 : nullptr, 1000), s2(active ? &r2 : nullptr, 1000);
            double v1 = -1, v2 = -1;
            const bool ok1 = od::check_selection_row(k1, p, c.E, ids.data(), band, t, s1, &v1);
            const bool ok2 = plain::check_selection_row(k2, p, c.E, ids.data(), band, t, s2, &v2);
            EXPECT_EQ(ok1, ok2) << describe(c);
            if (ok1 || active) {
              EXPECT_EQ(std::memcmp(&v1, &v2, sizeof v1), 0) << v1 << " vs " << v2 << "\n" << describe(c);
            }
            expect_same_report(r1, r2, "selection row " + std::to_string(t) + "\n" + describe(c));
          }
        }
      }
      // structure of a corrupted output row
      std::vector<float> w(wd.begin(), wd.end());
      std::vector<std::int32_t> sid = ids;
      if (rng.chance(0.5)) sid[rng.below(sid.size())] = static_cast<std::int32_t>(rng.range(-2, c.E + 1));
      if (rng.chance(0.3)) sid[rng.below(sid.size())] = kPoisonId;
      if (rng.chance(0.3)) std::memcpy(&w[rng.below(w.size())], &kPoisonWeightBits, 4);
      for (bool poison : {true, false}) {
        CheckReport r1, r2;
        od::Sink s1(&r1, 1000), s2(&r2, 1000);
        std::vector<char> ww1, ww2;
        EXPECT_EQ(od::structural_row(w.data(), sid.data(), c.k, c.E, t, poison, "who: ", s1, ww1),
                  plain::structural_row(w.data(), sid.data(), c.k, c.E, t, poison, "who: ", s2, ww2));
        EXPECT_EQ(ww1, ww2);
        expect_same_report(r1, r2, "structure\n" + describe(c));
      }
      // error-bound inputs and unscaled weights for a valid selection
      const WeightBoundInputs b1 = weight_bound_inputs(x1.data(), c.E, p, ids.data());
      const WeightBoundInputs b2 = plain::weight_bound_inputs(x2.data(), c.E, p, ids.data());
      EXPECT_EQ(std::memcmp(&b1.max_arg, &b2.max_arg, 8), 0);
      EXPECT_EQ(std::memcmp(&b1.denominator, &b2.denominator, 8), 0);
      EXPECT_EQ(b1.n_terms, b2.n_terms);
      if (HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace moecheck
