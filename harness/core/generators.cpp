// moecheck case generators: implementation of harness/core/generators.hpp.
#include "harness/core/generators.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>

#include "reference/format.hpp"
#include "reference/row_select.hpp"

namespace moecheck {

namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr float kNanF = std::numeric_limits<float>::quiet_NaN();

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/// One xoshiro256** step on state s (Rng::next; inlined into the value loops of this file).
inline std::uint64_t xoshiro_next(std::uint64_t* s) {
  const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
  const std::uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/// Rng::uniform of a raw draw: its top 53 bits times 2^-53 (converted through int64, exact).
inline double unit_interval(std::uint64_t r) { return static_cast<double>(static_cast<std::int64_t>(r >> 11)) * 0x1p-53; }

template <class T>
const T& pick(Rng& rng, const std::vector<T>& v) {
  return v[static_cast<std::size_t>(rng.below(v.size()))];
}

bool is_pow2(std::int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

int floor_log2(std::int64_t v) {
  int r = 0;
  while (v > 1) {
    v >>= 1;
    ++r;
  }
  return r;
}

/// The first m experts (m <= E) of a row's order, canonical like the reference: value
/// descending (NaN as -inf), ties by ascending index (row_select::canonical_top on the values
/// widened to double, which keeps their order and equalities).
std::vector<std::int64_t> order_desc(const float* x, std::int64_t E, std::int64_t m) {
  const auto n = static_cast<std::size_t>(E);
  thread_local std::vector<double> key, a, b;
  thread_local std::vector<std::int32_t> ids, eq;
  if (key.size() < n) {
    key.resize(n);
    a.resize(n);
    b.resize(n);
    ids.resize(n);
    eq.resize(n);
  }
  for (std::size_t e = 0; e < n; ++e) key[e] = std::isnan(x[e]) ? -kInfF : x[e];
  row_select::canonical_top(key.data(), n, static_cast<std::size_t>(m), ids.data(), a.data(), b.data(), eq.data());
  return std::vector<std::int64_t>(ids.begin(), ids.begin() + m);
}

float rnd(double v, DType d) { return round_to_dtype(static_cast<float>(v), d); }

/// Fills one row (E values) of the given value family. Every value is exact in d.
void fill_row(Rng& rng, const std::string& vf, DType d, std::int64_t E, int k, double sigma, int int_range,
              float* x) {
  const auto normal_row = [&] {
    for (std::int64_t e = 0; e < E; ++e) x[e] = rnd(rng.normal() * sigma, d);
  };
  if (vf == "normal") {
    normal_row();
  } else if (vf == "ties") {
    normal_row();
    const auto o = order_desc(x, E, std::min<std::int64_t>(E, k + 2));  // ranks up to k + 1, or E - 2 when k == E
    const float v = x[o[static_cast<std::size_t>(k - 1)]];
    if (k < E) {
      x[o[static_cast<std::size_t>(k)]] = v;  // tie exactly at the cut
      if (k + 1 < E && rng.chance(0.5)) x[o[static_cast<std::size_t>(k + 1)]] = v;
      if (k >= 2 && rng.chance(0.3)) x[o[static_cast<std::size_t>(k - 2)]] = v;
    } else if (E >= 2) {
      x[o[static_cast<std::size_t>(E - 2)]] = v;
    }
    if (rng.chance(0.2)) x[rng.below(static_cast<std::uint64_t>(E))] = v;
  } else if (vf == "near-ties") {
    normal_row();
    const auto o = order_desc(x, E, std::min<std::int64_t>(E, k + 1));
    const float v = x[o[static_cast<std::size_t>(k - 1)]];
    if (k < E) x[o[static_cast<std::size_t>(k)]] = next_in_dtype(v, d, false);
    if (k >= 2 && rng.chance(0.5)) x[o[static_cast<std::size_t>(k - 2)]] = next_in_dtype(v, d, true);
  } else if (vf == "constant") {
    float c = rnd(rng.normal() * sigma, d);
    if (rng.chance(0.2)) c = 0.0f;
    if (rng.chance(0.1)) c = dtype_max_finite(d);
    for (std::int64_t e = 0; e < E; ++e) x[e] = c;
  } else if (vf == "huge") {
    const double mx = dtype_max_finite(d);
    for (std::int64_t e = 0; e < E; ++e) {
      if (rng.chance(0.6)) {
        const double v = rng.uniform(0.5, 1.0) * mx;
        x[e] = rnd(rng.chance(0.5) ? v : -v, d);
      } else {
        x[e] = rnd(rng.normal() * sigma, d);
      }
    }
  } else if (vf == "inf") {
    normal_row();
    const double r = rng.uniform();
    if (r < 0.15) {
      for (std::int64_t e = 0; e < E; ++e) x[e] = -kInfF;  // zero-mass row
    } else if (r < 0.3) {
      const std::int64_t m = rng.range(1, std::min<std::int64_t>(3, E));
      for (std::int64_t i = 0; i < m; ++i) x[rng.below(static_cast<std::uint64_t>(E))] = kInfF;
    } else {
      for (std::int64_t e = 0; e < E; ++e) {
        if (rng.chance(0.15)) x[e] = rng.chance(0.6) ? -kInfF : kInfF;
      }
    }
  } else if (vf == "nan") {
    normal_row();
    const double r = rng.uniform();
    if (r < 0.15) {
      for (std::int64_t e = 0; e < E; ++e) x[e] = kNanF;
    } else if (r < 0.3) {
      for (std::int64_t e = 0; e < E; ++e) x[e] = rng.chance(0.5) ? kNanF : -kInfF;
    } else if (r < 0.4) {
      for (std::int64_t e = 0; e < E; ++e) {
        if (rng.chance(0.3)) x[e] = rng.chance(0.5) ? kNanF : kInfF;
      }
    } else {
      for (std::int64_t e = 0; e < E; ++e) {
        if (rng.chance(0.15)) x[e] = kNanF;
      }
    }
  } else if (vf == "denormal") {
    const int mbits = d == DType::f32 ? 23 : d == DType::f16 ? 10 : 7;
    const double sub = dtype_min_subnormal(d);
    for (std::int64_t e = 0; e < E; ++e) {
      const double r = rng.uniform();
      double v;
      if (r < 0.7) {
        v = static_cast<double>(rng.range(1, (std::int64_t{1} << mbits) - 1)) * sub;  // exact
      } else if (r < 0.85) {
        v = 0.0;
      } else {
        v = static_cast<double>(rng.range(1, 4)) * dtype_min_normal(d);
      }
      x[e] = static_cast<float>(rng.chance(0.5) ? -v : v);
    }
  } else if (vf == "bf16-exact") {
    for (std::int64_t e = 0; e < E; ++e) x[e] = round_to_dtype(rnd(rng.normal() * sigma, DType::bf16), d);
  } else if (vf == "integer") {
    for (std::int64_t e = 0; e < E; ++e) x[e] = static_cast<float>(rng.range(-int_range, int_range));
  } else {
    throw RoutingError("value_family: unknown value family \"" + vf + "\"");
  }
}

void fill_scale(Rng& rng, const std::string& sf, std::int64_t E, std::vector<float>* s) {
  s->clear();
  if (sf == "ones") return;
  const auto u = [&] { return static_cast<float>(rng.uniform(0.5, 1.5)); };
  s->resize(static_cast<std::size_t>(E));
  for (auto& v : *s) v = u();
  if (sf == "uniform") return;
  if (sf == "zero") {
    for (auto& v : *s) {
      if (rng.chance(0.3)) v = 0.0f;
    }
    (*s)[rng.below(static_cast<std::uint64_t>(E))] = 0.0f;
  } else if (sf == "negative") {
    for (auto& v : *s) {
      if (rng.chance(0.3)) v = -v;
    }
    auto& one = (*s)[rng.below(static_cast<std::uint64_t>(E))];
    one = -std::fabs(one);
  } else if (sf == "mixed") {
    for (auto& v : *s) {
      switch (rng.below(7)) {
        case 0: v = 1.0f; break;
        case 1: v = u(); break;
        case 2: v = 0.0f; break;
        case 3: v = -0.0f; break;
        case 4: v = -u(); break;
        case 5: v = u() * 1e-3f; break;
        default: v = u() * 100.0f; break;
      }
    }
  } else {
    throw RoutingError("scale_family: unknown scale family \"" + sf + "\"");
  }
}

}  // namespace

// ---- PRNG ----------------------------------------------------------------------------

Rng::Rng(std::uint64_t seed) {
  std::uint64_t st = seed;
  for (auto& s : s_) s = splitmix64(&st);
}

std::uint64_t Rng::next() { return xoshiro_next(s_); }

std::uint64_t Rng::below(std::uint64_t n) {
  // reject the lowest (2^64 mod n) values so the remainder is exactly uniform
  const std::uint64_t threshold = (0 - n) % n;
  for (;;) {
    const std::uint64_t r = next();
    if (r >= threshold) return r % n;
  }
}

std::int64_t Rng::range(std::int64_t lo, std::int64_t hi) {
  return lo + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(hi - lo) + 1));
}

