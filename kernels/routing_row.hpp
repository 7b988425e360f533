// moecheck fused routing: the per-row / per-lane algorithm shared by the CUDA kernels and
// the host emulation (plain C++17 that also compiles as device code). Only the "warp context"
// differs: one lane with warp intrinsics on the device, 32 lanes in arrays with the same
// reduction order on the host. Every float operation names its rounding (add_rn, mul_rn,
// div_rn, fma_rn) and exp is our own exp_nonpos, so device and emulation agree bit for bit.
// Ranking: NaN ranks as -inf, -0 as +0; experts by (value descending, index ascending) through
// unique order-preserving entries (entry 0 = padding). Weights: term(x, m) = 0 when the
// selected maximum m is -inf, 1 when x == m, exp(x - m) otherwise; renormalised families
// divide by the pairwise sum of the k terms, softmax_topk_raw by the all-expert sum (its
// order is per variant); a zero sum divides by 1. The full rules, sum orders and the
// thread-per-row streaming: DESIGN.md, section "Fused routing kernels".
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/routing_kernels.hpp"

#if defined(__CUDACC__)
#define MOECHECK_HD __host__ __device__
#define MOECHECK_UNROLL _Pragma("unroll")
#define MOECHECK_NO_UNROLL _Pragma("unroll 1")
#else
#define MOECHECK_HD
#define MOECHECK_UNROLL
#define MOECHECK_NO_UNROLL
#endif

namespace moecheck::kernels::row {

// ---------------------------------------------------------------------------------------
// Bit casts and explicitly rounded arithmetic
// ---------------------------------------------------------------------------------------

MOECHECK_HD inline float bits_to_float(std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}

MOECHECK_HD inline std::uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

/// a + b rounded to nearest even (never contracted into an fma).
MOECHECK_HD inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
/// a - b rounded to nearest even.
MOECHECK_HD inline float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
/// a * b rounded to nearest even (never contracted).
MOECHECK_HD inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
/// a / b, IEEE correctly rounded.
MOECHECK_HD inline float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
/// a * b + c with a single rounding.
MOECHECK_HD inline float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return ::fmaf(a, b, c);
#endif
}
/// Rounds to the nearest integer, ties to even (the default rounding mode on the host).
MOECHECK_HD inline float rint_rn(float a) {
#if defined(__CUDA_ARCH__)
  return rintf(a);
#else
  return ::nearbyintf(a);
#endif
}

constexpr std::uint32_t kNegInfBits = 0xff800000u;
MOECHECK_HD inline float neg_inf() { return bits_to_float(kNegInfBits); }

// ---------------------------------------------------------------------------------------
// Element conversions (bit-exact, written out so the host path needs no CUDA header)
// ---------------------------------------------------------------------------------------

/// IEEE binary16 bits -> float, exact (subnormals, +-inf; NaN stays NaN).
MOECHECK_HD inline float half_bits_to_float(std::uint16_t h) {
#if defined(__CUDA_ARCH__)
  // The hardware conversion is exact for every non-NaN half (subnormals included); NaNs take
  // the bit formula below so that their payload matches the host's.
  if ((h & 0x7fffu) <= 0x7c00u) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
  }
#endif
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t man = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1fu) {
    bits = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0u);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    // subnormal: value = man * 2^-24; normalise the mantissa.
    std::uint32_t e = 113u;  // exponent field of 2^-14
    while ((man & 0x400u) == 0) {
      man <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
  }
  return bits_to_float(bits);
}

