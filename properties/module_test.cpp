// MoeLayer: structure, names, routing backends, agreement with the fp64 reference
// (reference/moe.hpp), latent variants, and the variant/mode detection matrix on a fixed case.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "harness/torch/functional_call.hpp"
#include "harness/torch/moe_module.hpp"
#include "harness/torch/moe_reference.hpp"
#include "reference/moe.hpp"
#include "reference/oracle.hpp"

namespace {

using namespace moecheck::harness;

MoeConfig small_config(std::uint64_t seed = 3) {
  MoeConfig c;
  c.num_experts = 6;
  c.top_k = 2;
  c.hidden = 5;
  c.intermediate = 7;
  c.seed = seed;
  return c;
}

torch::Tensor input(const MoeConfig& c, std::int64_t T, std::uint64_t seed = 11) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn({T, c.hidden}, gen, torch::TensorOptions().dtype(torch::kDouble)).to(c.dtype).to(c.device);
}

TEST(MoeModule, NamesShapesAndDtypes) {
  MoeConfig c = small_config();
  MoeLayer m(c);
  const auto slots = list_slots(*m);
  std::vector<std::string> names;
  for (const auto& s : slots) names.push_back(s.name);
  EXPECT_EQ(names, moe_tensor_names());
  const auto named = moe_named_tensors(*m);
  EXPECT_EQ(named.at("per_expert_scale").sizes(), c10::IntArrayRef({6}));
  EXPECT_EQ(named.at("router.scale").sizes(), c10::IntArrayRef({5}));
  EXPECT_EQ(named.at("router.proj").sizes(), c10::IntArrayRef({6, 5}));
  EXPECT_EQ(named.at("experts.gate_proj").sizes(), c10::IntArrayRef({6, 7, 5}));
  EXPECT_EQ(named.at("experts.up_proj").sizes(), c10::IntArrayRef({6, 7, 5}));
  EXPECT_EQ(named.at("experts.down_proj").sizes(), c10::IntArrayRef({6, 5, 7}));
  EXPECT_EQ(named.at("router.norm.eps").dim(), 0);
  EXPECT_EQ(named.at("router.norm.eps").scalar_type(), torch::kDouble);
  EXPECT_EQ(named.at("router.norm.eps").item<double>(), moecheck::kRouterRmsEps);
  EXPECT_TRUE(torch::equal(named.at("per_expert_scale"), torch::ones({6})));
  EXPECT_EQ(m->named_parameters().size(), 6u);
  EXPECT_EQ(m->named_buffers().size(), 1u);
  for (const auto& s : slots) EXPECT_TRUE(s.tied.empty()) << s.name;
  EXPECT_FALSE(torch::equal(named.at("experts.gate_proj"), named.at("experts.up_proj")));

  c.tie_gate_up = true;
  c.dtype = torch::kBFloat16;
  MoeLayer t(c);
  const auto tn = moe_named_tensors(*t);
  EXPECT_EQ(tn.at("experts.gate_proj").unsafeGetTensorImpl(), tn.at("experts.up_proj").unsafeGetTensorImpl());
  EXPECT_EQ(list_slots(*t)[3].tied, std::vector<std::string>{"experts.up_proj"});
  EXPECT_EQ(tn.at("router.proj").scalar_type(), torch::kBFloat16);
}

TEST(MoeModule, ConfigErrorsNameTheField) {
  MoeConfig c = small_config();
  c.top_k = 7;
  try {
    MoeLayer m(c);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("top_k"), std::string::npos) << e.what();
  }
  c = small_config();
  c.dtype = torch::kDouble;
  EXPECT_THROW(MoeLayer{c}, std::invalid_argument);
  c = small_config();
  c.hidden = 0;
  EXPECT_THROW(MoeLayer{c}, std::invalid_argument);
}

