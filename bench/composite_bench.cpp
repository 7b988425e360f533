// moecheck routing benchmarks: the LibTorch composite baseline (built only when LibTorch's
// CUDA backend is linked, MOECHECK_WITH_TORCH_CUDA).
//
// BM_Composite/dtype:<d>/E:<E>/k:<k>/T:<T>/manual_time times what a model without the fused
// kernel runs for gemma4 routing: softmax over E in fp32, topk, renormalise, gather the
// per-expert scale, multiply. Same inputs (generator, rotation over buffers several times
// L2), same stream, same timing loop and counters as BM_Route. The ids stay int64 as
// torch.topk returns them (a model indexes with them directly).
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "bench/bench_common.hpp"
#include "kernels/torch_ops.hpp"

namespace moecheck::bench {
namespace {

using kernels::GatingType;

struct CompositeFixture final : Fixture {
  int E = 0, k = 0;
  std::int64_t T = 0;
  DeviceBuffer gating, scale_buf;
  at::Tensor pool;   ///< [slots, T, E] view of `gating`
  at::Tensor scale;  ///< [E] view of `scale_buf`
  std::vector<float> host_scale;
  std::int64_t slots = 0, next = 0;
  int launches_per_batch = 0;
  std::string failure;

  ~CompositeFixture() override {
    pool = at::Tensor();
    scale = at::Tensor();
    // Hand LibTorch's cached blocks back so that the next configuration can allocate.
    c10::cuda::CUDACachingAllocator::emptyCache();
  }
};

c10::cuda::CUDAStream torch_stream() {
  return c10::cuda::getStreamFromExternal(device_info().stream, static_cast<c10::DeviceIndex>(device_info().device));
}

/// The composite routing of one [T, E] slice; returns (weights fp32 [T, k], ids int64 [T, k]).
std::tuple<at::Tensor, at::Tensor> composite(const at::Tensor& g, std::int64_t k, const at::Tensor& scale) {
  const at::Tensor p = at::softmax(g, /*dim=*/-1, at::kFloat);
  auto [w, ids] = at::topk(p, k, /*dim=*/-1, /*largest=*/true, /*sorted=*/true);
  w = w / w.sum(-1, /*keepdim=*/true);
  w = w * scale.index_select(0, ids.reshape({-1})).reshape(ids.sizes());
  return {w, ids};
}

std::string create(GatingType dtype, int E, int k, std::int64_t T, CompositeFixture* f) {
  f->E = E;
  f->k = k;
  f->T = T;
  const std::size_t elem = dtype_bytes(dtype);
  const std::size_t slot_bytes = static_cast<std::size_t>(T) * static_cast<std::size_t>(E) * elem;
  std::size_t budget = 0;
  if (std::string e = memory_budget(&budget); !e.empty()) return e;
  // LibTorch's temporaries (fp32 probabilities [T, E], topk outputs) need room as well.
  const std::size_t temp_bytes = static_cast<std::size_t>(T) * static_cast<std::size_t>(E) * 4 * 2 +
                                 static_cast<std::size_t>(T) * static_cast<std::size_t>(k) * 32;
  if (budget <= temp_bytes) return "not enough device memory for LibTorch's temporaries";
  f->slots = rotation_slots(slot_bytes, (budget - temp_bytes) / slot_bytes);
  if (f->slots == 0) return "not enough device memory for one input (" + std::to_string(slot_bytes) + " bytes)";
  if (std::string e = f->gating.allocate(static_cast<std::size_t>(f->slots) * slot_bytes); !e.empty()) return e;
  if (std::string e = f->scale_buf.allocate(static_cast<std::size_t>(E) * sizeof(float)); !e.empty()) return e;
  MOECHECK_BENCH_TRY(fill_normal(f->gating.get(), f->slots * T * E, dtype, gating_seed(dtype, E, k, T),
                                 device_info().stream));
  f->host_scale = make_scale(E);
  MOECHECK_BENCH_TRY(cudaMemcpyAsync(f->scale_buf.get(), f->host_scale.data(), f->host_scale.size() * sizeof(float),
                                     cudaMemcpyHostToDevice, device_info().stream));
  MOECHECK_BENCH_TRY(cudaStreamSynchronize(device_info().stream));
  const auto opts = at::TensorOptions().device(at::kCUDA, static_cast<c10::DeviceIndex>(device_info().device));
  f->pool = at::from_blob(f->gating.get(), {f->slots, T, E}, opts.dtype(kernels::scalar_type_of(dtype)));
  f->scale = at::from_blob(f->scale_buf.get(), {E}, opts.dtype(at::kFloat));
  return {};
}

/// Plausibility of one run on slot 0 (the composite is not bitwise comparable with the
/// kernels: its ties and roundings differ): every row has k distinct ids in [0, E), finite
/// positive weights, and the weights divided by the scale sum to 1.
std::string verify(const CompositeFixture& f) {
  auto [w, ids] = composite(f.pool.select(0, 0), f.k, f.scale);
  const at::Tensor wc = w.cpu().contiguous();
  const at::Tensor ic = ids.cpu().contiguous();
  const float* wp = wc.data_ptr<float>();
  const std::int64_t* ip = ic.data_ptr<std::int64_t>();
  for (std::int64_t r = 0; r < f.T; ++r) {
    double sum = 0;
    for (int j = 0; j < f.k; ++j) {
      const std::int64_t id = ip[r * f.k + j];
      const float wv = wp[r * f.k + j];
      const std::string at_ = " at row " + std::to_string(r) + " slot " + std::to_string(j);
      if (id < 0 || id >= f.E) return "composite: id " + std::to_string(id) + " out of range" + at_;
      for (int jj = 0; jj < j; ++jj)
        if (ip[r * f.k + jj] == id) return "composite: duplicate id" + at_;
      if (!std::isfinite(wv) || wv <= 0) return "composite: weight " + std::to_string(wv) + at_;
      sum += static_cast<double>(wv) / f.host_scale[static_cast<std::size_t>(id)];
    }
    if (std::fabs(sum - 1.0) > 1e-4)
      return "composite: unscaled weights of row " + std::to_string(r) + " sum to " + std::to_string(sum);
  }
  return {};
}

void bm_composite(benchmark::State& state, GatingType dtype, int E, int k, std::int64_t T) {
  const std::string key = "composite/" + std::string(dtype_name(dtype)) + "/" + std::to_string(E) + "/" +
                          std::to_string(k) + "/" + std::to_string(T);
  const c10::cuda::CUDAStreamGuard stream_guard(torch_stream());
  auto* f = static_cast<CompositeFixture*>(find_fixture(key));
  if (f == nullptr) {
    release_fixture();
    auto nf = std::make_unique<CompositeFixture>();
    std::string err;
    try {
      err = create(dtype, E, k, T, nf.get());
    } catch (const std::exception& e) {
      err = std::string("composite setup: ") + e.what();
    }
    MOECHECK_BENCH_REQUIRE(state, err);
    f = static_cast<CompositeFixture*>(install_fixture(key, std::move(nf)));
  }
  MOECHECK_BENCH_REQUIRE(state, f->failure);
  const LaunchFn launch = [f]() -> std::string {
    try {
      const std::int64_t s = f->next;
      f->next = f->next + 1 == f->slots ? 0 : f->next + 1;
      (void)composite(f->pool.select(0, s), f->k, f->scale);
    } catch (const std::exception& e) {
      return std::string("composite: ") + e.what();
    }
    return {};
  };
  if (f->launches_per_batch == 0) {
    std::string err;
    try {
      err = verify(*f);
    } catch (const std::exception& e) {
      err = std::string("composite check: ") + e.what();
    }
    if (err.empty()) err = plan_launches(device_info().stream, launch, &f->launches_per_batch);
    if (!err.empty()) {
      f->failure = err;
      MOECHECK_BENCH_REQUIRE(state, err);
    }
  }
  run_timed(state, device_info().stream, launch, f->launches_per_batch, effective_bytes(dtype, E, k, T), T);
}

}  // namespace

void register_composite_benchmarks() {
  for (GatingType dtype : grid_dtypes()) {
    for (const Shape& s : grid_shapes()) {
      for (std::int64_t T : grid_tokens()) {
        const std::string name = std::string("BM_Composite/dtype:") + dtype_name(dtype) + "/E:" +
                                 std::to_string(s.E) + "/k:" + std::to_string(s.k) + "/T:" + std::to_string(T);
        const int E = s.E, k = s.k;
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { bm_composite(st, dtype, E, k, T); })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
}

}  // namespace moecheck::bench
