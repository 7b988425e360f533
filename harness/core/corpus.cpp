#include "harness/core/corpus.hpp"

#include "harness/core/write_once.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "reference/contract.hpp"

namespace fs = std::filesystem;

namespace moecheck {
namespace {

std::uint32_t bits_of(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

float float_of(std::uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

/// The default quiet NaN that `nan` stands for (std::nanf("") on every platform moecheck runs on).
constexpr std::uint32_t kDefaultNanBits = 0x7fc00000u;

std::string hex_float(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(v));
  return buf;
}

/// A value as written in a file of `version`: version 2 spells every NaN by its fp32 bits.
std::string value_token(float v, int version) {
  if (version >= 2 && std::isnan(v)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "nan:0x%08x", static_cast<unsigned>(bits_of(v)));
    return buf;
  }
  return hex_float(v);
}

bool special_nan(float v) { return std::isnan(v) && bits_of(v) != kDefaultNanBits; }

/// True when the float has a 16-bit pattern in `d` that converts back to the very same bits.
bool exact_in_16_bits(float v, DType d) {
  const float back = d == DType::f16 ? half_bits_to_float(float_to_half_bits(v)) : bf16_bits_to_float(float_to_bf16_bits(v));
  return bits_of(back) == bits_of(v);
}

/// Sidecar file names: a plain file name in the .case's folder.
bool valid_sidecar_name(const std::string& n) {
  if (n.empty() || n.size() > 255 || n[0] == '.') return false;
  for (char ch : n) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) return false;
  }
  return true;
}

std::string hex64(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

std::string one_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) out.push_back(ch == '\n' || ch == '\r' ? ' ' : ch);
  return out;
}

const char* expectation_name(Expectation e) { return e == Expectation::fail ? "fail" : "pass"; }

