// Counter-based case generation and the device checker's row oracle, on the CPU (quick):
//  * the counter RNG and every value family match golden values (a change of the generator is a
//    change of every recorded campaign) and are deterministic, row by row and in any order;
//  * counter cases have exactly the shapes of classic generation and values exact in their dtype;
//    the storage bits the device writes (counter_storage_bits) equal RoutingCase::materialize();
//  * the header's dtype conversions and next_in_dtype equal the reference's and generators';
//  * the value families reach their edge-case classes (ties at k, near ties, NaN, masked rows...);
//  * the device checker's row oracle (kernels/checker/row_check.hpp, the code the device runs)
//    reaches the host oracle's verdict on every row of correct and of planted-bug kernel outputs
//    (host emulation), and its class bits equal classify(); its planted bug passes wrong weights.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <set>
#include <string>
#include <vector>

#include "harness/core/campaign.hpp"
#include "harness/core/counter_case.hpp"
#include "harness/core/merge.hpp"
#include "harness/core/device_check.hpp"
#include "harness/core/generators.hpp"
#include "kernels/checker/row_check.hpp"
#include "kernels/routing_kernels.hpp"
#include "reference/oracle.hpp"

namespace {

using namespace moecheck;
namespace ck = moecheck::checker;

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// FNV-1a over the bits of a case's logits and scale: a fingerprint for golden values.
std::uint64_t fingerprint(const RoutingCase& c) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  const auto mix = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      h ^= (v >> (8 * i)) & 0xffu;
      h *= 0x100000001b3ull;
    }
  };
  for (float f : c.logits) mix(bits(f));
  for (float f : c.scale) mix(bits(f));
  return h;
}

CaseShape shape_of(Family f, DType d, std::int64_t T, std::int64_t E, int k, const std::string& values,
                   Layout layout = Layout::contiguous, std::int64_t pad = 0, const std::string& scales = "ones") {
  CaseShape s;
  s.family = f;
  s.dtype = d;
  s.T = T;
  s.E = E;
  s.k = k;
  s.layout = layout;
  s.pad = pad;
  s.value_family = values;
  s.scale_family = scales;
  return s;
}

TEST(CounterRng, GoldenDraws) {
  // splitmix64 finaliser and the counter layout: fixed forever (recorded campaigns depend on them)
  EXPECT_EQ(ck::cg_mix(0), 0u);
  EXPECT_EQ(ck::cg_mix(1), 0x5692161d100b05e5ull);
  const std::uint64_t rk = ck::cg_row_key(42, ck::kStreamValue, 7);
  EXPECT_EQ(rk, 0x06826a23fbb81991ull);
  EXPECT_EQ(ck::cg_draw(rk, 3, 5), 0x19e27f20c6476aa4ull);
  EXPECT_EQ(ck::cg_normal(rk, 3, 0), 0x1.dcb56408p-1);
}

TEST(CounterRng, NormalIsStandardish) {
  double s = 0, s2 = 0;
  const int n = 200000;
  const std::uint64_t rk = ck::cg_row_key(1, ck::kStreamValue, 0);
  for (int i = 0; i < n; ++i) {
    const double v = ck::cg_normal(rk, static_cast<std::uint64_t>(i), 0);
    ASSERT_GE(v, -6.0);
    ASSERT_LT(v, 6.0);
    s += v;
    s2 += v * v;
  }
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(s2 / n, 1.0, 0.02);
}