double Rng::uniform() { return unit_interval(xoshiro_next(s_)); }

double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

bool Rng::chance(double p) { return uniform() < p; }

double Rng::normal() {
  double s = 0.0;
  for (int i = 0; i < 12; ++i) s += unit_interval(xoshiro_next(s_));
  return s - 6.0;
}

// ---- dtype helpers -------------------------------------------------------------------

float dtype_max_finite(DType d) {
  switch (d) {
    case DType::f32: return std::numeric_limits<float>::max();
    case DType::f16: return 65504.0f;
    case DType::bf16: return bf16_bits_to_float(0x7f7f);
  }
  return std::numeric_limits<float>::max();
}

float dtype_min_normal(DType d) { return d == DType::f16 ? 0x1p-14f : 0x1p-126f; }

float dtype_min_subnormal(DType d) {
  switch (d) {
    case DType::f32: return 0x1p-149f;
    case DType::f16: return 0x1p-24f;
    case DType::bf16: return 0x1p-133f;
  }
  return 0x1p-149f;
}

float next_in_dtype(float x, DType d, bool up) {
  if (std::isnan(x) || std::isinf(x)) return x;
  if (d == DType::f32) return std::nextafter(x, up ? kInfF : -kInfF);
  // binary16 / bfloat16: step the 16-bit pattern (sign-magnitude)
  std::uint16_t b = d == DType::f16 ? float_to_half_bits(x) : float_to_bf16_bits(x);
  const auto to_f = [d](std::uint16_t v) { return d == DType::f16 ? half_bits_to_float(v) : bf16_bits_to_float(v); };
  const bool neg = (b & 0x8000u) != 0;
  const std::uint16_t mag = b & 0x7fffu;
  if (mag == 0) return to_f(up ? 0x0001 : 0x8001);
  if (neg == up) {
    b = static_cast<std::uint16_t>(b - 1);  // towards zero
  } else {
    b = static_cast<std::uint16_t>(b + 1);  // away from zero (max finite -> inf)
  }
  return to_f(b);
}

