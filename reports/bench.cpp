// Google Benchmark JSON loading, benchmark name decoding, the noise-aware comparison and
// the synthetic time scaling used to exercise the gate.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "reports/reports.hpp"
#include "reports/util.hpp"

namespace moecheck::reports {

namespace {

using nlohmann::json;

/// Suffixes Google Benchmark appends to the run name of an aggregate entry.
constexpr const char* kAggregateNames[] = {"mean", "median", "stddev", "cv"};

bool parse_int64(const std::string& s, std::int64_t& out) {
  if (s.empty()) return false;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(first, last, out);
  return ec == std::errc() && ptr == last;
}

/// Strict decimal/floating parse of a whole string.
bool parse_double(const std::string& s, double& out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE) return false;
  out = v;
  return true;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Nanoseconds per `unit`, or 0 for an unknown unit.
double ns_per_unit(const std::string& unit) {
  if (unit == "ns") return 1.0;
  if (unit == "us") return 1e3;
  if (unit == "ms") return 1e6;
  if (unit == "s") return 1e9;
  return 0.0;
}

/// Keys of a benchmark entry that are not user counters.
bool is_reserved_key(const std::string& key) {
  static const char* const kReserved[] = {
      "name",           "family_index",  "per_family_instance_index",
      "run_name",       "run_type",      "repetitions",
      "repetition_index", "threads",     "iterations",
      "real_time",      "cpu_time",      "time_unit",
      "aggregate_name", "aggregate_unit", "error_occurred",
      "error_message",  "skipped",       "skip_message",
      "label",          "big_o",         "rms",
      "cpu_coefficient", "real_coefficient", "complexity_n"};
  for (const char* r : kReserved)
    if (key == r) return true;
  return false;
}

std::string scalar_to_string(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) return v.dump();
  return {};
}

/// Everything read for one run name before reduction.
struct Accumulator {
  std::string name;
  std::vector<double> times_ns;
  std::map<std::string, std::vector<double>> rep_counters;
  std::map<std::string, double> aggregates;  // aggregate name -> real_time (ns or fraction)
  std::map<std::string, double> median_counters;
  std::string label;
  std::string error;
};

/// Aggregate name of an entry ("" for a repetition): "aggregate_name" when run_type is
/// "aggregate"; for files without run_type, the suffix of "name" after the run name.
std::string aggregate_name_of(const json& b, const std::string& name) {
  const auto rt = b.find("run_type");
  if (rt != b.end() && rt->is_string()) {
    if (rt->get<std::string>() != "aggregate") return {};
    const auto an = b.find("aggregate_name");
    if (an != b.end() && an->is_string()) return an->get<std::string>();
    return "?";
  }
  for (const char* a : kAggregateNames)
    if (ends_with(name, std::string("_") + a)) return a;
  return {};
}

std::string run_name_of(const json& b, const std::string& name, const std::string& agg) {
  const auto rn = b.find("run_name");
  if (rn != b.end() && rn->is_string() && !rn->get<std::string>().empty())
    return rn->get<std::string>();
  if (!agg.empty() && ends_with(name, "_" + agg)) return name.substr(0, name.size() - agg.size() - 1);
  return name;
}

/// Google Benchmark writes non-finite doubles as the bare tokens NaN, -NaN, Infinity and
/// -Infinity (e.g. the cv aggregate of a counter that is constant across repetitions),
/// which is not JSON. Outside string literals they are replaced by null, so such values
/// read as absent.
std::string replace_nonfinite_literals(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) out += text[++i];
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') {
      in_string = true;
      out += ch;
      continue;
    }
    const std::size_t j = (ch == '-' || ch == '+') ? i + 1 : i;
    bool replaced = false;
    for (const char* token : {"NaN", "Infinity"}) {
      const std::size_t n = std::strlen(token);
      if (text.compare(j, n, token) == 0) {
        out += "null";
        i = j + n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += ch;
  }
  return out;
}

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("benchmark file '" + source + "': " + what);
}

}  // namespace

// ---- BenchParams ----------------------------------------------------------------------

bool BenchParams::plottable() const {
  return !dtype.empty() && E.has_value() && k.has_value() && T.has_value();
}

std::string BenchParams::group_key() const {
  std::string key = "dtype=" + (dtype.empty() ? std::string("?") : dtype);
  key += " E=" + (E ? std::to_string(*E) : std::string("?"));
  key += " k=" + (k ? std::to_string(*k) : std::string("?"));
  return key;
}

