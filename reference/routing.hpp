// moecheck reference: the routing contract every implementation is checked against.
//
// Pure C++17. No LibTorch, no CUDA. fp64 accumulation, deterministic.
// The complete edge-case policy lives in reference/EDGE_CASES.md and is summarised here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace moecheck {

/// Element type of the gating logits. Values are stored bit-exactly in their dtype.
enum class DType : int { f32 = 0, f16 = 1, bf16 = 2 };

/// Short lowercase name ("f32", "f16", "bf16").
const char* dtype_name(DType d);
/// Parses "f32"/"fp32"/"float32", "f16"/"fp16"/"half"/"float16", "bf16"/"bfloat16".
/// Returns false (leaving *out untouched) on anything else.
bool parse_dtype(std::string_view s, DType* out);
/// Size in bytes of one element (4, 2, 2).
std::size_t dtype_size(DType d);
/// Unit roundoff of the dtype (2^-24, 2^-11, 2^-8).
double dtype_unit_roundoff(DType d);

/// Bit-exact IEEE binary16 -> float (subnormals, inf, NaN payload preserved as quiet NaN).
float half_bits_to_float(std::uint16_t h);
/// float -> binary16 bits, round-to-nearest-even; overflow -> inf; NaN -> quiet NaN.
std::uint16_t float_to_half_bits(float f);
/// Bit-exact bfloat16 -> float.
float bf16_bits_to_float(std::uint16_t b);
/// float -> bfloat16 bits, round-to-nearest-even; NaN -> quiet NaN.
std::uint16_t float_to_bf16_bits(float f);
/// Rounds f to the nearest value representable in dtype d and returns it as float.
float round_to_dtype(float f, DType d);

/// Routing families behind one interface (DESIGN.md, "Routing families").
enum class Family : int {
  gemma4 = 0,          ///< softmax over all E -> top-k -> renormalise -> x per_expert_scale[id]
  softmax_topk = 1,    ///< Mixtral/Qwen: softmax over all E -> top-k -> renormalise
  softmax_topk_raw = 2,///< softmax over all E -> top-k, no renormalise (weights are full-softmax probs)
  sigmoid_grouped = 3, ///< DeepSeek-V3: sigmoid scores, +bias for selection, grouped top-k, renorm x routed_scaling
  sigmoid_top1 = 4,    ///< Llama-4: top-1 by logit, weight = sigmoid(logit)
};
const char* family_name(Family f);
bool parse_family(std::string_view s, Family* out);

/// Error raised for caller misuse (bad shapes, k out of range, non-finite scales...).
/// what() names the offending argument and its value.
class RoutingError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A strided, read-only view of the gating logits G[T, E].
/// Element (t, e) lives at `data + (t * row_stride + e * col_stride) * dtype_size(dtype)` bytes.
/// Strides are in elements and may be any non-negative values (0 only when the extent is <= 1).
struct GatingView {
  const void* data = nullptr;  ///< may be null only when T == 0
  DType dtype = DType::f32;
  std::int64_t T = 0;          ///< rows (tokens), >= 0
  std::int64_t E = 0;          ///< experts, >= 1
  std::int64_t row_stride = 0; ///< elements between rows
  std::int64_t col_stride = 1; ///< elements between experts in a row

  /// Loads element (t, e) exactly, converted to double.
  double at(std::int64_t t, std::int64_t e) const;
};

/// Routing parameters. Pointers are borrowed and must stay valid for the call.
struct RoutingParams {
  Family family = Family::gemma4;
  int k = 1;                           ///< experts per token, 1 <= k <= E
  const float* scale = nullptr;        ///< per_expert_scale[E] (gemma4 only); nullptr means all ones
  const float* bias = nullptr;         ///< selection bias[E] (sigmoid_grouped only); nullptr means zeros
  int n_group = 1;                     ///< sigmoid_grouped: E % n_group == 0
  int topk_group = 1;                  ///< sigmoid_grouped: 1 <= topk_group <= n_group
  float routed_scaling = 1.0f;         ///< sigmoid_grouped: final multiplier (finite)
};

/// Validates a problem; throws RoutingError naming the first problem found:
/// E < 1, T < 0, k < 1, k > E, null data with T > 0, negative strides,
/// non-finite scale/bias entries (index named), bad group configuration,
/// sigmoid_top1 with k != 1.
void validate_routing(const GatingView& g, const RoutingParams& p);

/// Reference routing of one row of E logits (already converted exactly to double).
/// Writes k fp64 weights and k ids, ids ordered by descending selection key,
/// ties broken by lower expert index (the reference's canonical choice; oracles
/// accept any tie order, see oracle.hpp).
/// Preconditions: validate_routing has passed for the same parameters.
void route_row_reference(const double* logits, std::int64_t E, const RoutingParams& p,
                         double* weights, std::int32_t* ids);

/// Reference routing for all rows. weights/ids are [T, k] row-major, contiguous.
/// Calls validate_routing first.
void route_reference(const GatingView& g, const RoutingParams& p, double* weights,
                     std::int32_t* ids);

/// fp64 reference weights for a given (valid, unique) id selection of one row: what the
/// family's weight formula gives for exactly those experts. route_row_reference is this
/// formula applied to the reference's own selection; the oracles apply it to the selection an
/// implementation chose (oracle.hpp).
void reference_weights_for_ids(const double* logits, std::int64_t E, const RoutingParams& p,
                               const std::int32_t* ids, double* weights_out);

/// The key by which the family ranks experts for selection (before grouping):
/// logits for softmax families and sigmoid_top1, sigmoid(x)+bias[e] for sigmoid_grouped.
/// NaN logits map to -inf (see EDGE_CASES.md).
double selection_key(Family f, double logit, double bias);

}  // namespace moecheck
