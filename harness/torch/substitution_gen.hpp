// moecheck RapidCheck generator of substitution cases (header-only; needs rapidcheck).
//
// Shrinking goes toward E = k = H = I = 1, T = 0, seeds 0, values 0 then +-1/4, +-1/2...
// (x and scale are fixed up to stay not all zero: an all-zero vector gets a 1 in its first
// entry), zero_expert 0 and alpha 2.
#pragma once

#include <cstdint>
#include <vector>

#include <rapidcheck.h>

#include "harness/torch/substitution_suite.hpp"

namespace moecheck::harness {

/// Small dyadic values: 0, 1/4, -1/4, 1/2, -1/2, ..., 2, -2 (shrinks toward 0).
inline rc::Gen<float> gen_small_dyadic() {
  return rc::gen::map(rc::gen::inRange(0, 17), [](int z) {
    const int mag = (z + 1) / 2;
    return static_cast<float>(z % 2 == 1 ? mag : -mag) * 0.25f;
  });
}

/// A substitution case within `lim`.
inline rc::Gen<SubstitutionCase> gen_substitution_case(const CaseLimits& lim = {}) {
  return rc::gen::exec([lim] {
    SubstitutionCase c;
    c.E = *rc::gen::inRange<std::int64_t>(1, lim.max_E + 1);
    c.k = *rc::gen::inRange<std::int64_t>(1, c.E + 1);
    c.H = *rc::gen::inRange<std::int64_t>(1, lim.max_H + 1);
    c.I = *rc::gen::inRange<std::int64_t>(1, lim.max_I + 1);
    c.T = *rc::gen::inRange<std::int64_t>(0, lim.max_T + 1);
    c.tie_gate_up = *rc::gen::element(false, true);
    c.init_seed = *rc::gen::inRange<std::uint64_t>(0, 1u << 20);
    c.value_seed = *rc::gen::inRange<std::uint64_t>(0, 1u << 20);
    c.x = *rc::gen::container<std::vector<float>>(static_cast<std::size_t>(c.T * c.H), gen_small_dyadic());
    c.scale = *rc::gen::container<std::vector<float>>(static_cast<std::size_t>(c.E), gen_small_dyadic());
    auto not_all_zero = [](std::vector<float>& v) {
      bool any = false;
      for (float f : v) any = any || f != 0.0f;
      if (!any && !v.empty()) v[0] = 1.0f;
    };
    not_all_zero(c.x);
    not_all_zero(c.scale);
    c.zero_expert = *rc::gen::inRange<std::int64_t>(0, c.E);
    c.alpha = *rc::gen::element(2.0f, -1.0f, 0.5f, 3.0f, -0.25f, 1.5f);
    return c;
  });
}

}  // namespace moecheck::harness
