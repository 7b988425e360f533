// Merging shard results (moecheck merge, fuzz --workers/--devices) on real campaigns: the
// shards of a planted-mutant campaign merge into exactly what one process finds, shards of
// different campaigns are refused naming the field, missing/duplicated shards are reported,
// corpora are unioned without overwriting anything; the worker plan, the device list and the
// process supervisor behave as documented.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "harness/core/campaign.hpp"
#include "harness/core/corpus.hpp"
#include "harness/core/merge.hpp"
#include "harness/core/workers.hpp"
#include "reports/reports.hpp"
#include "properties/support/stop_after.hpp"
#include "properties/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moecheck;
using moecheck_test::StopAfter;
using nlohmann::json;

namespace {

/// A fresh, existing folder `<temp>/moecheck_merge_<name>_<pid>`.
fs::path temp_dir(const std::string& name) {
  const fs::path d = moecheck_test::temp_dir("merge_" + name);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Options of the small planted-mutant campaign every test uses.
CampaignOptions options(std::uint64_t seed, std::int64_t cases, int index, int count) {
  CampaignOptions o;
  o.seed = seed;
  o.max_cases = cases;
  o.shard_index = index;
  o.shard_count = count;
  o.progress = false;
  o.max_failures = 0;  // never stop early: shards and a single run see the same cases
  o.shrink_attempts = 400;
  return o;
}

/// Runs one (shard of a) campaign on the kernel host emulation; writes results and corpus.
/// With `stop_after` > 0 the campaign is interrupted after that many target runs.
CampaignResult run(const fs::path& dir, const std::string& name, CampaignOptions o,
                   const std::string& mutant = "ignore_col_stride", int stop_after = 0) {
  TargetOptions t;
  t.mutant = mutant;
  std::unique_ptr<Target> target = make_core_target("kernel:auto", t);
  if (stop_after > 0) target = std::make_unique<StopAfter>(std::move(target), stop_after);
  o.results_json = (dir / (name + ".json")).string();
  o.corpus_dir = (dir / ("corpus-" + name)).string();
  std::ostringstream log;
  return run_campaign(*target, o, log);
}

/// The corpus text without its provenance lines (found, toolkit, commit differ per run).
std::string corpus_body(const std::string& path) {
  std::istringstream in(slurp(path));
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.rfind("found ", 0) == 0 || line.rfind("toolkit ", 0) == 0 || line.rfind("commit ", 0) == 0) continue;
    out += line + "\n";
  }
  return out;
}

/// Everything a campaign ran and found, compared field by field with one process's run.
void expect_same_campaign(const CampaignResult& single, const MergeResult& m) {
  const CampaignResult& r = m.campaign;
  EXPECT_EQ(r.target, single.target);
  EXPECT_EQ(r.mutant, single.mutant);
  EXPECT_EQ(r.seed, single.seed);
  EXPECT_EQ(r.shard_index, single.shard_index);
  EXPECT_EQ(r.shard_count, single.shard_count);
  EXPECT_EQ(r.budget_cases, single.budget_cases);
  EXPECT_EQ(r.cases, single.cases);
  EXPECT_EQ(r.rows, single.rows);
  EXPECT_EQ(r.skipped, single.skipped);
  EXPECT_EQ(r.classes, single.classes);
  EXPECT_EQ(r.next_index, single.next_index);
  EXPECT_EQ(r.duplicate_failures, single.duplicate_failures);
  EXPECT_FALSE(r.interrupted);
  ASSERT_EQ(r.failures.size(), single.failures.size());
  for (std::size_t i = 0; i < r.failures.size(); ++i) {
    const FailureRecord& a = single.failures[i];
    const FailureRecord& b = r.failures[i];
    EXPECT_EQ(b.signature, a.signature) << i;
    EXPECT_EQ(b.case_index, a.case_index) << i;
    EXPECT_EQ(b.seed, a.seed) << i;
    EXPECT_EQ(b.check, a.check) << i;
    EXPECT_EQ(b.message, a.message) << i;
    EXPECT_EQ(b.shrink_steps, a.shrink_steps) << i;
    EXPECT_EQ(b.shrunk.T, a.shrunk.T) << i;
    EXPECT_EQ(b.shrunk.E, a.shrunk.E) << i;
    EXPECT_EQ(b.shrunk.k, a.shrunk.k) << i;
    EXPECT_EQ(fs::path(b.corpus_file).filename(), fs::path(a.corpus_file).filename()) << i;
    ASSERT_TRUE(fs::exists(b.corpus_file)) << b.corpus_file;
    EXPECT_EQ(corpus_body(b.corpus_file), corpus_body(a.corpus_file)) << b.corpus_file;
  }
}

