// moecheck array files: implementation of reference/check/arrays.hpp.
#include "reference/check/arrays.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <utility>

#include "reference/routing.hpp"

namespace fs = std::filesystem;

namespace moecheck {
namespace {

constexpr std::int64_t kMaxDim = std::int64_t{1} << 62;

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// A value echoed in a message: printable ASCII kept, anything else as \xNN, cut after 48 bytes.
std::string echo(const std::string& v) {
  std::string out = "'";
  const std::size_t n = std::min<std::size_t>(v.size(), 48);
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char ch = static_cast<unsigned char>(v[i]);
    if (ch >= 0x20 && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      static const char* hex = "0123456789ABCDEF";
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  out += "'";
  if (n < v.size()) out += "... (" + std::to_string(v.size()) + " bytes)";
  return out;
}

std::uint64_t read_le(const std::string& b, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<std::size_t>(i)]);
  return v;
}

/// Product of the dimensions times `elem`, or -1 on overflow.
std::int64_t byte_count(const std::vector<std::int64_t>& shape, std::size_t elem) {
  std::int64_t n = static_cast<std::int64_t>(elem);
  for (std::int64_t d : shape) {
    if (d == 0) return 0;
    if (n > std::numeric_limits<std::int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

void byte_swap_elements(std::vector<std::uint8_t>& bytes, std::size_t elem) {
  for (std::size_t i = 0; i + elem <= bytes.size(); i += elem) std::reverse(bytes.begin() + static_cast<std::ptrdiff_t>(i),
                                                                            bytes.begin() + static_cast<std::ptrdiff_t>(i + elem));
}

/// Fortran-order element bytes to C order.
std::vector<std::uint8_t> fortran_to_c(const std::vector<std::uint8_t>& in, const std::vector<std::int64_t>& shape,
                                       std::size_t elem) {
  std::vector<std::uint8_t> out(in.size());
  const std::size_t rank = shape.size();
  const std::int64_t n = static_cast<std::int64_t>(in.size() / elem);
  // C strides (elements) of each dimension.
  std::vector<std::int64_t> cstride(rank, 1);
  for (std::size_t d = rank; d-- > 1;) cstride[d - 1] = cstride[d] * shape[d];
  std::vector<std::int64_t> idx(rank, 0);
  for (std::int64_t f = 0; f < n; ++f) {  // f walks the file's (Fortran) order: first index fastest
    std::int64_t c = 0;
    for (std::size_t d = 0; d < rank; ++d) c += idx[d] * cstride[d];
    std::memcpy(out.data() + static_cast<std::size_t>(c) * elem, in.data() + static_cast<std::size_t>(f) * elem, elem);
    for (std::size_t d = 0; d < rank; ++d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

std::string read_whole(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw ArrayFileError(path, "file", "no such file");
  if (!fs::is_regular_file(st)) throw ArrayFileError(path, "file", "not a regular file");
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) throw ArrayFileError(path, "file", "cannot read its size: " + ec.message());
  if (size > static_cast<std::uintmax_t>(kArrayMaxFileBytes)) {
    throw ArrayFileError(path, "file", "larger than " + std::to_string(kArrayMaxFileBytes) + " bytes");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArrayFileError(path, "file", std::string("cannot open: ") + std::strerror(errno));
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) throw ArrayFileError(path, "file", "short read");
  return bytes;
}

// ---- the .npy header: a Python dict literal ------------------------------------------------

struct PyValue {
  enum class Kind { string, boolean, tuple, list, other } kind = Kind::other;
  std::string text;                 ///< string value
  bool flag = false;                ///< boolean value
  std::vector<std::int64_t> items;  ///< tuple of integers
};

class HeaderParser {
 public:
  HeaderParser(const std::string& s, const std::string& origin) : s_(s), origin_(origin) {}

  [[noreturn]] void fail(const std::string& problem) const {
    throw ArrayFileError(origin_, "header", problem + " at byte " + std::to_string(i_) + " of the header " + echo(s_));
  }

  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c, const char* what) {
    if (!eat(c)) fail(std::string("expected ") + what);
  }

  std::string string_literal() {
    ws();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) fail("expected a quoted string");
    const char q = s_[i_++];
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == q) break;
      if (c == '\\') {
        if (i_ >= s_.size()) fail("unterminated string");
        const char e = s_[i_++];
        if (e != '\\' && e != '\'' && e != '"') fail(std::string("unsupported escape \\") + e + " in a string");
        out += e;
      } else {
        out += c;
      }
    }
    return out;
  }

  std::int64_t integer() {
    ws();
    bool neg = false;
    if (i_ < s_.size() && s_[i_] == '-') {
      neg = true;
      ++i_;
    }
    if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') fail("expected an integer");
    std::int64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > kMaxDim / 10) fail("integer too large");
      v = v * 10 + (s_[i_++] - '0');
    }
    if (i_ < s_.size() && (s_[i_] == 'L' || s_[i_] == 'l')) ++i_;  // Python 2 long suffix
    return neg ? -v : v;
  }