TEST(CounterGen, GoldenCases) {
  // One fingerprint per value family (f16 gemma4 with mixed scales, T = 5, E = 37, k = 4).
  const std::map<std::string, std::uint64_t> golden = {
    {"normal", 0xca3268ff031d020eull},
    {"ties", 0xcff49e1b0bba18edull},
    {"near-ties", 0xc37fd079dea614ecull},
    {"constant", 0xc93c0db7e5a060b6ull},
    {"huge", 0x0eab1cd03024c9d5ull},
    {"inf", 0xd5cf4464857cea91ull},
    {"nan", 0xe1ae964902582851ull},
    {"denormal", 0xf60f13716210940bull},
    {"bf16-exact", 0xc25622dead8dc820ull},
    {"integer", 0x87104e71d45e19ecull},
  };
  for (const auto& vf : counter_value_families()) {
    const RoutingCase c =
        build_counter_case(shape_of(Family::gemma4, DType::f16, 5, 37, 4, vf, Layout::contiguous, 0, "mixed"), 99);
    EXPECT_TRUE(golden.count(vf)) << vf;
    if (golden.count(vf)) EXPECT_EQ(fingerprint(c), golden.at(vf)) << vf;
  }
}

TEST(CounterGen, DeterministicRowByRowAndShapesMatchClassicGeneration) {
  GenConfig cfg;
  cfg.max_T = 300;
  cfg.max_E = 300;
  for (std::uint64_t seed = 1; seed <= 400; ++seed) {
    const RoutingCase a = generate_counter_case(seed, cfg);
    const RoutingCase b = generate_counter_case(seed, cfg);
    ASSERT_EQ(a.logits.size(), b.logits.size());
    ASSERT_EQ(std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * 4), 0) << seed;
    ASSERT_NO_THROW(a.check_consistent()) << seed;  // every value exact in its dtype
    const RoutingCase classic = generate_case(seed, cfg);
    EXPECT_EQ(a.family, classic.family);
    EXPECT_EQ(a.dtype, classic.dtype);
    EXPECT_EQ(a.T, classic.T);
    EXPECT_EQ(a.E, classic.E);
    EXPECT_EQ(a.k, classic.k);
    EXPECT_EQ(a.layout, classic.layout);
    EXPECT_EQ(a.pad, classic.pad);
    EXPECT_EQ(a.value_family, classic.value_family);
    EXPECT_EQ(a.scale_family, classic.scale_family);
    EXPECT_EQ(a.seed, seed);
    // any single row, materialized alone, is the row of the whole case (rows in reverse order)
    const CounterShape s = counter_shape(seed, cfg);
    const ck::CounterCaseDesc d = counter_desc(s.shape, s.value_seed);
    std::vector<float> row(static_cast<std::size_t>(a.E));
    for (std::int64_t t = a.T - 1; t >= 0; t -= 7) {
      counter_row(d, t, row.data());
      ASSERT_EQ(std::memcmp(row.data(), a.logits.data() + t * a.E, row.size() * 4), 0) << seed << " row " << t;
    }
  }
}

TEST(CounterGen, StorageBitsEqualMaterialize) {
  // What the device writes element by element equals the host layout, gaps included.
  const Layout layouts[] = {Layout::contiguous, Layout::padded, Layout::transposed, Layout::strided};
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16};
  int n = 0;
  for (Layout l : layouts) {
    for (DType dt : dtypes) {
      for (std::int64_t T : {1, 2, 9}) {
        for (std::int64_t E : {1, 3, 64}) {
          const std::int64_t pad = l == Layout::padded ? 5 : (l == Layout::strided ? 2 : 0);
          const CaseShape s = shape_of(Family::softmax_topk, dt, T, E, 1, "nan", l, pad);
          const RoutingCase c = build_counter_case(s, 1000 + static_cast<std::uint64_t>(n++));
          const std::vector<std::uint8_t> host = c.materialize();
          const ck::CounterCaseDesc d = counter_desc(s, c.seed);
          ASSERT_EQ(d.storage_elems * static_cast<std::int64_t>(dtype_size(dt)), static_cast<std::int64_t>(host.size()));
          for (std::int64_t i = 0; i < d.storage_elems; ++i) {
            const std::uint32_t b = ck::counter_storage_bits(d, i);
            std::uint32_t h = 0;
            std::memcpy(&h, host.data() + i * static_cast<std::int64_t>(dtype_size(dt)), dtype_size(dt));
            ASSERT_EQ(b, h) << layout_name(l) << " " << dtype_name(dt) << " T=" << T << " E=" << E << " element " << i;
          }
        }
      }
    }
  }
}

