// The fused routing kernels on the device: random differential tests against the host
// emulation (bit for bit: same algorithm, same reduction order, explicitly rounded math) and
// the reference oracle, with poisoned outputs; T = 0, T = 70000 (> 65535), E up to 4096,
// strided / transposed / misaligned layouts; bitwise determinism across launches and streams;
// the GPU-only planted bugs (grid_overflow, shared_race) detected; every CPU-visible mutant
// identical to its emulation; launch errors; all three variants (warp, block, thread per row),
// thread_per_row with every lane count (launch_thread_per_row_lanes). Skips cleanly without a
// CUDA device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "harness/core/generators.hpp"
#include "kernels/routing_mutants.hpp"
#include "properties/support/kernel_problem.hpp"
#include "properties/support/cuda_test.hpp"
#include "reference/oracle.hpp"

namespace {

namespace K = moecheck::kernels;
using namespace moecheck::testing;  // KernelProblem, make_problem, view_of, DType, Family, ...

class KernelGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!moecheck::testing::have_cuda_device()) GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount failed or returned 0)";
  }
};

struct Output {
  std::vector<float> w;
  std::vector<std::int32_t> ids;
};

/// Device buffers for one problem (freed on scope exit).
struct DeviceBuffers {
  void* g = nullptr;
  float* s = nullptr;
  float* w = nullptr;
  std::int32_t* ids = nullptr;
  ~DeviceBuffers() {
    cudaFree(g);
    cudaFree(s);
    cudaFree(w);
    cudaFree(ids);
  }
};

moecheck::CheckReport oracle(const KernelProblem& p, const Output& o) {
  moecheck::OracleOptions opt;
  opt.precision = moecheck::fp32_exact_selection();
  return moecheck::check_routing(view_of(p), params_of(p), o.w.data(), o.ids.data(), opt);
}

Output emulate(const KernelProblem& p, K::Variant v, K::Mutant m = K::Mutant::none) {
  Output o;
  const std::size_t n = static_cast<std::size_t>(p.c.T * p.c.k);
  o.w.resize(n);
  o.ids.resize(n);
  moecheck::poison_outputs(o.w.data(), o.ids.data(), static_cast<std::int64_t>(n));
  std::string msg;
  EXPECT_EQ(K::emulate_routing(p.host_args(o.w.data(), o.ids.data()), v, m, &msg), K::ArgStatus::ok) << msg;
  return o;
}

