// Campaign engine end to end on the kernels' host emulation: planted bugs are found, shrunk,
// saved, replayed; shards partition a campaign; interrupted campaigns resume exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "harness/core/campaign.hpp"
#include "harness/core/replay.hpp"
#include "harness/core/shrink.hpp"
#include "kernels/routing_kernels.hpp"
#include "reports/reports.hpp"
#include "properties/support/stop_after.hpp"
#include "properties/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moecheck;
using moecheck_test::StopAfter;

namespace {

using moecheck_test::temp_dir;

std::unique_ptr<Target> kernel_target(const std::string& mutant) {
  TargetOptions o;
  o.mutant = mutant;
  return make_core_target("kernel:auto", o);
}

}  // namespace

TEST(Campaign, CorrectKernelPassesAFixedSeedCampaign) {
  auto t = kernel_target("none");
  CampaignOptions o;
  o.seed = 5;
  o.max_cases = 300;
  o.progress = false;
  std::ostringstream log;
  CampaignResult r = run_campaign(*t, o, log);
  EXPECT_TRUE(r.failures.empty()) << log.str();
  // Only what the kernels run is drawn (the sigmoid families have no fused kernel).
  EXPECT_EQ(r.cases, 300);
  EXPECT_EQ(r.skipped, 0);
  EXPECT_EQ(r.classes.count("family=sigmoid_grouped"), 0u);
  EXPECT_NE(r.restriction.find("no families sigmoid_grouped,sigmoid_top1"), std::string::npos) << r.restriction;
  EXPECT_GT(r.rows, 0);
  EXPECT_FALSE(r.classes.empty());
}

TEST(Campaign, PlantedBugIsFoundShrunkSavedAndReplayed) {
  const fs::path dir = temp_dir("planted");
  auto t = kernel_target("scale_by_slot");
  CampaignOptions o;
  o.seed = 1;
  o.max_cases = 2000;
  o.max_failures = 1;
  o.progress = false;
  o.corpus_dir = dir.string();
  std::ostringstream log;
  CampaignResult r = run_campaign(*t, o, log);
  ASSERT_EQ(r.failures.size(), 1u) << log.str();
  const FailureRecord& f = r.failures.front();
  EXPECT_EQ(f.check, "weight");
  EXPECT_EQ(f.shrunk.T, 1) << "shrinking should isolate one row";
  EXPECT_LE(f.shrunk.E, 3) << "scale_by_slot needs only two experts with distinct scales";
  EXPECT_LE(f.shrunk.E, f.original.E);
  EXPECT_NE(log.str().find("replay: moecheck replay"), std::string::npos) << log.str();
  ASSERT_FALSE(f.corpus_file.empty());

  // The saved file replays: the planted bug is still caught (expect fail).
  auto results = replay_paths({dir.string()}, "", make_core_target);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].ok) << results[0].detail;
  EXPECT_EQ(results[0].outcome, "fail");

  // The same case against the correct kernel passes, so an "expect fail" replay there mismatches.
  CorpusEntry e = read_corpus_file(f.corpus_file);
  e.mutant = "none";
  ReplayResult fixed = replay_entry(e, f.corpus_file, "", make_core_target);
  EXPECT_EQ(fixed.outcome, "pass");
  EXPECT_FALSE(fixed.ok);
  fs::remove_all(dir);
}

TEST(Campaign, EveryHostMutantIsKilledForEveryVariant) {
  // Each variant implements each planted bug its own way (e.g. skip_partial_warp drops the
  // partial expert warp in warp/block_per_row and the partial 32-row tile in thread_per_row):
  // a fixed-seed campaign on the variant alone finds every one.
  for (const char* spec : {"kernel:auto", "kernel:warp_per_row", "kernel:block_per_row", "kernel:thread_per_row"}) {
    for (int i = 1; i < static_cast<int>(kernels::Mutant::count_); ++i) {
      auto m = static_cast<kernels::Mutant>(i);
      if (kernels::mutant_is_gpu_only(m)) continue;
      TargetOptions to;
      to.mutant = kernels::mutant_name(m);
      auto t = make_core_target(spec, to);
      CampaignOptions o;
      o.seed = 1;
      o.max_cases = 3000;
      o.max_failures = 1;
      o.progress = false;
      std::ostringstream log;
      EXPECT_FALSE(run_campaign(*t, o, log).failures.empty())
          << "mutant " << kernels::mutant_name(m) << " survived 3000 cases of " << spec;
    }
  }
}

