// moecheck command-line tool.
//
// Exit codes (documented in README.md):
//   0  success: no failure found / every replay matched its expectation / no regression
//   1  failures found, a replay did not match, a mutant survived, or a performance regression
//   2  usage error or bad input (bad flag, malformed corpus file, unreadable JSON)
//   3  internal error (an unexpected exception inside moecheck itself), or an output (corpus,
//      --state, --json, --junit) could not be written at the end (the others still are)
//   4  fuzz: interrupted (SIGINT/SIGTERM) before the budget ran out, no failure found so far
//      (a failure found before the interruption still makes it 1)
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/cli/commands.hpp"
#include "harness/cli/commands_check.hpp"
#include "harness/cli/distributed.hpp"
#include "harness/core/campaign.hpp"
#include "harness/core/replay.hpp"
#include "harness/torch/torch_targets.hpp"

namespace moecheck::cli {
namespace {

/// Parses "i/n" into shard index and count.
void parse_shard(const std::string& s, int* index, int* count) {
  auto slash = s.find('/');
  if (slash == std::string::npos) throw CLI::ValidationError("--shard", "expected i/n, got '" + s + "'");
  try {
    std::size_t a = 0, b = 0;
    *index = std::stoi(s.substr(0, slash), &a);
    *count = std::stoi(s.substr(slash + 1), &b);
    if (a != slash || b != s.size() - slash - 1) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    throw CLI::ValidationError("--shard", "expected i/n with integers, got '" + s + "'");
  }
  if (*count < 1 || *index < 0 || *index >= *count) {
    throw CLI::ValidationError("--shard", "need 0 <= i < n, got '" + s + "'");
  }
}

std::string resolve_target(const std::string& spec, const std::string& device) {
  if (spec != "auto") return spec;
  if (device == "cuda") return "cuda:auto";
  if (device == "cpu") return "kernel:auto";
  return cuda_device_available() ? "cuda:auto" : "kernel:auto";
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"moecheck: correctness harness and differential fuzzer for MoE routing kernels"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] {
    return "moecheck " + tool_version() + " (commit " + source_commit() + ", " + toolkit_string() + ")";
  });

  // ---- fuzz ----------------------------------------------------------------------------
  CampaignOptions fz;
  std::string fz_target = "auto", fz_device = "auto", fz_shard = "0/1", fz_mutant = "none", fz_plugin;
  std::string fz_dtypes = "f32,f16,bf16", fz_families, fz_layouts, fz_contract;
  std::int64_t fz_first = -1;
  bool fz_no_progress = false, fz_no_isolation = false;
  fz.seconds = 0;
  fz.corpus_dir = "corpora/found";
  auto* fuzz = app.add_subcommand("fuzz", "Run a differential fuzzing campaign against one target");
  fuzz->add_option("--target,-t", fz_target,
                   "Target: auto, reference, kernel:<variant>, cuda:<variant>, composite[:cuda], "
                   "plugin:<path.so>, substitution")
      ->capture_default_str();
  fuzz->add_option("--device", fz_device, "Device for target auto: cpu, cuda, auto")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  fuzz->add_option("--mutant", fz_mutant, "Planted-bug variant of the target (see `moecheck mutants --list`)")
      ->capture_default_str();
  fuzz->add_option("--plugin", fz_plugin, "Shorthand for --target plugin:<path>")->excludes("--target");
  fuzz->add_option("--seed", fz.seed, "Campaign seed (decimal or 0x-hex, 0 to 2^64 - 1)")
      ->transform(seed_value())
      ->capture_default_str();
  fuzz->add_option("--seconds", fz.seconds, "Time budget in seconds (> 0; default 60 when no --cases)")
      ->check(positive_seconds());
  fuzz->add_option("--cases", fz.max_cases, "Case budget for this shard (>= 1)")
      ->transform(integer_in(1, kMaxCampaignCases));
  fuzz->add_option("--case-timeout", fz.case_timeout,
                   "Seconds one case may run before it counts as a hang (default: a tenth of --seconds, "
                   "within [2, 60]; 60 with --cases only)")
      ->check(positive_seconds());
  fuzz->add_option("--first-case", fz_first, "Start at this global case index (replays one case with --cases 1)")
      ->transform(integer_in(0, kMaxCaseIndex));
  fuzz->add_option("--shard", fz_shard, "Run shard i of n (case j belongs to shard j % n)")->capture_default_str();
  fuzz->add_option("--corpus", fz.corpus_dir, "Folder where shrunk failures are saved")->capture_default_str();
  fuzz->add_option("--json", fz.results_json, "Write campaign results JSON here");
  fuzz->add_option("--junit", fz.junit_xml, "Write JUnit XML here");
  fuzz->add_option("--state", fz.state_file, "Resume state file (written on exit and every 5 s)");
  fuzz->add_flag("--resume", fz.resume, "Continue the campaign recorded in --state");
  fuzz->add_option("--max-failures", fz.max_failures, "Stop after this many unique failures (0 = never)")
      ->transform(integer_in(0, 1000000))
      ->capture_default_str();
  fuzz->add_option("--max-T", fz.gen.max_T, "Largest T generated")->transform(integer_in(0, 1 << 22))->capture_default_str();
  fuzz->add_option("--max-E", fz.gen.max_E, "Largest E generated")->transform(integer_in(1, 4096))->capture_default_str();
  fuzz->add_option("--max-k", fz.gen.max_k, "Largest k generated")->transform(integer_in(1, 4096))->capture_default_str();
  fuzz->add_option("--dtypes", fz_dtypes, "Comma-separated dtypes (f32,f16,bf16)")->capture_default_str();
  fuzz->add_option("--families", fz_families, "Comma-separated routing families (default: all the target supports)");
  fuzz->add_option("--layouts", fz_layouts,
                   "Comma-separated gating layouts to generate: contiguous, padded, transposed, strided (default: all)");
  fuzz->add_option("--contract", fz_contract,
                   "Contract the target is judged by: a built-in name (strict, probability-ranked, nan-zeroes-row, "
                   "dense-probability-nan-zeroes-row, nan-propagates) or a contract file (default: the target's own)");
  fuzz->add_flag("--host-check", fz.host_check,
                 "cuda:<variant> targets: generate and judge every case on the host (default: counter-generated "
                 "cases judged by the fp64 device checker, flagged rows and a sample confirmed on the host)");
  std::string fz_checker_mutant = "none";
  fuzz->add_option("--checker-mutant", fz_checker_mutant,
                   "Planted device-checker bug (none, accepts-any-weight): shows that the host sample catches it")
      ->capture_default_str();
  fuzz->add_flag("--no-progress", fz_no_progress, "No progress line");
  fuzz->add_flag("--no-isolation", fz_no_isolation,
                 "Run plugins in-process (no fork per case; no worker process owning a CUDA plugin's context)");
  FuzzWorkersRequest fz_workers;
  fuzz->add_option("--devices", fz_workers.devices,
                   "One worker process per CUDA device: all, or a comma list of ordinals (results merged)");
  fuzz->add_option("--workers", fz_workers.workers, "Run the campaign in N worker processes (results merged)")
      ->transform(integer_in(1, 1024))
      ->excludes("--devices");
  SubstitutionCliOptions sub_from_fuzz;

