// moecheck device checker: the fp64 reference and tie-aware oracle for one row of a softmax-family
// routing output (gemma4, softmax_topk, softmax_topk_raw) under the strict contract, written as a
// second, plain implementation of reference/routing.cpp + reference/oracle.cpp for the device.
//
// `__host__ __device__` under nvcc, inline C++17 elsewhere, so the CPU tests run the very code the
// device runs against the host oracle. No code is shared with the fused kernels. The rules (see
// reference/EDGE_CASES.md, "Oracle rules" and "Error bounds"):
//  * structure: every id written (not the poison), in [0, E), unique; every weight written;
//  * selection (band 0, exact keys; NaN ranks as -inf): with v = the smallest selected key, the
//    selection is a valid top-k choice (ties at the k-th place in any order) exactly when no
//    unselected key exceeds v, i.e. when #{e : key_e > v} == #{selected j : key_j > v};
//  * weights: the fp64 family formula for the chosen ids (limit semantics for +inf, the masked
//    row guard: zero weights), within weight_tolerance's bound for the target's precision.
#pragma once

#include <cstdint>

#include "kernels/checker/counter_gen.hpp"

#if defined(__CUDACC__)
#define MOECHECK_RC_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define MOECHECK_RC_HD inline
#endif

namespace moecheck::checker {

/// Check codes of the device checker (0 = the row passed). Names: check_code_name.
enum CheckCode : std::int32_t {
  kCheckOk = 0,
  kCheckUnwritten = 1,
  kCheckIdRange = 2,
  kCheckDuplicateId = 3,
  kCheckSelection = 4,
  kCheckWeight = 5,
  kCheckGuard = 6,  ///< a guard element around the outputs changed (row -1)
  kCheckCount_ = 7
};

/// The oracle's check name of a code ("pass" for kCheckOk).
inline const char* check_code_name(std::int32_t c) {
  switch (c) {
    case kCheckOk: return "pass";
    case kCheckUnwritten: return "unwritten";
    case kCheckIdRange: return "id-range";
    case kCheckDuplicateId: return "duplicate-id";
    case kCheckSelection: return "selection";
    case kCheckWeight: return "weight";
    case kCheckGuard: return "out-of-bounds-write";
    default: return "unknown";
  }
}

/// Value-dependent case classes the checker observes per row (the names classify() uses).
enum ClassBit : std::uint32_t {
  kClassHasNan = 1u << 0,     ///< "has-nan"
  kClassHasInf = 1u << 1,     ///< "has-inf"
  kClassHasPosInf = 1u << 2,  ///< "has-pos-inf"
  kClassMasked = 1u << 3,     ///< "masked-row"
  kClassDenormal = 1u << 4,   ///< "denormal"
  kClassHuge = 1u << 5,       ///< "huge"
  kClassConstant = 1u << 6,   ///< "constant-row"
  kClassTie = 1u << 7,        ///< "tie-at-k"
  kClassNearTie = 1u << 8,    ///< "near-tie-at-k"
};

/// Planted device-checker bugs (testing that the host sample catches a wrong device checker).
enum CheckerMutant : std::int32_t {
  kCheckerCorrect = 0,
  kCheckerAcceptsAnyWeight = 1,  ///< never compares weights
};

/// Precision model of the implementation under test (reference/oracle.hpp, Precision), band 0.
struct CheckPrecision {
  double compute_eps = 0x1p-24;
  double exp_ulps = 2.0;
  double min_normal = 0x1p-126;
};

/// Poison and guard patterns (reference/oracle.hpp, harness/core/target.hpp: same values).
constexpr std::uint32_t kCkPoisonWeightBits = 0x7fa5a5a5u;
constexpr std::int32_t kCkPoisonId = -0x5a5a5a5b;

/// Verdict on one row.
struct RowVerdict {
  std::int32_t code = kCheckOk;
  std::int32_t slot = -1;       ///< offending slot (-1: row-level)
  std::uint32_t classes = 0;    ///< ClassBit set
};

MOECHECK_RC_HD double ck_exp(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}
MOECHECK_RC_HD bool ck_isnan(double x) { return x != x; }
MOECHECK_RC_HD double ck_abs(double x) { return x < 0 ? -x : x; }
MOECHECK_RC_HD double ck_inf() { return static_cast<double>(cg_bits_float(0x7f800000u)); }

/// weight_tolerance (reference/oracle.cpp) for one slot.
MOECHECK_RC_HD double ck_tolerance(const CheckPrecision& p, double unscaled, double scale, double max_arg,
                                   int n_terms, double denominator) {
  double a = ck_isnan(max_arg) ? 104.0 : max_arg;
  a = a < 0.0 ? 0.0 : (a > 104.0 ? 104.0 : a);
  const double n = static_cast<double>(n_terms > 1 ? n_terms : 1);
  const double rel = (4.0 * a + 2.0 * p.exp_ulps + n + 5.0) * p.compute_eps;
  const double den = (denominator > 0.0 && denominator < ck_inf()) ? (denominator < 1.0 ? denominator : 1.0) : 1.0;
  const double floor = p.min_normal * (1.0 + ck_abs(scale)) * (n + 1.0) / den;
  return 1.05 * rel * ck_abs(unscaled * scale) + floor;
}

/// Calls visit(e, x(e)) for e = 0 .. E - 1 in order; a reader that declares `kScans = true` and
/// has a `scan(E, visit)` member (the device's row reader: a row read 16 bytes at a time) does it
/// itself.
template <class X, class = void>
struct CkHasScan {
  static constexpr bool value = false;
};
template <class X>
struct CkHasScan<X, decltype(void(X::kScans))> {
  static constexpr bool value = X::kScans;
};
template <class X, class Visit>
MOECHECK_RC_HD void ck_scan(const X& x, std::int32_t E, const Visit& visit) {
  if constexpr (CkHasScan<X>::value) {
    x.scan(E, visit);
  } else {
    for (std::int32_t e = 0; e < E; ++e) visit(e, x(e));
  }
}

/// Checks one row. `x(e)` returns logit e of the row as float (exact in the dtype); `scale` is
/// per_expert_scale (gemma4, may be null = ones); w / ids the row's k outputs. family: 0 gemma4,
/// 1 softmax_topk, 2 softmax_topk_raw (others are not checked here). dtype: 0 f32, 1 f16, 2 bf16.
template <class X>
MOECHECK_RC_HD RowVerdict check_softmax_row(std::int32_t family, std::int32_t dtype, std::int32_t E, std::int32_t k,
                                            const X& x, const float* scale, const float* w,
                                            const std::int32_t* ids, const CheckPrecision& prec,
                                            std::int32_t mutant) {
  RowVerdict v;
  const double inf = ck_inf();
  const auto key = [&](std::int32_t e) {
    const double d = static_cast<double>(x(e));
    return ck_isnan(d) ? -inf : d;
  };
  // ---- structure
  bool ids_ok = true;
  for (std::int32_t j = 0; j < k; ++j) {
    const std::int32_t id = ids[j];
    std::int32_t code = kCheckOk;
    if (id == kCkPoisonId) {
      code = kCheckUnwritten;
    } else if (id < 0 || id >= E) {
      code = kCheckIdRange;
    } else {
      for (std::int32_t i = 0; i < j; ++i) {
        if (ids[i] == id) code = kCheckDuplicateId;
      }
    }
    if (code == kCheckOk && cg_float_bits(w[j]) == kCkPoisonWeightBits) code = kCheckUnwritten;
    if (code != kCheckOk) {
      ids_ok = false;
      if (v.code == kCheckOk) {
        v.code = code;
        v.slot = j;
      }
    }
  }
  // ---- one pass over the row: classes, and what selection and weights need
  double vk = inf;  // smallest selected key
  if (ids_ok) {
    for (std::int32_t j = 0; j < k; ++j) {
      const double kj = key(ids[j]);
      vk = kj < vk ? kj : vk;
    }
  }
  // The pass compares float keys (NaN as -inf): a float converts to double exactly and in
  // order, so the counts and extremes are those of the double keys.
  const float inff = cg_bits_float(0x7f800000u);
  const float vkf = static_cast<float>(vk);  // exact: vk is a float key or +inf
  std::int64_t gt_all = 0, eq_all = 0;
  float max_below_f = -inff;                  // largest key below vk
  float m_all_f = -inff;                      // raw family: max over the row
  std::int32_t pinf_all = 0;
  bool all_masked = true, all_same = E > 1;
  const float x0 = x(0);
  const float huge_at = cg_max_finite(dtype) / 16.0f;
  const float min_normal = cg_min_normal(dtype);
  std::uint32_t classes = 0;
  ck_scan(x, E, [&](std::int32_t, float f) {
    const float kf = f != f ? -inff : f;
    if (f != f) classes |= kClassHasNan;
    if (f == inff || f == -inff) classes |= kClassHasInf;
    if (f == inff) {
      classes |= kClassHasPosInf;
      ++pinf_all;
    }
    if (!(f != f || f == -inff)) all_masked = false;
    const float af = f < 0 ? -f : f;
    if (f != 0.0f && af < min_normal) classes |= kClassDenormal;
    if (af < inff && af >= huge_at) classes |= kClassHuge;
    if (!(f == x0)) all_same = false;
    m_all_f = kf > m_all_f ? kf : m_all_f;
    if (ids_ok) {
      if (kf > vkf) ++gt_all;
      else if (kf == vkf) ++eq_all;
      else if (kf > max_below_f) max_below_f = kf;
    }
  });
  v.classes |= classes;
  const double max_below = static_cast<double>(max_below_f);
  const double m_all = static_cast<double>(m_all_f);
  if (all_masked) v.classes |= kClassMasked;
  if (all_same) v.classes |= kClassConstant;
  if (!ids_ok) return v;
  std::int64_t gt_sel = 0, eq_sel = 0;
  for (std::int32_t j = 0; j < k; ++j) {
    const double kj = key(ids[j]);
    if (kj > vk) ++gt_sel;
    else if (kj == vk) ++eq_sel;
  }
  const bool selection_ok = gt_all == gt_sel;
  if (selection_ok && k < E) {
    const double next = eq_all > eq_sel ? vk : max_below;
    if (next == vk) v.classes |= kClassTie;
    if (vk > -inf && vk < inf && vk != next &&
        static_cast<double>(cg_next_in_dtype(static_cast<float>(next), dtype, true)) == vk) {
      v.classes |= kClassNearTie;
    }
  }
  if (!selection_ok && v.code == kCheckOk) v.code = kCheckSelection;
  // ---- weights for the chosen ids (checked even after a selection violation, like the oracle)
  const bool raw = family == 2;
  double m = -inf;
  std::int32_t pinf = 0;
  if (raw) {
    m = m_all;
    pinf = pinf_all;
  } else {
    for (std::int32_t j = 0; j < k; ++j) {
      const double y = key(ids[j]);
      if (y == inf) ++pinf;
      m = y > m ? y : m;
    }
  }
  // bound inputs (weight_bound_inputs) and the denominator of the weights (reference order)
  double max_arg = 0.0, den_bound = 1.0, sum = 0.0;
  const bool limit = pinf > 0 || m == -inf;
  if (!limit) {
    const std::int32_t n = raw ? E : k;
    for (std::int32_t i = 0; i < n; ++i) {
      const double y = raw ? key(i) : key(ids[i]);
      sum += ck_exp(y - m);  // exp(-inf) = 0
      if (y == -inf) continue;
      max_arg = (m - y) > max_arg ? (m - y) : max_arg;
    }
    max_arg = max_arg < 104.0 ? max_arg : 104.0;
    den_bound = sum;
  }
  const std::int32_t n_terms = raw ? E : k;
  if (mutant == kCheckerAcceptsAnyWeight) return v;
  for (std::int32_t j = 0; j < k; ++j) {
    const double y = key(ids[j]);
    double unscaled;
    if (pinf > 0) unscaled = y == inf ? 1.0 / pinf : 0.0;
    else if (m == -inf) unscaled = 0.0;
    else unscaled = ck_exp(y - m) / sum;
    const double s = (family == 0 && scale != nullptr) ? static_cast<double>(scale[ids[j]]) : 1.0;
    const double expected = unscaled * s;
    const double tol = ck_tolerance(prec, unscaled, s, max_arg, n_terms, den_bound);
    const double got = static_cast<double>(w[j]);
    if (!(ck_abs(got - expected) <= tol)) {
      if (v.code == kCheckOk) {
        v.code = kCheckWeight;
        v.slot = j;
      }
      break;
    }
  }
  return v;
}

}  // namespace moecheck::checker

#undef MOECHECK_RC_HD
