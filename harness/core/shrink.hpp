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
///   1. rows: the row named by `hint_row`; the shortest failing prefix, then the shortest
///      failing suffix of it (binary search); failing that, single rows among the first 64,
///      then halving T;
///   2. groups (sigmoid_grouped): n_group = topk_group = 1, else the smallest failing
///      topk_group (binary search) and the smallest failing divisor of E as n_group;
///   3. experts: the fewest leading, then trailing experts (binary search), then dropping
///      blocks and single columns (k kept valid);
///   4. k: the smallest failing k (binary search), then single steps down;
///   5. contiguous layout (else the smallest failing pad, binary search), then dtype f32;
///   6. simpler values: logits to 0, to integers, scales and bias to 1 / 0.
/// Integer dimensions therefore end at the smallest failing value when the failure is
/// monotone in them (a case failing iff T > 1000 shrinks to T = 1001).
/// Candidates that are not valid routing problems are never proposed.
ShrinkResult shrink_case(const RoutingCase& failing,
                         const std::function<bool(const RoutingCase&)>& still_fails,
                         std::int64_t hint_row = -1, int max_attempts = 4000,
                         const std::function<bool()>& give_up = {});

}  // namespace moecheck