TEST(CounterGen, RowWritersCoverTheStorageOnceWithTheSameBits) {
  // The device generator writes row by row, the lanes of a warp striding over the row's storage
  // span (counter_write_row): together they must write every storage element exactly once, with
  // counter_storage_bits' bits, for every layout, lane count and value family.
  const Layout layouts[] = {Layout::contiguous, Layout::padded, Layout::transposed, Layout::strided};
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16};
  int n = 0;
  for (Layout l : layouts) {
    for (DType dt : dtypes) {
      for (const std::string& vf : counter_value_families()) {
        for (std::int64_t E : {1, 5, 33, 70}) {
          const std::int64_t T = 1 + n % 6;
          const std::int64_t pad = l == Layout::padded ? 1 + n % 7 : (l == Layout::strided ? 1 + n % 3 : 0);
          const int k = static_cast<int>(std::min<std::int64_t>(E, 1 + n % 4));
          const CaseShape s = shape_of(Family::softmax_topk, dt, T, E, k, vf, l, pad);
          const ck::CounterCaseDesc d = counter_desc(s, 7000 + static_cast<std::uint64_t>(n++));
          for (std::int32_t lanes : {1, 7, 32}) {
            std::vector<std::uint32_t> got(static_cast<std::size_t>(d.storage_elems), 0);
            std::vector<int> writes(got.size(), 0);
            for (std::int64_t t = 0; t < T; ++t) {
              const ck::CgRow row = ck::cg_row(d, t);
              for (std::int32_t lane = 0; lane < lanes; ++lane) {
                ck::counter_write_row(d, row, lane, lanes, [&](std::int64_t at, std::uint32_t bits) {
                  ASSERT_TRUE(at >= 0 && at < d.storage_elems) << at;
                  got[static_cast<std::size_t>(at)] = bits;
                  ++writes[static_cast<std::size_t>(at)];
                });
              }
            }
            for (std::int64_t i = 0; i < d.storage_elems; ++i) {
              const auto at = static_cast<std::size_t>(i);
              ASSERT_EQ(writes[at], 1) << layout_name(l) << " " << dtype_name(dt) << " " << vf << " E=" << E
                                       << " lanes " << lanes << " element " << i;
              ASSERT_EQ(got[at], ck::counter_storage_bits(d, i))
                  << layout_name(l) << " " << dtype_name(dt) << " " << vf << " E=" << E << " lanes " << lanes
                  << " element " << i;
            }
          }
        }
      }
    }
  }
}

TEST(CounterGen, ConversionsMatchTheReference) {
  Rng rng(5);
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16};
  for (int i = 0; i < 300000; ++i) {
    std::uint32_t u = static_cast<std::uint32_t>(rng.next());
    if (i % 3 == 0) u = (u & 0x8000ffffu) | ((static_cast<std::uint32_t>(rng.below(40)) + 100u) << 23);  // near f16
    float f;
    std::memcpy(&f, &u, 4);
    for (DType d : dtypes) {
      const float a = ck::cg_round_dtype(f, static_cast<std::int32_t>(d));
      const float b = round_to_dtype(f, d);
      ASSERT_EQ(bits(a), bits(b)) << std::hex << u << " " << dtype_name(d);
      if (!std::isnan(b)) {
        for (bool up : {false, true}) {
          ASSERT_EQ(bits(ck::cg_next_in_dtype(b, static_cast<std::int32_t>(d), up)), bits(next_in_dtype(b, d, up)))
              << std::hex << bits(b) << " " << dtype_name(d) << " up " << up;
        }
      }
    }
  }
  for (DType d : dtypes) {
    EXPECT_EQ(ck::cg_max_finite(static_cast<std::int32_t>(d)), dtype_max_finite(d));
    EXPECT_EQ(ck::cg_min_normal(static_cast<std::int32_t>(d)), dtype_min_normal(d));
    EXPECT_EQ(ck::cg_min_subnormal(static_cast<std::int32_t>(d)), dtype_min_subnormal(d));
  }
}

