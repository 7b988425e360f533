// moecheck reports: campaign result pages, benchmark dashboards and the performance
// regression gate. Pure C++17 + nlohmann::json; no LibTorch, no CUDA.
//
// Every HTML page produced here is self-contained: CSS, JavaScript (including the embedded
// Chart.js) and data are inline, and the page references no external URL, so it can be
// archived as a CI artifact and opened offline. Formats and the regression rule are
// described in reports/README.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace moecheck::reports {

// =====================================================================================
// Shared helpers
// =====================================================================================

/// Escapes `text` for HTML element content and quoted attribute values: & < > " ' become
/// entities; every other byte is copied unchanged (input is expected to be UTF-8).
std::string html_escape(std::string_view text);

/// The Chart.js build embedded into dashboards (minified UMD source, with its license
/// header intact). Resolved once: the copy embedded at build time when the build found
/// Debian's libjs-chart.js; otherwise the file named by the environment variable
/// MOECHECK_CHARTJS, read at the first call. Throws std::runtime_error naming the paths
/// tried when neither is available.
const std::string& chartjs_source();

/// True when a Chart.js copy was embedded into the library at build time.
bool chartjs_embedded();

// =====================================================================================
// Campaign report (schema "moecheck-campaign/1")
// =====================================================================================

/// Schema tag a campaign results document must carry in its "schema" field.
inline constexpr const char* kCampaignSchema = "moecheck-campaign/1";

/// Reads a campaign results file and checks that it is a JSON object whose "schema" is
/// kCampaignSchema. Throws std::runtime_error naming the file (and the field) when the
/// file cannot be read, is not valid JSON, or carries another schema.
nlohmann::json load_campaign(const std::string& path);

/// Renders a campaign results document as a self-contained HTML page: summary (target,
/// device, seed, shard, duration, cases, rows, cases/s, rows/s, failures), cases by class
/// (table with bars), coverage of the classes listed in the document's "expected_classes"
/// (written by the campaign from the case classifier: each marked covered with its count from
/// "classes", or "not covered"; no coverage verdict when the list is absent), and the failures table
/// (signature, check, message, shrunk and original shape, corpus file, copyable replay
/// command). Every string taken from the document is HTML-escaped. Missing optional
/// fields render as an em dash. Throws std::runtime_error when `campaign` is not an object
/// or its "schema" is not kCampaignSchema.
std::string render_campaign_html(const nlohmann::json& campaign);

/// CLI entry: load_campaign(input), render it and write the page to `out_html`. Progress
/// and errors go to `log`. Returns 0 when the page was written, 2 on bad input or when the
/// output cannot be written. (A campaign that found failures still returns 0: gating on
/// failures is the campaign command's job.)
int report_main_campaign(const std::string& input, const std::string& out_html,
                         std::ostream& log);

// =====================================================================================
// Benchmark results (Google Benchmark JSON)
// =====================================================================================

/// Parameters decoded from a benchmark name such as
/// "BM_Route/variant:warp_per_row/dtype:bf16/E:128/k:8/T:250000/manual_time".
/// Path segments of the form key:value fill the named fields; other key:value pairs land
/// in `extra`, bare segments after the first in `flags` (e.g. "manual_time", "1000").
struct BenchParams {
  std::string family;                        ///< first path segment, e.g. "BM_Route"
  std::string variant;                       ///< "variant:" value; empty when absent
  std::string dtype;                         ///< "dtype:" value; empty when absent
  std::optional<std::int64_t> E;             ///< "E:" value (number of experts)
  std::optional<std::int64_t> k;             ///< "k:" value (experts per token)
  std::optional<std::int64_t> T;             ///< "T:" value (tokens)
  std::map<std::string, std::string> extra;  ///< other key:value segments
  std::vector<std::string> flags;            ///< bare segments after the family

  /// True when dtype, E, k and T are all known, i.e. the benchmark belongs in the
  /// time-vs-T charts.
  bool plottable() const;
  /// Chart group key "dtype=<dtype> E=<E> k=<k>" ("?" for unknown parts).
  std::string group_key() const;
};

/// Decodes a benchmark name; never throws. A segment "key:value" whose value does not
/// parse as an integer for E, k or T is kept in `extra` instead.
BenchParams parse_bench_name(const std::string& name);

