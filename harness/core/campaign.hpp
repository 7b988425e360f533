// moecheck campaigns: budgeted, sharded, resumable differential fuzzing of one target.
#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/core/corpus.hpp"
#include "harness/core/device_check.hpp"
#include "harness/core/generators.hpp"
#include "harness/core/target.hpp"

namespace moecheck {

/// Largest global case index a campaign starts at or reaches (2^62): next_index plus a shard
/// count never overflows.
constexpr std::int64_t kMaxCaseIndex = std::int64_t{1} << 62;
/// Largest case budget of one campaign.
constexpr std::int64_t kMaxCampaignCases = kMaxCaseIndex;

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
  double shrink_seconds = 60;      ///< wall-clock cap on shrinking one failure (0 = none); the time
                                   ///< budget and stop requests end a shrink too (best case so far kept)
  double case_timeout = 0;         ///< per-case wall-clock limit in seconds; 0 = effective_case_timeout
  std::int64_t first_index = -1;   ///< start at this global case index (>= 0; replays one case)
  /// The target itself is a planted bug (the broken example plugin): its failures are saved
  /// as "expect fail", as those of a target with a mutant are.
  bool planted_bug = false;
  /// Contract the target is judged by (--contract), narrowed to the target's declared domain;
  /// unset: the contract the target declares (effective_contract).
  std::optional<Contract> contract;
  /// cuda:<variant> targets are checked on the device (device_check.hpp: counter-generated cases,
  /// the fp64 device oracle, host confirmation and sampling) unless this is set (--host-check):
  /// then every case is generated, copied and judged on the host as for any other target.
  bool host_check = false;
  int checker_mutant = 0;             ///< planted device-checker bug (parse_checker_mutant)
  std::uint32_t sample_one_in = 1000; ///< device path: host re-check rate (plus one row per case)
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
  /// Name of the CUDA device, as Target::device_name reported it ("" = this process asks).
  std::string device_name;
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
  Contract contract;               ///< the contract the campaign judged by
  std::int64_t outside_contract = 0;  ///< cases outside the contract's domain (not run, not failures)
  std::map<std::string, std::int64_t> outside_contract_reasons;  ///< by Verdict::outside_key
  std::int64_t duplicate_failures = 0;  ///< failing cases whose signature was already known
  GenConfig drawn;                 ///< the generator config cases were drawn from (draw_config)
  std::string restriction;         ///< what the target's domain removed from the configured draw
  std::vector<std::string> expected_classes;  ///< expected_case_classes(drawn)
  bool interrupted = false;        ///< stopped (signal, or aborted) before its budget ran out
  bool aborted = false;            ///< ended by the code under test (exit() or a hang in-process)
  std::string abort_reason;        ///< why, when aborted
  double case_timeout = 0;         ///< per-case timeout in effect (seconds)
  std::vector<std::string> write_errors;  ///< outputs (corpus, state, JSON, JUnit) that could not be written
  int max_failures = 0;            ///< unique-failure limit the campaign ran with (JSON "limits")
  int shrink_attempts = 0;         ///< candidate evaluations per shrink (JSON "limits")
  std::map<std::string, std::int64_t> classes;
  std::vector<FailureRecord> failures;
  /// "device" when the rows were judged by the device checker (counter-generated cases), "host"
  /// otherwise. JSON "check".
  std::string check_path = "host";
  DeviceCheckStats device_check;      ///< device path counters (JSON "check.device")
  /// Cases and rows judged per second of this run (JSON "rates"; a resumed run counts its own part).
  double cases_per_s = 0, rows_per_s = 0;
};

/// The generator config a campaign of `target` draws from: `cfg` restricted to the target's
/// Domain (families and dtypes intersected in cfg's order, max_E and max_k lowered to the
/// target's limits), so no case is generated only to be skipped. Deterministic in (cfg, target):
/// case j of a campaign is always generate_case(case_seed(seed, j), draw_config(cfg, target)),
/// which keeps `--first-case j --cases 1` replays exact. `restriction` (optional) receives a
/// description of what was removed ("" when nothing). Throws std::invalid_argument when the
/// target runs none of the configured families or dtypes.
GenConfig draw_config(const GenConfig& cfg, const Target& target, std::string* restriction = nullptr);

/// Deterministic per-case seed: independent of shard layout, so shards partition one campaign.
std::uint64_t case_seed(std::uint64_t campaign_seed, std::int64_t index);

