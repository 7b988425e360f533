// Device-side checking on a GPU (label gpu; skips without a device):
//  * device generation == host generation bit for bit (storage with gaps, scales, poisoned
//    outputs and guards) for many seeds, shapes, dtypes, layouts and value/scale families;
//  * the device checker's verdict on every row (every row sampled) equals the host oracle's, on
//    the correct kernels and on every planted-bug kernel;
//  * pipelined batches (run_batch, submit_cases / collect) give the outcomes of batches run one
//    at a time, case for case;
//  * cuda:<variant> campaigns check on the device by default: no failure and no disagreement on
//    the correct kernels, planted kernel bugs found (and confirmed by the host), and the planted
//    device-checker bug caught by the host sample as a checker-disagreement.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "harness/core/campaign.hpp"
#include "harness/core/counter_case.hpp"
#include "harness/core/device_check.hpp"
#include "harness/core/mutation.hpp"
#include "kernels/checker/checker.hpp"
#include "kernels/routing_mutants.hpp"
#include "properties/support/cuda_test.hpp"
#include "reference/oracle.hpp"

namespace {

using namespace moecheck;
namespace ck = moecheck::checker;

class DeviceCheckGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!moecheck::testing::have_cuda_device()) GTEST_SKIP() << "no CUDA device";
  }
};

template <class T>
struct Dev {
  T* p = nullptr;
  ~Dev() {
    if (p) cudaFree(p);
  }
  cudaError_t alloc(std::size_t n) { return cudaMalloc(reinterpret_cast<void**>(&p), (n ? n : 1) * sizeof(T)); }
};

/// A batch of counter cases laid out like the device checker's batches.
struct Batch {
  std::vector<RoutingCase> cases;  // host materialization
  std::vector<ck::BatchCase> b;
  std::int64_t rows = 0, elems = 0, bytes = 0, outs = 0, scales = 0;
  void add(const CaseShape& s, std::uint64_t value_seed) {
    RoutingCase c = build_counter_case(s, value_seed);
    ck::BatchCase x;
    x.desc = counter_desc(s, value_seed);
    x.storage_byte = (bytes + 255) / 256 * 256;
    x.out_begin = outs;
    x.scale_begin = scales;
    x.has_scale = (s.family == Family::gemma4 && !c.scale.empty()) ? 1 : 0;
    x.row_begin = rows;
    bytes = x.storage_byte + x.desc.storage_elems * static_cast<std::int64_t>(dtype_size(s.dtype));
    elems += x.desc.storage_elems;
    outs += s.T * s.k + 2 * ck::kCkGuardElements;
    scales += x.has_scale ? s.E : 0;
    rows += s.T;
    b.push_back(x);
    cases.push_back(std::move(c));
  }
};

Batch make_batch(std::uint64_t seed0, int n, bool softmax_only) {
  Batch batch;
  GenConfig cfg;
  cfg.max_T = 3000;
  cfg.max_E = 1100;
  cfg.max_k = 32;
  if (softmax_only) cfg.families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw};
  for (int i = 0; i < n; ++i) {
    const CounterShape s = counter_shape(seed0 + static_cast<std::uint64_t>(i), cfg);
    batch.add(s.shape, s.value_seed);
  }
  return batch;
}

