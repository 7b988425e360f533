// moecheck contracts: implementation of reference/contract.hpp (model, named contracts, the
// contract file reader, one-line specs and the domain check). The format is specified in
// reference/CONTRACTS.md; keep the two in sync.
#include "reference/contract.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace moecheck {

namespace {

constexpr std::size_t kMaxContractFileBytes = 64 * 1024;
constexpr int kMaxAlignment = 16;

template <class E, std::size_t N>
bool parse_enum(std::string_view s, const E (&all)[N], const char* (*name)(E), E* out) {
  for (E v : all) {
    if (s == name(v)) {
      *out = v;
      return true;
    }
  }
  return false;
}

template <class E, std::size_t N>
std::string enum_choices(const E (&all)[N], const char* (*name)(E)) {
  std::string s;
  for (E v : all) s += (s.empty() ? "" : ", ") + std::string(name(v));
  return s;
}

constexpr NanPolicy kNanPolicies[] = {NanPolicy::ranks_as_neg_inf, NanPolicy::propagates, NanPolicy::zeroes_row};
constexpr PosInfPolicy kPosInfPolicies[] = {PosInfPolicy::shares_mass, PosInfPolicy::zeroes_row,
                                            PosInfPolicy::propagates_nan};
constexpr SelectionBasis kBases[] = {SelectionBasis::exact_logits, SelectionBasis::fp32_probabilities};
constexpr TieOrder kTieOrders[] = {TieOrder::any, TieOrder::lowest_index};
constexpr MaskedRowWeights kMaskedRows[] = {MaskedRowWeights::zero, MaskedRowWeights::nan,
                                            MaskedRowWeights::zero_or_nan};
constexpr ToleranceKind kToleranceKinds[] = {ToleranceKind::derived, ToleranceKind::scaled,
                                             ToleranceKind::absolute_relative};
constexpr InputLayout kLayouts[] = {InputLayout::contiguous, InputLayout::padded, InputLayout::transposed,
                                    InputLayout::strided};

std::string num17(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string layout_list(std::uint32_t bits, const char* sep) {
  std::string s;
  for (InputLayout l : kLayouts) {
    if (bits & layout_bit(l)) s += (s.empty() ? "" : sep) + std::string(input_layout_name(l));
  }
  return s;
}

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](unsigned char ch) {
    return std::isalnum(ch) || ch == '.' || ch == '_' || ch == '-';
  });
}

/// A value of the contract file: a string, a number (integer or float text kept) or a list of strings.
struct Value {
  enum class Kind { string, number, list } kind = Kind::string;
  std::string text;                ///< string value, or the number's spelling
  std::vector<std::string> items;  ///< list
};

struct Field {
  std::string key;
  Value value;
  int line = 0;
};

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::string: return "a string";
    case Value::Kind::number: return "a number";
    case Value::Kind::list: return "a list";
  }
  return "?";
}

/// Applies fields to contracts with validation; every error names origin, line and key.
class Applier {
 public:
  explicit Applier(std::string origin) : origin_(std::move(origin)) {}

  [[noreturn]] void fail(int line, const std::string& key, const std::string& why) const {
    throw ContractError(origin_, line, key, why);
  }