std::vector<std::string> shard_files(const fs::path& dir, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back((dir / ("s" + std::to_string(i) + ".json")).string());
  return v;
}

}  // namespace

TEST(Merge, ShardsOfAPlantedMutantCampaignMergeIntoTheSingleRun) {
  const fs::path d = temp_dir("equal");
  const CampaignResult single = run(d, "single", options(31, 240, 0, 1));
  ASSERT_GE(single.failures.size(), 3u) << "the mutant must be found several times for the test to mean anything";
  ASSERT_GT(single.duplicate_failures, 0);
  std::vector<std::string> corpora;
  std::int64_t shard_failures = 0;
  for (int i = 0; i < 4; ++i) {
    shard_failures += static_cast<std::int64_t>(run(d, "s" + std::to_string(i), options(31, 60, i, 4)).failures.size());
    corpora.push_back((d / ("corpus-s" + std::to_string(i))).string());
  }
  ASSERT_GT(shard_failures, static_cast<std::int64_t>(single.failures.size()))
      << "some signature must be found by two shards (cross-shard de-duplication is tested)";

  MergeOptions mo;
  mo.corpus_dirs = corpora;
  mo.into_dir = (d / "merged-corpus").string();
  // Given out of order: the merge orders shards itself.
  std::vector<std::string> files = shard_files(d, 4);
  std::swap(files[0], files[3]);
  const MergeResult m = merge_campaigns(files, mo);
  expect_same_campaign(single, m);
  EXPECT_EQ(m.cross_shard_duplicates, shard_failures - static_cast<std::int64_t>(single.failures.size()));
  EXPECT_TRUE(m.missing.empty());
  EXPECT_TRUE(m.duplicated.empty());
  // Union: every shard file is there (the duplicates under distinct names), none lost.
  std::size_t shard_corpus_files = 0;
  for (const auto& c : corpora) shard_corpus_files += list_corpus_paths({c}).size();
  EXPECT_EQ(list_corpus_paths({mo.into_dir}).size(), shard_corpus_files);
  EXPECT_EQ(m.corpus_copied, static_cast<int>(shard_corpus_files));

  // A normal campaign document: the report renderer takes it.
  const json doc = json::parse(m.json);
  EXPECT_EQ(doc["schema"], "moecheck-campaign/1");
  EXPECT_EQ(doc["shard"], json({{"index", 0}, {"count", 1}}));
  EXPECT_EQ(doc["merged_from"]["shards"].size(), 4u);
  EXPECT_EQ(doc["generator"], json::parse(slurp(d / "single.json"))["generator"]);
  // The merged rate is the shards' totals over the longest shard's time, not shard 0's rate.
  const double elapsed = doc["elapsed_s"].get<double>();
  ASSERT_GT(elapsed, 0.0);
  EXPECT_DOUBLE_EQ(doc["rates"]["cases_per_s"].get<double>(), doc["cases"].get<double>() / elapsed);
  EXPECT_DOUBLE_EQ(doc["rates"]["rows_per_s"].get<double>(), doc["rows"].get<double>() / elapsed);
  const std::string html = reports::render_campaign_html(doc);
  EXPECT_NE(html.find(std::to_string(single.failures.size()) + " failures found"), std::string::npos);
  // JUnit lists every kept failure.
  write_merge_outputs(m, (d / "m.json").string(), (d / "m.xml").string());
  const std::string xml = slurp(d / "m.xml");
  for (const auto& f : single.failures) EXPECT_NE(xml.find(f.signature), std::string::npos);
  EXPECT_EQ(json::parse(slurp(d / "m.json")), doc);
  fs::remove_all(d);
}