void append_values(std::ostringstream& os, const std::vector<float>& v, int version) {
  for (float x : v) os << ' ' << value_token(x, version);
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

  void set_version(int v) { version_ = v; }
  int version() const { return version_; }

  /// A value: a C99 hex float or a decimal exact in fp32, inf, -inf, nan (the default quiet
  /// NaN; in version 2 `-nan` is its negative), or in version 2 a NaN bit pattern
  /// `nan:0xHHHHHHHH` (fp32 bits) or, where `bits16` names the f16/bf16 dtype of the logits,
  /// `nan:0xHHHH` (that dtype's bits).
  float parse_float(const std::string& field, const std::string& tok, const DType* bits16 = nullptr) const {
    if (tok.compare(0, 4, "nan:") == 0 || tok.compare(0, 5, "-nan:") == 0 || tok.compare(0, 5, "+nan:") == 0) {
      return parse_nan_bits(field, tok, bits16);
    }
    if (tok == "nan" || tok == "+nan") return float_of(kDefaultNanBits);
    if (tok == "-nan") return version_ >= 2 ? float_of(kDefaultNanBits | 0x80000000u) : std::nanf("");
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

  float parse_nan_bits(const std::string& field, const std::string& tok, const DType* bits16) const {
    if (version_ < 2) {
      fail(field, quote_value(tok) + ": NaN bit patterns need format version 2 (first line 'moecheck-case 2')");
    }
    if (tok.compare(0, 6, "nan:0x") != 0) {
      fail(field, quote_value(tok) + ": write a NaN bit pattern as nan:0x<hex digits> (the sign is one of the bits)");
    }
    const std::string hex = tok.substr(6);
    for (char ch : hex) {
      if (!std::isxdigit(static_cast<unsigned char>(ch))) fail(field, quote_value(tok) + ": '" + hex + "' is not hexadecimal");
    }
    if (hex.size() == 8) {
      const std::uint32_t u = static_cast<std::uint32_t>(std::strtoul(hex.c_str(), nullptr, 16));
      if ((u & 0x7f800000u) != 0x7f800000u || (u & 0x007fffffu) == 0) {
        fail(field, quote_value(tok) + " is not an fp32 NaN (exponent bits all ones and a non-zero mantissa)" +
                        ((u & 0x7fffffffu) == 0x7f800000u ? std::string(": it is an infinity, write inf or -inf") : ""));
      }
      return float_of(u);
    }
    if (hex.size() == 4) {
      if (bits16 == nullptr) {
        fail(field, quote_value(tok) + ": 4-digit NaN patterns are for the logits of f16 and bf16 cases; fp32 values "
                                       "take 8 digits (nan:0xHHHHHHHH)");
      }
      const std::uint16_t h = static_cast<std::uint16_t>(std::strtoul(hex.c_str(), nullptr, 16));
      const bool f16 = *bits16 == DType::f16;
      const std::uint16_t exp = f16 ? 0x7c00u : 0x7f80u, man = f16 ? 0x03ffu : 0x007fu, quiet = f16 ? 0x0200u : 0x0040u;
      if ((h & exp) != exp || (h & man) == 0) {
        fail(field, quote_value(tok) + " is not a " + dtype_name(*bits16) + " NaN (exponent bits all ones and a non-zero mantissa)");
      }
      if ((h & quiet) == 0) {
        char q[8];
        std::snprintf(q, sizeof q, "%04x", static_cast<unsigned>(h | quiet));
        fail(field, quote_value(tok) + " is a signalling " + dtype_name(*bits16) + " NaN: 16-bit logits reach the code under "
                        "test as quiet NaNs (the quiet bit set), so it cannot be replayed as written; write nan:0x" + q);
      }
      return f16 ? half_bits_to_float(h) : bf16_bits_to_float(h);
    }
    fail(field, quote_value(tok) + ": a NaN bit pattern has 8 hex digits (fp32 bits) or, in f16/bf16 logits, 4");
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
  int version_ = 1;
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

namespace {

/// The .case text; `logits_file_line` (without its newline) replaces the inline logits when not empty.
std::string format_text(const CorpusEntry& e, int version, const std::string& logits_file_line) {
  const RoutingCase& c = e.c;
  std::ostringstream os;
  os << "moecheck-case " << version << "\n";
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
  os << "routed_scaling " << value_token(c.routed_scaling, version) << "\n";
  os << "scale " << c.scale.size();
  append_values(os, c.scale, version);
  os << "\nbias " << c.bias.size();
  append_values(os, c.bias, version);
  os << "\n";
  if (!logits_file_line.empty()) {
    os << logits_file_line << "\n";
  } else {
    os << "logits " << c.T << " " << c.E << "\n";
    for (std::int64_t t = 0; t < c.T; ++t) {
      for (std::int64_t e2 = 0; e2 < c.E; ++e2) {
        if (e2) os << ' ';
        os << value_token(c.logits[static_cast<std::size_t>(t * c.E + e2)], version);
      }
      os << "\n";
    }
  }
  os << "end\n";
  return os.str();
}

/// Largest sidecar accepted (the element limit in fp32).
constexpr std::int64_t kSidecarMaxBytes = kCorpusMaxElements * 4;

/// Publishes a sidecar write-once; an existing file of that name must hold the same bytes.
void publish_sidecar(const std::string& dir, const std::string& name, const std::string& bytes) {
  const WriteOnceResult r = write_file_once(dir, name, bytes);
  if (!r.created && read_whole_file(r.path) != bytes) {
    throw std::runtime_error("sidecar '" + r.path + "' already exists with other content (its name carries the "
                             "checksum of what it should hold): not replaced");
  }
}

}  // namespace

int corpus_format_version(const CorpusEntry& e, bool sidecar) {
  if (sidecar) return 2;
  const RoutingCase& c = e.c;
  if (special_nan(c.routed_scaling)) return 2;
  for (const auto* v : {&c.logits, &c.scale, &c.bias}) {
    for (float x : *v) {
      if (special_nan(x)) return 2;
    }
  }
  return 1;
}

std::string format_corpus_entry(const CorpusEntry& e) { return format_text(e, corpus_format_version(e), ""); }

std::uint64_t fnv1a64(const std::string& bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

CorpusFiles format_corpus_files(const CorpusEntry& e, const std::string& case_name, std::int64_t sidecar_elements) {
  const RoutingCase& c = e.c;
  CorpusFiles f;
  if (c.T * c.E == 0 || c.T * c.E <= sidecar_elements) {
    f.text = format_corpus_entry(e);
    return f;
  }
  bool sixteen = c.dtype != DType::f32;
  for (std::size_t i = 0; sixteen && i < c.logits.size(); ++i) sixteen = exact_in_16_bits(c.logits[i], c.dtype);
  const DType stored = sixteen ? c.dtype : DType::f32;
  f.sidecar_bytes.resize(c.logits.size() * dtype_size(stored));
  for (std::size_t i = 0; i < c.logits.size(); ++i) {
    if (stored == DType::f32) {
      const std::uint32_t u = bits_of(c.logits[i]);
      for (int b = 0; b < 4; ++b) f.sidecar_bytes[i * 4 + static_cast<std::size_t>(b)] = static_cast<char>((u >> (8 * b)) & 0xff);
    } else {
      const std::uint16_t h = stored == DType::f16 ? float_to_half_bits(c.logits[i]) : float_to_bf16_bits(c.logits[i]);
      f.sidecar_bytes[i * 2] = static_cast<char>(h & 0xff);
      f.sidecar_bytes[i * 2 + 1] = static_cast<char>(h >> 8);
    }
  }
  const std::uint64_t sum = fnv1a64(f.sidecar_bytes);
  std::string stem = case_name;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".case") == 0) stem.resize(stem.size() - 5);
  f.sidecar_name = stem + "." + hex64(sum) + ".bin";
  if (!valid_sidecar_name(f.sidecar_name)) f.sidecar_name = "logits." + hex64(sum) + ".bin";
  const std::string line = "logits_file " + std::to_string(c.T) + " " + std::to_string(c.E) + " " + f.sidecar_name + " " +
                           dtype_name(stored) + " " + std::to_string(f.sidecar_bytes.size()) + " fnv1a64:" + hex64(sum);
  f.text = format_text(e, 2, line);
  return f;
}

std::vector<std::string> corpus_sidecar_names(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    const auto toks = split_ws(text.substr(start, nl - start));
    if (toks.size() >= 4 && toks[0] == "logits_file" && valid_sidecar_name(toks[3])) out.push_back(toks[3]);
    start = nl + 1;
  }
  return out;
}

void copy_corpus_sidecars(const std::string& case_path, const std::string& case_text, const std::string& into_dir) {
  for (const std::string& name : corpus_sidecar_names(case_text)) {
    const std::string src = (fs::path(case_path).parent_path() / name).string();
    publish_sidecar(into_dir, name, read_bounded_file(src, kSidecarMaxBytes));
  }
}

CorpusEntry parse_corpus_entry(const std::string& text, const std::string& origin, const std::string& sidecar_dir) {
  reject_utf8_bom(text, origin);
  Parser p(text, origin);
  CorpusEntry e;
  RoutingCase& c = e.c;
  std::string line;
  if (!p.next(&line)) p.fail("header", "empty file (expected 'moecheck-case 1' or 'moecheck-case 2')");
  {
    auto toks = split_ws(line);
    if (toks.size() != 2 || toks[0] != "moecheck-case") {
      p.fail("header", "first line must be 'moecheck-case <version>'");
    }
    std::int64_t v = p.parse_int("header", toks[1], 0, 1000000);
    if (v < kCorpusMinFormatVersion || v > kCorpusFormatVersion) {
      p.fail("header", "format version " + quote_value(toks[1]) + " is not supported (this build reads " +
                           std::to_string(kCorpusMinFormatVersion) + " to " + std::to_string(kCorpusFormatVersion) + ")");
    }
    p.set_version(static_cast<int>(v));
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
          const float v = p.parse_float("logits", vals[e2], c.dtype == DType::f32 ? nullptr : &c.dtype);
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
    } else if (key == "logits_file") {
      if (p.version() < 2) p.fail(key, "needs format version 2 (first line 'moecheck-case 2')");
      for (const auto& r : kRequired) {
        if (r != "target" && !seen.count(r)) p.fail(key, "field '" + r + "' must come before the logits");
      }
      if (toks.size() != 7) {
        p.fail(key, "expects 'logits_file <T> <E> <file> <dtype> <bytes> fnv1a64:<16 hex digits>'");
      }
      const std::int64_t rows = p.parse_int(key, toks[1], 0, kCorpusMaxElements);
      const std::int64_t cols = p.parse_int(key, toks[2], 1, 1 << 20);
      if (rows != c.T || cols != c.E) {
        p.fail(key, "shape " + std::to_string(rows) + "x" + std::to_string(cols) + " does not match T=" +
                        std::to_string(c.T) + " E=" + std::to_string(c.E));
      }
      if (rows * cols > kCorpusMaxElements) {
        p.fail(key, "T*E = " + std::to_string(rows * cols) + " exceeds the limit of " +
                        std::to_string(kCorpusMaxElements) + " logits");
      }
      const std::string& name = toks[3];
      if (!valid_sidecar_name(name)) {
        p.fail(key, quote_value(name) + " is not a plain file name next to the .case file (letters, digits, '.', '_', "
                                        "'-'; not starting with '.'; at most 255 bytes)");
      }
      DType stored;
      if (!parse_dtype(toks[4], &stored) || (stored != DType::f32 && stored != c.dtype)) {
        p.fail(key, "sidecar dtype " + quote_value(toks[4]) + " must be f32 or the case's dtype " + dtype_name(c.dtype));
      }
      const std::int64_t want = rows * cols * static_cast<std::int64_t>(dtype_size(stored));
      const std::int64_t declared = p.parse_int(key, toks[5], 0, kSidecarMaxBytes);
      if (declared != want) {
        p.fail(key, "declares " + std::to_string(declared) + " bytes, but " + std::to_string(rows) + " x " +
                        std::to_string(cols) + " " + dtype_name(stored) + " values take " + std::to_string(want));
      }
      const std::string& sum_tok = toks[6];
      if (sum_tok.size() != 8 + 16 || sum_tok.compare(0, 8, "fnv1a64:") != 0 ||
          !std::all_of(sum_tok.begin() + 8, sum_tok.end(), [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)) != 0; })) {
        p.fail(key, "checksum " + quote_value(sum_tok) + " must be fnv1a64:<16 hex digits>");
      }
      const std::uint64_t sum = std::strtoull(sum_tok.c_str() + 8, nullptr, 16);
      std::string dir = sidecar_dir;
      if (dir.empty()) dir = fs::path(origin).parent_path().string();
      const std::string path = (fs::path(dir.empty() ? std::string(".") : dir) / name).string();
      std::error_code ec;
      const fs::file_status st = fs::status(path, ec);
      if (ec || !fs::exists(st)) {
        p.fail(key, "sidecar '" + path + "'" + " is missing (" + describe_non_regular(path) +
                        "): it must sit next to the .case file");
      }
      if (!fs::is_regular_file(st)) p.fail(key, "sidecar '" + path + "'" + " is " + describe_non_regular(path));
      const std::uintmax_t size = fs::file_size(path, ec);
      if (ec) p.fail(key, "sidecar '" + path + "'" + ": cannot read its size: " + ec.message());
      if (size != static_cast<std::uintmax_t>(declared)) {
        p.fail(key, "sidecar '" + path + "'" + " has " + std::to_string(size) + " bytes, the entry declares " +
                        std::to_string(declared) + (size < static_cast<std::uintmax_t>(declared) ? " (truncated)" : ""));
      }
      std::string bytes;
      try {
        bytes = read_bounded_file(path, declared);
      } catch (const CorpusError& ex) {
        p.fail(key, "sidecar '" + path + "'" + ": " + ex.what());
      }
      if (fnv1a64(bytes) != sum) {
        p.fail(key, "sidecar '" + path + "'" + " is corrupted: its checksum is fnv1a64:" + hex64(fnv1a64(bytes)) +
                        ", the entry declares " + sum_tok);
      }
      c.logits.resize(static_cast<std::size_t>(rows * cols));
      for (std::size_t i = 0; i < c.logits.size(); ++i) {
        const unsigned char* b = reinterpret_cast<const unsigned char*>(bytes.data()) + i * dtype_size(stored);
        float v;
        if (stored == DType::f32) {
          v = float_of(static_cast<std::uint32_t>(b[0]) | static_cast<std::uint32_t>(b[1]) << 8 |
                       static_cast<std::uint32_t>(b[2]) << 16 | static_cast<std::uint32_t>(b[3]) << 24);
        } else {
          const std::uint16_t h = static_cast<std::uint16_t>(b[0] | b[1] << 8);
          v = stored == DType::f16 ? half_bits_to_float(h) : bf16_bits_to_float(h);
          if (std::isnan(v) && (h & (stored == DType::f16 ? 0x0200u : 0x0040u)) == 0) {
            p.fail(key, "sidecar '" + path + "'" + ": row " + std::to_string(i / static_cast<std::size_t>(cols)) +
                            " column " + std::to_string(i % static_cast<std::size_t>(cols)) + " is a signalling " +
                            dtype_name(stored) + " NaN, which 16-bit logits cannot carry to the code under test");
          }
        }
        if (!std::isnan(v) && round_to_dtype(v, c.dtype) != v) {
          p.fail(key, "sidecar '" + path + "'" + ": row " + std::to_string(i / static_cast<std::size_t>(cols)) +
                          " column " + std::to_string(i % static_cast<std::size_t>(cols)) + ": " + hex_float(v) +
                          " is not exactly representable in " + dtype_name(c.dtype));
        }
        c.logits[i] = v;
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
  return parse_corpus_entry(read_bounded_file(path, kCorpusMaxFileBytes), path,
                            fs::path(path).parent_path().empty() ? std::string(".") : fs::path(path).parent_path().string());
}

std::string corpus_file_name(const CorpusEntry& e) {
  std::string name = e.target + "-" + (e.signature.empty() ? std::string("case") : e.signature);
  for (char& ch : name) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) ch = '_';
  }
  return name + ".case";
}

std::string write_corpus_entry(const CorpusEntry& e, const std::string& dir, std::int64_t sidecar_elements) {
  const std::string name = corpus_file_name(e);
  const CorpusFiles f = format_corpus_files(e, name, sidecar_elements);
  // The sidecar first: a reader that sees the .case finds its logits.
  if (!f.sidecar_name.empty()) publish_sidecar(dir, f.sidecar_name, f.sidecar_bytes);
  return write_file_once(dir, name, f.text).path;
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
