// moecheck MoE module, routing backends and the substitution vocabulary.
#include "harness/torch/moe_module.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "harness/torch/dtype.hpp"
#include "harness/torch/functional_call.hpp"
#include "reference/routing.hpp"

// The fused kernels' LibTorch glue is its own target (moecheck::kernels_torch), which gives
// its consumers MOECHECK_HAVE_KERNELS_TORCH=1. A build that does not link it compiles the
// fused backend out: fused_backend_available() is false and route_fused throws.
#if !defined(MOECHECK_HAVE_KERNELS_TORCH)
#define MOECHECK_HAVE_KERNELS_TORCH 0
#endif
#if MOECHECK_HAVE_KERNELS_TORCH
#include "kernels/torch_ops.hpp"
#endif

namespace moecheck::harness {

// ---------------------------------------------------------------------------------------
// Vocabulary.
// ---------------------------------------------------------------------------------------
namespace {
std::string normalized(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '-') c = '_';
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}
}  // namespace

const char* substitution_mode_name(SubstitutionMode m) {
  switch (m) {
    case SubstitutionMode::rebind: return "rebind";
    case SubstitutionMode::in_place: return "in_place";
    case SubstitutionMode::copy_into: return "copy_into";
  }
  return "?";
}

bool parse_substitution_mode(std::string_view s, SubstitutionMode* out) {
  const std::string n = normalized(s);
  for (SubstitutionMode m : all_substitution_modes()) {
    if (n == substitution_mode_name(m)) {
      *out = m;
      return true;
    }
  }
  return false;
}

bool parse_substitution_modes(std::string_view s, std::vector<SubstitutionMode>* out) {
  const std::string n = normalized(s);
  if (n == "both") {
    *out = {SubstitutionMode::rebind, SubstitutionMode::in_place};
    return true;
  }
  if (n == "all") {
    *out = all_substitution_modes();
    return true;
  }
  std::vector<SubstitutionMode> modes;
  std::size_t start = 0;
  while (start <= n.size()) {
    std::size_t comma = n.find(',', start);
    if (comma == std::string::npos) comma = n.size();
    SubstitutionMode m;
    if (!parse_substitution_mode(std::string_view(n).substr(start, comma - start), &m)) return false;
    modes.push_back(m);
    start = comma + 1;
  }
  *out = modes;
  return true;
}

std::vector<SubstitutionMode> all_substitution_modes() {
  return {SubstitutionMode::rebind, SubstitutionMode::in_place, SubstitutionMode::copy_into};
}

const char* module_variant_name(ModuleVariant v) {
  switch (v) {
    case ModuleVariant::correct: return "correct";
    case ModuleVariant::capture_handle: return "capture_handle";
    case ModuleVariant::capture_copy: return "capture_copy";
    case ModuleVariant::cache_data_ptr: return "cache_data_ptr";
    case ModuleVariant::scale_by_slot: return "scale_by_slot";
  }
  return "?";
}

bool parse_module_variant(std::string_view s, ModuleVariant* out) {
  const std::string n = normalized(s);
  for (ModuleVariant v : all_module_variants()) {
    if (n == module_variant_name(v)) {
      *out = v;
      return true;
    }
  }
  return false;
}

std::vector<ModuleVariant> all_module_variants() {
  return {ModuleVariant::correct, ModuleVariant::capture_handle, ModuleVariant::capture_copy,
          ModuleVariant::cache_data_ptr, ModuleVariant::scale_by_slot};
}

bool variant_caught_by(ModuleVariant v, SubstitutionMode m) {
  switch (v) {
    case ModuleVariant::correct: return false;
    case ModuleVariant::capture_handle: return m == SubstitutionMode::rebind;
    case ModuleVariant::capture_copy: return true;
    case ModuleVariant::cache_data_ptr: return m != SubstitutionMode::copy_into;
    case ModuleVariant::scale_by_slot: return true;
  }
  return false;
}

const char* routing_backend_name(RoutingBackend b) {
  switch (b) {
    case RoutingBackend::composite: return "composite";
    case RoutingBackend::reference: return "reference";
    case RoutingBackend::fused: return "fused";
  }
  return "?";
}