  /// Builds the contract: `base` (if any) first, then every other field in order.
  Contract build(const std::vector<Field>& fields, const std::string& default_name) const {
    std::set<std::string> seen;
    for (const Field& f : fields) {
      if (!seen.insert(f.key).second) fail(f.line, f.key, "appears twice");
    }
    Contract c;
    bool named = false;
    for (const Field& f : fields) {
      if (f.key != "base") continue;
      const std::string b = string_value(f);
      if (!builtin_contract(b, &c)) {
        fail(f.line, f.key, "unknown built-in contract '" + b + "' (known: " + known_names() + ")");
      }
    }
    for (const Field& f : fields) {
      if (f.key == "base" || f.key == "description") {
        if (f.key == "description") string_value(f);
        continue;
      }
      if (f.key == "name") named = true;
      apply(c, f);
    }
    if (!named) {
      if (!valid_name(default_name)) {
        fail(0, "name", "missing, and the default name '" + default_name +
                            "' is not usable (use letters, digits, '.', '_' or '-'; at most 64)");
      }
      c.name = default_name;
    }
    // Cross-field rules.
    const int name_line = line_of(fields, "name");
    if (c.tolerance.kind != ToleranceKind::scaled && has(fields, "tolerance_scale")) {
      fail(line_of(fields, "tolerance_scale"), "tolerance_scale", "needs tolerance = \"scaled\"");
    }
    for (const char* k : {"tolerance_absolute", "tolerance_relative"}) {
      if (c.tolerance.kind != ToleranceKind::absolute_relative && has(fields, k)) {
        fail(line_of(fields, k), k, "needs tolerance = \"absolute-relative\"");
      }
    }
    if (c.tolerance.kind == ToleranceKind::absolute_relative && !has(fields, "tolerance_absolute") &&
        !has(fields, "tolerance_relative")) {
      fail(line_of(fields, "tolerance"), "tolerance",
           "\"absolute-relative\" needs tolerance_absolute and/or tolerance_relative");
    }
    if (c.tolerance.kind == ToleranceKind::scaled && !has(fields, "tolerance_scale")) {
      fail(line_of(fields, "tolerance"), "tolerance", "\"scaled\" needs tolerance_scale");
    }
    Contract same;
    if (builtin_contract(c.name, &same) && !(same == c)) {
      fail(name_line, "name",
           "'" + c.name + "' is the name of a built-in contract, and this contract differs from it " +
               "(give it another name" + (named ? "" : "; the name defaults to the file name") + ")");
    }
    return c;
  }