/// Runs the kernel on `stream` with outputs poisoned on the device first. `offset_elems`
/// shifts the gating pointer (misaligned base: no vector loads). lanes >= 0: thread_per_row
/// with that many lanes per row (launch_thread_per_row_lanes_mutant; v is ignored).
void run_device(const KernelProblem& p, K::Variant v, K::Mutant m, Output* out, cudaStream_t stream = nullptr,
                int offset_elems = 0, int lanes = -1) {
  const std::size_t n = static_cast<std::size_t>(p.c.T * p.c.k);
  const int bytes = static_cast<int>(moecheck::dtype_size(p.c.dtype));
  DeviceBuffers b;
  CUDA_ASSERT(cudaMalloc(&b.g, p.storage.size() + 64));
  CUDA_ASSERT(cudaMalloc((void**)&b.w, std::max<std::size_t>(n, 1) * sizeof(float)));
  CUDA_ASSERT(cudaMalloc((void**)&b.ids, std::max<std::size_t>(n, 1) * sizeof(std::int32_t)));
  char* gp = static_cast<char*>(b.g) + offset_elems * bytes;
  if (!p.storage.empty()) CUDA_ASSERT(cudaMemcpy(gp, p.storage.data(), p.storage.size(), cudaMemcpyHostToDevice));
  if (!p.c.scale.empty()) {
    CUDA_ASSERT(cudaMalloc((void**)&b.s, p.c.scale.size() * sizeof(float)));
    CUDA_ASSERT(cudaMemcpy(b.s, p.c.scale.data(), p.c.scale.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  out->w.assign(n, 0.0f);
  out->ids.assign(n, 0);
  moecheck::poison_outputs(out->w.data(), out->ids.data(), static_cast<std::int64_t>(n));
  if (n) {
    CUDA_ASSERT(cudaMemcpy(b.w, out->w.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_ASSERT(cudaMemcpy(b.ids, out->ids.data(), n * sizeof(std::int32_t), cudaMemcpyHostToDevice));
  }
  if (lanes >= 0) {
    CUDA_ASSERT(K::launch_thread_per_row_lanes_mutant(p.args(gp, b.s, b.w, b.ids), lanes, stream, m));
  } else {
    CUDA_ASSERT(K::launch_routing_mutant(p.args(gp, b.s, b.w, b.ids), v, stream, m));
  }
  CUDA_ASSERT(cudaStreamSynchronize(stream));
  if (n) {
    CUDA_ASSERT(cudaMemcpy(out->w.data(), b.w, n * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_ASSERT(cudaMemcpy(out->ids.data(), b.ids, n * sizeof(std::int32_t), cudaMemcpyDeviceToHost));
  }
}

/// Bitwise equality; NaNs compare equal to NaNs (mutants may produce NaN, whose payload
/// differs between the host and the device).
std::string first_difference(const Output& a, const Output& b, int k) {
  if (a.w.size() != b.w.size()) return "sizes differ";
  for (std::size_t i = 0; i < a.w.size(); ++i) {
    std::uint32_t x, y;
    std::memcpy(&x, &a.w[i], 4);
    std::memcpy(&y, &b.w[i], 4);
    const bool both_nan = std::isnan(a.w[i]) && std::isnan(b.w[i]) && x != moecheck::kPoisonWeightBits &&
                          y != moecheck::kPoisonWeightBits;
    if (a.ids[i] != b.ids[i] || (x != y && !both_nan)) {
      return "row " + std::to_string(i / static_cast<std::size_t>(k)) + " slot " + std::to_string(i % static_cast<std::size_t>(k)) +
             ": device id " + std::to_string(a.ids[i]) + " w " + std::to_string(a.w[i]) + " / emulation id " +
             std::to_string(b.ids[i]) + " w " + std::to_string(b.w[i]);
    }
  }
  return "";
}

std::vector<K::Variant> variants_for(int E) {
  std::vector<K::Variant> v{K::Variant::block_per_row, K::Variant::thread_per_row};
  if (E <= K::kWarpMaxExperts) v.insert(v.begin(), K::Variant::warp_per_row);
  return v;
}

void check_against_emulation(const KernelProblem& p, K::Mutant m = K::Mutant::none, int offset = 0) {
  for (K::Variant v : variants_for(static_cast<int>(p.c.E))) {
    SCOPED_TRACE("replay: " + p.describe() + " variant=" + K::variant_name(v) + " mutant=" + K::mutant_name(m) +
                 " offset=" + std::to_string(offset));
    Output dev;
    run_device(p, v, m, &dev, nullptr, offset);
    if (::testing::Test::HasFatalFailure()) return;
    const Output emu = emulate(p, v, m);
    const std::string diff = first_difference(dev, emu, p.c.k);
    ASSERT_EQ(diff, "") << "device and host emulation differ";
    if (m == K::Mutant::none) {
      const auto rep = oracle(p, dev);
      ASSERT_TRUE(rep.ok()) << rep.str();
    }
  }
}

const int kEs[] = {1, 2, 3, 8, 17, 31, 32, 33, 64, 65, 100, 128, 129, 160, 255, 256, 257, 384, 500, 512,
                   513, 768, 1000, 1024, 1500, 2048, 3000, 4096};

TEST_F(KernelGpu, RandomProblemsMatchEmulationAndOracle) {
  for (std::uint64_t seed = 1; seed <= 400; ++seed) {
    Rng rng(seed * 0x2545f4914f6cdd1dull);
    const int E = kEs[rng.below(sizeof(kEs) / sizeof(kEs[0]))];
    const int kmax = std::min(E, K::kMaxK);
    const int k = rng.below(3) == 0 ? 1 + static_cast<int>(rng.below(static_cast<std::uint64_t>(kmax)))
                                    : std::min(kmax, 1 + static_cast<int>(rng.below(8)));
    const std::int64_t T = rng.below(20) == 0 ? 0 : 1 + static_cast<std::int64_t>(rng.below(E >= 1000 ? 300 : 3000));
    const auto dtype = static_cast<DType>(rng.below(3));
    const auto family = static_cast<Family>(rng.below(3));
    const auto layout = static_cast<Layout>(rng.below(4));
    const bool scaled = rng.below(2) == 0;
    const auto p = make_problem(seed, dtype, T, E, k, family, layout, kMixedValues, scaled ? scale_family_for(seed) : "ones");
    check_against_emulation(p);
    if (HasFatalFailure()) return;
  }
}

TEST_F(KernelGpu, Every16BitPatternMatchesEmulation) {
  // All 65536 bit patterns of fp16 and bf16 (NaNs of both signs and every payload, +-inf,
  // +-0, subnormals) as 512 rows of 128 experts, in order and shuffled: the device's
  // canonicalisation and keys (packed two per word in the thread variant) must match the
  // host emulation bit for bit, and the oracle must accept the result.
  for (const DType dt : {DType::bf16, DType::f16}) {
    for (const bool shuffled : {false, true}) {
      for (const int k : {1, 2, 5, 8, 16}) {
        auto p = make_problem(900 + k, dt, 512, 128, k, Family::gemma4, Layout::contiguous, kMixedValues, "mixed");
        ASSERT_EQ(p.storage.size(), std::size_t{65536} * 2);
        std::vector<std::uint16_t> bits(65536);
        for (std::uint32_t i = 0; i < 65536; ++i) bits[i] = static_cast<std::uint16_t>(i);
        if (shuffled) {  // Fisher-Yates with the harness's generator
          Rng rng(77 + static_cast<std::uint64_t>(k));
          for (std::size_t i = bits.size(); i > 1; --i) std::swap(bits[i - 1], bits[rng.below(i)]);
        }
        std::memcpy(p.storage.data(), bits.data(), p.storage.size());
        SCOPED_TRACE(std::string(dt == DType::bf16 ? "bf16" : "f16") + (shuffled ? " shuffled" : " in order") +
                     " k=" + std::to_string(k));
        check_against_emulation(p);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_F(KernelGpu, MisalignedBaseAndOddStrides) {
  // A base pointer off by one element and odd row strides force the scalar load path.
  std::uint64_t seed = 700;
  for (int E : {64, 128, 256, 512, 2048}) {
    for (int dt = 0; dt < 3; ++dt) {
      ++seed;
      const auto p = make_problem(seed, static_cast<DType>(dt), 257, E, 8, Family::gemma4, Layout::padded, kMixedValues,
                                  scale_family_for(seed));
      check_against_emulation(p, K::Mutant::none, 1);
      check_against_emulation(p, K::Mutant::none, 0);
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(KernelGpu, ZeroRows) {
  for (K::Variant v : {K::Variant::warp_per_row, K::Variant::block_per_row, K::Variant::thread_per_row,
                       K::Variant::automatic}) {
    K::RoutingArgs a;
    a.T = 0;
    a.E = 64;
    a.k = 4;
    a.row_stride = 64;
    EXPECT_EQ(K::launch_routing(a, v, nullptr), cudaSuccess);
  }
}

TEST_F(KernelGpu, MoreThan65535Rows) {
  for (int dt : {0, 2}) {
    for (int E : {128, 1024}) {
      const auto p = make_problem(800 + E + dt, static_cast<DType>(dt), 70000, E, 8, Family::gemma4, Layout::contiguous,
                                  kMixedValues, "mixed");
      check_against_emulation(p);
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(KernelGpu, ThreadPerRowTilesAndLayouts) {
  // Many 32-row tiles per warp (grid-stride and the staged chunk stream continued across
  // tiles), partial last tiles, every k bucket, rows that are not a whole number of chunks,
  // staged (contiguous) and direct (padded / transposed / strided) layouts.
  // Both one thread per row (lanes = 1) and the launcher's choice (lane groups below
  // 132 * 512 rows for layouts of 16-byte units).
  auto check = [](const KernelProblem& p) {
    const Output emu = emulate(p, K::Variant::thread_per_row);
    for (int lanes : {1, 0}) {
      Output dev;
      run_device(p, K::Variant::thread_per_row, K::Mutant::none, &dev, nullptr, 0, lanes);
      if (::testing::Test::HasFatalFailure()) return;
      ASSERT_EQ(first_difference(dev, emu, p.c.k), "") << p.describe() << " lanes " << lanes;
      const auto rep = oracle(p, dev);
      ASSERT_TRUE(rep.ok()) << rep.str() << "\n" << p.describe() << " lanes " << lanes;
    }
  };
  std::uint64_t seed = 1500;
  for (int k : {1, 2, 4, 5, 8, 16, 32}) {
    for (int E : {8, 60, 64, 100, 128, 200, 256, 1000}) {
      if (k > E) continue;
      for (int layout = 0; layout < 4; ++layout) {
        ++seed;
        check(make_problem(seed, static_cast<DType>(seed % 3), 3000 + static_cast<std::int64_t>(seed % 31), E, k,
                           static_cast<Family>(seed % 3), static_cast<Layout>(layout), kMixedValues,
                           seed % 2 == 0 ? scale_family_for(seed / 2) : "ones"));
        if (HasFatalFailure()) return;
      }
    }
  }
  // More tiles than resident warps: each warp walks several tiles.
  struct Big {
    DType dtype;
    int E, k;
    Family family;
  };
  for (const Big& b : {Big{DType::bf16, 64, 4, Family::gemma4}, Big{DType::f32, 128, 8, Family::softmax_topk_raw},
                       Big{DType::bf16, 256, 8, Family::softmax_topk}, Big{DType::f16, 100, 8, Family::gemma4}}) {
    ++seed;
    check(make_problem(seed, b.dtype, 150001, b.E, b.k, b.family, Layout::contiguous, kMixedValues, "mixed"));
    if (HasFatalFailure()) return;
  }
}

TEST_F(KernelGpu, ThreadLaneGroupsEveryLaneCount) {
  // thread_per_row with every lane count (1 to 32 lanes per row; values below KB / 2 are
  // raised), every k bucket, dtype and family, rows of one to 512 16-byte units, partial last
  // warps and a grid-stride tail, and every CPU-visible mutant: the same bits as the
  // one-thread-per-row emulation.
  std::uint64_t seed = 4100;
  for (int k : {1, 3, 4, 8, 16, 32}) {
    for (int E : {8, 64, 128, 256, 512, 2048}) {
      if (k > E) continue;
      for (int dt = 0; dt < 3; ++dt) {
        ++seed;
        const std::int64_t T = seed % 4 == 0 ? 70001 : 1 + static_cast<std::int64_t>(seed * 37 % 3000);
        const auto p = make_problem(seed, static_cast<DType>(dt), E >= 2048 && T > 3000 ? 3001 : T, E, k,
                                    static_cast<Family>(seed % 3), Layout::contiguous, kMixedValues,
                                    scale_family_for(seed));
        const Output emu = emulate(p, K::Variant::thread_per_row);
        for (int lanes : {1, 2, 4, 8, 16, 32}) {
          Output dev;
          run_device(p, K::Variant::thread_per_row, K::Mutant::none, &dev, nullptr, 0, lanes);
          if (HasFatalFailure()) return;
          ASSERT_EQ(first_difference(dev, emu, p.c.k), "") << p.describe() << " lanes " << lanes;
        }
      }
    }
  }
  for (int i = 1; i < static_cast<int>(K::Mutant::count_); ++i) {
    const auto m = static_cast<K::Mutant>(i);
    if (K::mutant_is_gpu_only(m)) continue;
    ++seed;
    const auto p = make_problem(seed, static_cast<DType>(seed % 3), 301, 64, 8, static_cast<Family>(seed % 3),
                                Layout::contiguous, kMixedValues, scale_family_for(seed));
    const Output emu = emulate(p, K::Variant::thread_per_row, m);
    for (int lanes : {4, 8, 32}) {
      Output dev;
      run_device(p, K::Variant::thread_per_row, m, &dev, nullptr, 0, lanes);
      if (HasFatalFailure()) return;
      ASSERT_EQ(first_difference(dev, emu, p.c.k), "") << p.describe() << " mutant " << K::mutant_name(m)
                                                       << " lanes " << lanes;
    }
  }
  // Requests the launcher must refuse before touching the device.
  K::RoutingArgs a;
  a.T = 4;
  a.E = 64;
  a.k = 4;
  a.row_stride = 64;
  a.gating = reinterpret_cast<const void*>(16);
  a.weights = reinterpret_cast<float*>(16);
  a.ids = reinterpret_cast<std::int32_t*>(16);
  for (int lanes : {-1, 3, 64}) EXPECT_EQ(K::launch_thread_per_row_lanes(a, lanes, nullptr), cudaErrorInvalidValue);
}

TEST_F(KernelGpu, LargeExperts) {
  for (int E : {2049, 3333, 4096}) {
    for (int fam = 0; fam < 3; ++fam) {
      const auto p = make_problem(900 + E + fam, DType::bf16, 200, E, fam == 2 ? 32 : 8, static_cast<Family>(fam),
                                  Layout::transposed, kMixedValues, "mixed");
      check_against_emulation(p);
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(KernelGpu, BitwiseDeterministicAcrossLaunchesAndStreams) {
  const auto p = make_problem(1000, DType::bf16, 20000, 128, 8, Family::gemma4, Layout::contiguous, kMixedValues,
                              "mixed");
  const auto q = make_problem(1001, DType::f32, 3000, 2048, 8, Family::softmax_topk_raw, Layout::contiguous);
  for (const KernelProblem* pp : {&p, &q}) {
    for (K::Variant v : variants_for(static_cast<int>(pp->c.E))) {
      cudaStream_t s1 = nullptr, s2 = nullptr;
      CUDA_ASSERT(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
      CUDA_ASSERT(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
      Output first;
      run_device(*pp, v, K::Mutant::none, &first);
      for (int rep = 0; rep < 3; ++rep) {
        Output a, b;
        run_device(*pp, v, K::Mutant::none, &a, s1);
        run_device(*pp, v, K::Mutant::none, &b, s2);
        EXPECT_EQ(first_difference(a, first, pp->c.k), "");
        EXPECT_EQ(first_difference(b, first, pp->c.k), "");
      }
      cudaStreamDestroy(s1);
      cudaStreamDestroy(s2);
    }
  }
}

TEST_F(KernelGpu, ConcurrentStreamsSameResult) {
  // Two launches in flight at once on two streams, each with its own buffers.
  const auto p = make_problem(1100, DType::f16, 50000, 256, 8, Family::softmax_topk, Layout::contiguous);
  const std::size_t n = static_cast<std::size_t>(p.c.T * p.c.k);
  DeviceBuffers b1, b2;
  CUDA_ASSERT(cudaMalloc(&b1.g, p.storage.size()));
  CUDA_ASSERT(cudaMemcpy(b1.g, p.storage.data(), p.storage.size(), cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMalloc((void**)&b1.w, n * 4));
  CUDA_ASSERT(cudaMalloc((void**)&b1.ids, n * 4));
  CUDA_ASSERT(cudaMalloc((void**)&b2.w, n * 4));
  CUDA_ASSERT(cudaMalloc((void**)&b2.ids, n * 4));
  cudaStream_t s1 = nullptr, s2 = nullptr;
  CUDA_ASSERT(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CUDA_ASSERT(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  for (int rep = 0; rep < 4; ++rep) {
    CUDA_ASSERT(K::launch_routing(p.args(b1.g, nullptr, b1.w, b1.ids), K::Variant::automatic, s1));
    CUDA_ASSERT(K::launch_routing(p.args(b1.g, nullptr, b2.w, b2.ids), K::Variant::automatic, s2));
  }
  CUDA_ASSERT(cudaDeviceSynchronize());
  Output a, c;
  a.w.resize(n);
  a.ids.resize(n);
  c.w.resize(n);
  c.ids.resize(n);
  CUDA_ASSERT(cudaMemcpy(a.w.data(), b1.w, n * 4, cudaMemcpyDeviceToHost));
  CUDA_ASSERT(cudaMemcpy(a.ids.data(), b1.ids, n * 4, cudaMemcpyDeviceToHost));
  CUDA_ASSERT(cudaMemcpy(c.w.data(), b2.w, n * 4, cudaMemcpyDeviceToHost));
  CUDA_ASSERT(cudaMemcpy(c.ids.data(), b2.ids, n * 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(first_difference(a, c, p.c.k), "");
  EXPECT_EQ(first_difference(a, emulate(p, K::Variant::automatic), p.c.k), "");
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
}

TEST_F(KernelGpu, CpuVisibleMutantsMatchTheirEmulation) {
  std::uint64_t seed = 1200;
  for (int i = 1; i < static_cast<int>(K::Mutant::count_); ++i) {
    const auto m = static_cast<K::Mutant>(i);
    if (K::mutant_is_gpu_only(m)) continue;
    for (int E : {64, 100, 1024}) {
      const auto layout = m == K::Mutant::ignore_col_stride ? Layout::transposed : Layout::contiguous;
      ++seed;
      const auto p = make_problem(seed, static_cast<DType>(seed % 3), 300, E, 4, static_cast<Family>(seed % 3), layout,
                                  kMixedValues, scale_family_for(seed));
      check_against_emulation(p, m);
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(KernelGpu, GridOverflowMutantIsDetected) {
  const auto p = make_problem(1300, DType::bf16, 70000, 128, 8, Family::gemma4, Layout::contiguous, "normal",
                              "uniform");
  for (K::Variant v : {K::Variant::warp_per_row, K::Variant::block_per_row, K::Variant::thread_per_row}) {
    Output good, bad;
    run_device(p, v, K::Mutant::none, &good);
    run_device(p, v, K::Mutant::grid_overflow, &bad);
    EXPECT_TRUE(oracle(p, good).ok());
    const auto rep = oracle(p, bad);
    ASSERT_FALSE(rep.ok()) << "grid_overflow not detected (" << K::variant_name(v) << ")";
    EXPECT_EQ(rep.violations.front().check, "unwritten") << rep.str();
    EXPECT_EQ(rep.violations.front().row, 65536) << rep.str();
  }
  // thread_per_row's lane groups (70000 rows would take one thread per row).
  for (int lanes : {2, 8}) {
    Output bad;
    run_device(p, K::Variant::thread_per_row, K::Mutant::grid_overflow, &bad, nullptr, 0, lanes);
    const auto rep = oracle(p, bad);
    ASSERT_FALSE(rep.ok()) << "grid_overflow not detected (lanes " << lanes << ")";
    EXPECT_EQ(rep.violations.front().row, 65536) << rep.str();
  }
}

/// Runs variant v with the shared_race mutant on p up to 8 times (after checking that the
/// correct kernel passes the oracle there) and expects oracle violations. Whether a given row
/// is hit depends on scheduling; over tens of thousands of rows some rows always are.
void expect_shared_race_detected(const KernelProblem& p, K::Variant v) {
  Output good;
  run_device(p, v, K::Mutant::none, &good);
  ASSERT_TRUE(oracle(p, good).ok());
  std::int64_t caught = 0;
  int launches = 0;
  for (; launches < 8 && caught == 0; ++launches) {
    Output bad;
    run_device(p, v, K::Mutant::shared_race, &bad);
    caught += oracle(p, bad).violations_total;
  }
  std::printf("shared_race (%s): %lld violations after %d launch(es)\n", K::variant_name(v),
              static_cast<long long>(caught), launches);
  EXPECT_GT(caught, 0) << "shared_race not detected in " << launches << " launches (" << K::variant_name(v) << ")";
}

TEST_F(KernelGpu, SharedRaceMutantIsDetected) {
  // block_per_row: without the barrier a fast warp rewrites its candidate list for the next
  // row while warp 0 is still merging the current one.
  expect_shared_race_detected(make_problem(1400, DType::bf16, 40000, 2048, 8, Family::gemma4, Layout::contiguous,
                                           "normal", "uniform"),
                              K::Variant::block_per_row);
}

TEST_F(KernelGpu, SharedRaceMutantIsDetectedThreadPerRow) {
  // thread_per_row: without the wait between the cooperative chunk copy and the lanes' reads,
  // a lane reads a chunk buffer before the copies into it have landed (at the latest the
  // first chunk of every warp, which is copied right before it is read).
  expect_shared_race_detected(make_problem(1401, DType::bf16, 40000, 128, 8, Family::gemma4, Layout::contiguous,
                                           "normal", "uniform"),
                              K::Variant::thread_per_row);
}

TEST_F(KernelGpu, LaunchErrors) {
  std::vector<float> host(64 * 4, 0.0f);
  DeviceBuffers b;
  CUDA_ASSERT(cudaMalloc(&b.g, 4096 * 4 * 4));
  CUDA_ASSERT(cudaMalloc((void**)&b.w, 4096));
  CUDA_ASSERT(cudaMalloc((void**)&b.ids, 4096));
  K::RoutingArgs a;
  a.gating = b.g;
  a.T = 4;
  a.E = 64;
  a.k = 4;
  a.row_stride = 64;
  a.weights = b.w;
  a.ids = b.ids;
  EXPECT_EQ(K::launch_routing(a, K::Variant::automatic, nullptr), cudaSuccess);
  auto bad = a;
  bad.k = 0;
  EXPECT_EQ(K::launch_routing(bad, K::Variant::automatic, nullptr), cudaErrorInvalidValue);
  bad.k = 65;
  EXPECT_EQ(K::launch_routing(bad, K::Variant::automatic, nullptr), cudaErrorInvalidValue);
  bad = a;
  bad.E = 4097;
  bad.row_stride = 4097;
  EXPECT_EQ(K::launch_routing(bad, K::Variant::automatic, nullptr), cudaErrorInvalidValue);
  bad = a;
  bad.gating = nullptr;
  EXPECT_EQ(K::launch_routing(bad, K::Variant::automatic, nullptr), cudaErrorInvalidValue);
  bad = a;
  bad.E = 600;
  bad.row_stride = 600;
  EXPECT_EQ(K::launch_routing(bad, K::Variant::warp_per_row, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(K::launch_routing(bad, K::Variant::thread_per_row, nullptr), cudaSuccess);  // any E <= 4096
  EXPECT_EQ(K::launch_routing(a, static_cast<K::Variant>(7), nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(K::launch_routing_mutant(a, K::Variant::automatic, nullptr, K::Mutant::count_), cudaErrorInvalidValue);
  CUDA_ASSERT(cudaDeviceSynchronize());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
