// moecheck replay: re-runs corpus entries and compares what happens with what each entry expects.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness/core/corpus.hpp"
#include "harness/core/target.hpp"

namespace moecheck {

/// Builds a target from a spec (the CLI passes one that also knows the LibTorch targets).
using TargetFactory = std::function<std::unique_ptr<Target>(const std::string&, const TargetOptions&)>;

struct ReplayResult {
  std::string path;
  std::string target;    ///< target actually run
  std::string outcome;   ///< "pass", "fail", "skipped", "error"
  bool ok = false;       ///< outcome matched the entry's expectation (or skipped)
  std::string detail;    ///< violation, error or skip reason
};

/// Replays one entry. `target_override` replaces the entry's target when not empty; the target
/// is built with `base` (plugin search path, isolation) and the entry's mutant.
/// A "cuda:<variant>" entry on a machine without a usable device runs the same kernel variant's
/// host emulation ("kernel:<variant>"), except GPU-only mutants, which are reported as skipped.
/// A target that cannot be built (e.g. "plugin:<name>" with no such plugin in the search path)
/// is an "error" result.
/// The entry is judged by its recorded contract, or by `contract_override` when given (both
/// narrowed to the target's declared domain); a case outside that contract is "skipped".
ReplayResult replay_entry(const CorpusEntry& e, const std::string& path, const std::string& target_override,
                          const TargetFactory& factory, const TargetOptions& base = {},
                          const std::optional<Contract>& contract_override = std::nullopt);

/// How replay_paths reads its paths and builds targets.
struct ReplayOptions {
  bool allow_empty = false;  ///< a folder holding no *.case entry is accepted (else an "error" result)
  TargetOptions target;      ///< options every target is built with (plugin_paths, isolate_plugins)
  /// Contract every entry is judged by instead of its recorded one (--contract); unset: each
  /// entry's own.
  std::optional<Contract> contract = std::nullopt;
};

/// Replays every file under `paths` (files or folders, list_corpus_paths). Malformed or
/// unreadable entries (also dangling symbolic links, FIFOs, ... named *.case in a folder) and
/// folders holding no entry (unless options.allow_empty) produce an "error" result naming the
/// path and field; they never stop the others.
std::vector<ReplayResult> replay_paths(const std::vector<std::string>& paths,
                                       const std::string& target_override, const TargetFactory& factory,
                                       const ReplayOptions& options = {});

}  // namespace moecheck