  PyValue value() {
    ws();
    PyValue v;
    if (i_ >= s_.size()) fail("expected a value");
    const char c = s_[i_];
    if (c == '\'' || c == '"') {
      v.kind = PyValue::Kind::string;
      v.text = string_literal();
    } else if (s_.compare(i_, 4, "True") == 0) {
      v.kind = PyValue::Kind::boolean;
      v.flag = true;
      i_ += 4;
    } else if (s_.compare(i_, 5, "False") == 0) {
      v.kind = PyValue::Kind::boolean;
      i_ += 5;
    } else if (c == '(') {
      ++i_;
      v.kind = PyValue::Kind::tuple;
      if (eat(')')) return v;
      while (true) {
        v.items.push_back(integer());
        if (eat(')')) break;
        expect(',', "',' or ')' in the shape tuple");
        if (eat(')')) break;
      }
    } else if (c == '[') {
      v.kind = PyValue::Kind::list;
      skip_bracketed();
    } else {
      fail("unexpected " + echo(std::string(1, c)));
    }
    return v;
  }

  /// Skips a [...] value (nested brackets and strings) so that a list descr can be named.
  void skip_bracketed() {
    int depth = 0;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '\'' || c == '"') {
        string_literal();
        continue;
      }
      ++i_;
      if (c == '[' || c == '(') ++depth;
      if (c == ']' || c == ')') {
        if (--depth == 0) return;
      }
    }
    fail("unterminated list");
  }

  /// The whole header: {key: value, ...} followed only by blanks.
  std::map<std::string, PyValue> dict() {
    std::map<std::string, PyValue> out;
    expect('{', "'{' (the header is a Python dict literal)");
    if (!eat('}')) {
      while (true) {
        const std::size_t at = i_;
        const std::string key = string_literal();
        if (key != "descr" && key != "fortran_order" && key != "shape") {
          i_ = at;
          fail("unknown key " + echo(key) + " (a .npy header has exactly 'descr', 'fortran_order' and 'shape')");
        }
        expect(':', "':' after a key");
        PyValue v = value();
        if (!out.emplace(key, std::move(v)).second) fail("key " + echo(key) + " appears twice");
        if (eat('}')) break;
        expect(',', "',' or '}' after a value");
        if (eat('}')) break;
      }
    }
    ws();
    if (i_ != s_.size()) fail("unexpected content after the dict");
    return out;
  }

 private:
  const std::string& s_;
  const std::string& origin_;
  std::size_t i_ = 0;
};

struct DescrInfo {
  ElemType type;
  bool big_endian;
};