BenchParams parse_bench_name(const std::string& name) {
  BenchParams p;
  std::size_t start = 0;
  bool first = true;
  while (start <= name.size()) {
    std::size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    const std::string seg = name.substr(start, end - start);
    start = end + 1;
    if (first) {
      p.family = seg;
      first = false;
      continue;
    }
    if (seg.empty()) continue;
    const std::size_t colon = seg.find(':');
    if (colon == std::string::npos || colon == 0) {
      p.flags.push_back(seg);
      continue;
    }
    const std::string key = seg.substr(0, colon);
    const std::string value = seg.substr(colon + 1);
    std::int64_t iv = 0;
    if (key == "variant") {
      p.variant = value;
    } else if (key == "dtype") {
      p.dtype = value;
    } else if ((key == "E" || key == "k" || key == "T") && parse_int64(value, iv)) {
      (key == "E" ? p.E : key == "k" ? p.k : p.T) = iv;
    } else {
      p.extra[key] = value;
    }
  }
  return p;
}

// ---- BenchResult / BenchRun -------------------------------------------------------------

std::optional<double> BenchResult::bytes_per_second() const {
  const auto it = counters.find("bytes_per_second");
  if (it == counters.end() || !std::isfinite(it->second)) return std::nullopt;
  return it->second;
}

std::optional<double> BenchResult::copy_fraction(std::optional<double> ceiling_gbs) const {
  const auto it = counters.find("copy_fraction");
  if (it != counters.end() && std::isfinite(it->second)) return it->second;
  const auto bps = bytes_per_second();
  if (bps && ceiling_gbs && *ceiling_gbs > 0) return *bps / (*ceiling_gbs * 1e9);
  return std::nullopt;
}

const BenchResult* BenchRun::find(const std::string& name) const {
  for (const BenchResult& r : results)
    if (r.name == name) return &r;
  return nullptr;
}

std::string BenchRun::label() const {
  if (!context.commit.empty()) return context.commit;
  std::string base = source;
  const std::size_t slash = base.find_last_of('/');
  if (slash != std::string::npos) base = base.substr(slash + 1);
  if (ends_with(base, ".json")) base.resize(base.size() - 5);
  return base.empty() ? std::string("run") : base;
}

BenchRun load_bench_run(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail(path, "read error");
  json doc;
  try {
    doc = json::parse(replace_nonfinite_literals(text.str()));
  } catch (const json::parse_error& e) {
    fail(path, std::string("not valid JSON: ") + e.what());
  }
  return parse_bench_run(doc, path);
}

