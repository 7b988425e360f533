// moecheck contracts: the routing semantics an implementation declares, as data.
//
// The oracle (reference/oracle.hpp) judges an output against one Contract. The default Contract
// is moecheck's strict contract (reference/EDGE_CASES.md); other contracts describe deliberate,
// documented differences of real kernels (NaN or +inf zeroing the row, ranking on rounded fp32
// probabilities with index-ordered ties, NaN propagation, dense-only input). A case the contract
// does not cover (its layout, alignment or size) is "outside the contract": not checked, counted.
//
// Pure C++17: the contract file reader (a small TOML subset) needs no JSON or TOML library.
// Semantics, file format and the named contracts: reference/CONTRACTS.md.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "reference/routing.hpp"

namespace moecheck {

/// What a NaN logit means.
enum class NanPolicy : int {
  ranks_as_neg_inf = 0,  ///< strict: NaN ranks (and weighs) as -inf
  propagates = 1,        ///< NaN ranks above every value (+inf included); every weight of the row is NaN
  zeroes_row = 2,        ///< a NaN anywhere in the row: ids are 0..k-1, every weight 0
};
/// What a +inf logit means.
enum class PosInfPolicy : int {
  shares_mass = 0,     ///< strict: the selected +inf logits share the mass (family limit rules)
  zeroes_row = 1,      ///< a +inf anywhere in the row: ids are 0..k-1, every weight 0
  propagates_nan = 2,  ///< softmax families: every weight of a row whose weight formula meets a +inf is NaN
};
/// What the selection ranks.
enum class SelectionBasis : int {
  exact_logits = 0,        ///< strict: the exact selection keys, with the Precision band
  fp32_probabilities = 1,  ///< softmax families: full-softmax probabilities rounded to fp32
                           ///< (equal or underflowed probabilities tie)
};
/// Which of tied experts are selected.
enum class TieOrder : int {
  any = 0,           ///< strict: any tie choice is valid
  lowest_index = 1,  ///< ties go to the lowest expert index
};
/// Weights of a row whose weight denominator has no unmasked term (all selected -inf/NaN).
enum class MaskedRowWeights : int {
  zero = 0,         ///< strict: every weight 0 (the "divide by 1" guard)
  nan = 1,          ///< every weight NaN (0 / 0, no guard)
  zero_or_nan = 2,  ///< either, per weight
};
/// How the weight bound is set.
enum class ToleranceKind : int {
  derived = 0,            ///< strict: weight_tolerance (EDGE_CASES.md "Error bounds")
  scaled = 1,             ///< `scale` times the derived bound
  absolute_relative = 2,  ///< `absolute + relative * |expected|`
};
/// Memory layout of the gating input, as seen from its strides (same names and values as the
/// generators' Layout).
enum class InputLayout : int {
  contiguous = 0,  ///< element (t, e) at t * E + e (any layout with T <= 1 and unit column stride)
  padded = 1,      ///< unit column stride, row stride > E
  transposed = 2,  ///< unit row stride, column stride >= T (an [E, T] buffer)
  strided = 3,     ///< anything else
};
/// Bit of a layout in Contract::layouts.
constexpr std::uint32_t layout_bit(InputLayout l) { return 1u << static_cast<unsigned>(l); }
/// Every layout.
constexpr std::uint32_t kAllLayouts = 0xFu;

const char* nan_policy_name(NanPolicy v);          ///< "ranks-as-neg-inf", "propagates", "zeroes-row"
const char* pos_inf_policy_name(PosInfPolicy v);   ///< "shares-mass", "zeroes-row", "propagates-nan"
const char* selection_basis_name(SelectionBasis v);///< "exact-logits", "fp32-probabilities"
const char* tie_order_name(TieOrder v);            ///< "any", "lowest-index"
const char* masked_row_name(MaskedRowWeights v);   ///< "zero", "nan", "zero-or-nan"
const char* tolerance_kind_name(ToleranceKind v);  ///< "derived", "scaled", "absolute-relative"
const char* input_layout_name(InputLayout v);      ///< "contiguous", "padded", "transposed", "strided"
bool parse_input_layout(std::string_view s, InputLayout* out);

/// The weight bound of a contract.
struct WeightTolerance {
  ToleranceKind kind = ToleranceKind::derived;
  double scale = 1.0;     ///< scaled: multiplier of the derived bound (> 0, finite)
  double absolute = 0.0;  ///< absolute_relative: absolute part (>= 0, finite)
  double relative = 0.0;  ///< absolute_relative: relative part (>= 0, finite)
  bool operator==(const WeightTolerance& o) const;
  bool operator!=(const WeightTolerance& o) const { return !(*this == o); }
};

/// A routing contract: semantics (how outputs are judged) and domain (which inputs are covered).
/// Default-constructed = the strict contract, named "strict".
struct Contract {
  std::string name = "strict";  ///< [A-Za-z0-9._-]+, at most 64 characters
  // semantics
  NanPolicy nan = NanPolicy::ranks_as_neg_inf;
  PosInfPolicy pos_inf = PosInfPolicy::shares_mass;
  SelectionBasis selection = SelectionBasis::exact_logits;
  TieOrder ties = TieOrder::any;
  MaskedRowWeights masked_row = MaskedRowWeights::zero;
  WeightTolerance tolerance{};
  // domain
  std::uint32_t layouts = kAllLayouts;  ///< layout_bit()s of the layouts covered (non-empty)
  int base_alignment = 1;               ///< bytes the gating base pointer must be aligned to (1..16, power of 2)
  int row_alignment = 1;                ///< bytes the row stride must be a multiple of (1..16, power of 2)
  std::int64_t max_elements = 0;        ///< largest T * E covered (0 = no limit)

