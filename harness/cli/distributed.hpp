// moecheck CLI: campaigns spread over processes and machines (`merge`, `fuzz --workers/--devices`).
#pragma once

#include <CLI/CLI.hpp>

#include <iosfwd>
#include <string>
#include <vector>

#include "harness/core/campaign.hpp"

namespace moecheck::cli {

struct MergeCliOptions {
  std::vector<std::string> inputs;       ///< shard results (moecheck-campaign/1)
  std::vector<std::string> corpus_dirs;  ///< shard corpus folders
  std::string into;                      ///< merged corpus folder
  std::string json, junit;
  bool allow_partial = false;
};
void add_merge_options(CLI::App* app, MergeCliOptions& o);
/// Merges shard results. Exit status: 0 no failure, 1 failures found, 2 inputs that cannot be
/// merged (malformed, different campaigns, missing or duplicated shards without
/// --allow-partial); throws MergeError (exit 2 in main) for those.
int run_merge(const MergeCliOptions& o, std::ostream& out);

/// `moecheck fuzz --workers N` / `--devices LIST`.
struct FuzzWorkersRequest {
  bool use_devices = false;            ///< --devices was given
  std::string devices;                 ///< its value
  int workers = 0;                     ///< 0 = not given
  std::vector<std::string> fuzz_args;  ///< the fuzz command line after "fuzz"
};
/// The arguments after the "fuzz" subcommand in argv.
std::vector<std::string> fuzz_arguments(int argc, char** argv);
/// Runs the campaign `fz` (already validated by the fuzz command) in one worker process per
/// device or per --workers, each on its part of the shard (plan_worker_shards), and merges
/// their results into fz.results_json / fz.junit_xml / fz.corpus_dir as one process would
/// have written them. Every output path is checked (check_output_paths) before any worker
/// starts. Exit status as `moecheck fuzz` (campaign_exit_code of the merged campaign): 0, 1
/// (failures), 4 (kExitInterrupted: a worker was interrupted or aborted and no failure was
/// found); 2 when a worker refused its arguments, 3 when a worker died, could not start or ended
/// with another status (its results, when written, are merged and kept).
/// Throws std::invalid_argument for bad --devices/--workers combinations and output paths (exit 2).
int run_fuzz_workers(const FuzzWorkersRequest& req, const CampaignOptions& fz, std::ostream& out, std::ostream& log);

}  // namespace moecheck::cli