TEST(Merge, MergingAgainAddsNothingAndNeverOverwrites) {
  const fs::path d = temp_dir("idempotent");
  std::vector<std::string> corpora;
  for (int i = 0; i < 2; ++i) {
    run(d, "s" + std::to_string(i), options(32, 80, i, 2));
    corpora.push_back((d / ("corpus-s" + std::to_string(i))).string());
  }
  MergeOptions mo;
  mo.corpus_dirs = corpora;
  mo.into_dir = (d / "into").string();
  const MergeResult first = merge_campaigns(shard_files(d, 2), mo);
  ASSERT_FALSE(first.campaign.failures.empty());
  // Plant a same-named file with other content where the first kept failure's file goes in a
  // fresh folder: the merge keeps it and writes the entry under a distinct name.
  const fs::path kept = first.campaign.failures.front().corpus_file;
  const fs::path other = d / "into2";
  fs::create_directories(other);
  const std::string foreign = slurp(kept) + "\n";
  { std::ofstream(other / kept.filename(), std::ios::binary) << foreign; }
  MergeOptions mo2 = mo;
  mo2.into_dir = other.string();
  const MergeResult second = merge_campaigns(shard_files(d, 2), mo2);
  EXPECT_EQ(slurp(other / kept.filename()), foreign) << "an existing file was overwritten";
  const std::string moved = second.campaign.failures.front().corpus_file;
  EXPECT_NE(fs::path(moved).filename(), kept.filename());
  EXPECT_EQ(slurp(moved), slurp(kept));
  EXPECT_GE(second.corpus_renamed, 1);

  // Merging into the first folder again: every file is already there, nothing new appears.
  const auto before = list_corpus_paths({mo.into_dir});
  const MergeResult again = merge_campaigns(shard_files(d, 2), mo);
  EXPECT_EQ(again.corpus_copied, 0);
  EXPECT_EQ(list_corpus_paths({mo.into_dir}), before);
  EXPECT_EQ(again.json, first.json);
  fs::remove_all(d);
}