TEST(MoeModule, VocabularyRoundTrips) {
  for (ModuleVariant v : all_module_variants()) {
    ModuleVariant p;
    ASSERT_TRUE(parse_module_variant(module_variant_name(v), &p));
    EXPECT_EQ(p, v);
  }
  ModuleVariant v;
  EXPECT_TRUE(parse_module_variant("capture-handle", &v));
  EXPECT_EQ(v, ModuleVariant::capture_handle);
  EXPECT_FALSE(parse_module_variant("capture", &v));
  std::vector<SubstitutionMode> modes;
  ASSERT_TRUE(parse_substitution_modes("both", &modes));
  EXPECT_EQ(modes, (std::vector<SubstitutionMode>{SubstitutionMode::rebind, SubstitutionMode::in_place}));
  ASSERT_TRUE(parse_substitution_modes("all", &modes));
  EXPECT_EQ(modes.size(), 3u);
  ASSERT_TRUE(parse_substitution_modes("copy_into,rebind", &modes));
  EXPECT_EQ(modes, (std::vector<SubstitutionMode>{SubstitutionMode::copy_into, SubstitutionMode::rebind}));
  EXPECT_FALSE(parse_substitution_modes("rebind,", &modes));
  EXPECT_FALSE(parse_substitution_modes("swap", &modes));
  RoutingBackend b;
  EXPECT_TRUE(parse_routing_backend("reference", &b));
  EXPECT_EQ(b, RoutingBackend::reference);
  EXPECT_FALSE(parse_routing_backend("cublas", &b));
  torch::Dtype d;
  EXPECT_TRUE(parse_torch_dtype("bf16", &d));
  EXPECT_EQ(d, torch::kBFloat16);
}

TEST(MoeModule, HandWorkedRouting) {
  // logits [1, 2, 3], k = 2: ids {2, 1}; weights softmax([3, 2]) x scale[id].
  const torch::Tensor logits = torch::tensor({{1.0f, 2.0f, 3.0f}});
  const torch::Tensor scale = torch::tensor({1.0f, 2.0f, 3.0f});
  const double p2 = 1.0 / (1.0 + std::exp(-1.0)), p1 = 1.0 - p2;
  for (RoutingBackend b : {RoutingBackend::composite, RoutingBackend::reference}) {
    const Routing r = route_logits(logits, 2, scale, b);
    EXPECT_EQ(r.ids.scalar_type(), torch::kInt);
    EXPECT_EQ(r.weights.scalar_type(), torch::kFloat);
    EXPECT_EQ(r.ids[0][0].item<int>(), 2);
    EXPECT_EQ(r.ids[0][1].item<int>(), 1);
    EXPECT_NEAR(r.weights[0][0].item<float>(), 3.0 * p2, 1e-6);
    EXPECT_NEAR(r.weights[0][1].item<float>(), 2.0 * p1, 1e-6);
    const Routing s = route_logits(logits, 2, scale, b, /*scale_by_slot=*/true);
    EXPECT_NEAR(s.weights[0][0].item<float>(), 1.0 * p2, 1e-6);  // scale[0], not scale[2]
    EXPECT_NEAR(s.weights[0][1].item<float>(), 2.0 * p1, 1e-6);
    const Routing e = route_logits(torch::empty({0, 3}), 3, scale, b);
    EXPECT_EQ(e.weights.sizes(), c10::IntArrayRef({0, 3}));
  }
  EXPECT_THROW(route_logits(logits, 4, scale, RoutingBackend::composite), std::invalid_argument);
  EXPECT_THROW(route_logits(logits, 1, torch::ones({2}), RoutingBackend::composite), std::invalid_argument);
}

