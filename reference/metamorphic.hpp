// moecheck metamorphic relations: an implementation run on a problem and on a transformed
// copy must give related results. Pure C++17 (no LibTorch), built on the oracle's band rule
// and error bound (oracle.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "reference/oracle.hpp"
#include "reference/routing.hpp"

namespace moecheck {

// Each helper runs an implementation twice (on the problem and on a transformed copy), with
// outputs poisoned before every run, and compares the two results. They need no reference
// weights: the fp64 reference is used only to size the tolerance (weight_tolerance on the
// unscaled reference weight of the ids the implementation chose). Both runs are also checked
// structurally (written, ids unique and in range). "Unchanged up to ties": when the two id
// sets differ, the row passes iff both selections are valid by the tie-aware band rule of
// check_routing (computed from the input keys); weights are then compared only when the
// band is 0 (exact ties have equal values, so the weights coincide), otherwise skipped.
// Violations use check names "metamorphic-ids", "metamorphic-weight", plus the structural
// ones ("unwritten", "id-range", "duplicate-id").

/// An implementation under test: reads the view, writes weights[T, k] and ids[T, k]
/// (row-major, contiguous). It may throw RoutingError for misuse.
using RoutingFn = std::function<void(const GatingView&, const RoutingParams&, float* weights,
                                     std::int32_t* ids)>;

/// The fp64 reference wrapped as a RoutingFn (weights rounded to fp32).
RoutingFn reference_routing_fn();

/// (a) Scale linearity and id independence: runs `impl` with per_expert_scale = scale_a and
/// then scale_b (both [E], finite; p.scale is ignored). For gemma4, per expert e chosen in
/// both runs: w_a(e) * s_b(e) == w_b(e) * s_a(e) within the bound, and w(e) == 0 (within the
/// floor) when its scale is 0. For the other families the scale must have no effect: the
/// weights of both runs agree within the bound. Ids must agree up to ties.
CheckReport check_scale_linearity(const GatingView& g, const RoutingParams& p,
                                  const RoutingFn& impl, const std::vector<float>& scale_a,
                                  const std::vector<float>& scale_b,
                                  const OracleOptions& opt = {});

/// (a) with scale_b = c * scale_a (each product rounded to fp32; the check uses the rounded
/// values, so any finite c works). scale_a is p.scale or all ones when p.scale is null.
CheckReport check_scale_multiple(const GatingView& g, const RoutingParams& p,
                                 const RoutingFn& impl, float c, const OracleOptions& opt = {});

/// True where row-shift invariance holds: the softmax families (ids and weights) and
/// sigmoid_top1 (ids only; its weight is sigmoid(logit), not shift-invariant).
/// False for sigmoid_grouped.
bool row_shift_applies(Family f);

/// Per-row shift constants c[t] such that every finite logit x of row t gives x + c[t] exactly
/// representable (and finite) in the view's dtype; c[t] = 0 when no candidate keeps the row
/// exact. Candidates, first that works wins: -max, -min of the row's finite values, then
/// +-1, +-3, +-0.5, +-16, +-256, and +-q, +-2q with q the row's finest set bit.
/// Infinities and NaN are unchanged by any shift.
std::vector<double> exact_row_shifts(const GatingView& g);

/// (b) Row-shift invariance: runs `impl` on g and on a contiguous copy with row t shifted by
/// shifts[t] (size T). Throws RoutingError if a shifted value is not exact in the dtype or
/// the family is sigmoid_grouped. Softmax families: ids up to ties and weights within the
/// bound; sigmoid_top1: ids only.
CheckReport check_row_shift(const GatingView& g, const RoutingParams& p, const RoutingFn& impl,
                            const std::vector<double>& shifts, const OracleOptions& opt = {});
/// (b) with shifts = exact_row_shifts(g).
CheckReport check_row_shift(const GatingView& g, const RoutingParams& p, const RoutingFn& impl,
                            const OracleOptions& opt = {});

/// (c) Expert permutation equivariance. perm is a permutation of [0, E): column j of the
/// permuted problem holds expert perm[j] (logits, scale and bias move together). Ids of the
/// permuted run map back through perm and must agree with the original run up to ties,
/// with equal weights within the bound. For sigmoid_grouped the permutation must map whole
/// groups onto whole groups (group structure is part of the problem); otherwise, and when
/// perm is not a permutation, RoutingError.
CheckReport check_permutation(const GatingView& g, const RoutingParams& p, const RoutingFn& impl,
                              const std::vector<std::int64_t>& perm,
                              const OracleOptions& opt = {});

}  // namespace moecheck
