// moecheck corpus files: replayable routing cases in a versioned, line-oriented text format.
// The format is specified in corpora/FORMAT.md; this parser is the reference implementation.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness/core/case.hpp"

namespace moecheck {

/// Newest corpus format version this build reads and writes. The writer emits version 1
/// unless the entry needs version 2 (a NaN other than the default quiet one, or a sidecar):
/// see corpus_format_version.
constexpr int kCorpusFormatVersion = 2;
/// Oldest corpus format version this build reads.
constexpr int kCorpusMinFormatVersion = 1;
/// Cases with more logits than this are written with their logits in a binary sidecar file
/// (version 2 `logits_file`) by write_corpus_entry.
constexpr std::int64_t kCorpusSidecarElements = std::int64_t{1} << 16;
/// Hard limits that keep hostile files from exhausting memory.
constexpr std::int64_t kCorpusMaxElements = std::int64_t{1} << 26;  // 64 Mi logits
constexpr std::int64_t kCorpusMaxFileBytes = std::int64_t{1} << 30;  // 1 GiB
constexpr std::size_t kCorpusMaxWordBytes = 4096;  // single-word fields (target, mutant, ...)

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

/// Bytes of a value that error messages echo before cutting it (quote_value).
constexpr std::size_t kMessageValueBytes = 64;
/// `value` quoted for an error message: 'value', or, when longer than kMessageValueBytes,
/// its first kMessageValueBytes bytes (not cutting a UTF-8 character) as 'head...' (N bytes).
/// Invisible bytes are spelled out: control bytes as \xNN and a byte order mark as
/// \xEF\xBB\xBF, so a message never prints something the reader cannot see.
std::string quote_value(const std::string& value);
/// True when `text` starts with the UTF-8 byte order mark (EF BB BF).
bool has_utf8_bom(const std::string& text);
/// Throws CorpusError(origin, line 1, field "header") saying the file starts with a UTF-8
/// byte order mark (BOM) when `text` does; corpus files are UTF-8 without BOM. Shared by the
/// .case and .subst readers.
void reject_utf8_bom(const std::string& text, const std::string& origin);

/// The format version format_corpus_entry writes for `e`: 2 when a value is a NaN other than
/// the default quiet NaN (bits 0x7fc00000: its sign or payload needs a `nan:0x...` token) or
/// when `sidecar` is true; 1 otherwise (readable by builds that know only version 1).
int corpus_format_version(const CorpusEntry& e, bool sidecar = false);
/// Serialises an entry with its logits inline (values as C99 hex floats and NaN bit patterns,
/// so they round-trip bit-exactly).
std::string format_corpus_entry(const CorpusEntry& e);

/// An entry serialised as a `.case` text and, for large cases, a binary sidecar of its logits.
struct CorpusFiles {
  std::string text;           ///< the .case file
  std::string sidecar_name;   ///< "" when the logits are inline; else a file name in the .case's folder
  std::string sidecar_bytes;  ///< the sidecar's content
};
/// 64-bit FNV-1a hash of `bytes` (the sidecar checksum).
std::uint64_t fnv1a64(const std::string& bytes);
/// Serialises `e` for a file named `case_name`: logits inline when T * E <= sidecar_elements,
/// else in a sidecar named "<case stem>.<checksum>.bin" (version 2 `logits_file`: the logits'
/// bit patterns in the case's dtype, or in fp32 when a 16-bit pattern would not give back the
/// same float bits).
CorpusFiles format_corpus_files(const CorpusEntry& e, const std::string& case_name,
                                std::int64_t sidecar_elements = kCorpusSidecarElements);

/// Parses the text of one entry. `origin` names the source in errors. A `logits_file` sidecar
/// is read from `sidecar_dir`, by default the folder of `origin` (the current folder when
/// origin names none); its size and checksum are verified. Throws CorpusError.
CorpusEntry parse_corpus_entry(const std::string& text, const std::string& origin = "<memory>",
                               const std::string& sidecar_dir = "");
/// The sidecar file names the entry text refers to (none, or the one `logits_file` names);
/// unchecked beyond the name itself. For tools that copy corpus files (merge).
std::vector<std::string> corpus_sidecar_names(const std::string& text);
/// Copies the sidecar of the corpus file `case_path` (text `case_text`) into `into_dir` with
/// write_file_once, unless a file of that name with the same bytes is there already. Throws
/// CorpusError when the sidecar cannot be read and std::runtime_error when a different file
/// of that name is in the way or the copy fails. Does nothing for entries without a sidecar.
void copy_corpus_sidecars(const std::string& case_path, const std::string& case_text, const std::string& into_dir);
/// The whole text of the regular file `path`, at most `max_bytes` long. Throws CorpusError
/// (field "file") when it is not a regular file, cannot be sized, opened or fully read, or
/// is larger than max_bytes.
std::string read_bounded_file(const std::string& path, std::int64_t max_bytes);
/// Reads and parses one file. Throws CorpusError (also for unreadable or oversized files).
CorpusEntry read_corpus_file(const std::string& path);
/// "<target>-<signature>.case" ("case" without a signature), every character other than
/// [A-Za-z0-9._-] replaced by '_' (so a name never holds a '/').
std::string corpus_file_name(const CorpusEntry& e);
/// Writes `e` to `dir/corpus_file_name(e)` with write_file_once (write_once.hpp), creating
/// `dir`: readers never see a partial file, and an existing file (same target and signature,
/// possibly written by a parallel shard at the same moment) is kept as it is. A case of more
/// than `sidecar_elements` logits gets a sidecar (format_corpus_files), published first, so a
/// reader never sees a `.case` whose sidecar is missing; sidecar names carry their checksum, so
/// an existing sidecar of that name holds the same bytes (checked). Returns the path written or
/// the existing one. Throws std::runtime_error naming the path on I/O failure.
std::string write_corpus_entry(const CorpusEntry& e, const std::string& dir,
                               std::int64_t sidecar_elements = kCorpusSidecarElements);
/// Expands files and folders into the list of "*.case" corpus files they name (see
/// list_paths_with_extension).
std::vector<std::string> list_corpus_paths(const std::vector<std::string>& paths, bool allow_empty = false);
/// Files and folders to the list of corpus files with extension `ext` (e.g. ".subst"): a path
/// that is not a folder is kept as given (also a dangling symbolic link: reading it reports
/// it); a folder contributes, recursively and sorted per folder, every entry named `*ext`
/// that is not itself a folder, whatever it is (regular file, dangling or looping symbolic
/// link, FIFO, ...), so that the reader reports each one it cannot read instead of skipping
/// it. Throws CorpusError (field "path") when a path does not exist, a folder cannot be
/// listed, or a folder holds no `*ext` entry and `allow_empty` is false.
std::vector<std::string> list_paths_with_extension(const std::vector<std::string>& paths, const std::string& ext,
                                                   bool allow_empty = false);

}  // namespace moecheck
