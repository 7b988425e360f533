// moecheck case generators: deterministic, seeded, platform-independent.
//
// Every random choice goes through `Rng` (xoshiro256** seeded with splitmix64), with our own
// integer/uniform/normal derivations: no std::random_device and no std::*_distribution (their
// output differs between standard libraries), no libm transcendental in value generation.
// The same seed and GenConfig therefore give the same case on every platform.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness/core/case.hpp"
#include "reference/routing.hpp"
#include "reference/splitmix64.hpp"

namespace moecheck {

/// xoshiro256** (Blackman & Vigna), state seeded from splitmix64(seed). Deterministic.
class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  /// Next raw 64-bit output.
  std::uint64_t next();
  /// Uniform integer in [0, n), unbiased (rejection sampling); n >= 1.
  std::uint64_t below(std::uint64_t n);
  /// Uniform integer in [lo, hi] (inclusive); lo <= hi.
  std::int64_t range(std::int64_t lo, std::int64_t hi);
  /// Uniform double in [0, 1) with 53 random bits.
  double uniform();
  /// Uniform double in [lo, hi).
  double uniform(double lo, double hi);
  /// True with probability p.
  bool chance(double p);
  /// Approximately standard normal: Irwin-Hall sum of 12 uniforms minus 6 (mean 0, variance 1,
  /// support [-6, 6]); only additions, so bit-identical everywhere.
  double normal();

 private:
  std::uint64_t s_[4];
};

/// Value families (names as stored in RoutingCase::value_family):
/// "normal", "ties" (exact duplicates at the k-th place), "near-ties" (adjacent representable
/// values at the k-th place), "constant" (constant rows), "huge" (magnitudes near the dtype's
/// maximum), "inf" (+-inf, all -inf rows, several +inf), "nan" (NaN, all-NaN rows, NaN mixed
/// with +-inf), "denormal" (subnormals of the dtype), "bf16-exact" (values exact in bf16),
/// "integer" (small integer grid, many ties).
const std::vector<std::string>& all_value_families();
/// Scale families (RoutingCase::scale_family, gemma4 only; other families use "ones"):
/// "ones" (empty scale = all ones), "uniform" (U(0.5, 1.5)), "zero" (some experts 0),
/// "negative" (some experts negated), "mixed" (1, U, 0, -0, negative, 1e-3 and 100 scale).
const std::vector<std::string>& all_scale_families();

/// Limits and choices of generate_case. Empty choice lists mean "all".
struct GenConfig {
  std::int64_t max_T = 1024;     ///< largest T (inclusive); up to 250000 for fuzz campaigns
  std::int64_t max_E = 2048;     ///< largest E (inclusive), >= 1
  int max_k = 32;                ///< largest k (inclusive), >= 1
  std::int64_t max_elems = std::int64_t{1} << 22;  ///< cap on T * E (T is reduced to fit)
  double large_T_probability = 0.1;  ///< probability of T drawn log-uniformly in (64, max_T]
  std::vector<DType> dtypes;     ///< default: f32, f16, bf16
  std::vector<Family> families;  ///< default: all five
  std::vector<Layout> layouts;   ///< default: all four
  std::vector<std::string> value_families;  ///< default: all_value_families()
  std::vector<std::string> scale_families;  ///< default: all_scale_families()

  /// Same settings (the device checker matches a batch launched ahead against the next call's).
  bool operator==(const GenConfig& o) const {
    return max_T == o.max_T && max_E == o.max_E && max_k == o.max_k && max_elems == o.max_elems &&
           large_T_probability == o.large_T_probability && dtypes == o.dtypes && families == o.families &&
           layouts == o.layouts && value_families == o.value_families && scale_families == o.scale_families;
  }
};