TEST(Campaign, RealCampaignPageShowsEveryCountedClassAsCovered) {
  // A real campaign (every family, T up to 70,000) rendered by the real report renderer: the
  // classes the campaign lists as expected come from the classifier, every one of them is
  // counted (so none is a name classify() never emits), and the page shows each as covered.
  const fs::path dir = temp_dir("report");
  fs::create_directories(dir);
  auto t = make_core_target("reference", {});
  CampaignOptions o;
  o.seed = 20261201;
  o.max_cases = 1500;
  o.gen.max_T = 70000;
  o.gen.max_elems = std::int64_t{1} << 19;
  o.gen.large_T_probability = 0.08;
  o.progress = false;
  o.results_json = (dir / "campaign.json").string();
  std::ostringstream log;
  CampaignResult r = run_campaign(*t, o, log);
  ASSERT_TRUE(r.failures.empty()) << log.str();
  ASSERT_GE(r.expected_classes.size(), 19u);
  for (const char* name : {"dtype=f32", "dtype=f16", "dtype=bf16", "T>=65536", "masked-row", "E=pow2±1"}) {
    EXPECT_NE(std::find(r.expected_classes.begin(), r.expected_classes.end(), name), r.expected_classes.end()) << name;
  }
  const nlohmann::json doc = reports::load_campaign(o.results_json);
  const std::string html = reports::render_campaign_html(doc);
  for (const std::string& name : r.expected_classes) {
    const auto it = r.classes.find(name);
    ASSERT_TRUE(it != r.classes.end() && it->second > 0)
        << "expected class '" << name << "' was never emitted by classify() in " << r.cases << " cases";
    EXPECT_NE(html.find("<div class=\"hit\"><span class=\"mono\">" + reports::html_escape(name) + "</span>"),
              std::string::npos)
        << name << " is counted (" << it->second << ") but not shown as covered";
  }
  EXPECT_EQ(html.find(">not covered<"), std::string::npos);
  const std::string n = std::to_string(r.expected_classes.size());
  EXPECT_NE(html.find(n + " of " + n + " expected classes covered"), std::string::npos);
  fs::remove_all(dir);
}

TEST(Campaign, ProgressSummaryAndResultsShowCasesAndRowsPerSecond) {
  // What the user sees of a campaign's speed: the progress line (cases/s and rows/s), the
  // closing summary and the results JSON (`rates`), each from a real run.
  const fs::path dir = temp_dir("throughput");
  fs::create_directories(dir);
  auto t = make_core_target("reference", {});
  CampaignOptions o;
  o.seed = 77;
  o.seconds = 1.2;  // the progress line is redrawn every 0.5 s
  o.progress = true;
  o.results_json = (dir / "campaign.json").string();
  std::ostringstream log;
  CampaignResult r = run_campaign(*t, o, log);
  ASSERT_TRUE(r.failures.empty()) << log.str();
  ASSERT_GT(r.cases, 0);
  ASSERT_GT(r.rows, 0);
  const std::string text = log.str();
  const std::size_t line = text.rfind("\r[");
  ASSERT_NE(line, std::string::npos) << text;
  const std::string progress = text.substr(line, text.find('\n', line) - line);
  EXPECT_NE(progress.find("/s) rows "), std::string::npos) << progress;  // cases/s
  const std::size_t rows_at = progress.find(") rows ");
  ASSERT_NE(rows_at, std::string::npos) << progress;
  EXPECT_NE(progress.find("/s) failures ", rows_at), std::string::npos) << progress;  // rows/s
  const std::string summary = campaign_summary(r);
  EXPECT_NE(summary.find(" cases/s, "), std::string::npos) << summary;
  EXPECT_NE(summary.find(" rows/s, checked on the host)"), std::string::npos) << summary;
  const nlohmann::json doc = reports::load_campaign(o.results_json);
  ASSERT_TRUE(doc.contains("rates")) << doc.dump();
  const double elapsed = doc["elapsed_s"].get<double>();
  ASSERT_GT(elapsed, 0.0);
  EXPECT_DOUBLE_EQ(doc["rates"]["cases_per_s"].get<double>(), static_cast<double>(r.cases) / elapsed);
  EXPECT_DOUBLE_EQ(doc["rates"]["rows_per_s"].get<double>(), static_cast<double>(r.rows) / elapsed);
  fs::remove_all(dir);
}