DescrInfo decode_descr(const std::string& d, const std::string& origin) {
  const std::string supported =
      " (supported: float16 '<f2', float32 '<f4', float64 '<f8', int32 '<i4', int64 '<i8', and 2-byte raw "
      "'|V2', '<V2' or '<u2' for bfloat16 with an explicit bf16 dtype option; '>' byte order is converted)";
  if (d.size() < 3) throw ArrayFileError(origin, "descr", "dtype " + echo(d) + " is not supported" + supported);
  const char order = d[0];
  const std::string code = d.substr(1);
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    throw ArrayFileError(origin, "descr", "dtype " + echo(d) + " has no byte-order character" + supported);
  }
  const bool big = order == '>';
  ElemType t;
  if (code == "f2") t = ElemType::f16;
  else if (code == "f4") t = ElemType::f32;
  else if (code == "f8") t = ElemType::f64;
  else if (code == "i4") t = ElemType::i32;
  else if (code == "i8") t = ElemType::i64;
  else if (code == "V2" || code == "u2") t = ElemType::raw16;
  else throw ArrayFileError(origin, "descr", "dtype " + echo(d) + " is not supported" + supported);
  if (order == '|' && code != "V2") {
    throw ArrayFileError(origin, "descr", "dtype " + echo(d) + ": '|' (no byte order) is only valid for 1-byte or void types");
  }
  return {t, big};
}

// ---- a small JSON reader for safetensors headers --------------------------------------------

struct Json {
  enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
  std::string text;  ///< string value, or the number as written
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;
};

class JsonParser {
 public:
  JsonParser(const std::string& s, const std::string& origin) : s_(s), origin_(origin) {}

  [[noreturn]] void fail(const std::string& problem) const {
    throw ArrayFileError(origin_, "header", "malformed JSON: " + problem + " at byte " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  Json document() {
    Json v = value(0);
    ws();
    if (i_ != s_.size()) fail("unexpected content after the JSON value");
    return v;
  }

 private:
  Json value(int depth) {
    if (depth > 32) fail("nested too deeply");
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.kind = Json::Kind::object;
      ws();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return v;
      }
      while (true) {
        ws();
        std::string key = string();
        for (const auto& m : v.members) {
          if (m.first == key) fail("key " + echo(key) + " appears twice");
        }
        ws();
        if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
        ++i_;
        v.members.emplace_back(std::move(key), value(depth + 1));
        ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') {
          ++i_;
          break;
        }
        fail("expected ',' or '}'");
      }
    } else if (c == '[') {
      ++i_;
      v.kind = Json::Kind::array;
      ws();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return v;
      }
      while (true) {
        v.items.push_back(value(depth + 1));
        ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          break;
        }
        fail("expected ',' or ']'");
      }
    } else if (c == '"') {
      v.kind = Json::Kind::string;
      v.text = string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Kind::number;
      const std::size_t start = i_;
      if (s_[i_] == '-') ++i_;
      while (i_ < s_.size() && ((s_[i_] >= '0' && s_[i_] <= '9') || s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E' ||
                                s_[i_] == '+' || s_[i_] == '-')) {
        ++i_;
      }
      v.text = s_.substr(start, i_ - start);
    } else if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 5, "false") == 0) {
      v.kind = Json::Kind::boolean;
      v.text = s_[i_] == 't' ? "true" : "false";
      i_ += v.text.size();
    } else if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else {
      fail("unexpected " + echo(std::string(1, c)));
    }
    return v;
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int j = 0; j < 4; ++j) {
      const char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string");
    ++i_;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') break;
      if (c < 0x20) fail("control byte in a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') fail("unpaired surrogate");
            i_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("unpaired surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape \\") + e);
      }
    }
    return out;
  }

  const std::string& s_;
  const std::string& origin_;
  std::size_t i_ = 0;
};

/// A JSON number that must be an integer in [0, 2^62].
std::int64_t json_count(const Json& v, const std::string& origin, const std::string& what) {
  if (v.kind != Json::Kind::number || v.text.empty() || v.text.size() > 19 ||
      !std::all_of(v.text.begin(), v.text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    throw ArrayFileError(origin, "header", what + " must be a non-negative integer, got " +
                                               (v.kind == Json::Kind::number ? echo(v.text) : std::string("a non-number")));
  }
  const long long n = std::stoll(v.text);
  if (n > kMaxDim) throw ArrayFileError(origin, "header", what + " " + v.text + " is too large");
  return n;
}

const char* safetensors_dtype(ElemType t) {
  switch (t) {
    case ElemType::f16: return "F16";
    case ElemType::bf16: return "BF16";
    case ElemType::raw16: return "BF16";
    case ElemType::f32: return "F32";
    case ElemType::f64: return "F64";
    case ElemType::i32: return "I32";
    case ElemType::i64: return "I64";
  }
  return "?";
}

}  // namespace