bool parse_routing_backend(std::string_view s, RoutingBackend* out) {
  const std::string n = normalized(s);
  for (RoutingBackend b : {RoutingBackend::composite, RoutingBackend::reference, RoutingBackend::fused}) {
    if (n == routing_backend_name(b)) {
      *out = b;
      return true;
    }
  }
  return false;
}

bool fused_backend_available() { return MOECHECK_HAVE_KERNELS_TORCH != 0; }

const char* torch_dtype_name(torch::Dtype d) {
  moecheck::DType r;
  if (dtype_of(d, &r)) return moecheck::dtype_name(r);
  throw std::invalid_argument(std::string("unsupported module dtype ") + c10::toString(d) +
                              " (f32, f16 or bf16)");
}

bool parse_torch_dtype(const std::string& s, torch::Dtype* out) {
  moecheck::DType d;
  if (!moecheck::parse_dtype(s, &d)) return false;
  *out = torch_dtype(d);
  return true;
}

// ---------------------------------------------------------------------------------------
// Routing backends.
// ---------------------------------------------------------------------------------------
namespace {

moecheck::DType gating_dtype(torch::Dtype d) {
  moecheck::DType r;
  if (dtype_of(d, &r)) return r;
  throw std::invalid_argument(std::string("route_logits: logits dtype ") + c10::toString(d) +
                              " is not f32, f16 or bf16");
}

Routing route_composite(const torch::Tensor& logits, std::int64_t k, const torch::Tensor& scale,
                        bool scale_by_slot) {
  // Selection on the logits themselves (exact comparisons in their dtype), probabilities
  // from an fp32 softmax over all E experts.
  torch::Tensor ids = std::get<1>(logits.topk(k, /*dim=*/-1, /*largest=*/true, /*sorted=*/true));
  torch::Tensor probs = torch::softmax(logits.to(torch::kFloat), -1);
  torch::Tensor picked = probs.gather(1, ids);
  torch::Tensor denom = picked.sum(-1, /*keepdim=*/true);
  denom = torch::where(denom == 0, torch::ones_like(denom), denom);  // zero-sum guard
  torch::Tensor w = picked / denom;
  torch::Tensor s = scale.to(torch::kFloat);
  if (scale_by_slot) {
    w = w * s.slice(0, 0, k).unsqueeze(0);
  } else {
    w = w * s.index_select(0, ids.reshape({-1})).view_as(ids);
  }
  return {w.contiguous(), ids.to(torch::kInt).contiguous()};
}

Routing route_ref(const torch::Tensor& logits, std::int64_t k, const torch::Tensor& scale,
                  bool scale_by_slot) {
  const torch::Tensor lc = logits.detach().to(torch::kCPU).contiguous();
  const torch::Tensor sc = scale.detach().to(torch::kCPU, torch::kFloat).contiguous();
  const std::int64_t T = lc.size(0), E = lc.size(1);
  moecheck::GatingView g;
  g.data = T > 0 ? lc.data_ptr() : nullptr;
  g.dtype = gating_dtype(lc.scalar_type());
  g.T = T;
  g.E = E;
  g.row_stride = E;
  g.col_stride = 1;
  moecheck::RoutingParams p;
  p.family = moecheck::Family::gemma4;
  p.k = static_cast<int>(k);
  const float* s = sc.data_ptr<float>();
  p.scale = scale_by_slot ? nullptr : s;
  std::vector<double> w(static_cast<std::size_t>(T * k));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
  moecheck::route_reference(g, p, w.data(), ids.data());
  torch::Tensor wt = torch::empty({T, k}, torch::kFloat);
  torch::Tensor it = torch::empty({T, k}, torch::kInt);
  float* wp = wt.data_ptr<float>();
  std::int32_t* ip = it.data_ptr<std::int32_t>();
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t j = 0; j < k; ++j) {
      const std::size_t o = static_cast<std::size_t>(t * k + j);
      double v = w[o];
      if (scale_by_slot) v *= static_cast<double>(s[j]);
      wp[o] = static_cast<float>(v);
      ip[o] = ids[o];
    }
  }
  return {wt.to(logits.device()), it.to(logits.device())};
}

