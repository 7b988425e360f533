// The composite target (harness/torch/torch_targets.cpp) is a target under test: how it computes
// may be tuned, what it returns may not. These tests keep the implementation it had before its
// ATen calls were cut down (`before::`, verbatim, with the glue of CompositeTarget::run) and
// require the target's outputs to be bit-identical to it (every weight bit, NaN, inf and -0
// included; every id) on generated cases of every family, dtype, layout and value family the
// composite path runs, on the throughput benchmark's case class, and on rows built from a
// palette of edge values (+-inf, NaN, signed zeros, ties, all-masked rows).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "harness/core/case.hpp"
#include "harness/core/generators.hpp"
#include "harness/core/target.hpp"
#include "harness/torch/dtype.hpp"
#include "harness/torch/torch_targets.hpp"
#include "reference/routing.hpp"

namespace moecheck {
namespace {

// ---- the implementation before the rewrite (verbatim) ---------------------------------------

namespace before {

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

/// CompositeTarget::run's routing glue (after validation, for T > 0).
void run(const MaterializedCase& m, bool cuda_, float* weights, std::int32_t* ids) {
  const auto& v = m.view;
  const auto& p = m.params;
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
}

}  // namespace before

// ---- comparison ---------------------------------------------------------------------------------

const std::vector<Family>& composite_families() {
  static const std::vector<Family> f = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw,
                                        Family::sigmoid_top1};
  return f;
}

std::string bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g (0x%08x)", static_cast<double>(x), u);
  return buf;
}

/// What the comparisons saw (so a test that compares nothing cannot pass).
struct Seen {
  std::int64_t slots = 0, zero_weights = 0, negative_zero_weights = 0, unit_weights = 0;
};
Seen seen;

/// Runs `target` and the implementation before the rewrite on `c` and requires every output bit
/// to agree (failures name the case and the first differing slot).
void expect_identical(Target& target, const RoutingCase& c, bool cuda) {
  const MaterializedCase m = materialize(c);
  ASSERT_TRUE(target.unsupported(c).empty()) << describe_case(c);
  const std::size_t n = static_cast<std::size_t>(c.T * c.k);
  // Both sides start from the same poison, so an unwritten slot shows as well.
  std::vector<float> w_new(n, std::numeric_limits<float>::quiet_NaN()), w_old(w_new);
  std::vector<std::int32_t> i_new(n, -7), i_old(i_new);
  const RunOutcome out = target.run(m, w_new.data(), i_new.data());
  ASSERT_EQ(out.status, RunOutcome::Status::ok) << out.error << "\n" << describe_case(c);
  if (c.T > 0) before::run(m, cuda, w_old.data(), i_old.data());
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(i_new[i], i_old[i]) << "id of row " << i / c.k << " slot " << i % c.k << "\n" << describe_case(c);
    ASSERT_EQ(std::memcmp(&w_new[i], &w_old[i], sizeof(float)), 0)
        << "weight of row " << i / c.k << " slot " << i % c.k << ": " << bits(w_new[i]) << " now, " << bits(w_old[i])
        << " before\n"
        << describe_case(c);
    ++seen.slots;
    seen.zero_weights += w_old[i] == 0.0f;
    seen.negative_zero_weights += w_old[i] == 0.0f && std::signbit(w_old[i]);
    seen.unit_weights += w_old[i] == 1.0f;
  }
}

GenConfig composite_config() {
  GenConfig cfg;
  cfg.families = composite_families();
  cfg.max_T = 96;
  cfg.max_E = 300;
  cfg.max_elems = 1 << 15;
  return cfg;
}

