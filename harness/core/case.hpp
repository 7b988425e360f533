// moecheck routing cases: one self-contained, replayable routing problem.
// Pure C++17 (no LibTorch): shared by generators, shrinker, corpus I/O, the fuzzer and plugins.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/routing.hpp"

namespace moecheck {

/// Memory layout of the gating tensor inside its storage buffer.
enum class Layout : int {
  contiguous = 0,  ///< row_stride = E, col_stride = 1
  padded = 1,      ///< row_stride = E + pad (pad >= 1), col_stride = 1 (a slice of a wider tensor)
  transposed = 2,  ///< stored as [E, T]: row_stride = 1, col_stride = T (a .t() view)
  strided = 3,     ///< col_stride >= 2 and row_stride >= E * col_stride (every other column)
};
const char* layout_name(Layout l);
bool parse_layout(const std::string& s, Layout* out);

/// A routing problem with its own storage. Logical values are kept as floats that are exactly
/// representable in `dtype`; `materialize()` lays them out in dtype bytes with the layout.
struct RoutingCase {
  Family family = Family::gemma4;
  DType dtype = DType::f32;
  std::int64_t T = 0;
  std::int64_t E = 1;
  int k = 1;
  Layout layout = Layout::contiguous;
  std::int64_t pad = 0;          ///< padded: extra elements per row; strided: col_stride - 1
  std::vector<float> logits;     ///< [T, E] row-major logical values (exact in dtype)
  std::vector<float> scale;      ///< [E] per_expert_scale (gemma4) - empty means all ones
  std::vector<float> bias;       ///< [E] selection bias (sigmoid_grouped) - empty means zeros
  int n_group = 1;
  int topk_group = 1;
  float routed_scaling = 1.0f;

  // Provenance (not part of the problem's math).
  std::uint64_t seed = 0;        ///< generator seed that produced the case
  std::string value_family;      ///< e.g. "normal", "ties", "near-ties", "inf", "nan"
  std::string scale_family;      ///< e.g. "ones", "uniform", "zero", "negative"

  /// Strides (elements) implied by layout/pad for this T and E.
  std::int64_t row_stride() const;
  std::int64_t col_stride() const;
  /// Number of elements of the storage buffer the layout needs.
  std::int64_t storage_elems() const;

  /// Storage bytes: logits placed at their strided positions, gaps filled with a NaN pattern
  /// (so an implementation that reads outside the view produces visible garbage).
  std::vector<std::uint8_t> materialize() const;

  /// Routing params pointing into this case's own scale/bias vectors.
  RoutingParams params() const;

  /// Throws RoutingError if sizes are inconsistent (logits.size() != T*E, scale size, ...)
  /// or values are not exactly representable in dtype.
  void check_consistent() const;

  /// Number of logical elements (T * E); used as the "size" of a shrunk case.
  std::int64_t size() const { return T * E; }
};

/// A materialized case: storage + view, kept alive together.
struct MaterializedCase {
  std::vector<std::uint8_t> storage;
  GatingView view;
  RoutingParams params;
};
MaterializedCase materialize(const RoutingCase& c);

}  // namespace moecheck