TEST(CounterGen, FamiliesReachTheirClasses) {
  const std::map<std::string, std::vector<std::string>> want = {
      {"ties", {"tie-at-k"}},
      {"near-ties", {"near-tie-at-k"}},
      {"constant", {"constant-row"}},
      {"huge", {"huge"}},
      {"inf", {"has-inf", "has-pos-inf", "masked-row"}},
      {"nan", {"has-nan", "masked-row"}},
      {"denormal", {"denormal"}},
      {"integer", {"tie-at-k"}},
  };
  for (const auto& [vf, classes] : want) {
    std::set<std::string> seen;
    std::int64_t tie_rows = 0, rows = 0;
    for (std::uint64_t seed = 0; seed < 60; ++seed) {
      const CaseShape s = shape_of(Family::softmax_topk, static_cast<DType>(seed % 3), 8, 16 + static_cast<std::int64_t>(seed % 5),
                                   1 + static_cast<int>(seed % 6), vf);
      const RoutingCase c = build_counter_case(s, seed);
      for (const auto& t : classify(c)) seen.insert(t);
      if (vf == "ties") {  // every row has a tie exactly at the k-th place
        for (std::int64_t t = 0; t < c.T; ++t) {
          RoutingCase row = c;
          row.T = 1;
          row.logits.assign(c.logits.begin() + t * c.E, c.logits.begin() + (t + 1) * c.E);
          const auto tags = classify(row);
          tie_rows += std::count(tags.begin(), tags.end(), "tie-at-k");
          ++rows;
        }
      }
    }
    for (const auto& cls : classes) EXPECT_TRUE(seen.count(cls)) << vf << " never reached " << cls;
    if (vf == "ties") EXPECT_EQ(tie_rows, rows);
  }
}

/// Host oracle verdict of row t of a case with outputs w / ids (row t's k values).
bool host_row_ok(const RoutingCase& c, std::int64_t t, const float* w, const std::int32_t* ids, const Precision& prec) {
  RoutingCase row = c;
  row.T = 1;
  row.layout = Layout::contiguous;
  row.pad = 0;
  row.logits.assign(c.logits.begin() + t * c.E, c.logits.begin() + (t + 1) * c.E);
  const MaterializedCase m = materialize(row);
  OracleOptions opt;
  opt.precision = prec;
  return check_routing(m.view, m.params, w, ids, opt).ok();
}

std::set<std::string> value_tags(const std::vector<std::string>& tags) {
  static const std::set<std::string> value = {"tie-at-k", "near-tie-at-k", "constant-row", "has-inf", "has-pos-inf",
                                              "has-nan",  "masked-row",    "denormal",     "huge"};
  std::set<std::string> out;
  for (const auto& t : tags) {
    if (value.count(t)) out.insert(t);
  }
  return out;
}

/// The host emulation's outputs (weights, ids) of `variant` with `mutant` on case c (materialized as m).
bool emulate_outputs(const RoutingCase& c, const MaterializedCase& m, kernels::Variant variant, kernels::Mutant mutant,
                     std::vector<float>* w, std::vector<std::int32_t>* ids) {
  w->assign(static_cast<std::size_t>(c.T * c.k), 0.0f);
  ids->assign(w->size(), 0);
  poison_outputs(w->data(), ids->data(), c.T * c.k);
  kernels::RoutingArgs a;
  a.gating = m.view.data;
  a.dtype = static_cast<kernels::GatingType>(c.dtype);
  a.T = c.T;
  a.E = static_cast<int>(c.E);
  a.k = c.k;
  a.row_stride = m.view.row_stride;
  a.col_stride = m.view.col_stride;
  a.scale = m.params.scale;
  a.family = static_cast<kernels::KernelFamily>(c.family);
  a.weights = w->data();
  a.ids = ids->data();
  return kernels::emulate_routing(a, variant, mutant) == kernels::ArgStatus::ok;
}