/// One benchmark of one run, reduced over its repetitions. Times are nanoseconds per
/// iteration (converted from the file's "time_unit"); the time is "real_time", which is
/// the manually measured time for benchmarks registered with UseManualTime().
struct BenchResult {
  std::string name;                 ///< run name (aggregate suffix stripped)
  BenchParams params;               ///< parse_bench_name(name)
  std::vector<double> times_ns;     ///< per-repetition times, file order (may be empty)
  double median_ns = 0.0;           ///< "median" aggregate, else median of times_ns,
                                    ///< else "mean" aggregate
  double cv = 0.0;                  ///< coefficient of variation (fraction, 0.05 = 5%):
                                    ///< "cv" aggregate, else sample stddev/mean of times_ns
  bool cv_known = false;            ///< false when neither a cv aggregate nor >= 2
                                    ///< repetitions exist (cv is then 0)
  std::map<std::string, double> counters;  ///< user counters (e.g. bytes_per_second,
                                           ///< copy_fraction): median aggregate, else
                                           ///< median over repetitions
  std::string label;                ///< benchmark label, if any
  std::string error;                ///< non-empty when the benchmark reported an error or
                                    ///< skip; its times are then meaningless

  /// Bytes per second from the "bytes_per_second" counter, if present.
  std::optional<double> bytes_per_second() const;
  /// Fraction of the copy ceiling: the "copy_fraction" counter if present, else
  /// bytes_per_second / (ceiling_gbs * 1e9) when both are known.
  std::optional<double> copy_fraction(std::optional<double> ceiling_gbs) const;
};

/// Run-level context from the file's "context" object.
struct RunContext {
  std::string date;                           ///< "date" (ISO 8601), may be empty
  std::string host_name;                      ///< "host_name"
  std::string executable;                     ///< "executable"
  std::string device;                         ///< "moecheck_device"
  std::string driver;                         ///< "moecheck_driver"
  std::string toolkit;                        ///< "moecheck_toolkit"
  std::string commit;                         ///< "moecheck_commit"
  std::optional<double> copy_ceiling_gbs;     ///< "moecheck_copy_ceiling_gbs" (GB/s,
                                              ///< 1e9 bytes/s), string or number
  std::map<std::string, std::string> other;   ///< remaining scalar context keys
};

/// One benchmark results file.
struct BenchRun {
  std::string source;                 ///< path (or caller-chosen name) it was read from
  RunContext context;                 ///< run-level context
  std::vector<BenchResult> results;   ///< one per run name, in order of first appearance

  /// The result named `name`, or nullptr.
  const BenchResult* find(const std::string& name) const;
  /// Short label for charts: the commit when known, else the file name without
  /// directory and ".json".
  std::string label() const;
};

/// Reads a Google Benchmark JSON file (--benchmark_format=json or --benchmark_out).
/// Throws std::runtime_error naming the file and the offending field when the file is
/// missing, unreadable, not JSON, lacks "benchmarks", or an entry lacks a usable "name",
/// "real_time" or has an unknown "time_unit".
BenchRun load_bench_run(const std::string& path);

/// As load_bench_run, from an already parsed document; `source` names it in errors.
BenchRun parse_bench_run(const nlohmann::json& doc, const std::string& source);

/// Copy of a Google Benchmark JSON document with every time scaled by `factor`:
/// real_time and cpu_time of repetitions and of the mean/median/stddev aggregates are
/// multiplied, "*_per_second" counters and copy_fraction divided; cv aggregates (unitless)
/// are kept. Used to synthesize slowdowns for testing the gate. Throws
/// std::invalid_argument when factor is not finite and positive.
nlohmann::json scale_bench_times(const nlohmann::json& doc, double factor);

// =====================================================================================
// Regression gate
// =====================================================================================

/// Knobs of the noise-aware comparison (see compare_runs).
struct CompareOptions {
  double min_threshold = 0.05;  ///< smallest relative change that counts (0.05 = 5%)
  double noise_factor = 3.0;    ///< threshold in units of the benchmark's cv
  /// Smallest absolute change of the median that counts, in ns. Launch-latency-bound
  /// benchmarks (3.5-5 us per launch) moved by up to 1.13 us between two unchanged runs on
  /// an H200 (reports/baselines/h200-*), far beyond their within-run cv; 2 us keeps them
  /// quiet while a 20% slowdown of every benchmark >= 10 us is still flagged.
  double min_abs_ns = 2000.0;
  /// Benchmark families (name prefixes of the first path segment) that are reference
  /// points, not code under test: compared and shown, never gating (the LibTorch composite
  /// baseline and the copy ceiling, whose host-side dispatch noise is large) and the campaign
  /// throughput (BM_Campaign: host threads and host clock, tracked on the dashboard).
  std::vector<std::string> ungated_families{"BM_Composite", "BM_Copy", "BM_Campaign"};
};

/// Outcome for one benchmark present in both runs.
enum class Verdict {
  unchanged,    ///< within the noise threshold
  regression,   ///< current slower than baseline beyond the threshold
  improvement,  ///< current faster than baseline beyond the threshold
  invalid,      ///< not comparable (error reported, non-positive or non-finite median)
};

