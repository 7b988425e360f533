// Tests of moecheck::reports: benchmark loading, the noise-aware regression gate, the
// dashboard and the campaign page. Fixtures live in reports/testdata/ (see README there).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "reports/reports.hpp"

namespace mr = moecheck::reports;
using nlohmann::json;

namespace {

/// Path of `folder/file` under the source tree (MOECHECK_SOURCE_DIR when ctest sets it).
std::string source_file(const std::string& folder, const std::string& file) {
  const char* root = std::getenv("MOECHECK_SOURCE_DIR");
#if defined(MOECHECK_REPORTS_SOURCE_DIR)
  const std::string base = root != nullptr ? std::string(root) : std::string(MOECHECK_REPORTS_SOURCE_DIR);
#else
  const std::string base = root != nullptr ? std::string(root) : std::string(".");
#endif
  return base + "/" + folder + "/" + file;
}

std::string testdata(const std::string& file) { return source_file("reports/testdata", file); }
std::string baseline_file(const std::string& file) { return source_file("reports/baselines", file); }

/// The relative rule alone (no absolute floor, every family gated): the fixtures' times are a
/// few microseconds, below the default absolute floor.
mr::CompareOptions relative_only() {
  mr::CompareOptions o;
  o.min_abs_ns = 0;
  o.ungated_families.clear();
  return o;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json read_json(const std::string& path) { return json::parse(read_text(path)); }

std::size_t count_of(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

/// Message of the std::runtime_error thrown by load_bench_run(path); fails the test if none.
std::string load_error(const std::string& path) {
  try {
    mr::load_bench_run(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error loading " << path;
  return {};
}

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "moecheck_report_test_" + name; }

}  // namespace

// ---- benchmark names --------------------------------------------------------------------

TEST(BenchName, ParsesKeyValueSegments) {
  const auto p = mr::parse_bench_name("BM_Route/variant:warp_per_row/dtype:bf16/E:128/k:8/T:250000/manual_time");
  EXPECT_EQ(p.family, "BM_Route");
  EXPECT_EQ(p.variant, "warp_per_row");
  EXPECT_EQ(p.dtype, "bf16");
  EXPECT_EQ(p.E, 128);
  EXPECT_EQ(p.k, 8);
  EXPECT_EQ(p.T, 250000);
  ASSERT_EQ(p.flags.size(), 1u);
  EXPECT_EQ(p.flags[0], "manual_time");
  EXPECT_TRUE(p.plottable());
  EXPECT_EQ(p.group_key(), "dtype=bf16 E=128 k=8");
}

TEST(BenchName, ToleratesUnknownAndMalformedSegments) {
  const auto p = mr::parse_bench_name("BM_X/T:12/layout:strided/E:many/1000/threads:4/k:2");
  EXPECT_EQ(p.family, "BM_X");
  EXPECT_EQ(p.T, 12);
  EXPECT_EQ(p.k, 2);
  EXPECT_FALSE(p.E.has_value());
  EXPECT_EQ(p.extra.at("E"), "many");
  EXPECT_EQ(p.extra.at("layout"), "strided");
  EXPECT_EQ(p.extra.at("threads"), "4");
  EXPECT_EQ(p.flags, std::vector<std::string>{"1000"});
  EXPECT_FALSE(p.plottable());
  EXPECT_EQ(mr::parse_bench_name("").family, "");
  EXPECT_EQ(mr::parse_bench_name("BM_Plain").family, "BM_Plain");
}

// ---- loading ----------------------------------------------------------------------------

TEST(BenchLoad, ReadsFixtureWithAggregatesAndContext) {
  const mr::BenchRun run = mr::load_bench_run(testdata("bench_baseline.json"));
  EXPECT_EQ(run.context.device, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(run.context.driver, "580.65.06");
  EXPECT_EQ(run.context.toolkit, "CUDA 13.0");
  EXPECT_EQ(run.context.commit, "a1b2c3d4e5f6");
  ASSERT_TRUE(run.context.copy_ceiling_gbs.has_value());
  EXPECT_DOUBLE_EQ(*run.context.copy_ceiling_gbs, 3000.0);
  EXPECT_EQ(run.label(), "a1b2c3d4e5f6");
  // 3 variants x 4 T (bf16) + 2 variants x 2 T (f32) + 1 copy-ceiling benchmark.
  ASSERT_EQ(run.results.size(), 17u);

  const json doc = read_json(testdata("bench_baseline.json"));
  const std::string name = "BM_Route/variant:warp_per_row/dtype:bf16/E:128/k:8/T:16384/manual_time";
  const mr::BenchResult* r = run.find(name);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->times_ns.size(), 3u);
  for (const json& b : doc["benchmarks"]) {
    if (b["run_name"] != name || b["run_type"] != "aggregate") continue;
    if (b["aggregate_name"] == "median") {
      EXPECT_DOUBLE_EQ(r->median_ns, b["real_time"].get<double>());
      EXPECT_DOUBLE_EQ(r->counters.at("bytes_per_second"), b["bytes_per_second"].get<double>());
    }
    if (b["aggregate_name"] == "cv") {
      EXPECT_DOUBLE_EQ(r->cv, b["real_time"].get<double>());
    }
  }
  EXPECT_TRUE(r->cv_known);
  EXPECT_TRUE(r->error.empty());
  ASSERT_TRUE(r->copy_fraction(run.context.copy_ceiling_gbs).has_value());
  EXPECT_GT(*r->copy_fraction(run.context.copy_ceiling_gbs), 0.0);
}

TEST(BenchLoad, ReadsRealGoogleBenchmarkOutput) {
  // Written by Google Benchmark 1.7.1 (--benchmark_repetitions=3 --benchmark_out_format=json),
  // with a positional argument segment and one benchmark that called SkipWithError.
  const mr::BenchRun run = mr::load_bench_run(testdata("gbench_1_7_real.json"));
  ASSERT_EQ(run.results.size(), 7u);
  EXPECT_EQ(run.context.commit, "0123456789ab");
  EXPECT_DOUBLE_EQ(run.context.copy_ceiling_gbs.value_or(0), 20.0);  // written as a string
  std::size_t errored = 0;
  for (const mr::BenchResult& r : run.results) {
    if (!r.error.empty()) {
      ++errored;
      EXPECT_NE(r.error.find("no CUDA device"), std::string::npos) << r.error;
      continue;
    }
    EXPECT_TRUE(r.params.plottable()) << r.name;
    EXPECT_EQ(r.times_ns.size(), 3u);
    EXPECT_TRUE(r.cv_known);
    EXPECT_GT(r.median_ns, 0.0);
    EXPECT_TRUE(r.bytes_per_second().has_value());
  }
  EXPECT_EQ(errored, 1u);
  // Its cv aggregates carry "copy_fraction": NaN (constant counter), which is not JSON:
  // such values read as absent.
  EXPECT_EQ(run.results[0].counters.count("copy_fraction"), 1u);
}

TEST(BenchLoad, NonFiniteLiteralsOutsideStringsReadAsAbsent) {
  const std::string path = temp_path("nonfinite.json");
  {
    std::ofstream f(path);
    f << R"({"context": {"moecheck_device": "NaN \"Infinity\" -NaN"},
             "benchmarks": [
               {"name": "BM_A/T:4", "run_type": "iteration", "real_time": 10.0, "time_unit": "ns", "c": -Infinity},
               {"name": "BM_A/T:4", "run_type": "iteration", "real_time": 12.0, "time_unit": "ns", "c": 1.0},
               {"name": "BM_A/T:4_cv", "run_name": "BM_A/T:4", "run_type": "aggregate", "aggregate_name": "cv",
                "real_time": NaN, "time_unit": "ns", "c": Infinity}]})";
  }
  const mr::BenchRun run = mr::load_bench_run(path);
  EXPECT_EQ(run.context.device, "NaN \"Infinity\" -NaN");  // strings untouched
  ASSERT_EQ(run.results.size(), 1u);
  EXPECT_DOUBLE_EQ(run.results[0].median_ns, 11.0);
  EXPECT_TRUE(run.results[0].cv_known);  // NaN cv aggregate ignored: computed from repetitions
  EXPECT_NEAR(run.results[0].cv, std::sqrt(2.0) / 11.0, 1e-12);
  EXPECT_DOUBLE_EQ(run.results[0].counters.at("c"), 1.0);
}

