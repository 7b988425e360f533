// moecheck counter-based case generation: every gating value, scale and sampling decision is a
// pure function of (value seed, stream, row, column, draw), so a case generated on the device
// (kernels/checker/checker.cu) is materialized on the host (harness/core/counter_case.cpp) bit for
// bit, one row or the whole case, in any order.
//
// Header-only, `__host__ __device__` under nvcc, plain inline C++17 elsewhere. No libm call and
// no floating-point operation whose rounding could differ between the host and the device: the
// random numbers are integers, normals are exact sums of 32-bit integers, and the few products
// that round go through cg_mul / cg_add (explicitly rounded intrinsics on the device, so nvcc
// cannot contract them into an FMA). Not shared with the fused kernels (kernels/routing_row.hpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#define MOECHECK_CG_HD __host__ __device__ __forceinline__
#else
#define MOECHECK_CG_HD inline
#endif

namespace moecheck::checker {

/// Value families of counter generation (same names and meaning as the host generators'
/// families, harness/core/generators.hpp; the construction differs, see counter_logit).
enum class CgValues : std::int32_t {
  normal = 0, ties, near_ties, constant, huge, inf, nan, denormal, bf16_exact, integer, count_
};
/// Scale families (gemma4): ones, uniform, zero, negative, mixed.
enum class CgScales : std::int32_t { ones = 0, uniform, zero, negative, mixed, count_ };

/// Streams: independent random sequences of one case.
enum CgStream : std::uint32_t {
  kStreamValue = 1,   ///< per (row, column) value draws
  kStreamRow = 2,     ///< per row decisions (tie plateau, row kind)
  kStreamCase = 3,    ///< per case parameters (sigma, integer range, forced scale column)
  kStreamScale = 4,   ///< per column scale draws
  kStreamSample = 5,  ///< host-sample row choice
  kStreamBias = 6,    ///< per column selection bias (sigmoid_grouped, host only)
};

/// Everything that determines a counter-generated case's values and their storage. POD; the
/// host fills it (counter_desc in harness/core/counter_case.hpp) and copies it to the device.
struct CounterCaseDesc {
  std::uint64_t value_seed = 0;
  std::int64_t T = 0;
  std::int64_t row_stride = 0;  ///< elements
  std::int64_t col_stride = 1;  ///< elements
  std::int64_t storage_elems = 0;
  std::int32_t E = 1;
  std::int32_t k = 1;
  std::int32_t dtype = 0;       ///< moecheck::DType value
  std::int32_t family = 0;      ///< moecheck::Family value
  std::int32_t values = 0;      ///< CgValues
  std::int32_t scales = 0;      ///< CgScales (ones unless gemma4)
  std::int32_t sigma_index = 0; ///< sigma = {0.25, 1, 4, 16}[sigma_index]
  std::int32_t int_range = 2;   ///< integer family: values in [-int_range, int_range]
  std::int32_t forced_column = 0;  ///< zero/negative scales: the column forced to 0 / negative
  std::int32_t layout = 0;      ///< moecheck::Layout value (contiguous, padded, transposed, strided)
};

constexpr std::uint64_t kCgGamma = 0x9e3779b97f4a7c15ull;

/// splitmix64's finaliser (a bijection).
MOECHECK_CG_HD std::uint64_t cg_mix(std::uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Key of one (seed, stream, row): the state a row's draws are counted from.
MOECHECK_CG_HD std::uint64_t cg_row_key(std::uint64_t seed, std::uint32_t stream, std::uint64_t row) {
  const std::uint64_t s = cg_mix(seed + kCgGamma * (static_cast<std::uint64_t>(stream) + 1));
  return cg_mix(s ^ (row * 0xd1b54a32d192ed03ull + 0x8cb92ba72f3d8dd7ull));
}

/// Draw `j` (0..63) of column `col` under a row key: splitmix64 at counter col * 64 + j.
MOECHECK_CG_HD std::uint64_t cg_draw(std::uint64_t row_key, std::uint64_t col, std::uint32_t j) {
  return cg_mix(row_key + kCgGamma * (col * 64 + j + 1));
}

/// Uniform double in [0, 1) from the top 53 bits (exact).
MOECHECK_CG_HD double cg_u01(std::uint64_t d) { return static_cast<double>(d >> 11) * 0x1p-53; }

/// Approximately standard normal from draws j0 .. j0 + 5 of a column: the Irwin-Hall sum of
/// twelve 32-bit uniforms minus 6, computed exactly (integer sum, exact scaling), so it is the
/// same number on every platform.
MOECHECK_CG_HD double cg_normal(std::uint64_t row_key, std::uint64_t col, std::uint32_t j0) {
  // The counters of draws j0 .. j0 + 5 are consecutive: cg_draw's argument, stepped by kCgGamma
  // (the same sums modulo 2^64, one multiplication instead of six).
  std::uint64_t x = row_key + kCgGamma * (col * 64 + j0 + 1);
  std::uint64_t s = 0;
  for (std::uint32_t i = 0; i < 6; ++i, x += kCgGamma) {
    const std::uint64_t d = cg_mix(x);
    s += (d >> 32) + (d & 0xffffffffull);
  }
  return static_cast<double>(s) * 0x1p-32 - 6.0;  // exact: s < 2^36
}

/// Rounded double product and sum that no compiler contracts (device: explicit intrinsics).
MOECHECK_CG_HD double cg_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
MOECHECK_CG_HD double cg_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
MOECHECK_CG_HD float cg_fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

MOECHECK_CG_HD std::uint32_t cg_float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
MOECHECK_CG_HD float cg_bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

/// IEEE binary16 bits -> float (exact; NaN payload kept, quiet bit set).
MOECHECK_CG_HD float cg_half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t ex = (h >> 10) & 0x1fu;
  std::uint32_t man = h & 0x3ffu;
  if (ex == 0x1f) return cg_bits_float(sign | 0x7f800000u | (man ? (0x400000u | (man << 13)) : 0u));
  if (ex == 0) {
    if (man == 0) return cg_bits_float(sign);
    int e = -14;
    while ((man & 0x400u) == 0) {
      man <<= 1;
      --e;
    }
    man &= 0x3ffu;
    return cg_bits_float(sign | (static_cast<std::uint32_t>(e + 127) << 23) | (man << 13));
  }
  return cg_bits_float(sign | ((ex - 15 + 127) << 23) | (man << 13));
}

/// float -> binary16 bits, round to nearest even, overflow to inf, NaN quiet.
MOECHECK_CG_HD std::uint16_t cg_float_to_half(float f) {
  const std::uint32_t x = cg_float_bits(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (a >= 0x38800000u) {
    const std::uint32_t e = (a >> 23) - 127 + 15;
    const std::uint32_t m = a & 0x7fffffu;
    std::uint32_t h = (e << 10) | (m >> 13);
    const std::uint32_t rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  if (a < 0x00800000u) return sign;
  const int e = static_cast<int>(a >> 23) - 127;
  const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const int shift = -(e + 1);
  if (shift > 24) return sign;
  std::uint32_t h = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

MOECHECK_CG_HD float cg_bf16_to_float(std::uint16_t b) { return cg_bits_float(static_cast<std::uint32_t>(b) << 16); }

/// float -> bfloat16 bits, round to nearest even, NaN quiet.
MOECHECK_CG_HD std::uint16_t cg_float_to_bf16(float f) {
  const std::uint32_t x = cg_float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  const std::uint32_t bias = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + bias) >> 16);
}

/// Rounds f to dtype d (0 f32, 1 f16, 2 bf16), returned as float.
MOECHECK_CG_HD float cg_round_dtype(float f, std::int32_t d) {
  if (d == 1) return cg_half_to_float(cg_float_to_half(f));
  if (d == 2) return cg_bf16_to_float(cg_float_to_bf16(f));
  return f;
}

/// Storage bits of a value exact in dtype d (the low 16 bits for f16 / bf16).
MOECHECK_CG_HD std::uint32_t cg_storage_bits(float v, std::int32_t d) {
  if (d == 1) return cg_float_to_half(v);
  if (d == 2) return cg_float_to_bf16(v);
  return cg_float_bits(v);
}

/// Value of storage bits of dtype d.
MOECHECK_CG_HD float cg_bits_value(std::uint32_t b, std::int32_t d) {
  if (d == 1) return cg_half_to_float(static_cast<std::uint16_t>(b));
  if (d == 2) return cg_bf16_to_float(static_cast<std::uint16_t>(b));
  return cg_bits_float(b);
}

/// Gap fill of the storage (the same quiet-NaN patterns as RoutingCase::materialize).
MOECHECK_CG_HD std::uint32_t cg_gap_bits(std::int32_t d) {
  return d == 0 ? 0x7fc0bad0u : (d == 1 ? 0x7ebau : 0x7fbau);
}

MOECHECK_CG_HD float cg_max_finite(std::int32_t d) {
  return d == 1 ? 65504.0f : (d == 2 ? cg_bits_float(0x7f7f0000u) : cg_bits_float(0x7f7fffffu));
}
MOECHECK_CG_HD float cg_min_normal(std::int32_t d) { return d == 1 ? 0x1p-14f : 0x1p-126f; }
MOECHECK_CG_HD float cg_min_subnormal(std::int32_t d) {
  return d == 1 ? 0x1p-24f : (d == 2 ? 0x1p-133f : 0x1p-149f);
}

/// Next representable value of dtype d after x (exact in d) towards +inf or -inf; +-inf and NaN
/// unchanged; the neighbour of 0 is the signed smallest subnormal.
MOECHECK_CG_HD float cg_next_in_dtype(float x, std::int32_t d, bool up) {
  const std::uint32_t xb = cg_float_bits(x);
  if ((xb & 0x7f800000u) == 0x7f800000u) return x;  // inf or NaN
  if (d == 0) {
    if ((xb & 0x7fffffffu) == 0) return cg_bits_float(up ? 0x00000001u : 0x80000001u);
    const bool neg = (xb >> 31) != 0;
    return cg_bits_float(neg == up ? xb - 1 : xb + 1);
  }
  std::uint16_t b = static_cast<std::uint16_t>(cg_storage_bits(x, d));
  const bool neg = (b & 0x8000u) != 0;
  if ((b & 0x7fffu) == 0) return cg_bits_value(up ? 0x0001u : 0x8001u, d);
  b = static_cast<std::uint16_t>(neg == up ? b - 1 : b + 1);
  return cg_bits_value(b, d);
}

MOECHECK_CG_HD double cg_sigma(std::int32_t index) {
  return index == 0 ? 0.25 : (index == 1 ? 1.0 : (index == 2 ? 4.0 : 16.0));
}

/// A double (already scaled) rounded to float, then to the dtype.
MOECHECK_CG_HD float cg_rnd(double v, std::int32_t d) { return cg_round_dtype(static_cast<float>(v), d); }

/// Row-level plateau of the ties / near-ties families: rotation offset, plateau value P and the
/// first position and length of the tied block (positions p = (col + offset) % E; p below
/// `start` lie above P, p in [start, start + len) equal P, the rest lie below).
struct CgPlateau {
  std::int64_t offset;
  float P;
  std::int64_t start;
  std::int64_t len;
  bool extra_up;  ///< near-ties: position k - 2 is the next value above P
};

MOECHECK_CG_HD CgPlateau cg_plateau(const CounterCaseDesc& c, std::int64_t t) {
  const std::uint64_t rk = cg_row_key(c.value_seed, kStreamRow, static_cast<std::uint64_t>(t));
  const std::int64_t E = c.E, k = c.k;
  CgPlateau p{};
  p.offset = static_cast<std::int64_t>(cg_draw(rk, 0, 0) % static_cast<std::uint64_t>(E));
  p.P = cg_rnd(cg_mul(cg_normal(rk, 0, 1), cg_sigma(c.sigma_index)), c.dtype);
  const bool widen_down = cg_u01(cg_draw(rk, 0, 7)) < 0.5;
  const bool widen_up = cg_u01(cg_draw(rk, 0, 8)) < 0.3;
  p.extra_up = k >= 2 && widen_up;
  if (static_cast<CgValues>(c.values) == CgValues::near_ties) {
    p.start = k - 1;
    p.len = 1;
    return p;
  }
  if (k < E) {
    p.start = k - 1;
    p.len = 2 + (widen_down && k + 1 < E ? 1 : 0);
    if (k >= 2 && widen_up) {
      p.start -= 1;
      p.len += 1;
    }
  } else {
    p.start = E >= 2 ? E - 2 : 0;
    p.len = E >= 2 ? 2 : 1;
  }
  return p;
}

/// What every value of one row shares: its keys, (ties, near-ties) its plateau, and the draws
/// of the row stream that the constant, inf and nan families make for every column alike.
struct CgRow {
  std::int64_t t;
  std::uint64_t vk;  ///< value stream key of the row
  std::uint64_t rk;  ///< row stream key of the row (constant, inf and nan families; else 0)
  CgPlateau plateau;
  float constant_value;      ///< constant: the row's value
  double kind;               ///< inf, nan: the row's kind draw, cg_u01(cg_draw(rk, 0, 0))
  std::int32_t n_inf;        ///< inf with kind in [0.15, 0.3): the number of +inf draws (1..3)
  std::int64_t inf_col[3];   ///< ... and their columns, cg_draw(rk, 0, 2 + i) % E
};

MOECHECK_CG_HD CgRow cg_row(const CounterCaseDesc& c, std::int64_t t) {
  CgRow r{};
  r.t = t;
  r.vk = cg_row_key(c.value_seed, kStreamValue, static_cast<std::uint64_t>(t));
  const CgValues v = static_cast<CgValues>(c.values);
  if (v == CgValues::constant || v == CgValues::inf || v == CgValues::nan) {
    r.rk = cg_row_key(c.value_seed, kStreamRow, static_cast<std::uint64_t>(t));
  }
  if (v == CgValues::ties || v == CgValues::near_ties) r.plateau = cg_plateau(c, t);
  if (v == CgValues::constant) {
    float x = cg_rnd(cg_mul(cg_normal(r.rk, 0, 1), cg_sigma(c.sigma_index)), c.dtype);
    if (cg_u01(cg_draw(r.rk, 0, 7)) < 0.2) x = 0.0f;
    if (cg_u01(cg_draw(r.rk, 0, 8)) < 0.1) x = cg_max_finite(c.dtype);
    r.constant_value = x;
  }
  if (v == CgValues::inf || v == CgValues::nan) r.kind = cg_u01(cg_draw(r.rk, 0, 0));
  if (v == CgValues::inf && r.kind >= 0.15 && r.kind < 0.3) {
    const std::uint64_t E = static_cast<std::uint64_t>(c.E);
    r.n_inf = static_cast<std::int32_t>(1 + cg_draw(r.rk, 0, 1) % (E < 3 ? E : 3));
    for (std::int32_t i = 0; i < r.n_inf; ++i) {
      r.inf_col[i] = static_cast<std::int64_t>(cg_draw(r.rk, 0, static_cast<std::uint32_t>(2 + i)) % E);
    }
  }
  return r;
}

/// x % m for the moduli the value families use (constants: a multiply-high sequence instead of
/// a 64-bit division).
MOECHECK_CG_HD std::uint64_t cg_mod_denormal(std::uint64_t x, std::int32_t d) {
  // (1 << mantissa bits) - 1: 23, 10 and 7 bits
  return d == 0 ? x % 8388607u : (d == 1 ? x % 1023u : x % 127u);
}
MOECHECK_CG_HD std::uint64_t cg_mod_span(std::uint64_t x, std::uint64_t span) {
  // 2 * int_range + 1 for the int_range values of counter_desc (2, 5, 100); any other span too
  return span == 5 ? x % 5u : (span == 11 ? x % 11u : (span == 201 ? x % 201u : x % span));
}

/// The logical value (exact in the dtype) of column e of a row (cg_row) of a counter case whose
/// value family is V (c.values == V).
template <CgValues V>
MOECHECK_CG_HD float counter_logit_v(const CounterCaseDesc& c, const CgRow& row, std::int64_t e) {
  const std::int32_t d = c.dtype;
  const double sigma = cg_sigma(c.sigma_index);
  const std::uint64_t vk = row.vk;
  const std::uint64_t col = static_cast<std::uint64_t>(e);
  const auto normal_value = [&]() { return cg_rnd(cg_mul(cg_normal(vk, col, 0), sigma), d); };
  const float inf = cg_bits_float(0x7f800000u);
  const float nan = cg_bits_float(0x7fc00000u);
  if constexpr (V == CgValues::normal) {
    return normal_value();
  } else if constexpr (V == CgValues::ties || V == CgValues::near_ties) {
    const CgPlateau& p = row.plateau;
    std::int64_t pos = e + p.offset;  // (e + offset) % E, both below E
    if (pos >= c.E) pos -= c.E;
    const double n = cg_normal(vk, col, 0);
    const double mag = cg_mul(cg_add(0.5, n < 0 ? -n : n), sigma);  // >= sigma / 2 away from P
    if constexpr (V == CgValues::near_ties) {
      if (pos == c.k - 1) return p.P;
      if (pos == c.k) return cg_next_in_dtype(p.P, d, false);
      if (pos == c.k - 2 && p.extra_up) return cg_next_in_dtype(p.P, d, true);
      return cg_rnd(pos < c.k ? cg_add(p.P, mag) : cg_add(p.P, -mag), d);
    } else {
      if (pos >= p.start && pos < p.start + p.len) return p.P;
      return cg_rnd(pos < p.start ? cg_add(p.P, mag) : cg_add(p.P, -mag), d);
    }
  } else if constexpr (V == CgValues::constant) {
    return row.constant_value;
  } else if constexpr (V == CgValues::huge) {
    if (cg_u01(cg_draw(vk, col, 6)) < 0.6) {
      const double v = cg_mul(cg_add(0.5, cg_mul(0.5, cg_u01(cg_draw(vk, col, 7)))),
                              static_cast<double>(cg_max_finite(d)));
      return cg_rnd((cg_draw(vk, col, 8) >> 63) ? -v : v, d);
    }
    return normal_value();
  } else if constexpr (V == CgValues::inf) {
    const double r = row.kind;
    if (r < 0.15) return -inf;
    if (r < 0.3) {
      for (std::int32_t i = 0; i < 3; ++i) {  // constant bounds: the columns stay in registers
        if (i < row.n_inf && row.inf_col[i] == e) return inf;
      }
      return normal_value();
    }
    if (cg_u01(cg_draw(vk, col, 6)) < 0.15) return cg_u01(cg_draw(vk, col, 7)) < 0.6 ? -inf : inf;
    return normal_value();
  } else if constexpr (V == CgValues::nan) {
    const double r = row.kind;
    if (r < 0.15) return nan;
    if (r < 0.3) return cg_u01(cg_draw(vk, col, 6)) < 0.5 ? nan : -inf;
    if (r < 0.4) {
      if (cg_u01(cg_draw(vk, col, 6)) < 0.3) return cg_u01(cg_draw(vk, col, 7)) < 0.5 ? nan : inf;
      return normal_value();
    }
    if (cg_u01(cg_draw(vk, col, 6)) < 0.15) return nan;
    return normal_value();
  } else if constexpr (V == CgValues::denormal) {
    const double r = cg_u01(cg_draw(vk, col, 6));
    double v;
    if (r < 0.7) {
      const std::uint64_t n = 1 + cg_mod_denormal(cg_draw(vk, col, 7), d);
      v = cg_mul(static_cast<double>(n), static_cast<double>(cg_min_subnormal(d)));  // exact
    } else if (r < 0.85) {
      v = 0.0;
    } else {
      v = cg_mul(static_cast<double>(1 + cg_draw(vk, col, 7) % 4), static_cast<double>(cg_min_normal(d)));
    }
    return static_cast<float>((cg_draw(vk, col, 8) >> 63) ? -v : v);
  } else if constexpr (V == CgValues::bf16_exact) {
    return cg_round_dtype(cg_rnd(cg_mul(cg_normal(vk, col, 0), sigma), 2), d);
  } else if constexpr (V == CgValues::integer) {
    const std::uint64_t span = static_cast<std::uint64_t>(2 * c.int_range + 1);
    return static_cast<float>(static_cast<std::int64_t>(cg_mod_span(cg_draw(vk, col, 6), span)) - c.int_range);
  } else {
    return nan;
  }
}

/// Calls f(std::integral_constant<CgValues, V>{}) for V = values (count_ for an unknown code).
template <class F>
MOECHECK_CG_HD auto cg_with_values(std::int32_t values, const F& f) {
  switch (static_cast<CgValues>(values)) {
    case CgValues::normal: return f(std::integral_constant<CgValues, CgValues::normal>{});
    case CgValues::ties: return f(std::integral_constant<CgValues, CgValues::ties>{});
    case CgValues::near_ties: return f(std::integral_constant<CgValues, CgValues::near_ties>{});
    case CgValues::constant: return f(std::integral_constant<CgValues, CgValues::constant>{});
    case CgValues::huge: return f(std::integral_constant<CgValues, CgValues::huge>{});
    case CgValues::inf: return f(std::integral_constant<CgValues, CgValues::inf>{});
    case CgValues::nan: return f(std::integral_constant<CgValues, CgValues::nan>{});
    case CgValues::denormal: return f(std::integral_constant<CgValues, CgValues::denormal>{});
    case CgValues::bf16_exact: return f(std::integral_constant<CgValues, CgValues::bf16_exact>{});
    case CgValues::integer: return f(std::integral_constant<CgValues, CgValues::integer>{});
    default: return f(std::integral_constant<CgValues, CgValues::count_>{});
  }
}

/// The logical value (exact in the dtype) of column e of a row (cg_row) of a counter case
/// (NaN for an unknown value family).
MOECHECK_CG_HD float counter_logit_in(const CounterCaseDesc& c, const CgRow& row, std::int64_t e) {
  return cg_with_values(c.values, [&](auto v) { return counter_logit_v<decltype(v)::value>(c, row, e); });
}

/// The logical value (exact in the dtype) of row t, column e of a counter case.
MOECHECK_CG_HD float counter_logit(const CounterCaseDesc& c, std::int64_t t, std::int64_t e) {
  return counter_logit_in(c, cg_row(c, t), e);
}

/// per_expert_scale[e] of a counter case (1 for the "ones" family).
MOECHECK_CG_HD float counter_scale(const CounterCaseDesc& c, std::int64_t e) {
  const std::uint64_t rk = cg_row_key(c.value_seed, kStreamScale, 0);
  const std::uint64_t col = static_cast<std::uint64_t>(e);
  const auto u = [&](std::uint32_t j) { return static_cast<float>(cg_add(0.5, cg_u01(cg_draw(rk, col, j)))); };
  const float base = u(0);
  switch (static_cast<CgScales>(c.scales)) {
    case CgScales::ones: return 1.0f;
    case CgScales::uniform: return base;
    case CgScales::zero:
      return (e == c.forced_column || cg_u01(cg_draw(rk, col, 1)) < 0.3) ? 0.0f : base;
    case CgScales::negative:
      return (e == c.forced_column || cg_u01(cg_draw(rk, col, 1)) < 0.3) ? -base : base;
    case CgScales::mixed:
      switch (cg_draw(rk, col, 1) % 7) {
        case 0: return 1.0f;
        case 1: return base;
        case 2: return 0.0f;
        case 3: return -0.0f;
        case 4: return -base;
        case 5: return cg_fmul(base, 1e-3f);
        default: return cg_fmul(base, 100.0f);
      }
    default: return 1.0f;
  }
}

/// Storage element i of a counter case: (t, e) when i is a view element, else t = -1 (a gap).
MOECHECK_CG_HD void counter_storage_position(const CounterCaseDesc& c, std::int64_t i, std::int64_t* t,
                                              std::int64_t* e) {
  const std::int64_t rs = c.row_stride, cs = c.col_stride, E = c.E;
  *t = -1;
  *e = -1;
  if (c.layout == 2) {  // transposed: [E, T], element (t, e) at t + e * T
    *e = i / cs;
    *t = i % cs;
    return;
  }
  const std::int64_t r = i / rs, w = i % rs;  // contiguous, padded, strided: row r, offset w
  if (w % cs != 0) return;
  const std::int64_t col = w / cs;
  if (col >= E) return;
  *t = r;
  *e = col;
}

/// Storage bits of storage element i (the value's bits, or the gap pattern).
MOECHECK_CG_HD std::uint32_t counter_storage_bits(const CounterCaseDesc& c, std::int64_t i) {
  std::int64_t t, e;
  counter_storage_position(c, i, &t, &e);
  if (t < 0) return cg_gap_bits(c.dtype);
  return cg_storage_bits(counter_logit(c, t, e), c.dtype);
}

/// The storage elements of row t of a counter case that lane `lane` of `lanes` writes, given the
/// row's shared draws (cg_row): for the row-major layouts the row's whole storage span
/// [t * row_stride, (t + 1) * row_stride), gaps included, elements lane, lane + lanes, ...; for
/// the transposed layout (no gaps) its E values. put(storage element, bits) receives the same
/// bits as counter_storage_bits at that element, so the lanes of every row together write all
/// of the case's storage exactly once.
template <class Put>
MOECHECK_CG_HD void counter_write_row(const CounterCaseDesc& c, const CgRow& row, std::int32_t lane, std::int32_t lanes,
                                      const Put& put) {
  // The value family is chosen once per row: each family's loop is compiled on its own.
  cg_with_values(c.values, [&](auto v) {
    constexpr CgValues V = decltype(v)::value;
    const std::int32_t d = c.dtype;
    const std::int64_t t = row.t;
    if (c.layout == 2) {  // transposed: (t, e) at t + e * T
      for (std::int64_t e = lane; e < c.E; e += lanes) put(t + e * c.col_stride, cg_storage_bits(counter_logit_v<V>(c, row, e), d));
      return 0;
    }
    const std::int64_t base = t * c.row_stride, cs = c.col_stride;
    const std::uint32_t gap = cg_gap_bits(d);
    // Strided rows: the column of offset w is w / cs, a 32-bit division when the row's span
    // allows it (a 64-bit one is a long software sequence on the device).
    const bool narrow = c.row_stride <= 0x7fffffff;
    for (std::int64_t w = lane; w < c.row_stride; w += lanes) {
      std::int64_t e = w;
      bool value = w < c.E;
      if (cs != 1) {
        e = narrow ? static_cast<std::int64_t>(static_cast<std::uint32_t>(w) / static_cast<std::uint32_t>(cs)) : w / cs;
        value = w - e * cs == 0 && e < c.E;
      }
      put(base + w, value ? cg_storage_bits(counter_logit_v<V>(c, row, e), d) : gap);
    }
    return 0;
  });
}

/// Whether row t of a counter case is re-checked on the host (a sample of about 1 in
/// `one_in` rows plus one row chosen per case, so every case with rows has at least one).
MOECHECK_CG_HD bool counter_sampled_row(const CounterCaseDesc& c, std::int64_t t, std::uint32_t one_in) {
  const std::uint64_t rk = cg_row_key(c.value_seed, kStreamSample, 0);
  if (c.T > 0 && static_cast<std::int64_t>(cg_draw(rk, 0, 0) % static_cast<std::uint64_t>(c.T)) == t) return true;
  return one_in > 0 && cg_draw(rk, static_cast<std::uint64_t>(t) + 1, 1) % one_in == 0;
}

}  // namespace moecheck::checker

#undef MOECHECK_CG_HD
