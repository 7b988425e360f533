// Kill matrix (harness/core/mutation.hpp): planted kernel mutants are killed on their host
// algorithm, their findings are saved as corpus entries that replay as planted bugs, and the
// matrix renders to the Markdown and JSON the `moecheck mutants` command writes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "harness/core/mutation.hpp"
#include "harness/core/replay.hpp"

namespace fs = std::filesystem;
using namespace moecheck;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("moecheck_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

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

}  // namespace