// ---- families ------------------------------------------------------------------------

const std::vector<std::string>& all_value_families() {
  static const std::vector<std::string> v = {"normal",   "ties",     "near-ties",  "constant", "huge",
                                             "inf",      "nan",      "denormal",   "bf16-exact", "integer"};
  return v;
}

const std::vector<std::string>& all_scale_families() {
  static const std::vector<std::string> v = {"ones", "uniform", "zero", "negative", "mixed"};
  return v;
}

// ---- cases ---------------------------------------------------------------------------

/* Value seed -> values. Per case: sigma from {0.25, 1, 4, 16}, integer range from {2, 5, 100};
 * then rows in order, then the scale, then the bias. */
RoutingCase build_case(const CaseShape& s, std::uint64_t value_seed) {
  RoutingCase c;
  c.family = s.family;
  c.dtype = s.dtype;
  c.T = s.T;
  c.E = s.E;
  c.k = s.k;
  c.layout = s.layout;
  c.pad = s.pad;
  c.value_family = s.value_family;
  c.scale_family = s.family == Family::gemma4 ? s.scale_family : "ones";
  c.seed = value_seed;
  if (s.family == Family::sigmoid_grouped) {
    c.n_group = s.n_group;
    c.topk_group = s.topk_group;
    c.routed_scaling = s.routed_scaling;
  }
  const GatingView shape_view{nullptr, s.dtype, 0, s.E, s.E, 1};
  validate_routing(shape_view, c.params());
  if ((s.layout == Layout::padded || s.layout == Layout::strided) && s.pad < 1) {
    throw RoutingError(std::string("pad: layout ") + layout_name(s.layout) + " needs pad >= 1 (got " +
                       std::to_string(s.pad) + ")");
  }
  if (s.T < 0) throw RoutingError("T must be >= 0 (got T = " + std::to_string(s.T) + ")");
  Rng rng(value_seed);
  static const double sigmas[] = {0.25, 1.0, 4.0, 16.0};
  static const int ranges[] = {2, 5, 100};
  const double sigma = sigmas[rng.below(4)];
  const int int_range = ranges[rng.below(3)];
  c.logits.resize(static_cast<std::size_t>(s.T * s.E));
  for (std::int64_t t = 0; t < s.T; ++t) {
    fill_row(rng, s.value_family, s.dtype, s.E, s.k, sigma, int_range, c.logits.data() + t * s.E);
  }
  if (s.T == 0) {  // still reject unknown names
    std::vector<float> scratch(static_cast<std::size_t>(s.E));
    fill_row(rng, s.value_family, s.dtype, s.E, s.k, sigma, int_range, scratch.data());
  }
  fill_scale(rng, c.scale_family, s.E, &c.scale);
  if (s.family == Family::sigmoid_grouped && s.with_bias) {
    c.bias.resize(static_cast<std::size_t>(s.E));
    for (auto& b : c.bias) b = static_cast<float>(rng.uniform(-0.1, 0.1));
  }
  return c;
}