TEST(DeviceRowOracle, AgreesWithTheHostOracleOnCorrectAndMutantKernels) {
  GenConfig cfg;
  cfg.max_T = 40;
  cfg.max_E = 300;
  cfg.max_k = 32;
  cfg.families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw};
  const Precision prec = fp32_exact_selection();
  ck::CheckPrecision cp;
  cp.compute_eps = prec.compute_eps;
  cp.exp_ulps = prec.exp_ulps;
  cp.min_normal = prec.min_normal;
  std::map<std::string, std::int64_t> failing_rows;  // by mutant: rows both oracles fail
  std::int64_t rows = 0;
  for (int mi = 0; mi < static_cast<int>(kernels::Mutant::count_); ++mi) {
    const auto mutant = static_cast<kernels::Mutant>(mi);
    if (kernels::mutant_is_gpu_only(mutant)) continue;
    for (std::uint64_t seed = 1; seed <= 150; ++seed) {
      const RoutingCase c = generate_counter_case(seed * 7919 + static_cast<std::uint64_t>(mi), cfg);
      if (c.T == 0) continue;
      const MaterializedCase m = materialize(c);
      std::vector<float> w;
      std::vector<std::int32_t> ids;
      ASSERT_TRUE(emulate_outputs(c, m, kernels::Variant::block_per_row, mutant, &w, &ids));
      for (std::int64_t t = 0; t < c.T; ++t) {
        const float* row = c.logits.data() + t * c.E;
        const auto x = [&](std::int32_t e) { return row[e]; };
        const float* wt = w.data() + t * c.k;
        const std::int32_t* it = ids.data() + t * c.k;
        const ck::RowVerdict v = ck::check_softmax_row(static_cast<std::int32_t>(c.family), static_cast<std::int32_t>(c.dtype),
                                                       static_cast<std::int32_t>(c.E), c.k, x, m.params.scale, wt, it, cp,
                                                       ck::kCheckerCorrect);
        const bool host_ok = host_row_ok(c, t, wt, it, prec);
        ++rows;
        ASSERT_EQ(v.code == ck::kCheckOk, host_ok)
            << "mutant " << kernels::mutant_name(mutant) << " seed " << c.seed << " row " << t << " device code "
            << ck::check_code_name(v.code) << "\n" << describe_case(c);
        if (!host_ok) ++failing_rows[kernels::mutant_name(mutant)];
        if (mutant == kernels::Mutant::none) {
          // class bits = classify() of the row alone
          RoutingCase one = c;
          one.T = 1;
          one.layout = Layout::contiguous;
          one.pad = 0;
          one.logits.assign(row, row + c.E);
          std::vector<std::string> from_bits;
          static const std::pair<std::uint32_t, const char*> names[] = {
              {ck::kClassTie, "tie-at-k"}, {ck::kClassNearTie, "near-tie-at-k"}, {ck::kClassConstant, "constant-row"},
              {ck::kClassHasInf, "has-inf"}, {ck::kClassHasPosInf, "has-pos-inf"}, {ck::kClassHasNan, "has-nan"},
              {ck::kClassMasked, "masked-row"}, {ck::kClassDenormal, "denormal"}, {ck::kClassHuge, "huge"}};
          for (const auto& [bit, name] : names) {
            if (v.classes & bit) from_bits.push_back(name);
          }
          ASSERT_EQ(value_tags(from_bits), value_tags(classify(one))) << "seed " << c.seed << " row " << t;
        }
      }
    }
  }
  EXPECT_GT(rows, 10000);
  EXPECT_EQ(failing_rows.count("none"), 0u);
  // every CPU-visible planted bug is seen failing rows by both
  for (int mi = 1; mi < static_cast<int>(kernels::Mutant::count_); ++mi) {
    const auto mutant = static_cast<kernels::Mutant>(mi);
    if (kernels::mutant_is_gpu_only(mutant)) continue;
    EXPECT_GT(failing_rows[kernels::mutant_name(mutant)], 0) << kernels::mutant_name(mutant);
  }
}