  /// True when the semantics fields equal the strict contract's (the domain may differ): the
  /// oracle then judges exactly as check_routing always has.
  bool strict_semantics() const;
  /// Every field equal (the name included).
  bool operator==(const Contract& o) const;
  bool operator!=(const Contract& o) const { return !(*this == o); }
};

/// Error raised for a malformed contract file, text or spec, and for unknown contract names.
/// what() is "<origin>:<line>: key '<key>': <problem>" (line 0 when not applicable; without the
/// key part when no key is involved). Derived from std::invalid_argument (exit 2 in the CLI).
class ContractError : public std::invalid_argument {
 public:
  ContractError(const std::string& origin, int line, const std::string& key, const std::string& problem);
  const std::string& origin() const { return origin_; }
  int line() const { return line_; }
  const std::string& key() const { return key_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string origin_;
  int line_;
  std::string key_;
  std::string problem_;
};

/// Names of the built-in contracts, in documentation order: "strict", "probability-ranked",
/// "nan-zeroes-row", "dense-probability-nan-zeroes-row", "nan-propagates".
const std::vector<std::string>& builtin_contract_names();
/// The built-in contract `name`; false (out untouched) for an unknown name.
bool builtin_contract(std::string_view name, Contract* out);
/// One-paragraph description of a contract's semantics and domain (for --help, reports).
std::string describe_contract(const Contract& c);

/// Parses contract text (the TOML subset of reference/CONTRACTS.md). `origin` names the source
/// in errors; `default_name` is used when the text has no `name`. Throws ContractError for every
/// malformed line, unknown key, repeated key or bad value.
Contract parse_contract_text(const std::string& text, const std::string& origin,
                             const std::string& default_name = "custom");
/// Reads and parses a contract file (at most 64 KiB; the default name is the file's stem).
Contract read_contract_file(const std::string& path);
/// A built-in name, or else the path of a contract file, or else (when it contains '=') a
/// contract_spec() line. Throws ContractError naming the possibilities when it is none of them.
Contract resolve_contract(const std::string& name_or_path);
/// Contract text that parse_contract_text reads back as an equal contract (every key written).
std::string format_contract_text(const Contract& c);

/// One-line spec of a contract: the bare name for an unchanged built-in contract, else
/// space-separated `key=value` tokens for every key (lists comma-separated), e.g.
/// "name=my-router nan=zeroes-row pos_inf=zeroes-row ... layouts=contiguous ...".
/// Recorded in corpus files and results so a replay uses the same contract.
std::string contract_spec(const Contract& c);
/// Parses a contract_spec() line. Throws ContractError (origin names the source).
Contract parse_contract_spec(const std::string& spec, const std::string& origin);

/// Layout of a view as its strides show it (see InputLayout).
InputLayout layout_of(const GatingView& g);

/// Why the input lies outside the contract's domain (layout, base pointer or row stride alignment,
/// T * E), or "" when the contract covers it. `reason_key`, when given, receives a short stable
/// category for counting: "layout <name>", "base alignment", "row alignment", "T*E limit".
/// The base pointer is checked only when `g.data` is not null.
std::string outside_contract(const Contract& c, const GatingView& g, std::string* reason_key = nullptr);

/// `semantics` with its domain narrowed to what `domain` also covers (layouts intersected, the
/// larger alignments, the smaller non-zero element limit). Used when a contract is given on the
/// command line for a target that declares its own domain. When the domain narrows, the result
/// is named "<semantics name>-on-<domain name>" (a changed built-in keeps no built-in name).
Contract restrict_domain(Contract semantics, const Contract& domain);

}  // namespace moecheck