TEST(BenchLoad, ComputesMedianAndCvFromRepetitionsWithUnits) {
  // No aggregates (single-file output without --benchmark_repetitions aggregates), time in us.
  const json doc = {
      {"context", {{"moecheck_device", "dev"}}},
      {"benchmarks",
       {{{"name", "BM_A/T:1"}, {"run_type", "iteration"}, {"real_time", 1.0}, {"time_unit", "us"}, {"items_per_second", 10.0}},
        {{"name", "BM_A/T:1"}, {"run_type", "iteration"}, {"real_time", 3.0}, {"time_unit", "us"}, {"items_per_second", 30.0}},
        {{"name", "BM_A/T:1"}, {"run_type", "iteration"}, {"real_time", 2.0}, {"time_unit", "us"}, {"items_per_second", 20.0}},
        {{"name", "BM_B"}, {"real_time", 5.0}, {"time_unit", "ms"}}}}};
  const mr::BenchRun run = mr::parse_bench_run(doc, "inline");
  ASSERT_EQ(run.results.size(), 2u);
  const mr::BenchResult& a = run.results[0];
  EXPECT_DOUBLE_EQ(a.median_ns, 2000.0);
  EXPECT_TRUE(a.cv_known);
  EXPECT_NEAR(a.cv, 1000.0 / 2000.0, 1e-12);  // sample stddev 1 us over mean 2 us
  EXPECT_DOUBLE_EQ(a.counters.at("items_per_second"), 20.0);
  const mr::BenchResult& b = run.results[1];
  EXPECT_DOUBLE_EQ(b.median_ns, 5e6);
  EXPECT_FALSE(b.cv_known);  // a single repetition says nothing about noise
  EXPECT_EQ(b.cv, 0.0);
}