TEST(MoeModule, BackendsAgreeWithTheOracle) {
  for (std::uint64_t seed = 0; seed < 6; ++seed) {
    for (RoutingBackend b : {RoutingBackend::composite, RoutingBackend::reference}) {
      MoeConfig c = small_config(seed);
      c.backend = b;
      MoeLayer m(c);
      torch::NoGradGuard ng;
      const torch::Tensor scale = torch::randn({c.num_experts});
      const MoeForward f = functional_call(*m, {{"per_expert_scale", scale}}, [&] { return m->forward_detailed(input(c, 9, seed)); });
      const torch::Tensor lg = f.logits.contiguous();
      moecheck::GatingView g{lg.data_ptr(), moecheck::DType::f32, 9, c.num_experts, c.num_experts, 1};
      moecheck::RoutingParams p;
      p.k = static_cast<int>(c.top_k);
      p.scale = scale.data_ptr<float>();
      const auto rep = moecheck::check_routing(g, p, f.routing.weights.data_ptr<float>(),
                                               f.routing.ids.data_ptr<std::int32_t>());
      EXPECT_TRUE(rep.ok()) << routing_backend_name(b) << " seed " << seed << "\n" << rep.str();
    }
  }
}

TEST(MoeModule, ForwardMatchesTheProjectReference) {
  for (torch::Dtype dt : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    for (std::uint64_t seed = 0; seed < 4; ++seed) {
      MoeConfig c = small_config(seed);
      c.dtype = dt;
      c.tie_gate_up = seed % 2 == 1;
      MoeLayer m(c);
      torch::NoGradGuard ng;
      // Non-trivial scales so per_expert_scale and router.scale matter.
      const auto named = moe_named_tensors(*m);
      named.at("per_expert_scale").copy_(torch::linspace(-1.5, 2.0, c.num_experts));
      named.at("router.scale").copy_(torch::linspace(0.5, 1.5, c.hidden));
      const torch::Tensor x = input(c, 8, seed + 100);
      const MoeForward f = m->forward_detailed(x);
      EXPECT_EQ(compare_forward_with_reference(c, f, x, named), "") << torch_dtype_name(dt) << " seed " << seed;
      if (dt != torch::kFloat) continue;
      // Direct comparison with moecheck::moe_forward (its own selection; no ties here).
      moecheck::MoeWeights w;
      w.H = c.hidden, w.I = c.intermediate, w.E = c.num_experts, w.k = static_cast<int>(c.top_k);
      w.router_scale = tensor_to_doubles(named.at("router.scale"));
      w.router_proj = tensor_to_doubles(named.at("router.proj"));
      w.per_expert_scale = tensor_to_doubles(named.at("per_expert_scale"));
      w.w_gate = tensor_to_doubles(named.at("experts.gate_proj"));
      w.w_up = tensor_to_doubles(named.at("experts.up_proj"));
      w.w_down = tensor_to_doubles(named.at("experts.down_proj"));
      const std::vector<double> xv = tensor_to_doubles(x);
      std::vector<double> y(xv.size());
      moecheck::MoeTrace trace;
      moecheck::moe_forward(w, xv.data(), 8, y.data(), &trace);
      const std::vector<double> got = tensor_to_doubles(f.out);
      for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(got[i], y[i], 1e-4 * (1.0 + std::fabs(y[i]))) << i;
      const torch::Tensor ids = f.routing.ids.contiguous();
      for (std::size_t i = 0; i < trace.ids.size(); ++i) EXPECT_EQ(ids.data_ptr<std::int32_t>()[i], trace.ids[i]);
    }
  }
}

TEST(MoeModule, LeadingDimsAndEmptyInput) {
  MoeConfig c = small_config();
  MoeLayer m(c);
  torch::NoGradGuard ng;
  const torch::Tensor x = input(c, 6).reshape({2, 3, c.hidden});
  const torch::Tensor y = m->forward(x);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::allclose(y.reshape({6, c.hidden}), m->forward(x.reshape({6, c.hidden}))));
  const MoeForward e = m->forward_detailed(torch::empty({0, c.hidden}));
  EXPECT_EQ(e.out.sizes(), c10::IntArrayRef({0, c.hidden}));
  EXPECT_EQ(e.routing.ids.sizes(), c10::IntArrayRef({0, c.top_k}));
}

