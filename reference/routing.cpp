// moecheck reference routing: implementation of reference/routing.hpp.
//
// Every number here is computed in fp64 from inputs that are exact in their dtype, in a
// fixed order, so the reference is deterministic across platforms up to the last bit of
// libm's exp (far below any tolerance the oracles use).
// The edge-case policy implemented here is documented in reference/EDGE_CASES.md; keep
// the two in sync.
#include "reference/routing.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "reference/format.hpp"
#include "reference/row_select.hpp"

namespace moecheck {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

/// Logistic function in fp64, accurate on both sides (no cancellation for x << 0).
/// sigmoid(+inf) = 1, sigmoid(-inf) = 0. NaN is handled by the callers (treated as -inf).
double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

/// NaN -> -inf: the single place where the NaN policy of the softmax families lives.
double nan_as_neg_inf(double x) { return std::isnan(x) ? -kInf : x; }

/* Canonical order of the reference: key descending, equal keys by ascending expert index.
 * Keys are never NaN (NaN logits map to -inf before they get here), so this comparator is
 * a strict weak order even with infinities, and -inf keys (from -inf or NaN logits) tie
 * with each other and are broken by index like any other tie. */
struct KeyDescIndexAsc {
  const double* key;
  bool operator()(std::int32_t a, std::int32_t b) const {
    if (key[a] != key[b]) return key[a] > key[b];
    return a < b;
  }
};

/// Softmax-family weights for the selected logits y[0..n) (NaN already -inf):
/// softmax over the selection with limit semantics for +inf (the +inf entries share the
/// mass equally) and zero mass when every entry is -inf.
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
  if (m == -kInf) {  // zero mass: the "if the sum is 0 use 1" rule gives all zeros
    for (int j = 0; j < n; ++j) w[j] = 0.0;
    return;
  }
  double sum = 0.0;
  for (int j = 0; j < n; ++j) {
    w[j] = std::exp(y[j] - m);  // exp(-inf) = 0 for -inf entries
    sum += w[j];
  }
  for (int j = 0; j < n; ++j) w[j] /= sum;  // sum >= 1: the max entry contributes exp(0)
}

}  // namespace

// ---- dtypes --------------------------------------------------------------------------

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "unknown";
}

bool parse_dtype(std::string_view s, DType* out) {
  const std::string l = lower(s);
  DType d;
  if (l == "f32" || l == "fp32" || l == "float32" || l == "float") {
    d = DType::f32;
  } else if (l == "f16" || l == "fp16" || l == "half" || l == "float16") {
    d = DType::f16;
  } else if (l == "bf16" || l == "bfloat16") {
    d = DType::bf16;
  } else {
    return false;
  }
  *out = d;
  return true;
}

std::size_t dtype_size(DType d) { return d == DType::f32 ? 4u : 2u; }

double dtype_unit_roundoff(DType d) {
  switch (d) {
    case DType::f32: return 0x1p-24;
    case DType::f16: return 0x1p-11;
    case DType::bf16: return 0x1p-8;
  }
  return 0x1p-24;
}

// ---- bit-exact conversions -----------------------------------------------------------

float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) {
    // inf, or NaN with its payload kept and the quiet bit set
    return bits_float(sign | 0x7f800000u | (man ? (0x400000u | (man << 13)) : 0u));
  }
  if (exp == 0) {
    if (man == 0) return bits_float(sign);
    // subnormal: value = man * 2^-24; normalise into a float (always a float normal)
    int e = -14;
    while ((man & 0x400u) == 0) {
      man <<= 1;
      --e;
    }
    man &= 0x3ffu;
    return bits_float(sign | (static_cast<std::uint32_t>(e + 127) << 23) | (man << 13));
  }
  return bits_float(sign | ((exp - 15 + 127) << 23) | (man << 13));
}

