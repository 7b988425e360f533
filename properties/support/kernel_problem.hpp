// moecheck test support: routing problems for the fused-kernel suites (kernel_host_test,
// kernel_gpu_test, kernel_plugin_test), built from the harness's own cases. A problem is a
// RoutingCase drawn by build_case (harness/core/generators.hpp: seeded, identical on every
// platform) laid out in storage bytes for the kernels' raw-pointer API. Test-only code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness/core/case.hpp"
#include "harness/core/generators.hpp"
#include "kernels/routing_kernels.hpp"
#include "reference/routing.hpp"

namespace moecheck::testing {

// The case vocabulary of the kernel suites, which use `using namespace moecheck::testing`.
using ::moecheck::DType;
using ::moecheck::Family;
using ::moecheck::Layout;
using ::moecheck::Rng;
using ::moecheck::RoutingCase;

/// Value family of make_problem that draws every row from its own harness value family
/// (all_value_families(), "normal" more often), so one launch mixes ties, +-inf, NaN rows,
/// huge and subnormal values.
inline constexpr const char* kMixedValues = "mixed";

/// A routing case laid out for the fused kernels. `storage` holds the case's values at their
/// strided positions, each NaN with a varied sign, payload and quietness (the case keeps a
/// plain NaN), and in the layout's gaps a huge finite value that wins any selection, so that a
/// kernel reading outside the view selects it and fails visibly. The oracle and the
/// emulation read `storage` (view_of), so tests may overwrite it.
struct KernelProblem {
  RoutingCase c;
  std::vector<std::uint8_t> storage;

  /// Kernel arguments for a gating buffer holding `storage` (host or device copy) and a
  /// scale buffer holding c.scale (nullptr when the case has none).
  kernels::RoutingArgs args(const void* gating, const float* scale, float* weights, std::int32_t* ids) const;
  /// Host arguments: this problem's storage and scale.
  kernels::RoutingArgs host_args(float* weights, std::int32_t* ids) const;
  /// One line naming the problem (family, dtype, T, E, k, layout, pad, value and scale
  /// families, seed): make_problem with these rebuilds it.
  std::string describe() const;
};

/// The oracle's view of p.storage and its routing parameters (scale borrowed from p.c).
GatingView view_of(const KernelProblem& p);
RoutingParams params_of(const KernelProblem& p);

/// Kernel enums of the case's dtype and family (same numbering; family must be one of the
/// three fused-kernel families).
kernels::GatingType gating_type(DType d);
kernels::KernelFamily kernel_family(Family f);

/// A scale family other than "ones", picked by `seed` (uniform, zero, negative, mixed).
const char* scale_family_for(std::uint64_t seed);

/// The problem for (dtype, T, E, k, family, layout) with values drawn from `seed`:
/// build_case with value family `values` (a harness family or kMixedValues) and scale family
/// `scales`. Padded / strided layouts get a pad in [1, 7] drawn from the seed. A scale family
/// other than "ones" also gives the softmax families a scale, which the kernels must ignore.
/// Throws RoutingError for shapes build_case rejects.
KernelProblem make_problem(std::uint64_t seed, DType dtype, std::int64_t T, int E, int k, Family family,
                           Layout layout, const std::string& values = kMixedValues,
                           const std::string& scales = "ones");

/// Lays out a given case (e.g. one whose logits a test wrote by hand); c.check_consistent()
/// must hold.
KernelProblem lay_out(RoutingCase c);

}  // namespace moecheck::testing
