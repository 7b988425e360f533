#include "harness/core/corpus.hpp"

#include "harness/core/write_once.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "reference/contract.hpp"

namespace fs = std::filesystem;

namespace moecheck {
namespace {

std::string hex_float(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(v));
  return buf;
}

std::string one_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) out.push_back(ch == '\n' || ch == '\r' ? ' ' : ch);
  return out;
}

const char* expectation_name(Expectation e) { return e == Expectation::fail ? "fail" : "pass"; }

void append_values(std::ostringstream& os, const std::vector<float>& v) {
  for (float x : v) os << ' ' << hex_float(x);
}

/// Splits on ASCII blanks; keeps no empty tokens.
std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

class Parser {
 public:
  Parser(const std::string& text, std::string origin) : origin_(std::move(origin)) {
    std::size_t start = 0;
    while (start <= text.size()) {
      std::size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      std::string line = text.substr(start, nl - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines_.push_back(std::move(line));
      start = nl + 1;
    }
  }

  [[noreturn]] void fail(const std::string& field, const std::string& why) const {
    throw CorpusError(origin_, line_no_, field, why);
  }

  /// Next non-blank, non-comment line; false at end of input.
  bool next(std::string* line) {
    while (pos_ < lines_.size()) {
      const std::string& l = lines_[pos_++];
      line_no_ = static_cast<int>(pos_);
      for (unsigned char ch : l) {
        if (ch == 0 || (ch < 0x20 && ch != '\t')) fail("line", "contains a control or NUL byte");
      }
      auto first = l.find_first_not_of(" \t");
      if (first == std::string::npos || l[first] == '#') continue;
      *line = l.substr(first);
      return true;
    }
    line_no_ = static_cast<int>(lines_.size());
    return false;
  }

  std::int64_t parse_int(const std::string& field, const std::string& tok, std::int64_t lo,
                         std::int64_t hi) const {
    if (tok.empty()) fail(field, "is empty");
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(tok.c_str(), &end, 10);
    if (end == tok.c_str() || *end != '\0') fail(field, quote_value(tok) + " is not an integer");
    if (errno == ERANGE || v < lo || v > hi) {
      fail(field, "value " + quote_value(tok) + " is outside [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
    }
    return v;
  }

  std::uint64_t parse_u64(const std::string& field, const std::string& tok) const {
    if (tok.empty() || tok[0] == '-') fail(field, quote_value(tok) + " is not an unsigned integer");
    errno = 0;
    char* end = nullptr;
    unsigned long long v = std::strtoull(tok.c_str(), &end, 0);
    if (end == tok.c_str() || *end != '\0' || errno == ERANGE) {
      fail(field, quote_value(tok) + " is not an unsigned 64-bit integer");
    }
    return v;
  }

  float parse_float(const std::string& field, const std::string& tok) const {
    if (tok == "nan" || tok == "+nan" || tok == "-nan") return std::nanf("");
    if (tok == "inf" || tok == "+inf") return INFINITY;
    if (tok == "-inf") return -INFINITY;
    errno = 0;
    char* end = nullptr;
    double d = std::strtod(tok.c_str(), &end);
    if (end == tok.c_str() || *end != '\0') fail(field, quote_value(tok) + " is not a number");
    if (std::isnan(d) || std::isinf(d)) fail(field, quote_value(tok) + ": spell infinities/NaN as inf, -inf, nan");
    float f = static_cast<float>(d);
    if (static_cast<double>(f) != d) fail(field, quote_value(tok) + " is not exactly representable as fp32");
    return f;
  }

  std::vector<float> parse_vector(const std::string& field, const std::vector<std::string>& toks,
                                  std::int64_t expected_max) const {
    if (toks.size() < 2) fail(field, "missing the element count");
    std::int64_t n = parse_int(field, toks[1], 0, expected_max);
    if (static_cast<std::int64_t>(toks.size()) - 2 != n) {
      fail(field, "declares " + std::to_string(n) + " values but has " +
                      std::to_string(toks.size() - 2));
    }
    std::vector<float> v;
    v.reserve(static_cast<std::size_t>(n));
    for (std::size_t i = 2; i < toks.size(); ++i) v.push_back(parse_float(field, toks[i]));
    return v;
  }

  int line_no() const { return line_no_; }

 private:
  std::string origin_;
  std::vector<std::string> lines_;
  std::size_t pos_ = 0;
  int line_no_ = 0;
};

/// What `path` is when it is not a regular file: "a dangling symbolic link", "a FIFO", ...
std::string describe_non_regular(const std::string& path) {
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(path, ec);
  if (ec || link.type() == fs::file_type::not_found) return "no such file";
  const fs::file_status st = fs::status(path, ec);
  if (link.type() == fs::file_type::symlink) {
    if (ec.value() == ELOOP) return "a symbolic link loop";
    if (st.type() == fs::file_type::not_found) return "a dangling symbolic link";
  }
  if (ec) return ec.message();
  switch (st.type()) {
    case fs::file_type::directory: return link.type() == fs::file_type::symlink ? "a symbolic link to a folder" : "a folder";
    case fs::file_type::fifo: return "a FIFO";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::block: return "a block device";
    case fs::file_type::character: return "a character device";
    default: return "not a regular file";
  }
}

}  // namespace

std::string quote_value(const std::string& value) {
  std::size_t n = std::min(value.size(), kMessageValueBytes);
  if (n < value.size()) {
    while (n > 0 && (static_cast<unsigned char>(value[n]) & 0xC0) == 0x80) --n;  // not inside a character
  }
  std::string out = "'";
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char ch = static_cast<unsigned char>(value[i]);
    if (value.compare(i, 3, "\xEF\xBB\xBF") == 0) {
      out += "\\xEF\\xBB\\xBF";
      i += 2;
    } else if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  out += "'";
  if (n < value.size()) out += "... (" + std::to_string(value.size()) + " bytes)";
  return out;
}

bool has_utf8_bom(const std::string& text) { return text.compare(0, 3, "\xEF\xBB\xBF") == 0; }

void reject_utf8_bom(const std::string& text, const std::string& origin) {
  if (has_utf8_bom(text)) {
    throw CorpusError(origin, 1, "header",
                      "the file starts with a UTF-8 byte order mark (BOM, bytes EF BB BF); save it as UTF-8 "
                      "without BOM");
  }
}

CorpusError::CorpusError(const std::string& file, int line, const std::string& field,
                         const std::string& why)
    : std::runtime_error(file + ":" + std::to_string(line) + ": field " + quote_value(field) + ": " + why),
      file_(file),
      line_(line),
      field_(field) {}

std::string format_corpus_entry(const CorpusEntry& e) {
  const RoutingCase& c = e.c;
  std::ostringstream os;
  os << "moecheck-case " << kCorpusFormatVersion << "\n";
  os << "# replay: moecheck replay <this file>\n";
  os << "target " << e.target << "\n";
  os << "mutant " << e.mutant << "\n";
  os << "device " << e.device << "\n";
  os << "expect " << expectation_name(e.expect) << "\n";
  if (!e.check.empty()) os << "check " << one_line(e.check) << "\n";
  if (!e.signature.empty()) os << "signature " << e.signature << "\n";
  if (!e.message.empty()) os << "message " << one_line(e.message) << "\n";
  if (!e.toolkit.empty()) os << "toolkit " << one_line(e.toolkit) << "\n";
  if (!e.commit.empty()) os << "commit " << one_line(e.commit) << "\n";
  if (!e.found.empty()) os << "found " << one_line(e.found) << "\n";
  if (!e.contract.empty() && e.contract != "strict") os << "contract " << one_line(e.contract) << "\n";
  os << "seed " << c.seed << "\n";
  if (!c.value_family.empty()) os << "value_family " << c.value_family << "\n";
  if (!c.scale_family.empty()) os << "scale_family " << c.scale_family << "\n";
  os << "family " << family_name(c.family) << "\n";
  os << "dtype " << dtype_name(c.dtype) << "\n";
  os << "T " << c.T << "\n";
  os << "E " << c.E << "\n";
  os << "k " << c.k << "\n";
  os << "layout " << layout_name(c.layout) << "\n";
  os << "pad " << c.pad << "\n";
  os << "n_group " << c.n_group << "\n";
  os << "topk_group " << c.topk_group << "\n";
  os << "routed_scaling " << hex_float(c.routed_scaling) << "\n";
  os << "scale " << c.scale.size();
  append_values(os, c.scale);
  os << "\nbias " << c.bias.size();
  append_values(os, c.bias);
  os << "\nlogits " << c.T << " " << c.E << "\n";
  for (std::int64_t t = 0; t < c.T; ++t) {
    for (std::int64_t e2 = 0; e2 < c.E; ++e2) {
      if (e2) os << ' ';
      os << hex_float(c.logits[static_cast<std::size_t>(t * c.E + e2)]);
    }
    os << "\n";
  }
  os << "end\n";
  return os.str();
}

CorpusEntry parse_corpus_entry(const std::string& text, const std::string& origin) {
  reject_utf8_bom(text, origin);
  Parser p(text, origin);
  CorpusEntry e;
  RoutingCase& c = e.c;
  std::string line;
  if (!p.next(&line)) p.fail("header", "empty file (expected 'moecheck-case 1')");
  {
    auto toks = split_ws(line);
    if (toks.size() != 2 || toks[0] != "moecheck-case") {
      p.fail("header", "first line must be 'moecheck-case <version>'");
    }
    std::int64_t v = p.parse_int("header", toks[1], 0, 1000000);
    if (v != kCorpusFormatVersion) {
      p.fail("header", "format version " + quote_value(toks[1]) + " is not supported (this build reads " +
                           std::to_string(kCorpusFormatVersion) + ")");
    }
  }
  static const std::set<std::string> kRequired = {"target", "family", "dtype", "T", "E", "k",
                                                  "layout"};
  std::set<std::string> seen;
  bool have_logits = false;
  bool ended = false;
  while (p.next(&line)) {
    auto toks = split_ws(line);
    const std::string key = toks[0];
    if (key == "end") {
      if (!have_logits) p.fail("end", "'end' before the 'logits' block");
      std::string extra;
      if (p.next(&extra)) p.fail("end", "unexpected content after 'end'");
      ended = true;
      break;
    }
    if (have_logits) p.fail(key, "unexpected field after the logits block (expected 'end')");
    if (!seen.insert(key).second) p.fail(key, "appears twice");
    auto rest = [&]() -> std::string {
      auto pos = line.find_first_of(" \t");
      if (pos == std::string::npos) return {};
      auto first = line.find_first_not_of(" \t", pos);
      return first == std::string::npos ? std::string() : line.substr(first);
    };
    auto single = [&]() -> std::string {
      if (toks.size() != 2) p.fail(key, "expects exactly one value");
      if (toks[1].size() > kCorpusMaxWordBytes) {
        p.fail(key, quote_value(toks[1]) + " is longer than " + std::to_string(kCorpusMaxWordBytes) + " bytes");
      }
      return toks[1];
    };
    if (key == "target") {
      e.target = single();
    } else if (key == "mutant") {
      e.mutant = single();
    } else if (key == "device") {
      e.device = single();
      if (e.device != "cpu" && e.device != "cuda") p.fail(key, "must be cpu or cuda, got " + quote_value(e.device));
    } else if (key == "expect") {
      std::string v = single();
      if (v == "pass") e.expect = Expectation::pass;
      else if (v == "fail") e.expect = Expectation::fail;
      else p.fail(key, "must be pass or fail, got " + quote_value(v));
    } else if (key == "check") {
      e.check = rest();
    } else if (key == "signature") {
      e.signature = single();
    } else if (key == "message") {
      e.message = rest();
    } else if (key == "toolkit") {
      e.toolkit = rest();
    } else if (key == "commit") {
      e.commit = rest();
    } else if (key == "found") {
      e.found = rest();
    } else if (key == "contract") {
      e.contract = rest();
      try {
        e.contract = contract_spec(parse_contract_spec(e.contract, origin));
      } catch (const ContractError& ex) {
        p.fail(key, ex.problem());
      }
    } else if (key == "seed") {
      c.seed = p.parse_u64(key, single());
    } else if (key == "value_family") {
      c.value_family = single();
    } else if (key == "scale_family") {
      c.scale_family = single();
    } else if (key == "family") {
      std::string v = single();
      if (!parse_family(v, &c.family)) p.fail(key, "unknown routing family " + quote_value(v));
    } else if (key == "dtype") {
      std::string v = single();
      if (!parse_dtype(v, &c.dtype)) p.fail(key, "unknown dtype " + quote_value(v) + " (f32, f16, bf16)");
    } else if (key == "T") {
      c.T = p.parse_int(key, single(), 0, kCorpusMaxElements);
    } else if (key == "E") {
      c.E = p.parse_int(key, single(), 1, 1 << 20);
    } else if (key == "k") {
      c.k = static_cast<int>(p.parse_int(key, single(), 1, 1 << 20));
    } else if (key == "layout") {
      std::string v = single();
      if (!parse_layout(v, &c.layout)) p.fail(key, "unknown layout " + quote_value(v));
    } else if (key == "pad") {
      c.pad = p.parse_int(key, single(), 0, 1 << 20);
    } else if (key == "n_group") {
      c.n_group = static_cast<int>(p.parse_int(key, single(), 1, 1 << 20));
    } else if (key == "topk_group") {
      c.topk_group = static_cast<int>(p.parse_int(key, single(), 1, 1 << 20));
    } else if (key == "routed_scaling") {
      c.routed_scaling = p.parse_float(key, single());
    } else if (key == "scale") {
      if (!seen.count("E")) p.fail(key, "must come after E");
      c.scale = p.parse_vector(key, toks, c.E);
      if (!c.scale.empty() && static_cast<std::int64_t>(c.scale.size()) != c.E) {
        p.fail(key, "has " + std::to_string(c.scale.size()) + " values, E is " + std::to_string(c.E));
      }
    } else if (key == "bias") {
      if (!seen.count("E")) p.fail(key, "must come after E");
      c.bias = p.parse_vector(key, toks, c.E);
      if (!c.bias.empty() && static_cast<std::int64_t>(c.bias.size()) != c.E) {
        p.fail(key, "has " + std::to_string(c.bias.size()) + " values, E is " + std::to_string(c.E));
      }
    } else if (key == "logits") {
      for (const auto& r : kRequired) {
        if (r != "target" && !seen.count(r)) p.fail(key, "field '" + r + "' must come before the logits");
      }
      if (toks.size() != 3) p.fail(key, "expects 'logits <T> <E>'");
      std::int64_t rows = p.parse_int(key, toks[1], 0, kCorpusMaxElements);
      std::int64_t cols = p.parse_int(key, toks[2], 1, 1 << 20);
      if (rows != c.T || cols != c.E) {
        p.fail(key, "block shape " + std::to_string(rows) + "x" + std::to_string(cols) + " does not match T=" +
                        std::to_string(c.T) + " E=" + std::to_string(c.E));
      }
      if (rows * cols > kCorpusMaxElements) {
        p.fail(key, "T*E = " + std::to_string(rows * cols) + " exceeds the limit of " +
                        std::to_string(kCorpusMaxElements) + " logits");
      }
      c.logits.reserve(static_cast<std::size_t>(rows * cols));
      for (std::int64_t t = 0; t < rows; ++t) {
        std::string row;
        if (!p.next(&row)) p.fail("logits", "truncated: row " + std::to_string(t) + " of " + std::to_string(rows) + " missing");
        auto vals = split_ws(row);
        if (static_cast<std::int64_t>(vals.size()) != cols) {
          p.fail("logits", "row " + std::to_string(t) + " has " + std::to_string(vals.size()) +
                               " values, expected " + std::to_string(cols));
        }
        for (std::size_t e2 = 0; e2 < vals.size(); ++e2) {
          const float v = p.parse_float("logits", vals[e2]);
          // Every logit must be exact in the declared dtype; named at its own line and column.
          if (!std::isnan(v) && round_to_dtype(v, c.dtype) != v) {
            p.fail("logits", "row " + std::to_string(t) + " column " + std::to_string(e2) + ": " +
                                 quote_value(vals[e2]) + " is not exactly representable in " +
                                 dtype_name(c.dtype) + " (nearest " + hex_float(round_to_dtype(v, c.dtype)) + ")");
          }
          c.logits.push_back(v);
        }
      }
      have_logits = true;
    } else {
      p.fail(key, "unknown field");
    }
  }
  if (!have_logits) p.fail("logits", "missing 'logits' block (file truncated?)");
  if (!ended) p.fail("end", "missing 'end' line (file truncated?)");
  for (const auto& r : kRequired) {
    if (!seen.count(r)) p.fail(r, "required field missing");
  }
  try {
    c.check_consistent();
  } catch (const std::exception& ex) {
    p.fail("case", ex.what());
  }
  return e;
}

std::string read_bounded_file(const std::string& path, std::int64_t max_bytes) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw CorpusError(path, 0, "file", "not a readable regular file (" + describe_non_regular(path) + ")");
  }
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) throw CorpusError(path, 0, "file", "cannot read size: " + ec.message());
  if (size > static_cast<std::uintmax_t>(max_bytes)) {
    throw CorpusError(path, 0, "file", "larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CorpusError(path, 0, "file", "cannot open");
  std::string text(static_cast<std::size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) throw CorpusError(path, 0, "file", "short read");
  return text;
}

CorpusEntry read_corpus_file(const std::string& path) {
  return parse_corpus_entry(read_bounded_file(path, kCorpusMaxFileBytes), path);
}

std::string corpus_file_name(const CorpusEntry& e) {
  std::string name = e.target + "-" + (e.signature.empty() ? std::string("case") : e.signature);
  for (char& ch : name) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) ch = '_';
  }
  return name + ".case";
}