TEST(Campaign, DrawsOnlyWhatTheTargetRuns) {
  // Every built-in host target: cases drawn from draw_config are inside its domain, so a
  // campaign skips none (it used to skip two families in five on the kernels).
  GenConfig cfg;
  cfg.max_T = 16;
  cfg.max_E = 4096;
  for (const char* spec : {"reference", "kernel:auto", "kernel:warp_per_row", "kernel:block_per_row",
                           "kernel:thread_per_row"}) {
    auto t = make_core_target(spec, {});
    std::string restriction;
    const GenConfig drawn = draw_config(cfg, *t, &restriction);
    int skipped = 0;
    for (std::int64_t j = 0; j < 2000; ++j) {
      if (!t->unsupported(generate_case(case_seed(1, j), drawn)).empty()) ++skipped;
    }
    EXPECT_EQ(skipped, 0) << spec << " (" << restriction << ")";
  }
  // warp_per_row: E <= 512 and no sigmoid families; the reference runs everything.
  std::string restriction;
  const GenConfig warp = draw_config(cfg, *make_core_target("kernel:warp_per_row", {}), &restriction);
  EXPECT_EQ(warp.max_E, kernels::kWarpMaxExperts);
  EXPECT_EQ(warp.families.size(), 3u);
  EXPECT_EQ(restriction, "no families sigmoid_grouped,sigmoid_top1; E <= 512");
  draw_config(cfg, *make_core_target("reference", {}), &restriction);
  EXPECT_EQ(restriction, "");
  // Asking for families the target cannot run at all is an error naming them.
  GenConfig sig = cfg;
  sig.families = {Family::sigmoid_grouped};
  EXPECT_THROW(draw_config(sig, *make_core_target("kernel:auto", {}), nullptr), std::invalid_argument);
}

TEST(Campaign, FirstCaseReplaysTheSameCaseOfARestrictedCampaign) {
  // A failure found without a corpus prints a --first-case replay; under the target's
  // restricted draw that single case is the same case, failing the same way.
  auto t = kernel_target("scale_by_slot");
  CampaignOptions o;
  o.seed = 4;
  o.max_cases = 2000;
  o.max_failures = 2;
  o.progress = false;
  std::ostringstream log;
  CampaignResult r = run_campaign(*t, o, log);
  ASSERT_FALSE(r.failures.empty()) << log.str();
  for (const FailureRecord& f : r.failures) {
    EXPECT_NE(f.replay.find("--first-case " + std::to_string(f.case_index) + " --cases 1"), std::string::npos);
    CampaignOptions one = o;
    one.first_index = f.case_index;
    one.max_cases = 1;
    CampaignResult again = run_campaign(*t, one, log);
    ASSERT_EQ(again.failures.size(), 1u);
    EXPECT_EQ(again.failures[0].signature, f.signature);
    EXPECT_EQ(again.failures[0].original.T, f.original.T);
    EXPECT_EQ(again.failures[0].original.E, f.original.E);
    EXPECT_EQ(again.failures[0].original.family, f.original.family);
  }
}

TEST(Campaign, ShardsPartitionTheCampaign) {
  auto t = kernel_target("none");
  std::int64_t total = 0;
  std::map<std::string, std::int64_t> merged;
  for (int s = 0; s < 3; ++s) {
    CampaignOptions o;
    o.seed = 9;
    o.max_cases = 40;
    o.shard_index = s;
    o.shard_count = 3;
    o.progress = false;
    std::ostringstream log;
    CampaignResult r = run_campaign(*t, o, log);
    EXPECT_EQ((r.next_index - s) % 3, 0);
    total += r.cases + r.skipped;
    for (auto& [k, v] : r.classes) merged[k] += v;
  }
  EXPECT_EQ(total, 120);
  EXPECT_NE(case_seed(9, 0), case_seed(9, 1));
  EXPECT_EQ(case_seed(9, 7), case_seed(9, 7));
}

TEST(Campaign, InterruptedCampaignResumesWhereItStopped) {
  const fs::path dir = temp_dir("resume");
  fs::create_directories(dir);
  const std::string state = (dir / "state.json").string();
  CampaignOptions o;
  o.seed = 3;
  o.max_cases = 100;
  o.progress = false;
  o.state_file = state;
  std::ostringstream log;
  StopAfter first(kernel_target("none"), 30);
  CampaignResult a = run_campaign(first, o, log);
  EXPECT_TRUE(a.interrupted);
  EXPECT_LT(a.cases + a.skipped, 100);
  ASSERT_TRUE(fs::exists(state));

  auto t = kernel_target("none");
  o.resume = true;
  CampaignResult b = run_campaign(*t, o, log);
  EXPECT_FALSE(b.interrupted);
  EXPECT_EQ(b.cases + b.skipped, 100);
  EXPECT_EQ(b.next_index, 100);

  // Resuming a different campaign from this state is refused by name.
  o.seed = 4;
  EXPECT_THROW(run_campaign(*t, o, log), std::invalid_argument);
  fs::remove_all(dir);
}