/// The structural choices of a case; build_case fills in the values from a seed.
struct CaseShape {
  Family family = Family::gemma4;
  DType dtype = DType::f32;
  std::int64_t T = 0;
  std::int64_t E = 1;
  int k = 1;
  Layout layout = Layout::contiguous;
  std::int64_t pad = 0;            ///< padded: >= 1 extra elements per row; strided: col_stride - 1
  std::string value_family = "normal";
  std::string scale_family = "ones";  ///< ignored (treated as "ones") unless family == gemma4
  int n_group = 1;                 ///< sigmoid_grouped only
  int topk_group = 1;              ///< sigmoid_grouped only
  float routed_scaling = 1.0f;     ///< sigmoid_grouped only
  bool with_bias = false;          ///< sigmoid_grouped only: bias U(-0.1, 0.1) instead of zeros
};

/// Builds the case for a shape, values drawn from `value_seed` (deterministic). Every logit is
/// exact in shape.dtype. Throws RoutingError for an unknown value/scale family name, an invalid
/// layout pad, or a shape validate_routing would reject (k, groups, sigmoid_top1 with k != 1).
/// The result's `seed` is value_seed.
RoutingCase build_case(const CaseShape& shape, std::uint64_t value_seed);

/// Draws a shape from cfg (distributions documented in generators.cpp).
CaseShape generate_shape(Rng& rng, const GenConfig& cfg);

/// The case for `seed` under cfg: generate_shape(Rng(seed)) then build_case with the next
/// 64 random bits. Replay needs the same seed and config. The result's `seed` is `seed`.
RoutingCase generate_case(std::uint64_t seed, const GenConfig& cfg = {});

/// Case-class tags for coverage statistics, e.g. "dtype=f16", "family=gemma4",
/// "layout=padded", "values=ties", "scales=zero", "T=0", "T=1", "T>64", "T>=65536", "E=1",
/// "E=pow2", "E=pow2±1", "E>512", "E>1024", "E%32!=0", "k=1", "k=E", "tie-at-k",
/// "near-tie-at-k", "constant-row", "has-inf", "has-pos-inf", "has-nan", "masked-row" (a row
/// with every logit -inf or NaN), "denormal", "huge", "non-contiguous", "zero-scale",
/// "negative-scale", "bias". Deterministic order.
std::vector<std::string> classify(const RoutingCase& c);

/// The edge-case classes (names as classify() emits them) that cases drawn from cfg can reach,
/// in display order: "dtype=<d>" and "family=<f>" for each configured dtype and family, "T=0",
/// "T>=65536" (when max_T allows), "E=pow2", "E=pow2±1", "E>1024" (when max_E allows), "k=1",
/// "k=E", "tie-at-k", "near-tie-at-k", "has-inf", "has-nan", "masked-row", "denormal" (when
/// their value families are configured), "non-contiguous" (when a strided layout is),
/// "zero-scale" and "negative-scale" (gemma4 with such scale families). Campaigns record this
/// list in their results; the campaign page marks each one covered or not covered, so a long
/// enough campaign covers all of them.
std::vector<std::string> expected_case_classes(const GenConfig& cfg);

/// Human-readable, replayable description: one header line (family, dtype, T, E, k, layout,
/// pad, families, group parameters, seed) and the values (logits row by row, scale, bias),
/// at most max_values numbers in total ("... N more" after that). Non-finite as nan/inf/-inf.
std::string describe_case(const RoutingCase& c, std::size_t max_values = 64);

/// Next representable value of dtype d after x towards +inf (up) or -inf (!up); x must be
/// exact in d. +-inf and NaN are returned unchanged; the neighbour of 0 is the smallest
/// subnormal of d (signed).
float next_in_dtype(float x, DType d, bool up);
/// Largest finite value of d (3.40282347e38, 65504, 3.38953139e38).
float dtype_max_finite(DType d);
/// Smallest positive normal of d (2^-126, 2^-14, 2^-126).
float dtype_min_normal(DType d);
/// Smallest positive subnormal of d (2^-149, 2^-24, 2^-133).
float dtype_min_subnormal(DType d);

/// A seeded random permutation of [0, E) for check_permutation: perm[j] = the original expert
/// placed at column j. With n_group > 1 (E % n_group == 0) whole groups are permuted and
/// experts are permuted inside groups, so group structure is preserved.
std::vector<std::int64_t> make_permutation(std::int64_t E, int n_group, std::uint64_t seed);

}  // namespace moecheck
