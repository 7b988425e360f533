// Benchmark dashboard page and the `moecheck report` entry point for benchmark files.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

#include "reports/reports.hpp"
#include "reports/util.hpp"

namespace moecheck::reports {

using nlohmann::json;
using namespace detail;

namespace {

constexpr const char* kDash = "\xE2\x80\x94";

/// Colour-blind-friendly palette (Okabe-Ito, then Tableau extras); series colours are
/// assigned in sorted label order so a variant keeps its colour across groups.
constexpr const char* kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
                                    "#56B4E9", "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF",
                                    "#1F3A93", "#9467BD"};
constexpr const char* kPointStyles[] = {"circle", "triangle", "rect", "rectRot", "star", "crossRot"};

using GroupId = std::tuple<std::string, std::int64_t, std::int64_t>;  // dtype, E, k

GroupId group_of(const BenchParams& p) { return {p.dtype, p.E.value_or(0), p.k.value_or(0)}; }

/// Series name inside a group: variant (or family when there is none) plus any unknown
/// key:value segments, so benchmarks differing only in such a segment stay apart.
std::string series_label(const BenchParams& p, bool with_family) {
  std::string s = p.variant.empty() ? p.family : p.variant;
  if (with_family && !p.variant.empty()) s = p.family + " " + s;
  for (const auto& [key, value] : p.extra) s += " " + key + ":" + value;
  return s;
}

struct Point {
  double x = 0, y = 0;
  std::string name;
  bool regression = false;
  std::optional<double> fraction;
};

struct HistRow {
  std::string series;
  std::int64_t T = 0;
  std::vector<std::optional<double>> values;  // one per run
};

struct Group {
  std::string key;    // BenchParams::group_key()
  std::string title;
  std::map<std::string, std::vector<Point>> time_current;
  std::map<std::string, std::vector<Point>> time_baseline;
  std::map<std::string, std::vector<Point>> tput;
  std::map<std::string, HistRow> hist;  // by benchmark name
  std::size_t skipped_nonpositive_T = 0;
};

json points_json(std::vector<Point> pts, bool with_fraction) {
  std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
  json arr = json::array();
  for (const Point& p : pts) {
    json o = {{"x", p.x}, {"y", p.y}, {"n", p.name}};
    if (p.regression) o["r"] = 1;
    if (with_fraction) o["f"] = p.fraction ? json(*p.fraction) : json();
    arr.push_back(std::move(o));
  }
  return arr;
}

std::string verdict_cell(const BenchDelta& d) {
  switch (d.verdict) {
    case Verdict::regression: return d.gated ? "<b>REGRESSION</b>" : "slower (not gated)";
    case Verdict::improvement: return "improvement";
    case Verdict::invalid: return "invalid: " + esc(d.note);
    case Verdict::unchanged: return "unchanged";
  }
  return kDash;
}

int verdict_rank(Verdict v) {
  switch (v) {
    case Verdict::regression: return 0;
    case Verdict::invalid: return 1;
    case Verdict::improvement: return 2;
    case Verdict::unchanged: return 3;
  }
  return 4;
}

constexpr const char* kDashboardCss = R"CSS(
.group { border: 1px solid var(--line); border-radius: 8px; padding: 4px 14px 12px; margin: 14px 0; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
.chartbox { position: relative; height: 340px; }
.chartbox.wide { height: 300px; margin-top: 12px; }
tr.regression td { background: var(--red-bg); color: var(--red); }
tr.improvement td { background: var(--green-bg); color: var(--green); }
tr.invalid td { background: var(--amber-bg); color: var(--amber); }
.runs td:nth-child(4) { white-space: nowrap; }
td.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
          font-size: 12px; overflow-wrap: anywhere; max-width: 560px; }
#chart-error { display: none; }
button.histmode { font-size: 12px; padding: 2px 10px; margin-top: 4px; cursor: pointer; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
ul.names { font-family: ui-monospace, monospace; font-size: 12px; margin: 4px 0 10px; }
)CSS";

/// Chart construction from the embedded data; Chart.js 3.x and 4.x API.
constexpr const char* kDashboardJs = R"JS(
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('moecheck-data').textContent);
  if (typeof Chart === 'undefined') {
    document.getElementById('chart-error').style.display = 'block';
    return;
  }
  Chart.defaults.animation = false;
  Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
  Chart.defaults.font.size = 11;

  function fmtTime(ns) {
    var a = Math.abs(ns), v, u;
    if (a < 1e3) { v = ns; u = ' ns'; } else if (a < 1e6) { v = ns / 1e3; u = ' \u00b5s'; }
    else if (a < 1e9) { v = ns / 1e6; u = ' ms'; } else { v = ns / 1e9; u = ' s'; }
    return (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)) + u;
  }
  function fmtCount(v) {
    if (v >= 1e6) return +(v / 1e6).toPrecision(3) + 'M';
    if (v >= 1e3) return +(v / 1e3).toPrecision(3) + 'k';
    return '' + v;
  }
  // Log axes: label the 1-2-5 steps and leave the other grid lines unlabelled; when fewer
  // than two such steps are in range, label the ends of the axis too.
  function niceLog(v) {
    var e = Math.floor(Math.log10(v));
    var m = Math.round(v / Math.pow(10, e) * 1000) / 1000;
    return m === 1 || m === 2 || m === 5;
  }
  function logTick(fmt) {
    return function (value, index, ticks) {
      if (niceLog(value)) return fmt(value);
      var nice = ticks.filter(function (t) { return niceLog(t.value); }).length;
      if (nice < 2 && (index === 0 || index === ticks.length - 1)) return fmt(value);
      return '';
    };
  }
  // Logarithmic bounds with some air around the data, so no point sits on the frame.
  function logBounds(values, pad) {
    var v = values.filter(function (x) { return x > 0 && isFinite(x); });
    if (!v.length) return {};
    return { min: Math.min.apply(null, v) / pad, max: Math.max.apply(null, v) * pad };
  }
  function pointValues(series, key) {
    var out = [];
    series.forEach(function (s) { s.points.forEach(function (p) { out.push(p[key]); }); });
    return out;
  }
  function scatterSets(series, extra) {
    return series.map(function (s) {
      return Object.assign({
        label: s.label, data: s.points, showLine: true, borderColor: s.color,
        backgroundColor: s.color, borderWidth: s.dashed ? 1.5 : 2,
        borderDash: s.dashed ? [6, 4] : [],
        pointRadius: function (c) { return c.raw && c.raw.r ? 6 : (s.dashed ? 2 : 3); },
        pointBorderWidth: function (c) { return c.raw && c.raw.r ? 3 : 1; },
        pointBorderColor: function (c) { return c.raw && c.raw.r ? '#c62828' : s.color; }
      }, extra || {});
    });
  }
  function legend() {
    return { position: 'bottom', labels: { boxWidth: 14, boxHeight: 8, padding: 8 } };
  }

  data.groups.forEach(function (g) {
    var el = document.getElementById('time-' + g.id);
    if (el) {
      new Chart(el, {
        type: 'scatter',
        data: { datasets: scatterSets(g.time) },
        options: {
          responsive: true, maintainAspectRatio: false,
          scales: {
            x: Object.assign({ type: 'logarithmic', title: { display: true, text: 'T (tokens)' },
                               ticks: { callback: logTick(fmtCount) } }, logBounds(pointValues(g.time, 'x'), 1.6)),
            y: Object.assign({ type: 'logarithmic', title: { display: true, text: 'median time per call' },
                               ticks: { callback: logTick(fmtTime) } }, logBounds(pointValues(g.time, 'y'), 1.25))
          },
          plugins: {
            title: { display: true, text: 'Time vs T (log-log)' + (data.compare ? ', baseline dashed, regressions red' : '') },
            legend: legend(),
            tooltip: { callbacks: { label: function (c) {
              return c.dataset.label + ': T=' + c.raw.x + ', ' + fmtTime(c.raw.y) + (c.raw.r ? '  REGRESSION' : '');
            } } }
          }
        }
      });
    }
    el = document.getElementById('tput-' + g.id);
    if (el) {
      var ymax = 0;
      g.tput.forEach(function (s) { s.points.forEach(function (p) { ymax = Math.max(ymax, p.y); }); });
      var sets = scatterSets(g.tput);
      var scales = {
        x: Object.assign({ type: 'logarithmic', title: { display: true, text: 'T (tokens)' },
                           ticks: { callback: logTick(fmtCount) } }, logBounds(pointValues(g.tput, 'x'), 1.6)),
        y: { type: 'linear', min: 0, title: { display: true, text: 'GB/s (1e9 bytes/s)' } }
      };
      if (g.ceiling) {
        // Both axes share grid lines: the left one steps by 20% of the ceiling and ends on a
        // multiple of it, the right one shows the same positions as percentages.
        var top = Math.max(1.2, Math.ceil(ymax / g.ceiling * 1.02 * 5) / 5);
        ymax = top * g.ceiling;
        var xs = [];
        g.tput.forEach(function (s) { s.points.forEach(function (p) { xs.push(p.x); }); });
        sets.push({ label: 'copy ceiling ' + g.ceiling + ' GB/s', showLine: true, pointRadius: 0,
                    borderColor: '#444', borderDash: [3, 3], borderWidth: 1,
                    data: [{ x: Math.min.apply(null, xs), y: g.ceiling }, { x: Math.max.apply(null, xs), y: g.ceiling }] });
        scales.y.max = ymax;
        scales.y.ticks = { stepSize: g.ceiling / 5,
                           callback: function (v) { return (+v.toPrecision(4)).toLocaleString('en-US'); } };
        scales.y1 = { type: 'linear', position: 'right', min: 0, max: top,
                      grid: { drawOnChartArea: false },
                      title: { display: true, text: 'fraction of copy ceiling' },
                      ticks: { stepSize: 0.2, callback: function (v) { return Math.round(v * 100) + '%'; } } };
      }
      new Chart(el, {
        type: 'scatter',
        data: { datasets: sets },
        options: {
          responsive: true, maintainAspectRatio: false, scales: scales,
          plugins: {
            title: { display: true, text: 'Throughput vs T' },
            legend: legend(),
            tooltip: { callbacks: { label: function (c) {
              var s = c.dataset.label + ': T=' + c.raw.x + ', ' + c.raw.y.toFixed(1) + ' GB/s';
              if (c.raw.f !== undefined && c.raw.f !== null) s += ' (' + (c.raw.f * 100).toFixed(1) + '% of copy ceiling)';
              return s;
            } } }
          }
        }
      });
    }
    el = document.getElementById('hist-' + g.id);
    if (el && g.hist) {
      var histValues = [];
      g.hist.forEach(function (s) { histValues = histValues.concat(s.values); });
      var histBounds = logBounds(histValues, 1.25);
      var hist = new Chart(el, {
        type: 'line',
        data: {
          labels: data.runs,
          datasets: g.hist.map(function (s) {
            return { label: s.label, data: s.values, borderColor: s.color, backgroundColor: s.color,
                     pointStyle: s.pointStyle, pointRadius: 4, borderWidth: 1.5, spanGaps: true };
          })
        },
        options: {
          responsive: true, maintainAspectRatio: false,
          scales: {
            x: { title: { display: true, text: 'run (oldest first)' } },
            y: Object.assign({ type: 'logarithmic', title: { display: true, text: 'median time per call' },
                               ticks: { callback: logTick(fmtTime) } }, histBounds)
          },
          plugins: {
            title: { display: true, text: 'History: median time per benchmark across runs' },
            legend: { position: 'right', labels: { boxWidth: 12, boxHeight: 8, padding: 6, usePointStyle: true } },
            tooltip: { callbacks: { label: function (c) {
              return c.dataset.label + ': ' + (hist && hist.$relative ? (c.parsed.y * 100).toFixed(1) + '% of first run'
                                                                       : fmtTime(c.parsed.y));
            } } }
          }
        }
      });
      // Toggle between absolute medians and medians relative to each benchmark's first run.
      var btn = document.getElementById('histmode-' + g.id);
      if (btn) btn.addEventListener('click', function () {
        hist.$relative = !hist.$relative;
        hist.data.datasets.forEach(function (d, i) {
          var abs = g.hist[i].values, first = null;
          abs.forEach(function (v) { if (first === null && v !== null) first = v; });
          d.data = hist.$relative ? abs.map(function (v) { return v === null ? null : v / first; }) : abs.slice();
        });
        var y = hist.options.scales.y;
        if (hist.$relative) {
          y.type = 'linear'; y.title.text = 'median time / first run';
          y.ticks.callback = function (v) { return Math.round(v * 100) + '%'; };
          delete y.min; delete y.max;
        } else {
          y.type = 'logarithmic'; y.title.text = 'median time per call'; y.ticks.callback = logTick(fmtTime);
          y.min = histBounds.min; y.max = histBounds.max;
        }
        btn.textContent = hist.$relative ? 'show absolute times' : 'show relative to first run';
        hist.update();
      });
    }
  });
})();
)JS";