TEST(Campaign, MalformedStateFilesAreNamed) {
  const fs::path dir = temp_dir("badstate");
  fs::create_directories(dir);
  const std::string state = (dir / "state.json").string();
  CampaignOptions o;
  o.seed = 3;
  o.max_cases = 20;
  o.shard_index = 1;
  o.shard_count = 2;
  o.progress = false;
  o.state_file = state;
  std::ostringstream log;
  auto t = kernel_target("none");
  run_campaign(*t, o, log);
  std::string good;
  {
    std::ifstream in(state);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  o.resume = true;
  // Each edit of a valid state file must be refused naming the field (never resumed from).
  const std::vector<std::pair<std::string, std::string>> edits = {
      {"next_index", "-5"},      {"next_index", "4"},        {"next_index", "\"41\""},
      {"next_index", "1.5"},     {"cases", "-1"},            {"rows", "\"many\""},
      {"elapsed_s", "-3"},       {"skipped", "-2"},          {"classes", "[]"},
      {"failure_list", "{}"},    {"failure_list", "[{\"signature\": 5}]"}, {"shard", "{\"index\": 1, \"count\": 0}"}};
  for (const auto& [key, value] : edits) {
    nlohmann::json j = nlohmann::json::parse(good);
    j[key] = nlohmann::json::parse(value);
    {
      std::ofstream out(state, std::ios::trunc);
      out << j.dump(1);
    }
    try {
      run_campaign(*t, o, log);
      ADD_FAILURE() << key << " = " << value << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("field '" + key), std::string::npos) << key << ": " << e.what();
    }
  }
  fs::remove_all(dir);
}

TEST(Campaign, BadOptionsAreNamed) {
  auto t = kernel_target("none");
  std::ostringstream log;
  CampaignOptions o;
  EXPECT_THROW(run_campaign(*t, o, log), std::invalid_argument);  // no budget
  o.max_cases = 1;
  o.shard_index = 2;
  o.shard_count = 2;
  EXPECT_THROW(run_campaign(*t, o, log), std::invalid_argument);
  o.shard_index = 0;
  o.first_index = 3;  // case 3 belongs to shard 1 of 2
  EXPECT_THROW(run_campaign(*t, o, log), std::invalid_argument);
  o.first_index = kMaxCaseIndex + 1;
  o.shard_count = 1;
  EXPECT_THROW(run_campaign(*t, o, log), std::invalid_argument);
  o.first_index = -1;
  o.seconds = std::nan("");
  EXPECT_THROW(run_campaign(*t, o, log), std::invalid_argument);
}

TEST(Shrink, ReducesToTheFailingRowAndFewExperts) {
  GenConfig cfg;
  cfg.max_T = 64;
  RoutingCase c;
  // Find a generated case with several rows; predicate: "row contains a value > 1".
  for (std::uint64_t s = 0;; ++s) {
    c = generate_case(s, cfg);
    if (c.T >= 4 && c.E >= 8 && c.family == Family::gemma4) break;
  }
  for (auto& v : c.logits) v = 0.0f;
  c.logits[static_cast<std::size_t>((c.T - 1) * c.E + c.E - 1)] = 2.0f;
  auto pred = [](const RoutingCase& x) {
    for (float v : x.logits) {
      if (v > 1.0f) return true;
    }
    return false;
  };
  ShrinkResult r = shrink_case(c, pred);
  EXPECT_EQ(r.minimal.T, 1);
  EXPECT_EQ(r.minimal.E, 1);
  EXPECT_EQ(r.minimal.k, 1);
  EXPECT_TRUE(pred(r.minimal));
}

namespace {

/// A valid gemma4 f32 case of the given shape with seeded normal logits.
RoutingCase shaped_case(std::int64_t T, std::int64_t E, int k) {
  RoutingCase c;
  c.T = T;
  c.E = E;
  c.k = k;
  Rng rng(T * 131 + E * 7 + k);
  c.logits.resize(static_cast<std::size_t>(T * E));
  for (auto& v : c.logits) v = static_cast<float>(rng.normal());
  return c;
}

}  // namespace