std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) {  // NaN: quiet bit set, top payload bits kept
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) {  // >= 65520 (halfway between 65504 and 2^16, ties-to-even up): inf
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (a >= 0x38800000u) {  // normal in binary16 (>= 2^-14)
    const std::uint32_t e = (a >> 23) - 127 + 15;
    const std::uint32_t m = a & 0x7fffffu;
    std::uint32_t h = (e << 10) | (m >> 13);
    const std::uint32_t rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may bump the exponent
    return static_cast<std::uint16_t>(sign | h);
  }
  if (a < 0x00800000u) return sign;  // float zero/subnormal: far below half's 2^-25
  // binary16 subnormal range: result = round(value / 2^-24)
  const int e = static_cast<int>(a >> 23) - 127;  // value = m * 2^(e - 23)
  const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const int shift = -(e + 1);  // value / 2^-24 = m >> shift; shift >= 14 here
  if (shift > 24) return sign;  // < 2^-25: rounds to zero
  std::uint32_t h = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;  // may become 0x400, the smallest normal
  return static_cast<std::uint16_t>(sign | h);
}

float bf16_bits_to_float(std::uint16_t b) { return bits_float(static_cast<std::uint32_t>(b) << 16); }

std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {  // NaN: quiet bit set, sign and top payload kept
    return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  }
  // round to nearest even on the low 16 bits; overflow carries into inf correctly
  const std::uint32_t bias = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + bias) >> 16);
}

float round_to_dtype(float f, DType d) {
  switch (d) {
    case DType::f32: return f;
    case DType::f16: return half_bits_to_float(float_to_half_bits(f));
    case DType::bf16: return bf16_bits_to_float(float_to_bf16_bits(f));
  }
  return f;
}

// ---- families ------------------------------------------------------------------------

const char* family_name(Family f) {
  switch (f) {
    case Family::gemma4: return "gemma4";
    case Family::softmax_topk: return "softmax_topk";
    case Family::softmax_topk_raw: return "softmax_topk_raw";
    case Family::sigmoid_grouped: return "sigmoid_grouped";
    case Family::sigmoid_top1: return "sigmoid_top1";
  }
  return "unknown";
}

bool parse_family(std::string_view s, Family* out) {
  std::string l = lower(s);
  std::replace(l.begin(), l.end(), '-', '_');
  static const Family all[] = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw,
                               Family::sigmoid_grouped, Family::sigmoid_top1};
  for (Family f : all) {
    if (l == family_name(f)) {
      *out = f;
      return true;
    }
  }
  return false;
}

// ---- view ----------------------------------------------------------------------------