TEST_F(DeviceCheckGpu, DeviceGenerationEqualsHostGenerationBitForBit) {
  for (std::uint64_t round = 0; round < 4; ++round) {
    const Batch batch = make_batch(1000 * round + 1, 300, false);
    Dev<std::uint8_t> storage;
    Dev<float> w, scale;
    Dev<std::int32_t> ids;
    Dev<ck::BatchCase> cases;
    CUDA_ASSERT(storage.alloc(static_cast<std::size_t>(batch.bytes) + 256));
    CUDA_ASSERT(w.alloc(static_cast<std::size_t>(batch.outs)));
    CUDA_ASSERT(ids.alloc(static_cast<std::size_t>(batch.outs)));
    CUDA_ASSERT(scale.alloc(static_cast<std::size_t>(batch.scales)));
    CUDA_ASSERT(cases.alloc(batch.b.size()));
    CUDA_ASSERT(cudaMemcpy(cases.p, batch.b.data(), batch.b.size() * sizeof(ck::BatchCase), cudaMemcpyHostToDevice));
    CUDA_ASSERT(ck::launch_counter_generate(cases.p, static_cast<int>(batch.b.size()), batch.rows, batch.elems, batch.outs,
                                            batch.scales, storage.p, w.p, ids.p, scale.p, nullptr));
    CUDA_ASSERT(cudaDeviceSynchronize());
    std::vector<std::uint8_t> hs(static_cast<std::size_t>(batch.bytes));
    std::vector<float> hw(static_cast<std::size_t>(batch.outs)), hsc(static_cast<std::size_t>(batch.scales));
    std::vector<std::int32_t> hid(hw.size());
    CUDA_ASSERT(cudaMemcpy(hs.data(), storage.p, hs.size(), cudaMemcpyDeviceToHost));
    CUDA_ASSERT(cudaMemcpy(hw.data(), w.p, hw.size() * 4, cudaMemcpyDeviceToHost));
    CUDA_ASSERT(cudaMemcpy(hid.data(), ids.p, hid.size() * 4, cudaMemcpyDeviceToHost));
    if (!hsc.empty()) CUDA_ASSERT(cudaMemcpy(hsc.data(), scale.p, hsc.size() * 4, cudaMemcpyDeviceToHost));
    for (std::size_t i = 0; i < batch.b.size(); ++i) {
      const RoutingCase& c = batch.cases[i];
      const ck::BatchCase& b = batch.b[i];
      const std::vector<std::uint8_t> host = c.materialize();
      ASSERT_EQ(std::memcmp(host.data(), hs.data() + b.storage_byte, host.size()), 0)
          << "case " << i << ": " << describe_case(c, 8);
      if (b.has_scale) {
        ASSERT_EQ(std::memcmp(c.scale.data(), hsc.data() + b.scale_begin, c.scale.size() * 4), 0) << "scale of case " << i;
      }
      const std::int64_t body = c.T * c.k;
      for (std::int64_t j = 0; j < body + 2 * ck::kCkGuardElements; ++j) {
        std::uint32_t wb;
        std::memcpy(&wb, &hw[static_cast<std::size_t>(b.out_begin + j)], 4);
        const bool guard = j < ck::kCkGuardElements || j >= ck::kCkGuardElements + body;
        ASSERT_EQ(wb, guard ? kGuardWeightBits : kPoisonWeightBits);
        ASSERT_EQ(hid[static_cast<std::size_t>(b.out_begin + j)], guard ? kGuardId : kPoisonId);
      }
    }
  }
}

