#include "harness/torch/torch_targets.hpp"

#include <torch/torch.h>

#include <limits>
#include <stdexcept>

#include "harness/torch/dtype.hpp"

namespace moecheck {
namespace {

/// Composite routing with LibTorch ops, following reference/EDGE_CASES.md:
/// NaN logits rank as -inf and carry no mass, +inf logits share the mass, an all-masked row gets
/// zero weights (zero-sum rule), ties resolved by torch.topk (the oracle is tie-aware).
std::tuple<at::Tensor, at::Tensor> composite_route(const at::Tensor& g, int64_t k, const at::Tensor& scale,
                                                  Family family) {
  const float inf = std::numeric_limits<float>::infinity();
  at::Tensor key = g.to(at::kFloat);
  key = at::where(at::isnan(key), at::full({}, -inf, key.options()), key);
  auto [top, ids] = at::topk(key, k, /*dim=*/-1, /*largest=*/true, /*sorted=*/true);
  auto masked_exp = [&](const at::Tensor& x, const at::Tensor& m) {
    // exp(x - m) with the limit rules: m = +inf -> indicator of x == +inf; m = -inf -> 0.
    at::Tensor finite_m = at::where(at::isfinite(m), m, at::zeros_like(m));
    at::Tensor e = at::exp(x - finite_m);
    e = at::where(m == inf, (x == inf).to(at::kFloat), e);
    e = at::where(m == -inf, at::zeros_like(e), e);
    return e;
  };
  at::Tensor w;
  if (family == Family::sigmoid_top1) {
    w = at::sigmoid(top);
  } else if (family == Family::softmax_topk_raw) {
    at::Tensor m = std::get<0>(key.max(-1, /*keepdim=*/true));
    at::Tensor e = masked_exp(key, m);
    at::Tensor z = e.sum(-1, true);
    at::Tensor p = e / at::where(z > 0, z, at::ones_like(z));
    w = p.gather(1, ids);
  } else {
    at::Tensor m = top.narrow(1, 0, 1);
    at::Tensor e = masked_exp(top, m);
    at::Tensor z = e.sum(-1, true);
    w = e / at::where(z > 0, z, at::ones_like(z));
  }
  if (family == Family::gemma4 && scale.defined()) w = w * scale.index_select(0, ids.reshape({-1})).reshape(ids.sizes());
  return {w.contiguous(), ids.to(at::kInt).contiguous()};
}

class CompositeTarget final : public Target {
 public:
  explicit CompositeTarget(bool cuda) : cuda_(cuda) {}
  std::string spec() const override { return cuda_ ? "composite:cuda" : "composite"; }
  std::string device() const override { return cuda_ ? "cuda" : "cpu"; }
  std::string unsupported(const RoutingCase& c) const override {
    if (c.family == Family::sigmoid_grouped) return "no composite path for sigmoid_grouped";
    return {};
  }
  Domain domain() const override {
    Domain d;
    d.families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw, Family::sigmoid_top1};
    return d;
  }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    const auto& v = m.view;
    const auto& p = m.params;
    // Reject what the reference rejects, with the reference's own message.
    try {
      validate_routing(v, p);
    } catch (const RoutingError& e) {
      return {RunOutcome::Status::rejected, e.what()};
    }
    if (v.T == 0) return {};
    torch::NoGradGuard no_grad;
    at::Tensor g = at::from_blob(const_cast<void*>(v.data), {v.T, v.E}, {v.row_stride, v.col_stride},
                                 at::TensorOptions().dtype(harness::torch_dtype(v.dtype)));
    at::Tensor s;
    if (p.scale) s = at::from_blob(const_cast<float*>(p.scale), {v.E}, at::kFloat);
    if (cuda_) {
      g = g.to(at::kCUDA);
      if (s.defined()) s = s.to(at::kCUDA);
    }
    auto [w, id] = composite_route(g, p.k, s, p.family);
    w = w.cpu();
    id = id.cpu();
    std::memcpy(weights, w.data_ptr<float>(), sizeof(float) * static_cast<std::size_t>(w.numel()));
    std::memcpy(ids, id.data_ptr<std::int32_t>(), sizeof(std::int32_t) * static_cast<std::size_t>(id.numel()));
    return {};
  }

 private:
  bool cuda_;
};

}  // namespace

bool torch_cuda_available() { return torch::cuda::is_available(); }

std::unique_ptr<Target> make_target(const std::string& spec, const TargetOptions& opt) {
  if (spec == "composite" || spec == "composite:cpu" || spec == "composite:cuda") {
    if (opt.mutant != "none") throw std::invalid_argument("target '" + spec + "' has no mutants");
    const bool cuda = spec == "composite:cuda";
    if (cuda && !torch_cuda_available()) {
      throw std::invalid_argument("target 'composite:cuda' needs LibTorch with a usable CUDA device");
    }
    return std::make_unique<CompositeTarget>(cuda);
  }
  try {
    return make_core_target(spec, opt);
  } catch (const std::invalid_argument& e) {
    if (std::string(e.what()).rfind("unknown target", 0) == 0) {
      std::string all;
      for (const auto& s : target_specs()) all += " " + s;
      throw std::invalid_argument("unknown target '" + spec + "' (known:" + all + ")");
    }
    throw;
  }
}

std::vector<std::string> target_specs() {
  std::vector<std::string> v = {"composite", "composite:cuda"};
  for (const auto& s : core_target_specs()) v.push_back(s);
  return v;
}

}  // namespace moecheck
