// Campaign results page (schema "moecheck-campaign/1").
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "reports/reports.hpp"
#include "reports/util.hpp"

namespace moecheck::reports {

using nlohmann::json;
using namespace detail;

namespace {

std::optional<double> number_field(const json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  const auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

const json& object_field(const json& obj, const char* key) {
  static const json kEmpty = json::object();
  if (!obj.is_object()) return kEmpty;
  const auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "\xE2\x80\x94";
  if (s < 120) return fmt_fixed(s, s < 10 ? 2 : 1) + " s";
  const long total = std::lround(s);
  char buf[64];
  if (total < 3600)
    std::snprintf(buf, sizeof buf, "%ldm %02lds", total / 60, total % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldh %02ldm %02lds", total / 3600, (total / 60) % 60, total % 60);
  return buf;
}

std::string fmt_rate(std::optional<double> count, std::optional<double> seconds) {
  if (!count || !seconds || *seconds <= 0) return "\xE2\x80\x94";
  const double r = *count / *seconds;
  if (r >= 1e5) return fmt_si(r);  // "1.52 M"
  return r >= 100 ? fmt_fixed(r, 0) : fmt_fixed(r, r >= 10 ? 1 : 2);
}

/// An integral JSON number with thousands separators ("913,004,112"); other values as
/// display() writes them.
std::string count_text(const json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key)) return display_field(obj, key);
  const json& v = obj[key];
  if (!v.is_number_integer()) return display(v);
  std::string digits = v.dump();
  const bool neg = !digits.empty() && digits[0] == '-';
  if (neg) digits.erase(0, 1);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return neg ? "-" + out : out;
}

/// A JSON array of strings as "a, b, c" (other values as display() writes them).
std::string list_text(const json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key) || !obj[key].is_array()) return display_field(obj, key);
  std::string out;
  for (const json& v : obj[key]) out += (out.empty() ? "" : ", ") + display(v);
  return out.empty() ? display(json()) : out;
}

std::string card(const std::string& key, const std::string& value_html, const char* cls = "") {
  std::string out = "<div class=\"card";
  if (*cls) out += std::string(" ") + cls;
  out += "\"><div class=\"k\">" + esc(key) + "</div><div class=\"v\">" + value_html + "</div></div>\n";
  return out;
}

/// "T=… E=… k=… dtype layout family" for a shape object.
std::string shape_text(const json& shape) {
  if (!shape.is_object() || shape.empty()) return "\xE2\x80\x94";
  std::string out;
  for (const char* key : {"T", "E", "k"}) {
    if (!out.empty()) out += ' ';
    out += std::string(key) + "=" + display_field(shape, key);
  }
  for (const char* key : {"dtype", "layout", "family"}) {
    const auto it = shape.find(key);
    if (it != shape.end() && !it->is_null()) out += " " + display(*it);
  }
  return out;
}

constexpr const char* kCampaignCss = R"CSS(
.bar { height: 12px; background: #5b8def; border-radius: 2px; min-width: 1px; }
td.barcell { width: 360px; }
.cov { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 6px; }
.cov div { border: 1px solid var(--line); border-radius: 5px; padding: 5px 9px; display: flex;
           justify-content: space-between; gap: 8px; }
.cov .hit { background: var(--green-bg); }
.cov .hit b { color: var(--green); }
.cov .miss { background: var(--red-bg); color: var(--red); font-weight: 600; }
.failures td { font-size: 13px; }
.failures td.msg { min-width: 220px; max-width: 420px; overflow-wrap: break-word; white-space: pre-wrap; }
.failures td.sig { white-space: nowrap; }
.failures td.shape { min-width: 190px; }
.replay { display: flex; gap: 6px; align-items: flex-start; }
.replay pre { margin: 0; padding: 4px 6px; background: var(--panel); border: 1px solid var(--line);
              border-radius: 4px; white-space: pre-wrap; overflow-wrap: break-word; user-select: all;
              min-width: 300px; max-width: 520px; }
.replay button { font-size: 12px; padding: 2px 8px; cursor: pointer; }
.card.warn .v { color: var(--amber); }
)CSS";

