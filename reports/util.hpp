// Internal helpers shared by the report renderers (not part of the public API).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace moecheck::reports::detail {

/// Shorthand: html_escape.
std::string esc(std::string_view text);

/// A JSON value as display text: strings verbatim, numbers and booleans as JSON writes
/// them, null/absent as an em dash, arrays/objects as compact JSON. Not escaped.
std::string display(const nlohmann::json& value);

/// `obj[key]` as display text; em dash when `obj` is not an object or lacks `key`.
std::string display_field(const nlohmann::json& obj, const char* key);

/// Fixed-point formatting with `digits` decimals ("—" for NaN/inf).
std::string fmt_fixed(double v, int digits);

/// Human-scaled time from nanoseconds: "812 ns", "3.41 µs", "12.0 ms", "1.50 s".
std::string fmt_time_ns(double ns);

/// Signed percentage of a fraction: 0.2 -> "+20.0%".
std::string fmt_signed_percent(double fraction);

/// Percentage of a fraction: 0.05 -> "5.0%".
std::string fmt_percent(double fraction);

/// Rate with SI prefix: 1.2e9 -> "1.20 G" (caller appends the unit).
std::string fmt_si(double v);

/// Serialises `value` for embedding inside a <script> element: ASCII only, and < > &
/// written as \u escapes so no "</script>" or "<!--" can appear in the output.
std::string json_for_script(const nlohmann::json& value);

/// Style sheet shared by all report pages.
const char* base_css();

/// Opening of a page up to and including <body>: doctype, charset, title (escaped), CSS
/// (base_css() followed by `extra_css`).
std::string page_head(std::string_view title, std::string_view extra_css = {});

}  // namespace moecheck::reports::detail