const char* elem_type_name(ElemType t) {
  switch (t) {
    case ElemType::f16: return "float16";
    case ElemType::bf16: return "bfloat16";
    case ElemType::f32: return "float32";
    case ElemType::f64: return "float64";
    case ElemType::i32: return "int32";
    case ElemType::i64: return "int64";
    case ElemType::raw16: return "raw16";
  }
  return "unknown";
}

std::size_t elem_type_size(ElemType t) {
  switch (t) {
    case ElemType::f16:
    case ElemType::bf16:
    case ElemType::raw16: return 2;
    case ElemType::f32:
    case ElemType::i32: return 4;
    case ElemType::f64:
    case ElemType::i64: return 8;
  }
  return 1;
}

ArrayFileError::ArrayFileError(const std::string& origin, const std::string& field, const std::string& problem)
    : std::invalid_argument(origin + ": " + field + ": " + problem), origin_(origin), field_(field), problem_(problem) {}

std::int64_t HostArray::elements() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::string HostArray::shape_str() const { return shape_text(shape); }

double HostArray::as_double(std::int64_t i) const {
  const std::uint8_t* p = bytes.data() + static_cast<std::size_t>(i) * elem_type_size(type);
  switch (type) {
    case ElemType::f16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      return half_bits_to_float(h);
    }
    case ElemType::bf16:
    case ElemType::raw16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      return bf16_bits_to_float(h);
    }
    case ElemType::f32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case ElemType::f64: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case ElemType::i32:
    case ElemType::i64: return static_cast<double>(as_int(i));
  }
  return 0.0;
}