Routing route_fused(const torch::Tensor& logits, std::int64_t k, const torch::Tensor& scale,
                    bool scale_by_slot) {
#if MOECHECK_HAVE_KERNELS_TORCH
  const torch::Tensor s = scale.detach().to(torch::kFloat).contiguous();
  const torch::Tensor unit = torch::ones_like(s);
  auto [w, ids] = moecheck::kernels::fused_routing(
      logits.detach(), k, scale_by_slot ? unit : s, moecheck::kernels::KernelFamily::gemma4,
      moecheck::kernels::Variant::automatic, moecheck::kernels::Mutant::none);
  if (scale_by_slot) w = w * s.slice(0, 0, k).unsqueeze(0);
  return {w.contiguous(), ids.contiguous()};
#else
  (void)logits, (void)k, (void)scale, (void)scale_by_slot;
  throw std::invalid_argument(
      "routing backend 'fused' is not available: this build does not link the fused kernels' "
      "LibTorch glue (kernels/torch_ops.hpp)");
#endif
}

}  // namespace

Routing route_logits(const torch::Tensor& logits, std::int64_t k, const torch::Tensor& scale,
                     RoutingBackend backend, bool scale_by_slot) {
  if (!logits.defined() || logits.dim() != 2) {
    throw std::invalid_argument("route_logits: logits must be a 2-D tensor [T, E]");
  }
  const std::int64_t E = logits.size(1);
  if (E < 1) throw std::invalid_argument("route_logits: E must be >= 1");
  if (k < 1 || k > E) {
    throw std::invalid_argument("route_logits: k = " + std::to_string(k) + " is outside [1, E = " +
                                std::to_string(E) + "]");
  }
  if (!scale.defined() || scale.dim() != 1 || scale.size(0) != E) {
    throw std::invalid_argument("route_logits: scale must have shape [E = " + std::to_string(E) + "]");
  }
  if (scale.device() != logits.device() && backend == RoutingBackend::composite) {
    throw std::invalid_argument("route_logits: scale lives on " + scale.device().str() +
                                " but logits on " + logits.device().str());
  }
  switch (backend) {
    case RoutingBackend::composite: return route_composite(logits, k, scale, scale_by_slot);
    case RoutingBackend::reference: return route_ref(logits, k, scale, scale_by_slot);
    case RoutingBackend::fused: return route_fused(logits, k, scale, scale_by_slot);
  }
  throw std::invalid_argument("route_logits: unknown backend");
}

// ---------------------------------------------------------------------------------------
// Module.
// ---------------------------------------------------------------------------------------
namespace {

/// The tensor registered as `name` on `m`, read now (never cached).
const torch::Tensor& slot(torch::nn::Module& m, const char* name) {
  const torch::Tensor* t = registered_tensor(m, name);
  TORCH_CHECK(t != nullptr && t->defined(), "moecheck MoE module: no tensor registered as '", name, "'");
  return *t;
}

/// Initial values: a normal(0, std) draw from a CPU generator seeded by (seed, stream),
/// rounded to the dtype, then moved to the device (the same values on every device).
torch::Tensor init_normal(const MoeConfig& cfg, std::uint64_t stream, c10::IntArrayRef shape,
                          double std) {
  auto gen = at::detail::createCPUGenerator(cfg.seed * 0x9E3779B97F4A7C15ull + stream);
  torch::Tensor t = torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kDouble)) * std;
  return t.to(cfg.dtype).to(cfg.device);
}

}  // namespace

void MoeConfig::validate() const {
  auto bad = [](const std::string& m) { throw std::invalid_argument("MoeConfig: " + m); };
  if (num_experts < 1) bad("num_experts (E) = " + std::to_string(num_experts) + " must be >= 1");
  if (top_k < 1 || top_k > num_experts) {
    bad("top_k (k) = " + std::to_string(top_k) + " must be in [1, E = " + std::to_string(num_experts) + "]");
  }
  if (hidden < 1) bad("hidden (H) = " + std::to_string(hidden) + " must be >= 1");
  if (intermediate < 1) bad("intermediate (I) = " + std::to_string(intermediate) + " must be >= 1");
  if (moecheck::DType d; !dtype_of(dtype, &d)) {
    bad(std::string("dtype ") + c10::toString(dtype) + " is not f32, f16 or bf16");
  }
  if (!(eps >= 0.0) || !std::isfinite(eps)) bad("eps must be finite and >= 0");
  if (backend == RoutingBackend::fused && !fused_backend_available()) {
    bad("backend 'fused' is not available in this build");
  }
}

