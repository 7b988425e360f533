// Scratch folders and folder listings for the tests (header-only, test code only).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

namespace moecheck_test {

/// `<temp>/moecheck_<name>_<pid>`, removed first if it exists (not created): a fresh path per
/// test name and process, so parallel ctest runs do not share folders.
inline std::filesystem::path temp_dir(const std::string& name) {
  std::filesystem::path d =
      std::filesystem::temp_directory_path() / ("moecheck_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d;
}

/// Every name in `dir` (files, temporaries, anything), in directory order.
inline std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

}  // namespace moecheck_test