/* Shape distribution:
 *   E: 35% a power of two 2^j (j uniform, 2^j <= max_E); 25% 2^j +- 1; 25% uniform in
 *      [1, min(16, max_E)]; 15% uniform in [1, max_E].
 *   sigmoid_grouped: n_group uniform among the divisors of E that are <= 16, topk_group uniform
 *      in [1, n_group]; k capped at topk_group * E / n_group. sigmoid_top1: k = 1.
 *   k (kmax = min(E, max_k, group cap)): 25% 1; 15% kmax; 40% uniform in [1, min(8, kmax)];
 *      20% uniform in [1, kmax].
 *   T: 5% 0; large_T_probability log-uniform in (64, max_T] (uniform octave, uniform inside);
 *      otherwise half uniform in [1, 8],
 *      half uniform in [1, 64]; always clamped to max_T and to max_elems / E (at least 1).
 *   layout uniform over cfg.layouts; pad 1..17 (padded) or 1..3 (strided).
 *   value/scale family uniform over the configured lists; bias 50%; routed_scaling from
 *   {1, 2.5, 0.5}. */
CaseShape generate_shape(Rng& rng, const GenConfig& cfg) {
  static const std::vector<DType> all_dtypes = {DType::f32, DType::f16, DType::bf16};
  static const std::vector<Family> all_families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw,
                                                   Family::sigmoid_grouped, Family::sigmoid_top1};
  static const std::vector<Layout> all_layouts = {Layout::contiguous, Layout::padded, Layout::transposed,
                                                  Layout::strided};
  CaseShape s;
  s.family = pick(rng, cfg.families.empty() ? all_families : cfg.families);
  s.dtype = pick(rng, cfg.dtypes.empty() ? all_dtypes : cfg.dtypes);
  s.layout = pick(rng, cfg.layouts.empty() ? all_layouts : cfg.layouts);
  s.value_family = pick(rng, cfg.value_families.empty() ? all_value_families() : cfg.value_families);
  s.scale_family = pick(rng, cfg.scale_families.empty() ? all_scale_families() : cfg.scale_families);
  if (s.family != Family::gemma4) s.scale_family = "ones";

  const std::int64_t max_e = std::max<std::int64_t>(1, cfg.max_E);
  const int lg = floor_log2(max_e);
  const double r = rng.uniform();
  if (r < 0.35) {
    s.E = std::int64_t{1} << rng.range(0, lg);
  } else if (r < 0.6) {
    const std::int64_t p = std::int64_t{1} << rng.range(1, std::max(1, lg));
    s.E = std::clamp<std::int64_t>(rng.chance(0.5) ? p + 1 : p - 1, 1, max_e);
  } else if (r < 0.85) {
    s.E = rng.range(1, std::min<std::int64_t>(16, max_e));
  } else {
    s.E = rng.range(1, max_e);
  }

  std::int64_t cap = std::min<std::int64_t>(s.E, std::max(1, cfg.max_k));
  if (s.family == Family::sigmoid_grouped) {
    std::vector<int> divs;
    for (int dv = 1; dv <= 16 && dv <= s.E; ++dv) {
      if (s.E % dv == 0) divs.push_back(dv);
    }
    s.n_group = pick(rng, divs);
    s.topk_group = static_cast<int>(rng.range(1, s.n_group));
    cap = std::min<std::int64_t>(cap, s.topk_group * (s.E / s.n_group));
    s.with_bias = rng.chance(0.5);
    static const float scalings[] = {1.0f, 2.5f, 0.5f};
    s.routed_scaling = scalings[rng.below(3)];
  }
  if (s.family == Family::sigmoid_top1) cap = 1;
  const double rk = rng.uniform();
  if (rk < 0.25) {
    s.k = 1;
  } else if (rk < 0.4) {
    s.k = static_cast<int>(cap);
  } else if (rk < 0.8) {
    s.k = static_cast<int>(rng.range(1, std::min<std::int64_t>(8, cap)));
  } else {
    s.k = static_cast<int>(rng.range(1, cap));
  }

  const std::int64_t max_t = std::max<std::int64_t>(0, cfg.max_T);
  const double rt = rng.uniform();
  if (rt < 0.05 || max_t == 0) {
    s.T = 0;
  } else if (rt < 0.05 + cfg.large_T_probability && max_t > 64) {
    // log-uniform with integer arithmetic only: an octave [2^j + 1, 2^(j+1)] with j uniform in
    // [6, floor(log2 max_T)], then uniform inside it (clamped to max_T)
    const int j = static_cast<int>(rng.range(6, floor_log2(max_t)));
    const std::int64_t lo = (std::int64_t{1} << j) + 1;
    const std::int64_t hi = std::min<std::int64_t>(std::int64_t{1} << (j + 1), max_t);
    s.T = lo <= hi ? rng.range(lo, hi) : max_t;
  } else {
    s.T = std::min<std::int64_t>(max_t, rng.chance(0.5) ? rng.range(1, 8) : rng.range(1, 64));
  }
  if (s.T > 0) s.T = std::max<std::int64_t>(1, std::min<std::int64_t>(s.T, cfg.max_elems / s.E));

  if (s.layout == Layout::padded) s.pad = rng.range(1, 17);
  if (s.layout == Layout::strided) s.pad = rng.range(1, 3);
  return s;
}

