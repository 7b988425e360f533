// moecheck substitution values: the tensors check_substitution substitutes, drawn with the
// core's deterministic generator (harness/core/generators.hpp) and exact in the target dtype.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/routing.hpp"

namespace moecheck::python {

/// Value kinds of substitution_values, in the order check_substitution cycles through them:
///   "dyadic"       m / 2^j with m in [-16, 16], j in [0, 4]: exact in f32, f16 and bf16;
///   "normal"       approximately standard normal values rounded to the dtype;
///   "adversarial"  per element one of 0, -0, +-1, +-2^j (j in [-12, 12]), +-the dtype's smallest
///                  normal and subnormal, +-a quarter of its largest finite value, a dyadic value,
///                  or (one tensor in four) a single repeated value (every element tied).
const std::vector<std::string>& substitution_value_kinds();

/// `n` float32 values of `kind`, exact in `dtype`, deterministic in (seed, n, dtype, kind).
/// Throws std::invalid_argument naming an unknown kind.
std::vector<float> substitution_values(std::uint64_t seed, std::int64_t n, DType dtype, const std::string& kind);

}  // namespace moecheck::python
