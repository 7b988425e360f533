// moecheck counter-generated cases: the host side of device-side case generation.
//
// A counter case has the shape generate_shape draws (the same Rng, the same GenConfig, so the
// same shapes as generate_case for a seed) and values that are pure functions of (value seed,
// row, column, stream) (kernels/checker/counter_gen.hpp). The device generates them in bulk; the
// host materializes the whole case, or single rows, bit for bit, to confirm failures, re-check
// samples, shrink and replay. Existing (classic) generation is unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness/core/generators.hpp"
#include "kernels/checker/counter_gen.hpp"

namespace moecheck {

/// The value families counter generation covers (all of all_value_families()).
const std::vector<std::string>& counter_value_families();

/// Shape and value seed of counter case `seed` under cfg: the shape generate_case(seed, cfg)
/// has, and the same next 64 random bits as its value seed.
struct CounterShape {
  CaseShape shape;
  std::uint64_t value_seed = 0;
};
CounterShape counter_shape(std::uint64_t seed, const GenConfig& cfg);

/// The device descriptor of a shape (strides from the layout, case-level parameters drawn from
/// the value seed). Throws RoutingError for a value or scale family counter generation does not
/// know, or a layout pad generate_shape would not produce.
checker::CounterCaseDesc counter_desc(const CaseShape& shape, std::uint64_t value_seed);

/// The whole case (logits, scale; value/scale family names, `seed` = value_seed), bit for bit
/// what the device generates. sigmoid_grouped bias: U(-0.1, 0.1) per column from the scale stream.
RoutingCase build_counter_case(const CaseShape& shape, std::uint64_t value_seed);

/// build_counter_case(counter_shape(seed, cfg)) with the result's seed set to `seed`.
RoutingCase generate_counter_case(std::uint64_t seed, const GenConfig& cfg = {});

/// The case with its logits left empty (shape, scale, bias, names): what classify() needs to tag
/// everything that does not depend on the values.
RoutingCase counter_case_without_logits(const CaseShape& shape, std::uint64_t value_seed);

/// Row t of a counter case as E logical values.
void counter_row(const checker::CounterCaseDesc& d, std::int64_t t, float* out);

/// A one-row contiguous case holding row t of the case (same family, dtype, k, scale, bias):
/// the oracle judges rows independently, so it judges row t of the case exactly.
RoutingCase counter_row_case(const RoutingCase& shape_case, const checker::CounterCaseDesc& d, std::int64_t t);

}  // namespace moecheck
