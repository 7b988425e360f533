// moecheck fused routing: test-problem builder shared by the kernel test suites and the
// benchmark. Header-only, plain C++17, deterministic (seeded std::mt19937_64, never
// std::random_device). Values are generated exactly representable in the gating dtype and
// laid out in a storage buffer whose gaps hold a huge finite value, so that a kernel reading
// outside the view selects it and fails visibly.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/routing_kernels.hpp"
#include "kernels/routing_row.hpp"

namespace moecheck::kernels::testing {

/// Layout of the gating tensor inside its storage.
enum class Layout : int { contiguous = 0, padded, transposed, strided };
inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::contiguous: return "contiguous";
    case Layout::padded: return "padded";
    case Layout::transposed: return "transposed";
    case Layout::strided: return "strided";
  }
  return "?";
}

/// Value families of generated rows. `mixed` picks one of the others per row.
enum class Values : int {
  normal = 0,   ///< N(0, sigma), sigma in {0.5, 2, 8}
  ties,         ///< small integers in [-3, 3] (many exact ties, also at the k-th place)
  near_ties,    ///< one value plus a few ulps
  inf_nan,      ///< normal with +inf, -inf, NaN (several payloads, both signs) sprinkled in
  all_neg_inf,  ///< the whole row -inf
  all_nan,      ///< the whole row NaN
  neg_inf_nan,  ///< only -inf and NaN
  extreme,      ///< +-(dtype max), +-0, subnormals, huge spreads
  mixed,
};
inline const char* values_name(Values v) {
  constexpr const char* n[] = {"normal", "ties", "near_ties", "inf_nan", "all_neg_inf",
                               "all_nan", "neg_inf_nan", "extreme", "mixed"};
  return n[static_cast<int>(v)];
}

inline int gating_bytes(GatingType t) { return t == GatingType::f32 ? 4 : 2; }
inline const char* gating_name(GatingType t) {
  return t == GatingType::f32 ? "f32" : (t == GatingType::f16 ? "f16" : "bf16");
}
inline const char* family_label(KernelFamily f) {
  return f == KernelFamily::gemma4 ? "gemma4"
                                   : (f == KernelFamily::softmax_topk ? "softmax_topk" : "softmax_topk_raw");
}

/// float -> bfloat16 bits, round to nearest even, NaN kept NaN (payload truncated, quiet bit set
/// only if the truncation would lose it).
inline std::uint16_t float_to_bf16_bits_rn(float f) {
  const std::uint32_t x = row::float_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    const std::uint16_t h = static_cast<std::uint16_t>(x >> 16);
    return (h & 0x7fu) ? h : static_cast<std::uint16_t>(h | 0x40u);
  }
  const std::uint32_t r = x + 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(r >> 16);
}

/// Encodes a float (exactly representable, or NaN) in the dtype's bits.
inline std::uint32_t encode(float f, GatingType t) {
  if (t == GatingType::f32) return row::float_to_bits(f);
  if (t == GatingType::bf16) return float_to_bf16_bits_rn(f);
  const std::uint32_t x = row::float_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {  // keep sign and some payload
    const std::uint16_t payload = static_cast<std::uint16_t>((x >> 13) & 0x3ffu);
    return static_cast<std::uint16_t>(((x >> 16) & 0x8000u) | 0x7c00u | (payload ? payload : 0x200u));
  }
  return row::float_to_half_bits_rn(f);
}

/// Rounds to the dtype (NaN stays NaN).
inline float round_to(float f, GatingType t) {
  if (t == GatingType::f32) return f;
  const std::uint32_t b = encode(f, t);
  return t == GatingType::bf16 ? row::bf16_bits_to_float(static_cast<std::uint16_t>(b))
                               : row::half_bits_to_float(static_cast<std::uint16_t>(b));
}