BenchRun parse_bench_run(const json& doc, const std::string& source) {
  if (!doc.is_object()) fail(source, "top level is not a JSON object");
  BenchRun run;
  run.source = source;

  // ---- context
  const auto ctx = doc.find("context");
  if (ctx != doc.end()) {
    if (!ctx->is_object()) fail(source, "field \"context\" is not an object");
    for (const auto& [key, value] : ctx->items()) {
      const std::string s = scalar_to_string(value);
      if (key == "date") run.context.date = s;
      else if (key == "host_name") run.context.host_name = s;
      else if (key == "executable") run.context.executable = s;
      else if (key == "moecheck_device") run.context.device = s;
      else if (key == "moecheck_driver") run.context.driver = s;
      else if (key == "moecheck_toolkit") run.context.toolkit = s;
      else if (key == "moecheck_commit") run.context.commit = s;
      else if (key == "moecheck_copy_ceiling_gbs") {
        double v = 0;
        if (value.is_number()) {
          v = value.get<double>();
        } else if (value.is_string() && s.empty()) {
          continue;  // empty: ceiling unknown
        } else if (!value.is_string() || !parse_double(s, v)) {
          fail(source, "field \"context.moecheck_copy_ceiling_gbs\" is not a number");
        }
        if (!std::isfinite(v) || v <= 0)
          fail(source, "field \"context.moecheck_copy_ceiling_gbs\" must be positive");
        run.context.copy_ceiling_gbs = v;
      } else if (value.is_primitive() && !value.is_null()) {
        run.context.other[key] = s;
      }
    }
  }

  // ---- benchmarks
  const auto benches = doc.find("benchmarks");
  if (benches == doc.end()) fail(source, "field \"benchmarks\" is missing");
  if (!benches->is_array()) fail(source, "field \"benchmarks\" is not an array");

  std::vector<Accumulator> acc;
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < benches->size(); ++i) {
    const json& b = (*benches)[i];
    const std::string where = "benchmarks[" + std::to_string(i) + "]";
    if (!b.is_object()) fail(source, where + " is not an object");
    const auto nm = b.find("name");
    if (nm == b.end() || !nm->is_string() || nm->get<std::string>().empty())
      fail(source, "field \"" + where + ".name\" is missing or not a non-empty string");
    const std::string name = nm->get<std::string>();
    const std::string agg = aggregate_name_of(b, name);
    const std::string run_name = run_name_of(b, name, agg);
    const std::string at = where + " (\"" + name + "\")";

    auto [it, inserted] = index.emplace(run_name, acc.size());
    if (inserted) {
      acc.emplace_back();
      acc.back().name = run_name;
    }
    Accumulator& a = acc[it->second];

    // Errors and skips: the entry carries no meaningful time.
    const auto err = b.find("error_occurred");
    const auto skipped = b.find("skipped");
    const bool errored = err != b.end() && err->is_boolean() && err->get<bool>();
    const bool was_skipped = skipped != b.end() &&
                             ((skipped->is_boolean() && skipped->get<bool>()) ||
                              (skipped->is_number() && skipped->get<double>() != 0));
    if (errored || was_skipped) {
      std::string msg;
      for (const char* k : {"error_message", "skip_message"}) {
        const auto m = b.find(k);
        if (m != b.end() && m->is_string() && !m->get<std::string>().empty()) msg = m->get<std::string>();
      }
      a.error = (errored ? "error" : "skipped") + (msg.empty() ? std::string() : ": " + msg);
      continue;
    }
    const bool known_agg =
        agg.empty() || std::find_if(std::begin(kAggregateNames), std::end(kAggregateNames),
                                    [&](const char* n) { return agg == n; }) !=
                           std::end(kAggregateNames);
    if (!known_agg) continue;  // BigO, RMS and user-defined statistics are not used

    const auto rt = b.find("real_time");
    if (!agg.empty() && rt != b.end() && rt->is_null()) continue;  // non-finite statistic
    if (rt == b.end() || !rt->is_number())
      fail(source, "field \"real_time\" of " + at + " is missing or not a number");
    std::string unit = "ns";
    const auto tu = b.find("time_unit");
    if (tu != b.end()) {
      if (!tu->is_string()) fail(source, "field \"time_unit\" of " + at + " is not a string");
      unit = tu->get<std::string>();
    }
    const double scale = ns_per_unit(unit);
    if (scale == 0.0)
      fail(source, "field \"time_unit\" of " + at + " has unknown unit \"" + unit +
                       "\" (expected ns, us, ms or s)");
    const double t = rt->get<double>();
    const auto lb = b.find("label");
    if (lb != b.end() && lb->is_string() && a.label.empty()) a.label = lb->get<std::string>();

    if (agg.empty()) {
      a.times_ns.push_back(t * scale);
      for (const auto& [key, value] : b.items())
        if (value.is_number() && !is_reserved_key(key)) a.rep_counters[key].push_back(value.get<double>());
    } else {
      a.aggregates[agg] = agg == "cv" ? t : t * scale;  // cv is a unitless fraction
      if (agg == "median")
        for (const auto& [key, value] : b.items())
          if (value.is_number() && !is_reserved_key(key)) a.median_counters[key] = value.get<double>();
    }
  }

  // ---- reduce over repetitions
  for (Accumulator& a : acc) {
    BenchResult r;
    r.name = a.name;
    r.params = parse_bench_name(a.name);
    r.times_ns = a.times_ns;
    r.label = a.label;
    r.error = a.error;
    const auto agg = [&](const char* n) -> std::optional<double> {
      const auto it = a.aggregates.find(n);
      if (it == a.aggregates.end()) return std::nullopt;
      return it->second;
    };
    if (auto m = agg("median")) r.median_ns = *m;
    else if (!a.times_ns.empty()) r.median_ns = median_of(a.times_ns);
    else if (auto mean = agg("mean")) r.median_ns = *mean;
    else {
      r.median_ns = std::nan("");
      if (r.error.empty()) r.error = "no repetitions and no median or mean aggregate";
    }
    if (auto cv = agg("cv")) {
      r.cv = *cv;
      r.cv_known = true;
    } else if (a.times_ns.size() >= 2) {
      double mean = 0;
      for (double t : a.times_ns) mean += t;
      mean /= static_cast<double>(a.times_ns.size());
      double ss = 0;
      for (double t : a.times_ns) ss += (t - mean) * (t - mean);
      const double sd = std::sqrt(ss / static_cast<double>(a.times_ns.size() - 1));
      if (mean > 0) {
        r.cv = sd / mean;
        r.cv_known = true;
      }
    } else if (auto sd = agg("stddev")) {
      const auto mean = agg("mean");
      if (mean && *mean > 0) {
        r.cv = *sd / *mean;
        r.cv_known = true;
      }
    }
    if (!std::isfinite(r.cv) || r.cv < 0) {
      r.cv = 0;
      r.cv_known = false;
    }
    if (!a.median_counters.empty()) {
      r.counters = a.median_counters;
    } else {
      for (const auto& [key, values] : a.rep_counters) r.counters[key] = median_of(values);
    }
    run.results.push_back(std::move(r));
  }
  return run;
}