TEST(Merge, RefusesShardsOfDifferentCampaignsNamingTheField) {
  const fs::path d = temp_dir("mismatch");
  run(d, "base", options(33, 20, 0, 2));
  auto differing = [&](const std::string& name, CampaignOptions o, const std::string& mutant = "ignore_col_stride") {
    run(d, name, o, mutant);
    try {
      merge_campaigns({(d / "base.json").string(), (d / (name + ".json")).string()}, MergeOptions{});
      ADD_FAILURE() << name << ": merged shards of different campaigns";
      return std::string();
    } catch (const MergeError& e) {
      return std::string(e.what());
    }
  };
  EXPECT_NE(differing("seed", options(34, 20, 1, 2)).find("field 'seed' differs"), std::string::npos);
  EXPECT_NE(differing("mutant", options(33, 20, 1, 2), "scale_by_slot").find("field 'mutant' differs"),
            std::string::npos);
  EXPECT_NE(differing("budget", options(33, 21, 1, 2)).find("field 'budget' differs"), std::string::npos);
  CampaignOptions gen = options(33, 20, 1, 2);
  gen.gen.max_T = 77;
  const std::string g = differing("generator", gen);
  EXPECT_NE(g.find("field 'generator' differs"), std::string::npos) << g;
  EXPECT_NE(g.find("77"), std::string::npos) << g;
  CampaignOptions lim = options(33, 20, 1, 2);
  lim.shrink_attempts = 17;
  EXPECT_NE(differing("limits", lim).find("field 'limits' differs"), std::string::npos);
  EXPECT_NE(differing("count", options(33, 20, 1, 3)).find("field 'shard.count' differs"), std::string::npos);
  // A field that only one side has (e.g. a later schema addition) also differs.
  json doc = json::parse(slurp(d / "base.json"));
  doc["shard"]["index"] = 1;
  doc["contract"] = "topk-v2";
  { std::ofstream(d / "contract.json") << doc.dump(); }
  try {
    merge_campaigns({(d / "base.json").string(), (d / "contract.json").string()}, MergeOptions{});
    ADD_FAILURE() << "merged shards with different contracts";
  } catch (const MergeError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'contract' differs"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

TEST(Merge, ReportsMissingAndDuplicatedShards) {
  const fs::path d = temp_dir("partial");
  run(d, "s0", options(35, 40, 0, 3));
  run(d, "s2", options(35, 40, 2, 3));
  const std::vector<std::string> two = {(d / "s0.json").string(), (d / "s2.json").string()};
  try {
    merge_campaigns(two, MergeOptions{});
    ADD_FAILURE() << "merged with a shard missing";
  } catch (const MergeError& e) {
    EXPECT_NE(std::string(e.what()).find("missing shard indices 1 of 3"), std::string::npos) << e.what();
  }
  MergeOptions partial;
  partial.allow_partial = true;
  const MergeResult m = merge_campaigns(two, partial);
  EXPECT_EQ(m.missing, std::vector<int>{1});
  EXPECT_TRUE(m.campaign.interrupted) << "a merge with missing shards is an incomplete campaign";
  EXPECT_EQ(json::parse(m.json)["merged_from"]["missing"], json::array({1}));

  // The same shard twice: an interrupted earlier run (a preempted task) and the full one.
  const fs::path early = d / "early";
  fs::create_directories(early);
  const CampaignResult short_run = run(early, "s0", options(35, 40, 0, 3), "ignore_col_stride", 5);
  ASSERT_TRUE(short_run.interrupted);
  const std::vector<std::string> dup = {(early / "s0.json").string(), (d / "s0.json").string(),
                                        (d / "s2.json").string()};
  try {
    merge_campaigns(dup, MergeOptions{});
    ADD_FAILURE() << "merged a duplicated shard";
  } catch (const MergeError& e) {
    EXPECT_NE(std::string(e.what()).find("given more than once: 0"), std::string::npos) << e.what();
  }
  const MergeResult md = merge_campaigns(dup, partial);
  EXPECT_EQ(md.duplicated, std::vector<int>{0});
  ASSERT_EQ(md.shards.size(), 2u);
  EXPECT_EQ(md.shards[0].path, (d / "s0.json").string()) << "the run that got further is kept";
  EXPECT_GT(md.shards[0].cases, short_run.cases);
  EXPECT_FALSE(md.shards[0].interrupted);
  fs::remove_all(d);
}

TEST(Merge, AShardEndedByTheCodeUnderTestEndsTheMergedCampaign) {
  // Results of campaigns that the code under test ended (exit(), a hang) say so ("aborted",
  // "abort_reason"); one such shard makes the merged campaign aborted, with the shard named.
  const fs::path d = temp_dir("aborted");
  run(d, "s0", options(38, 20, 0, 2));
  run(d, "s1", options(38, 20, 1, 2));
  json s1 = json::parse(slurp(d / "s1.json"));
  s1["aborted"] = true;
  s1["abort_reason"] = "the plugin called exit(3)";
  s1["interrupted"] = true;
  { std::ofstream(d / "s1.json") << s1.dump(); }
  json s0 = json::parse(slurp(d / "s0.json"));
  s0["aborted"] = false;
  { std::ofstream(d / "s0.json") << s0.dump(); }
  const MergeResult m = merge_campaigns({(d / "s0.json").string(), (d / "s1.json").string()}, MergeOptions{});
  const json doc = json::parse(m.json);
  EXPECT_EQ(doc["aborted"], true);
  EXPECT_EQ(doc["abort_reason"], "shard 1: the plugin called exit(3)");
  EXPECT_TRUE(m.campaign.interrupted);
  // The parsed campaign says so too: its JUnit shows the error, as one aborted process's does.
  EXPECT_TRUE(m.campaign.aborted);
  EXPECT_EQ(m.campaign.abort_reason, "shard 1: the plugin called exit(3)");
  EXPECT_NE(campaign_junit(m.campaign).find("errors=\"1\""), std::string::npos) << campaign_junit(m.campaign);
  fs::remove_all(d);
}

TEST(Merge, AShardStoppedWhileShrinkingResumesToTheUninterruptedRun) {
  // A requeued batch task is stopped (SIGTERM) wherever it is, also in the middle of a shrink.
  // Its results show the failure as far as it was shrunk, but its resume state leaves that case
  // out: the resumed task runs and shrinks it again in full, so the shard ends exactly as one
  // uninterrupted run (and the merged campaign equals the single-process run).
  const fs::path d = temp_dir("stop_in_shrink");
  const CampaignResult single = run(d, "single", options(40, 24, 0, 1));
  ASSERT_GE(single.failures.size(), 2u);
  int stopped_in_shrink = 0;
  for (int stop_after = 2; stop_after <= 60 && stopped_in_shrink < 3; stop_after += 2) {
    const fs::path w = d / ("stop" + std::to_string(stop_after));
    CampaignOptions o = options(40, 24, 0, 1);
    o.results_json = (w / "s0.json").string();
    o.state_file = (w / "s0.state").string();
    o.corpus_dir = (w / "corpus").string();
    TargetOptions t;
    t.mutant = "ignore_col_stride";
    {
      StopAfter target(make_core_target("kernel:auto", t), stop_after);
      std::ostringstream log;
      const CampaignResult first = run_campaign(target, o, log);
      ASSERT_TRUE(first.interrupted) << stop_after;
      if (log.str().find("stopped by the stop request") == std::string::npos) continue;
      ++stopped_in_shrink;
      // What was found is reported, shrunk as far as it got.
      ASSERT_FALSE(first.failures.empty()) << log.str();
    }
    o.resume = true;
    std::unique_ptr<Target> target = make_core_target("kernel:auto", t);
    std::ostringstream log;
    const CampaignResult resumed = run_campaign(*target, o, log);
    ASSERT_FALSE(resumed.interrupted) << log.str();
    SCOPED_TRACE("stopped after " + std::to_string(stop_after) + " target runs");
    const MergeResult m = merge_campaigns({o.results_json}, MergeOptions{});
    expect_same_campaign(single, m);
  }
  EXPECT_GT(stopped_in_shrink, 0) << "no stop landed in a shrink: the test does not test anything";
  fs::remove_all(d);
}

TEST(Merge, AShardThatFoundNothingHasAnEmptyCorpusFolderThatMerges) {
  // The real kernel finds nothing: its shards' corpus folders exist and are empty, and the
  // merge (and so every --workers run without a failure) takes them as they are.
  const fs::path d = temp_dir("empty_corpus");
  run(d, "s0", options(39, 10, 0, 2), "none");
  run(d, "s1", options(39, 10, 1, 2), "none");
  MergeOptions mo;
  mo.corpus_dirs = {(d / "corpus-s0").string(), (d / "corpus-s1").string()};
  mo.into_dir = (d / "merged-corpus").string();
  ASSERT_TRUE(fs::is_directory(mo.corpus_dirs[0]));
  ASSERT_TRUE(fs::is_empty(mo.corpus_dirs[0]));
  const MergeResult m = merge_campaigns(shard_files(d, 2), mo);
  EXPECT_EQ(m.campaign.cases, 20);
  EXPECT_TRUE(m.campaign.failures.empty());
  EXPECT_EQ(m.corpus_copied, 0);
  fs::remove_all(d);
}

TEST(Merge, MalformedInputsAreNamedErrors) {
  const fs::path d = temp_dir("malformed");
  run(d, "s0", options(36, 10, 0, 1));
  auto error_of = [&](const std::string& name, const std::string& text) {
    { std::ofstream(d / name) << text; }
    try {
      merge_campaigns({(d / name).string()}, MergeOptions{});
      return std::string("(merged)");
    } catch (const MergeError& e) {
      return std::string(e.what());
    }
  };
  EXPECT_NE(error_of("bad.json", "{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("other.json", R"({"schema": "something/1"})").find("field 'schema'"), std::string::npos);
  json doc = json::parse(slurp(d / "s0.json"));
  doc.erase("rows");
  EXPECT_NE(error_of("norows.json", doc.dump()).find("field 'rows' is missing"), std::string::npos);
  doc = json::parse(slurp(d / "s0.json"));
  doc["shard"]["index"] = 5;
  EXPECT_NE(error_of("badshard.json", doc.dump()).find("field 'shard'"), std::string::npos);
  doc = json::parse(slurp(d / "s0.json"));
  doc["schema"] = "moecheck-campaign-state/1";
  EXPECT_NE(error_of("state.json", doc.dump()).find("resume state file"), std::string::npos);
  try {
    merge_campaigns({(d / "nonexistent.json").string()}, MergeOptions{});
    ADD_FAILURE();
  } catch (const MergeError& e) {
    EXPECT_NE(std::string(e.what()).find("nonexistent.json"), std::string::npos) << e.what();
  }
  // A malformed corpus file in a shard corpus is refused before anything is copied.
  fs::create_directories(d / "badcorpus");
  { std::ofstream(d / "badcorpus" / "x.case") << "not a corpus file\n"; }
  MergeOptions mo;
  mo.corpus_dirs = {(d / "badcorpus").string()};
  mo.into_dir = (d / "into").string();
  EXPECT_THROW(merge_campaigns({(d / "s0.json").string()}, mo), MergeError);
  EXPECT_FALSE(fs::exists(d / "into"));
  MergeOptions no_into;
  no_into.corpus_dirs = {(d / "corpus-s0").string()};
  EXPECT_THROW(merge_campaigns({(d / "s0.json").string()}, no_into), MergeError);
  fs::remove_all(d);
}

TEST(Merge, WorkerPlanPartitionsOneShardExactly) {
  // Shard 1/2 of a 301-case campaign in 4 workers (uneven budgets), as fuzz --workers does it.
  const fs::path d = temp_dir("workers");
  const CampaignResult single = run(d, "single", options(37, 301, 1, 2));
  const auto plan = plan_worker_shards(1, 2, 301, 4);
  ASSERT_EQ(plan.size(), 4u);
  std::vector<std::string> files, corpora;
  std::int64_t budget = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    budget += plan[i].max_cases;
    CampaignOptions o = options(37, plan[i].max_cases, plan[i].shard_index, plan[i].shard_count);
    run(d, "w" + std::to_string(i), o);
    files.push_back((d / ("w" + std::to_string(i) + ".json")).string());
    corpora.push_back((d / ("corpus-w" + std::to_string(i))).string());
  }
  EXPECT_EQ(budget, 301);
  MergeOptions mo;
  mo.corpus_dirs = corpora;
  mo.into_dir = (d / "into").string();
  mo.parent_index = 1;
  mo.parent_count = 2;
  mo.same_budget = false;
  mo.kept_failures_only = true;
  const MergeResult m = merge_campaigns(files, mo);
  expect_same_campaign(single, m);
  // Only the kept failures' files, as the single run saved them.
  EXPECT_EQ(list_corpus_paths({mo.into_dir}).size(), single.failures.size());
  // A shard of another parent is refused.
  MergeOptions wrong = mo;
  wrong.parent_index = 0;
  EXPECT_THROW(merge_campaigns(files, wrong), MergeError);
  fs::remove_all(d);
}

TEST(Workers, PlanSplitsShardsAndBudgets) {
  auto p = plan_worker_shards(0, 1, 10, 3);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].shard_index, 0);
  EXPECT_EQ(p[2].shard_index, 2);
  EXPECT_EQ(p[0].shard_count, 3);
  EXPECT_EQ(p[0].max_cases, 4);
  EXPECT_EQ(p[1].max_cases, 3);
  EXPECT_EQ(p[2].max_cases, 3);
  p = plan_worker_shards(2, 3, 0, 2);  // time budget only
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].shard_index, 2);
  EXPECT_EQ(p[1].shard_index, 5);
  EXPECT_EQ(p[1].shard_count, 6);
  EXPECT_EQ(p[1].max_cases, 0);
  EXPECT_EQ(plan_worker_shards(0, 1, 2, 8).size(), 2u) << "never a worker without a case";
  p = plan_worker_shards(0, 4, 5, 1);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].shard_count, 4);
  EXPECT_EQ(p[0].max_cases, 5);
  EXPECT_THROW(plan_worker_shards(0, 1, 10, 0), std::invalid_argument);
  EXPECT_THROW(plan_worker_shards(3, 3, 10, 2), std::invalid_argument);
  EXPECT_THROW(plan_worker_shards(0, 1 << 30, 0, 4), std::invalid_argument);
}