constexpr const char* kCopyJs = R"JS(
document.querySelectorAll('button[data-copy]').forEach(function (btn) {
  btn.addEventListener('click', function () {
    var pre = document.getElementById(btn.getAttribute('data-copy'));
    var text = pre.textContent;
    function done() { btn.textContent = 'copied'; setTimeout(function () { btn.textContent = 'copy'; }, 1500); }
    function fallback() {
      var range = document.createRange(); range.selectNodeContents(pre);
      var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
      try { document.execCommand('copy'); done(); } catch (e) { btn.textContent = 'select + Ctrl-C'; }
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else { fallback(); }
  });
});
)JS";

}  // namespace

json load_campaign(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("campaign file '" + path + "': cannot open (" + std::strerror(errno) + ")");
  std::ostringstream text;
  text << in.rdbuf();
  json doc;
  try {
    doc = json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw std::runtime_error("campaign file '" + path + "': not valid JSON: " + e.what());
  }
  if (!doc.is_object()) throw std::runtime_error("campaign file '" + path + "': top level is not a JSON object");
  const auto schema = doc.find("schema");
  if (schema == doc.end() || !schema->is_string() || schema->get<std::string>() != kCampaignSchema)
    throw std::runtime_error("campaign file '" + path + "': field \"schema\" must be \"" +
                             std::string(kCampaignSchema) + "\"");
  return doc;
}

