// Campaign engine end to end on the kernels' host emulation: planted bugs are found, shrunk,
// saved, replayed; shards partition a campaign; interrupted campaigns resume exactly.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <unistd.h>

#include "harness/core/campaign.hpp"
#include "harness/core/replay.hpp"
#include "harness/core/shrink.hpp"
#include "kernels/routing_kernels.hpp"

namespace fs = std::filesystem;
using namespace moecheck;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("moecheck_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

std::unique_ptr<Target> kernel_target(const std::string& mutant) {
  TargetOptions o;
  o.mutant = mutant;
  return make_core_target("kernel:auto", o);
}

/// Wraps a target and asks the campaign to stop after `stop_after` runs (simulated Ctrl-C).
class StopAfter final : public Target {
 public:
  StopAfter(std::unique_ptr<Target> inner, int stop_after) : inner_(std::move(inner)), left_(stop_after) {}
  std::string spec() const override { return inner_->spec(); }
  std::string mutant() const override { return inner_->mutant(); }
  std::string unsupported(const RoutingCase& c) const override { return inner_->unsupported(c); }
  RunOutcome run(const MaterializedCase& m, float* w, std::int32_t* ids) override {
    if (--left_ == 0) request_campaign_stop();
    return inner_->run(m, w, ids);
  }

 private:
  std::unique_ptr<Target> inner_;
  int left_;
};

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
  EXPECT_EQ(r.cases + r.skipped, 300);  // sigmoid families have no fused kernel: skipped
  EXPECT_GT(r.cases, 150);
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

TEST(Campaign, BadOptionsAreNamed) {
  auto t = kernel_target("none");
  std::ostringstream log;
  CampaignOptions o;
  EXPECT_THROW(run_campaign(*t, o, log), std::invalid_argument);  // no budget
  o.max_cases = 1;
  o.shard_index = 2;
  o.shard_count = 2;
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
