// Host emulation of the fused routing kernels (the kernels' own per-row algorithm on the CPU)
// against the reference oracle: random problems over E in 1..2048, all dtypes, all layouts,
// ties, +-inf, NaN, all -inf rows, T = 0, every variant (warp, block, thread per row); the
// variants agree bit for bit where their sum order is the same; row-math unit checks; and
// every CPU-visible planted bug (Mutant) must be rejected by the oracle on a designated
// problem, for every variant.
// Problems are harness cases (properties/support/kernel_problem.hpp over build_case); every
// failure prints a replay line (the problem's shape, value families and seed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "harness/core/generators.hpp"
#include "kernels/routing_kernels.hpp"
#include "kernels/routing_row.hpp"
#include "properties/support/kernel_problem.hpp"
#include "reference/oracle.hpp"
#include "reference/routing.hpp"

namespace {

namespace K = moecheck::kernels;
namespace R = moecheck::kernels::row;
using moecheck::CheckReport;
using namespace moecheck::testing;  // KernelProblem, make_problem, view_of, DType, Family, ...

struct Output {
  std::vector<float> w;
  std::vector<std::int32_t> ids;
  K::ArgStatus status = K::ArgStatus::ok;
  std::string message;
};

Output run_host(const KernelProblem& p, K::Variant v, K::Mutant m = K::Mutant::none) {
  Output o;
  const std::size_t n = static_cast<std::size_t>(p.c.T) * static_cast<std::size_t>(p.c.k);
  o.w.resize(n);
  o.ids.resize(n);
  moecheck::poison_outputs(o.w.data(), o.ids.data(), static_cast<std::int64_t>(n));
  o.status = K::emulate_routing(p.host_args(o.w.data(), o.ids.data()), v, m, &o.message);
  return o;
}

CheckReport oracle(const KernelProblem& p, const Output& o) {
  moecheck::OracleOptions opt;
  opt.precision = moecheck::fp32_exact_selection();
  return moecheck::check_routing(view_of(p), params_of(p), o.w.data(), o.ids.data(), opt);
}

bool same_bits(const Output& a, const Output& b) {
  return a.w.size() == b.w.size() && a.ids == b.ids &&
         (a.w.empty() || std::memcmp(a.w.data(), b.w.data(), a.w.size() * sizeof(float)) == 0);
}

/// Every concrete variant (index = value - 1).
constexpr K::Variant kVariants[] = {K::Variant::warp_per_row, K::Variant::block_per_row, K::Variant::thread_per_row};

std::string replay(const KernelProblem& p, K::Variant v, K::Mutant m = K::Mutant::none) {
  return "replay: " + p.describe() + " variant=" + K::variant_name(v) + " mutant=" + K::mutant_name(m);
}

// ---------------------------------------------------------------------------------------
// Row math
// ---------------------------------------------------------------------------------------

double ulp_of_float(double v) {
  v = std::fabs(v);
  if (v < 0x1p-126) return 0x1p-149;
  int e = 0;
  std::frexp(v, &e);
  return std::ldexp(1.0, e - 24);
}

TEST(RowMath, ExpNonposAccuracy) {
  Rng rng(20240611);
  double worst = 0.0;
  float worst_d = 0.0f;
  auto check = [&](float d) {
    const float got = R::exp_nonpos(d);
    const double want = std::exp(static_cast<double>(d));
    const double err = std::fabs(static_cast<double>(got) - want) / ulp_of_float(want);
    if (err > worst) {
      worst = err;
      worst_d = d;
    }
  };
  for (int i = 0; i < 2000000; ++i) check(static_cast<float>(rng.uniform(-104.0, 0.0)));
  for (int i = 0; i < 200000; ++i) check(-std::ldexp(static_cast<float>(i + 1), -20));  // near 0
  for (float d = -104.0f; d <= -80.0f; d += 0.0009765625f) check(d);                  // subnormal results
  EXPECT_EQ(R::exp_nonpos(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(R::exp_nonpos(-104.5f), 0.0f);
  EXPECT_EQ(R::exp_nonpos(-0.0f), 1.0f);
  EXPECT_LT(worst, 1.0) << "exp_nonpos worst error " << worst << " ulp at d = " << worst_d;
  RecordProperty("exp_nonpos_max_ulp", std::to_string(worst));
  std::printf("exp_nonpos: max error %.3f ulp (at d = %.9g)\n", worst, static_cast<double>(worst_d));
}

TEST(RowMath, SoftmaxTermRules) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(R::softmax_term(-inf, -inf), 0.0f);
  EXPECT_EQ(R::softmax_term(inf, inf), 1.0f);
  EXPECT_EQ(R::softmax_term(3.0f, inf), 0.0f);
  EXPECT_EQ(R::softmax_term(-inf, inf), 0.0f);
  EXPECT_EQ(R::softmax_term(2.0f, 2.0f), 1.0f);
  EXPECT_EQ(R::softmax_term(-inf, 2.0f), 0.0f);
  EXPECT_EQ(R::softmax_term(-std::numeric_limits<float>::max(), std::numeric_limits<float>::max()), 0.0f);
}

TEST(RowMath, HalfConversionsBitExact) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float a = R::half_bits_to_float(static_cast<std::uint16_t>(h));
    const float b = moecheck::half_bits_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(b)) {
      ASSERT_TRUE(std::isnan(a)) << h;
    } else {
      ASSERT_EQ(R::float_to_bits(a), R::float_to_bits(b)) << "half bits " << h;
    }
    const float c = R::bf16_bits_to_float(static_cast<std::uint16_t>(h));
    const float d = moecheck::bf16_bits_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(d)) {
      ASSERT_TRUE(std::isnan(c));
    } else {
      ASSERT_EQ(R::float_to_bits(c), R::float_to_bits(d)) << "bf16 bits " << h;
    }
  }
  Rng rng(7);
  for (int i = 0; i < 3000000; ++i) {
    std::uint32_t bits = static_cast<std::uint32_t>(rng.next());
    if (i % 3 == 0) bits = (bits & 0x807fffffu) | ((0x60u + (bits >> 24) % 0x30u) << 23);  // near half range
    const float f = R::bits_to_float(bits);
    const std::uint16_t a = R::float_to_half_bits_rn(f);
    const std::uint16_t b = moecheck::float_to_half_bits(f);
    if (std::isnan(f)) {
      ASSERT_TRUE((a & 0x7fffu) > 0x7c00u);
    } else {
      ASSERT_EQ(a, b) << "float bits 0x" << std::hex << bits;
    }
  }
}

