// moecheck fp64 MoE forward reference. See moe_reference.hpp for the error model.
#include "harness/torch/moe_reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "harness/torch/dtype.hpp"
#include "harness/torch/functional_call.hpp"
#include "reference/moe.hpp"
#include "reference/oracle.hpp"

namespace moecheck::harness {

namespace {

constexpr double kU32 = 0x1p-24;
/// Largest slope of gelu_tanh (attained near x = 1.5; 1.1289...).
constexpr double kGeluMaxSlope = 1.13;

double gamma_n(double n, double u) {
  const double nu = n * u;
  return nu < 0.5 ? nu / (1.0 - nu) : 2.0 * nu;
}

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

bool within(double got, double want, double tol) {
  if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want);
  if (std::isinf(got) || std::isinf(want)) return got == want;
  return std::fabs(got - want) <= tol;
}

void expect_size(const std::vector<double>& v, std::int64_t n, const char* what) {
  if (static_cast<std::int64_t>(v.size()) != n) {
    throw std::invalid_argument(std::string("moe_reference_forward: ") + what + " has " +
                                std::to_string(v.size()) + " values, expected " + std::to_string(n));
  }
}

}  // namespace

double reference_tolerance(double err_bound) { return 2.0 * err_bound + 1e-30; }

MoeReferenceResult moe_reference_forward(const MoeDims& d, const MoeState& s,
                                         const std::vector<double>& x, DType dtype,
                                         const std::int32_t* given_ids) {
  const std::int64_t E = d.E, k = d.k, H = d.H, I = d.I, T = d.T;
  if (E < 1 || k < 1 || k > E || H < 1 || I < 1 || T < 0) {
    throw std::invalid_argument("moe_reference_forward: bad sizes");
  }
  expect_size(s.per_expert_scale, E, "per_expert_scale");
  expect_size(s.router_scale, H, "router.scale");
  expect_size(s.proj, E * H, "router.proj");
  expect_size(s.gate, E * I * H, "experts.gate_proj");
  expect_size(s.up, E * I * H, "experts.up_proj");
  expect_size(s.down, E * H * I, "experts.down_proj");
  expect_size(x, T * H, "x");
  const double ud = dtype_unit_roundoff(dtype);

  // Values come from the project's fp64 reference (reference/moe.hpp, reference/oracle.hpp);
  // the loops below add the error bounds, which need the magnitudes of every partial sum.
  MoeWeights mw;
  mw.H = H, mw.I = I, mw.E = E, mw.k = static_cast<int>(k);
  mw.router_scale = s.router_scale;
  mw.router_proj = s.proj;
  mw.per_expert_scale = s.per_expert_scale;
  mw.w_gate = s.gate;
  mw.w_up = s.up;
  mw.w_down = s.down;
  const bool shared_router = s.eps == kRouterRmsEps;

  MoeReferenceResult r;
  r.logits.assign(T * E, 0.0);
  r.logits_err.assign(T * E, 0.0);
  r.ids.assign(T * k, 0);
  r.weights.assign(T * k, 0.0);
  r.weights_err.assign(T * k, 0.0);
  r.out.assign(T * H, 0.0);
  r.out_err.assign(T * H, 0.0);

  const double root_size = 1.0 / std::sqrt(static_cast<double>(H));
  const double xn_rel = (H + 8) * kU32 + 3 * ud;
  std::vector<double> xn(H), g(I), gerr(I), u(I), uerr(I), hid(I), hid_err(I), y(H), yerr(H), yref(H);
  if (shared_router && T > 0) moe_router_logits(mw, x.data(), T, r.logits.data());

  for (std::int64_t t = 0; t < T; ++t) {
    const double* xt = &x[t * H];
    // Router.
    double ms = 0.0;
    for (std::int64_t h = 0; h < H; ++h) ms += xt[h] * xt[h];
    ms /= static_cast<double>(H);
    const double rs = 1.0 / std::sqrt(ms + s.eps);
    for (std::int64_t h = 0; h < H; ++h) xn[h] = xt[h] * rs * root_size * s.router_scale[h];
    double max_lerr = 0.0;
    for (std::int64_t e = 0; e < E; ++e) {
      double acc = 0.0, mag = 0.0;
      for (std::int64_t h = 0; h < H; ++h) {
        acc += s.proj[e * H + h] * xn[h];
        mag += std::fabs(s.proj[e * H + h] * xn[h]);
      }
      if (!shared_router) r.logits[t * E + e] = acc;  // eps substituted: moe.hpp fixes eps
      const double err = (xn_rel + gamma_n(H, ud)) * mag + ud * std::fabs(acc);
      r.logits_err[t * E + e] = err;
      max_lerr = std::max(max_lerr, err);
    }
    const double* lt = &r.logits[t * E];

    // Reference selection: descending logit, ties to the lower index.
    std::vector<std::int32_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
      const double la = std::isnan(lt[a]) ? -INFINITY : lt[a];
      const double lb = std::isnan(lt[b]) ? -INFINITY : lt[b];
      return la > lb;
    });
    std::int32_t* ids = &r.ids[t * k];
    std::copy(order.begin(), order.begin() + k, ids);

    if (given_ids != nullptr) {
      const std::int32_t* gi = &given_ids[t * k];
      const double vk = lt[order[k - 1]];
      const double band = 2.0 * max_lerr;
      std::string problem;
      std::vector<char> chosen(E, 0);
      for (std::int64_t j = 0; j < k && problem.empty(); ++j) {
        if (gi[j] < 0 || gi[j] >= E) {
          problem = "slot " + std::to_string(j) + " holds expert id " + std::to_string(gi[j]) +
                    " outside [0, " + std::to_string(E) + ")";
        } else if (chosen[gi[j]]) {
          problem = "expert " + std::to_string(gi[j]) + " selected twice";
        } else {
          chosen[gi[j]] = 1;
        }
      }
      for (std::int64_t e = 0; e < E && problem.empty(); ++e) {
        if (chosen[e] && lt[e] < vk - band) {
          problem = "selected expert " + std::to_string(e) + " has reference logit " + fmt(lt[e]) +
                    " below the k-th largest " + fmt(vk) + " by more than the band " + fmt(band);
        } else if (!chosen[e] && lt[e] > vk + band) {
          problem = "unselected expert " + std::to_string(e) + " has reference logit " + fmt(lt[e]) +
                    " above the k-th largest " + fmt(vk) + " by more than the band " + fmt(band);
        }
      }
      if (problem.empty()) {
        std::copy(gi, gi + k, ids);
      } else if (r.selection_problem.empty()) {
        r.selection_problem = "row " + std::to_string(t) + ": " + problem;
      }
    }

    // Routing weights: softmax over the selected logits, x per_expert_scale[id].
    // Renormalised softmax over the selected experts, then x per_expert_scale[id] in fp64
    // (as moe_forward does).
    RoutingParams rp;
    rp.family = Family::softmax_topk;
    rp.k = static_cast<int>(k);
    std::vector<double> p(k);
    reference_weights_for_ids(lt, E, rp, ids, p.data());
    const double wrel = std::expm1(2.0 * max_lerr) + (E + k + 8) * kU32;
    for (std::int64_t j = 0; j < k; ++j) {
      const double sc = s.per_expert_scale[ids[j]];
      const double w = p[j] * sc;
      r.weights[t * k + j] = w;
      r.weights_err[t * k + j] = std::fabs(sc) * (p[j] * wrel + 0x1p-126 * (E + k)) + kU32 * std::fabs(w);
    }

    // Experts and combine.
    double* ot = &r.out[t * H];
    double* oerr = &r.out_err[t * H];
    std::vector<double> wy_mag(H, 0.0);
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t e = ids[j];
      for (std::int64_t i = 0; i < I; ++i) {
        double ga = 0.0, gm = 0.0, ua = 0.0, um = 0.0;
        for (std::int64_t h = 0; h < H; ++h) {
          const double gv = s.gate[(e * I + i) * H + h] * xt[h];
          const double uv = s.up[(e * I + i) * H + h] * xt[h];
          ga += gv, gm += std::fabs(gv), ua += uv, um += std::fabs(uv);
        }
        g[i] = ga, u[i] = ua;
        gerr[i] = gamma_n(H, ud) * gm + ud * std::fabs(ga);
        uerr[i] = gamma_n(H, ud) * um + ud * std::fabs(ua);
        const double act = gelu_tanh(ga);
        const double act_err = kGeluMaxSlope * gerr[i] + 8 * kU32 * std::fabs(ga) + ud * std::fabs(act);
        hid[i] = act * ua;
        hid_err[i] = std::fabs(act) * uerr[i] + std::fabs(ua) * act_err + act_err * uerr[i] +
                     ud * std::fabs(hid[i]);
      }
      for (std::int64_t h = 0; h < H; ++h) {
        double ya = 0.0, ym = 0.0, yprop = 0.0;
        for (std::int64_t i = 0; i < I; ++i) {
          const double dv = s.down[(e * H + h) * I + i];
          ya += dv * hid[i];
          ym += std::fabs(dv * hid[i]);
          yprop += std::fabs(dv) * hid_err[i];
        }
        y[h] = ya;
        yerr[h] = gamma_n(I, ud) * ym + yprop + ud * std::fabs(ya);
      }
      const double w = r.weights[t * k + j];
      const double werr = r.weights_err[t * k + j];
      moe_expert_forward(mw, e, xt, yref.data());
      for (std::int64_t h = 0; h < H; ++h) {
        ot[h] += w * yref[h];
        oerr[h] += std::fabs(w) * yerr[h] + werr * std::fabs(y[h]) + werr * yerr[h];
        wy_mag[h] += std::fabs(w * y[h]);
      }
    }
    for (std::int64_t h = 0; h < H; ++h) {
      oerr[h] += gamma_n(k + 1, kU32) * wy_mag[h] + ud * std::fabs(ot[h]);
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// LibTorch glue.
// ---------------------------------------------------------------------------------------
std::vector<double> tensor_to_doubles(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const double* p = c.data_ptr<double>();
  return std::vector<double>(p, p + c.numel());
}

DType reference_dtype(torch::Dtype d) {
  DType r;
  if (dtype_of(d, &r)) return r;
  throw std::invalid_argument(std::string("no reference dtype for ") + c10::toString(d));
}

std::map<std::string, torch::Tensor> moe_named_tensors(MoeLayerImpl& module) {
  std::map<std::string, torch::Tensor> named;
  for (const SlotInfo& s : list_slots(module)) named.emplace(s.name, s.tensor);
  return named;
}

MoeState moe_state_from(const MoeConfig& cfg, const std::map<std::string, torch::Tensor>& named) {
  auto get = [&](const char* name, std::vector<std::int64_t> shape) {
    auto it = named.find(name);
    if (it == named.end() || !it->second.defined()) {
      throw std::invalid_argument(std::string("moe_state_from: no tensor '") + name + "'");
    }
    if (it->second.sizes() != c10::IntArrayRef(shape)) {
      std::ostringstream os;
      os << "moe_state_from: '" << name << "' has shape " << it->second.sizes();
      throw std::invalid_argument(os.str());
    }
    return tensor_to_doubles(it->second);
  };
  const std::int64_t E = cfg.num_experts, H = cfg.hidden, I = cfg.intermediate;
  MoeState s;
  s.per_expert_scale = get("per_expert_scale", {E});
  s.router_scale = get("router.scale", {H});
  s.proj = get("router.proj", {E, H});
  s.eps = get("router.norm.eps", {})[0];
  s.gate = get("experts.gate_proj", {E, I, H});
  s.up = get("experts.up_proj", {E, I, H});
  s.down = get("experts.down_proj", {E, H, I});
  return s;
}

std::string compare_forward_with_reference(const MoeConfig& cfg, const MoeForward& got,
                                           const torch::Tensor& x,
                                           const std::map<std::string, torch::Tensor>& named) {
  MoeDims d;
  d.E = cfg.num_experts, d.k = cfg.top_k, d.H = cfg.hidden, d.I = cfg.intermediate;
  d.T = x.numel() / cfg.hidden;
  const std::vector<double> xv = tensor_to_doubles(x);
  const torch::Tensor ids_t = got.routing.ids.detach().to(torch::kCPU, torch::kInt).contiguous();
  if (ids_t.numel() != d.T * d.k) return "routing: ids have " + std::to_string(ids_t.numel()) + " entries";
  const std::vector<std::int32_t> ids(ids_t.data_ptr<std::int32_t>(),
                                      ids_t.data_ptr<std::int32_t>() + ids_t.numel());
  const MoeReferenceResult ref =
      moe_reference_forward(d, moe_state_from(cfg, named), xv, reference_dtype(cfg.dtype), ids.data());
  if (!ref.selection_problem.empty()) return "selection: " + ref.selection_problem;

  const std::vector<double> logits = tensor_to_doubles(got.logits);
  const std::vector<double> weights = tensor_to_doubles(got.routing.weights);
  const std::vector<double> out = tensor_to_doubles(got.out);
  auto check = [&](const char* stage, const char* col, std::int64_t cols, const std::vector<double>& g,
                   const std::vector<double>& want, const std::vector<double>& err) -> std::string {
    if (g.size() != want.size()) {
      return std::string(stage) + ": " + std::to_string(g.size()) + " values, expected " +
             std::to_string(want.size());
    }
    for (std::size_t i = 0; i < g.size(); ++i) {
      const double tol = reference_tolerance(err[i]);
      if (!within(g[i], want[i], tol)) {
        std::ostringstream os;
        os << stage << "[row " << static_cast<std::int64_t>(i) / cols << ", " << col << ' '
           << static_cast<std::int64_t>(i) % cols;
        if (std::string(stage) == "weights") os << " (expert " << ids[i] << ')';
        os << "]: got " << fmt(g[i]) << ", reference " << fmt(want[i]) << ", |diff| "
           << fmt(std::fabs(g[i] - want[i])) << " > tolerance " << fmt(tol);
        return os.str();
      }
    }
    return "";
  };
  std::string msg = check("logits", "expert", d.E, logits, ref.logits, ref.logits_err);
  if (msg.empty()) msg = check("weights", "slot", d.k, weights, ref.weights, ref.weights_err);
  if (msg.empty()) msg = check("out", "column", d.H, out, ref.out, ref.out_err);
  return msg;
}

}  // namespace moecheck::harness
