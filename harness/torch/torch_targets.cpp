#include "harness/torch/torch_targets.hpp"

#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <tuple>

#include "harness/torch/dtype.hpp"

namespace moecheck {
namespace {

/// Composite routing with LibTorch ops, following reference/EDGE_CASES.md:
/// NaN logits rank as -inf and carry no mass, +inf logits share the mass, an all-masked row gets
/// zero weights (zero-sum rule), ties resolved by torch.topk (the oracle is tie-aware).
/// Writes the weights [T, k] into `w_out` (fp32) and the ids into `id_out` (int32); both are
/// contiguous CPU tensors (from_blob views of the caller's buffers). On the CPU the last op of
/// each output writes straight into them; on CUDA the results are copied back.
///
/// Written for few ATen calls (each costs about a microsecond on these small tensors):
///  * NaN -> -inf is one nan_to_num (infinities kept);
///  * after it no key is NaN; with m the row's largest key raised to the lowest finite float
///    (an all-masked row's -inf becomes -FLT_MAX: x - m stays -inf there, exp gives the zero of
///    the limit rule; any finite m is unchanged), x - m is NaN only where x == m == +inf, and
///    exp(NaN) -> 1 (nan_to_num) is the limit rule for +inf among +inf maxima (the other logits
///    of such a row get exp(-inf) = 0);
///  * each row's sum z is 0 (all masked) or >= 1 (the maximum contributes exp(0) = 1), so
///    clamp_min(z, 1) is the renormalise-by-zero rule;
///  * m is the first (largest) top-k value: the maximum up to the sign of a zero, which leaves
///    x - m and hence exp(x - m) unchanged;
///  * softmax_topk_raw divides the gathered k values rather than all E (the same divisions);
///  * on the CPU the first top-k column is read: torch.topk ranks NaN first, so when it holds
///    only finite values no logit is NaN (nan_to_num would change nothing, the top-k of the raw
///    logits is the one of the keys) and no row needs a limit rule, and those three steps are
///    left out; otherwise the keys are cleaned, the top-k taken again and every step runs.
/// Every exp, sum and division runs on tensors of the same shape and memory layout as before
/// these rewrites, so the outputs are bit-identical to them (composite_identity_test pins it).
void composite_route(const at::Tensor& g, int64_t k, const at::Tensor& scale, Family family, at::Tensor& w_out,
                     at::Tensor& id_out) {
  const double inf = std::numeric_limits<double>::infinity();
  const bool converted = g.scalar_type() != at::kFloat;  // a float g is not copied by to(kFloat)
  at::Tensor key = converted ? g.to(at::kFloat) : g;
  at::Tensor top, ids;
  bool limits = true;  // some row has a NaN or infinite maximum
  if (key.is_cpu()) {
    std::tie(top, ids) = at::topk(key, k, /*dim=*/-1, /*largest=*/true, /*sorted=*/true);
    const float* first = top.const_data_ptr<float>();
    const int64_t rows = top.size(0), stride = top.stride(0);
    bool nan = false;
    limits = false;
    for (int64_t t = 0; t < rows; ++t) {
      nan = nan || std::isnan(first[t * stride]);
      limits = limits || !std::isfinite(first[t * stride]);
    }
    if (nan) top.reset();
  } else {
    top.reset();
  }
  if (!top.defined()) {
    key = converted ? key.nan_to_num_(-inf, inf, -inf) : at::nan_to_num(key, -inf, inf, -inf);
    std::tie(top, ids) = at::topk(key, k, /*dim=*/-1, /*largest=*/true, /*sorted=*/true);
  }
  const bool direct = w_out.device() == key.device();
  at::Tensor w = direct ? w_out : at::empty(top.sizes(), top.options());
  if (family == Family::sigmoid_top1) {
    at::sigmoid_out(w, top);
  } else {
    const at::Tensor& x = family == Family::softmax_topk_raw ? key : top;
    at::Tensor m = top.narrow(1, 0, 1);
    if (limits) m = at::clamp_min(m, std::numeric_limits<float>::lowest());
    at::Tensor e = at::sub(x, m).exp_();
    if (limits) e.nan_to_num_(1.0, inf, -inf);
    at::Tensor z = e.sum(-1, /*keepdim=*/true);
    if (limits) z.clamp_min_(1);
    if (family == Family::softmax_topk_raw) {
      at::div_out(w, e.gather(1, ids), z);
    } else if (family == Family::gemma4 && scale.defined()) {
      at::mul_out(w, e.div_(z), scale.take(ids));
    } else {
      at::div_out(w, e, z);
    }
  }
  if (!direct) w_out.copy_(w);
  id_out.copy_(ids);
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
    c10::InferenceMode inference;
    at::Tensor g = at::from_blob(const_cast<void*>(v.data), {v.T, v.E}, {v.row_stride, v.col_stride},
                                 at::TensorOptions().dtype(harness::torch_dtype(v.dtype)));
    at::Tensor s;
    if (p.scale) s = at::from_blob(const_cast<float*>(p.scale), {v.E}, at::kFloat);
    if (cuda_) {
      g = g.to(at::kCUDA);
      if (s.defined()) s = s.to(at::kCUDA);
    }
    at::Tensor w = at::from_blob(weights, {v.T, p.k}, at::kFloat);
    at::Tensor id = at::from_blob(ids, {v.T, p.k}, at::kInt);
    composite_route(g, p.k, s, p.family, w, id);
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