/// The dtype's raw element bits -> float (NaN payloads kept).
float decode(std::uint32_t raw, DType t) {
  if (t == DType::f32) return R::bits_to_float(raw);
  return t == DType::f16 ? R::half_bits_to_float(static_cast<std::uint16_t>(raw))
                         : R::bf16_bits_to_float(static_cast<std::uint16_t>(raw));
}

template <class Tr>
void check_keys(const std::string& values, DType t) {
  // 300 rows of 64 experts of the value family (NaNs stored with varied payloads).
  const KernelProblem p = make_problem(99, t, 300, 64, 4, Family::softmax_topk, Layout::contiguous, values);
  const std::size_t es = moecheck::dtype_size(t);
  std::vector<std::uint32_t> raw(64);
  std::vector<float> row(64);
  for (std::int64_t r = 0; r < p.c.T; ++r) {
    for (std::size_t i = 0; i < 64; ++i) {
      raw[i] = 0;
      std::memcpy(&raw[i], p.storage.data() + (static_cast<std::size_t>(r) * 64 + i) * es, es);
      row[i] = decode(raw[i], t);
    }
    for (int i = 0; i < 64; ++i) {
      for (int j = 0; j < 64; ++j) {
        auto clean = [](float x) { return std::isnan(x) ? -std::numeric_limits<float>::infinity() : x; };
        const float a = clean(row[static_cast<std::size_t>(i)]), b = clean(row[static_cast<std::size_t>(j)]);
        const auto ka = Tr::make(Tr::key(Tr::canonical(raw[static_cast<std::size_t>(i)])), i);
        const auto kb = Tr::make(Tr::key(Tr::canonical(raw[static_cast<std::size_t>(j)])), j);
        // entry order == (value desc, index asc)
        const bool a_first = a > b || (a == b && i < j);
        ASSERT_EQ(ka > kb, a_first) << a << " " << b << " " << i << " " << j << "\n" << p.describe();
        ASSERT_EQ(R::entry_index(ka), i);
        if (!std::isnan(row[static_cast<std::size_t>(i)])) {
          ASSERT_EQ(Tr::value(ka), a == 0.0f ? 0.0f : a);
        }
      }
    }
  }
}

TEST(RowMath, EntriesOrderByValueThenIndex) {
  for (const char* v : {"ties", "near-ties", "inf", "nan", "huge", "denormal", "integer"}) {
    SCOPED_TRACE(v);
    check_keys<R::F32>(v, DType::f32);
    check_keys<R::F16>(v, DType::f16);
    check_keys<R::BF16>(v, DType::bf16);
    if (HasFatalFailure()) return;
  }
}

template <int V, class Entry>
void check_sort(Rng& rng) {
  for (int it = 0; it < 2000; ++it) {
    Entry a[V];
    for (auto& x : a) x = static_cast<Entry>(rng.next() % (it % 2 ? 5 : 1000000));
    std::vector<Entry> want(a, a + V);
    std::sort(want.begin(), want.end(), [](Entry x, Entry y) { return x > y; });
    R::sort_desc<V>(a);
    ASSERT_EQ(std::vector<Entry>(a, a + V), want) << "V = " << V;
  }
}

template <class Tr>
void check_thread_entries(std::uint64_t n_random) {
  // The thread variant's float canonicalisation equals the integer one, bit for bit.
  auto check = [](std::uint32_t raw, int idx) {
    for (bool keep_nan : {false, true}) {
      const auto want = Tr::make(Tr::key(Tr::canonical(raw, keep_nan)), idx);
      const auto got = R::thread_entry<Tr>(raw, idx, keep_nan);
      ASSERT_EQ(got, want) << "raw 0x" << std::hex << raw << " keep_nan " << keep_nan;
    }
  };
  if (Tr::kBytes == 2) {
    for (std::uint32_t b = 0; b < 65536; ++b) check(b, static_cast<int>(b % 4096));
  } else {
    const std::uint32_t special[] = {0u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u,
                                     0x7f800001u, 0xff800001u, 0x00000001u, 0x80000001u, 0x007fffffu,
                                     0x807fffffu, 0x7f7fffffu, 0xff7fffffu, 0x3f800000u, 0xbf800000u};
    for (std::uint32_t b : special) check(b, 7);
    Rng rng(41);
    for (std::uint64_t i = 0; i < n_random; ++i) check(static_cast<std::uint32_t>(rng.next()), static_cast<int>(i % 4096));
  }
}

TEST(RowMath, ThreadEntriesMatchCanonicalKeys) {
  check_thread_entries<R::F32>(4000000);
  check_thread_entries<R::F16>(0);
  check_thread_entries<R::BF16>(0);
}

template <int KB, int B, class Entry>
void check_merge(Rng& rng) {
  for (int it = 0; it < 3000; ++it) {
    const std::uint64_t range = it % 3 == 0 ? 7 : 1000000;
    std::vector<Entry> all;
    Entry top[KB], b[B];
    for (auto& x : top) x = static_cast<Entry>(rng.next() % range);
    for (auto& x : b) x = static_cast<Entry>(rng.next() % range);
    all.insert(all.end(), top, top + KB);
    all.insert(all.end(), b, b + B);
    std::sort(all.begin(), all.end(), [](Entry x, Entry y) { return x > y; });
    std::sort(top, top + KB, [](Entry x, Entry y) { return x > y; });
    R::sort_desc<B>(b);
    R::merge_topk<KB, B>(top, b);
    ASSERT_EQ(std::vector<Entry>(top, top + KB), std::vector<Entry>(all.begin(), all.begin() + KB))
        << "KB = " << KB << " B = " << B;
  }
}

