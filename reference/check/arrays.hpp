// moecheck array files: NumPy `.npy` and safetensors readers (and an `.npy` writer) for routing
// inputs and outputs computed outside moecheck. Pure C++17: no LibTorch, no CUDA, no JSON library.
//
// Every reader validates what it reads (magic, header length, header syntax, dtype, shape,
// data size) and throws ArrayFileError naming the file, the field and the problem; nothing
// is trusted, nothing crashes on a hostile file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace moecheck {

/// Element types the readers decode. `raw16` is a 2-byte element with no numeric meaning
/// declared by the file (NumPy `|V2`/`<V2` or `<u2`): the caller decides whether it is
/// bfloat16 (NumPy has no standard bfloat16 descr).
enum class ElemType : int { f16 = 0, bf16 = 1, f32 = 2, f64 = 3, i32 = 4, i64 = 5, raw16 = 6 };

/// "float16", "bfloat16", "float32", "float64", "int32", "int64", "raw16".
const char* elem_type_name(ElemType t);
/// Bytes per element (2, 2, 4, 8, 4, 8, 2).
std::size_t elem_type_size(ElemType t);

/// A decoded array: elements in C (row-major) order, little-endian, whatever the file held.
struct HostArray {
  ElemType type = ElemType::f32;
  std::vector<std::int64_t> shape;  ///< empty for a 0-d array
  std::vector<std::uint8_t> bytes;  ///< elements() * elem_type_size(type) bytes
  std::string origin;               ///< the file (and tensor) it came from, for messages
  std::string descr;                ///< the dtype as the file spelled it ("<f4", "BF16", ...)

  /// Product of the shape (1 for a 0-d array).
  std::int64_t elements() const;
  /// "[3, 4]".
  std::string shape_str() const;
  /// Element i converted to double: exact for every type except int64 beyond 2^53; raw16 is
  /// read as bfloat16.
  double as_double(std::int64_t i) const;
  /// Element i of an integer array (i32/i64) as int64.
  std::int64_t as_int(std::int64_t i) const;
  /// Raw bits of element i of a 2-byte array (f16, bf16, raw16).
  std::uint16_t bits16(std::int64_t i) const;
};

/// Error raised for an unreadable or malformed array file. what() is
/// "<origin>: <field>: <problem>" (field e.g. "magic", "header", "descr", "shape", "data").
/// Derived from std::invalid_argument (bad input: exit 2 in the CLI).
class ArrayFileError : public std::invalid_argument {
 public:
  ArrayFileError(const std::string& origin, const std::string& field, const std::string& problem);
  const std::string& origin() const { return origin_; }
  const std::string& field() const { return field_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string origin_;
  std::string field_;
  std::string problem_;
};

/// Largest array file read (bytes).
constexpr std::int64_t kArrayMaxFileBytes = std::int64_t{1} << 34;  // 16 GiB
/// Largest `.npy` header (bytes) and safetensors JSON header (bytes) accepted.
constexpr std::int64_t kNpyMaxHeaderBytes = std::int64_t{1} << 20;
constexpr std::int64_t kSafetensorsMaxHeaderBytes = std::int64_t{100} << 20;

/// Decodes the bytes of an `.npy` file (format versions 1.0, 2.0 and 3.0). Accepted descrs:
/// `<f2 <f4 <f8 <i4 <i8` (and their big-endian `>` forms, converted; `=` reads as
/// little-endian), `|V2 <V2 <u2 >u2` as raw16. `fortran_order: True` arrays are reordered to
/// C order. Rejects: a bad magic, an unsupported version, a header length beyond the file,
/// a header that is not the NumPy dict literal (keys `descr`, `fortran_order`, `shape`, each
/// exactly once), structured or other dtypes, negative dimensions, a size overflow, truncated
/// data and trailing bytes after the data. Throws ArrayFileError.
HostArray parse_npy(const std::string& bytes, const std::string& origin);
/// Reads and decodes one `.npy` file (at most kArrayMaxFileBytes). Throws ArrayFileError
/// (also when the file does not exist or is not a regular file).
HostArray read_npy_file(const std::string& path);

/// The `.npy` bytes (version 1.0, or 2.0 when the header needs it) of `a`: descr `<f2 <f4
/// <f8 <i4 <i8`, and `<V2` for bf16 and raw16; C order. The header is padded so the data
/// starts at a multiple of 64 bytes, as NumPy writes it.
std::string format_npy(const HostArray& a);

/// Decodes the bytes of a safetensors file: an 8-byte little-endian header size, a JSON
/// object mapping tensor names to {"dtype", "shape", "data_offsets"} (plus an optional
/// "__metadata__" object of strings), then the data. Accepted dtypes: F16, BF16, F32, F64,
/// I32, I64. Rejects malformed JSON, unknown keys, offsets out of the data or not matching
/// the shape, overlapping tensors and unsupported dtypes. Throws ArrayFileError; tensor
/// origins read "<origin>:<name>".
std::map<std::string, HostArray> parse_safetensors(const std::string& bytes, const std::string& origin);
/// Reads and decodes one safetensors file. Throws ArrayFileError.
std::map<std::string, HostArray> read_safetensors_file(const std::string& path);
/// Safetensors bytes of `tensors` (names in map order; bf16 and raw16 as BF16). For tests and
/// for producing inputs.
std::string format_safetensors(const std::map<std::string, HostArray>& tensors);

}  // namespace moecheck