/// Rows drawn from a palette of edge values (exact in every dtype): infinities, NaN, signed
/// zeros, repeated values (ties), subnormal-ish and large magnitudes; some rows all masked,
/// some all +inf. Every family, dtype and layout; gemma4 with and without (odd) scales.
RoutingCase palette_case(std::uint64_t seed) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  static const float palette[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 2.0f, 3.25f, -7.0f, 0x1p-20f, 57344.0f,
                                  inf,  -inf,  nan,  inf,   -inf, nan,  1.0f,  0.0f};
  static const float scales[] = {1.0f, 0.5f, 0.0f, -0.0f, -2.0f, 1.5f, 100.0f, 0x1p-10f};
  Rng rng(seed);
  RoutingCase c;
  c.family = composite_families()[rng.below(composite_families().size())];
  c.dtype = static_cast<DType>(rng.below(3));
  static const std::int64_t Es[] = {1, 2, 3, 4, 5, 8, 17, 40};
  c.E = Es[rng.below(8)];
  c.k = c.family == Family::sigmoid_top1 ? 1 : static_cast<int>(rng.range(1, c.E));
  c.T = rng.range(1, 24);
  c.layout = static_cast<Layout>(rng.below(4));
  c.pad = c.layout == Layout::padded || c.layout == Layout::strided ? rng.range(1, 3) : 0;
  const int n_palette = static_cast<int>(sizeof palette / sizeof palette[0]);
  c.logits.resize(static_cast<std::size_t>(c.T * c.E));
  for (std::int64_t t = 0; t < c.T; ++t) {
    const std::uint64_t kind = rng.below(6);
    for (std::int64_t e = 0; e < c.E; ++e) {
      float v = palette[rng.below(n_palette)];
      if (kind == 0) v = rng.chance(0.5) ? -inf : nan;          // all masked
      if (kind == 1 && rng.chance(0.6)) v = inf;                // several +inf
      if (kind == 2) v = palette[rng.below(4)];                 // mostly ties of zeros and ones
      c.logits[static_cast<std::size_t>(t * c.E + e)] = v;
    }
  }
  if (c.family == Family::gemma4 && rng.chance(0.8)) {
    c.scale.resize(static_cast<std::size_t>(c.E));
    for (auto& s : c.scale) s = scales[rng.below(8)];
  }
  c.seed = seed;
  c.value_family = "palette";
  c.scale_family = c.scale.empty() ? "ones" : "palette";
  c.check_consistent();
  return c;
}

/// The throughput benchmark's case class (gemma4, fp32, normal logits, uniform scales, T <= 64,
/// E <= 256), through the generator.
GenConfig anchor_like_config() {
  GenConfig cfg;
  cfg.families = {Family::gemma4};
  cfg.dtypes = {DType::f32};
  cfg.layouts = {Layout::contiguous};
  cfg.value_families = {"normal"};
  cfg.scale_families = {"uniform"};
  cfg.max_T = 64;
  cfg.max_E = 256;
  cfg.large_T_probability = 0.0;
  return cfg;
}