TEST(RowMath, ThreadEntriesAbovePadding) {
  // The thread variant pads its top list and short batches with the entry 0: every real entry
  // of every 16-bit pattern (NaN-keeping mutant included) and every fp32 sign / exponent
  // extreme must rank above it.
  for (std::uint32_t raw = 0; raw < 65536; ++raw) {
    for (const bool keep_nan : {false, true}) {
      ASSERT_GT(R::thread_entry<R::BF16>(raw, 4095, keep_nan), 0u) << raw;
      ASSERT_GT(R::thread_entry<R::F16>(raw, 4095, keep_nan), 0u) << raw;
      ASSERT_GT(R::thread_entry<R::F32>(raw << 16 | raw, 4095, keep_nan), 0u) << raw;
    }
  }
  for (std::uint32_t raw : {0x00000000u, 0x80000000u, 0xff800000u, 0xffffffffu, 0x7fffffffu, 0x7f800000u}) {
    ASSERT_GT(R::thread_entry<R::F32>(raw, 4095, true), 0u) << raw;
    ASSERT_GT(R::thread_entry<R::F32>(raw, 4095, false), 0u) << raw;
  }
}

TEST(RowMath, TopListMerge) {
  Rng rng(5);
  check_merge<1, 1, std::uint32_t>(rng);
  check_merge<2, 2, std::uint32_t>(rng);
  check_merge<4, 4, std::uint32_t>(rng);
  check_merge<8, 8, std::uint32_t>(rng);
  check_merge<16, 8, std::uint32_t>(rng);
  check_merge<32, 8, std::uint32_t>(rng);
  check_merge<8, 8, std::uint64_t>(rng);
  check_merge<32, 8, std::uint64_t>(rng);
  check_merge<8, 2, std::uint32_t>(rng);
}

TEST(RowMath, SortNetworks) {
  Rng rng(3);
  check_sort<1, std::uint32_t>(rng);
  check_sort<2, std::uint32_t>(rng);
  check_sort<4, std::uint32_t>(rng);
  check_sort<8, std::uint32_t>(rng);
  check_sort<16, std::uint32_t>(rng);
  check_sort<4, std::uint64_t>(rng);
  check_sort<8, std::uint64_t>(rng);
  check_sort<16, std::uint64_t>(rng);
}

// ---------------------------------------------------------------------------------------
// Random problems against the oracle
// ---------------------------------------------------------------------------------------

const int kEs[] = {1, 2, 3, 7, 8, 16, 31, 32, 33, 48, 63, 64, 65, 96, 100, 127, 128, 129, 160, 200,
                   255, 256, 257, 320, 384, 500, 511, 512, 513, 640, 768, 1000, 1023, 1024, 1025,
                   1536, 2000, 2047, 2048};

KernelProblem random_problem(std::uint64_t seed) {
  Rng rng(seed * 0x9e3779b97f4a7c15ull + 1);
  const int E = kEs[rng.next() % (sizeof(kEs) / sizeof(kEs[0]))];
  const int kmax = std::min(E, K::kMaxK);
  const int k = (rng.next() % 3 == 0) ? 1 + static_cast<int>(rng.next() % static_cast<std::uint64_t>(kmax))
                                 : std::min(kmax, 1 + static_cast<int>(rng.next() % 8));
  const auto dtype = static_cast<DType>(rng.next() % 3);
  const auto family = static_cast<Family>(rng.next() % 3);
  const auto layout = static_cast<Layout>(rng.next() % 4);
  const std::int64_t tmax = E >= 1000 ? 6 : (E >= 256 ? 16 : 40);
  const std::int64_t T = (rng.next() % 25 == 0) ? 0 : 1 + static_cast<std::int64_t>(rng.next() % static_cast<std::uint64_t>(tmax));
  const bool scaled = rng.next() % 3 != 0;
  return make_problem(seed, dtype, T, E, k, family, layout, kMixedValues,
                      scaled ? scale_family_for(seed) : "ones");
}

void check_problem(const KernelProblem& p) {
  SCOPED_TRACE(p.describe());
  // canonical reference ids: the kernels break ties exactly like the reference
  std::vector<double> rw(static_cast<std::size_t>(p.c.T * p.c.k));
  std::vector<std::int32_t> rid(static_cast<std::size_t>(p.c.T * p.c.k));
  if (p.c.T > 0) moecheck::route_reference(view_of(p), params_of(p), rw.data(), rid.data());
  Output outs[3];
  bool have[3] = {false, false, false};
  for (K::Variant v : kVariants) {
    if (v == K::Variant::warp_per_row && p.c.E > K::kWarpMaxExperts) continue;
    const int vi = static_cast<int>(v) - 1;
    Output o = run_host(p, v);
    ASSERT_EQ(o.status, K::ArgStatus::ok) << o.message << "\n" << replay(p, v);
    const CheckReport rep = oracle(p, o);
    ASSERT_TRUE(rep.ok()) << rep.str() << "\n" << replay(p, v);
    ASSERT_EQ(o.ids, rid) << "ids differ from the reference's canonical tie order\n" << replay(p, v);
    const Output again = run_host(p, v);
    ASSERT_TRUE(same_bits(o, again)) << "not deterministic\n" << replay(p, v);
    outs[vi] = std::move(o);
    have[vi] = true;
  }
  if (p.c.family != Family::softmax_topk_raw) {
    // Same selection and the same epilogue (pairwise k-term sum): the variants agree bit for
    // bit. softmax_topk_raw sums all E terms in a variant-specific order: the oracle judges.
    for (int a = 0; a < 3; ++a) {
      for (int b = a + 1; b < 3; ++b) {
        if (!have[a] || !have[b]) continue;
        ASSERT_TRUE(same_bits(outs[a], outs[b]))
            << K::variant_name(static_cast<K::Variant>(a + 1)) << " and "
            << K::variant_name(static_cast<K::Variant>(b + 1)) << " differ\n" << replay(p, K::Variant::automatic);
      }
    }
  }
}