/// Largest finite value of the dtype.
inline float dtype_max(GatingType t) {
  return t == GatingType::f32 ? std::numeric_limits<float>::max()
                              : (t == GatingType::f16 ? 65504.0f : row::bf16_bits_to_float(0x7f7f));
}

/// A routing problem with its storage.
struct Problem {
  std::uint64_t seed = 0;
  GatingType dtype = GatingType::f32;
  std::int64_t T = 0;
  int E = 1;
  int k = 1;
  KernelFamily family = KernelFamily::gemma4;
  Layout layout = Layout::contiguous;
  Values values = Values::normal;
  std::vector<float> logits;          ///< [T * E] logical values (exact in dtype or NaN)
  std::vector<float> scale;           ///< [E] or empty (nullptr)
  std::vector<unsigned char> storage; ///< dtype bytes, layout applied
  std::int64_t row_stride = 0, col_stride = 1;

  /// Kernel arguments for a gating buffer holding `storage` (host or device copy).
  RoutingArgs args(const void* gating, const float* scale_ptr, float* w, std::int32_t* ids) const {
    RoutingArgs a;
    a.gating = gating;
    a.dtype = dtype;
    a.T = T;
    a.E = E;
    a.k = k;
    a.row_stride = row_stride;
    a.col_stride = col_stride;
    a.scale = scale_ptr;
    a.family = family;
    a.weights = w;
    a.ids = ids;
    return a;
  }
  /// Host arguments (storage and scale of this object).
  RoutingArgs host_args(float* w, std::int32_t* ids) const {
    return args(storage.empty() ? nullptr : storage.data(), scale.empty() ? nullptr : scale.data(), w, ids);
  }
  /// One line that reproduces the problem.
  std::string describe() const {
    return "seed=" + std::to_string(seed) + " dtype=" + gating_name(dtype) + " T=" + std::to_string(T) +
           " E=" + std::to_string(E) + " k=" + std::to_string(k) + " family=" + family_label(family) +
           " layout=" + layout_name(layout) + " values=" + values_name(values) +
           " scale=" + (scale.empty() ? "none" : "random");
  }
};

/// Fills one row of logical values.
inline void fill_row(std::mt19937_64& rng, Values v, GatingType t, int E, float* out) {
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  const float inf = std::numeric_limits<float>::infinity();
  const float qnan = std::numeric_limits<float>::quiet_NaN();
  const float nans[4] = {qnan, -qnan, row::bits_to_float(0x7f800001u), row::bits_to_float(0xffc12345u)};
  if (v == Values::mixed) {
    const double r = u01(rng);
    v = r < 0.45 ? Values::normal
        : r < 0.62 ? Values::ties
        : r < 0.72 ? Values::near_ties
        : r < 0.84 ? Values::inf_nan
        : r < 0.88 ? Values::all_neg_inf
        : r < 0.91 ? Values::all_nan
        : r < 0.94 ? Values::neg_inf_nan
                   : Values::extreme;
  }
  const float sigmas[3] = {0.5f, 2.0f, 8.0f};
  const float sigma = sigmas[rng() % 3];
  std::normal_distribution<float> nd(0.0f, sigma);
  const float base = round_to(nd(rng), t);
  for (int e = 0; e < E; ++e) {
    float x = 0.0f;
    switch (v) {
      case Values::normal: x = nd(rng); break;
      case Values::ties: x = static_cast<float>(static_cast<int>(rng() % 7) - 3); break;
      case Values::near_ties: {
        std::uint32_t b = encode(base, t);
        b += static_cast<std::uint32_t>(rng() % 4);
        x = t == GatingType::f32 ? row::bits_to_float(b)
            : (t == GatingType::bf16 ? row::bf16_bits_to_float(static_cast<std::uint16_t>(b))
                                     : row::half_bits_to_float(static_cast<std::uint16_t>(b)));
        break;
      }
      case Values::inf_nan: {
        const double r = u01(rng);
        x = r < 0.1 ? inf : r < 0.2 ? -inf : r < 0.3 ? nans[rng() % 4] : nd(rng);
        break;
      }
      case Values::all_neg_inf: x = -inf; break;
      case Values::all_nan: x = nans[rng() % 4]; break;
      case Values::neg_inf_nan: x = (rng() & 1) ? -inf : nans[rng() % 4]; break;
      case Values::extreme: {
        const double r = u01(rng);
        const float mx = dtype_max(t);
        x = r < 0.15 ? mx : r < 0.3 ? -mx : r < 0.4 ? 0.0f : r < 0.5 ? -0.0f
            : r < 0.6 ? 1e-40f : r < 0.7 ? -1e-7f : nd(rng) * 1000.0f;
        break;
      }
      case Values::mixed: break;
    }
    out[e] = round_to(x, t);
    if (!std::isnan(out[e]) && std::isinf(out[e]) && !std::isinf(x)) out[e] = x > 0 ? dtype_max(t) : -dtype_max(t);
  }
}

