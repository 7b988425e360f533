// moecheck fused routing: the host emulation of the kernel variants. It runs the
// routing_row.hpp warp programs with a 32-lane host context, and the thread-per-row routine
// with a host element source, so its output is bit-identical to the device kernels'.
#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/routing_kernels.hpp"
#include "kernels/routing_row.hpp"

namespace moecheck::kernels {

namespace {

using row::HostWarp;
using row::RowConfig;

/// Loads the raw elements of the 32 lanes of one warp chunk exactly as load_lane does on the
/// device (element by element; the device's vector loads read the same elements).
template <class Tr, int V>
void load_warp(const RoutingArgs& a, std::int64_t r, int chunk_base, std::int64_t cs,
               std::uint32_t (*words)[row::raw_words<Tr, V>()]) {
  constexpr int NW = row::raw_words<Tr, V>();
  const auto* base = static_cast<const unsigned char*>(a.gating);
  for (int l = 0; l < 32; ++l) {
    for (int w = 0; w < NW; ++w) words[l][w] = 0;
    for (int j = 0; j < V; ++j) {
      const int idx = chunk_base + row::lane_elem_index<Tr, V>(l, j);
      if (idx >= a.E) continue;
      const std::int64_t off = (r * a.row_stride + static_cast<std::int64_t>(idx) * cs) * Tr::kBytes;
      if constexpr (Tr::kBytes == 4) {
        std::uint32_t b;
        std::memcpy(&b, base + off, 4);
        words[l][j] = b;
      } else {
        std::uint16_t h;
        std::memcpy(&h, base + off, 2);
        words[l][j >> 1] |= static_cast<std::uint32_t>(h) << ((j & 1) * 16);
      }
    }
  }
}

template <class Tr, int V>
void emulate_warp(const RoutingArgs& a, const RowConfig& cfg, Mutant m, std::int64_t cs) {
  using Entry = typename Tr::Entry;
  constexpr int NW = row::raw_words<Tr, V>();
  const HostWarp ctx;
  std::uint32_t words[32][NW];
  Entry list[32][V];
  for (std::int64_t r = 0; r < a.T; ++r) {
    load_warp<Tr, V>(a, r, 0, cs, words);
    for (int l = 0; l < 32; ++l) row::build_list<Tr, V>(words[l], l, 0, cfg, m, list[l]);
    Entry mine[32] = {};
    float full[32] = {};
    std::int64_t rows[32];
    for (auto& x : rows) x = r;
    row::select_rounds<Tr, V>(ctx, list, cfg, m, 0, 32, mine, full);
    row::finish_rows<Tr>(ctx, mine, full, rows, 32, cfg, m, a.weights, a.ids);
  }
}

template <class Tr>
void emulate_block(const RoutingArgs& a, const RowConfig& cfg, Mutant m, std::int64_t cs) {
  using Entry = typename Tr::Entry;
  constexpr int V = row::kBlockV;
  constexpr int NW = row::raw_words<Tr, V>();
  const HostWarp ctx;
  const int W = row::block_warps(a.E);
  std::uint32_t words[32][NW];
  Entry list[32][V];
  Entry cand[row::kBlockMaxWarps][kMaxK] = {};
  float part[row::kBlockMaxWarps] = {};
  for (std::int64_t r = 0; r < a.T; ++r) {
    for (int w = 0; w < W; ++w) {
      const int chunk = w * 32 * V;
      load_warp<Tr, V>(a, r, chunk, cs, words);
      for (int l = 0; l < 32; ++l) row::build_list<Tr, V>(words[l], l, chunk, cfg, m, list[l]);
      row::block_phase1<Tr, V>(
          ctx, list, cfg, m, [&](int rr, Entry e) { cand[w][rr] = e; },
          [&](const float* s) { part[w] = s[0]; });
    }
    row::block_phase2<Tr>(
        ctx, W, [&](int l, int pos) { return cand[l][pos]; }, [&](int l) { return part[l]; },
        r, cfg, m, a.weights, a.ids);
  }
}

/// Thread-per-row: row::thread_row on every row in order. skip_partial_warp leaves the rows
/// of the last partial 32-row tile unwritten (T - T % 32 rows are computed), as the kernel's
/// tile loop does.
template <class Tr, int KB>
void emulate_thread(const RoutingArgs& a, const RowConfig& cfg, Mutant m, std::int64_t cs) {
  constexpr int B = row::thread_batch(KB);
  const auto* base = static_cast<const unsigned char*>(a.gating);
  const std::int64_t rows = m == Mutant::skip_partial_warp ? a.T - a.T % 32 : a.T;
  for (std::int64_t r = 0; r < rows; ++r) {
    row::HostRowSource<Tr, B> src{base + r * a.row_stride * Tr::kBytes, a.E, cs};
    row::HostRowOut out{a.weights + r * a.k, a.ids + r * a.k};
    row::thread_row<Tr, KB>(src, cfg, m, out);
  }
}

template <class Tr>
void emulate_typed(const RoutingArgs& a, Variant v, const RowConfig& cfg, Mutant m) {
  const std::int64_t cs = m == Mutant::ignore_col_stride ? 1 : a.col_stride;
  if (v == Variant::block_per_row) return emulate_block<Tr>(a, cfg, m, cs);
  // Validated requests always match a bucket (k <= kMaxK; warp_per_row: E <= kWarpMaxExperts).
  if (v == Variant::thread_per_row) {
    row::with_pow2_bucket<kMaxK>(row::thread_bucket(a.k), false, [&](auto kb) {
      emulate_thread<Tr, decltype(kb)::value>(a, cfg, m, cs);
      return true;
    });
    return;
  }
  row::with_pow2_bucket<16>(row::warp_lane_elems(a.E), false, [&](auto lane_elems) {
    emulate_warp<Tr, decltype(lane_elems)::value>(a, cfg, m, cs);
    return true;
  });
}

}  // namespace

ArgStatus emulate_routing(const RoutingArgs& a, Variant v, Mutant m, std::string* message) {
  const ArgStatus st = check_request(a, &v, m, message);
  if (st != ArgStatus::ok) return st;
  if (mutant_is_gpu_only(m)) m = Mutant::none;  // their bug needs the device's scheduling
  if (a.T == 0) return ArgStatus::ok;
  const RowConfig cfg = row::make_row_config(a.E, a.k, a.family, a.scale, m);
  return row::with_element_traits(a.dtype, ArgStatus::unsupported, [&](auto tr) {
    emulate_typed<decltype(tr)>(a, v, cfg, m);
    return ArgStatus::ok;
  });
}

}  // namespace moecheck::kernels