/// A row reader that walks the row itself (ck_scan's other path, the one the device's reader takes).
struct ScanningRow {
  const float* row;
  mutable std::int64_t scans = 0;
  static constexpr bool kScans = true;
  float operator()(std::int32_t e) const { return row[e]; }
  template <class Visit>
  void scan(std::int32_t E, const Visit& visit) const {
    ++scans;
    for (std::int32_t e0 = 0; e0 < E; e0 += 8) {  // in units, as the device reads
      for (std::int32_t j = 0; j < 8 && e0 + j < E; ++j) visit(e0 + j, row[e0 + j]);
    }
  }
};

TEST(DeviceRowOracle, ScanningReaderGivesTheSameVerdicts) {
  GenConfig cfg;
  cfg.max_T = 20;
  cfg.max_E = 300;
  cfg.max_k = 32;
  cfg.families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw};
  const ck::CheckPrecision cp;
  std::int64_t rows = 0, scans = 0, failing = 0;
  for (const auto mutant : {kernels::Mutant::none, kernels::Mutant::skip_renormalise, kernels::Mutant::off_by_one_k}) {
    for (std::uint64_t seed = 1; seed <= 120; ++seed) {
      const RoutingCase c = generate_counter_case(seed * 104729 + static_cast<std::uint64_t>(mutant), cfg);
      if (c.T == 0) continue;
      const MaterializedCase m = materialize(c);
      std::vector<float> w;
      std::vector<std::int32_t> ids;
      ASSERT_TRUE(emulate_outputs(c, m, kernels::Variant::warp_per_row, mutant, &w, &ids));
      for (std::int64_t t = 0; t < c.T; ++t) {
        const float* row = c.logits.data() + t * c.E;
        const auto plain = [&](std::int32_t e) { return row[e]; };
        const ScanningRow scanning{row};
        const float* wt = w.data() + t * c.k;
        const std::int32_t* it = ids.data() + t * c.k;
        const auto check = [&](const auto& x) {
          return ck::check_softmax_row(static_cast<std::int32_t>(c.family), static_cast<std::int32_t>(c.dtype),
                                       static_cast<std::int32_t>(c.E), c.k, x, m.params.scale, wt, it, cp,
                                       ck::kCheckerCorrect);
        };
        const ck::RowVerdict p = check(plain), q = check(scanning);
        ASSERT_EQ(p.code, q.code) << "seed " << c.seed << " row " << t;
        ASSERT_EQ(p.slot, q.slot) << "seed " << c.seed << " row " << t;
        ASSERT_EQ(p.classes, q.classes) << "seed " << c.seed << " row " << t;
        ++rows;
        scans += scanning.scans;
        failing += p.code != ck::kCheckOk;
      }
    }
  }
  EXPECT_GT(rows, 1000);
  EXPECT_GT(failing, 0);  // the planted bugs' rows are compared too
  EXPECT_GT(scans, 0);    // the reader's own walk was taken
}