 private:
  static bool has(const std::vector<Field>& fs, const std::string& k) {
    return std::any_of(fs.begin(), fs.end(), [&](const Field& f) { return f.key == k; });
  }
  static int line_of(const std::vector<Field>& fs, const std::string& k) {
    for (const Field& f : fs) {
      if (f.key == k) return f.line;
    }
    return 0;
  }
  static std::string known_names() {
    std::string s;
    for (const auto& n : builtin_contract_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }

  void expect(const Field& f, Value::Kind k) const {
    if (f.value.kind != k) {
      fail(f.line, f.key, std::string("expects ") + kind_name(k) + ", got " + kind_name(f.value.kind));
    }
  }
  std::string string_value(const Field& f) const {
    expect(f, Value::Kind::string);
    return f.value.text;
  }
  double number_value(const Field& f) const {
    expect(f, Value::Kind::number);
    errno = 0;
    char* end = nullptr;
    const double d = std::strtod(f.value.text.c_str(), &end);
    if (end == f.value.text.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(d)) {
      fail(f.line, f.key, "'" + f.value.text + "' is not a finite number");
    }
    return d;
  }
  std::int64_t integer_value(const Field& f, std::int64_t lo, std::int64_t hi) const {
    expect(f, Value::Kind::number);
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(f.value.text.c_str(), &end, 10);
    if (end == f.value.text.c_str() || *end != '\0') fail(f.line, f.key, "'" + f.value.text + "' is not an integer");
    if (errno == ERANGE || v < lo || v > hi) {
      fail(f.line, f.key, "value " + f.value.text + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v;
  }
  template <class E, std::size_t N>
  E enum_value(const Field& f, const E (&all)[N], const char* (*name)(E)) const {
    const std::string s = string_value(f);
    E v{};
    if (!parse_enum(s, all, name, &v)) {
      fail(f.line, f.key, "unknown value '" + s + "' (one of: " + enum_choices(all, name) + ")");
    }
    return v;
  }
  int alignment_value(const Field& f) const {
    const std::int64_t v = integer_value(f, 1, kMaxAlignment);
    if ((v & (v - 1)) != 0) fail(f.line, f.key, "must be a power of two (1, 2, 4, 8 or 16), got " + f.value.text);
    return static_cast<int>(v);
  }

  void apply(Contract& c, const Field& f) const {
    const std::string& k = f.key;
    if (k == "name") {
      const std::string n = string_value(f);
      if (!valid_name(n)) {
        fail(f.line, k, "'" + n + "' is not a valid name (letters, digits, '.', '_' or '-'; 1 to 64 characters)");
      }
      c.name = n;
    } else if (k == "nan") {
      c.nan = enum_value(f, kNanPolicies, nan_policy_name);
    } else if (k == "pos_inf") {
      c.pos_inf = enum_value(f, kPosInfPolicies, pos_inf_policy_name);
    } else if (k == "selection") {
      c.selection = enum_value(f, kBases, selection_basis_name);
    } else if (k == "ties") {
      c.ties = enum_value(f, kTieOrders, tie_order_name);
    } else if (k == "masked_row") {
      c.masked_row = enum_value(f, kMaskedRows, masked_row_name);
    } else if (k == "tolerance") {
      c.tolerance.kind = enum_value(f, kToleranceKinds, tolerance_kind_name);
    } else if (k == "tolerance_scale") {
      const double v = number_value(f);
      if (!(v > 0.0)) fail(f.line, k, "must be > 0, got " + f.value.text);
      c.tolerance.scale = v;
    } else if (k == "tolerance_absolute" || k == "tolerance_relative") {
      const double v = number_value(f);
      if (!(v >= 0.0)) fail(f.line, k, "must be >= 0, got " + f.value.text);
      (k == "tolerance_absolute" ? c.tolerance.absolute : c.tolerance.relative) = v;
    } else if (k == "layouts") {
      expect(f, Value::Kind::list);
      if (f.value.items.empty()) fail(f.line, k, "is empty (a contract must cover at least one layout)");
      std::uint32_t bits = 0;
      for (const std::string& item : f.value.items) {
        InputLayout l{};
        if (!parse_input_layout(item, &l)) {
          fail(f.line, k, "unknown layout '" + item + "' (one of: " + enum_choices(kLayouts, input_layout_name) + ")");
        }
        if (bits & layout_bit(l)) fail(f.line, k, "lists '" + item + "' twice");
        bits |= layout_bit(l);
      }
      c.layouts = bits;
    } else if (k == "base_alignment") {
      c.base_alignment = alignment_value(f);
    } else if (k == "row_alignment") {
      c.row_alignment = alignment_value(f);
    } else if (k == "max_elements") {
      c.max_elements = integer_value(f, 0, std::int64_t{1} << 62);
    } else {
      fail(f.line, k,
           "unknown key (known: name, base, description, nan, pos_inf, selection, ties, masked_row, "
           "tolerance, tolerance_scale, tolerance_absolute, tolerance_relative, layouts, base_alignment, "
           "row_alignment, max_elements)");
    }
  }

  std::string origin_;
};

bool bare_key_char(char ch) {
  return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
}

/// Reads a TOML basic string starting at s[i] == '"'; advances i past the closing quote.
bool read_string(const std::string& s, std::size_t& i, std::string* out, std::string* err) {
  ++i;
  out->clear();
  while (i < s.size()) {
    const char ch = s[i++];
    if (ch == '"') return true;
    if (ch == '\\') {
      if (i >= s.size()) break;
      const char e = s[i++];
      switch (e) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case 't': *out += '\t'; break;
        case 'n': *out += '\n'; break;
        default: *err = std::string("unsupported escape '\\") + e + "' in a string"; return false;
      }
      continue;
    }
    *out += ch;
  }
  *err = "unterminated string (strings are one line, in double quotes)";
  return false;
}

void skip_blanks(const std::string& s, std::size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
}

/// Rest of the line after a value: blanks and an optional comment only.
bool only_comment_left(const std::string& s, std::size_t i) {
  skip_blanks(s, i);
  return i >= s.size() || s[i] == '#';
}

}  // namespace

// ---- names -------------------------------------------------------------------------------

const char* nan_policy_name(NanPolicy v) {
  switch (v) {
    case NanPolicy::ranks_as_neg_inf: return "ranks-as-neg-inf";
    case NanPolicy::propagates: return "propagates";
    case NanPolicy::zeroes_row: return "zeroes-row";
  }
  return "?";
}
const char* pos_inf_policy_name(PosInfPolicy v) {
  switch (v) {
    case PosInfPolicy::shares_mass: return "shares-mass";
    case PosInfPolicy::zeroes_row: return "zeroes-row";
    case PosInfPolicy::propagates_nan: return "propagates-nan";
  }
  return "?";
}
const char* selection_basis_name(SelectionBasis v) {
  switch (v) {
    case SelectionBasis::exact_logits: return "exact-logits";
    case SelectionBasis::fp32_probabilities: return "fp32-probabilities";
  }
  return "?";
}
const char* tie_order_name(TieOrder v) {
  switch (v) {
    case TieOrder::any: return "any";
    case TieOrder::lowest_index: return "lowest-index";
  }
  return "?";
}
const char* masked_row_name(MaskedRowWeights v) {
  switch (v) {
    case MaskedRowWeights::zero: return "zero";
    case MaskedRowWeights::nan: return "nan";
    case MaskedRowWeights::zero_or_nan: return "zero-or-nan";
  }
  return "?";
}
const char* tolerance_kind_name(ToleranceKind v) {
  switch (v) {
    case ToleranceKind::derived: return "derived";
    case ToleranceKind::scaled: return "scaled";
    case ToleranceKind::absolute_relative: return "absolute-relative";
  }
  return "?";
}
const char* input_layout_name(InputLayout v) {
  switch (v) {
    case InputLayout::contiguous: return "contiguous";
    case InputLayout::padded: return "padded";
    case InputLayout::transposed: return "transposed";
    case InputLayout::strided: return "strided";
  }
  return "?";
}
bool parse_input_layout(std::string_view s, InputLayout* out) {
  return parse_enum(s, kLayouts, input_layout_name, out);
}

// ---- model ---------------------------------------------------------------------------------

bool WeightTolerance::operator==(const WeightTolerance& o) const {
  if (kind != o.kind) return false;
  switch (kind) {
    case ToleranceKind::derived: return true;
    case ToleranceKind::scaled: return scale == o.scale;
    case ToleranceKind::absolute_relative: return absolute == o.absolute && relative == o.relative;
  }
  return false;
}

bool Contract::strict_semantics() const {
  const Contract s;
  return nan == s.nan && pos_inf == s.pos_inf && selection == s.selection && ties == s.ties &&
         masked_row == s.masked_row && tolerance == s.tolerance;
}

bool Contract::operator==(const Contract& o) const {
  return name == o.name && nan == o.nan && pos_inf == o.pos_inf && selection == o.selection && ties == o.ties &&
         masked_row == o.masked_row && tolerance == o.tolerance && layouts == o.layouts &&
         base_alignment == o.base_alignment && row_alignment == o.row_alignment && max_elements == o.max_elements;
}

ContractError::ContractError(const std::string& origin, int line, const std::string& key, const std::string& problem)
    : std::invalid_argument(origin + ":" + std::to_string(line) + ": " + (key.empty() ? "" : "key '" + key + "': ") +
                            problem),
      origin_(origin),
      line_(line),
      key_(key),
      problem_(problem) {}

const std::vector<std::string>& builtin_contract_names() {
  static const std::vector<std::string> kNames = {"strict", "probability-ranked", "nan-zeroes-row",
                                                  "dense-probability-nan-zeroes-row", "nan-propagates"};
  return kNames;
}

bool builtin_contract(std::string_view name, Contract* out) {
  Contract c;
  if (name == "strict") {
    // the defaults
  } else if (name == "probability-ranked") {
    c.selection = SelectionBasis::fp32_probabilities;
    c.ties = TieOrder::lowest_index;
  } else if (name == "nan-zeroes-row") {
    c.nan = NanPolicy::zeroes_row;
    c.pos_inf = PosInfPolicy::zeroes_row;
  } else if (name == "dense-probability-nan-zeroes-row") {
    c.nan = NanPolicy::zeroes_row;
    c.pos_inf = PosInfPolicy::zeroes_row;
    c.selection = SelectionBasis::fp32_probabilities;
    c.ties = TieOrder::lowest_index;
    c.layouts = layout_bit(InputLayout::contiguous);
    c.base_alignment = 16;
  } else if (name == "nan-propagates") {
    c.nan = NanPolicy::propagates;
    c.masked_row = MaskedRowWeights::nan;
  } else {
    return false;
  }
  c.name = std::string(name);
  *out = c;
  return true;
}

std::string describe_contract(const Contract& c) {
  std::ostringstream os;
  os << "contract '" << c.name << "': ";
  switch (c.nan) {
    case NanPolicy::ranks_as_neg_inf: os << "NaN ranks as -inf; "; break;
    case NanPolicy::propagates: os << "NaN ranks above every value and makes every weight of its row NaN; "; break;
    case NanPolicy::zeroes_row: os << "a NaN anywhere in a row zeroes the row (ids 0..k-1, weights 0); "; break;
  }
  switch (c.pos_inf) {
    case PosInfPolicy::shares_mass: os << "+inf logits share the mass; "; break;
    case PosInfPolicy::zeroes_row: os << "a +inf anywhere in a row zeroes the row; "; break;
    case PosInfPolicy::propagates_nan: os << "a +inf in a softmax makes every weight of its row NaN; "; break;
  }
  os << (c.selection == SelectionBasis::exact_logits ? "selection on the exact logits"
                                                     : "selection on fp32 softmax probabilities (equal or underflowed "
                                                       "probabilities tie)");
  os << (c.ties == TieOrder::any ? ", ties in any order; " : ", ties to the lowest index; ");
  switch (c.masked_row) {
    case MaskedRowWeights::zero: os << "an all-masked row weighs 0; "; break;
    case MaskedRowWeights::nan: os << "an all-masked row weighs NaN; "; break;
    case MaskedRowWeights::zero_or_nan: os << "an all-masked row weighs 0 or NaN; "; break;
  }
  switch (c.tolerance.kind) {
    case ToleranceKind::derived: os << "derived weight bound; "; break;
    case ToleranceKind::scaled: os << num17(c.tolerance.scale) << " x the derived weight bound; "; break;
    case ToleranceKind::absolute_relative:
      os << "weight bound " << num17(c.tolerance.absolute) << " + " << num17(c.tolerance.relative) << " |w|; ";
      break;
  }
  os << "layouts " << layout_list(c.layouts, ", ");
  if (c.base_alignment > 1) os << ", base pointer aligned to " << c.base_alignment << " bytes";
  if (c.row_alignment > 1) os << ", row stride a multiple of " << c.row_alignment << " bytes";
  if (c.max_elements > 0) os << ", T*E <= " << c.max_elements;
  return os.str();
}

// ---- text, files and specs -------------------------------------------------------------------

Contract parse_contract_text(const std::string& text, const std::string& origin, const std::string& default_name) {
  std::vector<Field> fields;
  int line_no = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(start, nl - start);
    start = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    for (unsigned char ch : line) {
      if (ch == 0 || (ch < 0x20 && ch != '\t')) throw ContractError(origin, line_no, "", "contains a control or NUL byte");
    }
    std::size_t i = 0;
    skip_blanks(line, i);
    if (i >= line.size() || line[i] == '#') continue;
    if (line[i] == '[') {
      throw ContractError(origin, line_no, "", "tables ('[...]') are not supported: write 'key = value' lines only");
    }
    const std::size_t k0 = i;
    while (i < line.size() && bare_key_char(line[i])) ++i;
    const std::string key = line.substr(k0, i - k0);
    if (key.empty()) throw ContractError(origin, line_no, "", "expected 'key = value'");
    skip_blanks(line, i);
    if (i >= line.size() || line[i] != '=') throw ContractError(origin, line_no, key, "expected '=' after the key");
    ++i;
    skip_blanks(line, i);
    if (i >= line.size() || line[i] == '#') throw ContractError(origin, line_no, key, "missing value");
    Field f;
    f.key = key;
    f.line = line_no;
    std::string err;
    if (line[i] == '"') {
      f.value.kind = Value::Kind::string;
      if (!read_string(line, i, &f.value.text, &err)) throw ContractError(origin, line_no, key, err);
    } else if (line[i] == '[') {
      f.value.kind = Value::Kind::list;
      ++i;
      for (;;) {
        skip_blanks(line, i);
        if (i >= line.size()) throw ContractError(origin, line_no, key, "unterminated list (lists are one line)");
        if (line[i] == ']') {
          ++i;
          break;
        }
        if (line[i] != '"') throw ContractError(origin, line_no, key, "list items must be double-quoted strings");
        std::string item;
        if (!read_string(line, i, &item, &err)) throw ContractError(origin, line_no, key, err);
        f.value.items.push_back(item);
        skip_blanks(line, i);
        if (i < line.size() && line[i] == ',') {
          ++i;
        } else if (i >= line.size() || line[i] != ']') {
          throw ContractError(origin, line_no, key, "expected ',' or ']' in the list");
        }
      }
    } else {
      f.value.kind = Value::Kind::number;
      const std::size_t v0 = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '#') ++i;
      f.value.text = line.substr(v0, i - v0);
      const bool numeric = std::all_of(f.value.text.begin(), f.value.text.end(), [](char ch) {
        return std::isdigit(static_cast<unsigned char>(ch)) || ch == '+' || ch == '-' || ch == '.' || ch == 'e' ||
               ch == 'E';
      });
      if (!numeric) {
        throw ContractError(origin, line_no, key,
                            "value '" + f.value.text + "' is neither a number, a \"string\" nor a [list]");
      }
    }
    if (!only_comment_left(line, i)) throw ContractError(origin, line_no, key, "unexpected text after the value");
    fields.push_back(std::move(f));
  }
  return Applier(origin).build(fields, default_name);
}