TEST_F(DeviceCheckGpu, DeviceCheckerAgreesWithHostOracleOnEveryRowOfCorrectAndMutantKernels) {
  const Precision prec = fp32_exact_selection();
  for (int mi = 0; mi < static_cast<int>(kernels::Mutant::count_); ++mi) {
    const auto mutant = static_cast<kernels::Mutant>(mi);
    const Batch batch = make_batch(77 + 1000 * static_cast<std::uint64_t>(mi), 120, true);
    Dev<std::uint8_t> storage;
    Dev<float> w, scale;
    Dev<std::int32_t> ids;
    Dev<ck::BatchCase> cases;
    Dev<ck::RowRecord> fails, samples;
    Dev<std::uint32_t> counters;
    const std::size_t n = batch.b.size();
    CUDA_ASSERT(storage.alloc(static_cast<std::size_t>(batch.bytes) + 256));
    CUDA_ASSERT(w.alloc(static_cast<std::size_t>(batch.outs)));
    CUDA_ASSERT(ids.alloc(static_cast<std::size_t>(batch.outs)));
    CUDA_ASSERT(scale.alloc(static_cast<std::size_t>(batch.scales)));
    CUDA_ASSERT(cases.alloc(n));
    CUDA_ASSERT(fails.alloc(static_cast<std::size_t>(batch.rows) + n));
    CUDA_ASSERT(samples.alloc(static_cast<std::size_t>(batch.rows) + n));
    CUDA_ASSERT(counters.alloc(2 + 2 * n));
    CUDA_ASSERT(cudaMemset(counters.p, 0, (2 + 2 * n) * 4));
    CUDA_ASSERT(cudaMemcpy(cases.p, batch.b.data(), n * sizeof(ck::BatchCase), cudaMemcpyHostToDevice));
    CUDA_ASSERT(ck::launch_counter_generate(cases.p, static_cast<int>(n), batch.rows, batch.elems, batch.outs, batch.scales, storage.p,
                                            w.p, ids.p, scale.p, nullptr));
    for (const ck::BatchCase& b : batch.b) {
      if (b.desc.T == 0) continue;
      kernels::RoutingArgs a;
      a.gating = storage.p + b.storage_byte;
      a.dtype = static_cast<kernels::GatingType>(b.desc.dtype);
      a.T = b.desc.T;
      a.E = b.desc.E;
      a.k = b.desc.k;
      a.row_stride = b.desc.row_stride;
      a.col_stride = b.desc.col_stride;
      a.scale = b.has_scale ? scale.p + b.scale_begin : nullptr;
      a.family = static_cast<kernels::KernelFamily>(b.desc.family);
      a.weights = w.p + b.out_begin + ck::kCkGuardElements;
      a.ids = ids.p + b.out_begin + ck::kCkGuardElements;
      CUDA_ASSERT(kernels::launch_routing_mutant(a, kernels::Variant::automatic, nullptr, mutant));
    }
    ck::CheckLaunch p;
    p.cases = cases.p;
    p.n_cases = static_cast<int>(n);
    p.rows_total = batch.rows;
    p.storage = storage.p;
    p.weights = w.p;
    p.ids = ids.p;
    p.scale = scale.p;
    p.sample_one_in = 1;  // every row comes back with the device verdict
    p.fails = fails.p;
    p.fail_capacity = static_cast<std::uint32_t>(batch.rows + n);
    p.samples = samples.p;
    p.sample_capacity = static_cast<std::uint32_t>(batch.rows + n);
    p.fail_count = counters.p;
    p.sample_count = counters.p + 1;
    p.case_classes = counters.p + 2;
    p.case_fail_count = counters.p + 2 + n;
    CUDA_ASSERT(ck::launch_device_check(p, nullptr));
    CUDA_ASSERT(cudaDeviceSynchronize());
    std::uint32_t cnt[2];
    CUDA_ASSERT(cudaMemcpy(cnt, counters.p, 8, cudaMemcpyDeviceToHost));
    ASSERT_GE(cnt[1], static_cast<std::uint32_t>(batch.rows));  // every row (the forced ones twice)
    std::vector<ck::RowRecord> recs(cnt[1]);
    CUDA_ASSERT(cudaMemcpy(recs.data(), samples.p, recs.size() * sizeof(ck::RowRecord), cudaMemcpyDeviceToHost));
    std::int64_t host_fail = 0;
    for (const ck::RowRecord& r : recs) {
      const RoutingCase& c = batch.cases[static_cast<std::size_t>(r.case_slot)];
      RoutingCase row = c;
      row.T = 1;
      row.layout = Layout::contiguous;
      row.pad = 0;
      row.logits.assign(c.logits.begin() + r.row * c.E, c.logits.begin() + (r.row + 1) * c.E);
      const MaterializedCase m = materialize(row);
      OracleOptions opt;
      opt.precision = prec;
      const CheckReport rep = check_routing(m.view, m.params, r.weights, r.ids, opt);
      ASSERT_EQ(rep.ok(), r.code == ck::kCheckOk)
          << kernels::mutant_name(mutant) << " case " << r.case_slot << " row " << r.row << " device "
          << ck::check_code_name(r.code) << " host " << rep.str();
      host_fail += rep.ok() ? 0 : 1;
    }
    if (mutant == kernels::Mutant::none) {
      EXPECT_EQ(host_fail, 0);
    }
    std::printf("  %-20s rows %lld, failing rows %lld (device = host on every row)\n", kernels::mutant_name(mutant),
                static_cast<long long>(batch.rows), static_cast<long long>(host_fail));
  }
}

CampaignResult device_campaign(const std::string& mutant, int checker_mutant, std::int64_t cases, bool host_check = false) {
  TargetOptions topt;
  topt.mutant = mutant;
  auto target = make_core_target("cuda:auto", topt);
  CampaignOptions co;
  co.seed = 11;
  co.max_cases = cases;
  co.max_failures = 4;
  co.progress = false;
  co.shrink_attempts = 200;
  co.checker_mutant = checker_mutant;
  co.host_check = host_check;
  co.sample_one_in = 50;
  std::ostringstream log;
  return run_campaign(*target, co, log);
}