std::string MoeConfig::str() const {
  std::ostringstream os;
  os << "E=" << num_experts << " k=" << top_k << " H=" << hidden << " I=" << intermediate
     << " dtype=" << torch_dtype_name(dtype) << " device=" << device.str()
     << " backend=" << routing_backend_name(backend) << " variant=" << module_variant_name(variant)
     << (tie_gate_up ? " tie_gate_up" : "") << " seed=" << seed;
  return os.str();
}

RmsNormImpl::RmsNormImpl(double eps, torch::Device device) {
  // fp64 so the default is exactly the reference's kRouterRmsEps; the sum with the fp32
  // statistic stays fp32 (a 0-dim tensor does not promote).
  register_buffer("eps", torch::full({}, eps, torch::TensorOptions().dtype(torch::kDouble).device(device)));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  const torch::Tensor xf = x.to(torch::kFloat);
  const torch::Tensor ms = (xf * xf).mean(-1, /*keepdim=*/true);
  return (xf * torch::rsqrt(ms + slot(*this, "eps"))).to(x.scalar_type());
}

RouterImpl::RouterImpl(const MoeConfig& cfg)
    : root_size_(1.0 / std::sqrt(static_cast<double>(cfg.hidden))) {
  const auto opts = torch::TensorOptions().dtype(cfg.dtype).device(cfg.device);
  register_parameter("scale", torch::ones({cfg.hidden}, opts));
  register_parameter("proj", init_normal(cfg, 1, {cfg.num_experts, cfg.hidden}, 1.0));
  norm_ = register_module("norm", RmsNorm(cfg.eps, cfg.device));
}

torch::Tensor RouterImpl::forward(const torch::Tensor& x) {
  torch::Tensor n = norm_->forward(x);
  n = n * root_size_;
  n = n * slot(*this, "scale");
  return n.matmul(slot(*this, "proj").t());
}

ExpertsImpl::ExpertsImpl(const MoeConfig& cfg, RoutingFn routing)
    : num_experts_(cfg.num_experts), routing_(std::move(routing)) {
  const double in_std = 1.0 / std::sqrt(static_cast<double>(cfg.hidden));
  const double mid_std = 1.0 / std::sqrt(static_cast<double>(cfg.intermediate));
  const torch::Tensor& gate =
      register_parameter("gate_proj", init_normal(cfg, 2, {cfg.num_experts, cfg.intermediate, cfg.hidden}, in_std));
  if (cfg.tie_gate_up) {
    register_parameter("up_proj", gate);  // the same tensor object under a second name
  } else {
    register_parameter("up_proj", init_normal(cfg, 3, {cfg.num_experts, cfg.intermediate, cfg.hidden}, in_std));
  }
  register_parameter("down_proj",
                     init_normal(cfg, 4, {cfg.num_experts, cfg.hidden, cfg.intermediate}, mid_std));
}

torch::Tensor ExpertsImpl::forward(const torch::Tensor& x, const torch::Tensor& logits,
                                   Routing* routing_out) {
  TORCH_CHECK(x.dim() == 2 && logits.dim() == 2 && logits.size(0) == x.size(0),
              "Experts: x must be [T, H] and logits [T, E]");
  Routing r = routing_(logits);
  const std::int64_t T = x.size(0);
  TORCH_CHECK(r.weights.dim() == 2 && r.weights.size(0) == T && r.ids.sizes() == r.weights.sizes(),
              "Experts: the routing callable returned weights ", r.weights.sizes(), " and ids ",
              r.ids.sizes(), " for ", T, " tokens");
  const torch::Tensor& gate = slot(*this, "gate_proj");
  const torch::Tensor& up = slot(*this, "up_proj");
  const torch::Tensor& down = slot(*this, "down_proj");
  torch::Tensor acc = torch::zeros({T, x.size(1)}, x.options().dtype(torch::kFloat));
  const torch::Tensor ids = r.ids.to(torch::kLong);
  for (std::int64_t e = 0; e < num_experts_ && T > 0; ++e) {
    const torch::Tensor hit = (ids == e).nonzero();  // [n, 2]: (token, slot)
    if (hit.size(0) == 0) continue;
    const torch::Tensor tok = hit.select(1, 0);
    const torch::Tensor pos = hit.select(1, 1);
    const torch::Tensor xe = x.index_select(0, tok);
    const torch::Tensor g = xe.matmul(gate[e].t());
    const torch::Tensor u = xe.matmul(up[e].t());
    const torch::Tensor h = torch::gelu(g, "tanh") * u;
    const torch::Tensor y = h.matmul(down[e].t());
    const torch::Tensor w = r.weights.index({tok, pos});
    acc.index_add_(0, tok, y.to(torch::kFloat) * w.unsqueeze(1));
  }
  if (routing_out) *routing_out = r;
  return acc.to(x.scalar_type());
}