std::string run_row(std::size_t i, const BenchRun& r) {
  const auto cell = [](const std::string& s) { return s.empty() ? std::string(kDash) : esc(s); };
  std::size_t errors = 0;
  for (const BenchResult& b : r.results) errors += b.error.empty() ? 0 : 1;
  return "<tr><td class=\"num\">" + std::to_string(i + 1) + "</td><td>" + esc(r.label()) +
         "</td><td class=\"name\">" + esc(r.source) + "</td><td>" + cell(r.context.date) + "</td><td>" +
         cell(r.context.device) + "</td><td>" + cell(r.context.driver) + "</td><td>" + cell(r.context.toolkit) +
         "</td><td class=\"mono\">" + cell(r.context.commit) + "</td><td class=\"num\">" +
         (r.context.copy_ceiling_gbs ? esc(fmt_fixed(*r.context.copy_ceiling_gbs, 1)) + " GB/s" : std::string(kDash)) +
         "</td><td class=\"num\">" + std::to_string(r.results.size()) + "</td><td class=\"num\">" +
         std::to_string(errors) + "</td></tr>\n";
}

std::string comparison_section(const Comparison& cmp) {
  std::string out = "<h2>Comparison: " + esc(cmp.baseline_label) + " &rarr; " + esc(cmp.current_label) + "</h2>\n";
  out += "<p>Rule: per benchmark, <i>regression</i> iff current median &gt; baseline median &times; (1 + t) with "
         "t = max(" + esc(fmt_percent(cmp.options.min_threshold)) + ", " +
         esc(fmt_fixed(cmp.options.noise_factor, 1)) +
         " &times; cv), where cv is the larger coefficient of variation of the two runs, and the "
         "medians differ by more than " + esc(fmt_time_ns(cmp.options.min_abs_ns)) + "; "
         "<i>improvement</i> likewise the other way. Reference benchmarks (" +
         [&] {
           std::string f;
           for (const std::string& x : cmp.options.ungated_families) f += (f.empty() ? "" : ", ") + x;
           return esc(f);
         }() + ") are shown but never fail the gate.</p>\n";
  for (const std::string& w : cmp.warnings) out += "<div class=\"banner warn\">" + esc(w) + "</div>\n";

  std::vector<const BenchDelta*> rows;
  for (const BenchDelta& d : cmp.deltas) rows.push_back(&d);
  std::stable_sort(rows.begin(), rows.end(), [](const BenchDelta* a, const BenchDelta* b) {
    if (verdict_rank(a->verdict) != verdict_rank(b->verdict)) return verdict_rank(a->verdict) < verdict_rank(b->verdict);
    return std::fabs(a->change) > std::fabs(b->change);
  });
  out += "<table class=\"comparison\"><tr><th>benchmark</th><th class=\"num\">baseline</th>"
         "<th class=\"num\">current</th><th class=\"num\">change</th><th class=\"num\">cv base</th>"
         "<th class=\"num\">cv current</th><th class=\"num\">threshold</th><th>verdict</th></tr>\n";
  for (const BenchDelta* d : rows) {
    const auto cv = [&](double v) { return d->noise_known ? esc(fmt_percent(v)) : std::string("n/a"); };
    out += "<tr class=\"" + std::string(verdict_name(d->verdict)) + "\"><td class=\"name\">" + esc(d->name) +
           "</td><td class=\"num\">" + esc(fmt_time_ns(d->baseline_ns)) + "</td><td class=\"num\">" +
           esc(fmt_time_ns(d->current_ns)) + "</td><td class=\"num\">" +
           (d->verdict == Verdict::invalid ? std::string(kDash) : esc(fmt_signed_percent(d->change))) +
           "</td><td class=\"num\">" + cv(d->baseline_cv) + "</td><td class=\"num\">" + cv(d->current_cv) +
           "</td><td class=\"num\">" + esc(fmt_percent(d->threshold)) + "</td><td>" + verdict_cell(*d) +
           "</td></tr>\n";
  }
  out += "</table>\n";
  const auto list = [&](const char* title, const std::vector<std::string>& names) {
    if (names.empty()) return;
    out += "<h3>" + std::string(title) + " (" + std::to_string(names.size()) + ")</h3>\n<ul class=\"names\">\n";
    for (const std::string& n : names) out += "<li>" + esc(n) + "</li>\n";
    out += "</ul>\n";
  };
  list("Missing from the current run", cmp.only_in_baseline);
  list("New in the current run (no baseline)", cmp.only_in_current);
  return out;
}

}  // namespace