  // ---- replay ----------------------------------------------------------------------------
  std::vector<std::string> rp_paths;
  std::string rp_target, rp_junit, rp_json, rp_contract;
  ReplayOptions rp_opt;
  auto* replay = app.add_subcommand("replay", "Replay corpus files/folders; non-zero exit on any mismatch");
  replay->add_option("paths", rp_paths, "Corpus files or folders")->required();
  replay->add_option("--target", rp_target, "Run every entry against this target instead of its own");
  replay->add_option("--plugin", rp_opt.target.plugin_paths,
                     "Plugin shared object, or folder of them, that plugin:<name> entries are found in "
                     "(repeatable; then MOECHECK_PLUGIN_PATH)")
      ->allow_extra_args(false);
  replay->add_flag("--allow-empty", rp_opt.allow_empty, "Accept a folder holding no *.case file");
  replay->add_option("--junit", rp_junit, "Write JUnit XML here");
  replay->add_option("--json", rp_json, "Write JSON results here");
  replay->add_option("--contract", rp_contract,
                     "Judge every entry by this contract (built-in name or file) instead of its recorded one");

  // ---- check -----------------------------------------------------------------------------
  CheckCliOptions ck;
  auto* check = app.add_subcommand("check", "Judge routing outputs computed elsewhere (.npy or safetensors files)");
  add_check_options(check, ck);

  // ---- substitution ---------------------------------------------------------------------
  SubstitutionCliOptions sub;
  auto* substitution = app.add_subcommand(
      "substitution", "Functional parameter-substitution property suite on the LibTorch MoE module");
  add_substitution_options(substitution, sub);

  // ---- mutants ----------------------------------------------------------------------------
  MutantsCliOptions mu;
  auto* mutants = app.add_subcommand("mutants", "Run the campaign against every planted bug; print the kill matrix");
  add_mutants_options(mutants, mu);

  // ---- report -----------------------------------------------------------------------------
  ReportCliOptions rep;
  auto* report = app.add_subcommand(
      "report", "Render a campaign JSON to HTML, or compare benchmark runs (--baseline) into a dashboard");
  add_report_options(report, rep);