MoeLayerImpl::MoeLayerImpl(const MoeConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  register_parameter("per_expert_scale",
                     torch::ones({cfg_.num_experts}, torch::TensorOptions().dtype(cfg_.dtype).device(cfg_.device)));
  router_ = register_module("router", Router(cfg_));
  experts_ = register_module("experts", Experts(cfg_, make_routing_fn()));
}

RoutingFn MoeLayerImpl::make_routing_fn() {
  const std::int64_t k = cfg_.top_k;
  const RoutingBackend backend = cfg_.backend;
  switch (cfg_.variant) {
    case ModuleVariant::correct:
      // Looks the parameter up at every call: sees every substitution.
      return [this, k, backend](const torch::Tensor& logits) {
        return route_logits(logits, k, slot(*this, "per_expert_scale"), backend);
      };
    case ModuleVariant::capture_handle: {
      // The original bug: the closure owns a handle to the tensor object of construction time.
      torch::Tensor captured = slot(*this, "per_expert_scale");
      return [captured, k, backend](const torch::Tensor& logits) {
        return route_logits(logits, k, captured, backend);
      };
    }
    case ModuleVariant::capture_copy: {
      // A converted, contiguous private copy (forced to copy even when already fp32; the
      // realistic `.to(kFloat).contiguous()` aliases in fp32 and degrades to capture_handle).
      torch::Tensor captured =
          slot(*this, "per_expert_scale").detach().to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
      return [captured, k, backend](const torch::Tensor& logits) {
        return route_logits(logits, k, captured, backend);
      };
    }
    case ModuleVariant::cache_data_ptr: {
      // A raw pointer into the storage of construction time, re-wrapped at each call.
      const torch::Tensor& s = slot(*this, "per_expert_scale");
      void* data = s.data_ptr();
      const auto opts = torch::TensorOptions().dtype(s.scalar_type()).device(s.device());
      const std::int64_t E = s.numel();
      return [data, opts, E, k, backend](const torch::Tensor& logits) {
        return route_logits(logits, k, torch::from_blob(data, {E}, opts), backend);
      };
    }
    case ModuleVariant::scale_by_slot:
      return [this, k, backend](const torch::Tensor& logits) {
        return route_logits(logits, k, slot(*this, "per_expert_scale"), backend, /*scale_by_slot=*/true);
      };
  }
  throw std::invalid_argument("MoeLayer: unknown variant");
}

MoeForward MoeLayerImpl::forward_detailed(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == cfg_.hidden, "MoeLayer: x must be [..., H = ", cfg_.hidden,
              "], got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == cfg_.dtype, "MoeLayer: x has dtype ", x.scalar_type(),
              " but the module ", c10::toString(cfg_.dtype));
  const torch::Tensor x2 = x.reshape({-1, cfg_.hidden});
  MoeForward f;
  f.logits = router_->forward(x2);
  torch::Tensor out = experts_->forward(x2, f.logits, &f.routing);
  f.out = out.reshape(x.sizes());
  return f;
}

torch::Tensor MoeLayerImpl::forward(const torch::Tensor& x) { return forward_detailed(x).out; }

std::vector<std::string> moe_tensor_names() {
  return {"per_expert_scale", "router.scale",     "router.proj",    "experts.gate_proj",
          "experts.up_proj",  "experts.down_proj", "router.norm.eps"};
}

}  // namespace moecheck::harness
