// Kill matrix (harness/core/mutation.hpp): planted kernel mutants are killed on their host
// algorithm, their findings are saved as corpus entries that replay as planted bugs, and the
// matrix renders to the Markdown and JSON the `moecheck mutants` command writes.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "harness/core/mutation.hpp"
#include "harness/core/replay.hpp"
#include "harness/core/targets_internal.hpp"
#include "properties/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moecheck;

namespace {

using moecheck_test::temp_dir;

TEST(Mutation, CatalogAndPerMutantTuning) {
  const std::vector<kernels::Mutant> all = kernel_mutants();
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kernels::Mutant::count_) - 1);
  EXPECT_EQ(all.front(), kernels::Mutant::skip_renormalise);
  EXPECT_EQ(kernel_mutant_specs(false),
            (std::vector<std::string>{"kernel:auto", "kernel:warp_per_row", "kernel:block_per_row",
                                      "kernel:thread_per_row"}));
  EXPECT_EQ(kernel_mutant_specs(true).front(), "cuda:auto");

  MutationOptions o;
  o.cases = 500;
  o.seed = 9;
  o.corpus_dir = "somewhere";
  const CampaignOptions plain = kernel_mutant_campaign(kernels::Mutant::skip_renormalise, o);
  EXPECT_EQ(plain.max_cases, 500);
  EXPECT_EQ(plain.seed, 9u);
  EXPECT_EQ(plain.max_failures, 4);
  EXPECT_EQ(plain.corpus_dir, "somewhere");
  EXPECT_FALSE(plain.progress);
  EXPECT_EQ(plain.gen.max_T, GenConfig{}.max_T);
  const CampaignOptions grid = kernel_mutant_campaign(kernels::Mutant::grid_overflow, o);
  EXPECT_GT(grid.gen.max_T, 65536);  // the bug needs rows beyond 65535
  EXPECT_GT(grid.gen.large_T_probability, 0.0);
  const CampaignOptions race = kernel_mutant_campaign(kernels::Mutant::shared_race, o);
  EXPECT_EQ(race.max_cases, 60);
  EXPECT_EQ(race.gen.layouts, std::vector<Layout>{Layout::contiguous});
}

TEST(Mutation, PlantedKernelMutantIsKilledAndItsEntriesReplayAsPlantedBugs) {
  const fs::path dir = temp_dir("mutation_kill");
  MutationOptions o;
  o.cases = 100;
  o.seed = 1;
  o.corpus_dir = dir.string();
  const KillRow row = run_kernel_mutant(kernels::Mutant::ignore_col_stride, o);
  EXPECT_EQ(row.mutant, "ignore_col_stride");
  EXPECT_EQ(row.kind, "kernel");
  ASSERT_EQ(row.status, "killed");
  EXPECT_EQ(row.target, "kernel:auto");
  EXPECT_FALSE(row.check.empty());
  EXPECT_GT(row.cases_to_first, 0);
  EXPECT_NE(row.shrunk.find("T="), std::string::npos) << row.shrunk;
  ASSERT_EQ(row.by_variant.size(), 4u);
  for (const auto& [spec, n] : row.by_variant) EXPECT_GT(n, 0) << spec << " survived";
  ASSERT_TRUE(row.by_check.count(row.check));
  EXPECT_EQ(row.by_check.at(row.check), row.cases_to_first);
  // The first kill's corpus file is named in the note; every entry is a planted bug that
  // replays: expect fail, mutant named.
  EXPECT_EQ(row.note.rfind(dir.string(), 0), 0u) << row.note;
  EXPECT_TRUE(fs::is_regular_file(row.note));
  const std::vector<std::string> files = list_corpus_paths({dir.string()});
  EXPECT_GE(files.size(), 4u);
  for (const auto& f : files) {
    const CorpusEntry e = read_corpus_file(f);
    EXPECT_EQ(e.expect, Expectation::fail) << f;
    EXPECT_EQ(e.mutant, "ignore_col_stride") << f;
  }
  for (const ReplayResult& r : replay_paths({dir.string()}, "", make_core_target)) {
    EXPECT_TRUE(r.ok) << r.path << ": " << r.outcome << " " << r.detail;
    EXPECT_EQ(r.outcome, "fail") << r.path;
  }
  fs::remove_all(dir);
}

TEST(Mutation, TooSmallABudgetLetsTheMutantSurvive) {
  MutationOptions o;
  o.cases = 2;  // ignore_col_stride needs a strided layout: not drawn in the first 2 cases of seed 1
  o.seed = 1;
  const KillRow row = run_kernel_mutant(kernels::Mutant::ignore_col_stride, o);
  ASSERT_EQ(row.status, "survived");
  EXPECT_EQ(row.target, "kernel:auto");
  EXPECT_TRUE(row.check.empty());
  EXPECT_TRUE(row.by_check.empty());
  ASSERT_EQ(row.by_variant.size(), 4u);
  for (const auto& [spec, n] : row.by_variant) EXPECT_EQ(n, -1) << spec;
  EXPECT_GT(row.cases_to_first, 0);
  EXPECT_LE(row.cases_to_first, 8);  // all cases run: at most 2 per variant
}

