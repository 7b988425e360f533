// moecheck campaigns: budgeted, sharded, resumable differential fuzzing of one target.
#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "harness/core/corpus.hpp"
#include "harness/core/generators.hpp"
#include "harness/core/target.hpp"

namespace moecheck {

struct CampaignOptions {
  std::uint64_t seed = 1;          ///< campaign seed; case i uses case_seed(seed, i)
  double seconds = 0;              ///< wall-clock budget in seconds (0 = none)
  std::int64_t max_cases = 0;      ///< case budget for this shard (0 = none); one budget must be set
  int shard_index = 0;             ///< this shard, 0 <= shard_index < shard_count
  int shard_count = 1;             ///< case i belongs to shard i % shard_count
  GenConfig gen{};                 ///< shapes, dtypes, families, value families
  std::string corpus_dir;          ///< where failures are saved ("" = not saved)
  std::string results_json;        ///< campaign results (schema moecheck-campaign/1), "" = none
  std::string junit_xml;           ///< JUnit XML for CI systems, "" = none
  std::string state_file;          ///< resume state written on exit and every few seconds, "" = none
  bool resume = false;             ///< continue from state_file
  bool progress = true;            ///< progress line on stderr
  int max_failures = 16;           ///< stop after this many unique failures (0 = never stop)
  int shrink_attempts = 4000;      ///< candidate evaluations per shrink
  std::int64_t first_index = -1;   ///< start at this global case index (>= 0; replays one case)
};

/// One unique failure, shrunk and (when corpus_dir is set) saved.
struct FailureRecord {
  std::string signature;
  std::string check;
  std::string message;
  std::uint64_t seed = 0;          ///< case seed of the original failing case
  std::int64_t case_index = 0;
  RoutingCase original;            ///< shape summary only is serialised
  RoutingCase shrunk;
  int shrink_steps = 0;
  std::string corpus_file;
  std::string replay;              ///< command line that replays it
};

struct CampaignResult {
  std::string target;
  std::string mutant;
  std::string device;
  std::uint64_t seed = 0;
  int shard_index = 0, shard_count = 1;
  double budget_seconds = 0;
  std::int64_t budget_cases = 0;
  std::string started;             ///< ISO-8601 UTC
  double elapsed_s = 0;
  std::int64_t next_index = 0;     ///< next global case index to run (resume point)
  std::int64_t cases = 0;          ///< cases evaluated (not counting skipped)
  std::int64_t rows = 0;
  std::int64_t skipped = 0;        ///< cases outside the target's domain
  std::int64_t duplicate_failures = 0;  ///< failing cases whose signature was already known
  bool interrupted = false;
  GenConfig gen{};                 ///< generator configuration (identifies the campaign)
  int max_failures = 0;            ///< unique-failure limit the campaign ran with
  int shrink_attempts = 0;         ///< candidate evaluations per shrink
  std::map<std::string, std::int64_t> classes;
  std::vector<FailureRecord> failures;
};

/// Deterministic per-case seed: independent of shard layout, so shards partition one campaign.
std::uint64_t case_seed(std::uint64_t campaign_seed, std::int64_t index);

/// Stable de-duplication key of a (shrunk) failure.
std::string failure_signature(const Target& t, const std::string& check, const RoutingCase& shrunk);

/// Asks a running campaign to stop after the current case (async-signal-safe).
void request_campaign_stop();
/// Installs SIGINT/SIGTERM handlers that call request_campaign_stop().
void install_stop_handlers();

/// Runs the campaign; writes corpus entries, results JSON, JUnit XML and the resume state as
/// configured. Throws std::invalid_argument for bad options (named).
CampaignResult run_campaign(Target& target, const CampaignOptions& opt, std::ostream& log);

/// Results as JSON text (schema "moecheck-campaign/1", reports/README.md).
std::string campaign_json(const CampaignResult& r);
/// Results as JUnit XML.
std::string campaign_junit(const CampaignResult& r);

/// Version strings recorded in corpus files and results.
std::string toolkit_string();
std::string source_commit();
std::string tool_version();
std::string iso_time_now();

}  // namespace moecheck