void run_all(Target& target, bool cuda) {
  const GenConfig cfg = composite_config();
  for (std::uint64_t seed = 0; seed < 10000; ++seed) {
    expect_identical(target, generate_case(seed, cfg), cuda);
    if (::testing::Test::HasFatalFailure()) return;
  }
  GenConfig wide = composite_config();  // larger E and k
  wide.max_T = 8;
  wide.max_E = 2048;
  wide.max_k = 300;
  for (std::uint64_t seed = 0; seed < 300; ++seed) {
    expect_identical(target, generate_case(seed, wide), cuda);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (std::uint64_t seed = 0; seed < 2000; ++seed) {
    expect_identical(target, generate_case(seed, anchor_like_config()), cuda);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (std::uint64_t seed = 0; seed < 10000; ++seed) {
    expect_identical(target, palette_case(seed), cuda);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(Materialize, EveryLogitAtItsStridedPlaceAndGapsFilled) {
  // materialize() copies fp32 gap-free storage whole: the bytes must be those of the layout rule.
  GenConfig cfg = composite_config();
  cfg.families.clear();
  for (std::uint64_t seed = 0; seed < 2000; ++seed) {
    const RoutingCase c = generate_case(seed, cfg);
    const std::vector<std::uint8_t> bytes = c.materialize();
    const std::size_t es = dtype_size(c.dtype);
    ASSERT_EQ(bytes.size(), static_cast<std::size_t>(c.storage_elems()) * es) << describe_case(c);
    std::vector<char> logical(static_cast<std::size_t>(c.storage_elems()), 0);
    for (std::int64_t t = 0; t < c.T; ++t) {
      for (std::int64_t e = 0; e < c.E; ++e) {
        const std::size_t at = static_cast<std::size_t>(t * c.row_stride() + e * c.col_stride());
        const float v = c.logits[static_cast<std::size_t>(t * c.E + e)];
        std::uint32_t want = 0, got = 0;
        if (c.dtype == DType::f32) {
          std::memcpy(&want, &v, 4);
        } else {
          want = c.dtype == DType::f16 ? float_to_half_bits(v) : float_to_bf16_bits(v);
        }
        std::memcpy(&got, bytes.data() + at * es, es);
        ASSERT_EQ(got, want) << "t " << t << " e " << e << "\n" << describe_case(c);
        logical[at] = 1;
      }
    }
    const std::uint32_t gap = c.dtype == DType::f32 ? 0x7fc0bad0u : c.dtype == DType::f16 ? 0x7ebau : 0x7fbau;
    for (std::size_t i = 0; i < logical.size(); ++i) {
      if (logical[i]) continue;
      std::uint32_t got = 0;
      std::memcpy(&got, bytes.data() + i * es, es);
      ASSERT_EQ(got, gap) << "gap element " << i << "\n" << describe_case(c);
    }
  }
}

TEST(CompositeIdentity, GeneratedCasesCoverTheDomain) {
  // The comparison below is only as good as the cases it sees: every family, dtype, layout and
  // value family the composite path runs must occur.
  const GenConfig cfg = composite_config();
  std::vector<int> family(5), dtype(3), layout(4);
  std::vector<std::string> values;
  for (std::uint64_t seed = 0; seed < 10000; ++seed) {
    const RoutingCase c = generate_case(seed, cfg);
    ++family[static_cast<std::size_t>(c.family)];
    ++dtype[static_cast<std::size_t>(c.dtype)];
    ++layout[static_cast<std::size_t>(c.layout)];
    if (std::find(values.begin(), values.end(), c.value_family) == values.end()) values.push_back(c.value_family);
  }
  for (Family f : composite_families()) EXPECT_GT(family[static_cast<std::size_t>(f)], 100) << family_name(f);
  for (int d : dtype) EXPECT_GT(d, 300);
  for (int l : layout) EXPECT_GT(l, 200);
  EXPECT_EQ(values.size(), all_value_families().size());
}

TEST(CompositeIdentity, CpuOutputsAreBitIdenticalToBefore) {
  std::unique_ptr<Target> target = make_target("composite", {});
  seen = {};
  run_all(*target, /*cuda=*/false);
  // Masked rows and zero scales (zeros, -0 from negative zero scales), single +inf maxima and
  // k = 1 rows (exact ones) were all among the compared outputs.
  std::printf("compared %lld weight/id slots: %lld zero weights (%lld of them -0), %lld weights of exactly 1\n",
              static_cast<long long>(seen.slots), static_cast<long long>(seen.zero_weights),
              static_cast<long long>(seen.negative_zero_weights), static_cast<long long>(seen.unit_weights));
  EXPECT_GT(seen.slots, 1500000);
  EXPECT_GT(seen.zero_weights, 100000);
  EXPECT_GT(seen.negative_zero_weights, 10000);
  EXPECT_GT(seen.unit_weights, 10000);
}

TEST(CompositeIdentity, CudaOutputsAreBitIdenticalToBefore) {
  if (!torch_cuda_available()) GTEST_SKIP() << "no CUDA device for LibTorch";
  std::unique_ptr<Target> target = make_target("composite:cuda", {});
  run_all(*target, /*cuda=*/true);
}

}  // namespace
}  // namespace moecheck