double GatingView::at(std::int64_t t, std::int64_t e) const {
  const std::int64_t idx = t * row_stride + e * col_stride;
  const auto* base = static_cast<const std::uint8_t*>(data);
  switch (dtype) {
    case DType::f32: {
      float f;
      std::memcpy(&f, base + idx * 4, 4);
      return f;
    }
    case DType::f16: {
      std::uint16_t h;
      std::memcpy(&h, base + idx * 2, 2);
      return half_bits_to_float(h);
    }
    case DType::bf16: {
      std::uint16_t b;
      std::memcpy(&b, base + idx * 2, 2);
      return bf16_bits_to_float(b);
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// ---- validation ----------------------------------------------------------------------

void validate_routing(const GatingView& g, const RoutingParams& p) {
  const auto fail = [](const std::string& msg) { throw RoutingError(msg); };
  const int fam = static_cast<int>(p.family);
  if (fam < 0 || fam > static_cast<int>(Family::sigmoid_top1)) {
    fail("family: unknown routing family value " + std::to_string(fam));
  }
  const int dt = static_cast<int>(g.dtype);
  if (dt < 0 || dt > static_cast<int>(DType::bf16)) {
    fail("dtype: unknown dtype value " + std::to_string(dt));
  }
  if (g.E < 1) fail("E must be >= 1 (got E = " + std::to_string(g.E) + ")");
  if (g.E > std::numeric_limits<std::int32_t>::max()) {
    fail("E must fit in int32 ids (got E = " + std::to_string(g.E) + ")");
  }
  if (g.T < 0) fail("T must be >= 0 (got T = " + std::to_string(g.T) + ")");
  if (p.k < 1) fail("k must be >= 1 (got k = " + std::to_string(p.k) + ")");
  if (p.k > g.E) {
    fail("k must be <= E (got k = " + std::to_string(p.k) + ", E = " + std::to_string(g.E) + ")");
  }
  if (g.T > 0 && g.data == nullptr) {
    fail("gating data is null but T = " + std::to_string(g.T));
  }
  if (g.row_stride < 0) fail("row_stride must be >= 0 (got " + std::to_string(g.row_stride) + ")");
  if (g.col_stride < 0) fail("col_stride must be >= 0 (got " + std::to_string(g.col_stride) + ")");
  if (g.row_stride == 0 && g.T > 1) {
    fail("row_stride is 0 but T = " + std::to_string(g.T) + " (rows would alias)");
  }
  if (g.col_stride == 0 && g.E > 1) {
    fail("col_stride is 0 but E = " + std::to_string(g.E) + " (experts would alias)");
  }
  if (p.family == Family::gemma4 && p.scale != nullptr) {
    for (std::int64_t e = 0; e < g.E; ++e) {
      if (!std::isfinite(p.scale[e])) {
        fail("per_expert_scale[" + std::to_string(e) + "] is " + num(p.scale[e]) +
             " (scales must be finite)");
      }
    }
  }
  if (p.family == Family::sigmoid_grouped) {
    if (p.bias != nullptr) {
      for (std::int64_t e = 0; e < g.E; ++e) {
        if (!std::isfinite(p.bias[e])) {
          fail("bias[" + std::to_string(e) + "] is " + num(p.bias[e]) +
               " (selection bias must be finite)");
        }
      }
    }
    if (!std::isfinite(p.routed_scaling)) {
      fail("routed_scaling is " + num(p.routed_scaling) + " (must be finite)");
    }
    if (p.n_group < 1) fail("n_group must be >= 1 (got n_group = " + std::to_string(p.n_group) + ")");
    if (g.E % p.n_group != 0) {
      fail("E must be divisible by n_group (got E = " + std::to_string(g.E) +
           ", n_group = " + std::to_string(p.n_group) + ")");
    }
    if (p.topk_group < 1 || p.topk_group > p.n_group) {
      fail("topk_group must be in [1, n_group] (got topk_group = " + std::to_string(p.topk_group) +
           ", n_group = " + std::to_string(p.n_group) + ")");
    }
    const std::int64_t avail = static_cast<std::int64_t>(p.topk_group) * (g.E / p.n_group);
    if (p.k > avail) {
      fail("k must be <= topk_group * (E / n_group) (got k = " + std::to_string(p.k) +
           ", topk_group = " + std::to_string(p.topk_group) + ", E / n_group = " +
           std::to_string(g.E / p.n_group) + ")");
    }
  }
  if (p.family == Family::sigmoid_top1 && p.k != 1) {
    fail("sigmoid_top1 requires k == 1 (got k = " + std::to_string(p.k) + ")");
  }
}

// ---- keys and selection --------------------------------------------------------------

double selection_key(Family f, double logit, double bias) {
  if (std::isnan(logit)) return -kInf;
  if (f == Family::sigmoid_grouped) return sigmoid(logit) + bias;
  return logit;
}

namespace {

/// The first k experts of the canonical order among all E (row_select::canonical_top).
void select_canonical_all(const double* key, std::int64_t E, int k, std::int32_t* ids) {
  const auto n = static_cast<std::size_t>(E);
  thread_local std::vector<double> a, tmp;
  thread_local std::vector<std::int32_t> eq;
  if (a.size() < n) {
    a.resize(n);
    tmp.resize(n);
    eq.resize(n);
  }
  row_select::canonical_top(key, n, static_cast<std::size_t>(k), ids, a.data(), tmp.data(), eq.data());
}

/// Canonical selection: the first k experts of the canonical order among `cand`.
void select_canonical(const double* key, std::vector<std::int32_t>& cand, int k,
                      std::int32_t* ids) {
  std::partial_sort(cand.begin(), cand.begin() + k, cand.end(), KeyDescIndexAsc{key});
  for (int j = 0; j < k; ++j) ids[j] = cand[static_cast<std::size_t>(j)];
}

/// Group score of DeepSeek-V3: sum of the top-2 keys of the group (top-1 when the group has
/// a single expert). Keys are finite or -inf, so the sum is never NaN.
double group_score(const double* key, std::int64_t begin, std::int64_t size) {
  double a = -kInf, b = -kInf;  // a >= b: the two largest
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

}  // namespace

void route_row_reference(const double* logits, std::int64_t E, const RoutingParams& p,
                         double* weights, std::int32_t* ids) {
  if (p.family != Family::sigmoid_grouped) {
    // keys are the logits with NaN -> -inf (selection_key); one scratch row per thread
    thread_local std::vector<double> row_key;
    if (row_key.size() < static_cast<std::size_t>(E)) row_key.resize(static_cast<std::size_t>(E));
    for (std::int64_t e = 0; e < E; ++e) row_key[static_cast<std::size_t>(e)] = nan_as_neg_inf(logits[e]);
    select_canonical_all(row_key.data(), E, p.k, ids);
    reference_weights_for_ids(logits, E, p, ids, weights);
    return;
  }
  std::vector<double> key(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e) {
    const double b = (p.family == Family::sigmoid_grouped && p.bias) ? p.bias[e] : 0.0;
    key[static_cast<std::size_t>(e)] = selection_key(p.family, logits[e], b);
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
    // chosen groups: canonical order on group scores (ties -> lower group index)
    std::vector<std::int32_t> chosen(static_cast<std::size_t>(p.topk_group));
    select_canonical(gscore.data(), groups, p.topk_group, chosen.data());
    std::sort(chosen.begin(), chosen.end());
    cand.reserve(static_cast<std::size_t>(p.topk_group * gsize));
    for (std::int32_t gi : chosen) {
      for (std::int64_t e = gi * gsize; e < (gi + 1) * gsize; ++e) {
        cand.push_back(static_cast<std::int32_t>(e));
      }
    }
  } else {
    cand.resize(static_cast<std::size_t>(E));
    std::iota(cand.begin(), cand.end(), 0);
  }
  select_canonical(key.data(), cand, p.k, ids);
  reference_weights_for_ids(logits, E, p, ids, weights);
}

void route_reference(const GatingView& g, const RoutingParams& p, double* weights,
                     std::int32_t* ids) {
  validate_routing(g, p);
  std::vector<double> row(static_cast<std::size_t>(g.E));
  for (std::int64_t t = 0; t < g.T; ++t) {
    row_select::load_row(g, t, row.data());
    route_row_reference(row.data(), g.E, p, weights + t * p.k, ids + t * p.k);
  }
}

void reference_weights_for_ids(const double* logits, std::int64_t E, const RoutingParams& p,
                               const std::int32_t* ids, double* weights_out) {
  const int k = p.k;
  double y_small[64];
  std::vector<double> y_large;
  double* y = y_small;
  if (k > 64) {
    y_large.resize(static_cast<std::size_t>(k));
    y = y_large.data();
  }
  for (int j = 0; j < k; ++j) y[j] = nan_as_neg_inf(logits[ids[j]]);
  switch (p.family) {
    case Family::gemma4:
    case Family::softmax_topk: {
      // softmax over the selected logits == full softmax renormalised over the selection
      softmax_limit(y, k, weights_out);
      if (p.family == Family::gemma4 && p.scale != nullptr) {
        for (int j = 0; j < k; ++j) weights_out[j] *= static_cast<double>(p.scale[ids[j]]);
      }
      return;
    }
    case Family::softmax_topk_raw: {
      // full-softmax probabilities over all E experts, not renormalised
      int n_pinf = 0;
      double m = -kInf;
      for (std::int64_t e = 0; e < E; ++e) {
        const double x = nan_as_neg_inf(logits[e]);
        if (x == kInf) ++n_pinf;
        m = std::max(m, x);
      }
      if (n_pinf > 0) {
        for (int j = 0; j < k; ++j) weights_out[j] = (y[j] == kInf) ? 1.0 / n_pinf : 0.0;
        return;
      }
      if (m == -kInf) {
        for (int j = 0; j < k; ++j) weights_out[j] = 0.0;
        return;
      }
      double sum = 0.0;
      for (std::int64_t e = 0; e < E; ++e) sum += std::exp(nan_as_neg_inf(logits[e]) - m);
      for (int j = 0; j < k; ++j) weights_out[j] = std::exp(y[j] - m) / sum;
      return;
    }
    case Family::sigmoid_grouped: {
      double sum = 0.0;
      for (int j = 0; j < k; ++j) {
        weights_out[j] = sigmoid(y[j]);  // NaN was mapped to -inf: 0
        sum += weights_out[j];
      }
      if (sum == 0.0) sum = 1.0;
      const double rs = static_cast<double>(p.routed_scaling);
      for (int j = 0; j < k; ++j) weights_out[j] = weights_out[j] / sum * rs;
      return;
    }
    case Family::sigmoid_top1: {
      for (int j = 0; j < k; ++j) weights_out[j] = sigmoid(y[j]);
      return;
    }
  }
}

}  // namespace moecheck
