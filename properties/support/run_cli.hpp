// Runs the moecheck executable as a user would (test code only, header-only).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace moecheck_test {

/// Exit status and everything the command printed.
struct CliRun {
  int rc = -1;      ///< exit status (128 + signal when killed)
  std::string out;  ///< stdout and stderr together
};

/// Runs `exe args` through the shell (arguments must be shell-safe) and collects its output.
inline CliRun run_cli(const std::string& exe, const std::string& args) {
  CliRun r;
  const std::string cmd = exe + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace moecheck_test
