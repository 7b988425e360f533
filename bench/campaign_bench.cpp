// moecheck routing benchmarks: campaign throughput, rows judged per second by a cuda:auto
// campaign on each checking path (built when the harness core is linked, MOECHECK_BENCH_CAMPAIGN).
//
// BM_Campaign/path:device/dtype:<d>/E:<E>/k:<k>/T:<T>/manual_time
//   the device path of harness/core/device_check.hpp: counter-generated cases, the fused kernel,
//   the fp64 device oracle, host confirmation of flagged rows and the host re-check of the sample
//   (at least one row per case, about 1 in 1,000); one iteration is one batch of cases of T rows
//   (about 2^20 rows), pipelined like a campaign's batches (the next batch is launched before
//   this one's host part), timed on the host clock: in steady state, the time between verdicts.
// BM_Campaign/path:host/dtype:<d>/E:<E>/k:<k>/T:<T>/manual_time
//   the host-check path (--host-check): one case generated on the host, copied to the device,
//   routed, copied back and judged by the host reference and oracle (one process).
// Cases: gemma4 with uniform per-expert scales, contiguous, the value family cycling through all
// ten default families case by case. Every case must pass (the benchmark fails otherwise).
// Counters: rows_per_second, cases_per_second, rows (T), and for the device path
// host_checked_rows_per_case and where a batch's time goes (ms per batch): gpu_generate_ms,
// gpu_route_ms, gpu_check_ms (CUDA events), host_prepare_ms, host_wait_ms, host_judge_ms.
#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_common.hpp"
#include "harness/core/campaign.hpp"
#include "harness/core/counter_case.hpp"
#include "harness/core/device_check.hpp"

namespace moecheck::bench {
namespace {

using Clock = std::chrono::steady_clock;

CaseShape campaign_shape(DType d, int E, int k, std::int64_t T, std::int64_t i) {
  CaseShape s;
  s.family = Family::gemma4;
  s.dtype = d;
  s.T = T;
  s.E = E;
  s.k = k;
  s.layout = Layout::contiguous;
  s.value_family = all_value_families()[static_cast<std::size_t>(i) % all_value_families().size()];
  s.scale_family = "uniform";
  return s;
}

void bm_campaign(benchmark::State& state, bool device_path, DType d, int E, int k, std::int64_t T) {
  std::unique_ptr<Target> target;
  try {
    target = make_core_target("cuda:auto", {});
  } catch (const std::exception& e) {
    fail(state, e.what());
    return;
  }
  OracleOptions oracle;  // the strict contract, as the campaign judges cuda:auto
  std::int64_t next = 0, rows = 0, cases = 0, host_rows = 0;
  double seconds = 0;
  if (device_path) {
    std::string why;
    std::unique_ptr<DeviceChecker> checker = make_device_checker(*target, {}, &why);
    if (!checker) {
      fail(state, "no device checker: " + why);
      return;
    }
    const std::int64_t per_batch = std::max<std::int64_t>(1, (std::int64_t{1} << 20) / T);
    // Pipelined as a campaign's run_batch is: batch i + 1 is submitted before batch i is
    // collected, so its device part overlaps batch i's host part.
    const auto submit = [&] {
      std::vector<DeviceCaseRequest> req(static_cast<std::size_t>(per_batch));
      for (std::size_t i = 0; i < req.size(); ++i) {
        DeviceCaseRequest& q = req[i];
        q.index = next + static_cast<std::int64_t>(i);
        q.seed = case_seed(0xbe7c4, q.index);
        q.shape.shape = campaign_shape(d, E, k, T, q.index);
        q.shape.value_seed = q.seed;
      }
      next += checker->submit_cases(req, oracle);
    };
    const auto check = [&](const std::vector<DeviceCaseOutcome>& out) {
      for (const DeviceCaseOutcome& o : out) {
        if (o.kind != DeviceCaseOutcome::Kind::pass) {
          fail(state, std::string("case #") + std::to_string(o.index) + " " + outcome_kind_name(o.kind) + ": " +
                          o.check + " " + o.message);
          return false;
        }
      }
      return true;
    };
    submit();  // warm-up: buffers allocated, kernels loaded
    if (!check(checker->collect(oracle))) return;
    const DeviceCheckStats before = checker->stats();
    submit();
    for (auto _ : state) {
      const auto t0 = Clock::now();
      submit();
      const std::vector<DeviceCaseOutcome> out = checker->collect(oracle);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      state.SetIterationTime(s);
      seconds += s;
      if (!check(out)) return;
      for (const DeviceCaseOutcome& o : out) rows += o.c.T;
      cases += static_cast<std::int64_t>(out.size());
    }
    if (!check(checker->collect(oracle))) return;  // the batch still in flight
    // Where a batch's time goes, ms per batch: GPU stages (CUDA events) and host parts.
    const DeviceCheckStats& after = checker->stats();
    host_rows = after.sampled_rows - before.sampled_rows;
    const double nb = static_cast<double>(std::max<std::int64_t>(after.batches - before.batches, 1));
    state.counters["gpu_generate_ms"] = (after.generate_seconds - before.generate_seconds) * 1e3 / nb;
    state.counters["gpu_route_ms"] = (after.route_seconds - before.route_seconds) * 1e3 / nb;
    state.counters["gpu_check_ms"] = (after.check_seconds - before.check_seconds) * 1e3 / nb;
    state.counters["host_prepare_ms"] = (after.prepare_seconds - before.prepare_seconds) * 1e3 / nb;
    state.counters["host_wait_ms"] = (after.wait_seconds - before.wait_seconds) * 1e3 / nb;
    state.counters["host_judge_ms"] = (after.host_seconds - before.host_seconds) * 1e3 / nb;
    state.counters["host_checked_rows_per_case"] = cases ? static_cast<double>(host_rows) / static_cast<double>(cases) : 0.0;
  } else {
    for (auto _ : state) {
      const auto t0 = Clock::now();
      RoutingCase c = build_case(campaign_shape(d, E, k, T, next), case_seed(0xbe7c4, next));
      ++next;
      const Verdict v = evaluate(*target, c, oracle);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      state.SetIterationTime(s);
      seconds += s;
      if (v.kind != Verdict::Kind::pass) {
        fail(state, "case " + c.value_family + ": " + v.check + " " + v.message);
        return;
      }
      rows += c.T;
      ++cases;
    }
  }
  if (seconds > 0) {
    state.counters["rows_per_second"] = static_cast<double>(rows) / seconds;
    state.counters["cases_per_second"] = static_cast<double>(cases) / seconds;
  }
  state.counters["rows"] = static_cast<double>(T);
}

}  // namespace

void register_campaign_benchmarks() {
  for (int E : {64, 128, 256}) {
    for (bool device_path : {true, false}) {
      const int k = 8;
      const std::int64_t T = 65536;
      const std::string name = std::string("BM_Campaign/path:") + (device_path ? "device" : "host") +
                               "/dtype:bf16/E:" + std::to_string(E) + "/k:" + std::to_string(k) + "/T:" +
                               std::to_string(T);
      benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
        bm_campaign(st, device_path, DType::bf16, E, k, T);
      })->UseManualTime()->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace moecheck::bench