std::string render_campaign_html(const json& c) {
  if (!c.is_object()) throw std::runtime_error("render_campaign_html: campaign is not a JSON object");
  const auto schema = c.find("schema");
  if (schema == c.end() || !schema->is_string() || schema->get<std::string>() != kCampaignSchema)
    throw std::runtime_error("render_campaign_html: field \"schema\" must be \"" + std::string(kCampaignSchema) + "\"");

  const json& tool = object_field(c, "tool");
  const json& device = object_field(c, "device");
  const json& shard = object_field(c, "shard");
  const json& budget = object_field(c, "budget");
  const json& classes = object_field(c, "classes");
  const auto elapsed = number_field(c, "elapsed_s");
  const auto cases = number_field(c, "cases");
  const auto rows = number_field(c, "rows");
  const auto failures_n = number_field(c, "failures");
  const bool interrupted = c.contains("interrupted") && c["interrupted"].is_boolean() && c["interrupted"].get<bool>();
  static const json kNoFailures = json::array();
  const json& failures = c.contains("failure_list") && c["failure_list"].is_array() ? c["failure_list"] : kNoFailures;
  const double n_fail = failures_n ? *failures_n : static_cast<double>(failures.size());

  const std::string target = display_field(c, "target");
  std::string out = page_head("moecheck campaign: " + target, kCampaignCss);
  out += "<h1>moecheck campaign report</h1>\n";
  out += "<div class=\"sub\">target <b>" + esc(target) + "</b> on " + esc(display_field(device, "kind")) + " " +
         esc(display_field(device, "name")) + " &middot; started " + esc(display_field(c, "started")) +
         " &middot; moecheck " + esc(display_field(tool, "version")) + " (" + esc(display_field(tool, "commit")) +
         ") &middot; torch " + esc(display_field(tool, "torch")) + " &middot; cuda " +
         esc(display_field(tool, "cuda")) + "</div>\n";

  // ---- verdict banner
  if (n_fail > 0)
    out += "<div class=\"banner bad\">" + esc(display(json(static_cast<long long>(n_fail)))) +
           " failure" + (n_fail == 1 ? "" : "s") + " found</div>\n";
  else
    out += "<div class=\"banner ok\">no failures</div>\n";
  if (interrupted)
    out += "<div class=\"banner warn\">campaign was interrupted before its budget ran out</div>\n";

  // ---- summary
  std::string budget_text;
  if (!budget.empty()) {
    const std::string bs = display_field(budget, "seconds");
    const std::string bc = display_field(budget, "cases");
    budget_text = bs + " s / " + bc + " cases";
  } else {
    budget_text = display(json());
  }
  out += "<h2>Summary</h2>\n<div class=\"cards\">\n";
  out += card("target", esc(target));
  out += card("device", esc(display_field(device, "kind")) + " &middot; " + esc(display_field(device, "name")));
  out += card("seed", "<span class=\"mono\">" + esc(display_field(c, "seed")) + "</span>");
  out += card("shard", esc(display_field(shard, "index")) + " / " + esc(display_field(shard, "count")));
  out += card("duration", esc(fmt_duration(elapsed.value_or(std::nan("")))));
  out += card("budget (time / cases)", esc(budget_text));
  out += card("cases", esc(count_text(c, "cases")));
  out += card("rows", esc(count_text(c, "rows")));
  out += card("cases/s", esc(fmt_rate(cases, elapsed)));
  out += card("rows/s", esc(fmt_rate(rows, elapsed)));
  const json& check = object_field(c, "check");
  if (!check.empty()) {  // the checking path (DESIGN.md "Device checker")
    const json& dev = object_field(check, "device");
    const auto disagreements = dev.empty() ? std::nullopt : number_field(dev, "disagreements");
    std::string text = esc(display_field(check, "path"));
    if (!dev.empty()) {
      text += "<br>" + esc(count_text(dev, "rows")) + " rows judged on the device, " +
              esc(count_text(dev, "host_checked_rows")) + " re-judged on the host, " +
              esc(count_text(dev, "disagreements")) + " disagreements";
    }
    out += card("checked on", text, disagreements && *disagreements > 0 ? "bad" : "");
  }
  out += card("failures", esc(display(json(static_cast<long long>(n_fail)))), n_fail > 0 ? "bad" : "good");
  out += card("interrupted", interrupted ? "yes" : "no", interrupted ? "bad" : "");
  const json& generator = object_field(c, "generator");
  if (!generator.empty()) {
    const std::string restriction = display_field(generator, "restriction");
    out += card("cases drawn", esc(list_text(generator, "families")) + "<br>" +
                                   esc(list_text(generator, "dtypes")) + " &middot; E &le; " +
                                   esc(display_field(generator, "max_E")) + " &middot; k &le; " +
                                   esc(display_field(generator, "max_k")) + " &middot; T &le; " +
                                   esc(display_field(generator, "max_T")) +
                                   (restriction.empty() ? "" : "<br>restricted to the target: " + esc(restriction)));
  }
  const auto skipped = number_field(c, "skipped");
  if (skipped) out += card("skipped (outside the target)", esc(count_text(c, "skipped")), *skipped > 0 ? "bad" : "");
  const json& contract = object_field(c, "contract");
  const auto outside_n = number_field(c, "outside_contract");
  out += card("contract", "<span class=\"mono\">" + esc(contract.empty() ? std::string("strict") : display_field(contract, "name")) +
                              "</span>");
  out += card("outside contract (not failures)", esc(count_text(c, "outside_contract")),
              outside_n && *outside_n > 0 ? "warn" : "");
  out += "</div>\n";
  if (!contract.empty()) out += "<p class=\"muted\">" + esc(display_field(contract, "description")) + "</p>\n";

  // ---- cases outside the declared contract: counted and shown, never failures
  const json& outside = object_field(c, "outside_contract_reasons");
  if (!outside.empty()) {
    out += "<h2>Outside the declared contract</h2>\n<p class=\"muted\">Cases whose input the contract does not "
           "cover (layout, alignment, size): not run and not failures.</p>\n";
    out += "<table class=\"outside\"><tr><th>reason</th><th class=\"num\">cases</th></tr>\n";
    for (const auto& [reason, n] : outside.items()) {
      out += "<tr><td class=\"mono\">" + esc(reason) + "</td><td class=\"num\">" + esc(count_text(outside, reason.c_str())) +
             "</td></tr>\n";
    }
    out += "</table>\n";
  }

  // ---- cases by class
  std::vector<std::pair<std::string, double>> counts;
  for (const auto& [name, value] : classes.items())
    counts.emplace_back(name, value.is_number() ? value.get<double>() : 0.0);
  std::stable_sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  double max_count = 0;
  for (const auto& kv : counts) max_count = std::max(max_count, kv.second);
  out += "<h2>Cases by class</h2>\n";
  if (counts.empty()) {
    out += "<p class=\"muted\">The campaign recorded no classes.</p>\n";
  } else {
    out += "<p class=\"muted\">A case can belong to several classes, so the shares do not add up to 100%.</p>\n";
    out += "<table class=\"classes\"><tr><th>class</th><th class=\"num\">cases</th>"
           "<th class=\"num\">share</th><th>distribution</th></tr>\n";
    for (const auto& [name, n] : counts) {
      const double width = max_count > 0 ? 100.0 * n / max_count : 0.0;
      out += "<tr><td class=\"mono\">" + esc(name) + "</td><td class=\"num\">" + esc(count_text(classes, name.c_str())) +
             "</td><td class=\"num\">" + (cases && *cases > 0 ? esc(fmt_percent(n / *cases)) : "\xE2\x80\x94") +
             "</td><td class=\"barcell\"><div class=\"bar\" style=\"width:" + fmt_fixed(width, 1) +
             "%\"></div></td></tr>\n";
    }
    out += "</table>\n";
  }

  // ---- coverage of the expected classes the campaign itself listed (the classifier's names)
  out += "<h2>Edge-case coverage</h2>\n";
  const auto exp_it = c.find("expected_classes");
  if (exp_it == c.end() || !exp_it->is_array()) {
    out += "<p class=\"muted\">The campaign file lists no expected classes (\"expected_classes\"), so coverage "
           "cannot be judged.</p>\n";
  } else {
    std::size_t covered = 0, expected = 0;
    std::string cov;
    for (const json& entry : *exp_it) {
      if (!entry.is_string()) continue;
      const std::string name = entry.get<std::string>();
      ++expected;
      const auto it = classes.find(name);
      const double n = it != classes.end() && it->is_number() ? it->get<double>() : 0.0;
      if (n > 0) {
        ++covered;
        cov += "<div class=\"hit\"><span class=\"mono\">" + esc(name) + "</span><b>" +
               esc(count_text(classes, name.c_str())) + "</b></div>\n";
      } else {
        cov += "<div class=\"miss\" title=\"no case of this class was generated\"><span class=\"mono\">" +
               esc(name) + "</span><span>not covered</span></div>\n";
      }
    }
    out += "<div class=\"banner " + std::string(covered == expected ? "ok" : "warn") + "\">" +
           std::to_string(covered) + " of " + std::to_string(expected) + " expected classes covered</div>\n";
    out += "<div class=\"cov\">\n" + cov + "</div>\n";
  }

  // ---- failures
  out += "<h2>Failures</h2>\n";
  if (failures.empty()) {
    out += "<p class=\"muted\">No failures" + std::string(n_fail > 0 ? " listed (the count above comes from the summary)." : ".") +
           "</p>\n";
  } else {
    out += "<table class=\"failures\"><tr><th>#</th><th>signature</th><th>check</th><th>message</th>"
           "<th>shrunk case</th><th>seed / case</th><th>corpus file</th><th>replay</th></tr>\n";
    std::size_t i = 0;
    for (const json& f : failures) {
      ++i;
      const std::string id = "replay-" + std::to_string(i);
      const json& shrunk = object_field(f, "shrunk");
      const json& original = object_field(f, "original");
      std::string shape = "<span class=\"mono\">" + esc(shape_text(shrunk)) + "</span>";
      if (!original.empty())
        shape += "<br><span class=\"muted\">from " + esc(shape_text(original)) + ", " +
                 esc(display_field(f, "shrink_steps")) + " shrink steps</span>";
      std::string check = esc(display_field(f, "check"));
      const std::string ftarget = display_field(f, "target");
      if (f.is_object() && f.contains("target") && ftarget != target)
        check += "<br><span class=\"muted\">" + esc(ftarget) + "</span>";
      out += "<tr><td class=\"num\">" + std::to_string(i) + "</td><td class=\"mono sig\">" +
             esc(display_field(f, "signature")) + "</td><td>" + check + "</td><td class=\"msg\">" +
             esc(display_field(f, "message")) + "</td><td class=\"shape\">" + shape + "</td><td class=\"mono\">" +
             esc(display_field(f, "seed")) + " / " + esc(display_field(f, "case_index")) +
             "</td><td class=\"mono\">" + esc(display_field(f, "corpus_file")) +
             "</td><td><div class=\"replay\"><pre id=\"" + id + "\">" + esc(display_field(f, "replay")) +
             "</pre><button type=\"button\" data-copy=\"" + id + "\">copy</button></div></td></tr>\n";
    }
    out += "</table>\n";
  }

  out += "<div class=\"footer\">schema " + esc(kCampaignSchema) + " &middot; generated by moecheck reports</div>\n";
  out += "<script>" + std::string(kCopyJs) + "</script>\n</body>\n</html>\n";
  return out;
}

int report_main_campaign(const std::string& input, const std::string& out_html, std::ostream& log) {
  std::string html;
  try {
    html = render_campaign_html(load_campaign(input));
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
  log << "campaign report written to " << out_html << "\n";
  return 0;
}

}  // namespace moecheck::reports