Contract read_contract_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ContractError(path, 0, "", "cannot open the contract file");
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxContractFileBytes) {
      throw ContractError(path, 0, "", "larger than " + std::to_string(kMaxContractFileBytes) + " bytes");
    }
  }
  if (in.bad()) throw ContractError(path, 0, "", "read error");
  std::string stem = path;
  const auto slash = stem.find_last_of('/');
  if (slash != std::string::npos) stem = stem.substr(slash + 1);
  const auto dot = stem.find('.');
  if (dot != std::string::npos && dot > 0) stem = stem.substr(0, dot);
  return parse_contract_text(text, path, stem);
}

Contract resolve_contract(const std::string& name_or_path) {
  Contract c;
  if (builtin_contract(name_or_path, &c)) return c;
  std::ifstream probe(name_or_path);
  if (!probe && name_or_path.find('=') != std::string::npos) return parse_contract_spec(name_or_path, "contract spec");
  if (!probe) {
    std::string known;
    for (const auto& n : builtin_contract_names()) known += (known.empty() ? "" : ", ") + n;
    throw ContractError(name_or_path, 0, "",
                        "unknown contract: not a built-in contract name (" + known + ") and no such file");
  }
  return read_contract_file(name_or_path);
}

std::string format_contract_text(const Contract& c) {
  std::ostringstream os;
  os << "# moecheck routing contract (reference/CONTRACTS.md)\n";
  os << "name = \"" << c.name << "\"\n";
  os << "nan = \"" << nan_policy_name(c.nan) << "\"\n";
  os << "pos_inf = \"" << pos_inf_policy_name(c.pos_inf) << "\"\n";
  os << "selection = \"" << selection_basis_name(c.selection) << "\"\n";
  os << "ties = \"" << tie_order_name(c.ties) << "\"\n";
  os << "masked_row = \"" << masked_row_name(c.masked_row) << "\"\n";
  os << "tolerance = \"" << tolerance_kind_name(c.tolerance.kind) << "\"\n";
  if (c.tolerance.kind == ToleranceKind::scaled) os << "tolerance_scale = " << num17(c.tolerance.scale) << "\n";
  if (c.tolerance.kind == ToleranceKind::absolute_relative) {
    os << "tolerance_absolute = " << num17(c.tolerance.absolute) << "\n";
    os << "tolerance_relative = " << num17(c.tolerance.relative) << "\n";
  }
  os << "layouts = [";
  bool first = true;
  for (InputLayout l : kLayouts) {
    if (!(c.layouts & layout_bit(l))) continue;
    os << (first ? "" : ", ") << '"' << input_layout_name(l) << '"';
    first = false;
  }
  os << "]\n";
  os << "base_alignment = " << c.base_alignment << "\n";
  os << "row_alignment = " << c.row_alignment << "\n";
  os << "max_elements = " << c.max_elements << "\n";
  return os.str();
}

