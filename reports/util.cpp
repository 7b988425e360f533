#include "reports/util.hpp"

#include <cmath>
#include <cstdio>

#include "reports/reports.hpp"

namespace moecheck::reports {

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (const char ch : text) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

namespace detail {

namespace {
constexpr const char* kDash = "\xE2\x80\x94";  // U+2014 EM DASH

std::string printf_str(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}
}  // namespace

std::string esc(std::string_view text) { return html_escape(text); }

std::string display(const nlohmann::json& value) {
  if (value.is_null()) return kDash;
  if (value.is_string()) return value.get<std::string>();
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string display_field(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object()) return kDash;
  const auto it = obj.find(key);
  if (it == obj.end()) return kDash;
  return display(*it);
}

std::string fmt_fixed(double v, int digits) {
  if (!std::isfinite(v)) return kDash;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string fmt_time_ns(double ns) {
  if (!std::isfinite(ns)) return kDash;
  const double a = std::fabs(ns);
  const auto three = [](double x) {  // three significant digits
    return x >= 100 ? printf_str("%.0f", x) : x >= 10 ? printf_str("%.1f", x) : printf_str("%.2f", x);
  };
  if (a < 1e3) return three(ns) + " ns";
  if (a < 1e6) return three(ns / 1e3) + " \xC2\xB5s";  // µs
  if (a < 1e9) return three(ns / 1e6) + " ms";
  return three(ns / 1e9) + " s";
}

std::string fmt_signed_percent(double fraction) {
  if (!std::isfinite(fraction)) return kDash;
  return printf_str("%+.1f%%", fraction * 100.0);
}

std::string fmt_percent(double fraction) {
  if (!std::isfinite(fraction)) return kDash;
  return printf_str("%.1f%%", fraction * 100.0);
}

std::string fmt_si(double v) {
  if (!std::isfinite(v)) return kDash;
  const double a = std::fabs(v);
  if (a >= 1e12) return printf_str("%.2f T", v / 1e12);
  if (a >= 1e9) return printf_str("%.2f G", v / 1e9);
  if (a >= 1e6) return printf_str("%.2f M", v / 1e6);
  if (a >= 1e3) return printf_str("%.2f k", v / 1e3);
  return printf_str("%.3g ", v);
}

std::string json_for_script(const nlohmann::json& value) {
  const std::string s = value.dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::json::error_handler_t::replace);
  std::string out;
  out.reserve(s.size());
  // '<', '>' and '&' only occur inside JSON strings, where \u escapes are equivalent.
  for (const char ch : s) {
    switch (ch) {
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
      default: out += ch;
    }
  }
  return out;
}

const char* base_css() {
  return R"CSS(
:root { --fg:#1d2330; --muted:#5d6778; --line:#d9dee7; --bg:#ffffff; --panel:#f6f8fb;
        --red:#c62828; --red-bg:#fdecea; --green:#2e7d32; --green-bg:#e8f5e9;
        --amber:#8a6100; --amber-bg:#fff4d6; --blue:#1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; }
.sub { color: var(--muted); margin-bottom: 14px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
                   font-size: 12.5px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.banner { padding: 10px 14px; border-radius: 6px; font-weight: 600; margin: 12px 0; }
.banner.ok { background: var(--green-bg); color: var(--green); border: 1px solid #a5d6a7; }
.banner.bad { background: var(--red-bg); color: var(--red); border: 1px solid #ef9a9a; }
.banner.warn { background: var(--amber-bg); color: var(--amber); border: 1px solid #f0d58c; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 16px; font-weight: 600; overflow-wrap: anywhere; }
.card.bad .v { color: var(--red); }
.card.good .v { color: var(--green); }
.muted { color: var(--muted); }
.footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
)CSS";
}

std::string page_head(std::string_view title, std::string_view extra_css) {
  std::string out;
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  out += "<title>" + esc(title) + "</title>\n<style>";
  out += base_css();
  out += extra_css;
  out += "</style>\n</head>\n<body>\n";
  return out;
}

}  // namespace detail
}  // namespace moecheck::reports
