#include "values.hpp"

#include <cmath>
#include <stdexcept>

#include "harness/core/generators.hpp"

namespace moecheck::python {
namespace {

float dyadic(Rng& rng) {
  const double m = static_cast<double>(rng.range(-16, 16));
  return static_cast<float>(std::ldexp(m, -static_cast<int>(rng.range(0, 4))));
}

float adversarial(Rng& rng, DType d) {
  const float sign = rng.chance(0.5) ? -1.0f : 1.0f;
  switch (rng.below(8)) {
    case 0: return sign * 0.0f;
    case 1: return sign;
    case 2: return sign * std::ldexp(1.0f, static_cast<int>(rng.range(-12, 12)));
    case 3: return sign * dtype_min_normal(d);
    case 4: return sign * dtype_min_subnormal(d);
    case 5: return round_to_dtype(sign * dtype_max_finite(d) * 0.25f, d);
    default: return dyadic(rng);
  }
}

}  // namespace

const std::vector<std::string>& substitution_value_kinds() {
  static const std::vector<std::string> kinds = {"dyadic", "normal", "adversarial"};
  return kinds;
}

std::vector<float> substitution_values(std::uint64_t seed, std::int64_t n, DType dtype, const std::string& kind) {
  if (n < 0) throw std::invalid_argument("substitution_values: n must be >= 0 (got " + std::to_string(n) + ")");
  Rng rng(seed);
  std::vector<float> out(static_cast<std::size_t>(n));
  if (kind == "dyadic") {
    for (auto& v : out) v = dyadic(rng);
  } else if (kind == "normal") {
    for (auto& v : out) v = round_to_dtype(static_cast<float>(rng.normal()), dtype);
  } else if (kind == "adversarial") {
    if (rng.below(4) == 0) {
      const float tied = adversarial(rng, dtype);
      for (auto& v : out) v = tied;
    } else {
      for (auto& v : out) v = adversarial(rng, dtype);
    }
  } else {
    throw std::invalid_argument("substitution_values: unknown value kind '" + kind +
                                "' (dyadic, normal, adversarial)");
  }
  return out;
}

}  // namespace moecheck::python