TEST(Mutation, GpuOnlyMutantIsNotRunWithoutCuda) {
  const KillRow row = run_kernel_mutant(kernels::Mutant::grid_overflow, MutationOptions{});
  EXPECT_EQ(row.status, "not-run");
  EXPECT_EQ(row.note, "GPU-only: needs a CUDA device");
  EXPECT_TRUE(row.by_variant.empty());
}

TEST(Mutation, MatrixScoreMarkdownAndJsonOfARealRun) {
  MutationOptions o;
  o.cases = 100;
  std::vector<KillRow> rows = {run_kernel_mutant(kernels::Mutant::ignore_col_stride, o),
                               run_kernel_mutant(kernels::Mutant::shared_race, o),
                               run_plugin_mutant("", o)};
  ASSERT_EQ(rows[0].status, "killed");
  EXPECT_EQ(rows[2].status, "not-run");
  const KillMatrix m = tally_kill_matrix(rows, false);
  EXPECT_EQ(m.killed, 1);
  EXPECT_EQ(m.runnable, 1);
  EXPECT_DOUBLE_EQ(m.score_percent, 100.0);
  EXPECT_TRUE(m.all_killed());

  const std::string md = kill_matrix_markdown(m);
  EXPECT_EQ(md.rfind("| mutant | kind | status | first kill (target, check, cases) |", 0), 0u) << md;
  EXPECT_NE(md.find("| ignore_col_stride | kernel | killed | kernel:auto, " + rows[0].check + ", " +
                    std::to_string(rows[0].cases_to_first) + " | "),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| shared_race | kernel | not-run | GPU-only: needs a CUDA device | - | - | - | 0.00 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| broken_plugin | plugin | not-run | libmoecheck_broken_plugin.so not found"), std::string::npos)
      << md;
  EXPECT_NE(md.find("\nMutation score: 1/1 = 100.0% (device: cpu; not run here: 2)\n"), std::string::npos) << md;

  const nlohmann::json j = nlohmann::json::parse(kill_matrix_json(m));
  EXPECT_EQ(j.at("schema"), "moecheck-mutants/1");
  EXPECT_EQ(j.at("device"), "cpu");
  EXPECT_EQ(j.at("killed"), 1);
  EXPECT_EQ(j.at("runnable"), 1);
  ASSERT_EQ(j.at("rows").size(), 3u);
  const auto& r0 = j.at("rows")[0];
  EXPECT_EQ(r0.at("mutant"), "ignore_col_stride");
  EXPECT_EQ(r0.at("status"), "killed");
  EXPECT_EQ(r0.at("cases_to_first_failure"), rows[0].cases_to_first);
  EXPECT_EQ(r0.at("variants").size(), 4u);
  EXPECT_EQ(r0.at("checks").at(rows[0].check), rows[0].cases_to_first);

  // One survivor makes the matrix fail.
  rows[0].status = "survived";
  const KillMatrix bad = tally_kill_matrix(rows, false);
  EXPECT_EQ(bad.killed, 0);
  EXPECT_FALSE(bad.all_killed());
  EXPECT_NE(kill_matrix_markdown(bad).find("Mutation score: 0/1 = 0.0%"), std::string::npos);
}

TEST(PluginNames, OnlyShortIdentifiersNameAPlugin) {
  EXPECT_TRUE(valid_plugin_name("broken"));
  EXPECT_TRUE(valid_plugin_name("my-plugin_2.1"));
  EXPECT_FALSE(valid_plugin_name(nullptr));
  EXPECT_FALSE(valid_plugin_name(""));
  EXPECT_FALSE(valid_plugin_name(".."));
  EXPECT_FALSE(valid_plugin_name("a/b"));
  EXPECT_FALSE(valid_plugin_name("with space"));
  EXPECT_FALSE(valid_plugin_name("libx.so"));
  EXPECT_FALSE(valid_plugin_name(std::string(65, 'a').c_str()));
}

#if defined(MOECHECK_BROKEN_PLUGIN) && defined(MOECHECK_EXAMPLE_PLUGIN)

/// Corpus files under `dir` with the entry each holds.
std::vector<std::pair<std::string, CorpusEntry>> entries_in(const fs::path& dir) {
  std::vector<std::pair<std::string, CorpusEntry>> out;
  for (const auto& f : list_corpus_paths({dir.string()})) out.emplace_back(f, read_corpus_file(f));
  return out;
}

/// The corpus file name and target of a plugin failure hold no '/' and nothing of the path
/// the plugin was loaded from: the plugin is named by its descriptor name.
void expect_portable(const std::string& file, const CorpusEntry& e) {
  const std::string name = fs::path(file).filename().string();
  EXPECT_EQ(e.target, "plugin:broken") << file;
  EXPECT_EQ(e.target.find('/'), std::string::npos) << file;
  EXPECT_EQ(name.rfind("plugin_broken-", 0), 0u) << name;
  EXPECT_EQ(name.find("libmoecheck"), std::string::npos) << name;
  EXPECT_EQ(name.find(".so"), std::string::npos) << name;
}

TEST(PluginNames, APluginTargetIsNamedByItsDescriptorAndFoundByName) {
  ::unsetenv("MOECHECK_PLUGIN_PATH");
  EXPECT_EQ(make_core_target(std::string("plugin:") + MOECHECK_BROKEN_PLUGIN, {})->spec(), "plugin:broken");
  TargetOptions by_file;
  by_file.plugin_paths = {MOECHECK_EXAMPLE_PLUGIN, MOECHECK_BROKEN_PLUGIN};
  EXPECT_EQ(make_core_target("plugin:broken", by_file)->spec(), "plugin:broken");
  EXPECT_EQ(make_core_target("plugin:example", by_file)->spec(), "plugin:example");
  TargetOptions by_folder;
  by_folder.plugin_paths = {fs::path(MOECHECK_BROKEN_PLUGIN).parent_path().string()};
  EXPECT_EQ(make_core_target("plugin:broken", by_folder)->spec(), "plugin:broken");
  // MOECHECK_PLUGIN_PATH is searched after the given paths.
  ::setenv("MOECHECK_PLUGIN_PATH", ("/nonexistent:" + by_folder.plugin_paths[0]).c_str(), 1);
  EXPECT_EQ(make_core_target("plugin:example", {})->spec(), "plugin:example");
  ::unsetenv("MOECHECK_PLUGIN_PATH");
  // An unknown name lists what was searched and what each file holds.
  try {
    make_core_target("plugin:nope", by_file);
    ADD_FAILURE() << "found a plugin that does not exist";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no plugin named 'nope'"), std::string::npos) << what;
    EXPECT_NE(what.find(std::string(MOECHECK_BROKEN_PLUGIN) + ": plugin:broken"), std::string::npos) << what;
    EXPECT_NE(what.find("--plugin PATH"), std::string::npos) << what;
  }
  EXPECT_THROW(make_core_target("plugin:broken", {}), std::invalid_argument);
}

TEST(PluginNames, PlantedPluginFindingsReplayWithThePluginGivenAtReplayTime) {
  ::unsetenv("MOECHECK_PLUGIN_PATH");
  const fs::path dir = temp_dir("mutation_plugin");
  MutationOptions o;
  o.cases = 200;
  o.corpus_dir = dir.string();
  const KillRow row = run_plugin_mutant(MOECHECK_BROKEN_PLUGIN, o);
  EXPECT_EQ(row.mutant, "broken_plugin");
  EXPECT_EQ(row.kind, "plugin");
  ASSERT_EQ(row.status, "killed");
  EXPECT_EQ(row.target, "plugin:broken");
  const auto entries = entries_in(dir);
  ASSERT_FALSE(entries.empty());
  for (const auto& [file, e] : entries) {
    expect_portable(file, e);
    EXPECT_EQ(e.expect, Expectation::fail) << file << ": a planted bug's finding must be expect fail";
  }
  ReplayOptions ro;
  ro.target.plugin_paths = {MOECHECK_BROKEN_PLUGIN};
  for (const ReplayResult& r : replay_paths({dir.string()}, "", make_core_target, ro)) {
    EXPECT_TRUE(r.ok) << r.path << ": " << r.outcome << " " << r.detail;
    EXPECT_EQ(r.outcome, "fail") << r.path;
    EXPECT_EQ(r.target, "plugin:broken");
  }
  // Without the plugin the entries cannot run: an error naming the plugin, never a pass.
  for (const ReplayResult& r : replay_paths({dir.string()}, "", make_core_target)) {
    EXPECT_FALSE(r.ok) << r.path;
    EXPECT_EQ(r.outcome, "error") << r.path;
    EXPECT_NE(r.detail.find("no plugin named 'broken'"), std::string::npos) << r.detail;
  }
  fs::remove_all(dir);
}

TEST(PluginNames, FuzzedPluginFailuresAreRegressionEntriesNamedByDescriptor) {
  const fs::path dir = temp_dir("fuzz_plugin");
  auto target = make_core_target(std::string("plugin:") + MOECHECK_BROKEN_PLUGIN, {});
  CampaignOptions co;
  co.max_cases = 200;
  co.max_failures = 2;
  co.progress = false;
  co.corpus_dir = dir.string();
  std::ostringstream log;
  const CampaignResult r = run_campaign(*target, co, log);
  EXPECT_EQ(r.target, "plugin:broken");
  ASSERT_FALSE(r.failures.empty());
  for (const auto& f : r.failures) EXPECT_EQ(f.corpus_file.rfind(dir.string() + "/plugin_broken-", 0), 0u);
  for (const auto& [file, e] : entries_in(dir)) {
    expect_portable(file, e);
    EXPECT_EQ(e.expect, Expectation::pass) << file << ": a failure of real code is a regression case";
  }
  fs::remove_all(dir);
}

#endif

}  // namespace
