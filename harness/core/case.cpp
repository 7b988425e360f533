// moecheck routing cases: implementation of harness/core/case.hpp.
#include "harness/core/case.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "reference/format.hpp"

namespace moecheck {

namespace {

/* Gap fill of materialize(): quiet NaNs with a recognisable payload ("bad"). An implementation
 * that reads outside the view (wrong stride, wrong row pitch) sees NaNs, which the routing
 * contract ranks as -inf, so its selection or weights differ visibly from the reference. */
constexpr std::uint32_t kGapF32 = 0x7fc0bad0u;
constexpr std::uint16_t kGapF16 = 0x7ebau;
constexpr std::uint16_t kGapBF16 = 0x7fbau;

}  // namespace

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::contiguous: return "contiguous";
    case Layout::padded: return "padded";
    case Layout::transposed: return "transposed";
    case Layout::strided: return "strided";
  }
  return "unknown";
}

bool parse_layout(const std::string& s, Layout* out) {
  static const Layout all[] = {Layout::contiguous, Layout::padded, Layout::transposed, Layout::strided};
  for (Layout l : all) {
    if (s == layout_name(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

/* Layout -> strides (elements):
 *   contiguous  row_stride = E,                col_stride = 1
 *   padded      row_stride = E + pad,          col_stride = 1
 *   transposed  row_stride = 1,                col_stride = max(T, 1)   ([E, T] storage)
 *   strided     row_stride = E * (pad + 1),    col_stride = pad + 1
 * col_stride of transposed is clamped to 1 when T = 0 so the view stays valid (nothing is read). */
std::int64_t RoutingCase::row_stride() const {
  switch (layout) {
    case Layout::contiguous: return E;
    case Layout::padded: return E + pad;
    case Layout::transposed: return 1;
    case Layout::strided: return E * (pad + 1);
  }
  return E;
}

std::int64_t RoutingCase::col_stride() const {
  switch (layout) {
    case Layout::contiguous: return 1;
    case Layout::padded: return 1;
    case Layout::transposed: return T > 0 ? T : 1;
    case Layout::strided: return pad + 1;
  }
  return 1;
}

std::int64_t RoutingCase::storage_elems() const {
  if (T <= 0) return 0;
  switch (layout) {
    case Layout::contiguous: return T * E;
    case Layout::padded: return T * (E + pad);
    case Layout::transposed: return T * E;
    case Layout::strided: return T * E * (pad + 1);
  }
  return T * E;
}

std::vector<std::uint8_t> RoutingCase::materialize() const {
  const std::size_t es = dtype_size(dtype);
  const std::int64_t n = storage_elems();
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(n) * es);
  const std::int64_t rs = row_stride(), cs = col_stride();
  // Contiguous and transposed storage has no gaps; fp32 rows of unit column stride are copied whole.
  const bool gaps = n != T * E;
  if (dtype == DType::f32 && cs == 1 && !gaps && static_cast<std::int64_t>(logits.size()) == n) {
    if (n > 0) std::memcpy(buf.data(), logits.data(), buf.size());
    return buf;
  }
  for (std::int64_t i = 0; gaps && i < n; ++i) {
    std::uint8_t* dst = buf.data() + static_cast<std::size_t>(i) * es;
    if (dtype == DType::f32) {
      std::memcpy(dst, &kGapF32, 4);
    } else {
      const std::uint16_t h = dtype == DType::f16 ? kGapF16 : kGapBF16;
      std::memcpy(dst, &h, 2);
    }
  }
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t e = 0; e < E; ++e) {
      const float v = logits[static_cast<std::size_t>(t * E + e)];
      std::uint8_t* dst = buf.data() + static_cast<std::size_t>(t * rs + e * cs) * es;
      if (dtype == DType::f32) {
        std::memcpy(dst, &v, 4);
      } else {
        const std::uint16_t h = dtype == DType::f16 ? float_to_half_bits(v) : float_to_bf16_bits(v);
        std::memcpy(dst, &h, 2);
      }
    }
  }
  return buf;
}

RoutingParams RoutingCase::params() const {
  RoutingParams p;
  p.family = family;
  p.k = k;
  p.scale = scale.empty() ? nullptr : scale.data();
  p.bias = bias.empty() ? nullptr : bias.data();
  p.n_group = n_group;
  p.topk_group = topk_group;
  p.routed_scaling = routed_scaling;
  return p;
}

/* Structural consistency only: sizes, layout parameters and exactness of the logical values.
 * Routing-level validity (k range, groups, finite scales) is validate_routing's job, so that
 * deliberately invalid problems can still be stored as cases and replayed as error tests. */
void RoutingCase::check_consistent() const {
  if (T < 0) throw RoutingError("case: T must be >= 0 (got T = " + std::to_string(T) + ")");
  if (E < 1) throw RoutingError("case: E must be >= 1 (got E = " + std::to_string(E) + ")");
  if (T > 0 && E > std::numeric_limits<std::int64_t>::max() / T) {
    throw RoutingError("case: T * E overflows (T = " + std::to_string(T) + ", E = " + std::to_string(E) + ")");
  }
  if (static_cast<std::int64_t>(logits.size()) != T * E) {
    throw RoutingError("case: logits has " + std::to_string(logits.size()) + " values but T * E = " +
                       std::to_string(T) + " * " + std::to_string(E) + " = " + std::to_string(T * E));
  }
  if (!scale.empty() && static_cast<std::int64_t>(scale.size()) != E) {
    throw RoutingError("case: scale has " + std::to_string(scale.size()) + " values but E = " + std::to_string(E) +
                       " (empty means all ones)");
  }
  if (!bias.empty() && static_cast<std::int64_t>(bias.size()) != E) {
    throw RoutingError("case: bias has " + std::to_string(bias.size()) + " values but E = " + std::to_string(E) +
                       " (empty means zeros)");
  }
  const int lay = static_cast<int>(layout);
  if (lay < 0 || lay > static_cast<int>(Layout::strided)) {
    throw RoutingError("case: unknown layout value " + std::to_string(lay));
  }
  const int dt = static_cast<int>(dtype);
  if (dt < 0 || dt > static_cast<int>(DType::bf16)) {
    throw RoutingError("case: unknown dtype value " + std::to_string(dt));
  }
  if (pad < 0) throw RoutingError("case: pad must be >= 0 (got pad = " + std::to_string(pad) + ")");
  if ((layout == Layout::padded || layout == Layout::strided) && pad < 1) {
    throw RoutingError(std::string("case: layout ") + layout_name(layout) + " needs pad >= 1 (got pad = " +
                       std::to_string(pad) + ")");
  }
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;  // any NaN is a NaN in every dtype
    const float r = round_to_dtype(v, dtype);
    if (r != v) {
      const std::int64_t t = static_cast<std::int64_t>(i) / E, e = static_cast<std::int64_t>(i) % E;
      throw RoutingError("case: logits[" + std::to_string(t) + ", " + std::to_string(e) + "] = " + num(v) +
                         " is not exactly representable in " + dtype_name(dtype) + " (nearest " + num(r) + ")");
    }
  }
}

MaterializedCase materialize(const RoutingCase& c) {
  MaterializedCase m;
  m.storage = c.materialize();
  m.view.data = m.storage.empty() ? nullptr : m.storage.data();
  m.view.dtype = c.dtype;
  m.view.T = c.T;
  m.view.E = c.E;
  m.view.row_stride = c.row_stride();
  m.view.col_stride = c.col_stride();
  m.params = c.params();
  return m;
}

}  // namespace moecheck
