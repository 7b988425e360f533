// moecheck reference: row-level primitives of the hot paths shared by the reference routing
// (routing.cpp), the oracles (oracle.cpp) and the case generators (harness/core/generators.cpp):
// loading a row exactly as GatingView::at does, and exact order statistics without branch-heavy
// sorting. An internal header: no public header includes it.
//
// Everything here returns exactly what the straightforward code returns (values, not merely
// equal-comparing ones); properties/fast_path_test.cpp checks it against that code.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "reference/routing.hpp"

namespace moecheck::row_select {

/// half_bits_to_float, with the normal numbers converted inline.
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  if (exp == 0 || exp == 0x1f) return half_bits_to_float(h);  // zero, subnormal, inf, NaN
  const std::uint32_t u = (static_cast<std::uint32_t>(h & 0x8000u) << 16) | ((exp - 15 + 127) << 23) |
                          (static_cast<std::uint32_t>(h & 0x3ffu) << 13);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Loads row t of g into x[0..g.E): x[e] == g.at(t, e) bit for bit, one dtype dispatch per row.
inline void load_row(const GatingView& g, std::int64_t t, double* x) {
  const std::int64_t E = g.E, cs = g.col_stride;
  const auto* base = static_cast<const std::uint8_t*>(g.data);
  switch (g.dtype) {
    case DType::f32: {
      const std::uint8_t* r = base + t * g.row_stride * 4;
      if (cs == 1) {
        for (std::int64_t e = 0; e < E; ++e) {
          float f;
          std::memcpy(&f, r + e * 4, 4);
          x[e] = f;
        }
      } else {
        for (std::int64_t e = 0; e < E; ++e) {
          float f;
          std::memcpy(&f, r + e * cs * 4, 4);
          x[e] = f;
        }
      }
      return;
    }
    case DType::f16: {
      const std::uint8_t* r = base + t * g.row_stride * 2;
      for (std::int64_t e = 0; e < E; ++e) {
        std::uint16_t h;
        std::memcpy(&h, r + e * cs * 2, 2);
        x[e] = half_to_float(h);
      }
      return;
    }
    case DType::bf16: {
      const std::uint8_t* r = base + t * g.row_stride * 2;
      for (std::int64_t e = 0; e < E; ++e) {
        std::uint16_t b;
        std::memcpy(&b, r + e * cs * 2, 2);
        const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        x[e] = f;
      }
      return;
    }
  }
  for (std::int64_t e = 0; e < E; ++e) x[e] = g.at(t, e);  // unknown dtype: at()'s answer
}

/// The k-th largest (1 <= k <= n) of a[0..n) (no NaN) for small n: the element with fewer than
/// k values above it and at least k values at or above it, found by counting (no branch on
/// the data). Any of several equal answers may be returned.
inline double select_by_counting(const double* a, std::size_t n, std::size_t k) {
  double ans = a[0];
  for (std::size_t i = 0; i < n; ++i) {
    const double v = a[i];
    std::size_t gt = 0, ge = 0;
    for (std::size_t j = 0; j < n; ++j) {
      gt += a[j] > v ? 1 : 0;
      ge += a[j] >= v ? 1 : 0;
    }
    ans = gt < k && k <= ge ? v : ans;
  }
  return ans;
}

/// The k-th largest (1-based, 1 <= k <= n) of a[0..n), which holds no NaN. `a` and `tmp` are
/// scratch of n elements each; `a` is overwritten. Quickselect with a sampled pivot placed near
/// the wanted rank and a branch-free split (equal values are counted, not moved), finished by
/// counting below 12 elements, so random rows cost no branch mispredictions. The value is
/// exact; when several elements equal it (0 and -0 included) any of them may be returned.
inline double kth_largest_any(double* a, double* tmp, std::size_t n, std::size_t k) {
  for (;;) {
    if (k == 1) {
      double m = a[0];
      for (std::size_t i = 1; i < n; ++i) m = a[i] > m ? a[i] : m;
      return m;
    }
    if (k == n) {
      double m = a[0];
      for (std::size_t i = 1; i < n; ++i) m = a[i] < m ? a[i] : m;
      return m;
    }
    if (n <= 12) return select_by_counting(a, n, k);
    // Seven evenly spaced samples; the one whose expected rank ((j+1) n / 8) first reaches k is
    // the pivot, so the kept side is small.
    double s[7];
    for (std::size_t i = 0; i < 7; ++i) s[i] = a[(2 * i + 1) * n / 14];
    const double p = select_by_counting(s, 7, std::min<std::size_t>(k * 8 / n, 6) + 1);
    std::size_t ngt = 0, nlt = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double v = a[i];
      a[ngt] = v;  // ngt <= i: never overwrites an unread element
      tmp[nlt] = v;
      ngt += v > p ? 1 : 0;
      nlt += v < p ? 1 : 0;
    }
    const std::size_t nge = n - nlt;  // >= 1: p is an element
    if (k <= ngt) {
      n = ngt;
    } else if (k <= nge) {
      return p;
    } else {
      k -= nge;
      n = nlt;
      std::swap(a, tmp);
    }
  }
}