/// Builds a problem. `scaled`: random per_expert_scale in [-2, 2] with some exact zeros and ones.
inline Problem make_problem(std::uint64_t seed, GatingType dtype, std::int64_t T, int E, int k,
                            KernelFamily family, Layout layout, Values values, bool scaled) {
  Problem p;
  p.seed = seed;
  p.dtype = dtype;
  p.T = T;
  p.E = E;
  p.k = k;
  p.family = family;
  p.layout = layout;
  p.values = values;
  std::mt19937_64 rng(seed);
  p.logits.resize(static_cast<std::size_t>(T) * static_cast<std::size_t>(E));
  for (std::int64_t t = 0; t < T; ++t) fill_row(rng, values, dtype, E, p.logits.data() + t * E);
  if (scaled) {
    std::uniform_real_distribution<float> us(-2.0f, 2.0f);
    p.scale.resize(static_cast<std::size_t>(E));
    for (auto& s : p.scale) {
      const auto r = rng() % 10;
      s = r == 0 ? 0.0f : r == 1 ? 1.0f : us(rng);
    }
  }
  const std::int64_t pad = 1 + static_cast<std::int64_t>(rng() % 7);
  switch (layout) {
    case Layout::contiguous: p.row_stride = E; p.col_stride = 1; break;
    case Layout::padded: p.row_stride = E + pad; p.col_stride = 1; break;
    case Layout::transposed: p.row_stride = 1; p.col_stride = T > 0 ? T : 1; break;
    case Layout::strided: p.col_stride = 1 + pad; p.row_stride = E * p.col_stride + pad; break;
  }
  if (T <= 1 && layout == Layout::transposed) p.col_stride = 1;
  const std::int64_t elems = T == 0 ? 0 : (T - 1) * p.row_stride + static_cast<std::int64_t>(E - 1) * p.col_stride + 1;
  const int bytes = gating_bytes(dtype);
  p.storage.assign(static_cast<std::size_t>(elems * bytes), 0);
  // gaps: a huge finite value (~3.4e38 f32, ~1.8e36 bf16, 60832 f16): wins any selection
  for (std::int64_t i = 0; i < elems; ++i) {
    const std::uint32_t gap = dtype == GatingType::f32 ? 0x7f7fbadbu : 0x7badu;
    std::memcpy(p.storage.data() + i * bytes, &gap, static_cast<std::size_t>(bytes));
  }
  for (std::int64_t t = 0; t < T; ++t) {
    for (int e = 0; e < E; ++e) {
      const std::uint32_t b = encode(p.logits[static_cast<std::size_t>(t * E + e)], dtype);
      const std::int64_t off = t * p.row_stride + static_cast<std::int64_t>(e) * p.col_stride;
      std::memcpy(p.storage.data() + off * bytes, &b, static_cast<std::size_t>(bytes));
    }
  }
  return p;
}

}  // namespace moecheck::kernels::testing
