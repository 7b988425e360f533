// functional_call: example-based tests in the style of PyTorch's stateless tests
// (test/test_stateless.py): substitution is used, restoration is exact (same tensor objects,
// same values) on success and on exceptions, nested names, buffers, tied tensors, strict
// mode, and every caller error names its key.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "harness/torch/functional_call.hpp"
#include "harness/torch/moe_module.hpp"

namespace {

using moecheck::harness::FunctionalCallError;
using moecheck::harness::FunctionalCallOptions;
using moecheck::harness::NamedTensors;
using moecheck::harness::SubstitutionMode;
using moecheck::harness::compare_fingerprints;
using moecheck::harness::fingerprint_module;
using moecheck::harness::functional_call;
using moecheck::harness::list_slots;
using moecheck::harness::registered_tensor;

/// A linear layer that reads its tensors from its slots at call time (Python semantics):
/// y = x W^T + b + offset (offset is a buffer).
class SlotLinearImpl : public torch::nn::Module {
 public:
  SlotLinearImpl(std::int64_t in, std::int64_t out, std::uint64_t seed) {
    torch::manual_seed(seed);
    register_parameter("weight", torch::randn({out, in}));
    register_parameter("bias", torch::randn({out}));
    register_buffer("offset", torch::zeros({out}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return x.matmul(get("weight").t()) + get("bias") + get("offset");
  }
  torch::Tensor& get(const char* name) { return *registered_tensor(*this, name); }
};
TORCH_MODULE(SlotLinear);

class InnerImpl : public torch::nn::Module {
 public:
  explicit InnerImpl(std::uint64_t seed) { l2 = register_module("l2", SlotLinear(3, 3, seed)); }
  torch::Tensor forward(const torch::Tensor& x) { return l2->forward(x); }
  SlotLinear l2{nullptr};
};
TORCH_MODULE(Inner);

/// Names: l1.weight [3,3], l1.bias, inner.l2.weight [3,3], inner.l2.bias, (buffers)
/// l1.offset, inner.l2.offset. With `tied`, inner.l2.weight is the l1.weight object.
class OuterImpl : public torch::nn::Module {
 public:
  explicit OuterImpl(bool tied = false) {
    l1 = register_module("l1", SlotLinear(3, 3, 1));
    inner = register_module("inner", Inner(2));
    if (tied) {
      // Re-register l2.weight as the l1.weight object (slot-level tie).
      *registered_tensor(*inner->l2, "weight") = *registered_tensor(*l1, "weight");
    }
  }
  torch::Tensor forward(const torch::Tensor& x) { return inner->forward(torch::relu(l1->forward(x))); }
  SlotLinear l1{nullptr};
  Inner inner{nullptr};
};
TORCH_MODULE(Outer);

torch::Tensor reference_forward(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& b1,
                                const torch::Tensor& o1, const torch::Tensor& w2, const torch::Tensor& b2,
                                const torch::Tensor& o2) {
  return torch::relu(x.matmul(w1.t()) + b1 + o1).matmul(w2.t()) + b2 + o2;
}

std::map<std::string, torch::Tensor> values_of(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> v;
  for (const auto& s : list_slots(m)) v[s.name] = s.tensor.detach().clone();
  return v;
}

/// Runs `fn`, expects FunctionalCallError of `kind` whose message contains every `parts`.
template <class Fn>
void expect_error(Fn&& fn, FunctionalCallError::Kind kind, const std::string& key,
                  std::initializer_list<const char*> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected FunctionalCallError " << moecheck::harness::functional_call_error_kind_name(kind);
  } catch (const FunctionalCallError& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_EQ(e.key(), key) << e.what();
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("functional_call: ", 0), 0u) << msg;
    for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    std::cout << "    error: " << msg << "\n";
  }
}

class ModeTest : public ::testing::TestWithParam<SubstitutionMode> {
 protected:
  FunctionalCallOptions opts() const {
    FunctionalCallOptions o;
    o.mode = GetParam();
    return o;
  }
};

INSTANTIATE_TEST_SUITE_P(Modes, ModeTest,
                         ::testing::Values(SubstitutionMode::rebind, SubstitutionMode::in_place,
                                           SubstitutionMode::copy_into),
                         [](const auto& info) { return std::string(moecheck::harness::substitution_mode_name(info.param)); });

TEST_P(ModeTest, SubstitutedTensorsAreUsed) {
  Outer m;
  const auto v = values_of(*m);
  const torch::Tensor x = torch::randn({4, 3});
  const torch::Tensor w1 = torch::randn({3, 3}), b2 = torch::randn({3});
  const torch::Tensor got =
      functional_call(*m, {{"l1.weight", w1}, {"inner.l2.bias", b2}}, [&] { return m->forward(x); }, opts());
  const torch::Tensor want = reference_forward(x, w1, v.at("l1.bias"), v.at("l1.offset"), v.at("inner.l2.weight"), b2,
                                               v.at("inner.l2.offset"));
  EXPECT_TRUE(torch::allclose(got, want));
  EXPECT_FALSE(torch::allclose(m->forward(x), want));  // restored
}

TEST_P(ModeTest, RestoresSameObjectsAndValues) {
  Outer m;
  const auto before = fingerprint_module(*m);
  const torch::Tensor* slot = registered_tensor(*m->l1, "weight");
  const void* impl = slot->unsafeGetTensorImpl();
  const void* data = slot->data_ptr();
  const torch::Tensor x = torch::randn({2, 3});
  const torch::Tensor y0 = m->forward(x);
  NamedTensors all;
  for (const auto& s : list_slots(*m)) all[s.name] = torch::randn_like(s.tensor);
  FunctionalCallOptions o = opts();
  o.strict = true;
  functional_call(*m, all, [&] { return m->forward(x); }, o);
  EXPECT_EQ(compare_fingerprints(before, fingerprint_module(*m)), "");
  EXPECT_EQ(registered_tensor(*m->l1, "weight")->unsafeGetTensorImpl(), impl);
  EXPECT_EQ(registered_tensor(*m->l1, "weight")->data_ptr(), data);
  EXPECT_TRUE(torch::equal(m->forward(x), y0));
}

TEST_P(ModeTest, RestoresAfterException) {
  Outer m;
  const auto before = fingerprint_module(*m);
  bool seen_new = false;
  const torch::Tensor w = torch::full({3, 3}, 7.0);
  EXPECT_THROW(functional_call(
                   *m, {{"l1.weight", w}, {"l1.offset", torch::ones({3})}},
                   [&]() -> int {
                     seen_new = torch::equal(m->l1->get("weight"), w);
                     throw std::runtime_error("boom");
                   },
                   opts()),
               std::runtime_error);
  EXPECT_TRUE(seen_new);
  EXPECT_EQ(compare_fingerprints(before, fingerprint_module(*m)), "");
}

TEST_P(ModeTest, NestedNamesAndBuffers) {
  Outer m;
  const torch::Tensor off = torch::full({3}, 5.0);
  functional_call(*m, {{"inner.l2.offset", off}}, [&] {
    EXPECT_TRUE(torch::equal(m->inner->l2->get("offset"), off));
    EXPECT_TRUE(torch::equal(m->l1->get("offset"), torch::zeros({3})));
    return 0;
  }, opts());
  EXPECT_TRUE(torch::equal(m->inner->l2->get("offset"), torch::zeros({3})));
}

TEST_P(ModeTest, TiedGivenOnceSubstitutesEveryName) {
  Outer m(/*tied=*/true);
  ASSERT_EQ(list_slots(*m)[0].tied, std::vector<std::string>{"inner.l2.weight"});
  const torch::Tensor w = torch::randn({3, 3});
  functional_call(*m, {{"inner.l2.weight", w}}, [&] {
    EXPECT_TRUE(torch::equal(m->l1->get("weight"), w));
    EXPECT_TRUE(torch::equal(m->inner->l2->get("weight"), w));
    return 0;
  }, opts());
  // Still tied, to the original object.
  EXPECT_EQ(m->l1->get("weight").unsafeGetTensorImpl(), m->inner->l2->get("weight").unsafeGetTensorImpl());
  EXPECT_FALSE(torch::equal(m->l1->get("weight"), w));
}

TEST_P(ModeTest, TiedGivenTwiceWithTheSameObjectIsAccepted) {
  Outer m(true);
  const torch::Tensor w = torch::randn({3, 3});
  functional_call(*m, {{"l1.weight", w}, {"inner.l2.weight", w}}, [&] {
    EXPECT_TRUE(torch::equal(m->inner->l2->get("weight"), w));
    return 0;
  }, opts());
}

TEST_P(ModeTest, TiedGivenDifferentObjectsIsAnError) {
  Outer m(true);
  const auto before = fingerprint_module(*m);
  const torch::Tensor w = torch::randn({3, 3});
  expect_error([&] { functional_call(*m, {{"l1.weight", w}, {"inner.l2.weight", w.clone()}}, [] { return 0; }, opts()); },
               FunctionalCallError::Kind::tied_conflict, "inner.l2.weight",
               {"'l1.weight'", "'inner.l2.weight'", "tied", "tie_weights"});
  EXPECT_EQ(compare_fingerprints(before, fingerprint_module(*m)), "");
}

TEST_P(ModeTest, UntiedSubstitutionNeedsRebind) {
  Outer m(true);
  const torch::Tensor w = torch::randn({3, 3});
  FunctionalCallOptions o = opts();
  o.tie_weights = false;
  if (GetParam() == SubstitutionMode::rebind) {
    const torch::Tensor old = m->inner->l2->get("weight").detach().clone();
    functional_call(*m, {{"l1.weight", w}}, [&] {
      EXPECT_TRUE(torch::equal(m->l1->get("weight"), w));
      EXPECT_TRUE(torch::equal(m->inner->l2->get("weight"), old));
      return 0;
    }, o);
    EXPECT_EQ(m->l1->get("weight").unsafeGetTensorImpl(), m->inner->l2->get("weight").unsafeGetTensorImpl());
  } else {
    expect_error([&] { functional_call(*m, {{"l1.weight", w}}, [] { return 0; }, o); },
                 FunctionalCallError::Kind::cannot_untie, "l1.weight", {"'l1.weight'", "rebind"});
  }
}

TEST_P(ModeTest, StrictRequiresEveryParameterAndBuffer) {
  Outer m(true);
  FunctionalCallOptions o = opts();
  o.strict = true;
  expect_error([&] { functional_call(*m, {{"l1.weight", torch::randn({3, 3})}}, [] { return 0; }, o); },
               FunctionalCallError::Kind::missing_strict, "l1.bias",
               {"strict", "'l1.bias'", "'inner.l2.bias'", "'l1.offset'", "'inner.l2.offset'"});
  // One name covers a tied group.
  NamedTensors all{{"l1.weight", torch::randn({3, 3})}, {"l1.bias", torch::randn({3})},
                   {"inner.l2.bias", torch::randn({3})}, {"l1.offset", torch::randn({3})},
                   {"inner.l2.offset", torch::randn({3})}};
  EXPECT_NO_THROW(functional_call(*m, all, [] { return 0; }, o));
}

TEST_P(ModeTest, NestedCallsRestoreLayerByLayer) {
  Outer m;
  const torch::Tensor w1 = torch::randn({3, 3}), w2 = torch::randn({3, 3});
  const torch::Tensor orig = m->l1->get("weight").detach().clone();
  functional_call(*m, {{"l1.weight", w1}}, [&] {
    functional_call(*m, {{"l1.weight", w2}}, [&] {
      EXPECT_TRUE(torch::equal(m->l1->get("weight"), w2));
      return 0;
    }, opts());
    EXPECT_TRUE(torch::equal(m->l1->get("weight"), w1));
    return 0;
  }, opts());
  EXPECT_TRUE(torch::equal(m->l1->get("weight"), orig));
}

TEST_P(ModeTest, SwappingTwoParameters) {
  Outer m;
  torch::Tensor a = m->l1->get("weight"), b = m->inner->l2->get("weight");
  const torch::Tensor a0 = a.detach().clone(), b0 = b.detach().clone();
  functional_call(*m, {{"l1.weight", b}, {"inner.l2.weight", a}}, [&] {
    EXPECT_TRUE(torch::equal(m->l1->get("weight"), b0));
    EXPECT_TRUE(torch::equal(m->inner->l2->get("weight"), a0));
    return 0;
  }, opts());
  EXPECT_TRUE(torch::equal(m->l1->get("weight"), a0));
  EXPECT_TRUE(torch::equal(m->inner->l2->get("weight"), b0));
}

TEST_P(ModeTest, GivingTheModulesOwnTensorChangesNothing) {
  Outer m;
  const auto before = fingerprint_module(*m);
  functional_call(*m, {{"l1.weight", m->l1->get("weight")}}, [] { return 0; }, opts());
  EXPECT_EQ(compare_fingerprints(before, fingerprint_module(*m)), "");
}

TEST_P(ModeTest, ValidationFailureChangesNothing) {
  Outer m;
  const auto before = fingerprint_module(*m);
  EXPECT_THROW(functional_call(*m, {{"l1.bias", torch::randn({3})}, {"l1.weight", torch::randn({2, 3})}},
                               [] { return 0; }, opts()),
               FunctionalCallError);
  EXPECT_EQ(compare_fingerprints(before, fingerprint_module(*m)), "");
}

// Which kind of stale reference each mode reaches (the basis of the variant matrix).
TEST_P(ModeTest, WhatCapturedReferencesSee) {
  Outer m;
  torch::Tensor handle = m->l1->get("bias");                           // captured handle
  torch::Tensor copy = handle.detach().clone();                        // captured copy
  const float* raw = handle.data_ptr<float>();                         // cached raw pointer
  const torch::Tensor b = torch::full({3}, 42.0);
  functional_call(*m, {{"l1.bias", b}}, [&] {
    const bool handle_sees = handle[0].item<float>() == 42.0f;
    const bool raw_sees = raw[0] == 42.0f;
    EXPECT_NE(copy[0].item<float>(), 42.0f);
    switch (GetParam()) {
      case SubstitutionMode::rebind: EXPECT_FALSE(handle_sees); EXPECT_FALSE(raw_sees); break;
      case SubstitutionMode::in_place: EXPECT_TRUE(handle_sees); EXPECT_FALSE(raw_sees); break;
      case SubstitutionMode::copy_into: EXPECT_TRUE(handle_sees); EXPECT_TRUE(raw_sees); break;
    }
    return 0;
  }, opts());
  EXPECT_NE(raw[0], 42.0f);
}

// LibTorch's own modules read member handles: only in_place/copy_into reach them.
TEST_P(ModeTest, StockLinearSeesOnlyDataSubstitution) {
  torch::nn::Linear lin(3, 2);
  const torch::Tensor x = torch::randn({4, 3});
  const torch::Tensor w = torch::zeros({2, 3});
  const torch::Tensor y = functional_call(lin, {{"weight", w}}, x, opts());
  const bool sees = torch::allclose(y, lin->bias.detach().expand({4, 2}));
  EXPECT_EQ(sees, GetParam() != SubstitutionMode::rebind);
}

TEST_P(ModeTest, GradientsReachTheRightTensor) {
  Outer m;
  const torch::Tensor x = torch::randn({2, 3});
  torch::Tensor w = torch::randn({3, 3}, torch::requires_grad());
  torch::Tensor out = functional_call(*m, {{"l1.weight", w}}, [&] { return m->forward(x).sum(); }, opts());
  out.backward();
  if (GetParam() == SubstitutionMode::rebind) {
    // Like torch.func.functional_call: the graph refers to the given tensor.
    EXPECT_TRUE(w.grad().defined());
    EXPECT_FALSE(m->l1->get("weight").grad().defined());
  } else {
    // The module's own parameter object took part in the forward.
    EXPECT_TRUE(m->l1->get("weight").grad().defined());
  }
}

TEST(FunctionalCallErrors, UnknownNameSuggestsTheClosest) {
  Outer m;
  expect_error([&] { functional_call(*m, {{"inner.l2.weigth", torch::randn({3, 3})}}, [] { return 0; }); },
               FunctionalCallError::Kind::unknown_name, "inner.l2.weigth",
               {"unknown name 'inner.l2.weigth'", "did you mean 'inner.l2.weight'"});
  expect_error([&] { functional_call(*m, {{"nothing_like_it", torch::randn({3})}}, [] { return 0; }); },
               FunctionalCallError::Kind::unknown_name, "nothing_like_it", {"'nothing_like_it'"});
}

TEST(FunctionalCallErrors, ShapeDtypeDeviceUndefined) {
  Outer m;
  expect_error([&] { functional_call(*m, {{"l1.weight", torch::randn({3, 4})}}, [] { return 0; }); },
               FunctionalCallError::Kind::shape_mismatch, "l1.weight", {"'l1.weight'", "[3, 3]", "[3, 4]"});
  expect_error([&] { functional_call(*m, {{"l1.bias", torch::randn({3}, torch::kDouble)}}, [] { return 0; }); },
               FunctionalCallError::Kind::dtype_mismatch, "l1.bias", {"'l1.bias'", "Float", "Double"});
  expect_error([&] { functional_call(*m, {{"l1.offset", torch::empty({3}, torch::Device(torch::kMeta))}}, [] { return 0; }); },
               FunctionalCallError::Kind::device_mismatch, "l1.offset", {"buffer 'l1.offset'", "cpu", "meta"});
  expect_error([&] { functional_call(*m, {{"l1.bias", torch::Tensor()}}, [] { return 0; }); },
               FunctionalCallError::Kind::undefined_tensor, "l1.bias", {"'l1.bias'", "undefined"});
}

TEST(FunctionalCallErrors, IsAnInvalidArgument) {
  Outer m;
  EXPECT_THROW(functional_call(*m, {{"zzz", torch::randn({1})}}, [] { return 0; }), std::invalid_argument);
}

TEST(FunctionalCallMoe, StrictSubstitutionOfEveryMoeTensor) {
  moecheck::harness::MoeConfig cfg;
  cfg.tie_gate_up = true;
  moecheck::harness::MoeLayer m(cfg);
  std::vector<std::string> names;
  for (const auto& s : list_slots(*m)) names.push_back(s.name);
  EXPECT_EQ(names, moecheck::harness::moe_tensor_names());
  NamedTensors all;
  for (const auto& s : list_slots(*m)) {
    if (s.name != "experts.up_proj") all[s.name] = torch::zeros_like(s.tensor);
  }
  for (SubstitutionMode mode : moecheck::harness::all_substitution_modes()) {
    const auto before = fingerprint_module(*m);
    FunctionalCallOptions o;
    o.mode = mode;
    o.strict = true;
    const torch::Tensor x = torch::randn({3, cfg.hidden});
    const torch::Tensor y = functional_call(m, all, x, o);
    EXPECT_TRUE(torch::equal(y, torch::zeros_like(y)));  // every expert matrix is zero
    EXPECT_EQ(compare_fingerprints(before, fingerprint_module(*m)), "");
  }
}

}  // namespace
