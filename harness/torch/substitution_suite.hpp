// moecheck substitution suite: the functional-substitution properties (DESIGN.md,
// "Functional substitution"), runnable programmatically (the `moecheck substitution` command, the fuzzer)
// and from the RapidCheck/GoogleTest suite (properties/substitution_prop.cpp).
//
// No LibTorch in this header: callers only need the options and the report.
//
// Properties, each checked for one generated case, one module spec and one substitution mode:
//   scale_substitution : substituting per_expert_scale makes the routing weights equal the
//                        fp64 reference for the new scale (moecheck::check_routing on the
//                        module's own router logits, tie-aware) and leaves logits and ids
//                        unchanged.
//   restoration        : a strict substitution of every tensor, on success and when the
//                        call throws, leaves the module with the same tensor objects, storage
//                        and values, and its outputs bitwise unchanged.
//   scale_linearity    : weights(alpha s) = alpha weights(s) within 2 fp32 roundings, ids
//                        unchanged (alpha from {2, -1, 0.5, 3, -0.25, 1.5}).
//   zero_scale         : with per_expert_scale[z] = 0 the output equals (==) the output with
//                        down_proj[z] zeroed instead, and every weight of expert z is 0.
//   every_parameter    : for each parameter and buffer, substituting a random new value
//                        gives the logits, weights and output of an independent fp64
//                        recomputation from the substituted state (moe_reference.hpp
//                        tolerances), and so does the unsubstituted module.
//
// Which property/mode exposes which ModuleVariant: see substitution_types.hpp. Every bug
// variant fails scale_substitution, scale_linearity (except scale_by_slot, which is
// linear), zero_scale and every_parameter in the modes that catch it; restoration passes
// for all variants (it checks functional_call, not the module).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "harness/torch/substitution_types.hpp"
#include "reference/routing.hpp"

namespace moecheck::harness {

enum class SubstitutionProperty : int {
  scale_substitution = 0,
  restoration = 1,
  scale_linearity = 2,
  zero_scale = 3,
  every_parameter = 4,
};
/// "scale_substitution", "restoration", "scale_linearity", "zero_scale", "every_parameter".
const char* substitution_property_name(SubstitutionProperty p);
bool parse_substitution_property(std::string_view s, SubstitutionProperty* out);
std::vector<SubstitutionProperty> all_substitution_properties();
/// Whether property `p` is documented to fail for module variant `v` under substitution mode
/// `m`: restoration checks functional_call, not the module, so it never fails; scale_by_slot
/// is linear in the scale, so scale_linearity does not see it; otherwise the detection matrix
/// of `variant_caught_by` (substitution_types.hpp).
bool property_expected_to_fail(SubstitutionProperty p, ModuleVariant v, SubstitutionMode m);

/// One generated case. Values are small dyadic rationals (multiples of 1/4 in [-2, 2]),
/// exact in f32, f16 and bf16.
struct SubstitutionCase {
  std::int64_t E = 1, k = 1, H = 1, I = 1, T = 0;
  bool tie_gate_up = false;        ///< build the module with gate_proj and up_proj tied
  std::uint64_t init_seed = 0;     ///< module initial values
  std::uint64_t value_seed = 0;    ///< random substituted values (restoration, every_parameter)
  std::vector<float> x;            ///< [T, H] input, not all zero
  std::vector<float> scale;        ///< [E] the substituted per_expert_scale, not all zero
  std::int64_t zero_expert = 0;    ///< z for zero_scale, in [0, E)
  float alpha = 2.0f;              ///< factor for scale_linearity
};
/// Multi-line description (sizes, seeds, x as rows, scale), used as the counterexample text.
std::string describe_case(const SubstitutionCase& c);
/// RapidCheck's printer hook (found by argument-dependent lookup).
void showValue(const SubstitutionCase& c, std::ostream& os);

/// Bounds of generated cases (inclusive maxima; E, k, H, I >= 1, T >= 0).
struct CaseLimits {
  std::int64_t max_E = 16, max_H = 16, max_I = 16, max_T = 8;
};

/// The module a property runs on.
struct ModuleSpec {
  ModuleVariant variant = ModuleVariant::correct;
  RoutingBackend backend = RoutingBackend::composite;
  DType dtype = DType::f32;
  std::string device = "cpu";      ///< "cpu", "cuda" or "cuda:N"
  std::string str() const;
};

/// Runs one property on one case. Returns "" when it holds, otherwise a paragraph saying
/// what differed (the counterexample's explanation). Throws std::invalid_argument for an
/// unusable spec (unknown device, unavailable backend).
std::string check_substitution_property(SubstitutionProperty p, const SubstitutionCase& c,
                                        const ModuleSpec& spec, SubstitutionMode mode);

/// Options of a suite run.
struct SubstitutionOptions {
  ModuleSpec spec;
  std::vector<SubstitutionMode> modes{SubstitutionMode::rebind, SubstitutionMode::in_place};
  std::vector<SubstitutionProperty> properties = all_substitution_properties();
  int cases = 100;                 ///< passing cases required per (property, mode)
  std::uint64_t seed = 1;          ///< RapidCheck seed (never drawn from the environment)
  int max_size = 100;              ///< RapidCheck max size
  bool shrink = true;
  CaseLimits limits{};
  /// A reproduce string from a previous report (PropertyResult::reproduce): runs exactly the
  /// recorded shrunk case of that (property, mode) instead of a search.
  std::string reproduce;
};

/// Outcome of one (property, mode).
struct PropertyResult {
  SubstitutionProperty property = SubstitutionProperty::scale_substitution;
  SubstitutionMode mode = SubstitutionMode::rebind;
  bool passed = false;
  bool error = false;              ///< the run itself failed (gave up, exception outside a case)
  int cases_passed = 0;            ///< successful cases before the verdict
  int shrink_steps = 0;            ///< accepted shrinks
  std::string failure;             ///< why the shrunk case fails (empty when passed)
  std::string counterexample;      ///< the shrunk case (describe_case), empty when passed
  std::string reproduce;           ///< RapidCheck reproduce string, empty when passed
  std::string replay;              ///< a `moecheck substitution ...` command line re-running it
  double seconds = 0.0;
};

/// Outcome of a suite run.
struct SubstitutionReport {
  SubstitutionOptions options;
  std::vector<PropertyResult> results;
  /// True iff every (property, mode) passed.
  bool passed() const;
  /// Human-readable report: one line per result, then each failure with its counterexample
  /// and replay line.
  std::string str() const;
};

/// Runs every selected (property, mode) with RapidCheck (seeded by options.seed, shrinking
/// on) and collects the verdicts. Never throws for property failures; throws
/// std::invalid_argument for unusable options (bad device, unavailable backend, bad
/// reproduce string).
SubstitutionReport run_substitution_suite(const SubstitutionOptions& options);

/// The `moecheck substitution` command line that re-runs one result.
std::string replay_command(const SubstitutionOptions& options, SubstitutionProperty p,
                           SubstitutionMode m, const std::string& reproduce = "");

}  // namespace moecheck::harness