TEST(Emulation, ThreadPerRowManyRows) {
  // Several 32-row tiles, partial last tiles, every k bucket, all layouts and families.
  std::uint64_t seed = 3000;
  for (int k : {1, 2, 3, 4, 5, 8, 9, 16, 17, 32}) {
    for (int E : {32, 64, 100, 128, 256, 260}) {
      if (k > E) continue;
      ++seed;
      const auto p = make_problem(seed, static_cast<DType>(seed % 3), 33 + static_cast<std::int64_t>(seed % 70), E, k,
                                  static_cast<Family>(seed % 3), static_cast<Layout>(seed % 4),
                                  kMixedValues,
                                  seed % 2 == 0 ? scale_family_for(seed / 2) : "ones");
      check_problem(p);
      if (HasFatalFailure()) return;
    }
  }
}

/// An fp32 contiguous problem of 40 rows whose values take the thread variant's coarse
/// selection down either path: 0 spread (normal) values, 1 one key bucket (values that differ
/// only in the low mantissa bits), 2 a cluster around one value, 3 exact duplicates, 4 a mix
/// of negative near-ties, near-duplicates and spread values.
KernelProblem f32_bucket_problem(std::uint64_t seed, int E, int k, int pattern) {
  Rng rng(seed * 7919);
  auto p = make_problem(seed, DType::f32, 40, E, k, seed % 2 == 0 ? Family::gemma4 : Family::softmax_topk,
                        Layout::contiguous, "normal", scale_family_for(seed));
  auto* v = reinterpret_cast<std::uint32_t*>(p.storage.data());
  for (std::int64_t t = 0; t < p.c.T; ++t) {
    const std::uint32_t base = 0x3f800000u + static_cast<std::uint32_t>(rng.below(1u << 10)) * 4096u;
    for (int e = 0; e < E; ++e) {
      std::uint32_t& x = v[t * E + e];
      const std::uint64_t r = rng.below(100);
      switch (pattern) {
        case 0: break;
        case 1: x = base + static_cast<std::uint32_t>(rng.below(4096)); break;
        case 2: x = r < 30 ? base + static_cast<std::uint32_t>(rng.below(64)) : x; break;
        case 3: x = r < 50 ? base : x; break;
        default: x = r < 20 ? (base | 0x80000000u) + static_cast<std::uint32_t>(rng.below(8))
                            : (r < 40 ? base + static_cast<std::uint32_t>(rng.below(3)) : x);
      }
    }
  }
  return p;
}