TEST(Shrink, IntegerDimensionsEndAtTheSmallestFailingValue) {
  // T: halving alone stopped at T = 1024 for "fails iff T > 1000".
  ShrinkResult t = shrink_case(shaped_case(2048, 4, 2), [](const RoutingCase& x) { return x.T > 1000; });
  EXPECT_EQ(t.minimal.T, 1001);
  EXPECT_EQ(t.minimal.E, 1);
  EXPECT_EQ(t.minimal.k, 1);

  ShrinkResult e = shrink_case(shaped_case(1, 2048, 4), [](const RoutingCase& x) { return x.E > 1000; });
  EXPECT_EQ(e.minimal.E, 1001);
  EXPECT_EQ(e.minimal.k, 1);

  ShrinkResult k = shrink_case(shaped_case(3, 64, 32), [](const RoutingCase& x) { return x.k >= 5; });
  EXPECT_EQ(k.minimal.k, 5);
  EXPECT_EQ(k.minimal.E, 5);
  EXPECT_EQ(k.minimal.T, 1);

  // Not monotone in k (stepping down from 9 to 8 passes) and E cannot drop: single steps
  // stopped at k = 9.
  ShrinkResult odd = shrink_case(shaped_case(1, 16, 9), [](const RoutingCase& x) {
    return x.E == 16 && x.k >= 5 && x.k % 2 == 1;
  });
  EXPECT_EQ(odd.minimal.k, 5);
  EXPECT_EQ(odd.minimal.E, 16);
}

/// The reference, except that it refuses problems with more than 1000 rows.
class RefusesLargeT final : public Target {
 public:
  std::string spec() const override { return "reference"; }
  RunOutcome run(const MaterializedCase& m, float* w, std::int32_t* ids) override {
    if (m.view.T > 1000) return {RunOutcome::Status::rejected, "T > 1000 not supported"};
    return inner_->run(m, w, ids);
  }

 private:
  std::unique_ptr<Target> inner_ = make_core_target("reference", {});
};

TEST(Shrink, CampaignShrinksARowLimitToItsThreshold) {
  RefusesLargeT t;
  CampaignOptions o;
  o.seed = 2;
  o.max_cases = 200;
  o.max_failures = 1;
  o.gen.max_T = 4096;
  o.gen.max_E = 8;
  o.gen.large_T_probability = 0.9;
  o.progress = false;
  std::ostringstream log;
  CampaignResult r = run_campaign(t, o, log);
  ASSERT_EQ(r.failures.size(), 1u) << log.str();
  EXPECT_EQ(r.failures[0].check, "rejected-valid");
  EXPECT_GT(r.failures[0].original.T, 1001);
  EXPECT_EQ(r.failures[0].shrunk.T, 1001) << log.str();
  EXPECT_EQ(r.failures[0].shrunk.E, 1);
}

TEST(Shrink, BinarySearchNeedsFewAttempts) {
  // 100,000 rows or 4096 experts reach the threshold in a few dozen attempts (a scan of
  // single rows or columns would spend the whole budget).
  ShrinkResult t = shrink_case(shaped_case(100000, 2, 1), [](const RoutingCase& x) { return x.T > 1000; }, -1, 60);
  EXPECT_EQ(t.minimal.T, 1001);
  ShrinkResult e = shrink_case(shaped_case(1, 4096, 1), [](const RoutingCase& x) { return x.E > 1000; }, -1, 60);
  EXPECT_EQ(e.minimal.E, 1001);
  // A failing row deep inside a long case is isolated by prefix and suffix search.
  RoutingCase c = shaped_case(50000, 2, 1);
  c.logits[2 * 31337] = 7.0f;
  ShrinkResult row = shrink_case(c, [](const RoutingCase& x) {
    for (float v : x.logits) {
      if (v == 7.0f) return true;
    }
    return false;
  }, -1, 60);
  EXPECT_EQ(row.minimal.T, 1);
  EXPECT_EQ(row.minimal.logits.front(), 7.0f);
}

