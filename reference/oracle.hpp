// moecheck oracles: tie-aware checks of an implementation's routing output against the
// fp64 reference. Pure C++17 (no LibTorch), shared by the property suites, the fuzzer,
// the CUDA host-emulation tests and the plugin runner.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/contract.hpp"
#include "reference/routing.hpp"

namespace moecheck {

/// Precision model of the implementation under test; it sets the selection band and
/// the weight error bounds (derivation in reference/EDGE_CASES.md, "Error bounds").
struct Precision {
  /// Unit roundoff of the arithmetic the implementation computes weights in
  /// (2^-24 for fp32 math, 2^-11 fp16, 2^-8 bf16).
  double compute_eps = 0x1p-24;
  /// Selection band `delta` as a multiple of ulp-size of the k-th key: 0 for implementations that
  /// compare the exact input values (our kernels, torch.topk on the logits); > 0 for ones that
  /// select on rounded derived scores (e.g. sigmoid+bias computed in fp32).
  double select_band_ulps = 0.0;
  /// Extra relative slack factor for fast-math exp (__expf); 1 = libm quality.
  /// (The error of exp itself in units of compute_eps; the part of a fast exp's error that
  /// grows with its argument is modelled separately, see EDGE_CASES.md "Error bounds".)
  double exp_ulps = 2.0;
  /// Smallest normal number of the compute type (2^-126 for fp32 and bf16, 2^-14 for fp16).
  /// Results below it may be flushed to zero (FTZ) or lose relative precision; it sets the
  /// absolute floor of the weight bound.
  double min_normal = 0x1p-126;
};

/// Precision of a plain fp32 implementation with exact selection.
Precision fp32_exact_selection();
/// Precision of an implementation computing in `compute` (compute_eps and min_normal of that
/// type, libm-quality exp with exp_ulps = 2) with the given selection band.
Precision compute_precision(DType compute, double select_band_ulps = 0.0);

/// Spacing of fp32 numbers at |v|: 2^(floor(log2|v|) - 23) for |v| >= 2^-126, 2^-149 below
/// (the subnormal spacing), +inf for infinite v. Used to turn select_band_ulps into `delta`.
double ulp_fp32(double v);

/// One failed check, printable. row/slot are -1 when not applicable.
struct Violation {
  std::string check;         ///< e.g. "selection", "duplicate-id", "id-range", "weight", "unwritten"
  std::int64_t row = -1;
  std::int64_t slot = -1;
  std::int64_t expert = -1;
  double expected = 0.0;     ///< reference value (weight) or threshold (selection)
  double got = 0.0;
  double tolerance = 0.0;    ///< allowed |got - expected|
  double margin = 0.0;       ///< key(selected/unselected) - k-th key (selection checks)
  std::string detail;        ///< human-readable sentence
  /// One line: "row 3 slot 1 expert 7: weight expected 0.25 got 0.2500003 (tol 1.2e-7) ..."
  std::string str() const;
};

/// Result of checking one output. ok() iff no violations.
struct CheckReport {
  std::vector<Violation> violations;  ///< at most `max_violations` kept (first ones by row)
  std::int64_t violations_total = 0;  ///< all violations found, including those not kept
  std::int64_t rows_checked = 0;
  std::int64_t ties_at_kth = 0;       ///< rows where the k-th key was tied (statistics)
  bool ok() const { return violations.empty(); }
  std::string str() const;            ///< multi-line summary, first violations listed
};

struct OracleOptions {
  Precision precision{};
  int max_violations = 8;  ///< violations kept in the report (values < 1 are treated as 1)
  /// Weights and ids poisoned before the run: a weight whose bits still equal this
  /// pattern, or an id still equal to kPoisonId, is reported as "unwritten".
  bool check_poison = true;
  /// The declared contract the output is judged by (reference/CONTRACTS.md). The default is the
  /// strict contract: check_routing then judges exactly as documented in EDGE_CASES.md. Only the
  /// semantics are used by check_routing; the domain (layouts, alignment, T*E) is checked by
  /// check_with_contract / outside_contract. Ignored by the metamorphic relations.
  Contract contract{};
};

/// Poison patterns written into outputs before a run.
constexpr std::uint32_t kPoisonWeightBits = 0x7fa5a5a5u;  // a signalling-looking NaN no math produces
constexpr std::int32_t kPoisonId = -0x5a5a5a5b;

/// Fills outputs with the poison patterns.
void poison_outputs(float* weights, std::int32_t* ids, std::int64_t count);

/// The tie-aware oracle (DESIGN.md, "The oracle"). For every row:
///  * ids unique and in [0, E); every output written (poison check);
///  * selection valid: with v_k the k-th largest key and band delta, every selected key
///    >= v_k - delta and every unselected key <= v_k + delta (sigmoid_grouped: the same rule
///    applied to group scores, then to experts inside the chosen groups);
///  * weights equal the fp64 reference computed *for the ids the implementation chose*
///    within the documented dtype-derived bound.
/// weights/ids are [T, k] row-major contiguous as written by the implementation.
/// With a non-strict `opt.contract` the rules of that contract apply instead (NaN/+inf policies,
/// probability-ranked selection, tie order, masked-row weights, weight bound; CONTRACTS.md);
/// its further check names are "tie-order", "nan-weight", "zeroed-row-ids" and "zeroed-row-weight".
CheckReport check_routing(const GatingView& g, const RoutingParams& p, const float* weights,
                          const std::int32_t* ids, const OracleOptions& opt = {});

/// Verdict of check_with_contract.
struct ContractCheck {
  std::string outside;      ///< why the input lies outside the contract's domain ("" = covered)
  std::string outside_key;  ///< short category of `outside` ("layout transposed", "T*E limit", ...)
  CheckReport report;       ///< the oracle's report (empty when outside)
  bool covered() const { return outside.empty(); }
  /// True when the output satisfies the contract or the input is outside it.
  bool ok() const { return !covered() || report.ok(); }
};

/// The contract-aware checking entry point (for outputs computed anywhere, e.g. by another
/// process): validates the problem (throws RoutingError), decides whether `opt.contract` covers
/// the input (outside_contract) and, when it does, judges the output with check_routing.
ContractCheck check_with_contract(const GatingView& g, const RoutingParams& p, const float* weights,
                                  const std::int32_t* ids, const OracleOptions& opt = {});

/// Documented error bound for one weight (see EDGE_CASES.md "Error bounds").
/// w_ref: fp64 reference weight; unscaled: w_ref before the per-expert scale;
/// scale: the expert's scale; max_arg: largest |x_j - x_max| over the k selected (clipped to 104);
/// k: experts per row.
/// (k is the number of terms in the weight's denominator: k for the renormalising families,
/// E for softmax_topk_raw. `denominator` is the fp64 value of that denominator with its largest
/// term scaled to 1: >= 1 for the softmax families, the sum of the selected sigmoid scores for
/// sigmoid_grouped; the absolute floor is divided by it. 0 is treated as 1.)
double weight_tolerance(const Precision& prec, double unscaled, double scale, double max_arg,
                        int k, double denominator = 1.0);

/// The error-bound inputs check_routing uses for one row and one chosen selection:
/// max_arg and term count for weight_tolerance, and the denominator. Exposed so other
/// checkers (kernels' host emulation, the fuzzer) use exactly the same bound.
struct WeightBoundInputs {
  double max_arg = 0.0;      ///< clipped to [0, 104]
  int n_terms = 1;           ///< terms of the denominator (k, or E for softmax_topk_raw)
  double denominator = 1.0;  ///< see weight_tolerance
};
WeightBoundInputs weight_bound_inputs(const double* logits, std::int64_t E,
                                      const RoutingParams& p, const std::int32_t* ids);

/// Unscaled fp64 reference weight of each slot: reference_weights_for_ids (routing.hpp) with
/// the final multiplier removed (per_expert_scale for gemma4, routed_scaling for sigmoid_grouped).
/// `scale_out[j]` receives that multiplier for slot j.
void reference_unscaled_weights_for_ids(const double* logits, std::int64_t E,
                                        const RoutingParams& p, const std::int32_t* ids,
                                        double* unscaled_out, double* scale_out);

}  // namespace moecheck
