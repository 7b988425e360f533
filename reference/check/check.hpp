// moecheck check: judges routing outputs computed outside moecheck (another process, another
// language) against a declared contract. Pure C++17: no LibTorch, no CUDA, no JSON library.
//
// Two layers: check_outputs() judges borrowed buffers (the C++ API); assemble_check_problem()
// turns decoded array files (reference/check/arrays.hpp) into such buffers, validating every
// shape and dtype (the `moecheck check` command and other front ends).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "reference/check/arrays.hpp"
#include "reference/contract.hpp"
#include "reference/oracle.hpp"
#include "reference/routing.hpp"

namespace moecheck {

/// A routing problem and the outputs some implementation computed for it. Every pointer is
/// borrowed and must stay valid for the call.
struct CheckProblem {
  GatingView logits;                  ///< [T, E] gating logits, exactly as the implementation read them
  RoutingParams params;               ///< family, k, per_expert_scale, bias, grouping
  const float* weights = nullptr;     ///< [T, k] row-major contiguous (may be null when T == 0)
  const std::int64_t* ids = nullptr;  ///< [T, k] row-major contiguous; any value (out-of-range ids are findings)
  /// Precision model of the implementation (oracle.hpp); fp32 math with exact selection by default.
  Precision precision = fp32_exact_selection();
};

struct CheckOutputsOptions {
  /// Violations kept in the report (the first ones by row); the counts cover every violation.
  /// Values < 1 are treated as 1.
  std::int64_t max_violations = std::int64_t{1} << 20;
};

/// Verdict of check_outputs.
struct CheckOutputsReport {
  Contract contract;                 ///< the contract the outputs were judged by
  std::int64_t T = 0, E = 0;
  int k = 0;
  std::string outside;               ///< why the input lies outside the contract's domain ("" = covered)
  std::string outside_key;           ///< short category of `outside` ("T*E limit", "layout transposed", ...)
  std::int64_t rows_checked = 0;     ///< rows judged (0 when outside)
  std::int64_t violating_rows = 0;   ///< rows with at least one violation
  std::int64_t violations_total = 0; ///< every violation found
  std::int64_t ties_at_kth = 0;      ///< rows whose k-th key was tied (statistics)
  std::vector<Violation> violations; ///< the first max_violations, ordered by row; ids as the implementation wrote them
  bool covered() const { return outside.empty(); }
  /// True when every row satisfies the contract, or the input lies outside it (not judged).
  bool ok() const { return !covered() || violations_total == 0; }
};

/// Judges `problem`'s outputs by `contract` (reference/CONTRACTS.md): validates the problem (throws
/// RoutingError naming the first problem: k > E, non-finite per_expert_scale, bad groups...),
/// decides whether the contract covers the input (outside_contract) and, when it does, runs the
/// tie-aware oracle on every row. There is no poison check (the outputs were not written by
/// moecheck); ids outside [0, E) (also beyond the int32 range), duplicate ids, wrong selections
/// and weights are violations.
CheckOutputsReport check_outputs(const CheckProblem& problem, const Contract& contract = Contract{},
                                 const CheckOutputsOptions& options = {});

// ---- from decoded array files --------------------------------------------------------------

/// What the arrays mean. `logits_dtype`/`weights_dtype` say what a raw 2-byte array holds (NumPy
/// has no standard bfloat16: `|V2`, `<V2` or `<u2` files need "bf16" or "f16"); for any other
/// array they must agree with the file ("" = take the file's dtype).
struct CheckInputOptions {
  Family family = Family::gemma4;
  int k = 0;                     ///< experts per row; 0 = take it from the weights' shape
  int n_group = 1;               ///< sigmoid_grouped
  int topk_group = 1;            ///< sigmoid_grouped
  float routed_scaling = 1.0f;   ///< sigmoid_grouped
  std::string logits_dtype;      ///< "", "f32", "f16", "bf16"
  std::string weights_dtype;     ///< "", "f32", "f16", "bf16"
};

/// Decoded inputs. `scale` (gemma4) and `bias` (sigmoid_grouped) are optional.
struct CheckArrays {
  HostArray logits;                ///< [T, E]: float16, bfloat16, float32, or float64 values exact in float32
  HostArray weights;               ///< [T, k] ([T] when k is 1): any float type
  HostArray ids;                   ///< [T, k] ([T] when k is 1): int32 or int64
  std::optional<HostArray> scale;  ///< [E]: per_expert_scale, finite
  std::optional<HostArray> bias;   ///< [E]: selection bias, finite
};

/// A problem assembled from arrays: owns its buffers; `view()` borrows them.
struct OwnedCheckProblem {
  DType logits_dtype = DType::f32;
  std::int64_t T = 0, E = 0;
  std::vector<std::uint8_t> logits;  ///< T * E elements of logits_dtype, C order
  std::vector<float> weights;
  std::vector<std::int64_t> ids;
  std::vector<float> scale, bias;    ///< empty when not given
  RoutingParams params;              ///< pointers refreshed by view()
  /// Conversions worth telling the user ("weights: float64 rounded to float32").
  std::vector<std::string> notes;
  /// The borrowed problem (fp32 precision model); valid while this object lives unchanged.
  CheckProblem view() const;
};

/// Validates and converts the arrays: shapes (logits [T, E], weights and ids [T, k], scale and
/// bias [E]), k (1 <= k <= E, equal to the weights' second dimension), dtypes (float logits,
/// weights and scales, integer ids), float64 logits exactly representable in float32, finite
/// scales and bias (the reference rejects non-finite ones), scale only for gemma4 and bias only
/// for sigmoid_grouped. Throws ArrayFileError naming the array's origin, the field and the
/// problem. Ids are not range-checked here: wrong ids are findings of check_outputs.
OwnedCheckProblem assemble_check_problem(const CheckArrays& arrays, const CheckInputOptions& options);

}  // namespace moecheck
