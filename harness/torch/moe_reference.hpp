// moecheck fp64 MoE forward reference with a running error bound, and the comparison of a
// MoeLayer forward against it.
//
// The reference recomputes the forward documented in moe_module.hpp from the named
// tensors alone, nothing shared with the module's code, so a module whose math reads a
// stale tensor anywhere disagrees with it. Values come from the project's fp64 reference
// (reference/moe.hpp: moe_router_logits, moe_expert_forward; reference/routing.hpp:
// reference_weights_for_ids for the module's ids); only when router.norm.eps was
// substituted (moe.hpp fixes eps = kRouterRmsEps) are the logits computed here.
//
// Error bound. Alongside every value the reference carries a first-order bound on how far
// an implementation may be from it when it rounds like the module does (Higham, "Accuracy
// and Stability of Numerical Algorithms", ch. 3: a length-n dot product carries at most
// gamma_n = n u / (1 - n u) times the sum of |products|):
//   u_d = unit roundoff of the module dtype (2^-24 f32, 2^-11 f16, 2^-8 bf16); every
//         stored intermediate in the dtype is rounded once (+u_d relative), and every
//         matmul in the dtype accumulates with gamma_n(u_d) (conservative: covers
//         accumulation in the dtype as well as fp32 accumulation then one rounding);
//   u32 = 2^-24 for the fp32 parts (RMSNorm statistics, softmax, weighted combine).
//   RMSNorm + x H^-0.5 + x scale : relative (H + 8) u32 + 3 u_d
//   logits                       : (that + gamma_H(u_d)) * sum|proj||xn| + u_d |logit|
//   routing weights              : |s| p (exp(2 max logit err) - 1 + (E + k + 8) u32) + u32 |w|
//   expert MLP                   : gamma_H(u_d) / gamma_I(u_d) on the three matmuls, gelu_tanh's
//                                  slope (<= 1.13) on its argument's error plus 8 u32 |g|
//   combine                      : sum_j (|w_j| err(y_j) + err(w_j) |y_j|) + gamma_{k+1}(u32) sum|w y| + u_d |out|
// `reference_tolerance` turns a bound into the tolerance used by the checks.
//
// Selection is tie-aware (DESIGN.md, "The oracle"): the module's ids are accepted when every
// selected reference logit is >= v_k - delta and every unselected one <= v_k + delta, with
// v_k the k-th largest reference logit and delta = 2 x the row's largest logit bound; the
// weights and outputs are then recomputed for the module's ids.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "harness/torch/moe_module.hpp"
#include "reference/routing.hpp"

namespace moecheck::harness {

/// Problem sizes of one reference forward.
struct MoeDims {
  std::int64_t E = 1, k = 1, H = 1, I = 1, T = 0;
};

/// Exact values of the module's tensors, row-major, by role.
struct MoeState {
  std::vector<double> per_expert_scale;  ///< [E]
  std::vector<double> router_scale;      ///< [H]
  std::vector<double> proj;              ///< [E, H]
  double eps = 0.0;                      ///< router.norm.eps
  std::vector<double> gate;              ///< [E, I, H]
  std::vector<double> up;                ///< [E, I, H]
  std::vector<double> down;              ///< [E, H, I]
};

/// Reference values and their error bounds.
struct MoeReferenceResult {
  std::vector<double> logits, logits_err;    ///< [T, E]
  std::vector<std::int32_t> ids;             ///< [T, k] the selection used
  std::vector<double> weights, weights_err;  ///< [T, k]
  std::vector<double> out, out_err;          ///< [T, H]
  /// Non-empty when given ids are not a valid selection of the reference logits
  /// (first offending row described); weights/out are then computed for the reference's
  /// own selection of that row.
  std::string selection_problem;
};

/// fp64 forward of x [T, H] (row-major, exact dtype values). `ids` (optional, [T, k]) is
/// the implementation's selection to recompute for (checked tie-aware); without it the
/// reference selects by descending logit, ties to the lower index.
/// Throws std::invalid_argument for inconsistent sizes.
MoeReferenceResult moe_reference_forward(const MoeDims& dims, const MoeState& state,
                                         const std::vector<double>& x, DType dtype,
                                         const std::int32_t* ids = nullptr);

/// Tolerance for |implementation - reference| given the reference's error bound:
/// 2 x bound (the factor covers the second-order terms the first-order bound drops and
/// libm results a few ulps worse than assumed) plus 1e-30 so exact zeros compare equal.
double reference_tolerance(double err_bound);

/// Every registered tensor of a MoeLayer by dotted name (tied names included).
std::map<std::string, torch::Tensor> moe_named_tensors(MoeLayerImpl& module);

/// MoeState from named tensors (the names of moe_tensor_names()); throws
/// std::invalid_argument naming a missing or mis-shaped tensor.
MoeState moe_state_from(const MoeConfig& cfg, const std::map<std::string, torch::Tensor>& named);

/// Checks one forward of a module built from `cfg` against the reference computed from
/// `named` (the state the forward should have seen) and input x. Stages, first failure
/// reported: selection (tie-aware), logits, routing weights, output. Empty string when
/// everything is within tolerance; otherwise one paragraph naming the stage, the element
/// (row, expert/slot/column), got, expected, tolerance.
std::string compare_forward_with_reference(const MoeConfig& cfg, const MoeForward& got,
                                           const torch::Tensor& x,
                                           const std::map<std::string, torch::Tensor>& named);

/// Row-major doubles of a tensor's exact values (any dtype/device).
std::vector<double> tensor_to_doubles(const torch::Tensor& t);
/// moecheck::DType of a module dtype (kFloat/kHalf/kBFloat16).
DType reference_dtype(torch::Dtype d);

}  // namespace moecheck::harness