TEST_F(DeviceCheckGpu, CampaignOnCorrectKernelsChecksOnTheDeviceWithoutFailures) {
  const CampaignResult r = device_campaign("none", 0, 20000);
  EXPECT_EQ(r.check_path, "device");
  EXPECT_TRUE(r.failures.empty()) << campaign_summary(r);
  EXPECT_EQ(r.device_check.disagreements, 0);
  EXPECT_GT(r.device_check.device_rows, 100000);
  EXPECT_GE(r.device_check.sampled_rows, r.device_check.device_cases);  // at least one row per case
  EXPECT_GT(r.classes.count("tie-at-k"), 0u);
  EXPECT_GT(r.classes.count("has-nan"), 0u);
  std::printf("  device path: %s", campaign_summary(r).c_str());
}

TEST_F(DeviceCheckGpu, PlantedKernelBugsAreFoundAndConfirmedOnTheDevicePath) {
  for (const char* m : {"skip_renormalise", "off_by_one_k", "drop_tied_expert", "nan_duplicates", "zero_sum_divide"}) {
    const CampaignResult r = device_campaign(m, 0, 3000);
    EXPECT_EQ(r.check_path, "device");
    ASSERT_FALSE(r.failures.empty()) << m;
    for (const auto& f : r.failures) EXPECT_NE(f.check, kCheckerDisagreement) << m << ": " << f.message;
    EXPECT_EQ(r.device_check.disagreements, 0) << m;
    EXPECT_GT(r.device_check.confirmed_rows, 0) << m;
  }
}

TEST_F(DeviceCheckGpu, KillMatrixOnTheDevicePath) {
  // Every planted kernel bug, with the kill matrix's own per-mutant campaign settings
  // (kernel_mutant_campaign), on cuda:auto through the device checker (short shrinks). Each one
  // must be found, never as a checker-disagreement. shared_race needs racing warps the draw may
  // not produce within its capped budget: reported, not required (kernel_gpu_test kills it).
  for (kernels::Mutant m : kernel_mutants()) {
    MutationOptions mo;
    mo.cases = 400;
    mo.cuda = true;
    CampaignOptions co = kernel_mutant_campaign(m, mo);
    co.max_failures = 1;
    co.shrink_attempts = 60;
    co.shrink_seconds = 5;
    TargetOptions topt;
    topt.mutant = kernels::mutant_name(m);
    auto target = make_core_target("cuda:auto", topt);
    std::ostringstream log;
    const CampaignResult r = run_campaign(*target, co, log);
    EXPECT_EQ(r.check_path, "device");
    EXPECT_EQ(r.device_check.disagreements, 0) << kernels::mutant_name(m);
    std::printf("  %-18s %s after %lld cases: %s\n", kernels::mutant_name(m), r.failures.empty() ? "SURVIVED" : "killed",
                static_cast<long long>(r.failures.empty() ? r.cases : r.failures.front().case_index + 1),
                r.failures.empty() ? "-" : (r.failures.front().check + " " + r.failures.front().message).c_str());
    if (m == kernels::Mutant::shared_race) continue;
    ASSERT_FALSE(r.failures.empty()) << kernels::mutant_name(m) << "\n" << log.str();
    EXPECT_NE(r.failures.front().check, kCheckerDisagreement) << kernels::mutant_name(m);
  }
}

TEST_F(DeviceCheckGpu, PlantedCheckerBugIsCaughtByTheHostSample) {
  // The device checker that accepts any weight passes skip_renormalise's wrong weights; the host
  // re-check of the sampled rows disagrees: a checker-disagreement failure, never silence.
  const CampaignResult r = device_campaign("skip_renormalise", ck::kCheckerAcceptsAnyWeight, 3000);
  ASSERT_FALSE(r.failures.empty());
  bool disagreement = false;
  for (const auto& f : r.failures) disagreement = disagreement || f.check == kCheckerDisagreement;
  EXPECT_TRUE(disagreement) << campaign_summary(r);
  EXPECT_GT(r.device_check.disagreements, 0);
  // the planted checker on the correct kernel: nothing to accept wrongly, no failure
  const CampaignResult ok = device_campaign("none", ck::kCheckerAcceptsAnyWeight, 2000);
  EXPECT_TRUE(ok.failures.empty()) << campaign_summary(ok);
}

