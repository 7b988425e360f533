// Access to the Chart.js build that dashboards embed inline.
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "reports/reports.hpp"

#if defined(MOECHECK_EMBEDDED_CHARTJS)
#include "moecheck_chartjs_data.hpp"  // generated at build time from MOECHECK_CHARTJS_FILE
#endif

namespace moecheck::reports {

namespace {

/// Keeps the script from closing its own <script> element early: "</" becomes "<\/", which
/// means the same inside JavaScript strings, regular expressions and comments.
std::string make_inline_safe(std::string js) {
  std::string out;
  out.reserve(js.size());
  for (std::size_t i = 0; i < js.size(); ++i) {
    out += js[i];
    if (js[i] == '<' && i + 1 < js.size() && js[i + 1] == '/') out += '\\';
  }
  return out;
}

std::string load_chartjs() {
#if defined(MOECHECK_EMBEDDED_CHARTJS)
  return make_inline_safe(
      std::string(reinterpret_cast<const char*>(moecheck_chartjs_data), moecheck_chartjs_data_size));
#else
  std::string tried;
  const char* env = std::getenv("MOECHECK_CHARTJS");
  std::vector<std::string> candidates;
  if (env != nullptr && *env != '\0') candidates.emplace_back(env);
  candidates.emplace_back("/usr/share/javascript/chart.js/chart.umd.js");
  candidates.emplace_back("/usr/share/javascript/chart.js/chart.min.js");
  for (const std::string& path : candidates) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      tried += (tried.empty() ? "" : ", ") + path;
      continue;
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (!text.str().empty()) return make_inline_safe(text.str());
    tried += (tried.empty() ? "" : ", ") + path + " (empty)";
  }
  throw std::runtime_error(
      "Chart.js is not embedded in this build and no copy was found (tried: " + tried +
      "); install Debian's libjs-chart.js or set MOECHECK_CHARTJS to chart.umd.js / chart.min.js");
#endif
}

}  // namespace

bool chartjs_embedded() {
#if defined(MOECHECK_EMBEDDED_CHARTJS)
  return true;
#else
  return false;
#endif
}

const std::string& chartjs_source() {
  // Thread-safe one-time load; a failed load is retried on the next call.
  static std::mutex mu;
  static std::string cached;
  std::lock_guard<std::mutex> lock(mu);
  if (cached.empty()) cached = load_chartjs();
  return cached;
}

}  // namespace moecheck::reports
