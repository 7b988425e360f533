// moecheck shrinking: reduces a failing routing case to a minimal one that fails the same way.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "harness/core/case.hpp"

namespace moecheck {

struct ShrinkResult {
  RoutingCase minimal;  ///< smallest case found that still fails
  int steps = 0;        ///< accepted reductions
  int attempts = 0;     ///< candidate cases evaluated
  bool stopped = false; ///< `give_up` ended the search early (`minimal` is the best case so far)
};

/// Greedy, deterministic shrinking. `still_fails` must return true when a candidate fails
/// in the same way (same check) as the original. Passes, repeated until none makes progress
/// or `max_attempts` candidates were tried, or `give_up` (polled before every candidate; may be
/// empty) returns true -- time budgets and stop requests end a shrink that way:
///   1. one failing row (the row named by `hint_row` first, then each row), then halving T;
///   2. dropping experts (blocks, then single columns; k and groups kept valid);
///   3. lowering k;
///   4. contiguous layout, then dtype f32;
///   5. simpler values: logits to 0, to integers, scales and bias to 1 / 0.
/// Candidates that are not valid routing problems are never proposed.
ShrinkResult shrink_case(const RoutingCase& failing,
                         const std::function<bool(const RoutingCase&)>& still_fails,
                         std::int64_t hint_row = -1, int max_attempts = 4000,
                         const std::function<bool()>& give_up = {});

}  // namespace moecheck
