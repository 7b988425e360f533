// moecheck substitution corpus: shrunk counterexamples of the functional-substitution suite
// as `*.subst` files (format: corpora/FORMAT.md), and their replay. This parser is the
// reference implementation of the format. No LibTorch in this header.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "harness/torch/substitution_suite.hpp"

namespace moecheck::harness {

/// First word of every .subst file and the format version this build reads and writes.
constexpr const char* kSubstHeader = "moecheck-substitution";
constexpr int kSubstFormatVersion = 1;
/// Largest .subst file read (hostile files cannot exhaust memory).
constexpr std::int64_t kSubstMaxFileBytes = std::int64_t{1} << 20;  // 1 MiB

/// One .subst file: the run that found a counterexample, and what a replay must see.
struct SubstRecord {
  std::string variant = "correct", backend = "composite", dtype = "f32", device = "cpu";
  std::string property, mode;
  std::uint64_t seed = 1;
  int cases = 100;
  std::string reproduce;                       ///< RapidCheck reproduce string
  bool expect_fail = false;
  std::string toolkit;
  std::vector<std::string> case_lines;         ///< describe_case text
  std::vector<std::string> explanation_lines;  ///< why the case fails
  std::map<std::string, int> lines;            ///< field -> line number (parsed files)
};

/// The text of a .subst file for `r` (version kSubstFormatVersion).
std::string format_subst(const SubstRecord& r);
/// Parses the text of one .subst file; `origin` names it in errors. Throws CorpusError
/// naming origin, line and field for every malformed input (bad header or version, unknown,
/// repeated or empty field, bad value, control byte, text after `end`, missing `end` or a
/// missing required field).
SubstRecord parse_subst(const std::string& text, const std::string& origin);
/// Reads (at most kSubstMaxFileBytes) and parses one file. Throws CorpusError.
SubstRecord read_subst_file(const std::string& path);
/// `path` as the list of .subst files it names (list_paths_with_extension): a file as given,
/// a folder's `*.subst` entries recursively, sorted, also those that are not regular files
/// (dangling symbolic links, FIFOs, ...) so that reading them reports them. Throws CorpusError
/// when the path does not exist, or when a folder holds no `*.subst` entry and `allow_empty`
/// is false.
std::vector<std::string> list_subst_paths(const std::string& path, bool allow_empty = false);
/// "<variant>-<property>-<mode>[-<backend>-<dtype>-<device>].subst" (the spec suffix when it is
/// not composite, f32, cpu), every character other than [A-Za-z0-9_-] replaced by '_'.
std::string subst_file_name(const SubstRecord& r);
/// Saves `r` into `dir` (created) as subst_file_name(r) with write_file_once: an existing file
/// is never replaced. Returns the path; `status` receives "saved", "unchanged" (the existing
/// file has this content) or "kept existing (differs from this run)". Throws
/// std::runtime_error naming the path when it cannot be written.
std::string save_subst(const SubstRecord& r, const std::string& dir, std::string* status);
/// The record of result `r` of a run with options `so` (expect fail for every bug variant).
SubstRecord subst_record_of(const SubstitutionOptions& so, const PropertyResult& r);

/// True when `r` is a verdict that the property failed (not a pass, not a run error).
bool property_failed(const PropertyResult& r);

/// Outcome of replaying one .subst record.
struct SubstReplay {
  bool malformed = false;  ///< the record cannot be replayed (its reproduce string); `detail` says why
  std::string outcome;     ///< "pass", "fail" or "error" (the run failed to reach a verdict)
  bool ok = false;         ///< the verdict matched `expect` (and a failing case is the recorded one)
  std::string detail;      ///< why it did not match, the run error, or the malformed-record error
  std::string note;        ///< e.g. a cuda record replayed on the cpu
  double seconds = 0;
};
/// Re-runs the recorded case of `rec` (read from `path`, named in errors) and judges it
/// against its expectation: the verdict must equal `expect`, and a failing case must equal the
/// recorded `case` lines. A cuda record without a usable CUDA device runs on the cpu.
SubstReplay replay_subst_record(const SubstRecord& rec, const std::string& path);

}  // namespace moecheck::harness
