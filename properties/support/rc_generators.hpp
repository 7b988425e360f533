// moecheck test support: RapidCheck generators for routing cases (header-only; needs <rapidcheck.h>).
//
// Structure comes from RapidCheck picks so that shrinking works on it: family, dtype, E, the
// group configuration, k, T, layout, pad, value family, scale family and a 64-bit value seed
// are each drawn with rc::gen inside rc::gen::exec, in that order, and every pick shrinks
// towards the simplest choice (first list element, smallest number: E -> 1, k -> 1, T -> 0,
// layout -> contiguous, values -> "normal", scales -> "ones", seed -> 0). The values
// themselves are produced deterministically by build_case from the seed, so a shrunk
// counterexample is replayable from its printed description alone.
#pragma once

#include <rapidcheck.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "harness/core/generators.hpp"

namespace moecheck {

/// Limits of the RapidCheck case generator. Empty choice lists mean "all" (in the order
/// of all_value_families() / all_scale_families(), f32 f16 bf16, the Family and Layout enums).
struct RcCaseConfig {
  std::int64_t max_T = 12;  ///< T in [0, max_T]
  std::int64_t max_E = 40;  ///< E in [1, max_E]
  int max_k = 16;           ///< k in [1, min(E, max_k)] (and the group cap of sigmoid_grouped)
  std::vector<DType> dtypes;
  std::vector<Family> families;
  std::vector<Layout> layouts;
  std::vector<std::string> value_families;
  std::vector<std::string> scale_families;
};

namespace rcgen {

namespace detail {

inline int floor_log2(std::int64_t v) {
  int r = 0;
  while (v > 1) {
    v >>= 1;
    ++r;
  }
  return r;
}

template <class T>
std::vector<T> or_all(const std::vector<T>& chosen, std::vector<T> all) {
  return chosen.empty() ? all : chosen;
}

}  // namespace detail

/// Generator of case shapes (structure only) under cfg; every pick shrinks towards simple.
inline rc::Gen<CaseShape> case_shape(const RcCaseConfig& cfg = {}) {
  return rc::gen::exec([cfg]() {
    CaseShape s;
    s.family = *rc::gen::elementOf(detail::or_all(
        cfg.families, {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw, Family::sigmoid_grouped,
                       Family::sigmoid_top1}));
    s.dtype = *rc::gen::elementOf(detail::or_all(cfg.dtypes, {DType::f32, DType::f16, DType::bf16}));
    const std::int64_t max_e = std::max<std::int64_t>(1, cfg.max_E);
    // E: 0 = small uniform, 1 = power of two, 2 = power of two +- 1, 3 = uniform up to max_E
    const int kind = *rc::gen::inRange(0, 4);
    if (kind == 0) {
      s.E = *rc::gen::inRange<std::int64_t>(1, std::min<std::int64_t>(16, max_e) + 1);
    } else if (kind == 1) {
      s.E = std::int64_t{1} << *rc::gen::inRange(0, detail::floor_log2(max_e) + 1);
    } else if (kind == 2) {
      const std::int64_t p = std::int64_t{1} << *rc::gen::inRange(1, std::max(1, detail::floor_log2(max_e)) + 1);
      const bool minus = *rc::gen::arbitrary<bool>();
      s.E = std::clamp<std::int64_t>(minus ? p - 1 : p + 1, 1, max_e);
    } else {
      s.E = *rc::gen::inRange<std::int64_t>(1, max_e + 1);
    }
    std::int64_t cap = std::min<std::int64_t>(s.E, std::max(1, cfg.max_k));
    if (s.family == Family::sigmoid_grouped) {
      std::vector<int> divs;
      for (int d = 1; d <= 16 && d <= s.E; ++d) {
        if (s.E % d == 0) divs.push_back(d);
      }
      s.n_group = *rc::gen::elementOf(divs);
      s.topk_group = *rc::gen::inRange(1, s.n_group + 1);
      cap = std::min<std::int64_t>(cap, static_cast<std::int64_t>(s.topk_group) * (s.E / s.n_group));
      s.with_bias = *rc::gen::arbitrary<bool>();
      s.routed_scaling = *rc::gen::element(1.0f, 2.5f, 0.5f);
    }
    if (s.family == Family::sigmoid_top1) cap = 1;
    s.k = static_cast<int>(*rc::gen::inRange<std::int64_t>(1, cap + 1));
    s.T = *rc::gen::inRange<std::int64_t>(0, std::max<std::int64_t>(0, cfg.max_T) + 1);
    s.layout = *rc::gen::elementOf(detail::or_all(
        cfg.layouts, {Layout::contiguous, Layout::padded, Layout::transposed, Layout::strided}));
    if (s.layout == Layout::padded) s.pad = *rc::gen::inRange<std::int64_t>(1, 18);
    if (s.layout == Layout::strided) s.pad = *rc::gen::inRange<std::int64_t>(1, 4);
    s.value_family = *rc::gen::elementOf(detail::or_all(cfg.value_families, all_value_families()));
    s.scale_family = s.family == Family::gemma4
                         ? *rc::gen::elementOf(detail::or_all(cfg.scale_families, all_scale_families()))
                         : std::string("ones");
    return s;
  });
}

/// Generator of complete routing cases: a shape from case_shape(cfg) and a shrinkable
/// value seed, materialised with build_case (values exact in the dtype).
inline rc::Gen<RoutingCase> routing_case(const RcCaseConfig& cfg = {}) {
  return rc::gen::exec([cfg]() {
    const CaseShape s = *case_shape(cfg);
    const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
    return build_case(s, seed);
  });
}

}  // namespace rcgen

/// Records the case's classes in RapidCheck's statistics: one RC_TAG per class of
/// classify(c) that is listed in `only` (all classes when `only` is empty). RapidCheck
/// counts each distinct *combination* of tags, so pass a short list (e.g. {"tie-at-k",
/// "has-nan", "k=E"}) to keep the printed distribution readable.
inline void rc_tag_classes(const RoutingCase& c, const std::vector<std::string>& only = {}) {
  for (const std::string& t : classify(c)) {
    if (only.empty() || std::find(only.begin(), only.end(), t) != only.end()) RC_TAG(t);
  }
}

/// RC_CLASSIFY for each class in `classes` the case has (same combination counting as
/// rc_tag_classes; a case with none of them is counted untagged).
inline void rc_classify_classes(const RoutingCase& c, const std::vector<std::string>& classes) {
  const std::vector<std::string> tags = classify(c);
  for (const std::string& want : classes) {
    RC_CLASSIFY(std::find(tags.begin(), tags.end(), want) != tags.end(), want);
  }
}

/// RapidCheck printing of a case (counterexamples): describe_case with up to 256 values.
inline void showValue(const RoutingCase& c, std::ostream& os) { os << describe_case(c, 256); }

/// RapidCheck printing of a shape.
inline void showValue(const CaseShape& s, std::ostream& os) {
  os << "shape family=" << family_name(s.family) << " dtype=" << dtype_name(s.dtype) << " T=" << s.T
     << " E=" << s.E << " k=" << s.k << " layout=" << layout_name(s.layout) << " pad=" << s.pad
     << " values=" << s.value_family << " scales=" << s.scale_family << " n_group=" << s.n_group
     << " topk_group=" << s.topk_group;
}

}  // namespace moecheck