/// The k-th largest of vals[0..n) (no NaN), bit for bit what std::nth_element(greater) leaves
/// at position k - 1 of a copy: kth_largest_any, except that a zero result from a row holding
/// both 0 and -0 (where the element nth_element lands on decides the sign) is taken from
/// nth_element itself. `a` and `tmp` are scratch of n elements each.
inline double kth_largest(const double* vals, std::size_t n, std::size_t k, double* a, double* tmp) {
  std::copy(vals, vals + n, a);
  const double v = kth_largest_any(a, tmp, n, k);
  if (v != 0.0) return v;
  bool pos = false, neg = false;
  for (std::size_t i = 0; i < n; ++i) {
    if (vals[i] == 0.0) (std::signbit(vals[i]) ? neg : pos) = true;
  }
  if (!(pos && neg)) return v;
  std::copy(vals, vals + n, a);
  std::nth_element(a, a + (k - 1), a + n, std::greater<double>());
  return a[k - 1];
}

/* The first m experts (1 <= m <= n) of the canonical order of keys[0..n) (no NaN): key
 * descending, equal keys by ascending index. Without sorting n: v_m = the m-th largest key; the
 * canonical first m are every expert with key > v_m (fewer than m) followed by the lowest-index
 * experts with key == v_m. Those are ordered by key descending with a stable sort of the
 * index-ordered list (equal keys stay in index order). The order is a strict total order, so
 * the result is exactly that of a (partial) sort with that comparator. `a`, `tmp` (double) and
 * `eq` (int32) are scratch of n elements each. */
inline void canonical_top(const double* key, std::size_t n, std::size_t m, std::int32_t* ids, double* a, double* tmp,
                          std::int32_t* eq) {
  const auto desc_then_index = [key](std::int32_t x, std::int32_t y) {
    if (key[x] != key[y]) return key[x] > key[y];
    return x < y;
  };
  if (m >= n) {
    for (std::size_t e = 0; e < n; ++e) ids[e] = static_cast<std::int32_t>(e);
    std::sort(ids, ids + n, desc_then_index);
    return;
  }
  std::copy(key, key + n, a);
  const double vm = kth_largest_any(a, tmp, n, m);
  std::size_t ngt = 0, neq = 0;
  for (std::size_t e = 0; e < n; ++e) {
    const double v = key[e];
    ids[ngt] = static_cast<std::int32_t>(e);  // ngt < m: fewer than m keys exceed v_m
    eq[neq] = static_cast<std::int32_t>(e);
    ngt += v > vm ? 1 : 0;
    neq += v == vm ? 1 : 0;
  }
  if (ngt <= 32) {  // place each by its rank: keys above it, plus equal keys of lower index
    double kv[32];
    std::int32_t in[32];
    for (std::size_t i = 0; i < ngt; ++i) {
      in[i] = ids[i];
      kv[i] = key[ids[i]];
    }
    for (std::size_t i = 0; i < ngt; ++i) {
      const double v = kv[i];
      std::size_t rank = 0;
      for (std::size_t j = 0; j < i; ++j) rank += kv[j] >= v ? 1 : 0;
      for (std::size_t j = i + 1; j < ngt; ++j) rank += kv[j] > v ? 1 : 0;
      ids[rank] = in[i];
    }
  } else {
    std::sort(ids, ids + ngt, desc_then_index);
  }
  for (std::size_t i = 0; ngt + i < m; ++i) ids[ngt + i] = eq[i];
}

}  // namespace moecheck::row_select