TEST(DeviceRowOracle, PlantedCheckerBugAcceptsWrongWeights) {
  // skip_renormalise gives wrong weights; the correct device oracle flags them, the planted
  // "accepts-any-weight" checker does not (the host sample must catch that, see the GPU tests).
  const CaseShape s = shape_of(Family::softmax_topk, DType::f32, 16, 64, 4, "normal");
  const RoutingCase c = build_counter_case(s, 3);
  const MaterializedCase m = materialize(c);
  std::vector<float> w(static_cast<std::size_t>(c.T * c.k));
  std::vector<std::int32_t> ids(w.size());
  kernels::RoutingArgs a;
  a.gating = m.view.data;
  a.dtype = kernels::GatingType::f32;
  a.T = c.T;
  a.E = 64;
  a.k = 4;
  a.row_stride = 64;
  a.family = kernels::KernelFamily::softmax_topk;
  a.weights = w.data();
  a.ids = ids.data();
  ASSERT_EQ(kernels::emulate_routing(a, kernels::Variant::warp_per_row, kernels::Mutant::skip_renormalise),
            kernels::ArgStatus::ok);
  int correct_flags = 0, planted_flags = 0;
  for (std::int64_t t = 0; t < c.T; ++t) {
    const auto x = [&](std::int32_t e) { return c.logits[static_cast<std::size_t>(t * 64 + e)]; };
    const ck::CheckPrecision cp;
    correct_flags += ck::check_softmax_row(1, 0, 64, 4, x, nullptr, w.data() + t * 4, ids.data() + t * 4, cp,
                                           ck::kCheckerCorrect).code == ck::kCheckWeight;
    planted_flags += ck::check_softmax_row(1, 0, 64, 4, x, nullptr, w.data() + t * 4, ids.data() + t * 4, cp,
                                           ck::kCheckerAcceptsAnyWeight).code != ck::kCheckOk;
  }
  EXPECT_EQ(correct_flags, 16);
  EXPECT_EQ(planted_flags, 0);
  EXPECT_EQ(parse_checker_mutant("accepts-any-weight"), ck::kCheckerAcceptsAnyWeight);
  EXPECT_THROW(parse_checker_mutant("nope"), std::invalid_argument);
}

TEST(CounterGen, SampledRowsAtLeastOnePerCaseAndAboutOneInAThousand) {
  std::int64_t sampled = 0, rows = 0;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const CaseShape s = shape_of(Family::softmax_topk, DType::f32, 1 + static_cast<std::int64_t>(seed * 97 % 5000), 8, 2, "normal");
    const ck::CounterCaseDesc d = counter_desc(s, seed);
    std::int64_t in_case = 0;
    for (std::int64_t t = 0; t < d.T; ++t) in_case += ck::counter_sampled_row(d, t, 1000);
    EXPECT_GE(in_case, 1) << seed;
    sampled += in_case;
    rows += d.T;
  }
  EXPECT_NEAR(static_cast<double>(sampled - 200) / static_cast<double>(rows), 1e-3, 3e-4);
}

TEST(CampaignRates, ResultsCarryRatesAndCheckPathAndMergeSumsThem) {
  // Two real shards of a host campaign; the second one's "check" is then rewritten as a device
  // path document would be, to check that merge sums the device counters and marks the mix.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("moecheck_rates_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto target = make_core_target("kernel:auto", {});
  std::vector<std::string> paths;
  for (int i = 0; i < 2; ++i) {
    CampaignOptions co;
    co.seed = 5;
    co.max_cases = 40;
    co.shard_index = i;
    co.shard_count = 2;
    co.progress = false;
    co.results_json = (dir / ("s" + std::to_string(i) + ".json")).string();
    std::ostringstream log;
    const CampaignResult r = run_campaign(*target, co, log);
    EXPECT_EQ(r.check_path, "host");
    EXPECT_GT(r.rows_per_s, 0.0);
    EXPECT_GT(r.cases_per_s, 0.0);
    EXPECT_NE(campaign_summary(r).find("rows/s, checked on the host"), std::string::npos) << campaign_summary(r);
    paths.push_back(co.results_json);
  }
  nlohmann::json j = nlohmann::json::parse(std::ifstream(paths[1]));
  ASSERT_TRUE(j.contains("rates") && j["rates"].contains("rows_per_s"));
  EXPECT_EQ(j["check"]["path"], "host");
  j["check"] = {{"path", "device"},
                {"device", {{"batches", 2}, {"cases", 40}, {"rows", 900}, {"flagged_rows", 3}, {"confirmed_rows", 3},
                            {"host_checked_rows", 45}, {"disagreements", 1}, {"device_seconds", 0.5},
                            {"host_seconds", 0.25}, {"generate_seconds", 0.125}, {"wait_seconds", 0.0625}}}};
  std::ofstream(paths[1]) << j.dump(1);
  const MergeResult m = merge_campaigns(paths, {});
  const nlohmann::json merged = nlohmann::json::parse(m.json);
  EXPECT_EQ(merged["check"]["path"], "mixed");
  EXPECT_EQ(merged["check"]["device"]["rows"], 900);
  EXPECT_EQ(merged["check"]["device"]["disagreements"], 1);
  EXPECT_NEAR(merged["rates"]["rows_per_s"].get<double>(),
              static_cast<double>(merged["rows"].get<std::int64_t>()) / merged["elapsed_s"].get<double>(), 1e-6);
  EXPECT_EQ(m.campaign.device_check.disagreements, 1);
  EXPECT_EQ(merged["check"]["device"]["generate_seconds"], 0.125);
  EXPECT_EQ(merged["check"]["device"]["wait_seconds"], 0.0625);
  EXPECT_EQ(m.campaign.device_check.host_seconds, 0.25);
  for (const DeviceCheckField& f : kDeviceCheckFields) {  // every counter and time is written
    EXPECT_TRUE(merged["check"]["device"].contains(f.name)) << f.name;
  }
  EXPECT_EQ(merged["check"]["device"].size(), std::size(kDeviceCheckFields));
  fs::remove_all(dir);
}

