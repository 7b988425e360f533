#include "harness/core/shrink.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moecheck {
namespace {

/// True when `c` is a well-formed, valid routing problem (the shrinker never leaves that set).
bool valid_problem(const RoutingCase& c) {
  try {
    c.check_consistent();
    MaterializedCase m = materialize(c);
    validate_routing(m.view, m.params);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

RoutingCase keep_rows(const RoutingCase& c, std::int64_t begin, std::int64_t count) {
  RoutingCase out = c;
  out.T = count;
  out.logits.assign(c.logits.begin() + begin * c.E, c.logits.begin() + (begin + count) * c.E);
  return out;
}

RoutingCase drop_experts(const RoutingCase& c, std::int64_t begin, std::int64_t count) {
  RoutingCase out = c;
  out.E = c.E - count;
  out.logits.clear();
  out.logits.reserve(static_cast<std::size_t>(c.T * out.E));
  for (std::int64_t t = 0; t < c.T; ++t) {
    for (std::int64_t e = 0; e < c.E; ++e) {
      if (e >= begin && e < begin + count) continue;
      out.logits.push_back(c.logits[static_cast<std::size_t>(t * c.E + e)]);
    }
  }
  auto erase = [&](std::vector<float>& v) {
    if (!v.empty()) v.erase(v.begin() + begin, v.begin() + begin + count);
  };
  erase(out.scale);
  erase(out.bias);
  out.k = static_cast<int>(std::min<std::int64_t>(out.k, out.E));
  return out;
}

class Shrinker {
 public:
  Shrinker(RoutingCase c, const std::function<bool(const RoutingCase&)>& pred, int max_attempts,
           const std::function<bool()>& give_up)
      : cur_(std::move(c)), pred_(pred), max_attempts_(max_attempts), give_up_(give_up) {}

  /// Accepts `cand` if it is valid, strictly different and still fails.
  bool attempt(const RoutingCase& cand) {
    if (!budget_left()) return false;
    if (!valid_problem(cand)) return false;
    ++attempts_;
    if (!pred_(cand)) return false;
    cur_ = cand;
    ++steps_;
    return true;
  }
  bool budget_left() {
    if (!stopped_ && give_up_ && give_up_()) stopped_ = true;
    return attempts_ < max_attempts_ && !stopped_;
  }

  /// Binary search for the smallest integer n in (lo, hi) whose candidate make(n) still fails,
  /// `hi` being the current (failing) value and `lo` one assumed to pass. Accepted candidates
  /// become the current case, so make(n) must derive from cur_ (whose value is the latest
  /// failing one). A failure that needs n > N ends at exactly N + 1 in log2(hi - lo) attempts.
  template <class Make>
  bool bisect(std::int64_t lo, std::int64_t hi, const Make& make) {
    bool progress = false;
    while (hi - lo > 1 && budget_left()) {
      const std::int64_t mid = lo + (hi - lo) / 2;
      if (attempt(make(mid))) {
        hi = mid;
        progress = true;
      } else {
        lo = mid;
      }
    }
    return progress;
  }

  bool rows(std::int64_t hint) {
    if (cur_.T <= 1) return false;
    if (hint >= 0 && hint < cur_.T && attempt(keep_rows(cur_, hint, 1))) return true;
    // The shortest failing prefix, then the shortest failing suffix of it: a failure that needs
    // T > N rows ends at exactly N + 1 rows, a failing row ends alone.
    bool progress = bisect(0, cur_.T, [&](std::int64_t n) { return keep_rows(cur_, 0, n); });
    progress |= bisect(0, cur_.T, [&](std::int64_t n) { return keep_rows(cur_, cur_.T - n, n); });
    if (progress || cur_.T <= 1) return progress;
    // Failures that are not monotone in the rows: single rows among the first 64, then halves.
    for (std::int64_t t = 0; t < std::min<std::int64_t>(cur_.T, 64) && budget_left(); ++t) {
      if (attempt(keep_rows(cur_, t, 1))) return true;
    }
    while (cur_.T > 1 && budget_left()) {
      std::int64_t half = cur_.T / 2;
      if (attempt(keep_rows(cur_, 0, half)) || attempt(keep_rows(cur_, half, cur_.T - half))) {
        progress = true;
      } else {
        break;
      }
    }
    return progress;
  }

  bool groups() {
    if (cur_.family != Family::sigmoid_grouped || (cur_.n_group == 1 && cur_.topk_group == 1)) return false;
    RoutingCase cand = cur_;
    cand.n_group = 1;
    cand.topk_group = 1;
    if (attempt(cand)) return true;
    bool progress = bisect(0, cur_.topk_group, [&](std::int64_t g) {
      RoutingCase c = cur_;
      c.topk_group = static_cast<int>(g);
      return c;
    });
    // n_group must divide E: the smallest divisor (>= topk_group) that still fails.
    for (int g = cur_.topk_group; g < cur_.n_group && budget_left(); ++g) {
      if (cur_.E % g != 0) continue;
      RoutingCase c = cur_;
      c.n_group = g;
      if (attempt(c)) {
        progress = true;
        break;
      }
    }
    return progress;
  }

  bool experts() {
    // The fewest leading experts that still fail, then the fewest trailing ones of those (a
    // failure that needs E > N experts ends at exactly N + 1).
    bool progress = bisect(0, cur_.E, [&](std::int64_t n) { return drop_experts(cur_, n, cur_.E - n); });
    progress |= bisect(0, cur_.E, [&](std::int64_t n) { return drop_experts(cur_, 0, cur_.E - n); });
    // Then blocks (halves, quarters, ...) and single columns anywhere.
    for (std::int64_t block = cur_.E / 2; block >= 1 && budget_left(); block /= 2) {
      for (std::int64_t begin = 0; begin + block <= cur_.E && cur_.E - block >= 1 && budget_left();) {
        if (attempt(drop_experts(cur_, begin, block))) {
          progress = true;
        } else {
          begin += block;
        }
      }
    }
    return progress;
  }

  bool k() {
    if (cur_.k <= 1) return false;
    const auto with_k = [&](std::int64_t k) {
      RoutingCase cand = cur_;
      cand.k = static_cast<int>(k);
      return cand;
    };
    // Smallest failing k by bisection, then single steps down (for failures that are not
    // monotone in k).
    bool progress = bisect(0, cur_.k, with_k);
    while (cur_.k > 1 && budget_left() && attempt(with_k(cur_.k - 1))) progress = true;
    return progress;
  }

  bool layout() {
    bool progress = false;
    if (cur_.layout != Layout::contiguous || cur_.pad != 0) {
      RoutingCase cand = cur_;
      cand.layout = Layout::contiguous;
      cand.pad = 0;
      if (attempt(cand)) {
        progress = true;
      } else if (cur_.pad > 1) {  // the layout matters: the smallest pad that still fails
        progress |= bisect(0, cur_.pad, [&](std::int64_t p) {
          RoutingCase c = cur_;
          c.pad = p;
          return c;
        });
      }
    }
    if (cur_.dtype != DType::f32) {
      RoutingCase cand = cur_;
      cand.dtype = DType::f32;  // every f16/bf16 value is exact in f32
      progress |= attempt(cand);
    }
    return progress;
  }

  bool values() {
    bool progress = false;
    auto simplify = [&](std::vector<float> RoutingCase::*field, float target) {
      auto& vec = cur_.*field;
      for (std::size_t i = 0; i < vec.size() && budget_left(); ++i) {
        float v = vec[i];
        if (v == target || (std::isnan(v) && std::isnan(target))) continue;
        RoutingCase cand = cur_;
        (cand.*field)[i] = target;
        if (attempt(cand)) {
          progress = true;
          continue;
        }
        // Try a nearby integer (keeps order relations, drops fraction bits).
        if (std::isfinite(v) && std::trunc(v) != v && std::fabs(v) < 1e6f) {
          RoutingCase cand2 = cur_;
          (cand2.*field)[i] = std::trunc(v);
          if (attempt(cand2)) progress = true;
        }
      }
    };
    simplify(&RoutingCase::logits, 0.0f);
    if (!cur_.scale.empty()) {
      RoutingCase cand = cur_;
      cand.scale.clear();  // all ones
      if (attempt(cand)) progress = true;
      else simplify(&RoutingCase::scale, 1.0f);
    }
    if (!cur_.bias.empty()) {
      RoutingCase cand = cur_;
      cand.bias.clear();
      if (attempt(cand)) progress = true;
      else simplify(&RoutingCase::bias, 0.0f);
    }
    if (cur_.routed_scaling != 1.0f) {
      RoutingCase cand = cur_;
      cand.routed_scaling = 1.0f;
      progress |= attempt(cand);
    }
    return progress;
  }

  ShrinkResult result() const { return ShrinkResult{cur_, steps_, attempts_, stopped_}; }
  const RoutingCase& current() const { return cur_; }

 private:
  RoutingCase cur_;
  const std::function<bool(const RoutingCase&)>& pred_;
  int max_attempts_;
  const std::function<bool()>& give_up_;
  bool stopped_ = false;
  int attempts_ = 0;
  int steps_ = 0;
};

}  // namespace

ShrinkResult shrink_case(const RoutingCase& failing,
                         const std::function<bool(const RoutingCase&)>& still_fails,
                         std::int64_t hint_row, int max_attempts, const std::function<bool()>& give_up) {
  Shrinker s(failing, still_fails, max_attempts, give_up);
  bool progress = true;
  bool first = true;
  while (progress && s.budget_left()) {
    progress = false;
    progress |= s.rows(first ? hint_row : -1);
    first = false;
    progress |= s.groups();
    progress |= s.experts();
    progress |= s.k();
    progress |= s.layout();
    progress |= s.values();
  }
  return s.result();
}

}  // namespace moecheck
