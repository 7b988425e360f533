// Merging the shards of one campaign into one result: `moecheck merge` (shards run by a batch
// scheduler, a CI matrix or by hand) and `moecheck fuzz --workers/--devices` (one process per
// worker on one host). The merged document is an ordinary moecheck-campaign/1 result.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness/core/campaign.hpp"

namespace moecheck {

/// Shards that cannot be merged: an unreadable or malformed document, documents of different
/// campaigns (the message names the differing field), missing or duplicated shard indices
/// (unless allowed), a malformed or uncopyable corpus file. The CLI reports it with exit code 2.
class MergeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct MergeOptions {
  /// Corpus folders of the shards; every `*.case` file in them is copied into `into_dir`.
  std::vector<std::string> corpus_dirs;
  /// Where the merged corpus goes ("" = files stay where the shards wrote them). The corpus
  /// files referenced by the kept failures are copied first, so they keep their own names.
  /// A file already there is never overwritten: the same name with the same bytes is reused;
  /// a same-named file with other bytes is kept under the next free name `<stem>-2.case`, ...
  std::string into_dir;
  /// Merge what is there when shard indices are missing or duplicated (a duplicated index
  /// keeps the document that ran furthest); without it they are a MergeError.
  bool allow_partial = false;
  /// The shard that the inputs partition: inputs are shards parent_index + t * parent_count of
  /// parent_count * n (t < n). The merged document is shard parent_index/parent_count.
  int parent_index = 0;
  int parent_count = 1;
  /// Shards must have one budget (moecheck merge). Off for --workers, whose case budget is
  /// split between the workers; the merged case budget is the shards' sum either way.
  bool same_budget = true;
  /// Copy only the kept failures' corpus files (not the duplicates found by other shards), and
  /// treat a same-named file already in `into_dir` as the entry itself (write-once, as one
  /// campaign writing into that folder would): the layout of --workers.
  bool kept_failures_only = false;
};

/// One input of a merge.
struct MergedShard {
  int index = 0;
  int count = 1;
  std::string path;
  std::int64_t cases = 0, rows = 0, next_index = 0;
  double elapsed_s = 0;
  std::size_t failures = 0;
  bool interrupted = false;
};

struct MergeResult {
  std::string json;                  ///< merged campaign, schema moecheck-campaign/1
  CampaignResult campaign;           ///< the same document, parsed (JUnit, summaries)
  std::vector<MergedShard> shards;   ///< the inputs used, by shard index
  std::vector<int> missing;          ///< shard indices (of the inputs' shard count) not given
  std::vector<int> duplicated;       ///< shard indices given more than once
  std::int64_t cross_shard_duplicates = 0;  ///< failures dropped: signature kept from another shard
  int corpus_copied = 0;             ///< files copied into into_dir
  int corpus_present = 0;            ///< files already there with the same bytes
  int corpus_renamed = 0;            ///< files kept under a distinct name (same name, other bytes)
  std::vector<std::string> notes;    ///< one line each: what was dropped, renamed or not found
};

/// Merges the campaign results in `shard_paths` (moecheck-campaign/1 documents written by
/// `moecheck fuzz --shard i/n`). Totals and the class histogram are summed; failures are
/// de-duplicated by signature keeping the lowest case index (the one a single process would
/// have kept) and listed by case index; `duplicate_failures` counts every failing case whose
/// signature was already kept; `next_index` is the first case index no shard ran; `elapsed_s`
/// is the longest shard's (shards run side by side); `interrupted` and `aborted` hold when they
/// hold for a shard (or, for interrupted, when shards are missing); `merged_from` lists the
/// inputs. Other fields are the lowest shard's. Shards of different campaigns (schema, tool
/// version and commit, target, mutant, seed, shard count, budget, device kind, generator,
/// limits, contract, case_timeout_s) are refused. Nothing is written before every input has
/// been read and checked. Throws MergeError.
MergeResult merge_campaigns(const std::vector<std::string>& shard_paths, const MergeOptions& opt);

/// Writes the merged JSON and JUnit XML (each atomically; "" = not written). Throws
/// std::runtime_error when a file cannot be written.
void write_merge_outputs(const MergeResult& m, const std::string& json_path, const std::string& junit_path);

/// Parses a campaign results document (schema moecheck-campaign/1) into a CampaignResult (of
/// "generator" only the restriction is parsed back; the drawn config stays default). Throws MergeError naming `origin` and the field.
CampaignResult campaign_from_json(const std::string& text, const std::string& origin);

}  // namespace moecheck
