// moecheck CLI subcommands other than fuzz/replay (which live in main.cpp).
#pragma once

#include <CLI/CLI.hpp>

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "harness/core/generators.hpp"
#include "harness/core/replay.hpp"

namespace moecheck::cli {

/// Applies "--dtypes f32,bf16" and "--families gemma4,softmax_topk" to a generator config.
/// Throws CLI::ValidationError naming the bad entry.
void apply_generator_lists(const std::string& dtypes, const std::string& families, GenConfig& gen);

/// Applies "--layouts contiguous,padded" to a generator config. Throws CLI::ValidationError
/// naming the bad entry (unknown layout, repeated layout, empty list).
void apply_layout_list(const std::string& layouts, GenConfig& gen);

/// Prints replay results, writes JSON/JUnit when asked; returns 0 iff every entry matched.
int report_replay(const std::vector<ReplayResult>& results, const std::string& json_path,
                  const std::string& junit_path, std::ostream& out);

struct SubstitutionCliOptions {
  std::string device = "auto";    ///< cpu, cuda, auto
  std::string variant = "correct";///< module variant or "all"
  std::string mode = "both";      ///< rebind, in_place, copy_into, both, all (or a comma list)
  std::string property = "all";   ///< a property name, a comma list, or "all"
  std::string backend = "composite";
  std::string dtype = "f32";
  int cases = 100;
  std::uint64_t seed = 1;
  std::string corpus_dir = "corpora/substitution";  ///< "" = do not save counterexamples
  std::string json;
  std::string reproduce;          ///< re-run one recorded shrunk case (single variant)
  std::vector<std::string> replay;///< .subst files/folders to replay instead of a search
};
void add_substitution_options(CLI::App* app, SubstitutionCliOptions& o);
/// Runs the substitution property suite (or, with `replay`, re-runs recorded .subst files).
/// Exit status:
///   one variant    : 0 when every (property, mode) held, 1 when a failure was found
///                    (bug variants are failure finders: finding their bug exits 1);
///   variant "all"  : 0 iff every variant behaved as documented (the correct module passes,
///                    each bug variant is caught exactly in the modes that catch it), else 1;
///   replay         : 0 iff every file's verdict matched its expectation, 1 otherwise,
///                    2 when a file is malformed or unreadable;
///   3 when a run could not reach a verdict (RapidCheck gave up or errored).
/// Throws std::invalid_argument for bad options (exit 2 in main).
int run_substitution(const SubstitutionCliOptions& o, std::ostream& out);

struct MutantsCliOptions {
  bool list = false;
  std::int64_t cases = 3000;      ///< case budget per mutant
  std::uint64_t seed = 1;
  std::string device = "auto";
  std::string json;               ///< kill matrix as JSON
  std::string markdown;           ///< kill matrix as Markdown
  std::string corpus_dir = "corpora/mutants";
  bool include_modules = true;    ///< also the MoE module's stale-capture variants
  bool include_plugins = true;    ///< also the deliberately broken example plugin (if built)
};
void add_mutants_options(CLI::App* app, MutantsCliOptions& o);
/// One row of the kill matrix for the MoE module's stale-capture variants.
struct ModuleKill {
  std::string mutant, target, status, check;
  std::int64_t cases_to_first = 0;
  std::string shrunk;
  double seconds = 0;
  std::string note;
  /// "property/mode" -> cases to its first failure, for every (property, mode) that caught it.
  std::map<std::string, std::int64_t> caught;
};
/// Runs the substitution suite against every buggy module variant (commands_substitution.cpp).
std::vector<ModuleKill> run_module_mutants(const MutantsCliOptions& o, bool cuda);
/// Names of the module variants that are planted bugs.
std::vector<std::string> module_mutant_names();
/// Returns 0 iff every mutant runnable here was killed.
int run_mutants(const MutantsCliOptions& o, std::ostream& out);

struct ReportCliOptions {
  std::vector<std::string> inputs;
  std::string baseline;
  std::string output;
};
void add_report_options(CLI::App* app, ReportCliOptions& o);
int run_report(const ReportCliOptions& o, std::ostream& out);

struct BenchCliOptions {
  std::string output = "bench.json";
  std::string filter;
  int repetitions = 5;
  std::vector<std::string> extra;
};
void add_bench_options(CLI::App* app, BenchCliOptions& o);
/// Runs the benchmark binary that sits next to this executable's build tree.
int run_bench(const BenchCliOptions& o, const char* argv0, std::ostream& out);

}  // namespace moecheck::cli