RoutingCase generate_case(std::uint64_t seed, const GenConfig& cfg) {
  Rng rng(seed);
  const CaseShape s = generate_shape(rng, cfg);
  RoutingCase c = build_case(s, rng.next());
  c.seed = seed;
  return c;
}

// ---- classification ------------------------------------------------------------------

std::vector<std::string> classify(const RoutingCase& c) {
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
  std::vector<double> key(static_cast<std::size_t>(c.E)), sk(key.size()), sk_tmp(key.size());
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
    }
    masked = masked || all_masked;
    constant = constant || all_same;
    // near-tie-at-k is never set for sigmoid_grouped: once it has a tie, its keys are not needed
    if (c.k < c.E && (!tie || !near_tie) && !(tie && c.family == Family::sigmoid_grouped)) {
      if (c.family == Family::sigmoid_grouped) {
        for (std::int64_t e = 0; e < c.E; ++e) {
          const double b = c.bias.empty() ? 0.0 : c.bias[static_cast<std::size_t>(e)];
          key[static_cast<std::size_t>(e)] = selection_key(c.family, x[e], b);
        }
      } else {  // selection_key: the logit, NaN -> -inf
        for (std::int64_t e = 0; e < c.E; ++e) {
          key[static_cast<std::size_t>(e)] = std::isnan(x[e]) ? -std::numeric_limits<double>::infinity() : x[e];
        }
      }
      // vk: the k-th largest key; next: the (k+1)-th (vk again when more than k keys reach vk,
      // else the largest key below vk). Which of 0 and -0 they are does not matter below.
      std::copy(key.begin(), key.end(), sk.begin());
      const double vk = row_select::kth_largest_any(sk.data(), sk_tmp.data(), key.size(), static_cast<std::size_t>(c.k));
      std::size_t ge = 0;
      double below = -std::numeric_limits<double>::infinity();
      for (const double v : key) {
        ge += v >= vk ? 1 : 0;
        below = v < vk && v > below ? v : below;
      }
      const double next = ge > static_cast<std::size_t>(c.k) ? vk : below;
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

std::vector<std::string> expected_case_classes(const GenConfig& cfg) {
  static const std::vector<DType> all_dtypes = {DType::f32, DType::f16, DType::bf16};
  static const std::vector<Family> all_families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw,
                                                   Family::sigmoid_grouped, Family::sigmoid_top1};
  const auto& dtypes = cfg.dtypes.empty() ? all_dtypes : cfg.dtypes;
  const auto& families = cfg.families.empty() ? all_families : cfg.families;
  const auto has_value = [&](const char* vf) {
    return cfg.value_families.empty() ||
           std::find(cfg.value_families.begin(), cfg.value_families.end(), vf) != cfg.value_families.end();
  };
  const auto has_scale = [&](const char* sf) {
    return cfg.scale_families.empty() ||
           std::find(cfg.scale_families.begin(), cfg.scale_families.end(), sf) != cfg.scale_families.end();
  };
  const bool gemma4 = std::find(families.begin(), families.end(), Family::gemma4) != families.end();
  const bool not_grouped = std::any_of(families.begin(), families.end(), [](Family f) {
    return f != Family::sigmoid_grouped;  // classify() tags no near tie for grouped selection
  });
  const bool several = cfg.max_E >= 2;
  std::vector<std::string> out;
  for (DType d : dtypes) out.push_back(std::string("dtype=") + dtype_name(d));
  for (Family f : families) out.push_back(std::string("family=") + family_name(f));
  out.push_back("T=0");
  if (cfg.max_T >= 65536 && cfg.large_T_probability > 0 && cfg.max_elems >= 65536) out.push_back("T>=65536");
  out.push_back("E=pow2");
  if (cfg.max_E >= 3) out.push_back("E=pow2±1");
  if (cfg.max_E > 1024) out.push_back("E>1024");
  out.push_back("k=1");
  out.push_back("k=E");
  if (several && (has_value("ties") || has_value("integer") || has_value("constant"))) out.push_back("tie-at-k");
  if (several && not_grouped && has_value("near-ties")) out.push_back("near-tie-at-k");
  if (has_value("inf")) out.push_back("has-inf");
  if (has_value("nan")) out.push_back("has-nan");
  if (has_value("inf") || has_value("nan")) out.push_back("masked-row");
  if (has_value("denormal")) out.push_back("denormal");
  if (cfg.layouts.empty() || std::any_of(cfg.layouts.begin(), cfg.layouts.end(),
                                         [](Layout l) { return l != Layout::contiguous; })) {
    out.push_back("non-contiguous");
  }
  if (gemma4 && (has_scale("zero") || has_scale("mixed"))) out.push_back("zero-scale");
  if (gemma4 && (has_scale("negative") || has_scale("mixed"))) out.push_back("negative-scale");
  return out;
}

