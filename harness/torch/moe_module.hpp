// moecheck MoE module: a LibTorch Mixture-of-Experts layer mirroring the real layer
// (DESIGN.md, "Functional substitution"), built correctly or with a known stale-capture bug.
//
// Module tree and registered tensors (dotted names as named_parameters/named_buffers give them):
//
//   MoeLayer                                  root
//     per_expert_scale      parameter [E]     routing weight multiplier per expert (init 1)
//     router                Router
//       scale               parameter [H]     learned per-dim scale (init 1)
//       proj                parameter [E, H]  projection to E logits
//       norm                RmsNorm           RMSNorm without weight (nested submodule)
//         eps               buffer    []      fp64 scalar added to mean(x^2) (init 1e-6)
//     experts               Experts           gets the routing callable at construction
//       gate_proj           parameter [E, I, H]
//       up_proj             parameter [E, I, H]  (the same tensor object as gate_proj when
//                                                 MoeConfig::tie_gate_up)
//       down_proj           parameter [E, H, I]
//
// Forward for x [T, H] (leading dims flattened):
//   n      = x * rsqrt(mean(x^2, -1) + eps)        computed in fp32, rounded to the dtype
//   n      = n * H^-0.5 * router.scale
//   logits = n @ router.proj^T                      [T, E] in the dtype
//   (w, id)= routing(logits)                        w fp32 [T, k], id int32 [T, k]
//            routing = softmax over all E (fp32), top-k by logit, renormalise (sum 0 -> 1),
//                      x per_expert_scale[id]   (DESIGN.md "Routing families")
//   out[t] = sum_j w[t,j] * down[id] @ (gelu_tanh(gate[id] @ x[t]) * (up[id] @ x[t]))
//            expert math in the dtype, weighted combine accumulated in fp32, rounded to the dtype.
//
// Every registered tensor is read from its slot at each call (no tensor member variables),
// so the correct module sees every functional substitution, rebind included (Python
// semantics). The routing callable is built by the root and handed to `experts` as a
// std::function, exactly the structure of the layer whose closure went stale.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <torch/torch.h>

#include "harness/torch/substitution_types.hpp"
#include "reference/moe.hpp"

namespace moecheck::harness {

/// Construction parameters of a MoeLayer.
struct MoeConfig {
  std::int64_t num_experts = 4;   ///< E >= 1
  std::int64_t top_k = 2;         ///< k, 1 <= k <= E
  std::int64_t hidden = 8;        ///< H >= 1
  std::int64_t intermediate = 16; ///< I >= 1
  torch::Dtype dtype = torch::kFloat;  ///< kFloat, kHalf or kBFloat16 (parameters and activations)
  torch::Device device = torch::kCPU;
  RoutingBackend backend = RoutingBackend::composite;
  ModuleVariant variant = ModuleVariant::correct;
  bool tie_gate_up = false;       ///< register one tensor as both gate_proj and up_proj
  std::uint64_t seed = 0;         ///< initial values (CPU generator, then moved to `device`)
  double eps = kRouterRmsEps;     ///< initial value of the router.norm.eps buffer (1e-6)

  /// Throws std::invalid_argument naming the first bad field.
  void validate() const;
  /// One line, e.g. "E=4 k=2 H=8 I=16 dtype=f32 device=cpu backend=composite variant=correct".
  std::string str() const;
};

/// Routing result: weights fp32 [T, k], ids int32 [T, k] (contiguous, on the logits' device).
struct Routing {
  torch::Tensor weights;
  torch::Tensor ids;
};

/// The routing callable handed to the experts block: logits [T, E] -> Routing.
using RoutingFn = std::function<Routing(const torch::Tensor& logits)>;

/// Gemma4 routing of `logits` [T, E] (f32/f16/bf16, any device) with `scale` [E] (any
/// floating dtype, converted to fp32) on the chosen backend. With `scale_by_slot` the
/// weight of slot j is multiplied by scale[j] instead of scale[ids[j]] (the planted bug;
/// requires k <= E, which routing requires anyway). Throws std::invalid_argument for bad
/// shapes or an unavailable backend, moecheck::RoutingError from the reference.
Routing route_logits(const torch::Tensor& logits, std::int64_t k, const torch::Tensor& scale,
                     RoutingBackend backend, bool scale_by_slot = false);

/// Maps kFloat/kHalf/kBFloat16 to "f32"/"f16"/"bf16"; throws std::invalid_argument otherwise.
const char* torch_dtype_name(torch::Dtype d);
/// Parses "f32"/"fp32"/"float32", "f16"/"fp16"/"half", "bf16"/"bfloat16".
bool parse_torch_dtype(const std::string& s, torch::Dtype* out);

/// RMSNorm without weight: x * rsqrt(mean(x^2, -1) + eps), computed in fp32, result in x's dtype.
class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(double eps, torch::Device device);
  /// x [..., H] -> same shape and dtype.
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(RmsNorm);

/// Router: RMSNorm, x H^-0.5, x scale[H], projection to E logits.
class RouterImpl : public torch::nn::Module {
 public:
  explicit RouterImpl(const MoeConfig& cfg);
  /// x [T, H] -> logits [T, E] in the config dtype.
  torch::Tensor forward(const torch::Tensor& x);

 private:
  double root_size_;  ///< H^-0.5
  RmsNorm norm_{nullptr};
};
TORCH_MODULE(Router);

/// Experts block: E gated gelu-tanh MLPs and the weighted combine; routes with the callable
/// it was given.
class ExpertsImpl : public torch::nn::Module {
 public:
  ExpertsImpl(const MoeConfig& cfg, RoutingFn routing);
  /// x [T, H], logits [T, E] -> out [T, H]; `routing_out` (optional) receives the routing.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& logits,
                        Routing* routing_out = nullptr);

 private:
  std::int64_t num_experts_;
  RoutingFn routing_;
};
TORCH_MODULE(Experts);

/// Everything one forward computed.
struct MoeForward {
  torch::Tensor out;      ///< [T, H] in the dtype (leading dims of x restored)
  torch::Tensor logits;   ///< [T, E] router logits in the dtype
  Routing routing;        ///< weights fp32 [T, k], ids int32 [T, k]
};

/// The MoE layer. Non-copyable in spirit: the routing callable refers to this object, so
/// do not clone() it; build another one from the same MoeConfig instead.
class MoeLayerImpl : public torch::nn::Module {
 public:
  explicit MoeLayerImpl(const MoeConfig& cfg);
  /// x [..., H] -> out [..., H].
  torch::Tensor forward(const torch::Tensor& x);
  /// x [..., H] -> out, logits, routing (T = product of the leading dims).
  MoeForward forward_detailed(const torch::Tensor& x);

  const MoeConfig& config() const { return cfg_; }
  Router router() const { return router_; }
  Experts experts() const { return experts_; }

 private:
  RoutingFn make_routing_fn();

  MoeConfig cfg_;
  Router router_{nullptr};
  Experts experts_{nullptr};
};
TORCH_MODULE(MoeLayer);

/// Dotted names of every parameter and buffer of a MoeLayer (tied names included), in the
/// order list_slots gives them.
std::vector<std::string> moe_tensor_names();

}  // namespace moecheck::harness