/// float -> IEEE binary16 bits, round to nearest even; overflow -> inf; NaN -> quiet NaN.
MOECHECK_HD inline std::uint16_t float_to_half_bits_rn(float f) {
  const std::uint32_t x = float_to_bits(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520
  if (ax >= 0x38800000u) {                                                      // normal half
    const std::uint32_t mant_odd = (ax >> 13) & 1u;
    const std::uint32_t r = ax + 0xfffu + mant_odd;  // round to nearest even at bit 13
    return static_cast<std::uint16_t>(sign | ((r - 0x38000000u) >> 13));
  }
  if (ax < 0x33000000u) return sign;  // < 2^-25: rounds to zero (2^-25 itself ties to 0)
  // subnormal half: value / 2^-24 rounded to an integer, ties to even.
  const std::uint32_t e = ax >> 23;            // biased float exponent, 102..112
  const std::uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - e;        // so that the result is m >> shift
  const std::uint32_t q = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  const std::uint32_t up = (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
  return static_cast<std::uint16_t>(sign | (q + up));
}

/// bfloat16 bits -> float, exact.
MOECHECK_HD inline float bf16_bits_to_float(std::uint16_t b) {
  return bits_to_float(static_cast<std::uint32_t>(b) << 16);
}

/// Rounds a float to the nearest binary16 value (used by the fp16_accumulation mutant).
MOECHECK_HD inline float round_to_half(float f) {
  return half_bits_to_float(float_to_half_bits_rn(f));
}

// ---------------------------------------------------------------------------------------
// exp for non-positive arguments
// ---------------------------------------------------------------------------------------

/// exp(d) for d <= 0 (d = -inf allowed), in fp32 with fma only, identical on host and device.
/// Cody-Waite reduction d = n ln2 + r (|r| <= ln2/2), degree-7 Taylor polynomial, exact
/// scaling by 2^n (two steps when the result is subnormal, so it is rounded once).
/// Measured error (kernel_host_test, ExpNonposAccuracy): < 1 ulp against fp64 exp over
/// [-104, 0]; arguments below -104 give 0 (the correctly rounded result).
MOECHECK_HD inline float exp_nonpos(float d) {
  if (!(d >= -104.0f)) return 0.0f;  // also d = -inf
  const float n = rint_rn(mul_rn(d, 1.44269502f));
  float r = fma_rn(n, -0.693145751953125f, d);     // ln2 high part (16 significant bits)
  r = fma_rn(n, -1.42860677e-06f, r);               // ln2 low part
  float p = 1.98412698e-04f;                        // 1/5040
  p = fma_rn(p, r, 1.38888889e-03f);                // 1/720
  p = fma_rn(p, r, 8.33333333e-03f);                // 1/120
  p = fma_rn(p, r, 4.16666667e-02f);                // 1/24
  p = fma_rn(p, r, 1.66666667e-01f);                // 1/6
  p = fma_rn(p, r, 0.5f);
  p = fma_rn(p, r, 1.0f);
  p = fma_rn(p, r, 1.0f);
  const int ni = static_cast<int>(n);  // in [-150, 0]
  if (ni >= -126) return mul_rn(p, bits_to_float(static_cast<std::uint32_t>(ni + 127) << 23));
  p = mul_rn(p, bits_to_float(static_cast<std::uint32_t>(ni + 64 + 127) << 23));  // exact
  return mul_rn(p, 0x1p-64f);                                                      // rounds once
}

/// Softmax numerator of value x in a row (or selection) whose maximum is m; see the file
/// comment for the -inf / +inf rules. Never NaN for x <= m.
MOECHECK_HD inline float softmax_term(float x, float m) {
  if (m == neg_inf()) return 0.0f;
  if (x == m) return 1.0f;
  return exp_nonpos(sub_rn(x, m));
}

/// s + e, optionally rounded to fp16 after the add (the fp16_accumulation mutant).
MOECHECK_HD inline float accumulate(float s, float e, bool fp16) {
  const float r = add_rn(s, e);
  return fp16 ? round_to_half(r) : r;
}

// ---------------------------------------------------------------------------------------
// Element types: canonicalisation, order-preserving keys, entries
// ---------------------------------------------------------------------------------------

constexpr std::uint32_t kIndexMask = 0xffffu;

/// fp32 logits: 32-bit keys, 64-bit entries (key << 32 | 0xFFFF - index).
struct F32 {
  using Storage = std::uint32_t;
  using Entry = std::uint64_t;
  static constexpr int kBytes = 4;
  static constexpr GatingType kType = GatingType::f32;
  /// NaN -> -inf, -0 -> +0 (keep_nan: only the -0 rule, for the nan_duplicates mutant).
  MOECHECK_HD static std::uint32_t canonical(std::uint32_t b, bool keep_nan = false) {
    if (!keep_nan && (b & 0x7fffffffu) > 0x7f800000u) return kNegInfBits;
    return b == 0x80000000u ? 0u : b;
  }
  MOECHECK_HD static std::uint32_t key(std::uint32_t b) {
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  }
  MOECHECK_HD static std::uint32_t unkey(std::uint32_t k) {
    return (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  }
  MOECHECK_HD static Entry make(std::uint32_t key, int index) {
    return (static_cast<Entry>(key) << 32) | (kIndexMask - static_cast<std::uint32_t>(index));
  }
  MOECHECK_HD static std::uint32_t entry_key(Entry e) { return static_cast<std::uint32_t>(e >> 32); }
  MOECHECK_HD static float value(Entry e) { return bits_to_float(unkey(entry_key(e))); }
};

/// Shared code of the two 16-bit types: 16-bit keys, 32-bit entries (key << 16 | 0xFFFF - index).
template <GatingType kT, std::uint32_t kExpMask, std::uint32_t kNegInf16>
struct Bits16 {
  using Storage = std::uint16_t;
  using Entry = std::uint32_t;
  static constexpr int kBytes = 2;
  static constexpr GatingType kType = kT;
  MOECHECK_HD static std::uint32_t canonical(std::uint32_t b, bool keep_nan = false) {
    if (!keep_nan && (b & 0x7fffu) > kExpMask) return kNegInf16;
    return b == 0x8000u ? 0u : b;
  }
  MOECHECK_HD static std::uint32_t key(std::uint32_t b) {
    return (b & 0x8000u) ? (~b & 0xffffu) : (b | 0x8000u);
  }
  MOECHECK_HD static std::uint32_t unkey(std::uint32_t k) {
    return (k & 0x8000u) ? (k & 0x7fffu) : (~k & 0xffffu);
  }
  MOECHECK_HD static Entry make(std::uint32_t key, int index) {
    return (key << 16) | (kIndexMask - static_cast<std::uint32_t>(index));
  }
  MOECHECK_HD static std::uint32_t entry_key(Entry e) { return e >> 16; }
  MOECHECK_HD static float value(Entry e) {
    const std::uint16_t b = static_cast<std::uint16_t>(unkey(entry_key(e)));
    if constexpr (kT == GatingType::bf16) {
      return bf16_bits_to_float(b);
    } else {
      return half_bits_to_float(b);
    }
  }
};
using F16 = Bits16<GatingType::f16, 0x7c00u, 0xfc00u>;
using BF16 = Bits16<GatingType::bf16, 0x7f80u, 0xff80u>;

/// Host dispatch on a power-of-two template bucket: returns f(std::integral_constant<int, B>{})
/// for the B in {1, 2, 4, .., kMax} (kMax 16 or 32) equal to n, or `otherwise` for any other n.
template <int kMax, class R, class F>
inline R with_pow2_bucket(int n, R otherwise, F&& f) {
  static_assert(kMax == 16 || kMax == 32, "buckets 1..16 or 1..32");
  if (n == 1) return f(std::integral_constant<int, 1>{});
  if (n == 2) return f(std::integral_constant<int, 2>{});
  if (n == 4) return f(std::integral_constant<int, 4>{});
  if (n == 8) return f(std::integral_constant<int, 8>{});
  if (n == 16) return f(std::integral_constant<int, 16>{});
  if constexpr (kMax == 32) {
    if (n == 32) return f(std::integral_constant<int, 32>{});
  }
  return otherwise;
}

/// Host dispatch on the element type: returns f(Tr{}) with the traits of `dtype` (F32, F16,
/// BF16), or `otherwise` for a value outside GatingType.
template <class R, class F>
inline R with_element_traits(GatingType dtype, R otherwise, F&& f) {
  switch (dtype) {
    case GatingType::f32: return f(F32{});
    case GatingType::f16: return f(F16{});
    case GatingType::bf16: return f(BF16{});
  }
  return otherwise;
}

/// with_element_traits and with_pow2_bucket<kMax> at once: returns f(Tr{}, bucket constant).
template <int kMax, class R, class F>
inline R with_traits_and_bucket(GatingType dtype, int n, R otherwise, F&& f) {
  return with_element_traits(dtype, otherwise, [&](auto tr) {
    return with_pow2_bucket<kMax>(n, otherwise, [&](auto bucket) { return f(tr, bucket); });
  });
}

/// Expert index of a (non-padding) entry.
template <class Entry>
MOECHECK_HD inline int entry_index(Entry e) {
  return static_cast<int>(kIndexMask - static_cast<std::uint32_t>(e & kIndexMask));
}

/// True when the entry's value is NaN (only possible under the nan_duplicates mutant).
template <class Tr>
MOECHECK_HD inline bool entry_is_nan(typename Tr::Entry e) {
  const float v = Tr::value(e);
  return v != v;
}

// ---------------------------------------------------------------------------------------
// Per-lane data layout and sorted lists
// ---------------------------------------------------------------------------------------

/// Elements per vector unit: a lane loads its V elements as V / VE units of VE contiguous
/// elements (at most 16 bytes each).
template <class Tr, int V>
MOECHECK_HD constexpr int vec_elems() {
  return V * Tr::kBytes <= 16 ? V : 16 / Tr::kBytes;
}

/// Expert index (relative to the warp's chunk) of element j of a lane: units are
/// interleaved across lanes so that each load instruction of a warp is contiguous.
template <class Tr, int V>
MOECHECK_HD inline int lane_elem_index(int lane, int j) {
  constexpr int VE = vec_elems<Tr, V>();
  return ((j / VE) * 32 + lane) * VE + (j % VE);
}

/// 32-bit words holding a lane's V raw elements (element j of a 16-bit type is half j&1 of
/// word j/2; fp32 element j is word j).
template <class Tr, int V>
MOECHECK_HD constexpr int raw_words() {
  return (V * Tr::kBytes + 3) / 4;
}

template <class Tr, int V>
MOECHECK_HD inline std::uint32_t raw_elem(const std::uint32_t* w, int j) {
  if constexpr (Tr::kBytes == 4) {
    return w[j];
  } else {
    return (w[j >> 1] >> ((j & 1) * 16)) & 0xffffu;
  }
}

/// One compare-exchange: a gets the larger entry, b the smaller.
template <class Entry>
MOECHECK_HD inline void compare_exchange(Entry& a, Entry& b) {
  const Entry x = a, y = b;
  a = x > y ? x : y;
  b = x > y ? y : x;
}

/// compare_exchange as a functor (the default of the sorting networks below).
struct CompareExchange {
  template <class Entry>
  MOECHECK_HD void operator()(Entry& a, Entry& b) const {
    compare_exchange(a, b);
  }
};

/// compare_exchange with one comparison for both outputs on the device (the compiler turns the
/// plain form into a separate max and min, i.e. two 64-bit comparisons for fp32 entries).
struct CompareExchangeOnce {
  MOECHECK_HD void operator()(std::uint32_t& a, std::uint32_t& b) const { compare_exchange(a, b); }
  MOECHECK_HD void operator()(std::uint64_t& a, std::uint64_t& b) const {
#if defined(__CUDA_ARCH__)
    const std::uint64_t x = a, y = b;
    asm("{\n\t.reg .pred gt;\n\tsetp.gt.u64 gt, %2, %3;\n\tselp.b64 %0, %2, %3, gt;\n\t"
        "selp.b64 %1, %3, %2, gt;\n\t}"
        : "=l"(a), "=l"(b)
        : "l"(x), "l"(y));
#else
    compare_exchange(a, b);
#endif
  }
};

/// Batcher's odd-even merge sort network, written as compile-time recursion over the
/// classic loop nest (p, k, j, i) so that every comparator has constant register indices:
///   for p = 1, 2, 4.. < V; for k = p, p/2 .. 1; for j = k % p; j + k < V; j += 2k;
///   for i < k: compare (i+j, i+j+k) when both lie in the same block of 2p.
template <int V, int P, int K, int J, int I, class CE = CompareExchange, class Entry>
MOECHECK_HD inline void batcher_step(Entry* a) {
  if constexpr (P < V) {
    if constexpr (K >= 1) {
      if constexpr (J + K < V) {
        if constexpr (I < K) {
          if constexpr (I + J + K < V && (I + J) / (2 * P) == (I + J + K) / (2 * P)) {
            CE()(a[I + J], a[I + J + K]);
          }
          batcher_step<V, P, K, J, I + 1, CE>(a);
        } else {
          batcher_step<V, P, K, J + 2 * K, 0, CE>(a);
        }
      } else {
        batcher_step<V, P, K / 2, (K / 2 >= 1 ? (K / 2) % P : 0), 0, CE>(a);
      }
    } else {
      batcher_step<V, 2 * P, 2 * P, 0, 0, CE>(a);
    }
  }
}

/// Sorts V entries descending in place (V = 1, 2, 4, 8, 16 -> 0, 1, 5, 19, 63
/// compare-exchanges).
template <int V, class CE = CompareExchange, class Entry>
MOECHECK_HD inline void sort_desc(Entry* a) {
  batcher_step<V, 1, 1, 0, 0, CE>(a);
}

/// Drops the head of a descending list when `pred` (the tail becomes padding).
template <int V, class Entry>
MOECHECK_HD inline void pop_front_if(Entry* a, bool pred) {
MOECHECK_UNROLL
  for (int j = 0; j + 1 < V; ++j) a[j] = pred ? a[j + 1] : a[j];
  a[V - 1] = pred ? Entry(0) : a[V - 1];
}

// ---------------------------------------------------------------------------------------
// Row configuration (uniform across a launch)
// ---------------------------------------------------------------------------------------

struct RowConfig {
  int E = 0;                 ///< experts
  int E_valid = 0;           ///< experts taken into account (E, less under skip_partial_warp)
  int k = 0;                 ///< experts per row
  int kpad = 1;              ///< next power of two >= k (width of the weight sum)
  KernelFamily family = KernelFamily::gemma4;
  const float* scale = nullptr;  ///< nullptr or [E]; used by gemma4 only
  bool want_full = false;    ///< the denominator needs the sum over all E experts
};

MOECHECK_HD constexpr int next_pow2(int x) {
  int p = 1;
  while (p < x) p <<= 1;
  return p;
}

/// Builds the uniform row configuration for a (validated) problem and mutant.
inline RowConfig make_row_config(int E, int k, KernelFamily family, const float* scale,
                                 Mutant m) {
  RowConfig c;
  c.E = E;
  c.E_valid = (m == Mutant::skip_partial_warp && E >= 32) ? (E & ~31) : E;
  c.k = k;
  c.kpad = next_pow2(k);
  c.family = family;
  c.scale = family == KernelFamily::gemma4 ? scale : nullptr;
  c.want_full = family == KernelFamily::softmax_topk_raw ? m != Mutant::topk_only_softmax
                                                         : m == Mutant::skip_renormalise;
  return c;
}

/// Turns a lane's raw elements into its sorted entry list. `chunk_base` is the expert index
/// of the warp's chunk (0 for warp-per-row); elements at index >= E_valid are padding.
template <class Tr, int V>
MOECHECK_HD inline void build_list(const std::uint32_t* words, int lane, int chunk_base,
                                   const RowConfig& cfg, Mutant m, typename Tr::Entry* list) {
  const bool keep_nan = m == Mutant::nan_duplicates;
MOECHECK_UNROLL
  for (int j = 0; j < V; ++j) {
    const int idx = chunk_base + lane_elem_index<Tr, V>(lane, j);
    const std::uint32_t c = Tr::canonical(raw_elem<Tr, V>(words, j), keep_nan);
    list[j] = idx < cfg.E_valid ? Tr::make(Tr::key(c), idx) : typename Tr::Entry(0);
  }
  sort_desc<V>(list);
}

/// Sum of softmax terms of a lane's list relative to the maximum m, in list order
/// (padding contributes 0).
template <class Tr, int V>
MOECHECK_HD inline float lane_term_sum(const typename Tr::Entry* list, float m, bool fp16) {
  float s = 0.0f;
MOECHECK_UNROLL
  for (int j = 0; j < V; ++j) {
    const float e = list[j] != 0 ? softmax_term(Tr::value(list[j]), m) : 0.0f;
    s = accumulate(s, e, fp16);
  }
  return s;
}

// ---------------------------------------------------------------------------------------
// Warp programs. Ctx is a warp context: Ctx::N lanes held (1 on the device, 32 on the host),
// ctx.lane(i) the lane id of held lane i, ctx.each(f) calls f(i) for every held lane,
// collectives: ctx.max(v) (uniform maximum of per-lane entries), ctx.any(v) (whether any lane's
// flag is set), ctx.shfl(out, v, src),
// ctx.xor_sum(v, width, fp16) (butterfly sum with xor offsets 1, 2, ..., width/2, each
// lane adding its partner's value to its own), ctx.store(...) for outputs.
// ---------------------------------------------------------------------------------------

/// Winner of selection round r after the planted last-round bugs: off_by_one_k repeats the
/// previous winner in the last round, drop_tied_expert does so when the winner's key ties it.
template <class Tr>
MOECHECK_HD inline typename Tr::Entry planted_last_round(typename Tr::Entry w, typename Tr::Entry prev, int r,
                                                         const RowConfig& cfg, Mutant m) {
  if (r > 0 && r == cfg.k - 1) {
    if (m == Mutant::off_by_one_k) return prev;
    if (m == Mutant::drop_tied_expert && Tr::entry_key(w) == Tr::entry_key(prev)) return prev;
  }
  return w;
}

/// Rounds of top-k selection over the warp's sorted lane lists for one row.
/// The winner of round r is kept by lane `slot_lane0 + r` in mine[]. When cfg.want_full, the
/// sum of softmax terms over all lanes' lists (relative to the round-0 winner = row maximum)
/// is stored into full[] of the lanes [slot_lane0, slot_lane0 + group).
/// Mutants: off_by_one_k / drop_tied_expert (last round repeats the previous winner),
/// nan_duplicates (a NaN winner is never removed).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Tr, int V, class Ctx>
MOECHECK_HD inline void select_rounds(const Ctx& ctx, typename Tr::Entry (*list)[V],
                                      const RowConfig& cfg, Mutant m, int slot_lane0,
                                      int group, typename Tr::Entry* mine, float* full) {
  using Entry = typename Tr::Entry;
  constexpr int N = Ctx::N;
  const bool fp16 = m == Mutant::fp16_accumulation;
  Entry prev = 0;
  for (int r = 0; r < cfg.k; ++r) {
    Entry head[N];
    ctx.each([&](int i) { head[i] = list[i][0]; });
    const Entry w = planted_last_round<Tr>(ctx.max(head), prev, r, cfg, m);
    if (r == 0 && cfg.want_full) {
      const float mx = Tr::value(w);
      float s[N];
      ctx.each([&](int i) { s[i] = lane_term_sum<Tr, V>(list[i], mx, fp16); });
      ctx.xor_sum(s, 32, fp16);
      ctx.each([&](int i) {
        const int l = ctx.lane(i);
        if (l >= slot_lane0 && l < slot_lane0 + group) full[i] = s[i];
      });
    }
    const bool keep = m == Mutant::nan_duplicates && entry_is_nan<Tr>(w);
    ctx.each([&](int i) {
      pop_front_if<V>(list[i], !keep && list[i][0] == w);
      if (ctx.lane(i) == slot_lane0 + r) mine[i] = w;
    });
    prev = w;
  }
}

/// Weights and stores for up to 32/group rows held by the warp: lane l handles slot
/// l % group of row group l / group; mine[] holds the lane's selected entry (slot 0 = row
/// maximum), full[] the all-expert sum when cfg.want_full; rows[i] < 0 marks an inactive
/// lane group. Writes weights/ids[row * k + slot].
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Tr, class Ctx>
MOECHECK_HD inline void finish_rows(const Ctx& ctx, const typename Tr::Entry* mine,
                                    const float* full, const std::int64_t* rows, int group,
                                    const RowConfig& cfg, Mutant m, float* weights,
                                    std::int32_t* ids) {
  using Entry = typename Tr::Entry;
  constexpr int N = Ctx::N;
  const bool fp16 = m == Mutant::fp16_accumulation;
  Entry top[N];
  int src[N];
  ctx.each([&](int i) { src[i] = ctx.lane(i) & ~(group - 1); });
  ctx.shfl(top, mine, src);
  float e[N], s[N], sc[N];
  ctx.each([&](int i) {
    const int slot = ctx.lane(i) & (group - 1);
    // The scale is loaded first: its latency overlaps the terms and the sum.
    sc[i] = 1.0f;
    if (cfg.scale != nullptr && slot < cfg.k && rows[i] >= 0) {
      sc[i] = ctx.load_scale(cfg.scale + (m == Mutant::scale_by_slot ? slot : entry_index(mine[i])));
    }
    e[i] = slot < cfg.k ? softmax_term(Tr::value(mine[i]), Tr::value(top[i])) : 0.0f;
    s[i] = e[i];
  });
  ctx.xor_sum(s, cfg.kpad, fp16);
  ctx.each([&](int i) {
    const int slot = ctx.lane(i) & (group - 1);
    if (slot >= cfg.k || rows[i] < 0) return;
    float d = cfg.want_full ? full[i] : s[i];
    if (d == 0.0f && m != Mutant::zero_sum_divide) d = 1.0f;
    const int id = entry_index(mine[i]);
    float w = div_rn(e[i], d);
    if (cfg.scale != nullptr) w = mul_rn(w, sc[i]);
    const std::int64_t off = rows[i] * cfg.k + slot;
    ctx.store(weights + off, w, ids + off, static_cast<std::int32_t>(id));
  });
}

// ---------------------------------------------------------------------------------------
// Block-per-row: phase 1 (every warp, its chunk of 32*V experts), phase 2 (warp 0 merges)
// ---------------------------------------------------------------------------------------

constexpr int kBlockV = 8;          ///< elements per lane in the block variant
constexpr int kBlockMaxWarps = 16;  ///< kMaxExperts / (32 * kBlockV)

/// Warps of the block variant for E experts.
MOECHECK_HD constexpr int block_warps(int E) { return (E + 32 * kBlockV - 1) / (32 * kBlockV); }

/// Phase 1 of warp `w`: local top-k over the warp's chunk. Round r's winner is written to
/// cand[r] (one entry per round, as it is found); when cfg.want_full, *part receives the sum
/// of softmax terms of the chunk relative to the chunk maximum (cand[0]).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Tr, int V, class Ctx, class CandRef, class PartRef>
MOECHECK_HD inline void block_phase1(const Ctx& ctx, typename Tr::Entry (*list)[V],
                                     const RowConfig& cfg, Mutant m, CandRef cand,
                                     PartRef part) {
  using Entry = typename Tr::Entry;
  constexpr int N = Ctx::N;
  const bool fp16 = m == Mutant::fp16_accumulation;
  for (int r = 0; r < cfg.k; ++r) {
    Entry head[N];
    ctx.each([&](int i) { head[i] = list[i][0]; });
    const Entry w = ctx.max(head);
    if (r == 0 && cfg.want_full) {
      const float mx = w != 0 ? Tr::value(w) : neg_inf();
      float s[N];
      ctx.each([&](int i) { s[i] = lane_term_sum<Tr, V>(list[i], mx, fp16); });
      ctx.xor_sum(s, 32, fp16);
      part(s);
    }
    const bool keep = m == Mutant::nan_duplicates && w != 0 && entry_is_nan<Tr>(w);
    ctx.each([&](int i) { pop_front_if<V>(list[i], !keep && list[i][0] == w); });
    cand(r, w);
  }
}

/// Phase 2 (warp 0): k-way merge of the W sorted candidate lists (lane i < W walks list i,
/// reading its head from `cand_at(i, pos)` every round), then the weights. The all-expert
/// sum is combined from the per-warp partial sums: sum_w part_w * term(max_w, max).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Tr, class Ctx, class CandAt, class PartAt>
MOECHECK_HD inline void block_phase2(const Ctx& ctx, int W, CandAt cand_at, PartAt part_at,
                                     std::int64_t row, const RowConfig& cfg, Mutant m,
                                     float* weights, std::int32_t* ids) {
  using Entry = typename Tr::Entry;
  constexpr int N = Ctx::N;
  const bool fp16 = m == Mutant::fp16_accumulation;
  int pos[N];
  Entry mine[N];
  float full[N];
  std::int64_t rows[N];
  ctx.each([&](int i) {
    pos[i] = 0;
    mine[i] = 0;
    full[i] = 0.0f;
    rows[i] = row;
  });
  Entry prev = 0;
  for (int r = 0; r < cfg.k; ++r) {
    Entry head[N];
    ctx.each([&](int i) {
      const int l = ctx.lane(i);
      head[i] = l < W ? cand_at(l, pos[i]) : Entry(0);
    });
    const Entry w = planted_last_round<Tr>(ctx.max(head), prev, r, cfg, m);
    if (r == 0 && cfg.want_full) {
      const float mx = Tr::value(w);
      float s[N];
      ctx.each([&](int i) {
        const int l = ctx.lane(i);
        s[i] = 0.0f;
        if (l < W) {
          const Entry h = cand_at(l, 0);
          const float f = h != 0 ? softmax_term(Tr::value(h), mx) : 0.0f;
          s[i] = mul_rn(part_at(l), f);
        }
      });
      ctx.xor_sum(s, 32, fp16);
      ctx.each([&](int i) { full[i] = s[i]; });
    }
    const bool keep = m == Mutant::nan_duplicates && entry_is_nan<Tr>(w);
    ctx.each([&](int i) {
      if (!keep && head[i] == w) ++pos[i];
      if (ctx.lane(i) == r) mine[i] = w;
    });
    prev = w;
  }
  finish_rows<Tr>(ctx, mine, full, rows, 32, cfg, m, weights, ids);
}

// ---------------------------------------------------------------------------------------
// Host warp context (32 lanes in arrays; collectives with the device's reduction order)
// ---------------------------------------------------------------------------------------

struct HostWarp {
  static constexpr int N = 32;
  static int lane(int i) { return i; }
  template <class F>
  void each(F&& f) const {
    for (int i = 0; i < N; ++i) f(i);
  }
  template <class Entry>
  Entry max(const Entry* v) const {
    Entry m = v[0];
    for (int i = 1; i < N; ++i) m = v[i] > m ? v[i] : m;
    return m;
  }
  template <class T>
  void shfl(T* out, const T* v, const int* src) const {
    T tmp[N];
    for (int i = 0; i < N; ++i) tmp[i] = v[src[i] & 31];
    for (int i = 0; i < N; ++i) out[i] = tmp[i];
  }
  void xor_sum(float* v, int width, bool fp16) const {
    for (int o = 1; o < width; o <<= 1) {
      float tmp[N];
      for (int i = 0; i < N; ++i) tmp[i] = v[i ^ o];
      for (int i = 0; i < N; ++i) v[i] = accumulate(v[i], tmp[i], fp16);
    }
  }
  bool any(const bool* v) const {
    for (int i = 0; i < N; ++i)
      if (v[i]) return true;
    return false;
  }
  static float load_scale(const float* p) { return *p; }
  static void store(float* w, float wv, std::int32_t* id, std::int32_t idv) {
    *w = wv;
    *id = idv;
  }
};

/// Warp-per-row: elements per lane for E experts (1, 2, 4, 8, 16).
MOECHECK_HD constexpr int warp_lane_elems(int E) { return next_pow2((E + 31) / 32); }

/// Warp-per-row: rows a warp processes per batch (shares the epilogue, loads in flight):
/// 32 / rows lanes per row must hold k slots, and large lanes lists keep one row.
MOECHECK_HD constexpr int warp_batch_rows(int V, int k) {
  const int by_k = 32 / next_pow2(k);
  const int by_v = V <= 4 ? 4 : (V == 8 ? 2 : 1);
  const int r = by_k < by_v ? by_k : by_v;
  return r >= 4 ? 4 : (r >= 2 ? 2 : 1);
}

// ---------------------------------------------------------------------------------------
// Thread-per-row: one thread owns one row (no warp collectives)
// ---------------------------------------------------------------------------------------

/// Bucket of k for the thread variant: the top list holds next_pow2(k) entries (1..32).
MOECHECK_HD constexpr int thread_bucket(int k) { return next_pow2(k); }

/// Entries per batch of the thread variant: a batch of B elements is sorted and merged into
/// the top list at once (B = KB up to 8: per element cost of a sorted-batch merge is lower
/// than one sorted insertion per element).
MOECHECK_HD constexpr int thread_batch(int KB) { return KB < 8 ? KB : 8; }

/// NaN (quiet or signalling, any sign and payload) -> -inf, every other value unchanged.
/// Device: max(x, -inf) (one FMNMX; PTX max returns the other operand for any NaN input).
/// Host: an explicit test (C fmaxf returns NaN for a signalling NaN operand).
MOECHECK_HD inline float nan_to_neg_inf(float x) {
#if defined(__CUDA_ARCH__)
  return fmaxf(x, neg_inf());
#else
  return x != x ? neg_inf() : x;
#endif
}

/// Order-preserving 32-bit key of float bits f: sign set -> ~f, else f | 0x80000000
/// (the arithmetic form of F32::key).
MOECHECK_HD inline std::uint32_t float_key32(std::uint32_t f) {
  const std::uint32_t s = static_cast<std::uint32_t>(static_cast<std::int32_t>(f) >> 31);
  return f ^ (s | 0x80000000u);
}

/// 0xffff0000 when the sign bit of f is set, else 0 (one byte permute on the device: PTX prmt
/// with selector 0xBB44, bytes 3 and 2 = the sign of byte 3 replicated, bytes 1 and 0 = byte 0
/// of the zero operand; __byte_perm would drop the sign-replicate bit of the selector).
MOECHECK_HD inline std::uint32_t sign_mask_hi16(std::uint32_t f) {
#if defined(__CUDA_ARCH__)
  std::uint32_t r;
  asm("prmt.b32 %0, %1, %2, 0xBB44;" : "=r"(r) : "r"(f), "r"(0u));
  return r;
#else
  return (f & 0x80000000u) ? 0xffff0000u : 0u;
#endif
}

/// Entry of raw element bits `raw` (16-bit types in the low half) at expert `index`:
/// exactly Tr::make(Tr::key(Tr::canonical(raw, keep_nan)), index) (kernel_host_test checks
/// every 16-bit pattern). fp32 and bf16 canonicalise with float operations instead of
/// integer compares: max(x, -inf) maps NaN to -inf and x + 0 maps -0 to +0 (round to
/// nearest, no flush to zero, so every other value, subnormals included, is unchanged).
template <class Tr>
MOECHECK_HD inline typename Tr::Entry thread_entry(std::uint32_t raw, int index, bool keep_nan) {
  using Entry = typename Tr::Entry;
  if constexpr (Tr::kType == GatingType::f16) {
    return Tr::make(Tr::key(Tr::canonical(raw, keep_nan)), index);
  } else {
    if (keep_nan) return Tr::make(Tr::key(Tr::canonical(raw, true)), index);
    const std::uint32_t low = kIndexMask - static_cast<std::uint32_t>(index);
    if constexpr (Tr::kType == GatingType::f32) {
      const std::uint32_t c = float_to_bits(add_rn(nan_to_neg_inf(bits_to_float(raw)), 0.0f));
      return (static_cast<Entry>(float_key32(c)) << 32) | low;
    } else {  // bf16: the value as float bits (raw << 16), key in the high half
      const std::uint32_t c = float_to_bits(add_rn(nan_to_neg_inf(bits_to_float(raw << 16)), 0.0f));
      // The low half of c is zero, so is the key's: adding the index part equals or-ing it.
      return (c ^ (sign_mask_hi16(c) | 0x80000000u)) + low;
    }
  }
}

/// The entries (Tr::make(Tr::key(Tr::canonical(raw, keep_nan)), index), as thread_entry) of
/// two consecutive experts (index0, index0 + 1) with raw bits raw0, raw1 (16-bit types in the
/// low half). 16-bit types on the device (sm_80 and later, not keep_nan): both halves of one
/// word at once: a packed fma x * 1 + 0 maps -0 to +0 (round to nearest; every other value,
/// subnormals included, is unchanged, and a NaN stays a NaN) on the fma pipe, a packed max
/// with -inf maps NaN to -inf, one byte permute replicates each half's sign (selector 0xBB99),
/// and the key is h ^ 0x8000 for a positive half, ~h for a negative one; the expert index
/// parts are added (e0 as a multiply-add, also on the fma pipe).
template <class Tr>
MOECHECK_HD inline void thread_entry_pair(std::uint32_t raw0, std::uint32_t raw1, int index0, bool keep_nan,
                                          typename Tr::Entry& e0, typename Tr::Entry& e1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (Tr::kBytes == 2) {
    if (!keep_nan) {
      const std::uint32_t w = raw0 | (raw1 << 16);
      std::uint32_t z, c;
      if constexpr (Tr::kType == GatingType::bf16) {
        asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(z) : "r"(w), "r"(0x3f803f80u), "r"(0u));
        asm("max.bf16x2 %0, %1, %2;" : "=r"(c) : "r"(z), "r"(0xff80ff80u));
      } else {
        asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(z) : "r"(w), "r"(0x3c003c00u), "r"(0u));
        asm("max.f16x2 %0, %1, %2;" : "=r"(c) : "r"(z), "r"(0xfc00fc00u));
      }
      std::uint32_t m;
      asm("prmt.b32 %0, %1, %2, 0xBB99;" : "=r"(m) : "r"(c), "r"(0u));
      const std::uint32_t key = c ^ (m | 0x80008000u);
      const std::uint32_t low0 = kIndexMask - static_cast<std::uint32_t>(index0);
      // e0 = key << 16 | low0 as one multiply-add (low0 < 0x10000: the sum is the or).
      asm("mad.lo.u32 %0, %1, 65536, %2;" : "=r"(e0) : "r"(key), "r"(low0));
      e1 = (key & 0xffff0000u) | (low0 - 1u);
      return;
    }
  }
#endif
  e0 = thread_entry<Tr>(raw0, index0, keep_nan);
  e1 = thread_entry<Tr>(raw1, index0 + 1, keep_nan);
}

/// Half cleaners of distance D, D/2, .., 1: sorts a bitonic sequence of N entries descending.
template <int N, int D, class Entry>
MOECHECK_HD inline void bitonic_clean(Entry* a) {
  if constexpr (D >= 1) {
MOECHECK_UNROLL
    for (int i = 0; i < N; ++i) {
      if ((i & D) == 0) CompareExchangeOnce()(a[i], a[i + D]);
    }
    bitonic_clean<N, D / 2>(a);
  }
}

/// top (KB entries, descending) := the KB largest of top and b (B <= KB entries,
/// descending), descending. max(top[KB-1-j], b[j]) leaves a bitonic sequence that holds the
/// KB largest (b reversed is ascending), the cleaners sort it.
template <int KB, int B, class Entry>
MOECHECK_HD inline void merge_topk(Entry* top, const Entry* b) {
MOECHECK_UNROLL
  for (int j = 0; j < B; ++j) top[KB - 1 - j] = top[KB - 1 - j] > b[j] ? top[KB - 1 - j] : b[j];
  bitonic_clean<KB, KB / 2>(top);
}

/// Host element source of the thread variant: row elements at row + e * cs * bytes, in
/// batches of B in expert order (the last batch padded; n = its real elements).
template <class Tr, int B>
struct HostRowSource {
  const unsigned char* row = nullptr;
  int E = 0;
  std::int64_t cs = 1;
  std::uint32_t load(int e) const {
    const unsigned char* p = row + static_cast<std::int64_t>(e) * cs * Tr::kBytes;
    if constexpr (Tr::kBytes == 4) {
      std::uint32_t b;
      std::memcpy(&b, p, 4);
      return b;
    } else {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      return h;
    }
  }
  template <class F>
  void scan(F&& f) const {
    for (int base = 0; base < E; base += B) {
      const int n = E - base < B ? E - base : B;
      std::uint32_t raw[B];
      for (int j = 0; j < B; ++j) raw[j] = j < n ? load(base + j) : 0u;
      f(static_cast<const std::uint32_t*>(raw), base, n);
    }
  }
  template <class F>
  void scan_full(F&& f) const {
    scan(f);
  }
  template <class F>
  void rescan(F&& f) const {
    scan(f);
  }
};

/// Host output of one row of the thread variant.
struct HostRowOut {
  float* weights = nullptr;     ///< the row's k weights
  std::int32_t* ids = nullptr;  ///< the row's k ids
  static float scale(const float* p) { return *p; }
  float weight(int slot) const { return weights[slot]; }
  std::int32_t id(int slot) const { return ids[slot]; }
  void store(int slot, float w, std::int32_t id) const {
    weights[slot] = w;
    ids[slot] = id;
  }
};

/// One selection step of the thread variant: the n <= Bt raw elements raw[0..n) (experts
/// base, base + 1, ..; 16-bit types in the low half) become entries (thread_entry_pair), are sorted
/// and merged into the descending list top (KB entries); raw[j >= n] is padding.
template <class Tr, int KB, int Bt>
MOECHECK_HD inline void thread_select_batch(typename Tr::Entry* top, const std::uint32_t* raw, int base, int n,
                                            bool keep_nan) {
  using Entry = typename Tr::Entry;
  Entry b[Bt];
MOECHECK_UNROLL
  for (int j = 0; j + 1 < Bt; j += 2) {
    Entry e0, e1;
    thread_entry_pair<Tr>(raw[j], raw[j + 1], base + j, keep_nan, e0, e1);
    b[j] = j < n ? e0 : Entry(0);
    b[j + 1] = j + 1 < n ? e1 : Entry(0);
  }
  if constexpr (Bt % 2 == 1) {
    b[Bt - 1] = Bt - 1 < n ? thread_entry<Tr>(raw[Bt - 1], base + Bt - 1, keep_nan) : Entry(0);
  }
  sort_desc<Bt, CompareExchangeOnce>(b);
  merge_topk<KB, Bt>(top, b);
}

/// The selected list of the thread variant after its selection, with the planted selection
/// bugs applied: off_by_one_k / drop_tied_expert (slot k-1 repeats
/// slot k-2), nan_duplicates (slots after the first NaN repeat it), as in select_rounds.
template <class Tr, int KB>
MOECHECK_HD inline void thread_fix_top(typename Tr::Entry* top, int k, Mutant m) {
  using Entry = typename Tr::Entry;
  // (Selects on constant slots with the slot tested through a bit mask: a test j == k - 1 lets
  // the compiler turn the loop into one store at index k - 1, and a dynamically indexed list
  // lives in local memory on the device.)
  if (m == Mutant::off_by_one_k || m == Mutant::drop_tied_expert) {
    const std::uint32_t last_slot = 1u << (k - 1);
MOECHECK_UNROLL
    for (int j = KB - 1; j >= 1; --j) {
      const bool hit = ((last_slot >> j) & 1u) != 0 &&
                       (m == Mutant::off_by_one_k || Tr::entry_key(top[j]) == Tr::entry_key(top[j - 1]));
      top[j] = hit ? top[j - 1] : top[j];
    }
  }
  if (m == Mutant::nan_duplicates) {
    bool seen = false;
    Entry first_nan = 0;
MOECHECK_UNROLL
    for (int j = 0; j < KB; ++j) {
      const Entry cur = top[j];
      const bool nan_here = !seen && j < k && entry_is_nan<Tr>(cur);
      top[j] = seen ? first_nan : cur;
      first_nan = nan_here ? cur : first_nan;
      seen = seen || nan_here;
    }
  }
}

/// The all-expert sum of the thread variant: softmax terms relative to mx in expert order
/// (Src::scan_full: batches of B = thread_batch(KB) elements).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Tr, int KB, class Src>
MOECHECK_HD inline float thread_full_sum(Src& src, float mx, Mutant m) {
  constexpr int B = thread_batch(KB);
  const bool keep_nan = m == Mutant::nan_duplicates;
  const bool fp16 = m == Mutant::fp16_accumulation;
  float full = 0.0f;
  src.scan_full([&](const std::uint32_t* raw, int base, int n) {
MOECHECK_UNROLL
    for (int j = 0; j < B; ++j) {
      if (j < n) {
        const float x = Tr::value(thread_entry<Tr>(raw[j], base + j, keep_nan));
        full = accumulate(full, softmax_term(x, mx), fp16);
      }
    }
  });
  return full;
}

/// fp32 selection of the thread variant with 32-bit entries (a 64-bit compare-exchange costs
/// three times the instructions of a 32-bit one). Coarse entry of expert i: the order-preserving
/// key with its low ib bits (2^ib >= E) replaced by (2^ib - 1 - i): the order of the key's high
/// 32 - ib bits (its "bucket"), then index ascending. One pass keeps the KB largest coarse
/// entries (batch sort and merge as for the exact entries) and the largest entry the merges
/// dropped. Let K be the bucket of the k-th coarse entry. Every expert of a higher bucket is in
/// the exact top k, none of a lower bucket is; when no expert of bucket K lies past the k-th
/// coarse entry (the next one, in the list or the largest dropped, has a lower bucket or does
/// not exist), the first k coarse entries are exactly the top-k set: their exact entries
/// (values reloaded by index, Src::load) sorted give thread_row's list, slots >= k padding.
/// Otherwise (ties inside bucket K beyond the list; rare for continuous values) returns false
/// and the caller selects with exact entries.
/// Index mask of fp32 coarse entries for E experts: 2^b - 1 for the smallest b >= 1 with 2^b >= E.
MOECHECK_HD inline std::uint32_t coarse_index_mask(int E) {
  int ib = 1;
  while ((1 << ib) < E) ++ib;
  return (1u << ib) - 1u;
}

/// c (KB coarse entries, descending) := the KB largest of c and b (B <= KB, descending), as
/// merge_topk; *dropped := the largest of *dropped and the entries the merge drops.
template <int KB, int B>
MOECHECK_HD inline void coarse_merge(std::uint32_t* c, const std::uint32_t* b, std::uint32_t& dropped) {
  std::uint32_t lost = 0;
MOECHECK_UNROLL
  for (int j = 0; j < B; ++j) {
    const std::uint32_t x = c[KB - 1 - j], y = b[j];
    c[KB - 1 - j] = x > y ? x : y;
    const std::uint32_t lo = x > y ? y : x;
    lost = lost > lo ? lost : lo;
  }
  dropped = dropped > lost ? dropped : lost;
  bitonic_clean<KB, KB / 2>(c);
}

/// One coarse selection step: the coarse entries of raw[0..n) (experts base + j; raw[j >= n]
/// is padding), sorted, merged into c (coarse_merge).
template <int KB, int Bt>
MOECHECK_HD inline void coarse_select_batch(std::uint32_t* c, std::uint32_t& dropped, const std::uint32_t* raw,
                                            int base, int n, std::uint32_t imask, bool keep_nan) {
  std::uint32_t b[Bt];
MOECHECK_UNROLL
  for (int j = 0; j < Bt; ++j) {
    const std::uint32_t key = static_cast<std::uint32_t>(thread_entry<F32>(raw[j], 0, keep_nan) >> 32);
    b[j] = j < n ? (key & ~imask) | (imask - static_cast<std::uint32_t>(base + j)) : 0u;
  }
  sort_desc<Bt, CompareExchangeOnce>(b);
  coarse_merge<KB, Bt>(c, b, dropped);
}

/// True when the first k of the coarse list c (the KB largest coarse entries of a row,
/// descending; `dropped` the largest of the others, 0 if none) are exactly the row's top-k
/// set: no expert of the k-th entry's bucket ranks after it.
template <int KB>
MOECHECK_HD inline bool coarse_decides(const std::uint32_t* c, std::uint32_t dropped, int k, std::uint32_t imask) {
  // c[k - 1] and c[k] by selects on constant slots tested through bit masks (a test j == k - 1
  // would become a dynamically indexed load, the list in local memory on the device).
  const std::uint32_t kth_bit = 1u << (k - 1);
  std::uint32_t kth = c[0], next = 0;
MOECHECK_UNROLL
  for (int j = 1; j < KB; ++j) {
    kth = ((kth_bit >> j) & 1u) != 0 ? c[j] : kth;
    next = ((kth_bit >> (j - 1)) & 1u) != 0 ? c[j] : next;
  }
  if (k == KB) next = dropped;
  return next == 0 || (next & ~imask) != (kth & ~imask);
}

/// top (KB exact fp32 entries, descending) := the exact entries of the first k coarse entries
/// of c (values reloaded with load(index)), slots >= k padding.
template <int KB, int B, class Load>
MOECHECK_HD inline void coarse_to_exact(const std::uint32_t* c, int k, std::uint32_t imask, bool keep_nan, Load&& load,
                                        std::uint64_t* top) {
MOECHECK_UNROLL
  for (int j = 0; j < KB; ++j) top[j] = 0;
MOECHECK_UNROLL
  for (int q = 0; q < KB; q += B) {
    std::uint64_t b[B];
MOECHECK_UNROLL
    for (int j = 0; j < B; ++j) {
      b[j] = 0;
      if (q + j < k) {
        const int idx = static_cast<int>(imask - (c[q + j] & imask));
        b[j] = thread_entry<F32>(load(idx), idx, keep_nan);
      }
    }
    sort_desc<B, CompareExchangeOnce>(b);
    merge_topk<KB, B>(top, b);
  }
}

#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <int KB, int B, class Src>
MOECHECK_HD inline bool thread_select_f32_coarse(Src& src, int E, int k, bool keep_nan, std::uint64_t* top) {
  const std::uint32_t imask = coarse_index_mask(E);
  std::uint32_t c[KB];
MOECHECK_UNROLL
  for (int j = 0; j < KB; ++j) c[j] = 0;
  std::uint32_t dropped = 0;
  src.scan([&](const std::uint32_t* raw, int base, int n) {
    coarse_select_batch<KB, B>(c, dropped, raw, base, n, imask, keep_nan);
  });
  if (!coarse_decides<KB>(c, dropped, k, imask)) return false;
  coarse_to_exact<KB, B>(c, k, imask, keep_nan, [&](int idx) { return src.load(idx); }, top);
  return true;
}

/// One row, one thread. Src: scan(f) / scan_full(f) call f(raw, base, n) for consecutive
/// batches of B = thread_batch(KB) elements in expert order (raw[j] = bits of expert
/// base + j, 16-bit types in the low half; j >= n is padding); scan streams the row for the
/// selection, scan_full again for the all-expert sum (cfg.want_full only); fp32 also needs
/// load(i) (raw bits of expert i) and rescan(f) (scan again: the exact selection when the
/// coarse one cannot decide, thread_select_f32_coarse). Out: store(slot,
/// w, id) for slots < k, weight(slot) / id(slot) read a stored slot back (the softmax term
/// is stored first, then replaced by its weight), scale(p) loads a per-expert scale.
/// Selection: top = the KB largest entries, descending = the winners of the k rounds of the
/// other variants. Mutants: thread_fix_top; the weight epilogue is finish_rows' (same terms,
/// same pairwise sum over kpad slots, same guard, divide and scale), the all-expert sum is
/// taken in expert order relative to top[0] (thread_full_sum). skip_partial_warp is applied
/// by the callers (rows of a last partial 32-row tile are skipped), grid_overflow by the
/// launcher; cfg.E_valid is not used. group_row computes the same outputs with S lanes.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Tr, int KB, class Src, class Out>
MOECHECK_HD inline void thread_row(Src& src, const RowConfig& cfg, Mutant m, Out& out) {
  using Entry = typename Tr::Entry;
  constexpr int B = thread_batch(KB);
  const bool keep_nan = m == Mutant::nan_duplicates;
  const bool fp16 = m == Mutant::fp16_accumulation;
  const int k = cfg.k;
  Entry top[KB];
  const auto select = [&](const std::uint32_t* raw, int base, int n) {
    thread_select_batch<Tr, KB, B>(top, raw, base, n, keep_nan);
  };
  if constexpr (Tr::kType == GatingType::f32) {
    if (!thread_select_f32_coarse<KB, B>(src, cfg.E, k, keep_nan, top)) {
MOECHECK_UNROLL
      for (int j = 0; j < KB; ++j) top[j] = 0;
      src.rescan(select);
    }
  } else {
MOECHECK_UNROLL
    for (int j = 0; j < KB; ++j) top[j] = 0;
    src.scan(select);
  }
  thread_fix_top<Tr, KB>(top, k, m);
  const float mx = Tr::value(top[0]);
  const float full = cfg.want_full ? thread_full_sum<Tr, KB>(src, mx, m) : 0.0f;
  float e[KB], s[KB];
MOECHECK_UNROLL
  for (int j = 0; j < KB; ++j) {
    e[j] = j < k ? softmax_term(Tr::value(top[j]), mx) : 0.0f;
    s[j] = e[j];
  }
MOECHECK_UNROLL
  for (int w = 1; w < KB; w <<= 1) {
MOECHECK_UNROLL
    for (int j = 0; j + w < KB; j += 2 * w) s[j] = accumulate(s[j], s[j + w], fp16);
  }
  float d = cfg.want_full ? full : s[0];
  if (d == 0.0f && m != Mutant::zero_sum_divide) d = 1.0f;
  // The terms go to the output first and are divided in place by a rolled loop: one
  // division call site (its slow path is a subroutine call on the device; k unrolled call
  // sites make the register allocator spill around them).
MOECHECK_UNROLL
  for (int j = 0; j < KB; ++j) {
    if (j < k) out.store(j, e[j], static_cast<std::int32_t>(entry_index(top[j])));
  }
MOECHECK_NO_UNROLL
  for (int j = 0; j < k; ++j) {
    const std::int32_t id = out.id(j);
    float w = div_rn(out.weight(j), d);
    if (cfg.scale != nullptr) w = mul_rn(w, out.scale(cfg.scale + (m == Mutant::scale_by_slot ? j : id)));
    out.store(j, w, id);
  }
}

// ---------------------------------------------------------------------------------------
// Thread variant, lane groups: S lanes of a warp share a row (same outputs as thread_row)
// ---------------------------------------------------------------------------------------

/// Lanes per row the thread variant's launcher uses for T rows of E experts of `bytes`-byte
/// elements, top-list bucket KB, on a device of `sms` multiprocessors, when the rows can be
/// read in 16-byte units (contiguous, aligned, E * bytes % 16 == 0; otherwise 1):
///  * 1 (one thread per row) once T >= sms * 512: 16 warps of rows per multiprocessor keep
///    the memory system busy, and a lane group only adds merge work;
///  * 1 for 16-bit rows of at most 128 bytes (E <= 64) from T >= sms * 64: measured on an
///    H200 (2026-12-01, E = 64, k = 4, T = 16384) one thread per row took 3.73 us (bf16) and
///    3.88 us (f16) against 4.14 and 4.25 us for lane groups of 8;
///  * otherwise the smallest power of two S <= 32 with T * S >= sms * 512, at most one lane
///    per 16-byte unit of a row, and at least KB / 2 (a lane holds at most two output slots).
MOECHECK_HD constexpr int thread_lanes_per_row(int E, int bytes, int KB, std::int64_t T, int sms) {
  const std::int64_t want = static_cast<std::int64_t>(sms) * 512;
  if (T >= want) return 1;
  if (bytes == 2 && E * bytes <= 128 && T >= static_cast<std::int64_t>(sms) * 64) return 1;
  int s = 1;
  while (s < 32 && T * s < want) s *= 2;
  const int units = E * bytes / 16;
  while (s > 1 && s > units) s /= 2;
  return s < KB / 2 ? KB / 2 : s;
}

/// Output slots a lane of a group of S lanes owns (KB / min(S, KB): 1 or 2 for S >= KB / 2).
MOECHECK_HD constexpr int group_slots_per_lane(int KB, int S) { return S >= KB ? 1 : KB / S; }

/// The entry at dynamic position j of a list held in registers (a select chain: constant
/// register indices, no local memory on the device).
template <int KB, class Entry>
MOECHECK_HD inline Entry select_at(const Entry* list, int j) {
  Entry r = list[0];
MOECHECK_UNROLL
  for (int i = 1; i < KB; ++i) r = i == j ? list[i] : r;
  return r;
}

/// One row per group of S lanes (S a power of two, 2..32; groups are aligned blocks of S
/// lanes of the warp, lane g = lane % S of its group), same outputs as thread_row for every
/// family and mutant. Ctx: warp context (HostWarp: 32 lanes; device: the calling lane), every
/// lane of the warp takes part (collectives). Per held lane i: lsrc[i].scan(f) calls f(raw,
/// base, n) for the lane's share of the row in batches of LaneSrc::kBatch consecutive experts
/// (any subset, every expert of the row in exactly one lane of the group), rsrc[i] is a
/// thread_row source of the whole row (scan_full: the all-expert sum, cfg.want_full only),
/// out[i] the row's output (store(slot, w, id)); a lane with out[i].active() false stores
/// nothing.
/// Algorithm: each lane selects the KB largest entries of its share (thread_select_batch),
/// log2(S) butterfly steps merge the partner lane's list (lane ^ o) into the lane's own
/// (merge_topk; both partners obtain the top KB of the union, which is unique), so every lane
/// holds thread_row's list. Then lane g owns slots [g * P, g * P + P), P =
/// group_slots_per_lane: its terms, a pairwise sum over its P slots and a butterfly over
/// KB / P lanes (add is commutative, so the butterfly's sums equal thread_row's pairwise
/// tree bit for bit), the guard, divide and scale of thread_row.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <class Tr, int KB, class Ctx, class LaneSrc, class RowSrc, class Out>
MOECHECK_HD inline void group_row(const Ctx& ctx, int S, LaneSrc* lsrc, RowSrc* rsrc, const RowConfig& cfg,
                                  Mutant m, Out* out) {
  using Entry = typename Tr::Entry;
  constexpr int N = Ctx::N;
  constexpr int Bt = LaneSrc::kBatch;
  const bool keep_nan = m == Mutant::nan_duplicates;
  const bool fp16 = m == Mutant::fp16_accumulation;
  const int k = cfg.k;
  Entry top[N][KB];
  bool exact = true;
  if constexpr (Tr::kType == GatingType::f32) {
    // fp32: coarse entries (thread_select_f32_coarse) in every lane, merged by the butterfly.
    // Each lane knows the largest entry it dropped (in its own merges and in the butterfly's,
    // which both partners make alike), so the largest dropped entry of a group is the maximum
    // over its lanes: the group cannot decide exactly when one of its lanes cannot, and the
    // exact selection below runs for the whole warp (its shuffles need every lane) when any
    // lane cannot.
    const std::uint32_t imask = coarse_index_mask(cfg.E);
    std::uint32_t c[N][KB], dropped[N];
    ctx.each([&](int i) {
MOECHECK_UNROLL
      for (int j = 0; j < KB; ++j) c[i][j] = 0;
      dropped[i] = 0;
      lsrc[i].scan([&](const std::uint32_t* raw, int base, int n) {
        coarse_select_batch<KB, Bt>(c[i], dropped[i], raw, base, n, imask, keep_nan);
      });
    });
    for (int o = 1; o < S; o <<= 1) {
      int src[N];
      ctx.each([&](int i) { src[i] = ctx.lane(i) ^ o; });
      std::uint32_t other[N][KB];
MOECHECK_UNROLL
      for (int j = 0; j < KB; ++j) {
        std::uint32_t col[N], got[N];
        ctx.each([&](int i) { col[i] = c[i][j]; });
        ctx.shfl(got, col, src);
        ctx.each([&](int i) { other[i][j] = got[i]; });
      }
      ctx.each([&](int i) { coarse_merge<KB, KB>(c[i], other[i], dropped[i]); });
    }
    bool undecided[N];
    ctx.each([&](int i) { undecided[i] = !coarse_decides<KB>(c[i], dropped[i], k, imask); });
    if (!ctx.any(undecided)) {
      ctx.each([&](int i) {
        coarse_to_exact<KB, thread_batch(KB)>(c[i], k, imask, keep_nan, [&](int idx) { return rsrc[i].load(idx); },
                                              top[i]);
      });
      exact = false;
    }
  }
  if (exact) {
    ctx.each([&](int i) {
MOECHECK_UNROLL
      for (int j = 0; j < KB; ++j) top[i][j] = 0;
      lsrc[i].scan([&](const std::uint32_t* raw, int base, int n) {
        thread_select_batch<Tr, KB, Bt>(top[i], raw, base, n, keep_nan);
      });
    });
    for (int o = 1; o < S; o <<= 1) {
      int src[N];
      ctx.each([&](int i) { src[i] = ctx.lane(i) ^ o; });
      Entry other[N][KB];
MOECHECK_UNROLL
      for (int j = 0; j < KB; ++j) {
        Entry col[N], got[N];
        ctx.each([&](int i) { col[i] = top[i][j]; });
        ctx.shfl(got, col, src);
        ctx.each([&](int i) { other[i][j] = got[i]; });
      }
      ctx.each([&](int i) { merge_topk<KB, KB>(top[i], other[i]); });
    }
  }
  const int P = group_slots_per_lane(KB, S);
  float e[N][2], s[N], mxs[N], sc[N][2];
  std::int32_t ids[N][2];
  ctx.each([&](int i) {
    thread_fix_top<Tr, KB>(top[i], k, m);
    mxs[i] = Tr::value(top[i][0]);
    const int g = ctx.lane(i) & (S - 1);
MOECHECK_UNROLL
    for (int q = 0; q < 2; ++q) {
      const int j = g * P + q;
      const Entry ent = select_at<KB>(top[i], j);
      ids[i][q] = static_cast<std::int32_t>(entry_index(ent));
      // The scales are loaded first: their latency overlaps the terms and the sum.
      sc[i][q] = 1.0f;
      if (cfg.scale != nullptr && q < P && j < k && out[i].active()) {
        sc[i][q] = out[i].scale(cfg.scale + (m == Mutant::scale_by_slot ? j : ids[i][q]));
      }
      e[i][q] = q < P && j < k ? softmax_term(Tr::value(ent), mxs[i]) : 0.0f;
    }
    s[i] = P == 2 ? accumulate(e[i][0], e[i][1], fp16) : e[i][0];
  });
  ctx.xor_sum(s, KB / P, fp16);
  ctx.each([&](int i) {
    float d = cfg.want_full ? thread_full_sum<Tr, KB>(rsrc[i], mxs[i], m) : s[i];
    if (d == 0.0f && m != Mutant::zero_sum_divide) d = 1.0f;
    const int g = ctx.lane(i) & (S - 1);
MOECHECK_UNROLL
    for (int q = 0; q < 2; ++q) {
      const int j = g * P + q;
      if (q < P && j < k && out[i].active()) {
        float w = div_rn(e[i][q], d);
        if (cfg.scale != nullptr) w = mul_rn(w, sc[i][q]);
        out[i].store(j, w, ids[i][q]);
      }
    }
  });
}

/// Host share of lane g of a group of S lanes: the row's 16-byte units g, g + S, g + 2S, ..
/// (16 / bytes consecutive experts each; the row is contiguous and E * bytes % 16 == 0), in
/// batches of Bt experts (Bt divides the unit).
template <class Tr, int Bt>
struct HostLaneSource {
  static constexpr int kBatch = Bt;
  static constexpr int UE = 16 / Tr::kBytes;
  static_assert(UE % Bt == 0, "batches lie inside a unit");
  const unsigned char* row = nullptr;
  int units = 0;
  int S = 1;
  int g = 0;
  template <class F>
  void scan(F&& f) const {
    for (int u = g; u < units; u += S) {
      for (int b0 = 0; b0 < UE; b0 += Bt) {
        std::uint32_t raw[Bt];
        for (int j = 0; j < Bt; ++j) {
          const unsigned char* p = row + (static_cast<std::int64_t>(u) * UE + b0 + j) * Tr::kBytes;
          if constexpr (Tr::kBytes == 4) {
            std::memcpy(&raw[j], p, 4);
          } else {
            std::uint16_t h;
            std::memcpy(&h, p, 2);
            raw[j] = h;
          }
        }
        f(static_cast<const std::uint32_t*>(raw), u * UE + b0, Bt);
      }
    }
  }
};

/// Batch of a lane group's share: thread_batch(KB), at most one 16-byte unit.
template <class Tr>
MOECHECK_HD constexpr int group_batch(int KB) {
  return thread_batch(KB) < 16 / Tr::kBytes ? thread_batch(KB) : 16 / Tr::kBytes;
}

}  // namespace moecheck::kernels::row
