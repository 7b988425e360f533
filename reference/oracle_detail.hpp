// moecheck oracles: row-level building blocks shared by the tie-aware oracle (oracle.cpp) and
// the metamorphic relations (metamorphic.cpp). Internal to the reference library: not part of
// its public interface, which is oracle.hpp and metamorphic.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "reference/oracle.hpp"
#include "reference/routing.hpp"

namespace moecheck::oracle_detail {

/// printf-style formatting of one double with format `f` (e.g. "%.9g").
std::string fmt(const char* f, double v);

/// Collects violations into a report, keeping at most `max` of them. A sink built on a null
/// report only answers "inactive": checks then stop at the first failure (validity tests).
class Sink {
 public:
  Sink(CheckReport* r, int max) : r_(r), max_(static_cast<std::size_t>(std::max(max, 1))) {}
  void add(Violation v) {
    if (r_ == nullptr) return;
    ++r_->violations_total;
    if (r_->violations.size() < max_) r_->violations.push_back(std::move(v));
  }
  bool active() const { return r_ != nullptr; }

 private:
  CheckReport* r_;
  std::size_t max_;
};

/// A violation with its location and sentence; numeric fields left zero.
Violation make_violation(const char* check, std::int64_t row, std::int64_t slot, std::int64_t expert,
                         std::string detail);

/// Loads row t of the view into x (exact values as double).
void load_row(const GatingView& g, std::int64_t t, std::vector<double>& x);

/// Selection keys of a row (selection_key per expert; NaN logits -> -inf).
void row_keys(const std::vector<double>& x, const RoutingParams& p, std::vector<double>& key);

/// Selection validity of one row whose ids are unique and in [0, E), by the band rule of
/// check_routing (for sigmoid_grouped: on group scores, then on the experts of the chosen
/// groups). Records violations in `sink`; *vk receives the k-th key (the topk_group-th
/// group score for sigmoid_grouped).
bool check_selection_row(const std::vector<double>& key, const RoutingParams& p, std::int64_t E,
                         const std::int32_t* ids, double band_ulps, std::int64_t row, Sink& sink,
                         double* vk);

/// Whether the row's canonical cut is ambiguous (statistics for ties_at_kth).
bool row_has_kth_tie(const std::vector<double>& key, const RoutingParams& p, std::int64_t E);

/// Structural check of one row of an output. Returns true when ids are usable (written,
/// in range, unique); weight_written[j] tells whether slot j's weight was written.
/// `who` prefixes every violation sentence.
bool structural_row(const float* w, const std::int32_t* ids, int k, std::int64_t E,
                    std::int64_t row, bool check_poison, const std::string& who, Sink& sink,
                    std::vector<char>& weight_written);

}  // namespace moecheck::oracle_detail