namespace {

/// The reference, plus stray writes around its outputs (`before` elements ahead of `ids`,
/// `after` elements past the end of `weights`).
class Overrun final : public Target {
public:
 Overrun(int before, int after) : before_(before), after_(after) {}
 std::string spec() const override { return "reference"; }
 RunOutcome run(const MaterializedCase& m, float* w, std::int32_t* ids) override {
   RunOutcome o = inner_->run(m, w, ids);
   const std::int64_t n = m.view.T * m.params.k;
   for (int i = 1; i <= before_; ++i) ids[-i] = 0;
   for (int i = 0; i < after_; ++i) w[n + i] = 0.25f;
   return o;
 }

private:
 std::unique_ptr<Target> inner_ = make_core_target("reference", {});
 int before_, after_;
};

/// An in-process target that interrupts its own calls (as the Python target does): every
/// call outlasts the case timeout, and run() itself reports it as timed_out.
class SelfInterrupting final : public Target {
 public:
  explicit SelfInterrupting(bool interrupts) : interrupts_(interrupts) {}
  std::string spec() const override { return "reference"; }
  bool runs_in_process() const override { return true; }
  bool interrupts_calls() const override { return interrupts_; }
  RunOutcome run(const MaterializedCase& m, float* w, std::int32_t* ids) override {
    const auto start = std::chrono::steady_clock::now();
    const double limit = call_limits().timeout_s;
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 4 * limit) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ++calls;
    if (m.view.T * m.params.k > 0) return {RunOutcome::Status::timed_out, "interrupted by the target"};
    return inner_->run(m, w, ids);
  }
  int calls = 0;

 private:
  bool interrupts_;
  std::unique_ptr<Target> inner_ = make_core_target("reference", {});
};

RoutingCase small_valid_case() {
 GenConfig cfg;
 cfg.max_T = 16;
 for (std::uint64_t s = 0;; ++s) {
   RoutingCase c = generate_case(s, cfg);
   if (c.T >= 2 && c.family == Family::gemma4) return c;
 }
}

}  // namespace

TEST(Evaluate, WritesAroundTheOutputsAreOutOfBoundsWrites) {
 const RoutingCase c = small_valid_case();
 Overrun clean(0, 0);
 EXPECT_FALSE(evaluate(clean, c).failed());
 Overrun past(0, 3);
 Verdict v = evaluate(past, c);
 EXPECT_EQ(v.check, "out-of-bounds-write");
 EXPECT_NE(v.message.find("3 of the 64 guard elements after `weights`"), std::string::npos) << v.message;
 Overrun ahead(2, 0);
 v = evaluate(ahead, c);
 EXPECT_EQ(v.check, "out-of-bounds-write");
 EXPECT_NE(v.message.find("2 of the 64 guard elements before `ids`"), std::string::npos) << v.message;
}

// A target that interrupts its own calls gets no watchdog: its slow calls are its own timeouts,
// and the campaign (and the process it runs in) goes on. With a watchdog the first call would
// end this test process.
TEST(Campaign, TargetsThatInterruptTheirCallsAreNotEndedByTheWatchdog) {
  SelfInterrupting target(/*interrupts=*/true);
  CampaignOptions opt;
  opt.seed = 5;
  opt.max_cases = 4;
  opt.case_timeout = 0.05;
  opt.shrink_attempts = 3;
  opt.progress = false;
  std::ostringstream log;
  CampaignResult r = run_campaign(target, opt, log);
  EXPECT_EQ(r.cases + r.skipped, 4);
  EXPECT_FALSE(r.aborted) << r.abort_reason;
  ASSERT_FALSE(r.failures.empty()) << log.str();
  EXPECT_EQ(r.failures.front().check, "timeout");
  EXPECT_GT(target.calls, 4);  // shrink candidates ran too
}

TEST(Campaign, InProcessTargetsThatCannotBeInterruptedAreWatched) {
  EXPECT_EXIT(
      {
        SelfInterrupting target(/*interrupts=*/false);
        CampaignOptions opt;
        opt.max_cases = 4;
        opt.case_timeout = 0.05;
        opt.progress = false;
        std::ostringstream log;
        run_campaign(target, opt, log);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(1), "");
}

TEST(Shrink, GiveUpEndsTheShrinkKeepingTheBestCase) {
 const RoutingCase c = small_valid_case();
 int calls = 0;
 ShrinkResult r = shrink_case(
     c, [&](const RoutingCase&) { return ++calls > 0; }, -1, 4000, [&] { return calls >= 2; });
 EXPECT_TRUE(r.stopped);
 EXPECT_EQ(r.attempts, 2);
 EXPECT_EQ(r.steps, 2);
 EXPECT_LT(r.minimal.T, c.T);
}
