// moecheck mutation testing: the kill matrix. Every planted bug (kernel mutants, the broken
// example plugin; the LibTorch module's stale-capture variants in harness/torch/module_mutation.hpp)
// is searched for with a budgeted campaign; a mutant is killed when the campaign finds it.
// Computing the matrix is separate from rendering it (Markdown, JSON) and from printing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "harness/core/campaign.hpp"
#include "kernels/routing_kernels.hpp"

namespace moecheck {

/// One row of the kill matrix.
struct KillRow {
  std::string mutant;    ///< "skip_renormalise", "module:capture_handle", "broken_plugin", ...
  std::string kind;      ///< "kernel", "module", "plugin"
  std::string target;    ///< target spec of the first kill (or the first one tried when it survived)
  std::string status;    ///< "killed", "survived", "not-run"
  std::string check;     ///< the check of the first kill
  std::int64_t cases_to_first = 0;  ///< cases run up to the first kill (all cases when it survived)
  std::string shrunk;    ///< summary of the first kill's shrunk case
  double seconds = 0;
  std::string note;      ///< corpus file of the first kill, replay line, or why the row did not run
  /// Oracle check (or "property/mode" for module rows) -> cases to its first failure: every
  /// check that fired within the budget, across all variants.
  std::map<std::string, std::int64_t> by_check;
  /// Variant spec -> cases to its first failure, or -1 when it survived that variant's budget
  /// (kernel rows only).
  std::map<std::string, std::int64_t> by_variant;
};

/// Budget and output of a kill-matrix run.
struct MutationOptions {
  std::int64_t cases = 3000;   ///< case budget per mutant (per variant for kernel mutants)
  std::uint64_t seed = 1;      ///< campaign seed
  std::string corpus_dir;      ///< where each kill's shrunk counterexample is saved ("" = nowhere)
  bool cuda = false;           ///< run the kernel mutants on the CUDA kernels (else their host algorithm)
};

/// The kernel mutants of the catalog (every kernels::Mutant except none), in enum order.
std::vector<kernels::Mutant> kernel_mutants();
/// The target specs a kernel mutant is run against: every kernel variant, "cuda:" or "kernel:".
std::vector<std::string> kernel_mutant_specs(bool cuda);
/// The campaign run against one variant of kernel mutant `m`: the options' seed, budget and
/// corpus, at most 4 unique failures, and the generator tuned to reach the mutant's bug
/// (grid_overflow needs rows beyond 65535; shared_race needs many warps racing, so tens of
/// thousands of contiguous rows, and a budget capped at 60 cases).
CampaignOptions kernel_mutant_campaign(kernels::Mutant m, const MutationOptions& o);
/// Runs kernel mutant `m` against every variant (kernel_mutant_specs) with
/// kernel_mutant_campaign; a GPU-only mutant without options.cuda is a "not-run" row.
/// Throws std::invalid_argument when a target cannot be built (e.g. cuda without a device).
KillRow run_kernel_mutant(kernels::Mutant m, const MutationOptions& o);

/// Catalog name of the deliberately broken example plugin.
constexpr const char* kBrokenPluginMutant = "broken_plugin";
/// File name of the broken example plugin's shared object.
constexpr const char* kBrokenPluginFile = "libmoecheck_broken_plugin.so";
/// Runs the broken example plugin at `plugin_path` as a planted bug (its findings are saved as
/// "expect fail" entries of target "plugin:<descriptor name>"); an empty path gives a
/// "not-run" row saying the plugin was not found. Throws std::invalid_argument when the
/// plugin cannot be loaded.
KillRow run_plugin_mutant(const std::string& plugin_path, const MutationOptions& o);

/// "T=<T> E=<E> k=<k> <dtype>": the shrunk-case column of the matrix.
std::string shrunk_summary(const RoutingCase& c);
/// Records, for each oracle check among `failures`, the cases to its first failure in
/// row.by_check (`offset` = cases run by earlier campaigns of the same row).
void record_checks(KillRow& row, const std::vector<FailureRecord>& failures, std::int64_t offset);

/// A complete kill matrix and its score.
struct KillMatrix {
  std::vector<KillRow> rows;
  bool cuda = false;    ///< device the kernel mutants ran on
  int killed = 0;       ///< rows with status "killed"
  int runnable = 0;     ///< rows not "not-run"
  double score_percent = 0;  ///< 100 * killed / runnable (0 when nothing ran)
  /// True when every runnable mutant was killed.
  bool all_killed() const { return killed == runnable; }
};
/// Counts killed and runnable rows and the mutation score.
KillMatrix tally_kill_matrix(std::vector<KillRow> rows, bool cuda);
/// The matrix as a Markdown table followed by the "Mutation score" line.
std::string kill_matrix_markdown(const KillMatrix& m);
/// The matrix as JSON text (schema "moecheck-mutants/1").
std::string kill_matrix_json(const KillMatrix& m);

}  // namespace moecheck
