// moecheck reference MoE forward: router, gemma4 routing, gated gelu-tanh experts, combine.
//
// Pure C++17, fp64 throughout, deterministic. Shapes are row-major and documented per
// argument; every tensor is a flat std::vector<double> (or a raw pointer into one).
// This is the numeric ground truth for the LibTorch MoE module
// (DESIGN.md, "Functional substitution").
#pragma once

#include <cstdint>
#include <vector>

#include "reference/routing.hpp"

namespace moecheck {

/// RMSNorm epsilon of the router: x / sqrt(mean(x^2) + kRouterRmsEps).
constexpr double kRouterRmsEps = 1e-6;

/// gelu with the tanh approximation:
///   gelu_tanh(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).
double gelu_tanh(double x);

/// Parameters of one MoE layer. All row-major, fp64.
struct MoeWeights {
  std::int64_t H = 0;  ///< hidden size, >= 1
  std::int64_t I = 0;  ///< expert intermediate size, >= 1
  std::int64_t E = 0;  ///< experts, >= 1
  int k = 1;           ///< experts per token, 1 <= k <= E
  std::vector<double> router_scale;      ///< [H] learned per-dim scale applied after RMSNorm
  std::vector<double> router_proj;       ///< W_router [E, H]: logits = x_n W_router^T
  std::vector<double> per_expert_scale;  ///< [E] gemma4 per-expert scale (finite)
  std::vector<double> w_gate;            ///< [E, I, H]
  std::vector<double> w_up;              ///< [E, I, H]
  std::vector<double> w_down;            ///< [E, H, I]

  /// Throws RoutingError naming the first field whose size disagrees with H/I/E, or when
  /// k is out of [1, E] or a per_expert_scale entry is not finite.
  void check() const;
};

/// Router logits for T tokens. x: [T, H]; logits_out: [T, E].
/// Per token: n = x / sqrt(mean(x^2) + eps) (RMSNorm without weight); n *= H^-0.5;
/// n *= router_scale (elementwise); logits = n W_router^T.
void moe_router_logits(const MoeWeights& w, const double* x, std::int64_t T, double* logits_out);

/// One expert on one token. x: [H]; out: [H].
/// h = gelu_tanh(x W_gate[e]^T) * (x W_up[e]^T)  ([I]);  out = h W_down[e]^T.
void moe_expert_forward(const MoeWeights& w, std::int64_t e, const double* x, double* out);

/// Optional record of the intermediate values of moe_forward.
struct MoeTrace {
  std::vector<double> logits;         ///< [T, E]
  std::vector<double> weights;        ///< [T, k] routing weights (per_expert_scale applied)
  std::vector<std::int32_t> ids;      ///< [T, k] routed experts (reference order and ties)
};

/// Full layer: y[t] = sum_j weights[t, j] * expert_{ids[t, j]}(x[t]).
/// Routing has gemma4 semantics (softmax over all E, top-k, renormalise, x per_expert_scale[id])
/// and the reference's edge-case policy (reference/EDGE_CASES.md). x: [T, H]; y: [T, H].
/// Calls w.check() first. trace, when given, receives logits, weights and ids.
void moe_forward(const MoeWeights& w, const double* x, std::int64_t T, double* y,
                 MoeTrace* trace = nullptr);

}  // namespace moecheck