/// Stable de-duplication key of a (shrunk) failure. A contract other than "strict" (its
/// contract_spec) is part of the key; strict keys are unchanged.
std::string failure_signature(const Target& t, const std::string& check, const RoutingCase& shrunk,
                              const std::string& contract_spec = "strict");

/// Asks a running campaign to stop (async-signal-safe): a call in flight is abandoned (an
/// isolated plugin's child is killed at once, an in-process call gets kStopGraceSeconds before
/// the watchdog ends the process), a shrink in progress keeps its best case, every output is
/// written.
void request_campaign_stop();
/// Installs SIGINT/SIGTERM handlers that call request_campaign_stop().
void install_stop_handlers();

/// Seconds a call may run past the end of the time budget before it is abandoned.
constexpr double kBudgetGraceSeconds = 1.0;
/// Seconds an in-process call may keep running after a stop request before the watchdog writes
/// every output and ends the process.
constexpr double kStopGraceSeconds = 0.5;
/// Exit status of `moecheck fuzz` for an interrupted campaign that found no failure.
constexpr int kExitInterrupted = 4;

/// Per-case timeout in effect: `opt.case_timeout` when set; otherwise a tenth of the time budget,
/// clamped to [2 s, 60 s]; 60 s with a case budget only. A call is also abandoned (not judged)
/// once it runs kBudgetGraceSeconds past the end of the time budget.
double effective_case_timeout(const CampaignOptions& opt);

/// Checks, before any case runs, that every output can be written: --json, --junit and --state
/// name files (not folders or special files) in folders that exist or can be created and accept
/// new files, the corpus is a folder (created when missing) that accepts new files, and no two
/// outputs share a path. Throws std::invalid_argument naming the path and the problem.
void check_output_paths(const CampaignOptions& opt);

/// Runs the campaign; writes corpus entries, results JSON, JUnit XML and the resume state as
/// configured. Throws std::invalid_argument for bad options (named), before any case runs.
/// The time budget bounds everything, shrinking included. An output that cannot be written is
/// recorded in `write_errors` and the others are still written.
///
/// Code under test that runs in this process (Target::runs_in_process) is watched: when it
/// calls exit()/quick_exit(), runs past the per-case timeout, or keeps running after a stop
/// request or the end of the budget, the case in flight (and a shrink in progress) is recorded,
/// every output is written (JSON "aborted" when the code under test ended the campaign), a
/// summary is printed on stdout and the process ends with campaign_exit_code (1 when a failure
/// was recorded). _exit() and crashes cannot be intercepted in-process: isolate such code.
/// A target that interrupts its own calls (Target::interrupts_calls) is held to the timeout,
/// the stop request and the budget by run() itself (timed_out / abandoned outcomes), never by
/// ending the process; only its exit()/quick_exit() calls end the campaign as above.
CampaignResult run_campaign(Target& target, const CampaignOptions& opt, std::ostream& log);

/// Exit status of `moecheck fuzz`: 3 when an output could not be written, else 1 when failures
/// were found, else kExitInterrupted when the campaign was interrupted, else 0.
int campaign_exit_code(const CampaignResult& r);
/// One-line summary ("cases N, rows R, ... in S s") plus one replay line per failure.
std::string campaign_summary(const CampaignResult& r);

/// Writes `text` to `path` atomically (`path`.tmp, then renamed over `path`; the folder is
/// created when missing): readers see the old file or the complete new one, never a half-written
/// file, and the temporary file is not left behind. Throws std::runtime_error naming the path and
/// the reason.
void write_atomically(const std::string& path, const std::string& text);

/// Results as JSON text (schema "moecheck-campaign/1", reports/README.md).
std::string campaign_json(const CampaignResult& r);
/// Results as JUnit XML.
std::string campaign_junit(const CampaignResult& r);

/// Version strings recorded in corpus files and results.
std::string toolkit_string();
/// The same with the device named `device_name` (from Target::device_name; "" = this
/// process asks the CUDA runtime, as toolkit_string() does).
std::string toolkit_string(const std::string& device_name);
std::string source_commit();
std::string tool_version();
std::string iso_time_now();

/// A count or rate for progress lines: "1234", "12.3k" (from 1e4), "1.23M", "1.23G".
std::string human_number(double v);

}  // namespace moecheck
