// moecheck reference MoE forward: implementation of reference/moe.hpp.
#include "reference/moe.hpp"

#include <cmath>
#include <cstdio>
#include <string>

namespace moecheck {

double gelu_tanh(double x) {
  // sqrt(2 / pi)
  constexpr double kC = 0.7978845608028654;
  return 0.5 * x * (1.0 + std::tanh(kC * (x + 0.044715 * x * x * x)));
}

void MoeWeights::check() const {
  const auto need = [](const char* name, std::size_t got, std::int64_t want) {
    if (static_cast<std::int64_t>(got) != want) {
      throw RoutingError(std::string(name) + " must have " + std::to_string(want) + " elements (got " +
                         std::to_string(got) + ")");
    }
  };
  if (H < 1) throw RoutingError("H must be >= 1 (got H = " + std::to_string(H) + ")");
  if (I < 1) throw RoutingError("I must be >= 1 (got I = " + std::to_string(I) + ")");
  if (E < 1) throw RoutingError("E must be >= 1 (got E = " + std::to_string(E) + ")");
  if (k < 1 || k > E) {
    throw RoutingError("k must be in [1, E] (got k = " + std::to_string(k) + ", E = " + std::to_string(E) + ")");
  }
  need("router_scale [H]", router_scale.size(), H);
  need("router_proj [E, H]", router_proj.size(), E * H);
  need("per_expert_scale [E]", per_expert_scale.size(), E);
  need("w_gate [E, I, H]", w_gate.size(), E * I * H);
  need("w_up [E, I, H]", w_up.size(), E * I * H);
  need("w_down [E, H, I]", w_down.size(), E * H * I);
  for (std::int64_t e = 0; e < E; ++e) {
    const double s = per_expert_scale[static_cast<std::size_t>(e)];
    if (!std::isfinite(s)) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.9g", s);
      throw RoutingError("per_expert_scale[" + std::to_string(e) + "] is " + buf + " (scales must be finite)");
    }
  }
}

void moe_router_logits(const MoeWeights& w, const double* x, std::int64_t T, double* logits_out) {
  const std::int64_t H = w.H, E = w.E;
  std::vector<double> n(static_cast<std::size_t>(H));
  const double inv_sqrt_h = 1.0 / std::sqrt(static_cast<double>(H));
  for (std::int64_t t = 0; t < T; ++t) {
    const double* xt = x + t * H;
    double ss = 0.0;
    for (std::int64_t h = 0; h < H; ++h) ss += xt[h] * xt[h];
    const double inv_rms = 1.0 / std::sqrt(ss / static_cast<double>(H) + kRouterRmsEps);
    for (std::int64_t h = 0; h < H; ++h) {
      n[static_cast<std::size_t>(h)] = xt[h] * inv_rms * inv_sqrt_h * w.router_scale[static_cast<std::size_t>(h)];
    }
    for (std::int64_t e = 0; e < E; ++e) {
      const double* we = w.router_proj.data() + e * H;
      double acc = 0.0;
      for (std::int64_t h = 0; h < H; ++h) acc += n[static_cast<std::size_t>(h)] * we[h];
      logits_out[t * E + e] = acc;
    }
  }
}

void moe_expert_forward(const MoeWeights& w, std::int64_t e, const double* x, double* out) {
  const std::int64_t H = w.H, I = w.I;
  const double* g = w.w_gate.data() + e * I * H;
  const double* u = w.w_up.data() + e * I * H;
  const double* d = w.w_down.data() + e * H * I;
  std::vector<double> hid(static_cast<std::size_t>(I));
  for (std::int64_t i = 0; i < I; ++i) {
    double a = 0.0, b = 0.0;
    for (std::int64_t h = 0; h < H; ++h) {
      a += x[h] * g[i * H + h];
      b += x[h] * u[i * H + h];
    }
    hid[static_cast<std::size_t>(i)] = gelu_tanh(a) * b;
  }
  for (std::int64_t h = 0; h < H; ++h) {
    double acc = 0.0;
    for (std::int64_t i = 0; i < I; ++i) acc += hid[static_cast<std::size_t>(i)] * d[h * I + i];
    out[h] = acc;
  }
}

void moe_forward(const MoeWeights& w, const double* x, std::int64_t T, double* y, MoeTrace* trace) {
  w.check();
  if (T < 0) throw RoutingError("T must be >= 0 (got T = " + std::to_string(T) + ")");
  const std::int64_t H = w.H, E = w.E;
  const int k = w.k;
  std::vector<double> logits(static_cast<std::size_t>(T * E));
  moe_router_logits(w, x, T, logits.data());
  // gemma4 routing: renormalised top-k without the scale, then x per_expert_scale in fp64
  // (RoutingParams carries fp32 scales; the layer's scale is fp64).
  RoutingParams p;
  p.family = Family::softmax_topk;
  p.k = k;
  std::vector<double> rw(static_cast<std::size_t>(T * k));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
  std::vector<double> out(static_cast<std::size_t>(H));
  for (std::int64_t t = 0; t < T; ++t) {
    double* wt = rw.data() + t * k;
    std::int32_t* it = ids.data() + t * k;
    route_row_reference(logits.data() + t * E, E, p, wt, it);
    for (int j = 0; j < k; ++j) wt[j] *= w.per_expert_scale[static_cast<std::size_t>(it[j])];
    double* yt = y + t * H;
    for (std::int64_t h = 0; h < H; ++h) yt[h] = 0.0;
    for (int j = 0; j < k; ++j) {
      moe_expert_forward(w, it[j], x + t * H, out.data());
      for (std::int64_t h = 0; h < H; ++h) yt[h] += wt[j] * out[static_cast<std::size_t>(h)];
    }
  }
  if (trace) {
    trace->logits = std::move(logits);
    trace->weights = std::move(rw);
    trace->ids = std::move(ids);
  }
}

}  // namespace moecheck