TEST(CampaignRates, ResumeKeepsTheCheckingPath) {
  // A state recorded on the device path cannot be resumed on the host path (the paths draw
  // different cases), and a malformed "check" is named.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("moecheck_resume_path_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto target = make_core_target("kernel:auto", {});
  CampaignOptions co;
  co.seed = 9;
  co.max_cases = 20;
  co.progress = false;
  co.state_file = (dir / "state.json").string();
  std::ostringstream log;
  run_campaign(*target, co, log);
  nlohmann::json j = nlohmann::json::parse(std::ifstream(co.state_file));
  ASSERT_EQ(j["check"]["path"], "host");
  co.resume = true;
  co.max_cases = 30;
  EXPECT_NO_THROW(run_campaign(*target, co, log));  // same path: resumes
  j = nlohmann::json::parse(std::ifstream(co.state_file));
  j["check"]["path"] = "device";
  std::ofstream(co.state_file) << j.dump(1);
  try {
    run_campaign(*target, co, log);
    ADD_FAILURE() << "resumed a device-path state on the host path";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("was checked on the device and this run would check on the host"),
              std::string::npos)
        << e.what();
  }
  j["check"] = {{"path", "host"},
                {"device", {{"batches", 1}, {"cases", 2}, {"rows", 3}, {"flagged_rows", 0}, {"confirmed_rows", 0},
                            {"host_checked_rows", 2}, {"disagreements", 0}, {"wait_seconds", "soon"}}}};
  std::ofstream(co.state_file) << j.dump(1);
  try {
    run_campaign(*target, co, log);
    ADD_FAILURE() << "accepted a malformed device time";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("field 'check.device.wait_seconds' must be a finite number >= 0"),
              std::string::npos)
        << e.what();
  }
  j["check"]["device"].erase("disagreements");
  j["check"]["device"]["wait_seconds"] = 0.5;
  std::ofstream(co.state_file) << j.dump(1);
  try {
    run_campaign(*target, co, log);
    ADD_FAILURE() << "accepted a device block without its counters";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("field 'check.device.disagreements' is missing"), std::string::npos)
        << e.what();
  }
  j["check"] = 5;
  std::ofstream(co.state_file) << j.dump(1);
  try {
    run_campaign(*target, co, log);
    ADD_FAILURE() << "accepted a malformed check field";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("field 'check'"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(CounterGen, RejectsUnknownFamilies) {
  EXPECT_THROW(counter_desc(shape_of(Family::gemma4, DType::f32, 1, 4, 1, "bogus"), 1), RoutingError);
  EXPECT_THROW(counter_desc(shape_of(Family::gemma4, DType::f32, 1, 4, 1, "normal", Layout::contiguous, 0, "bogus"), 1),
               RoutingError);
  EXPECT_THROW(counter_desc(shape_of(Family::gemma4, DType::f32, 1, 4, 1, "normal", Layout::padded, 0), 1), RoutingError);
}

}  // namespace