TEST(Workers, DeviceListsAndVisibleDevices) {
  EXPECT_EQ(parse_device_list("all", 3), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(parse_device_list("2,0", 3), (std::vector<int>{2, 0}));
  EXPECT_EQ(parse_device_list("1", 2), (std::vector<int>{1}));
  auto error_of = [](const std::string& spec, int visible) {
    try {
      parse_device_list(spec, visible);
      return std::string("(accepted)");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
  };
  EXPECT_NE(error_of("all", 0).find("no CUDA device is visible"), std::string::npos);
  EXPECT_NE(error_of("3", 2).find("device 3 is not visible"), std::string::npos);
  EXPECT_NE(error_of("0,0", 2).find("listed twice"), std::string::npos);
  EXPECT_NE(error_of("", 2).find("expected 'all'"), std::string::npos);
  for (const char* bad : {"x", "-1", "0,,1", "1,", " 1", "0x1", "1.0", "9999999"}) {
    EXPECT_NE(error_of(bad, 4).find("is not a device ordinal"), std::string::npos) << bad;
  }
  EXPECT_EQ(worker_visible_devices(1, nullptr), "1");
  EXPECT_EQ(worker_visible_devices(1, "4,6"), "6");
  EXPECT_EQ(worker_visible_devices(0, "GPU-aa11,GPU-bb22"), "GPU-aa11");
  EXPECT_THROW(worker_visible_devices(2, "4,6"), std::invalid_argument);
}

TEST(Workers, SupervisorForwardsMessagesAndExitStatus) {
  std::vector<WorkerProcess> w(3);
  w[0].argv = {"/bin/sh", "-c", "echo one >&2; echo \"$MOECHECK_TEST_VALUE\" >&2; echo out; exit 0"};
  w[0].env = {{"MOECHECK_TEST_VALUE", "seen-by-worker"}};
  w[0].label = "a";
  w[1].argv = {"/bin/sh", "-c", "printf 'partial line' >&2; exit 5"};
  w[1].label = "b";
  w[2].argv = {"/bin/sh", "-c", "kill -9 $$"};
  w[2].label = "c";
  WorkerRunOptions o;
  o.progress = false;
  std::ostringstream log;
  const WorkersOutcome oc = run_worker_processes(w, o, log);
  ASSERT_EQ(oc.exits.size(), 3u);
  EXPECT_TRUE(oc.exits[0].started);
  EXPECT_FALSE(oc.exits[0].signaled);
  EXPECT_EQ(oc.exits[0].code, 0);
  EXPECT_EQ(oc.exits[1].code, 5);
  EXPECT_TRUE(oc.exits[2].signaled);
  EXPECT_EQ(oc.exits[2].code, SIGKILL);
  const std::string text = log.str();
  EXPECT_NE(text.find("[a] one\n"), std::string::npos) << text;
  EXPECT_NE(text.find("[a] seen-by-worker\n"), std::string::npos) << text;
  EXPECT_NE(text.find("[b] partial line\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("out"), std::string::npos) << "worker stdout is not forwarded";
}

TEST(Workers, StopSignalReachesEveryWorker) {
  // Workers that only end when told to stop: SIGTERM to this process is forwarded to them.
  std::vector<WorkerProcess> w(2);
  for (int i = 0; i < 2; ++i) {
    w[static_cast<std::size_t>(i)].argv = {"/bin/sh", "-c", "trap 'echo stopping >&2; exit 7' TERM; "
                                                            "while :; do sleep 0.05; done"};
    w[static_cast<std::size_t>(i)].label = "w" + std::to_string(i);
  }
  WorkerRunOptions o;
  o.progress = false;
  std::ostringstream log;
  std::thread stopper([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    ::kill(::getpid(), SIGTERM);
  });
  const auto t0 = std::chrono::steady_clock::now();
  const WorkersOutcome oc = run_worker_processes(w, o, log);
  stopper.join();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
  EXPECT_EQ(oc.stop_signals, 1);
  for (const auto& e : oc.exits) {
    EXPECT_FALSE(e.signaled);
    EXPECT_EQ(e.code, 7);
  }
  EXPECT_NE(log.str().find("[w1] stopping"), std::string::npos) << log.str();
  // The handler is gone again: the default disposition is back.
  struct sigaction now {};
  ::sigaction(SIGTERM, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
}
