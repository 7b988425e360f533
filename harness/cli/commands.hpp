// moecheck CLI subcommands other than fuzz/replay (which live in main.cpp).
#pragma once

#include <CLI/CLI.hpp>

#include <iosfwd>
#include <string>
#include <vector>

#include "harness/core/generators.hpp"
#include "harness/core/replay.hpp"

namespace moecheck::cli {

// ---- flag values ------------------------------------------------------------------------
// CLI11 validators run on a flag's text before it is converted: these reject what the
// conversion would otherwise wrap (-1 into an unsigned seed), saturate (a count beyond
// 2^63 - 1) or let through (nan, inf), with a message naming the value (shortened when long).

/// A decimal integer in [lo, hi]: digits only (a leading '-' only when lo < 0), no overflow.
/// Rewrites the text to canonical decimal, so use it with Option::transform.
CLI::Validator integer_in(std::int64_t lo, std::int64_t hi);
/// A 64-bit seed: a decimal or 0x-hexadecimal integer in [0, 2^64 - 1]. Rewrites the text to
/// decimal (Option::transform).
CLI::Validator seed_value();
/// A finite number of seconds, > 0 and at most 1e9 (about 31 years).
CLI::Validator positive_seconds();
/// Largest --seconds accepted (positive_seconds).
constexpr double kMaxSeconds = 1e9;

/// Splits a comma list given to `flag`. Throws CLI::ValidationError naming the flag for an
/// empty list or an empty entry ("f32,,bf16").
std::vector<std::string> split_flag_list(const std::string& flag, const std::string& list);

/// Applies "--dtypes f32,bf16" and "--families gemma4,softmax_topk" to a generator config; an
/// empty string leaves that list as it is. Throws CLI::ValidationError naming the bad entry.
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
  bool allow_empty = false;       ///< replay: a folder holding no .subst file is not an error
};
void add_substitution_options(CLI::App* app, SubstitutionCliOptions& o);
/// Runs the substitution property suite (or, with `replay`, re-runs recorded .subst files).
/// Exit status:
///   one variant    : 0 when every (property, mode) held, 1 when a failure was found
///                    (bug variants are failure finders: finding their bug exits 1);
///   variant "all"  : 0 iff every variant behaved as documented (the correct module passes,
///                    each bug variant is caught exactly in the modes that catch it), else 1;
///   replay         : 0 iff every file's verdict matched its expectation, 1 otherwise,
///                    2 when a file is malformed or unreadable, or a folder holds no .subst
///                    file (unless allow_empty);
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
  /// Where each kill's shrunk counterexample is saved: by default not the committed corpus.
  std::string corpus_dir = "reports/out/mutants-corpus";
  bool include_modules = true;    ///< also the MoE module's stale-capture variants
  bool include_plugins = true;    ///< also the deliberately broken example plugin (if built)
};
void add_mutants_options(CLI::App* app, MutantsCliOptions& o);
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