/// One outcome as text: what a campaign reads from it. For a failing case, which of its flagged
/// rows the device recorded (at most 4,096 per batch, the first to get there) may vary: its
/// kind, not its row or message (the campaign re-runs a failing case on the host).
std::string outcome_text(const DeviceCaseOutcome& o) {
  std::string t = std::to_string(o.index) + " " + std::to_string(o.seed) + " " + outcome_kind_name(o.kind) + " [";
  for (const auto& c : o.classes) t += c + ",";
  t += "]";
  if (o.kind != DeviceCaseOutcome::Kind::fail) t += " " + o.check + " " + std::to_string(o.row) + " " + o.message;
  return t;
}

TEST_F(DeviceCheckGpu, PipelinedBatchesEqualBatchesRunOneAtATime) {
  // run_batch launches the next batch before judging this one, submit_cases / collect keep two
  // batches in flight: both must give the outcomes run_cases gives one batch at a time, case for
  // case (a planted bug, so that failing and passing cases both occur), also when a call asks for
  // other cases than the ones launched ahead (dropped, then run afresh).
  TargetOptions topt;
  topt.mutant = "drop_tied_expert";
  auto target = make_core_target("cuda:auto", topt);
  DeviceCheckOptions dco;
  dco.max_batch_cases = 37;  // many batches
  dco.sample_one_in = 20;
  std::string why;
  auto piped = make_device_checker(*target, dco, &why);
  auto submitted = make_device_checker(*target, dco, &why);
  auto single = make_device_checker(*target, dco, &why);
  ASSERT_TRUE(piped && submitted && single) << why;
  GenConfig gen;
  gen.max_T = 700;
  gen.max_E = 300;
  OracleOptions oracle;
  const std::uint64_t seed = 4242;
  const auto request = [&](std::int64_t first, std::int64_t n) {
    std::vector<DeviceCaseRequest> req;
    for (std::int64_t i = first; i < first + n; ++i) {
      DeviceCaseRequest q;
      q.index = i;
      q.seed = case_seed(seed, i);
      q.shape = counter_shape(q.seed, gen);
      req.push_back(q);
    }
    return req;
  };
  const auto one_at_a_time = [&](std::int64_t first, std::int64_t n) {
    std::vector<std::string> t;
    while (n > 0) {
      const auto out = single->run_cases(request(first, n), oracle);
      for (const auto& o : out) t.push_back(outcome_text(o));
      first += static_cast<std::int64_t>(out.size());
      n -= static_cast<std::int64_t>(out.size());
    }
    return t;
  };
  // run_batch, as a campaign calls it: 900 cases, then a jump (the batch launched ahead dropped)
  std::vector<std::string> got;
  std::int64_t first = 0, left = 900;
  int fails = 0;
  while (left > 0) {
    const auto out = piped->run_batch(seed, first, 1, left, gen, oracle);
    ASSERT_FALSE(out.empty());
    for (const auto& o : out) {
      got.push_back(outcome_text(o));
      fails += o.kind == DeviceCaseOutcome::Kind::fail ? 1 : 0;
    }
    first += static_cast<std::int64_t>(out.size());
    left -= static_cast<std::int64_t>(out.size());
  }
  EXPECT_GT(fails, 0);
  EXPECT_GT(piped->stats().batches, 10);
  EXPECT_EQ(got, one_at_a_time(0, 900));
  const auto jump = piped->run_batch(seed, 5000, 1, 50, gen, oracle);
  std::vector<std::string> jt;
  for (const auto& o : jump) jt.push_back(outcome_text(o));
  EXPECT_EQ(jt, one_at_a_time(5000, static_cast<std::int64_t>(jump.size())));
  // submit_cases / collect with two batches in flight
  std::vector<std::string> sub;
  std::int64_t next = 0;
  next += submitted->submit_cases(request(next, 900 - next), oracle);
  while (true) {
    const bool more = next < 900;
    if (more) {
      next += submitted->submit_cases(request(next, 900 - next), oracle);
      EXPECT_THROW(submitted->submit_cases(request(next, 1), oracle), std::logic_error);  // a third
    }
    for (const auto& o : submitted->collect(oracle)) sub.push_back(outcome_text(o));
    if (!more) break;
  }
  EXPECT_EQ(sub, one_at_a_time(0, 900));
  EXPECT_THROW(submitted->collect(oracle), std::logic_error);
}

TEST_F(DeviceCheckGpu, HostCheckKeepsTheHostPath) {
  const CampaignResult r = device_campaign("none", 0, 300, true);
  EXPECT_EQ(r.check_path, "host");
  EXPECT_TRUE(r.failures.empty());
}

}  // namespace
