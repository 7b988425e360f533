// moecheck corpus files: replayable routing cases in a versioned, line-oriented text format.
// The format is specified in corpora/FORMAT.md; this parser is the reference implementation.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness/core/case.hpp"

namespace moecheck {

/// Current corpus format version written by `write_corpus_entry`.
constexpr int kCorpusFormatVersion = 1;
/// Hard limits that keep hostile files from exhausting memory.
constexpr std::int64_t kCorpusMaxElements = std::int64_t{1} << 26;  // 64 Mi logits
constexpr std::int64_t kCorpusMaxFileBytes = std::int64_t{1} << 30;  // 1 GiB

/// What a replay of the entry must observe for the replay to pass.
enum class Expectation : int {
  pass = 0,  ///< the target must pass every check (regression case of a fixed bug)
  fail = 1,  ///< the target must still be caught (planted bug: mutant, broken plugin)
};

/// One corpus entry: the case plus how it was found and what a replay must see.
struct CorpusEntry {
  RoutingCase c;
  std::string target = "reference";  ///< target spec, e.g. "kernel:warp_per_row", "cuda:auto"
  std::string mutant = "none";       ///< planted-bug variant name, "none" for the real code
  std::string device = "cpu";        ///< device the failure was seen on
  Expectation expect = Expectation::pass;
  std::string check;                 ///< oracle check that failed ("weight", "selection", ...)
  std::string signature;             ///< de-duplication key (hex)
  std::string message;               ///< first violation, one line
  std::string toolkit;               ///< "torch=2.11.0 cuda=13.0 driver=..."
  std::string commit;                ///< source revision that found it
  std::string found;                 ///< ISO-8601 UTC time it was saved
  /// contract_spec() of the contract the case is judged by (reference/CONTRACTS.md); files
  /// without a `contract` line read as "strict".
  std::string contract = "strict";
};

/// Error raised for malformed corpus files; what() names the file, line and field.
class CorpusError : public std::runtime_error {
 public:
  CorpusError(const std::string& file, int line, const std::string& field, const std::string& why);
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  const std::string& field() const { return field_; }

 private:
  std::string file_;
  int line_;
  std::string field_;
};

/// Serialises an entry (values as C99 hex floats, so they round-trip bit-exactly).
std::string format_corpus_entry(const CorpusEntry& e);
/// Parses the text of one entry. `origin` names the source in errors. Throws CorpusError.
CorpusEntry parse_corpus_entry(const std::string& text, const std::string& origin = "<memory>");
/// The whole text of the regular file `path`, at most `max_bytes` long. Throws CorpusError
/// (field "file") when it is not a regular file, cannot be sized, opened or fully read, or
/// is larger than max_bytes.
std::string read_bounded_file(const std::string& path, std::int64_t max_bytes);
/// Reads and parses one file. Throws CorpusError (also for unreadable or oversized files).
CorpusEntry read_corpus_file(const std::string& path);
/// Writes `e` to `dir/<name>.case` atomically (temp file + rename), creating `dir`.
/// Never overwrites an existing file with a different content: an existing file with the
/// same signature is left as it is. Returns the path written (or the existing one).
std::string write_corpus_entry(const CorpusEntry& e, const std::string& dir);
/// Expands files and folders (recursively, "*.case" files, sorted) into a list of paths.
/// Throws CorpusError when a path does not exist.
std::vector<std::string> list_corpus_paths(const std::vector<std::string>& paths);
/// As list_corpus_paths for files with extension `ext` (e.g. ".subst"): files are kept as
/// given, folders contribute their `*ext` files recursively, sorted per folder.
std::vector<std::string> list_paths_with_extension(const std::vector<std::string>& paths, const std::string& ext);

}  // namespace moecheck