std::string render_dashboard_html(const std::vector<BenchRun>& history, const Comparison* cmp) {
  if (history.empty()) throw std::invalid_argument("render_dashboard_html: history is empty");
  const BenchRun& cur = history.back();

  // ---- which families occur (a family prefix is added to series names only when needed)
  std::set<std::string> families;
  for (const BenchRun& r : history)
    for (const BenchResult& b : r.results)
      if (b.params.plottable()) families.insert(b.params.family);
  const bool with_family = families.size() > 1;

  // ---- regression lookup
  std::map<std::string, const BenchDelta*> delta_of;
  if (cmp != nullptr)
    for (const BenchDelta& d : cmp->deltas) delta_of[d.name] = &d;

  std::map<GroupId, Group> groups;
  const auto group_for = [&](const BenchParams& p) -> Group& {
    Group& g = groups[group_of(p)];
    if (g.key.empty()) g.key = p.group_key();
    if (g.title.empty()) g.title = "dtype " + p.dtype + " \xC2\xB7 E=" + std::to_string(*p.E) + " \xC2\xB7 k=" + std::to_string(*p.k);
    return g;
  };

  // Current run: time and throughput.
  std::vector<const BenchResult*> others;
  for (const BenchResult& b : cur.results) {
    if (!b.params.plottable()) {
      others.push_back(&b);
      continue;
    }
    Group& g = group_for(b.params);
    if (!b.error.empty() || !std::isfinite(b.median_ns) || b.median_ns <= 0) continue;
    if (*b.params.T <= 0) {
      ++g.skipped_nonpositive_T;
      continue;
    }
    const std::string s = series_label(b.params, with_family);
    Point p;
    p.x = static_cast<double>(*b.params.T);
    p.y = b.median_ns;
    p.name = b.name;
    const auto d = delta_of.find(b.name);
    p.regression = d != delta_of.end() && d->second->verdict == Verdict::regression;
    g.time_current[s].push_back(p);
    if (const auto bps = b.bytes_per_second()) {
      Point q = p;
      q.y = *bps / 1e9;
      q.fraction = b.copy_fraction(cur.context.copy_ceiling_gbs);
      g.tput[s].push_back(q);
    }
  }
  // Baseline medians from the comparison, drawn dashed.
  if (cmp != nullptr) {
    for (const BenchDelta& d : cmp->deltas) {
      if (!d.params.plottable() || *d.params.T <= 0 || !std::isfinite(d.baseline_ns) || d.baseline_ns <= 0) continue;
      Point p;
      p.x = static_cast<double>(*d.params.T);
      p.y = d.baseline_ns;
      p.name = d.name;
      group_for(d.params).time_baseline[series_label(d.params, with_family)].push_back(p);
    }
  }
  // History across runs.
  for (std::size_t i = 0; i < history.size(); ++i) {
    for (const BenchResult& b : history[i].results) {
      if (!b.params.plottable()) continue;
      Group& g = group_for(b.params);
      HistRow& row = g.hist[b.name];
      if (row.values.empty()) {
        row.series = series_label(b.params, with_family);
        row.T = *b.params.T;
        row.values.resize(history.size());
      }
      if (b.error.empty() && std::isfinite(b.median_ns) && b.median_ns > 0) row.values[i] = b.median_ns;
    }
  }

  // ---- stable colours per series label
  std::set<std::string> labels;
  for (const auto& [id, g] : groups) {
    for (const auto& kv : g.time_current) labels.insert(kv.first);
    for (const auto& kv : g.time_baseline) labels.insert(kv.first);
    for (const auto& kv : g.hist) labels.insert(kv.second.series);
  }
  std::map<std::string, std::string> color;
  {
    std::size_t i = 0;
    for (const std::string& l : labels) color[l] = kPalette[i++ % (sizeof kPalette / sizeof kPalette[0])];
  }

  // ---- data for the charts
  json jruns = json::array();
  for (std::size_t i = 0; i < history.size(); ++i) jruns.push_back("#" + std::to_string(i + 1) + " " + history[i].label());
  json jgroups = json::array();
  std::string sections;
  std::size_t gi = 0;
  for (const auto& [id, g] : groups) {
    const std::string gid = "g" + std::to_string(gi++);
    json jg = {{"id", gid}, {"title", g.title}};
    json time = json::array();
    for (const auto& [s, pts] : g.time_current)
      time.push_back({{"label", s}, {"color", color[s]}, {"dashed", false}, {"points", points_json(pts, false)}});
    for (const auto& [s, pts] : g.time_baseline)
      time.push_back({{"label", s + " (baseline)"}, {"color", color[s]}, {"dashed", true}, {"points", points_json(pts, false)}});
    json tput = json::array();
    for (const auto& [s, pts] : g.tput)
      tput.push_back({{"label", s}, {"color", color[s]}, {"dashed", false}, {"points", points_json(pts, true)}});
    jg["time"] = time;
    jg["tput"] = tput;
    jg["ceiling"] = cur.context.copy_ceiling_gbs ? json(*cur.context.copy_ceiling_gbs) : json();

    std::vector<const HistRow*> hrows;
    for (const auto& kv : g.hist) hrows.push_back(&kv.second);
    std::sort(hrows.begin(), hrows.end(), [](const HistRow* a, const HistRow* b) {
      return a->series != b->series ? a->series < b->series : a->T < b->T;
    });
    std::map<std::string, std::size_t> style_index;
    json hist = json::array();
    for (const HistRow* h : hrows) {
      json values = json::array();
      for (const auto& v : h->values) values.push_back(v ? json(*v) : json());
      const std::size_t st = style_index[h->series]++;
      hist.push_back({{"label", h->series + " T=" + std::to_string(h->T)},
                      {"color", color[h->series]},
                      {"pointStyle", kPointStyles[st % (sizeof kPointStyles / sizeof kPointStyles[0])]},
                      {"values", values}});
    }
    const bool show_hist = history.size() >= 2 && !hist.empty();
    jg["hist"] = show_hist ? hist : json();
    jgroups.push_back(jg);

    // HTML section of this group.
    sections += "<section class=\"group\" data-group=\"" + esc(g.key) + "\">\n<h3>" + esc(g.title) + "</h3>\n";
    if (g.time_current.empty() && g.tput.empty()) {
      sections += "<p class=\"muted\">No usable result in the current run for this group.</p>\n";
    } else {
      sections += "<div class=\"charts\">\n<div class=\"chartbox\"><canvas id=\"time-" + gid + "\"></canvas></div>\n";
      if (!g.tput.empty())
        sections += "<div class=\"chartbox\"><canvas id=\"tput-" + gid + "\"></canvas></div>\n";
      else
        sections += "<div class=\"muted\">No bytes_per_second counter in the current run: no throughput chart.</div>\n";
      sections += "</div>\n";
    }
    if (g.skipped_nonpositive_T > 0)
      sections += "<p class=\"muted\">" + std::to_string(g.skipped_nonpositive_T) +
                  " benchmark(s) with T &le; 0 are not drawn on the logarithmic axis.</p>\n";
    if (show_hist)
      sections += "<div class=\"chartbox wide\"><canvas id=\"hist-" + gid + "\"></canvas></div>\n"
                  "<button type=\"button\" class=\"histmode\" id=\"histmode-" + gid +
                  "\">show relative to first run</button>\n";
    sections += "</section>\n";
  }
  json data = {{"runs", jruns}, {"groups", jgroups}, {"compare", cmp != nullptr}};

  // ---- page
  std::string out = page_head("moecheck benchmarks: " + cur.label(), kDashboardCss);
  out += "<h1>moecheck benchmark dashboard</h1>\n";
  out += "<div class=\"sub\">" + std::to_string(history.size()) + " run" + (history.size() == 1 ? "" : "s") +
         " &middot; current run <b>" + esc(cur.label()) + "</b>" +
         (cur.context.device.empty() ? std::string() : " on " + esc(cur.context.device)) + "</div>\n";
  if (cmp != nullptr) {
    const std::size_t n_reg = cmp->gated_regressions();
    if (n_reg > 0)
      out += "<div class=\"banner bad\">REGRESSION: " + std::to_string(n_reg) + " of " +
             std::to_string(cmp->deltas.size()) + " benchmarks slower than " + esc(cmp->baseline_label) +
             " beyond their noise threshold</div>\n";
    else
      out += "<div class=\"banner ok\">No regression against " + esc(cmp->baseline_label) + " (" +
             std::to_string(cmp->deltas.size()) + " benchmarks compared, " +
             std::to_string(cmp->count(Verdict::improvement)) + " improved)</div>\n";
    if (!cmp->only_in_baseline.empty())
      out += "<div class=\"banner warn\">" + std::to_string(cmp->only_in_baseline.size()) +
             " baseline benchmark(s) missing from the current run</div>\n";
  }
  out += "<div id=\"chart-error\" class=\"banner bad\">Chart.js failed to load; the tables below are complete.</div>\n";

  out += "<h2>Runs</h2>\n<table class=\"runs\"><tr><th class=\"num\">#</th><th>label</th><th>file</th><th>date</th>"
         "<th>device</th><th>driver</th><th>toolkit</th><th>commit</th><th class=\"num\">copy ceiling</th>"
         "<th class=\"num\">benchmarks</th><th class=\"num\">errors</th></tr>\n";
  for (std::size_t i = 0; i < history.size(); ++i) out += run_row(i, history[i]);
  out += "</table>\n";

  if (cmp != nullptr) out += comparison_section(*cmp);

  out += "<h2>Time and throughput by shape (current run)</h2>\n";
  if (groups.empty())
    out += "<p class=\"muted\">No benchmark name carries dtype, E, k and T segments.</p>\n";
  out += sections;

  if (!others.empty()) {
    out += "<h2>Other benchmarks</h2>\n<table><tr><th>benchmark</th><th class=\"num\">median</th>"
           "<th class=\"num\">cv</th><th>note</th></tr>\n";
    for (const BenchResult* b : others)
      out += "<tr><td class=\"name\">" + esc(b->name) + "</td><td class=\"num\">" + esc(fmt_time_ns(b->median_ns)) +
             "</td><td class=\"num\">" + (b->cv_known ? esc(fmt_percent(b->cv)) : std::string("n/a")) + "</td><td>" +
             esc(b->error) + "</td></tr>\n";
    out += "</table>\n";
  }

  out += "<details><summary>All results of the current run (" + std::to_string(cur.results.size()) +
         ")</summary>\n<table><tr><th>benchmark</th><th class=\"num\">reps</th><th class=\"num\">median</th>"
         "<th class=\"num\">cv</th><th class=\"num\">GB/s</th><th class=\"num\">copy fraction</th><th>error</th></tr>\n";
  for (const BenchResult& b : cur.results) {
    const auto bps = b.bytes_per_second();
    const auto frac = b.copy_fraction(cur.context.copy_ceiling_gbs);
    out += "<tr><td class=\"name\">" + esc(b.name) + "</td><td class=\"num\">" + std::to_string(b.times_ns.size()) +
           "</td><td class=\"num\">" + esc(fmt_time_ns(b.median_ns)) + "</td><td class=\"num\">" +
           (b.cv_known ? esc(fmt_percent(b.cv)) : std::string("n/a")) + "</td><td class=\"num\">" +
           (bps ? esc(fmt_fixed(*bps / 1e9, 1)) : std::string(kDash)) + "</td><td class=\"num\">" +
           (frac ? esc(fmt_percent(*frac)) : std::string(kDash)) + "</td><td>" + esc(b.error) + "</td></tr>\n";
  }
  out += "</table>\n</details>\n";

  out += "<div class=\"footer\">Times are medians over repetitions of real (or manual) time per call. "
         "Charts drawn with the embedded Chart.js (MIT License, license header kept in the script below).</div>\n";
  out += "<script type=\"application/json\" id=\"moecheck-data\">" + json_for_script(data) + "</script>\n";
  out += "<script>\n" + chartjs_source() + "\n</script>\n";
  out += "<script>" + std::string(kDashboardJs) + "</script>\n</body>\n</html>\n";
  return out;
}