std::int64_t HostArray::as_int(std::int64_t i) const {
  const std::uint8_t* p = bytes.data() + static_cast<std::size_t>(i) * elem_type_size(type);
  if (type == ElemType::i32) {
    std::int32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  std::int64_t v = 0;
  if (type == ElemType::i64) std::memcpy(&v, p, 8);
  return v;
}

std::uint16_t HostArray::bits16(std::int64_t i) const {
  std::uint16_t h = 0;
  if (elem_type_size(type) == 2) std::memcpy(&h, bytes.data() + static_cast<std::size_t>(i) * 2, 2);
  return h;
}

HostArray parse_npy(const std::string& b, const std::string& origin) {
  static const char kMagic[] = "\x93NUMPY";
  if (b.size() < 6 || std::memcmp(b.data(), kMagic, 6) != 0) {
    throw ArrayFileError(origin, "magic",
                         "not a NumPy .npy file (it does not start with the bytes \\x93NUMPY; first bytes " +
                             echo(b.substr(0, 8)) + ")");
  }
  if (b.size() < 8) throw ArrayFileError(origin, "version", "truncated: the file ends inside the version bytes");
  const int major = static_cast<unsigned char>(b[6]), minor = static_cast<unsigned char>(b[7]);
  if (!(major >= 1 && major <= 3 && minor == 0)) {
    throw ArrayFileError(origin, "version", "format version " + std::to_string(major) + "." + std::to_string(minor) +
                                                " is not supported (1.0, 2.0, 3.0)");
  }
  const int len_bytes = major == 1 ? 2 : 4;
  if (b.size() < static_cast<std::size_t>(8 + len_bytes)) {
    throw ArrayFileError(origin, "header length", "truncated: the file ends inside the header length");
  }
  const std::uint64_t hl = read_le(b, 8, len_bytes);
  const std::uint64_t data_at = 8u + static_cast<unsigned>(len_bytes) + hl;
  if (hl > static_cast<std::uint64_t>(kNpyMaxHeaderBytes)) {
    throw ArrayFileError(origin, "header length", "header length " + std::to_string(hl) + " is larger than the limit of " +
                                                      std::to_string(kNpyMaxHeaderBytes) + " bytes");
  }
  if (data_at > b.size()) {
    throw ArrayFileError(origin, "header length", "header length " + std::to_string(hl) +
                                                      " goes past the end of the file (" + std::to_string(b.size()) +
                                                      " bytes): truncated or not a .npy file");
  }
  const std::string header = b.substr(8u + static_cast<unsigned>(len_bytes), hl);
  for (std::size_t i = 0; i < header.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(header[i]);
    if (ch >= 0x7f || (ch < 0x20 && ch != '\n' && ch != '\t' && ch != '\r')) {
      throw ArrayFileError(origin, "header", "byte " + std::to_string(i) + " of the header is not printable ASCII: " +
                                                 echo(header));
    }
  }
  HeaderParser hp(header, origin);
  const auto dict = hp.dict();
  for (const char* key : {"descr", "fortran_order", "shape"}) {
    if (!dict.count(key)) throw ArrayFileError(origin, "header", std::string("missing key '") + key + "' in " + echo(header));
  }
  const PyValue& descr = dict.at("descr");
  if (descr.kind == PyValue::Kind::list) {
    throw ArrayFileError(origin, "descr", "structured dtypes (a list descr) are not supported; save a plain numeric array");
  }
  if (descr.kind != PyValue::Kind::string) throw ArrayFileError(origin, "descr", "'descr' must be a string");
  const PyValue& fo = dict.at("fortran_order");
  if (fo.kind != PyValue::Kind::boolean) throw ArrayFileError(origin, "fortran_order", "'fortran_order' must be True or False");
  const PyValue& sh = dict.at("shape");
  if (sh.kind != PyValue::Kind::tuple) throw ArrayFileError(origin, "shape", "'shape' must be a tuple of integers");
  for (std::int64_t d : sh.items) {
    if (d < 0) throw ArrayFileError(origin, "shape", "negative dimension in " + shape_text(sh.items));
  }
  const DescrInfo di = decode_descr(descr.text, origin);
  HostArray a;
  a.type = di.type;
  a.shape = sh.items;
  a.origin = origin;
  a.descr = descr.text;
  const std::size_t es = elem_type_size(a.type);
  const std::int64_t need = byte_count(a.shape, es);
  if (need < 0) throw ArrayFileError(origin, "shape", "shape " + shape_text(a.shape) + " overflows a 64-bit byte count");
  const std::uint64_t have = b.size() - data_at;
  if (have < static_cast<std::uint64_t>(need)) {
    throw ArrayFileError(origin, "data", "truncated: shape " + shape_text(a.shape) + " of " + elem_type_name(a.type) +
                                             " needs " + std::to_string(need) + " bytes of data, the file has " +
                                             std::to_string(have));
  }
  if (have > static_cast<std::uint64_t>(need)) {
    throw ArrayFileError(origin, "data", std::to_string(have - static_cast<std::uint64_t>(need)) +
                                             " bytes after the data (shape " + shape_text(a.shape) + " of " +
                                             elem_type_name(a.type) + " needs " + std::to_string(need) +
                                             "): wrong shape in the header or a corrupted file");
  }
  a.bytes.assign(b.begin() + static_cast<std::ptrdiff_t>(data_at), b.end());
  if (di.big_endian && es > 1) byte_swap_elements(a.bytes, es);
  if (fo.flag && a.shape.size() >= 2) a.bytes = fortran_to_c(a.bytes, a.shape, es);
  return a;
}

HostArray read_npy_file(const std::string& path) { return parse_npy(read_whole(path), path); }

std::string format_npy(const HostArray& a) {
  const char* descr = "<f4";
  switch (a.type) {
    case ElemType::f16: descr = "<f2"; break;
    case ElemType::bf16:
    case ElemType::raw16: descr = "<V2"; break;
    case ElemType::f32: descr = "<f4"; break;
    case ElemType::f64: descr = "<f8"; break;
    case ElemType::i32: descr = "<i4"; break;
    case ElemType::i64: descr = "<i8"; break;
  }
  std::string shape = "(";
  for (std::size_t i = 0; i < a.shape.size(); ++i) {
    shape += std::to_string(a.shape[i]);
    shape += a.shape.size() == 1 ? "," : (i + 1 < a.shape.size() ? ", " : "");
  }
  shape += ")";
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  int version = 1;
  std::size_t prefix = 10;
  std::size_t total = prefix + dict.size() + 1;
  if ((total + 63) / 64 * 64 - prefix > 65535) {
    version = 2;
    prefix = 12;
    total = prefix + dict.size() + 1;
  }
  const std::size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(version);
  out += '\0';
  const std::size_t hl = dict.size();
  for (std::size_t i = 0; i < prefix - 8; ++i) out += static_cast<char>((hl >> (8 * i)) & 0xff);
  out += dict;
  out.append(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size());
  return out;
}

std::map<std::string, HostArray> parse_safetensors(const std::string& b, const std::string& origin) {
  if (b.size() < 8) throw ArrayFileError(origin, "header length", "truncated: a safetensors file starts with an 8-byte header size");
  const std::uint64_t n = read_le(b, 0, 8);
  if (n > static_cast<std::uint64_t>(kSafetensorsMaxHeaderBytes)) {
    throw ArrayFileError(origin, "header length", "header size " + std::to_string(n) + " is larger than the limit of " +
                                                      std::to_string(kSafetensorsMaxHeaderBytes) +
                                                      " bytes (not a safetensors file?)");
  }
  if (n > b.size() - 8) {
    throw ArrayFileError(origin, "header length", "header size " + std::to_string(n) + " goes past the end of the file (" +
                                                      std::to_string(b.size()) + " bytes): truncated");
  }
  const std::string header = b.substr(8, n);
  if (header.empty() || header[0] != '{') throw ArrayFileError(origin, "header", "the JSON header does not start with '{'");
  const Json doc = JsonParser(header, origin).document();
  if (doc.kind != Json::Kind::object) throw ArrayFileError(origin, "header", "the JSON header must be an object");
  const std::uint64_t data_at = 8 + n;
  const std::uint64_t data_size = b.size() - data_at;
  std::map<std::string, HostArray> out;
  std::vector<std::pair<std::int64_t, std::int64_t>> spans;
  for (const auto& m : doc.members) {
    const std::string& name = m.first;
    if (name == "__metadata__") {
      if (m.second.kind != Json::Kind::object) throw ArrayFileError(origin, "__metadata__", "must be an object");
      for (const auto& kv : m.second.members) {
        if (kv.second.kind != Json::Kind::string) {
          throw ArrayFileError(origin, "__metadata__", "value of " + echo(kv.first) + " must be a string");
        }
      }
      continue;
    }
    const std::string where = origin + ":" + name;
    if (m.second.kind != Json::Kind::object) throw ArrayFileError(where, "header", "tensor entry must be a JSON object");
    const Json* dtype = nullptr;
    const Json* shape = nullptr;
    const Json* offsets = nullptr;
    for (const auto& kv : m.second.members) {
      if (kv.first == "dtype") dtype = &kv.second;
      else if (kv.first == "shape") shape = &kv.second;
      else if (kv.first == "data_offsets") offsets = &kv.second;
      else throw ArrayFileError(where, "header", "unknown key " + echo(kv.first) + " (dtype, shape, data_offsets)");
    }
    if (!dtype || !shape || !offsets) throw ArrayFileError(where, "header", "needs 'dtype', 'shape' and 'data_offsets'");
    if (dtype->kind != Json::Kind::string) throw ArrayFileError(where, "dtype", "must be a string");
    HostArray a;
    a.origin = where;
    a.descr = dtype->text;
    if (dtype->text == "F16") a.type = ElemType::f16;
    else if (dtype->text == "BF16") a.type = ElemType::bf16;
    else if (dtype->text == "F32") a.type = ElemType::f32;
    else if (dtype->text == "F64") a.type = ElemType::f64;
    else if (dtype->text == "I32") a.type = ElemType::i32;
    else if (dtype->text == "I64") a.type = ElemType::i64;
    else {
      throw ArrayFileError(where, "dtype", "dtype " + echo(dtype->text) + " is not supported (F16, BF16, F32, F64, I32, I64)");
    }
    if (shape->kind != Json::Kind::array) throw ArrayFileError(where, "shape", "must be an array of integers");
    for (const Json& d : shape->items) a.shape.push_back(json_count(d, where, "a dimension"));
    if (offsets->kind != Json::Kind::array || offsets->items.size() != 2) {
      throw ArrayFileError(where, "data_offsets", "must be [begin, end]");
    }
    const std::int64_t begin = json_count(offsets->items[0], where, "data_offsets begin");
    const std::int64_t end = json_count(offsets->items[1], where, "data_offsets end");
    if (begin > end || static_cast<std::uint64_t>(end) > data_size) {
      throw ArrayFileError(where, "data_offsets", "[" + std::to_string(begin) + ", " + std::to_string(end) +
                                                      "] is not inside the data (" + std::to_string(data_size) +
                                                      " bytes): truncated or corrupted");
    }
    const std::int64_t need = byte_count(a.shape, elem_type_size(a.type));
    if (need < 0) throw ArrayFileError(where, "shape", "shape " + a.shape_str() + " overflows a 64-bit byte count");
    if (end - begin != need) {
      throw ArrayFileError(where, "data_offsets", "span of " + std::to_string(end - begin) + " bytes, but shape " +
                                                      a.shape_str() + " of " + elem_type_name(a.type) + " needs " +
                                                      std::to_string(need));
    }
    a.bytes.assign(b.begin() + static_cast<std::ptrdiff_t>(data_at + static_cast<std::uint64_t>(begin)),
                   b.begin() + static_cast<std::ptrdiff_t>(data_at + static_cast<std::uint64_t>(end)));
    spans.emplace_back(begin, end);
    out.emplace(name, std::move(a));
  }
  std::sort(spans.begin(), spans.end());
  std::int64_t at = 0;
  for (const auto& s : spans) {
    if (s.first < at) throw ArrayFileError(origin, "data_offsets", "tensors overlap at byte " + std::to_string(s.first));
    if (s.first > at) {
      throw ArrayFileError(origin, "data_offsets", "bytes " + std::to_string(at) + " to " + std::to_string(s.first) +
                                                       " of the data belong to no tensor (a hole)");
    }
    at = s.second;
  }
  if (static_cast<std::uint64_t>(at) != data_size) {
    throw ArrayFileError(origin, "data", std::to_string(data_size - static_cast<std::uint64_t>(at)) +
                                             " bytes after the last tensor's data");
  }
  return out;
}

std::map<std::string, HostArray> read_safetensors_file(const std::string& path) {
  return parse_safetensors(read_whole(path), path);
}

std::string format_safetensors(const std::map<std::string, HostArray>& tensors) {
  std::string json = "{";
  std::string data;
  bool first = true;
  for (const auto& [name, a] : tensors) {
    if (!first) json += ",";
    first = false;
    json += "\"";
    for (char c : name) {
      if (c == '"' || c == '\\') json += '\\';
      json += c;
    }
    json += "\":{\"dtype\":\"" + std::string(safetensors_dtype(a.type)) + "\",\"shape\":[";
    for (std::size_t i = 0; i < a.shape.size(); ++i) json += (i ? "," : "") + std::to_string(a.shape[i]);
    json += "],\"data_offsets\":[" + std::to_string(data.size()) + "," + std::to_string(data.size() + a.bytes.size()) + "]}";
    data.append(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size());
  }
  json += "}";
  while (json.size() % 8) json += ' ';
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((static_cast<std::uint64_t>(json.size()) >> (8 * i)) & 0xff);
  return out + json + data;
}

}  // namespace moecheck