/// Lower-case name of a verdict ("unchanged", "regression", ...).
const char* verdict_name(Verdict v);

/// One compared benchmark.
struct BenchDelta {
  std::string name;         ///< benchmark run name
  BenchParams params;       ///< decoded name
  double baseline_ns = 0;   ///< baseline median, ns
  double current_ns = 0;    ///< current median, ns
  double change = 0;        ///< current/baseline - 1 (0.2 = 20% slower); 0 when invalid
  double baseline_cv = 0;   ///< baseline cv (fraction)
  double current_cv = 0;    ///< current cv (fraction)
  bool noise_known = false; ///< at least one side had a cv
  double threshold = 0;     ///< max(min_threshold, noise_factor * max(cvs))
  Verdict verdict = Verdict::unchanged;
  bool gated = true;        ///< false for CompareOptions::ungated_families
  std::string note;         ///< reason for `invalid`, else empty
};

/// Result of compare_runs.
struct Comparison {
  CompareOptions options;                  ///< options used
  std::string baseline_label;              ///< BenchRun::label() of the baseline
  std::string current_label;               ///< BenchRun::label() of the current run
  std::vector<BenchDelta> deltas;          ///< benchmarks in both runs, current-run order
  std::vector<std::string> only_in_baseline;  ///< missing from the current run
  std::vector<std::string> only_in_current;   ///< new in the current run
  std::vector<std::string> warnings;       ///< e.g. runs on different devices

  /// True when at least one gated benchmark is a regression: the gate fails.
  bool has_regression() const { return gated_regressions() > 0; }
  /// Number of regressions among gated benchmarks (the ones that fail the gate).
  std::size_t gated_regressions() const;
  /// Number of deltas with verdict `v`.
  std::size_t count(Verdict v) const;
};

/// The relative-change threshold for one benchmark:
/// max(min_threshold, noise_factor * max(cv_baseline, cv_current)).
double regression_threshold(double cv_baseline, double cv_current, const CompareOptions& options);

/// Compares two runs benchmark by benchmark (matched by run name). With
/// thr = regression_threshold(cv_base, cv_cur): regression iff
/// current_median > baseline_median * (1 + thr) and current_median - baseline_median >
/// min_abs_ns; improvement iff baseline_median > current_median * (1 + thr) and
/// baseline_median - current_median > min_abs_ns (the same rule the other way);
/// otherwise unchanged. Benchmarks of ungated_families get verdicts but never fail the gate. Benchmarks that reported an error, or whose medians are not
/// finite and positive, are `invalid` and never fail the gate. Benchmarks present on
/// only one side are listed, not judged. Throws std::invalid_argument for negative or
/// non-finite options.
Comparison compare_runs(const BenchRun& baseline, const BenchRun& current,
                        const CompareOptions& options = {});

// =====================================================================================
// Dashboard
// =====================================================================================

/// Renders the performance dashboard: runs table (device, driver, toolkit, commit, copy
/// ceiling of each run), the comparison table when `cmp` is non-null (regressions red,
/// improvements green, missing benchmarks listed), then one section per (dtype, E, k)
/// group of the last run holding a canvas with a log-log chart of time vs T per variant
/// (with `cmp`, the baseline medians are drawn dashed), a canvas with throughput vs T
/// (GB/s, and fraction of the copy ceiling on the right axis) when the run reports
/// bytes_per_second, and a history canvas (x = run, y = median time of each benchmark of
/// the group) when there are at least two runs. Benchmarks whose names lack dtype, E, k or
/// T are listed in a table. `history` is ordered oldest first and must not be empty
/// (std::invalid_argument otherwise). Chart.js is embedded inline (chartjs_source(); its
/// exceptions propagate).
std::string render_dashboard_html(const std::vector<BenchRun>& history, const Comparison* cmp);

/// CLI entry for `moecheck report [--baseline OLD.json] NEW.json... -o dash.html`.
/// `inputs` are benchmark files, oldest first; the last is the current run. When
/// `baseline` is non-empty the current run is compared against it (default
/// CompareOptions) and the verdict is printed to `log`; the baseline is prepended to the
/// history unless it is one of `inputs`. When `out_html` is non-empty the dashboard is
/// written there. Returns 0 when no regression was found, 1 on a regression, 2 on bad input
/// (no inputs, unreadable or malformed file) or when the page cannot be written.
int report_main_bench(const std::vector<std::string>& inputs, const std::string& baseline,
                      const std::string& out_html, std::ostream& log);

}  // namespace moecheck::reports