std::string describe_case(const RoutingCase& c, std::size_t max_values) {
  std::string s = std::string("case family=") + family_name(c.family) + " dtype=" + dtype_name(c.dtype) +
                  " T=" + std::to_string(c.T) + " E=" + std::to_string(c.E) + " k=" + std::to_string(c.k) +
                  " layout=" + layout_name(c.layout);
  if (c.pad) s += " pad=" + std::to_string(c.pad);
  s += " values=" + c.value_family + " scales=" + c.scale_family;
  if (c.family == Family::sigmoid_grouped) {
    s += " n_group=" + std::to_string(c.n_group) + " topk_group=" + std::to_string(c.topk_group) +
         " routed_scaling=" + num(c.routed_scaling);
  }
  char seed[32];
  std::snprintf(seed, sizeof seed, "0x%016llx", static_cast<unsigned long long>(c.seed));
  s += std::string(" seed=") + seed;
  std::size_t budget = max_values;
  const auto list = [&](const float* v, std::size_t n) {
    std::string out = "[";
    for (std::size_t i = 0; i < n; ++i) {
      if (budget == 0) {
        out += "... " + std::to_string(n - i) + " more";
        break;
      }
      --budget;
      out += (i ? ", " : "") + num(v[i]);
    }
    return out + "]";
  };
  for (std::int64_t t = 0; t < c.T && static_cast<std::int64_t>(c.logits.size()) >= (t + 1) * c.E; ++t) {
    if (budget == 0) {
      s += "\n  ... " + std::to_string(c.T - t) + " more row(s)";
      break;
    }
    s += "\n  logits[" + std::to_string(t) + "] = " + list(c.logits.data() + t * c.E, static_cast<std::size_t>(c.E));
  }
  if (!c.scale.empty()) s += "\n  scale = " + list(c.scale.data(), c.scale.size());
  if (!c.bias.empty()) s += "\n  bias = " + list(c.bias.data(), c.bias.size());
  return s;
}