  // ---- merge ------------------------------------------------------------------------------
  MergeCliOptions mg;
  auto* merge = app.add_subcommand("merge", "Merge the shard results (and corpora) of one campaign");
  add_merge_options(merge, mg);

  // ---- bench ------------------------------------------------------------------------------
  BenchCliOptions be;
  auto* bench = app.add_subcommand("bench", "Run the GPU routing benchmarks and write JSON results");
  add_bench_options(bench, be);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  try {
    if (fuzz->parsed()) {
      parse_shard(fz_shard, &fz.shard_index, &fz.shard_count);
      fz.progress = !fz_no_progress;
      if (fuzz->count("--dtypes") && fz_dtypes.empty()) throw CLI::ValidationError("--dtypes", "empty list");
      if (fuzz->count("--families") && fz_families.empty()) throw CLI::ValidationError("--families", "empty list");
      if (fuzz->count("--layouts") && fz_layouts.empty()) throw CLI::ValidationError("--layouts", "empty list");
      apply_generator_lists(fz_dtypes, fz_families, fz.gen);
      apply_layout_list(fz_layouts, fz.gen);
      if (!fz_contract.empty()) fz.contract = resolve_contract(fz_contract);
      fz.checker_mutant = parse_checker_mutant(fz_checker_mutant);
      if (fz.seconds <= 0 && fz.max_cases <= 0) fz.seconds = 60;  // default budget
      if (!fz_plugin.empty()) fz_target = "plugin:" + fz_plugin;
      const std::string spec = resolve_target(fz_target, fz_device);
      fz_workers.use_devices = fuzz->count("--devices") > 0;
      if (spec == "substitution" && (fz_workers.use_devices || fz_workers.workers > 0)) {
        throw std::invalid_argument("--workers/--devices do not apply to the substitution target");
      }
      if (spec == "substitution") {
        if (fz.max_cases > 100000000) {
          throw CLI::ValidationError("--cases", std::to_string(fz.max_cases) +
                                                    " is out of range: the substitution target takes 1 to 100000000");
        }
        sub_from_fuzz.seed = fz.seed;
        sub_from_fuzz.device = fz_device == "auto" ? "auto" : fz_device;
        sub_from_fuzz.cases = fz.max_cases > 0 ? static_cast<int>(fz.max_cases) : 100;
        return run_substitution(sub_from_fuzz, std::cout);
      }
      if (fz_workers.use_devices || fz_workers.workers > 0) {
        fz.first_index = fz_first;
        fz_workers.fuzz_args = fuzz_arguments(argc, argv);
        return run_fuzz_workers(fz_workers, fz, std::cout, std::cerr);
      }
      // Before the target exists: a worker process it starts inherits the unblocked stop signals.
      install_stop_handlers();
      TargetOptions topt;
      topt.mutant = fz_mutant;
      topt.isolate_plugins = !fz_no_isolation;
      auto target = make_target(spec, topt);
      if (fz_first >= 0) fz.first_index = fz_first;
      std::cerr << "moecheck fuzz: target " << target->spec() << " (mutant " << target->mutant() << ", device "
                << target->device() << "), seed " << fz.seed << ", shard " << fz.shard_index << "/" << fz.shard_count
                << ", budget " << (fz.seconds > 0 ? std::to_string(fz.seconds) + " s" : std::string("-")) << " / "
                << (fz.max_cases > 0 ? std::to_string(fz.max_cases) + " cases" : std::string("-"))
                << ", case timeout " << effective_case_timeout(fz) << " s\n"
                << "  " << describe_contract(effective_contract(*target, fz.contract)) << "\n";
      CampaignResult r = run_campaign(*target, fz, std::cerr);
      std::cout << campaign_summary(r);  // write errors were reported on the log as they happened
      return campaign_exit_code(r);
    }
    if (replay->parsed()) {
      if (!rp_contract.empty()) rp_opt.contract = resolve_contract(rp_contract);
      auto results = replay_paths(rp_paths, rp_target, make_target, rp_opt);
      return report_replay(results, rp_json, rp_junit, std::cout);
    }
    if (check->parsed()) return run_check(ck, std::cout);
    if (substitution->parsed()) return run_substitution(sub, std::cout);
    if (mutants->parsed()) return run_mutants(mu, std::cout);
    if (report->parsed()) return run_report(rep, std::cout);
    if (merge->parsed()) return run_merge(mg, std::cout);
    if (bench->parsed()) return run_bench(be, argv[0], std::cout);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "moecheck: error: " << e.what() << "\n";
    return 2;
  } catch (const CorpusError& e) {
    std::cerr << "moecheck: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "moecheck: internal error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}

}  // namespace moecheck::cli

int main(int argc, char** argv) { return moecheck::cli::run(argc, argv); }