std::string contract_spec(const Contract& c) {
  Contract b;
  if (builtin_contract(c.name, &b) && b == c) return c.name;
  std::ostringstream os;
  os << "name=" << c.name << " nan=" << nan_policy_name(c.nan) << " pos_inf=" << pos_inf_policy_name(c.pos_inf)
     << " selection=" << selection_basis_name(c.selection) << " ties=" << tie_order_name(c.ties)
     << " masked_row=" << masked_row_name(c.masked_row) << " tolerance=" << tolerance_kind_name(c.tolerance.kind);
  if (c.tolerance.kind == ToleranceKind::scaled) os << " tolerance_scale=" << num17(c.tolerance.scale);
  if (c.tolerance.kind == ToleranceKind::absolute_relative) {
    os << " tolerance_absolute=" << num17(c.tolerance.absolute) << " tolerance_relative=" << num17(c.tolerance.relative);
  }
  os << " layouts=" << layout_list(c.layouts, ",") << " base_alignment=" << c.base_alignment
     << " row_alignment=" << c.row_alignment << " max_elements=" << c.max_elements;
  return os.str();
}

Contract parse_contract_spec(const std::string& spec, const std::string& origin) {
  std::vector<std::string> toks;
  {
    std::istringstream is(spec);
    std::string t;
    while (is >> t) toks.push_back(t);
  }
  if (toks.empty()) throw ContractError(origin, 0, "contract", "empty contract spec");
  if (toks.size() == 1 && toks[0].find('=') == std::string::npos) {
    Contract c;
    if (!builtin_contract(toks[0], &c)) {
      throw ContractError(origin, 0, "contract", "unknown built-in contract '" + toks[0] + "'");
    }
    return c;
  }
  static const std::set<std::string> kNumeric = {"tolerance_scale", "tolerance_absolute", "tolerance_relative",
                                                 "base_alignment", "row_alignment", "max_elements"};
  std::vector<Field> fields;
  for (const std::string& t : toks) {
    const auto eq = t.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw ContractError(origin, 0, "contract", "expected key=value tokens, got '" + t + "'");
    }
    Field f;
    f.key = t.substr(0, eq);
    const std::string v = t.substr(eq + 1);
    if (f.key == "layouts") {
      f.value.kind = Value::Kind::list;
      std::size_t s = 0;
      while (s <= v.size()) {
        std::size_t comma = v.find(',', s);
        if (comma == std::string::npos) comma = v.size();
        if (comma > s) f.value.items.push_back(v.substr(s, comma - s));
        s = comma + 1;
      }
    } else {
      f.value.kind = kNumeric.count(f.key) ? Value::Kind::number : Value::Kind::string;
      f.value.text = v;
    }
    fields.push_back(std::move(f));
  }
  return Applier(origin).build(fields, "custom");
}