int report_main_bench(const std::vector<std::string>& inputs, const std::string& baseline,
                      const std::string& out_html, std::ostream& log) {
  if (inputs.empty()) {
    log << "error: no benchmark file given\n";
    return 2;
  }
  std::vector<BenchRun> history;
  std::optional<BenchRun> base;
  try {
    if (!baseline.empty() && std::find(inputs.begin(), inputs.end(), baseline) == inputs.end())
      history.push_back(load_bench_run(baseline));
    for (const std::string& path : inputs) history.push_back(load_bench_run(path));
    if (!baseline.empty()) {
      for (const BenchRun& r : history)
        if (r.source == baseline) base = r;
    }
  } catch (const std::exception& e) {
    log << "error: " << e.what() << "\n";
    return 2;
  }

  std::optional<Comparison> cmp;
  if (base) {
    cmp = compare_runs(*base, history.back());
    for (const std::string& w : cmp->warnings) log << "warning: " << w << "\n";
    for (const BenchDelta& d : cmp->deltas) {
      if (d.verdict == Verdict::unchanged) continue;
      log << verdict_name(d.verdict) << (d.gated ? "" : " (not gated)") << ": " << d.name << "  "
          << fmt_time_ns(d.baseline_ns) << " -> "
          << fmt_time_ns(d.current_ns);
      if (d.verdict == Verdict::invalid) log << "  (" << d.note << ")\n";
      else log << "  " << fmt_signed_percent(d.change) << " (threshold " << fmt_percent(d.threshold) << ")\n";
    }
    for (const std::string& n : cmp->only_in_baseline) log << "missing in current: " << n << "\n";
    for (const std::string& n : cmp->only_in_current) log << "new (no baseline): " << n << "\n";
    const std::size_t gated = cmp->gated_regressions();
    const std::size_t ungated = cmp->count(Verdict::regression) - gated;
    log << "compared " << cmp->deltas.size() << " benchmarks against " << cmp->baseline_label << ": " << gated
        << " regression(s)" << (ungated ? " (+" + std::to_string(ungated) + " slower reference benchmark(s), not gated)" : std::string())
        << ", " << cmp->count(Verdict::improvement) << " improvement(s), " << cmp->count(Verdict::invalid) << " invalid\n";
  }

  if (!out_html.empty()) {
    std::string html;
    try {
      html = render_dashboard_html(history, cmp ? &*cmp : nullptr);
    } catch (const std::exception& e) {
      log << "error: " << e.what() << "\n";
      return 2;
    }
    std::ofstream out(out_html, std::ios::binary | std::ios::trunc);
    out << html;
    out.close();
    if (!out) {
      log << "error: cannot write '" << out_html << "'\n";
      return 2;
    }
    log << "dashboard written to " << out_html << "\n";
  }
  if (cmp && cmp->has_regression()) {
    log << "RESULT: regression\n";
    return 1;
  }
  log << "RESULT: ok\n";
  return 0;
}

}  // namespace moecheck::reports