std::string write_corpus_entry(const CorpusEntry& e, const std::string& dir) {
  return write_file_once(dir, corpus_file_name(e), format_corpus_entry(e)).path;
}

std::vector<std::string> list_corpus_paths(const std::vector<std::string>& paths, bool allow_empty) {
  return list_paths_with_extension(paths, ".case", allow_empty);
}

std::vector<std::string> list_paths_with_extension(const std::vector<std::string>& paths, const std::string& ext,
                                                   bool allow_empty) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->path().extension() != ext) continue;
        // Every entry named *<ext> is listed, so that one that cannot be read (a dangling
        // symbolic link, a link loop, a FIFO, ...) is reported by its reader rather than
        // skipped; only real folders with such a name are descended into instead.
        std::error_code entry_ec;
        if (it->is_directory(entry_ec) && !it->is_symlink(entry_ec)) continue;
        found.push_back(it->path().string());
      }
      if (ec) throw CorpusError(p, 0, "path", "cannot list folder: " + ec.message());
      if (found.empty() && !allow_empty) {
        throw CorpusError(p, 0, "path", "folder holds no *" + ext + " files (an empty corpus; --allow-empty accepts it)");
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (std::error_code lec; fs::exists(fs::symlink_status(p, lec))) {
      out.push_back(p);  // files as given: reading them names what is wrong with them
    } else {
      throw CorpusError(p, 0, "path", "no such file or folder");
    }
  }
  return out;
}

}  // namespace moecheck