// ---- domain ----------------------------------------------------------------------------------

InputLayout layout_of(const GatingView& g) {
  const bool unit_col = g.E <= 1 || g.col_stride == 1;
  if (unit_col && (g.T <= 1 || g.row_stride == g.E)) return InputLayout::contiguous;
  if (unit_col && g.row_stride > g.E) return InputLayout::padded;
  if (g.T > 1 && g.row_stride == 1 && g.col_stride >= g.T) return InputLayout::transposed;
  return InputLayout::strided;
}

std::string outside_contract(const Contract& c, const GatingView& g, std::string* reason_key) {
  const auto out = [&](const std::string& key, const std::string& why) {
    if (reason_key) *reason_key = key;
    return why;
  };
  const InputLayout l = layout_of(g);
  if (!(c.layouts & layout_bit(l))) {
    return out(std::string("layout ") + input_layout_name(l),
               std::string("layout ") + input_layout_name(l) + " (row_stride " + std::to_string(g.row_stride) +
                   ", col_stride " + std::to_string(g.col_stride) + ") is not among contract '" + c.name +
                   "' layouts (" + layout_list(c.layouts, ", ") + ")");
  }
  if (c.base_alignment > 1 && g.data != nullptr &&
      reinterpret_cast<std::uintptr_t>(g.data) % static_cast<std::uintptr_t>(c.base_alignment) != 0) {
    return out("base alignment", "gating base pointer is not aligned to " + std::to_string(c.base_alignment) +
                                     " bytes (contract '" + c.name + "')");
  }
  if (c.row_alignment > 1 && g.T > 1) {
    const std::int64_t bytes = g.row_stride * static_cast<std::int64_t>(dtype_size(g.dtype));
    if (bytes % c.row_alignment != 0) {
      return out("row alignment", "row stride of " + std::to_string(g.row_stride) + " elements (" +
                                      std::to_string(bytes) + " bytes) is not a multiple of " +
                                      std::to_string(c.row_alignment) + " bytes (contract '" + c.name + "')");
    }
  }
  if (c.max_elements > 0 && g.E > 0 && g.T > c.max_elements / g.E) {
    return out("T*E limit", "T*E = " + std::to_string(g.T) + "*" + std::to_string(g.E) + " exceeds max_elements " +
                                std::to_string(c.max_elements) + " of contract '" + c.name + "'");
  }
  if (reason_key) reason_key->clear();
  return {};
}

Contract restrict_domain(Contract semantics, const Contract& domain) {
  const Contract before = semantics;
  semantics.layouts &= domain.layouts;
  semantics.base_alignment = std::max(semantics.base_alignment, domain.base_alignment);
  semantics.row_alignment = std::max(semantics.row_alignment, domain.row_alignment);
  if (domain.max_elements > 0) {
    semantics.max_elements = semantics.max_elements > 0 ? std::min(semantics.max_elements, domain.max_elements)
                                                         : domain.max_elements;
  }
  if (!(semantics == before)) {  // a narrower domain is another contract: never keep a built-in name
    semantics.name = (before.name + "-on-" + domain.name).substr(0, 64);
  }
  return semantics;
}

}  // namespace moecheck