TEST(Emulation, ThreadF32CoarseSelectionIsExact) {
  // fp32 rows select with 32-bit coarse entries (key high bits + index) and fall back to exact
  // entries when the k-th expert's key bucket continues past the list. thread_per_row must
  // match warp_per_row (an independent selection with the same renormalised sum order) bit for
  // bit on rows built for both paths (f32_bucket_problem), and the oracle.
  std::uint64_t seed = 5000;
  int compared = 0;
  for (int E : {8, 33, 64, 100, 128, 256, 512}) {
    for (int k : {1, 2, 4, 5, 8, 16, 32}) {
      if (k > E) continue;
      for (int pattern = 0; pattern < 5; ++pattern) {
        const auto p = f32_bucket_problem(++seed, E, k, pattern);
        const Output thread = run_host(p, K::Variant::thread_per_row);
        const Output warp = run_host(p, K::Variant::warp_per_row);
        ASSERT_EQ(thread.status, K::ArgStatus::ok) << thread.message;
        ASSERT_TRUE(same_bits(thread, warp)) << "pattern " << pattern << "\n" << replay(p, K::Variant::thread_per_row);
        const CheckReport rep = oracle(p, thread);
        ASSERT_TRUE(rep.ok()) << rep.str() << "\n" << replay(p, K::Variant::thread_per_row);
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 150);
}

TEST(Emulation, RandomProblemsMatchOracle) {
  for (std::uint64_t seed = 1; seed <= 700; ++seed) {
    check_problem(random_problem(seed));
    if (HasFatalFailure()) return;
  }
}

TEST(Emulation, EveryValueFamilyEveryDtype) {
  std::vector<std::string> families = moecheck::all_value_families();
  families.push_back(kMixedValues);
  std::uint64_t seed = 5000;
  for (const std::string& values : families) {
    for (int dt = 0; dt < 3; ++dt) {
      for (int fam = 0; fam < 3; ++fam) {
        for (int E : {5, 64, 200, 300, 1100}) {
          const int k = std::min(E, fam == 0 ? 8 : 3);
          ++seed;
          const auto p = make_problem(seed, static_cast<DType>(dt), 9, E, k, static_cast<Family>(fam),
                                      static_cast<Layout>(seed % 4), values,
                                      fam == 0 ? scale_family_for(seed) : "ones");
          check_problem(p);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(Emulation, AllExpertsAndAllK) {
  // k = E for small E, and k = 32 with E = 32, 33, 4096.
  std::uint64_t seed = 9000;
  for (int E = 1; E <= 40; ++E) {
    for (int k : {1, std::min(E, 32)}) {
      ++seed;
      check_problem(make_problem(seed, DType::bf16, 5, E, k, Family::gemma4, Layout::contiguous,
                                 kMixedValues, scale_family_for(seed)));
      if (HasFatalFailure()) return;
    }
  }
  for (int E : {2049, 3000, 4095, 4096}) {
    ++seed;
    check_problem(make_problem(seed, DType::f32, 3, E, 32, Family::softmax_topk_raw, Layout::padded));
    ++seed;
    check_problem(make_problem(seed, DType::f16, 3, E, 7, Family::gemma4, Layout::transposed, "ties",
                               scale_family_for(seed)));
    if (HasFatalFailure()) return;
  }
}

TEST(Emulation, EdgeRowsExactValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (K::Variant v : kVariants) {
    for (int dt = 0; dt < 3; ++dt) {
      // row 0: all -inf; row 1: NaN and -inf; row 2: three +inf; row 3: ones and a NaN
      RoutingCase c =
          make_problem(1, static_cast<DType>(dt), 4, 10, 3, Family::softmax_topk, Layout::contiguous, "normal").c;
      c.logits = {-inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf,  //
                  nan,  -inf, nan,  -inf, -inf, nan,  -inf, -inf, -inf, nan,   //
                  0.f,  inf,  1.f,  inf,  -inf, nan,  inf,  2.f,  3.f,  4.f,   //
                  1.f,  1.f,  nan,  1.f,  1.f,  1.f,  1.f,  1.f,  1.f,  1.f};
      KernelProblem p = lay_out(c);
      for (int fam = 0; fam < 3; ++fam) {
        p.c.family = static_cast<Family>(fam);
        SCOPED_TRACE(std::string(K::variant_name(v)) + " " + p.describe());
        const Output o = run_host(p, v);
        ASSERT_EQ(o.status, K::ArgStatus::ok);
        // all -inf and all -inf/NaN rows: ids 0, 1, 2 (lower index first), weights exactly 0
        for (int j = 0; j < 3; ++j) {
          EXPECT_EQ(o.ids[static_cast<std::size_t>(j)], j);
          EXPECT_EQ(o.w[static_cast<std::size_t>(j)], 0.0f);
          EXPECT_EQ(o.ids[static_cast<std::size_t>(3 + j)], j);
          EXPECT_EQ(o.w[static_cast<std::size_t>(3 + j)], 0.0f);
        }
        // three +inf (experts 1, 3, 6): k = 3 selects them; renormalised 1/3 each, raw 1/3 each
        for (int j = 0; j < 3; ++j) {
          const int inf_ids[3] = {1, 3, 6};
          EXPECT_EQ(o.ids[static_cast<std::size_t>(6 + j)], inf_ids[j]);
          EXPECT_EQ(o.w[static_cast<std::size_t>(6 + j)], 1.0f / 3.0f);
        }
        // ties: experts 0, 1, 3 (NaN at 2 ranks last)
        EXPECT_EQ(o.ids[9], 0);
        EXPECT_EQ(o.ids[10], 1);
        EXPECT_EQ(o.ids[11], 3);
        EXPECT_TRUE(oracle(p, o).ok()) << oracle(p, o).str();
      }
    }
  }
}

TEST(Emulation, ZeroRowsAndArgumentErrors) {
  K::RoutingArgs a;
  a.T = 0;
  a.E = 8;
  a.k = 2;
  a.row_stride = 8;
  std::string msg;
  EXPECT_EQ(K::emulate_routing(a, K::Variant::warp_per_row, K::Mutant::none, &msg), K::ArgStatus::ok) << msg;
  EXPECT_EQ(K::emulate_routing(a, K::Variant::block_per_row, K::Mutant::none, &msg), K::ArgStatus::ok) << msg;
  EXPECT_EQ(K::emulate_routing(a, K::Variant::thread_per_row, K::Mutant::none, &msg), K::ArgStatus::ok) << msg;
  auto bad = [&](auto mutate, K::ArgStatus want) {
    K::RoutingArgs b;
    float w[64];
    std::int32_t id[64];
    float g[64] = {};
    b.gating = g;
    b.T = 2;
    b.E = 8;
    b.k = 2;
    b.row_stride = 8;
    b.weights = w;
    b.ids = id;
    mutate(b);
    std::string m2;
    EXPECT_EQ(K::validate_args(b, &m2), want) << m2;
    if (want != K::ArgStatus::ok) {
      EXPECT_FALSE(m2.empty());
    }
    EXPECT_EQ(K::emulate_routing(b, K::Variant::automatic, K::Mutant::none, &m2), want) << m2;
  };
  bad([](K::RoutingArgs&) {}, K::ArgStatus::ok);
  bad([](K::RoutingArgs& b) { b.k = 0; }, K::ArgStatus::bad_k);
  bad([](K::RoutingArgs& b) { b.k = 9; }, K::ArgStatus::bad_k);
  bad([](K::RoutingArgs& b) { b.E = 40; b.k = 33; b.row_stride = 40; }, K::ArgStatus::bad_k);
  bad([](K::RoutingArgs& b) { b.E = 0; }, K::ArgStatus::bad_shape);
  bad([](K::RoutingArgs& b) { b.E = K::kMaxExperts + 1; }, K::ArgStatus::bad_shape);
  bad([](K::RoutingArgs& b) { b.T = -1; }, K::ArgStatus::bad_shape);
  bad([](K::RoutingArgs& b) { b.row_stride = -8; }, K::ArgStatus::bad_stride);
  bad([](K::RoutingArgs& b) { b.row_stride = 0; }, K::ArgStatus::bad_stride);
  bad([](K::RoutingArgs& b) { b.col_stride = 0; }, K::ArgStatus::bad_stride);
  bad([](K::RoutingArgs& b) { b.row_stride = std::numeric_limits<std::int64_t>::max() / 2; }, K::ArgStatus::bad_stride);
  bad([](K::RoutingArgs& b) { b.gating = nullptr; }, K::ArgStatus::null_pointer);
  bad([](K::RoutingArgs& b) { b.weights = nullptr; }, K::ArgStatus::null_pointer);
  bad([](K::RoutingArgs& b) { b.ids = nullptr; }, K::ArgStatus::null_pointer);
  bad([](K::RoutingArgs& b) { b.dtype = static_cast<K::GatingType>(7); }, K::ArgStatus::unsupported);
  bad([](K::RoutingArgs& b) { b.family = static_cast<K::KernelFamily>(3); }, K::ArgStatus::unsupported);
  // warp_per_row is limited to kWarpMaxExperts; automatic picks block_per_row there, and
  // thread_per_row takes any E
  std::vector<float> g(2 * 600, 0.0f), w(4);
  std::vector<std::int32_t> id(4);
  K::RoutingArgs c;
  c.gating = g.data();
  c.T = 2;
  c.E = 600;
  c.k = 2;
  c.row_stride = 600;
  c.weights = w.data();
  c.ids = id.data();
  EXPECT_EQ(K::emulate_routing(c, K::Variant::warp_per_row, K::Mutant::none, &msg), K::ArgStatus::unsupported);
  EXPECT_EQ(K::emulate_routing(c, K::Variant::automatic, K::Mutant::none, &msg), K::ArgStatus::ok) << msg;
  EXPECT_EQ(K::emulate_routing(c, K::Variant::thread_per_row, K::Mutant::none, &msg), K::ArgStatus::ok) << msg;
  EXPECT_EQ(K::emulate_routing(c, static_cast<K::Variant>(9), K::Mutant::none, &msg), K::ArgStatus::unsupported);
  EXPECT_EQ(K::emulate_routing(c, K::Variant::automatic, K::Mutant::count_, &msg), K::ArgStatus::unsupported);
}

TEST(Emulation, NamesAndHeuristic) {
  for (int i = 0; i < static_cast<int>(K::Mutant::count_); ++i) {
    K::Mutant m = K::Mutant::count_;
    ASSERT_TRUE(K::parse_mutant(K::mutant_name(static_cast<K::Mutant>(i)), &m));
    EXPECT_EQ(static_cast<int>(m), i);
  }
  K::Mutant m = K::Mutant::none;
  EXPECT_FALSE(K::parse_mutant("bogus", &m));
  for (K::Variant v : {K::Variant::automatic, K::Variant::warp_per_row, K::Variant::block_per_row,
                       K::Variant::thread_per_row}) {
    K::Variant out = K::Variant::automatic;
    ASSERT_TRUE(K::parse_variant(K::variant_name(v), &out));
    EXPECT_EQ(out, v);
  }
  K::Variant out;
  EXPECT_FALSE(K::parse_variant("grid", &out));
  EXPECT_TRUE(K::mutant_is_gpu_only(K::Mutant::grid_overflow));
  EXPECT_TRUE(K::mutant_is_gpu_only(K::Mutant::shared_race));
  EXPECT_FALSE(K::mutant_is_gpu_only(K::Mutant::nan_duplicates));
  EXPECT_TRUE(K::parse_variant("thread", &out));
  EXPECT_EQ(out, K::Variant::thread_per_row);
  for (std::int64_t T : {std::int64_t{0}, std::int64_t{1}, K::kThreadPerRowLargeExpertMinRows - 1,
                         K::kThreadPerRowLargeExpertMinRows, K::kThreadPerRowMinRows - 1, K::kThreadPerRowMinRows,
                         std::int64_t{250000}}) {
    for (int E = 1; E <= K::kMaxExperts; ++E) {
      for (const K::GatingType dt : {K::GatingType::f32, K::GatingType::f16, K::GatingType::bf16}) {
        const K::Variant v = K::choose_variant(E, T, dt);
        ASSERT_TRUE(v == K::Variant::warp_per_row || v == K::Variant::block_per_row ||
                    v == K::Variant::thread_per_row);
        if (v == K::Variant::warp_per_row) {
          ASSERT_LE(E, K::kWarpMaxExperts);
        }
        const bool thread = T >= K::kThreadPerRowMinRows ||
                            (E > K::kWarpMaxExperts && T >= K::kThreadPerRowLargeExpertMinRows);
        ASSERT_EQ(v == K::Variant::thread_per_row, thread) << "E " << E << " T " << T;
        if (!thread) {
          const bool fp32_block = dt == K::GatingType::f32 && E > 256 && T <= K::kBlockPreferMaxRows;
          ASSERT_EQ(v == K::Variant::warp_per_row, E <= K::kWarpMaxExperts && !fp32_block) << "E " << E << " T " << T;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Thread variant, lane groups (row::group_row): S lanes per row, same outputs as thread_row
// ---------------------------------------------------------------------------------------

/// Output of one row of a host lane group.
struct HostGroupOut {
  float* w = nullptr;
  std::int32_t* ids = nullptr;
  bool on = false;
  bool active() const { return on; }
  static float scale(const float* p) { return *p; }
  void store(int slot, float wv, std::int32_t id) const {
    w[slot] = wv;
    ids[slot] = id;
  }
};

/// Runs row::group_row with the 32-lane host warp, 32 / S rows per warp (the device kernel's
/// row assignment; lanes past the last row compute a copy of it and store nothing), on a
/// contiguous problem whose rows are whole 16-byte units. skip_partial_warp: the rows of the
/// last partial 32-row tile are left unwritten, as in the kernel.
template <class Tr, int KB>
Output run_lane_groups(const KernelProblem& p, int S, K::Mutant m) {
  Output o;
  const std::size_t n = static_cast<std::size_t>(p.c.T) * static_cast<std::size_t>(p.c.k);
  o.w.resize(n);
  o.ids.resize(n);
  moecheck::poison_outputs(o.w.data(), o.ids.data(), static_cast<std::int64_t>(n));
  const K::RoutingArgs a = p.host_args(o.w.data(), o.ids.data());
  const K::Mutant rm = K::mutant_is_gpu_only(m) ? K::Mutant::none : m;
  const R::RowConfig cfg = R::make_row_config(a.E, a.k, a.family, a.scale, rm);
  const std::int64_t rows = rm == K::Mutant::skip_partial_warp ? a.T - a.T % 32 : a.T;
  const int rpw = 32 / S;
  const auto* base = static_cast<const unsigned char*>(a.gating);
  const R::HostWarp ctx;
  for (std::int64_t r0 = 0; r0 < rows; r0 += rpw) {
    R::HostLaneSource<Tr, R::group_batch<Tr>(KB)> ls[32];
    R::HostRowSource<Tr, R::thread_batch(KB)> rs[32];
    HostGroupOut out[32];
    for (int l = 0; l < 32; ++l) {
      const std::int64_t r = r0 + l / S;
      const std::int64_t rr = r < rows ? r : rows - 1;
      const unsigned char* rp = base + rr * a.row_stride * Tr::kBytes;
      ls[l] = {rp, a.E * Tr::kBytes / 16, S, l % S};
      rs[l] = {rp, a.E, 1};
      out[l] = {a.weights + rr * a.k, a.ids + rr * a.k, r < rows};
    }
    R::group_row<Tr, KB>(ctx, S, ls, rs, cfg, rm, out);
  }
  return o;
}

Output run_lane_groups(const KernelProblem& p, int S, K::Mutant m) {
  return R::with_traits_and_bucket<K::kMaxK>(K::GatingType(gating_type(p.c.dtype)), R::thread_bucket(p.c.k), Output{},
                                             [&](auto tr, auto kb) {
                                               return run_lane_groups<decltype(tr), decltype(kb)::value>(p, S, m);
                                             });
}

TEST(Emulation, ThreadLaneGroupsMatchThreadPerRow) {
  // Every lane count the launcher may use (2..32, at least KB / 2), every k bucket, every
  // family and dtype, rows of 1 to 256 units, partial last warps, and every CPU-visible
  // mutant: the same bits as the one-thread-per-row emulation.
  std::uint64_t seed = 9100;
  int compared = 0;
  for (int k : {1, 2, 3, 4, 8, 13, 16, 32}) {
    for (int E : {8, 32, 64, 128, 256, 512, 2048}) {
      if (k > E) continue;
      for (int dt = 0; dt < 3; ++dt) {
        ++seed;
        const auto dtype = static_cast<DType>(dt);
        if (E * static_cast<int>(moecheck::dtype_size(dtype)) % 16 != 0) continue;
        const Family fam = static_cast<Family>(seed % 3);
        const auto p = make_problem(seed, dtype, 37 + static_cast<std::int64_t>(seed % 5), E, k, fam,
                                    Layout::contiguous, kMixedValues, scale_family_for(seed));
        const Output want = run_host(p, K::Variant::thread_per_row);
        ASSERT_EQ(want.status, K::ArgStatus::ok) << want.message;
        const int kb = R::thread_bucket(k);
        for (int S = kb / 2 < 2 ? 2 : kb / 2; S <= 32; S *= 2) {
          ASSERT_TRUE(same_bits(run_lane_groups(p, S, K::Mutant::none), want))
              << "S = " << S << "\n" << replay(p, K::Variant::thread_per_row);
          ++compared;
        }
      }
    }
  }
  EXPECT_GT(compared, 300);
}

TEST(Emulation, ThreadLaneGroupsMatchUnderEveryMutant) {
  std::uint64_t seed = 9300;
  for (int i = 1; i < static_cast<int>(K::Mutant::count_); ++i) {
    const auto m = static_cast<K::Mutant>(i);
    for (int dt = 0; dt < 3; ++dt) {
      for (int k : {4, 8, 32}) {
        ++seed;
        const auto p = make_problem(seed, static_cast<DType>(dt), 70, 64, k, static_cast<Family>(seed % 3),
                                    Layout::contiguous, kMixedValues, scale_family_for(seed));
        const Output want = run_host(p, K::Variant::thread_per_row, m);
        ASSERT_EQ(want.status, K::ArgStatus::ok) << want.message;
        for (int S : {2, 4, 8, 16, 32}) {
          if (S < R::thread_bucket(k) / 2) continue;
          const Output got = run_lane_groups(p, S, m);
          ASSERT_EQ(got.ids, want.ids) << "S = " << S << "\n" << replay(p, K::Variant::thread_per_row, m);
          for (std::size_t j = 0; j < got.w.size(); ++j) {
            const bool both_nan = std::isnan(got.w[j]) && std::isnan(want.w[j]);
            ASSERT_TRUE(both_nan || std::memcmp(&got.w[j], &want.w[j], 4) == 0)
                << "slot " << j << " S = " << S << "\n" << replay(p, K::Variant::thread_per_row, m);
          }
        }
      }
    }
  }
}

TEST(Emulation, ThreadLaneGroupsF32CoarseMatchThreadPerRow) {
  // The lane groups' fp32 coarse selection (all-reduced dropped entry, warp-wide fallback to
  // exact entries) on rows built for both paths: the one-thread-per-row bits for every S.
  std::uint64_t seed = 6000;
  for (int E : {8, 64, 128, 256, 512}) {
    for (int k : {1, 4, 5, 8, 16, 32}) {
      if (k > E) continue;
      for (int pattern = 0; pattern < 5; ++pattern) {
        const auto p = f32_bucket_problem(++seed, E, k, pattern);
        const Output want = run_host(p, K::Variant::thread_per_row);
        for (int S = R::thread_bucket(k) / 2 < 2 ? 2 : R::thread_bucket(k) / 2; S <= 32; S *= 2) {
          ASSERT_TRUE(same_bits(run_lane_groups(p, S, K::Mutant::none), want))
              << "S = " << S << " pattern " << pattern << "\n" << replay(p, K::Variant::thread_per_row);
        }
      }
    }
  }
}

TEST(Emulation, ThreadLanesHeuristic) {
  // 132 multiprocessors (H100 / H200): one thread per row from 132 * 512 rows on (16-bit rows
  // of 128 bytes from 132 * 64); below, lane groups that give about 67584 threads, one 16-byte
  // unit per lane at most, >= KB / 2.
  EXPECT_EQ(R::thread_lanes_per_row(128, 2, 8, 250000, 132), 1);
  EXPECT_EQ(R::thread_lanes_per_row(128, 2, 8, 67584, 132), 1);
  EXPECT_EQ(R::thread_lanes_per_row(128, 2, 8, 16384, 132), 8);
  EXPECT_EQ(R::thread_lanes_per_row(256, 4, 8, 16384, 132), 8);
  EXPECT_EQ(R::thread_lanes_per_row(128, 2, 8, 2048, 132), 16);  // 16 units per row
  EXPECT_EQ(R::thread_lanes_per_row(2048, 4, 8, 2048, 132), 32);
  EXPECT_EQ(R::thread_lanes_per_row(64, 2, 4, 1, 132), 8);
  EXPECT_EQ(R::thread_lanes_per_row(64, 2, 4, 8447, 132), 8);   // 16-bit rows of 128 bytes:
  EXPECT_EQ(R::thread_lanes_per_row(64, 2, 4, 8448, 132), 1);   // one thread per row from sms * 64
  EXPECT_EQ(R::thread_lanes_per_row(64, 4, 4, 16384, 132), 8);  // (fp32 keeps lane groups)
  EXPECT_EQ(R::thread_lanes_per_row(8, 2, 32, 1, 132), 16);      // KB / 2 over the one unit
  for (int KB : {1, 2, 4, 8, 16, 32}) {
    for (std::int64_t T : {1, 64, 1024, 16384, 65536, 250000}) {
      const int s = R::thread_lanes_per_row(512, 2, KB, T, 132);
      EXPECT_TRUE(s >= 1 && s <= 32 && (s & (s - 1)) == 0) << s;
      EXPECT_TRUE(s == 1 || s >= KB / 2) << s;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Planted bugs: each CPU-visible mutant is rejected by the oracle on its designated problem
// (for every variant), and the correct kernel passes the same problem.
// ---------------------------------------------------------------------------------------

struct MutantCase {
  K::Mutant mutant;
  KernelProblem problem;
};

std::vector<MutantCase> designated_cases() {
  using F = Family;
  using L = Layout;
  const auto bf16 = DType::bf16, f32 = DType::f32, f16 = DType::f16;
  // zero_sum_divide needs rows without mass: every logit -inf.
  RoutingCase masked = make_problem(20, bf16, 8, 64, 4, F::gemma4, L::contiguous, "normal", "uniform").c;
  masked.logits.assign(masked.logits.size(), -std::numeric_limits<float>::infinity());
  return {
      {K::Mutant::skip_renormalise, make_problem(11, bf16, 32, 64, 4, F::gemma4, L::contiguous, "normal")},
      {K::Mutant::topk_only_softmax, make_problem(12, f32, 32, 64, 4, F::softmax_topk_raw, L::contiguous, "normal")},
      {K::Mutant::scale_by_slot, make_problem(13, bf16, 32, 64, 4, F::gemma4, L::contiguous, "normal", "uniform")},
      {K::Mutant::off_by_one_k, make_problem(14, f16, 32, 64, 4, F::softmax_topk, L::contiguous, "normal")},
      {K::Mutant::drop_tied_expert, make_problem(15, bf16, 32, 64, 4, F::gemma4, L::contiguous, "ties")},
      // E = 100: warp/block lanes drop experts 96..99; T = 70: thread_per_row drops rows 64..69
      {K::Mutant::skip_partial_warp, make_problem(16, f32, 70, 100, 4, F::softmax_topk, L::contiguous, "normal")},
      {K::Mutant::fp16_accumulation, make_problem(17, f32, 32, 64, 8, F::gemma4, L::contiguous, "normal")},
      {K::Mutant::ignore_col_stride, make_problem(18, bf16, 32, 64, 4, F::gemma4, L::transposed, "normal", "uniform")},
      {K::Mutant::nan_duplicates, make_problem(19, f16, 32, 64, 4, F::softmax_topk, L::contiguous, "nan")},
      {K::Mutant::zero_sum_divide, lay_out(masked)},
  };
}

TEST(Mutants, EveryCpuVisibleMutantIsRejected) {
  const auto cases = designated_cases();
  int covered = 0;
  for (const MutantCase& c : cases) {
    ++covered;
    for (K::Variant v : kVariants) {
      const Output good = run_host(c.problem, v);
      const CheckReport good_rep = oracle(c.problem, good);
      EXPECT_TRUE(good_rep.ok()) << good_rep.str() << "\n" << replay(c.problem, v);
      const Output bad = run_host(c.problem, v, c.mutant);
      ASSERT_EQ(bad.status, K::ArgStatus::ok) << bad.message;
      const CheckReport rep = oracle(c.problem, bad);
      EXPECT_FALSE(rep.ok()) << "mutant " << K::mutant_name(c.mutant) << " was not detected\n"
                             << replay(c.problem, v, c.mutant);
      if (!rep.ok()) {
        std::printf("%-18s %-14s caught: %s\n", K::mutant_name(c.mutant), K::variant_name(v),
                    rep.violations.front().str().c_str());
      }
    }
  }
  // every mutant except none and the GPU-only ones has a designated problem
  int cpu_visible = 0;
  for (int i = 1; i < static_cast<int>(K::Mutant::count_); ++i) {
    if (!K::mutant_is_gpu_only(static_cast<K::Mutant>(i))) ++cpu_visible;
  }
  EXPECT_EQ(covered, cpu_visible);
}

TEST(Mutants, GpuOnlyMutantsEmulateAsCorrectKernel) {
  const auto p = make_problem(21, DType::bf16, 16, 1024, 8, Family::gemma4, Layout::contiguous,
                              kMixedValues, "mixed");
  for (K::Mutant m : {K::Mutant::grid_overflow, K::Mutant::shared_race}) {
    for (K::Variant v : kVariants) {
      if (v == K::Variant::warp_per_row && p.c.E > K::kWarpMaxExperts) continue;
      EXPECT_TRUE(same_bits(run_host(p, v, m), run_host(p, v))) << K::mutant_name(m);
    }
  }
}

TEST(Mutants, CorrectKernelPassesEveryDesignatedProblem) {
  for (const MutantCase& c : designated_cases()) check_problem(c.problem);
}

}  // namespace
