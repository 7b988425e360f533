// Write-once files: publishing a corpus entry without ever replacing one that exists.
#pragma once

#include <string>

namespace moecheck {

/// What write_file_once did.
struct WriteOnceResult {
  std::string path;      ///< `dir/name`: the file written by this call, or the one already there
  bool created = false;  ///< true: this call published the file; false: a file of that name existed
};

/// Publishes `text` as `dir/name` (creating `dir`) unless a file of that name already exists.
/// The text is written to a uniquely named temporary file in `dir` first and then moved into
/// place with an exclusive rename (renameat2 RENAME_NOREPLACE, or link() where the file system
/// lacks it), so readers only ever see complete files, an existing file is never replaced, and
/// when several threads or processes publish the same name at once exactly one of them creates
/// it while every other learns that it exists (created = false, path = the existing file). No
/// temporary file is left behind, also when a call fails. Throws std::runtime_error naming the
/// path when the folder cannot be created or the file cannot be written.
WriteOnceResult write_file_once(const std::string& dir, const std::string& name, const std::string& text);

/// The whole content of `path` ("" when it cannot be read): for comparing an existing
/// write-once file with what a later run would have written.
std::string read_whole_file(const std::string& path);

}  // namespace moecheck
