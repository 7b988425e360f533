// Hostile moecheck plugin for the harness's own reliability tests (test-only, never shipped or
// installed). It routes correctly (host, f32/f16/bf16, gemma4 / softmax_topk / softmax_topk_raw)
// and then misbehaves as the environment variable MOECHECK_HOSTILE says, read on every call:
//   hang         T > 5: loops forever (after appending "<pid> <T>" to $MOECHECK_HOSTILE_PIDFILE)
//   oob-ids      writes 16 int32 past the end of `ids`
//   oob-weights  writes 1 float past the end of `weights`
//   exit         T > 5: calls exit(0)
//   quick-exit   T > 5: calls quick_exit(0)
//   segv         T > 5: dies with SIGSEGV
//   (unset/other) behaves
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/moecheck_plugin.h"
#include "kernels/plugins/plugin_util.hpp"

namespace {

using namespace moecheck_plugin_util;

std::string mode() {
  const char* m = std::getenv("MOECHECK_HOSTILE");
  return m ? m : "";
}

void record_pid(std::int64_t T) {
  const char* path = std::getenv("MOECHECK_HOSTILE_PIDFILE");
  if (!path || !*path) return;
  const int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return;
  const std::string line = std::to_string(getpid()) + " " + std::to_string(T) + "\n";
  if (write(fd, line.data(), line.size()) < 0) {
    // nothing to do: the pid file is a test aid only
  }
  close(fd);
}

int route(const void* gating, std::int64_t row_stride, std::int64_t col_stride, std::int32_t dtype,
          std::int64_t T, std::int32_t E, std::int32_t k, std::int32_t family, const float* scale,
          float* weights, std::int32_t* ids, std::int32_t device, void* /*stream*/) {
  g_error.clear();
  if (const int s = check_route_args(row_stride, col_stride, dtype, T, E, k, family, device, MOECHECK_DEVICE_HOST,
                                     "hostile plugin runs on the host only", &g_error)) {
    return s;
  }
  if (T == 0) return MOECHECK_PLUGIN_OK;
  if (!gating || !weights || !ids) return fail(MOECHECK_PLUGIN_INVALID_ARGUMENT, "null pointer");

  const std::string m = mode();
  if (T > 5) {
    if (m == "hang") {
      record_pid(T);
      volatile std::uint64_t spin = 0;
      for (;;) spin = spin + 1;
    }
    if (m == "exit") std::exit(0);
    if (m == "quick-exit") std::quick_exit(0);
    if (m == "segv") raise(SIGSEGV);
  }
  route_strict_host(gating, row_stride, col_stride, dtype, T, E, k, family, scale, weights, ids);
  const std::int64_t n = T * k;
  if (m == "oob-ids") {
    for (std::int64_t i = 0; i < 16; ++i) ids[n + i] = static_cast<std::int32_t>(i % E);
  } else if (m == "oob-weights") {
    weights[n] = 0.5f;
  }
  return MOECHECK_PLUGIN_OK;
}

constexpr moecheck_plugin_desc_v1 kDesc = softmax_desc_v1(MOECHECK_PLUGIN_ABI_VERSION, sizeof(moecheck_plugin_desc_v1),
                                                          "hostile", "0.1", MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_HOST),
                                                          0, 0, &route);

}  // namespace

extern "C" MOECHECK_PLUGIN_EXPORT const moecheck_plugin_desc_v1* moecheck_plugin_v1(void) { return &kDesc; }