TEST(BenchLoad, AggregatesOnlyOutputWithoutRunType) {
  // Older Google Benchmark versions: no run_type / run_name, aggregates recognised by suffix.
  const json doc = {{"benchmarks",
                     {{{"name", "BM_A/T:8_mean"}, {"real_time", 110.0}, {"time_unit", "ns"}},
                      {{"name", "BM_A/T:8_median"}, {"real_time", 100.0}, {"time_unit", "ns"}},
                      {{"name", "BM_A/T:8_stddev"}, {"real_time", 11.0}, {"time_unit", "ns"}}}}};
  const mr::BenchRun run = mr::parse_bench_run(doc, "old");
  ASSERT_EQ(run.results.size(), 1u);
  EXPECT_EQ(run.results[0].name, "BM_A/T:8");
  EXPECT_DOUBLE_EQ(run.results[0].median_ns, 100.0);
  EXPECT_TRUE(run.results[0].cv_known);
  EXPECT_NEAR(run.results[0].cv, 0.1, 1e-12);  // stddev / mean
}

TEST(BenchLoad, MalformedFilesGiveErrorsNamingFileAndField) {
  {
    const std::string path = testdata("bad_truncated.json");
    const std::string msg = load_error(path);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  }
  {
    const std::string path = testdata("bad_no_benchmarks.json");
    const std::string msg = load_error(path);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"benchmarks\" is missing"), std::string::npos) << msg;
  }
  {
    const std::string path = testdata("bad_real_time.json");
    const std::string msg = load_error(path);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"real_time\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("benchmarks[0]"), std::string::npos) << msg;
  }
  {
    const std::string path = testdata("bad_time_unit.json");
    const std::string msg = load_error(path);
    EXPECT_NE(msg.find("\"time_unit\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("fortnights"), std::string::npos) << msg;
  }
  {
    const std::string path = testdata("does_not_exist.json");
    const std::string msg = load_error(path);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
  }
  EXPECT_THROW(mr::parse_bench_run(json::array(), "x"), std::runtime_error);
  EXPECT_THROW(mr::parse_bench_run({{"benchmarks", {{{"real_time", 1.0}}}}}, "x"), std::runtime_error);
  EXPECT_THROW(mr::parse_bench_run({{"benchmarks", json::object()}}, "x"), std::runtime_error);
  EXPECT_THROW(mr::parse_bench_run({{"context", {{"moecheck_copy_ceiling_gbs", "fast"}}}, {"benchmarks", json::array()}}, "x"),
               std::runtime_error);
}

// ---- regression gate --------------------------------------------------------------------

TEST(Gate, ThresholdRule) {
  const mr::CompareOptions opt;  // 5%, 3x cv
  EXPECT_DOUBLE_EQ(mr::regression_threshold(0.0, 0.0, opt), 0.05);
  EXPECT_DOUBLE_EQ(mr::regression_threshold(0.01, 0.012, opt), 0.05);
  EXPECT_NEAR(mr::regression_threshold(0.05, 0.01, opt), 0.15, 1e-15);
  EXPECT_NEAR(mr::regression_threshold(0.01, 0.05, opt), 0.15, 1e-15);
  mr::CompareOptions bad;
  bad.noise_factor = -1;
  const mr::BenchRun empty;
  EXPECT_THROW(mr::compare_runs(empty, empty, bad), std::invalid_argument);
}

TEST(Gate, TwentyPercentSlowdownIsFlagged) {
  const mr::BenchRun base = mr::load_bench_run(testdata("bench_baseline.json"));
  // In-library scaling and the file written by reports/synthetic_slowdown.py must agree.
  const mr::BenchRun scaled =
      mr::parse_bench_run(mr::scale_bench_times(read_json(testdata("bench_baseline.json")), 1.2), "scaled");
  const mr::BenchRun script = mr::load_bench_run(testdata("bench_slow20.json"));
  for (const mr::BenchRun* slow : {&scaled, &script}) {
    const mr::Comparison cmp = mr::compare_runs(base, *slow, relative_only());
    EXPECT_TRUE(cmp.has_regression());
    ASSERT_EQ(cmp.deltas.size(), base.results.size());
    EXPECT_EQ(cmp.count(mr::Verdict::regression), base.results.size());
    for (const mr::BenchDelta& d : cmp.deltas) {
      EXPECT_NEAR(d.change, 0.2, 1e-9) << d.name;
      EXPECT_DOUBLE_EQ(d.threshold, 0.05) << d.name;  // fixtures have cv < 5/3 %
    }
    EXPECT_TRUE(cmp.only_in_baseline.empty());
    EXPECT_TRUE(cmp.only_in_current.empty());
  }
  const mr::BenchResult* r = script.find("BM_Route/variant:warp_per_row/dtype:bf16/E:128/k:8/T:16384/manual_time");
  const mr::BenchResult* b = base.find(r->name);
  EXPECT_NEAR(r->cv, b->cv, 1e-12);  // cv is unitless: unchanged by scaling
  EXPECT_NEAR(*r->bytes_per_second() * 1.2, *b->bytes_per_second(), 1e-3 * *b->bytes_per_second());
}

TEST(Gate, UnchangedRunIsNotFlagged) {
  const mr::BenchRun base = mr::load_bench_run(testdata("bench_baseline.json"));
  const mr::Comparison same = mr::compare_runs(base, base);
  EXPECT_FALSE(same.has_regression());
  EXPECT_EQ(same.count(mr::Verdict::unchanged), base.results.size());
  for (const mr::BenchDelta& d : same.deltas) EXPECT_EQ(d.change, 0.0);

  // A rerun of the same code: medians differ by measurement noise only.
  const mr::BenchRun rerun = mr::load_bench_run(testdata("bench_rerun.json"));
  const mr::Comparison noisy = mr::compare_runs(base, rerun);
  EXPECT_FALSE(noisy.has_regression());
  EXPECT_EQ(noisy.count(mr::Verdict::improvement), 0u);
  EXPECT_EQ(noisy.deltas.size(), base.results.size());
  EXPECT_TRUE(noisy.warnings.empty());
}

TEST(Gate, NoisyBenchmarkNeedsLargerChange) {
  // Both benchmarks are 10% slower. The one with cv = 5% gets threshold 3 x 5% = 15% and is
  // not flagged; the quiet one (cv = 1%) keeps the 5% floor and is.
  const mr::BenchRun base = mr::load_bench_run(testdata("noisy_baseline.json"));
  const mr::BenchRun cur = mr::load_bench_run(testdata("noisy_current.json"));
  const mr::Comparison cmp = mr::compare_runs(base, cur, relative_only());
  ASSERT_EQ(cmp.deltas.size(), 2u);
  const mr::BenchDelta& noisy = cmp.deltas[0];
  const mr::BenchDelta& quiet = cmp.deltas[1];
  EXPECT_EQ(noisy.params.variant, "warp_per_row");
  EXPECT_NEAR(noisy.baseline_cv, 0.05, 1e-9);
  EXPECT_NEAR(noisy.threshold, 0.15, 1e-9);
  EXPECT_NEAR(noisy.change, 0.10, 1e-9);
  EXPECT_EQ(noisy.verdict, mr::Verdict::unchanged);
  EXPECT_EQ(quiet.params.variant, "block_per_row");
  EXPECT_NEAR(quiet.threshold, 0.05, 1e-9);
  EXPECT_EQ(quiet.verdict, mr::Verdict::regression);
  EXPECT_TRUE(cmp.has_regression());

  // Same 10% on the noisy one alone: no regression.
  mr::BenchRun noisy_only_base = base, noisy_only_cur = cur;
  noisy_only_base.results.pop_back();
  noisy_only_cur.results.pop_back();
  EXPECT_FALSE(mr::compare_runs(noisy_only_base, noisy_only_cur).has_regression());
}

TEST(Gate, ImprovementsAreReported) {
  const json doc = read_json(testdata("bench_baseline.json"));
  const mr::BenchRun base = mr::parse_bench_run(doc, "base");
  const mr::BenchRun fast = mr::parse_bench_run(mr::scale_bench_times(doc, 0.8), "fast");
  const mr::Comparison cmp = mr::compare_runs(base, fast, relative_only());
  EXPECT_FALSE(cmp.has_regression());
  EXPECT_EQ(cmp.count(mr::Verdict::improvement), base.results.size());
  EXPECT_THROW(mr::scale_bench_times(doc, 0.0), std::invalid_argument);
  EXPECT_THROW(mr::scale_bench_times(doc, std::nan("")), std::invalid_argument);
}

// The committed device baseline and an unchanged rerun of the same build on the same GPU.
TEST(Gate, RealDeviceRerunIsNotFlagged) {
  const mr::BenchRun base = mr::load_bench_run(baseline_file("h200-2026-11-27.json"));
  const mr::BenchRun rerun = mr::load_bench_run(baseline_file("h200-2026-11-27-rerun.json"));
  ASSERT_GT(base.results.size(), 400u);
  const mr::Comparison cmp = mr::compare_runs(base, rerun);
  EXPECT_FALSE(cmp.has_regression());
  for (const mr::BenchDelta& d : cmp.deltas) {
    if (d.gated) {
      EXPECT_NE(d.verdict, mr::Verdict::regression) << d.name << " " << d.change;
    }
  }
  // The relative rule alone would flag launch-latency jitter of the few-microsecond launches.
  EXPECT_TRUE(mr::compare_runs(base, rerun, relative_only()).has_regression());
}

TEST(Gate, RealDeviceTwentyPercentSlowdownIsFlagged) {
  const json doc = read_json(baseline_file("h200-2026-11-27.json"));
  const mr::BenchRun base = mr::parse_bench_run(doc, "base");
  const mr::BenchRun slow = mr::parse_bench_run(mr::scale_bench_times(doc, 1.2), "slow");
  const mr::Comparison cmp = mr::compare_runs(base, slow);
  EXPECT_TRUE(cmp.has_regression());
  std::size_t flagged = 0;
  for (const mr::BenchDelta& d : cmp.deltas) {
    if (!d.gated || d.verdict == mr::Verdict::invalid) continue;
    if (d.baseline_ns >= 10000.0) {
      EXPECT_EQ(d.verdict, mr::Verdict::regression) << d.name;
      ++flagged;
    }
    if (d.baseline_ns * 0.2 <= cmp.options.min_abs_ns) {
      EXPECT_EQ(d.verdict, mr::Verdict::unchanged) << d.name;
    }
  }
  EXPECT_GT(flagged, 100u);
}

TEST(Gate, MissingBenchmarksAreListed) {
  const mr::BenchRun base = mr::load_bench_run(testdata("bench_baseline.json"));
  const mr::BenchRun cur = mr::load_bench_run(testdata("bench_missing.json"));
  const mr::Comparison cmp = mr::compare_runs(base, cur);
  ASSERT_EQ(cmp.only_in_baseline.size(), 1u);
  EXPECT_EQ(cmp.only_in_baseline[0], "BM_Route/variant:sort_based/dtype:bf16/E:128/k:8/T:1/manual_time");
  ASSERT_EQ(cmp.only_in_current.size(), 1u);
  EXPECT_EQ(cmp.only_in_current[0], "BM_Route/variant:warp_per_row/dtype:bf16/E:128/k:8/T:65536/manual_time");
  EXPECT_EQ(cmp.deltas.size(), base.results.size() - 1);
  EXPECT_FALSE(cmp.has_regression());  // listed, not judged
}

TEST(Gate, ErroredBenchmarksAreInvalidNotRegressions) {
  const mr::BenchRun run = mr::load_bench_run(testdata("gbench_1_7_real.json"));
  const mr::Comparison cmp = mr::compare_runs(run, run);
  EXPECT_EQ(cmp.count(mr::Verdict::invalid), 1u);
  EXPECT_FALSE(cmp.has_regression());

  mr::BenchRun other = run;
  other.context.device = "another device";
  EXPECT_EQ(mr::compare_runs(run, other).warnings.size(), 1u);
}

// ---- HTML -------------------------------------------------------------------------------

TEST(Html, EscapesHostileStrings) {
  EXPECT_EQ(mr::html_escape("<a href=\"x\" title='y'>&amp;</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;");
  EXPECT_EQ(mr::html_escape("plain \xC2\xB1 text"), "plain \xC2\xB1 text");
}

TEST(Dashboard, EmbedsChartJsAndDrawsEveryGroup) {
  const mr::BenchRun base = mr::load_bench_run(testdata("bench_baseline.json"));
  const mr::BenchRun rerun = mr::load_bench_run(testdata("bench_rerun.json"));
  const mr::BenchRun slow = mr::load_bench_run(testdata("bench_slow20.json"));
  const mr::Comparison cmp = mr::compare_runs(base, slow, relative_only());
  const std::string html = mr::render_dashboard_html({base, rerun, slow}, &cmp);

  const std::string& chartjs = mr::chartjs_source();
  ASSERT_GT(chartjs.size(), 10000u);
  EXPECT_NE(html.find(chartjs), std::string::npos);
  EXPECT_NE(chartjs.find("Chart.js v"), std::string::npos);     // license header kept
  EXPECT_NE(chartjs.find("MIT License"), std::string::npos);
  EXPECT_EQ(count_of(chartjs, "</script"), 0u);

  // Two (dtype, E, k) groups: bf16/128/8 and f32/256/2; each gets a time, a throughput and a
  // history canvas.
  EXPECT_EQ(count_of(html, "<canvas id=\"time-g"), 2u);
  EXPECT_EQ(count_of(html, "<canvas id=\"tput-g"), 2u);
  EXPECT_EQ(count_of(html, "<canvas id=\"hist-g"), 2u);
  EXPECT_NE(html.find("data-group=\"dtype=bf16 E=128 k=8\""), std::string::npos);
  EXPECT_NE(html.find("data-group=\"dtype=f32 E=256 k=2\""), std::string::npos);

  // Comparison table with regressions marked; run metadata shown.
  EXPECT_EQ(count_of(html, "<tr class=\"regression\">"), base.results.size());
  EXPECT_NE(html.find("REGRESSION: 17 of 17"), std::string::npos);
  for (const char* s : {"NVIDIA H100 80GB HBM3", "580.65.06", "CUDA 13.0", "a1b2c3d4e5f6", "d4e5f6a7b8c9"})
    EXPECT_NE(html.find(s), std::string::npos) << s;
  // Benchmarks without shape segments are listed separately.
  EXPECT_NE(html.find("BM_CopyCeiling/bytes:1073741824/manual_time"), std::string::npos);

  // Self-contained: nothing is loaded from elsewhere.
  EXPECT_EQ(html.find("<script src"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_FALSE(std::regex_search(html, std::regex("(src|href)\\s*=\\s*[\"']?(https?:)?//")));
}

TEST(Dashboard, SingleRunWithoutComparisonHasNoHistoryChart) {
  const mr::BenchRun base = mr::load_bench_run(testdata("bench_baseline.json"));
  const std::string html = mr::render_dashboard_html({base}, nullptr);
  EXPECT_EQ(count_of(html, "<canvas id=\"time-g"), 2u);
  EXPECT_EQ(count_of(html, "<canvas id=\"hist-g"), 0u);
  EXPECT_EQ(html.find("<table class=\"comparison\">"), std::string::npos);
  EXPECT_THROW(mr::render_dashboard_html({}, nullptr), std::invalid_argument);
}

TEST(Dashboard, EscapesHostileStrings) {
  json doc = read_json(testdata("noisy_baseline.json"));
  doc["context"]["moecheck_device"] = "<script>alert(1)</script>";
  doc["context"]["moecheck_commit"] = "\"><img src=x onerror=alert(2)>";
  doc["benchmarks"][0]["name"] = "BM_Route/variant:<b>v</b>/dtype:f16/E:64/k:4/T:4096";
  doc["benchmarks"][0]["run_name"] = "BM_Route/variant:<b>v</b>/dtype:f16/E:64/k:4/T:4096";
  const mr::BenchRun run = mr::parse_bench_run(doc, "hostile</script>.json");
  const mr::Comparison cmp = mr::compare_runs(run, run);
  const std::string html = mr::render_dashboard_html({run}, &cmp);
  EXPECT_EQ(html.find("<script>alert"), std::string::npos);
  EXPECT_EQ(html.find("<img src=x"), std::string::npos);
  EXPECT_EQ(html.find("<b>v</b>"), std::string::npos);
  EXPECT_EQ(html.find("hostile</script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("\\u003cb\\u003ev\\u003c/b\\u003e"), std::string::npos);  // in the chart data
}

TEST(ReportMain, ExitCodes) {
  std::ostringstream log;
  const std::string out = temp_path("dash.html");
  std::remove(out.c_str());
  EXPECT_EQ(mr::report_main_bench({testdata("bench_slow20.json")}, testdata("bench_baseline.json"), out, log), 1)
      << log.str();
  EXPECT_NE(log.str().find("RESULT: regression"), std::string::npos);
  const std::string html = read_text(out);
  EXPECT_NE(html.find("REGRESSION"), std::string::npos);
  EXPECT_EQ(count_of(html, "<canvas id=\"hist-g"), 2u);  // baseline prepended to the history

  log.str("");
  EXPECT_EQ(mr::report_main_bench({testdata("bench_rerun.json")}, testdata("bench_baseline.json"), "", log), 0)
      << log.str();
  log.str("");
  EXPECT_EQ(mr::report_main_bench({testdata("bench_baseline.json")}, testdata("bench_baseline.json"), "", log), 0);
  log.str("");
  EXPECT_EQ(mr::report_main_bench({testdata("bench_baseline.json"), testdata("bench_rerun.json")}, "", out, log), 0);
  log.str("");
  EXPECT_EQ(mr::report_main_bench({testdata("bad_truncated.json")}, "", out, log), 2);
  EXPECT_NE(log.str().find("bad_truncated.json"), std::string::npos) << log.str();
  log.str("");
  EXPECT_EQ(mr::report_main_bench({testdata("bench_rerun.json")}, testdata("missing_baseline.json"), "", log), 2);
  EXPECT_EQ(mr::report_main_bench({}, "", out, log), 2);
  EXPECT_EQ(mr::report_main_bench({testdata("bench_rerun.json")}, "", "/nonexistent-dir/x/dash.html", log), 2);
}

// ---- campaign page ----------------------------------------------------------------------

TEST(Campaign, ListsFailuresAndUncoveredClasses) {
  const json c = mr::load_campaign(testdata("campaign_failures.json"));
  const std::string html = mr::render_campaign_html(c);
  // Failures with signature, check, escaped message, shrunk shape, corpus file, replay line.
  for (const char* s : {"sel-3f9a1c", "wgt-77e002", "selection", "weight", "T=1 E=8 k=2 bf16 contiguous gemma4",
                        "T=70001 E=1031 k=8", "corpora/found/sel-3f9a1c.case",
                        "moecheck replay corpora/found/sel-3f9a1c.case --target &#39;kernel:warp_per_row&#39;",
                        "&amp;&amp; echo &quot;&lt;done&gt;&quot;", "18446744073709551557"})
    EXPECT_NE(html.find(s), std::string::npos) << s;
  EXPECT_EQ(count_of(html, "data-copy=\"replay-"), 2u);
  // Hostile strings never reach the page unescaped.
  EXPECT_EQ(html.find("<script>alert"), std::string::npos);
  EXPECT_EQ(html.find("<img src=x"), std::string::npos);
  EXPECT_EQ(html.find("<b>bold</b>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"), std::string::npos);
  // Coverage of the document's own expected_classes: T>=65536 and negative-scale were never generated.
  EXPECT_EQ(count_of(html, ">not covered<"), 2u);
  EXPECT_NE(html.find("T&gt;=65536</span><span>not covered"), std::string::npos);
  EXPECT_NE(html.find("dtype=bf16</span><b>16,072</b>"), std::string::npos);
  EXPECT_NE(html.find("negative-scale</span><span>not covered"), std::string::npos);
  EXPECT_NE(html.find("17 of 19 expected classes covered"), std::string::npos);
  // Summary numbers.
  EXPECT_NE(html.find("2 failures found"), std::string::npos);
  EXPECT_NE(html.find(">80.3<"), std::string::npos);
  EXPECT_NE(html.find("2 / 8"), std::string::npos);
  EXPECT_FALSE(std::regex_search(html, std::regex("(src|href)\\s*=\\s*[\"']?(https?:)?//")));
}

TEST(Campaign, CleanRunAndSchemaErrors) {
  const json c = mr::load_campaign(testdata("campaign_clean.json"));
  const std::string html = mr::render_campaign_html(c);
  EXPECT_NE(html.find("no failures"), std::string::npos);
  EXPECT_NE(html.find("19 of 19 expected classes covered"), std::string::npos);
  EXPECT_EQ(html.find(">not covered<"), std::string::npos);
  EXPECT_NE(html.find("interrupted before its budget"), std::string::npos);
  // Without "expected_classes" the page makes no coverage claim (and marks nothing "not covered").
  json no_list = c;
  no_list.erase("expected_classes");
  const std::string bare = mr::render_campaign_html(no_list);
  EXPECT_NE(bare.find("lists no expected classes"), std::string::npos);
  EXPECT_EQ(bare.find("expected classes covered"), std::string::npos);
  EXPECT_EQ(bare.find(">not covered<"), std::string::npos);

  json wrong = c;
  wrong["schema"] = "moecheck-campaign/2";
  EXPECT_THROW(mr::render_campaign_html(wrong), std::runtime_error);
  EXPECT_THROW(mr::render_campaign_html(json::array()), std::runtime_error);
  try {
    mr::load_campaign(testdata("bench_baseline.json"));
    ADD_FAILURE() << "bench file accepted as campaign";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bench_baseline.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("\"schema\""), std::string::npos);
  }
  // Minimal document: everything optional renders as a dash.
  EXPECT_NO_THROW(mr::render_campaign_html({{"schema", mr::kCampaignSchema}}));

  std::ostringstream log;
  const std::string out = temp_path("campaign.html");
  EXPECT_EQ(mr::report_main_campaign(testdata("campaign_failures.json"), out, log), 0) << log.str();
  EXPECT_NE(read_text(out).find("sel-3f9a1c"), std::string::npos);
  EXPECT_EQ(mr::report_main_campaign(testdata("bad_truncated.json"), out, log), 2);
}