json scale_bench_times(const json& doc, double factor) {
  if (!std::isfinite(factor) || factor <= 0)
    throw std::invalid_argument("scale_bench_times: factor must be finite and positive");
  json out = doc;
  const auto benches = out.find("benchmarks");
  if (benches == out.end() || !benches->is_array()) return out;
  for (json& b : *benches) {
    if (!b.is_object()) continue;
    const std::string name = b.value("name", std::string());
    if (aggregate_name_of(b, name) == "cv") continue;  // unitless
    for (const char* key : {"real_time", "cpu_time"}) {
      auto it = b.find(key);
      if (it != b.end() && it->is_number()) *it = it->get<double>() * factor;
    }
    for (auto& [key, value] : b.items()) {
      if (!value.is_number() || is_reserved_key(key)) continue;
      if (ends_with(key, "_per_second") || key == "copy_fraction")
        value = value.get<double>() / factor;
    }
  }
  return out;
}

// ---- comparison -------------------------------------------------------------------------

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::unchanged: return "unchanged";
    case Verdict::regression: return "regression";
    case Verdict::improvement: return "improvement";
    case Verdict::invalid: return "invalid";
  }
  return "?";
}

std::size_t Comparison::gated_regressions() const {
  return static_cast<std::size_t>(std::count_if(deltas.begin(), deltas.end(), [](const BenchDelta& d) {
    return d.gated && d.verdict == Verdict::regression;
  }));
}

std::size_t Comparison::count(Verdict v) const {
  return static_cast<std::size_t>(
      std::count_if(deltas.begin(), deltas.end(), [v](const BenchDelta& d) { return d.verdict == v; }));
}

double regression_threshold(double cv_baseline, double cv_current, const CompareOptions& options) {
  const double cv = std::max(std::isfinite(cv_baseline) ? cv_baseline : 0.0,
                             std::isfinite(cv_current) ? cv_current : 0.0);
  return std::max(options.min_threshold, options.noise_factor * cv);
}

Comparison compare_runs(const BenchRun& baseline, const BenchRun& current,
                        const CompareOptions& options) {
  if (!std::isfinite(options.min_threshold) || options.min_threshold < 0 ||
      !std::isfinite(options.noise_factor) || options.noise_factor < 0 ||
      !std::isfinite(options.min_abs_ns) || options.min_abs_ns < 0)
    throw std::invalid_argument(
        "compare_runs: min_threshold, noise_factor and min_abs_ns must be finite and >= 0");
  Comparison cmp;
  cmp.options = options;
  cmp.baseline_label = baseline.label();
  cmp.current_label = current.label();

  const auto differs = [&](const char* what, const std::string& a, const std::string& b) {
    if (!a.empty() && !b.empty() && a != b)
      cmp.warnings.push_back(std::string(what) + " differs: baseline \"" + a + "\", current \"" + b + "\"");
  };
  differs("device", baseline.context.device, current.context.device);
  differs("driver", baseline.context.driver, current.context.driver);
  differs("toolkit", baseline.context.toolkit, current.context.toolkit);

  for (const BenchResult& c : current.results) {
    const BenchResult* b = baseline.find(c.name);
    if (b == nullptr) {
      cmp.only_in_current.push_back(c.name);
      continue;
    }
    BenchDelta d;
    d.name = c.name;
    d.params = c.params;
    for (const std::string& fam : options.ungated_families)
      if (!fam.empty() && c.params.family.rfind(fam, 0) == 0) d.gated = false;
    d.baseline_ns = b->median_ns;
    d.current_ns = c.median_ns;
    d.baseline_cv = b->cv;
    d.current_cv = c.cv;
    d.noise_known = b->cv_known || c.cv_known;
    d.threshold = regression_threshold(b->cv, c.cv, options);
    const auto usable = [](double t) { return std::isfinite(t) && t > 0; };
    if (!b->error.empty()) {
      d.verdict = Verdict::invalid;
      d.note = "baseline: " + b->error;
    } else if (!c.error.empty()) {
      d.verdict = Verdict::invalid;
      d.note = "current: " + c.error;
    } else if (!usable(b->median_ns) || !usable(c.median_ns)) {
      d.verdict = Verdict::invalid;
      d.note = "median time not positive and finite";
    } else {
      d.change = c.median_ns / b->median_ns - 1.0;
      const double delta = c.median_ns - b->median_ns;
      if (c.median_ns > b->median_ns * (1.0 + d.threshold) && delta > options.min_abs_ns)
        d.verdict = Verdict::regression;
      else if (b->median_ns > c.median_ns * (1.0 + d.threshold) && -delta > options.min_abs_ns)
        d.verdict = Verdict::improvement;
      else
        d.verdict = Verdict::unchanged;
    }
    cmp.deltas.push_back(std::move(d));
  }
  for (const BenchResult& b : baseline.results)
    if (current.find(b.name) == nullptr) cmp.only_in_baseline.push_back(b.name);
  return cmp;
}

}  // namespace moecheck::reports