std::vector<std::int64_t> make_permutation(std::int64_t E, int n_group, std::uint64_t seed) {
  if (E < 1) throw RoutingError("make_permutation: E must be >= 1 (got " + std::to_string(E) + ")");
  if (n_group < 1 || E % n_group != 0) {
    throw RoutingError("make_permutation: n_group must divide E (got n_group = " + std::to_string(n_group) +
                       ", E = " + std::to_string(E) + ")");
  }
  Rng rng(seed);
  const auto shuffle = [&](std::vector<std::int64_t>& v) {  // Fisher-Yates
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
  };
  const std::int64_t gs = E / n_group;
  std::vector<std::int64_t> groups(static_cast<std::size_t>(n_group));
  std::iota(groups.begin(), groups.end(), 0);
  shuffle(groups);
  std::vector<std::int64_t> perm(static_cast<std::size_t>(E)), inner(static_cast<std::size_t>(gs));
  for (std::int64_t b = 0; b < n_group; ++b) {
    std::iota(inner.begin(), inner.end(), 0);
    shuffle(inner);
    for (std::int64_t i = 0; i < gs; ++i) {
      perm[static_cast<std::size_t>(b * gs + i)] = groups[static_cast<std::size_t>(b)] * gs + inner[static_cast<std::size_t>(i)];
    }
  }
  return perm;
}

}  // namespace moecheck