TEST(MoeModule, CompositeBackendIsDifferentiable) {
  MoeConfig c = small_config();
  MoeLayer m(c);
  m->forward(input(c, 4)).pow(2).sum().backward();
  for (const auto& p : m->named_parameters()) EXPECT_TRUE(p.value().grad().defined()) << p.key();
}

// Every variant computes exactly what the correct module computes until per_expert_scale
// changes: fixed-grid tests cannot see these bugs.
TEST(MoeVariants, BugsAreLatentWithoutSubstitution) {
  for (RoutingBackend b : {RoutingBackend::composite, RoutingBackend::reference}) {
    MoeConfig c = small_config();
    c.backend = b;
    MoeLayer correct(c);
    torch::NoGradGuard ng;
    const torch::Tensor x = input(c, 7);
    const MoeForward want = correct->forward_detailed(x);
    for (ModuleVariant v : all_module_variants()) {
      c.variant = v;
      MoeLayer m(c);
      const MoeForward got = m->forward_detailed(x);
      EXPECT_TRUE(bitwise_equal(got.out, want.out)) << module_variant_name(v);
      EXPECT_TRUE(bitwise_equal(got.routing.weights, want.routing.weights)) << module_variant_name(v);
    }
  }
}

// The detection matrix of substitution_types.hpp on one fixed case: a variant's routing
// weights under a substituted per_expert_scale differ from the correct module's exactly
// in the modes documented to catch it.
TEST(MoeVariants, DetectionMatrixOnAFixedCase) {
  MoeConfig c = small_config();
  const torch::Tensor x = input(c, 7);
  const torch::Tensor scale = torch::linspace(0.25, 1.5, c.num_experts);
  torch::NoGradGuard ng;
  auto weights_under = [&](ModuleVariant v, SubstitutionMode mode) {
    MoeConfig cv = c;
    cv.variant = v;
    MoeLayer m(cv);
    FunctionalCallOptions o;
    o.mode = mode;
    return functional_call(*m, {{"per_expert_scale", scale}}, [&] { return m->forward_detailed(x); }, o);
  };
  for (SubstitutionMode mode : all_substitution_modes()) {
    const MoeForward want = weights_under(ModuleVariant::correct, mode);
    for (ModuleVariant v : all_module_variants()) {
      const MoeForward got = weights_under(v, mode);
      const bool differs = !bitwise_equal(got.routing.weights, want.routing.weights) || !bitwise_equal(got.out, want.out);
      EXPECT_EQ(differs, variant_caught_by(v, mode)) << module_variant_name(v) << " / " << substitution_mode_name(mode);
    }
  }
}

TEST(MoeModule, FusedBackendAvailabilityFollowsTheBuild) {
  // moecheck::kernels_torch gives its consumers MOECHECK_HAVE_KERNELS_TORCH=1; a build without
  // it compiles the fused backend out, which then refuses with a named error.
#if defined(MOECHECK_HAVE_KERNELS_TORCH) && MOECHECK_HAVE_KERNELS_TORCH
  EXPECT_TRUE(fused_backend_available());
#else
  EXPECT_FALSE(fused_backend_available());
  EXPECT_THROW(route_logits(torch::zeros({2, 4}), 2, torch::ones({4}), RoutingBackend::fused, false),
               std::invalid_argument);
#endif
}

TEST(MoeModule, FusedBackend) {
  if (!fused_backend_available()) GTEST_SKIP() << "this build has no fused kernels' LibTorch glue";
  MoeConfig c = small_config();
  c.backend = RoutingBackend::fused;
  MoeLayer m(c);
  torch::NoGradGuard ng;
  const torch::Tensor x = input(c, 9);
  const auto named = moe_named_tensors(*m);
  named.at("per_expert_scale").copy_(torch::linspace(-1.0, 2.0, c.num_experts));
  EXPECT_EQ(compare_forward_with_reference(c, m->forward_detailed(x), x, named), "");
}

}  // namespace
