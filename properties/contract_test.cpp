// Contracts as data (reference/CONTRACTS.md): every named contract accepts an implementation that
// follows its semantics exactly, over real campaigns of generated cases (nan, inf, ties, huge,
// ... value families), and nothing more: the same implementation fails under the other
// contracts, and each contract still catches real bugs. Also: contract files and specs (every
// malformed input is a named error), the .case `contract` field, --layouts and declared layouts
// (outside the contract: counted, never failures), plugin ABI v2 descriptors, and margin
// messages on infinite rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/core/campaign.hpp"
#include "harness/core/corpus.hpp"
#include "harness/core/replay.hpp"
#include "reference/contract.hpp"
#include "reference/metamorphic.hpp"
#include "reference/oracle.hpp"
#include "properties/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moecheck;

namespace {

using moecheck_test::temp_dir;

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr float kNanF = std::numeric_limits<float>::quiet_NaN();

Contract named(const std::string& n) {
  Contract c;
  EXPECT_TRUE(builtin_contract(n, &c)) << n;
  return c;
}

// ---- host routers that follow each contract's semantics exactly ---------------------------

/// The semantics a host router implements (fp32 arithmetic, as a kernel would).
struct Semantics {
  NanPolicy nan = NanPolicy::ranks_as_neg_inf;
  PosInfPolicy pos_inf = PosInfPolicy::shares_mass;
  bool probability = false;  ///< rank fp32 softmax probabilities (else the logits)
  bool lowest = false;       ///< ties to the lowest index (else to the highest: another valid "any")
  bool masked_nan = false;   ///< an all-masked row weighs NaN (0 / 0) instead of 0
  bool dense_only = false;   ///< refuse non-contiguous input (UNSUPPORTED)
};

enum class Bug { none, skip_renormalise, wrong_scale, duplicate_id, unwritten_slot, wrong_zero_row_ids };

const char* bug_name(Bug b) {
  switch (b) {
    case Bug::none: return "none";
    case Bug::skip_renormalise: return "skip_renormalise";
    case Bug::wrong_scale: return "wrong_scale";
    case Bug::duplicate_id: return "duplicate_id";
    case Bug::unwritten_slot: return "unwritten_slot";
    case Bug::wrong_zero_row_ids: return "wrong_zero_row_ids";
  }
  return "?";
}

/// One row of a softmax-family router with the given semantics (and planted bug).
void route_row(const std::vector<float>& x, int k, Family fam, const float* scale, const Semantics& s, Bug bug,
               bool last_row, float* w, std::int32_t* ids) {
  const int E = static_cast<int>(x.size());
  bool has_nan = false, has_pinf = false;
  for (float v : x) {
    has_nan = has_nan || std::isnan(v);
    has_pinf = has_pinf || v == kInfF;
  }
  const bool zero = (s.nan == NanPolicy::zeroes_row && has_nan) || (s.pos_inf == PosInfPolicy::zeroes_row && has_pinf);
  const bool zero_masked = !zero && s.lowest && std::all_of(x.begin(), x.end(), [](float v) {
                             return std::isnan(v) || v == -kInfF;
                           });
  if (zero) {
    for (int j = 0; j < k; ++j) {
      ids[j] = bug == Bug::wrong_zero_row_ids && k < E ? j + 1 : j;
      w[j] = 0.0f;
    }
    return;
  }
  const bool nan_top = s.nan == NanPolicy::propagates && has_nan;
  std::vector<float> c(x.size());  // NaN as -inf
  for (std::size_t e = 0; e < x.size(); ++e) c[e] = std::isnan(x[e]) ? -kInfF : x[e];
  float m = -kInfF;
  for (float v : c) m = std::max(m, v);
  // full-softmax probabilities in fp32 (limit rules; an all-masked row: 0)
  std::vector<float> prob(x.size(), 0.0f);
  if (m == kInfF) {
    const float n = static_cast<float>(std::count(c.begin(), c.end(), kInfF));
    for (std::size_t e = 0; e < c.size(); ++e) prob[e] = c[e] == kInfF ? 1.0f / n : 0.0f;
  } else if (m != -kInfF) {
    float sum = 0.0f;
    for (std::size_t e = 0; e < c.size(); ++e) sum += (prob[e] = std::exp(c[e] - m));
    for (float& v : prob) v /= sum;
  }
  const std::vector<float>& rank = s.probability ? prob : c;
  std::vector<int> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const int ca = nan_top && std::isnan(x[static_cast<std::size_t>(a)]);
    const int cb = nan_top && std::isnan(x[static_cast<std::size_t>(b)]);
    if (ca != cb) return ca > cb;
    const float ra = rank[static_cast<std::size_t>(a)], rb = rank[static_cast<std::size_t>(b)];
    if (ra != rb) return ra > rb;
    return s.lowest ? a < b : a > b;
  });
  for (int j = 0; j < k; ++j) ids[j] = order[static_cast<std::size_t>(j)];
  if (bug == Bug::wrong_zero_row_ids && zero_masked && k < E) {
    for (int j = 0; j < k; ++j) ids[j] = j + 1;
  }
  // weights
  std::vector<float> v(static_cast<std::size_t>(k));
  if (nan_top) {
    std::fill(v.begin(), v.end(), std::numeric_limits<float>::quiet_NaN());
  } else if (s.probability || fam == Family::softmax_topk_raw) {
    float sel = 0.0f;
    for (int j = 0; j < k; ++j) sel += (v[static_cast<std::size_t>(j)] = prob[static_cast<std::size_t>(ids[j])]);
    if (m == -kInfF && s.masked_nan) {
      std::fill(v.begin(), v.end(), std::numeric_limits<float>::quiet_NaN());
    } else if (fam != Family::softmax_topk_raw && bug != Bug::skip_renormalise) {
      for (float& a : v) a = sel > 0.0f ? a / sel : 0.0f;
    }
  } else {  // renormalising softmax over the selected logits
    float ms = -kInfF;
    for (int j = 0; j < k; ++j) ms = std::max(ms, c[static_cast<std::size_t>(ids[j])]);
    if (ms == kInfF) {
      float n = 0.0f;
      for (int j = 0; j < k; ++j) n += c[static_cast<std::size_t>(ids[j])] == kInfF ? 1.0f : 0.0f;
      for (int j = 0; j < k; ++j) v[static_cast<std::size_t>(j)] = c[static_cast<std::size_t>(ids[j])] == kInfF ? 1.0f / n : 0.0f;
    } else if (ms == -kInfF) {
      std::fill(v.begin(), v.end(), s.masked_nan ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
    } else if (bug == Bug::skip_renormalise) {
      for (int j = 0; j < k; ++j) v[static_cast<std::size_t>(j)] = prob[static_cast<std::size_t>(ids[j])];
    } else {
      float sum = 0.0f;
      for (int j = 0; j < k; ++j) sum += (v[static_cast<std::size_t>(j)] = std::exp(c[static_cast<std::size_t>(ids[j])] - ms));
      for (float& a : v) a /= sum;
    }
  }
  for (int j = 0; j < k; ++j) {
    float a = v[static_cast<std::size_t>(j)];
    if (fam == Family::gemma4 && scale) a *= scale[bug == Bug::wrong_scale ? j : ids[j]];
    if (!(bug == Bug::unwritten_slot && last_row && j == k - 1)) w[j] = a;
  }
  if (bug == Bug::duplicate_id && k >= 2) ids[1] = ids[0];
}

/// A host router as a campaign target. `declared` is the contract it declares (its domain is
/// honoured by campaigns); routers that declare nothing are judged by what the campaign asks.
class HostRouter final : public Target {
 public:
  HostRouter(std::string name, Semantics s, Bug bug, Contract declared = Contract{})
      : name_(std::move(name)), s_(s), bug_(bug), declared_(std::move(declared)) {}
  std::string spec() const override { return "host:" + name_; }
  std::string mutant() const override { return bug_name(bug_); }
  Contract contract() const override { return declared_; }
  std::string unsupported(const RoutingCase& c) const override {
    if (c.family == Family::sigmoid_grouped || c.family == Family::sigmoid_top1) return "softmax families only";
    return {};
  }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    try {
      validate_routing(m.view, m.params);
    } catch (const RoutingError& e) {
      return {RunOutcome::Status::rejected, e.what()};
    }
    if (s_.dense_only && layout_of(m.view) != InputLayout::contiguous) {
      return {RunOutcome::Status::rejected, "UNSUPPORTED: dense input only"};
    }
    const int k = m.params.k;
    std::vector<float> x(static_cast<std::size_t>(m.view.E));
    for (std::int64_t t = 0; t < m.view.T; ++t) {
      for (std::int64_t e = 0; e < m.view.E; ++e) x[static_cast<std::size_t>(e)] = static_cast<float>(m.view.at(t, e));
      route_row(x, k, m.params.family, m.params.scale, s_, bug_, t == m.view.T - 1, weights + t * k, ids + t * k);
    }
    return {};
  }

 private:
  std::string name_;
  Semantics s_;
  Bug bug_;
  Contract declared_;
};

/// The semantics of each named contract.
Semantics semantics_of(const std::string& contract) {
  Semantics s;
  if (contract == "probability-ranked") {
    s.probability = true;
    s.lowest = true;
  } else if (contract == "nan-zeroes-row") {
    s.nan = NanPolicy::zeroes_row;
    s.pos_inf = PosInfPolicy::zeroes_row;
  } else if (contract == "dense-probability-nan-zeroes-row") {
    s.nan = NanPolicy::zeroes_row;
    s.pos_inf = PosInfPolicy::zeroes_row;
    s.probability = true;
    s.lowest = true;
    s.dense_only = true;
  } else if (contract == "nan-propagates") {
    s.nan = NanPolicy::propagates;
    s.masked_nan = true;
  }
  return s;
}

std::unique_ptr<HostRouter> router_for(const std::string& contract, Bug bug = Bug::none) {
  Semantics s = semantics_of(contract);
  // The dense router declares its domain (as a v2 plugin would); the others declare nothing.
  Contract declared = s.dense_only ? named(contract) : Contract{};
  return std::make_unique<HostRouter>(contract, s, bug, declared);
}

GenConfig small_config() {
  GenConfig g;
  g.max_T = 40;
  g.max_E = 80;
  g.max_k = 8;
  g.families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw};
  return g;
}

CampaignResult campaign(Target& t, const Contract& c, std::int64_t cases, std::uint64_t seed, int max_failures = 4,
                        GenConfig gen = small_config()) {
  CampaignOptions o;
  o.seed = seed;
  o.max_cases = cases;
  o.progress = false;
  o.gen = std::move(gen);
  o.contract = c;
  o.max_failures = max_failures;
  o.shrink_attempts = 300;
  std::ostringstream log;
  return run_campaign(t, o, log);
}

/// Every check name any violation of any case raises (not only the first of each case).
std::map<std::string, int> survey(Target& t, const Contract& c, int cases, std::uint64_t seed) {
  std::map<std::string, int> checks;
  OracleOptions oo;
  oo.contract = effective_contract(t, c);
  oo.max_violations = 64;
  const GenConfig g = small_config();
  for (int i = 0; i < cases; ++i) {
    const Verdict v = evaluate(t, generate_case(case_seed(seed, i), g), oo);
    if (!v.failed()) continue;
    if (v.report.violations.empty()) ++checks[v.check];
    for (const auto& vi : v.report.violations) ++checks[vi.check];
  }
  return checks;
}

std::string names(const std::map<std::string, int>& m) {
  std::string s;
  for (const auto& [k, n] : m) s += k + "=" + std::to_string(n) + " ";
  return s;
}

}  // namespace

// ---- the model, named contracts, files and specs -----------------------------------------

TEST(Contracts, DefaultIsStrictAndNamedContractsDifferOnlyWhereDescribed) {
  const Contract d;
  EXPECT_TRUE(d.strict_semantics());
  EXPECT_EQ(d, named("strict"));
  EXPECT_EQ(contract_spec(d), "strict");
  const Contract p = named("probability-ranked");
  EXPECT_EQ(p.selection, SelectionBasis::fp32_probabilities);
  EXPECT_EQ(p.ties, TieOrder::lowest_index);
  EXPECT_EQ(p.nan, NanPolicy::ranks_as_neg_inf);
  const Contract z = named("nan-zeroes-row");
  EXPECT_EQ(z.nan, NanPolicy::zeroes_row);
  EXPECT_EQ(z.pos_inf, PosInfPolicy::zeroes_row);
  EXPECT_EQ(z.selection, SelectionBasis::exact_logits);
  const Contract dz = named("dense-probability-nan-zeroes-row");
  EXPECT_EQ(dz.layouts, layout_bit(InputLayout::contiguous));
  EXPECT_EQ(dz.selection, SelectionBasis::fp32_probabilities);
  const Contract np = named("nan-propagates");
  EXPECT_EQ(np.nan, NanPolicy::propagates);
  EXPECT_EQ(np.masked_row, MaskedRowWeights::nan);
  Contract none;
  EXPECT_FALSE(builtin_contract("lenient", &none));
  for (const auto& n : builtin_contract_names()) {
    const Contract c = named(n);
    EXPECT_EQ(c.strict_semantics(), n == "strict") << n;
    EXPECT_EQ(contract_spec(c), n);
    EXPECT_EQ(parse_contract_spec(contract_spec(c), "test"), c) << n;
    EXPECT_EQ(parse_contract_text(format_contract_text(c), "test"), c) << n;
    EXPECT_NE(describe_contract(c).find(n), std::string::npos);
  }
}

TEST(Contracts, FilesRoundTripEveryField) {
  const std::string text =
      "# a router's contract\n"
      "name = \"my-router\"   # comment after a value\n"
      "description = \"fused top-k, dense only\"\n"
      "base = \"probability-ranked\"\n"
      "nan = \"zeroes-row\"\n"
      "pos_inf = \"propagates-nan\"\n"
      "masked_row = \"zero-or-nan\"\n"
      "tolerance = \"absolute-relative\"\n"
      "tolerance_absolute = 1e-6\n"
      "tolerance_relative = 0.001\n"
      "layouts = [\"contiguous\", \"padded\",]\n"
      "base_alignment = 16\n"
      "row_alignment = 8\n"
      "max_elements = 1048576\n";
  const Contract c = parse_contract_text(text, "my.toml");
  EXPECT_EQ(c.name, "my-router");
  EXPECT_EQ(c.selection, SelectionBasis::fp32_probabilities);  // from the base
  EXPECT_EQ(c.ties, TieOrder::lowest_index);
  EXPECT_EQ(c.nan, NanPolicy::zeroes_row);
  EXPECT_EQ(c.pos_inf, PosInfPolicy::propagates_nan);
  EXPECT_EQ(c.masked_row, MaskedRowWeights::zero_or_nan);
  EXPECT_EQ(c.tolerance.kind, ToleranceKind::absolute_relative);
  EXPECT_EQ(c.tolerance.absolute, 1e-6);
  EXPECT_EQ(c.tolerance.relative, 0.001);
  EXPECT_EQ(c.layouts, layout_bit(InputLayout::contiguous) | layout_bit(InputLayout::padded));
  EXPECT_EQ(c.base_alignment, 16);
  EXPECT_EQ(c.row_alignment, 8);
  EXPECT_EQ(c.max_elements, 1048576);
  EXPECT_EQ(parse_contract_text(format_contract_text(c), "again"), c);
  const std::string spec = contract_spec(c);
  EXPECT_EQ(spec.find('\n'), std::string::npos);
  EXPECT_EQ(parse_contract_spec(spec, "spec"), c);
  EXPECT_EQ(resolve_contract(spec), c);  // --contract also takes a spec (the replay lines use it)
  // a file without a name is named after the file
  const fs::path dir = temp_dir("contract_files");
  fs::create_directories(dir);
  std::ofstream(dir / "scaled-router.toml") << "tolerance = \"scaled\"\ntolerance_scale = 4\n";
  const Contract f = resolve_contract((dir / "scaled-router.toml").string());
  EXPECT_EQ(f.name, "scaled-router");
  EXPECT_EQ(f.tolerance.kind, ToleranceKind::scaled);
  EXPECT_EQ(f.tolerance.scale, 4.0);
  fs::remove_all(dir);
}

TEST(Contracts, EveryMalformedInputIsANamedError) {
  struct Bad {
    std::string text, key, needle;
    int line;
  };
  const std::vector<Bad> bad = {
      {"nan = \"zero\"\n", "nan", "unknown value 'zero'", 1},
      {"ties = \"lowest-index\"\nties = \"any\"\n", "ties", "appears twice", 2},
      {"colour = \"red\"\n", "colour", "unknown key", 1},
      {"base_alignment = 3\n", "base_alignment", "power of two", 1},
      {"row_alignment = 32\n", "row_alignment", "outside [1, 16]", 1},
      {"max_elements = -1\n", "max_elements", "outside", 1},
      {"max_elements = 1.5\n", "max_elements", "not an integer", 1},
      {"tolerance_scale = 2\n", "tolerance_scale", "needs tolerance = \"scaled\"", 1},
      {"tolerance = \"scaled\"\n", "tolerance", "needs tolerance_scale", 1},
      {"tolerance = \"scaled\"\ntolerance_scale = 0\n", "tolerance_scale", "must be > 0", 2},
      {"tolerance = \"absolute-relative\"\ntolerance_absolute = -1\n", "tolerance_absolute", ">= 0", 2},
      {"layouts = []\n", "layouts", "is empty", 1},
      {"layouts = [\"diagonal\"]\n", "layouts", "unknown layout 'diagonal'", 1},
      {"layouts = [\"padded\", \"padded\"]\n", "layouts", "twice", 1},
      {"layouts = [\"padded\"\n", "layouts", "expected ',' or ']' in the list", 1},
      {"layouts = [\"padded\",\n", "layouts", "unterminated list", 1},
      {"layouts = \"padded\"\n", "layouts", "expects a list", 1},
      {"nan = zeroes-row\n", "nan", "neither a number", 1},
      {"name = \"x\n", "name", "unterminated string", 1},
      {"name = \"has space\"\n", "name", "not a valid name", 1},
      {"name = \"strict\"\nnan = \"zeroes-row\"\n", "name", "built-in contract", 1},
      {"base = \"lenient\"\n", "base", "unknown built-in contract", 1},
      {"\n\nnan\n", "nan", "expected '='", 3},
      {"nan = \n", "nan", "missing value", 1},
      {"nan = \"zeroes-row\" extra\n", "nan", "unexpected text", 1},
      {"[contract]\n", "", "tables", 1},
  };
  for (const auto& b : bad) {
    try {
      parse_contract_text(b.text, "bad.toml");
      ADD_FAILURE() << "accepted: " << b.text;
    } catch (const ContractError& e) {
      EXPECT_EQ(e.origin(), "bad.toml");
      EXPECT_EQ(e.key(), b.key) << e.what();
      EXPECT_EQ(e.line(), b.line) << e.what();
      EXPECT_NE(std::string(e.what()).find(b.needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.toml:" + std::to_string(b.line)), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(parse_contract_spec("", "s"), ContractError);
  EXPECT_THROW(parse_contract_spec("lenient", "s"), ContractError);
  EXPECT_THROW(parse_contract_spec("nan=zeroes-row ties", "s"), ContractError);
  EXPECT_THROW(parse_contract_spec("name=x layouts=contiguous,oval", "s"), ContractError);
  try {
    resolve_contract("/nonexistent/contract.toml");
    ADD_FAILURE();
  } catch (const ContractError& e) {
    EXPECT_NE(std::string(e.what()).find("not a built-in contract name"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos);
  }
}

TEST(Contracts, DomainLayoutAlignmentAndSize) {
  std::vector<float> buf(64, 1.0f);
  const GatingView dense{buf.data(), DType::f32, 4, 6, 6, 1};
  const GatingView padded{buf.data(), DType::f32, 4, 6, 9, 1};
  const GatingView transposed{buf.data(), DType::f32, 4, 6, 1, 4};
  const GatingView strided{buf.data(), DType::f32, 3, 6, 12, 2};
  const GatingView one_row_strided{buf.data(), DType::f32, 1, 6, 12, 2};
  const GatingView one_row_padded{buf.data(), DType::f32, 1, 6, 9, 1};
  EXPECT_EQ(layout_of(dense), InputLayout::contiguous);
  EXPECT_EQ(layout_of(padded), InputLayout::padded);
  EXPECT_EQ(layout_of(transposed), InputLayout::transposed);
  EXPECT_EQ(layout_of(strided), InputLayout::strided);
  EXPECT_EQ(layout_of(one_row_strided), InputLayout::strided);
  EXPECT_EQ(layout_of(one_row_padded), InputLayout::contiguous);  // one row: the row stride is never used
  const Contract dz = named("dense-probability-nan-zeroes-row");
  std::string key;
  EXPECT_EQ(outside_contract(dz, dense, &key), "");
  EXPECT_EQ(key, "");
  EXPECT_NE(outside_contract(dz, transposed, &key).find("layout transposed"), std::string::npos);
  EXPECT_EQ(key, "layout transposed");
  const GatingView misaligned{reinterpret_cast<const char*>(buf.data()) + 4, DType::f32, 2, 6, 6, 1};
  outside_contract(dz, misaligned, &key);
  EXPECT_EQ(key, "base alignment");
  Contract c;
  c.row_alignment = 16;
  EXPECT_NE(outside_contract(c, dense, &key), "");  // rows of 6 floats = 24 bytes
  EXPECT_EQ(key, "row alignment");
  c.row_alignment = 8;
  EXPECT_EQ(outside_contract(c, dense), "");
  c.row_alignment = 16;
  const GatingView rows16{buf.data(), DType::f32, 4, 8, 8, 1};
  EXPECT_EQ(outside_contract(c, rows16), "");
  c.row_alignment = 1;
  c.max_elements = 24;
  EXPECT_EQ(outside_contract(c, dense), "");
  c.max_elements = 23;
  outside_contract(c, dense, &key);
  EXPECT_EQ(key, "T*E limit");
  // narrowing a requested contract to a declared domain renames it
  const Contract r = restrict_domain(named("strict"), dz);
  EXPECT_EQ(r.layouts, layout_bit(InputLayout::contiguous));
  EXPECT_EQ(r.base_alignment, 16);
  EXPECT_TRUE(r.strict_semantics());
  EXPECT_EQ(r.name, "strict-on-dense-probability-nan-zeroes-row");
  EXPECT_EQ(parse_contract_spec(contract_spec(r), "s"), r);
  EXPECT_EQ(restrict_domain(named("probability-ranked"), Contract{}), named("probability-ranked"));
}

// ---- each named contract accepts its semantics and nothing more ---------------------------

/// The contracts with a host router of exactly their semantics.
const std::vector<std::string>& routed_contracts() {
  static const std::vector<std::string> kNames = {"strict", "probability-ranked", "nan-zeroes-row",
                                                  "dense-probability-nan-zeroes-row", "nan-propagates"};
  return kNames;
}

TEST(ContractCampaigns, EachRouterPassesACampaignUnderItsOwnContract) {
  for (const auto& n : routed_contracts()) {
    auto r = router_for(n);
    const CampaignResult res = campaign(*r, named(n), 3000, 31);
    EXPECT_TRUE(res.failures.empty()) << n << ": " << (res.failures.empty() ? "" : res.failures[0].message);
    EXPECT_GT(res.cases, 1000) << n;  // the dense router's other layouts are outside its contract
    // the generated cases really exercise what the contracts differ on
    for (const char* cls : {"has-nan", "has-pos-inf", "masked-row", "tie-at-k", "huge"}) {
      EXPECT_GT(res.classes.count(cls) ? res.classes.at(cls) : 0, 5) << n << " " << cls;
    }
    EXPECT_EQ(res.contract.name, n);
  }
}

TEST(ContractCampaigns, EachRouterFailsUnderStrictWithTheExpectedChecks) {
  const std::map<std::string, std::set<std::string>> expected = {
      // underflowed probabilities and +inf rows tie, and the lowest index wins over a larger logit
      {"probability-ranked", {"selection"}},
      // NaN/+inf rows: ids 0..k-1 (not the top k) with weight 0
      {"nan-zeroes-row", {"selection", "weight"}},
      {"dense-probability-nan-zeroes-row", {"selection", "weight"}},
      // NaN ranks first, weights NaN; all -inf rows weigh NaN
      {"nan-propagates", {"selection", "weight"}},
  };
  for (const auto& [n, checks] : expected) {
    auto r = router_for(n);
    const auto found = survey(*r, Contract{}, 500, 32);
    for (const auto& c : checks) EXPECT_GT(found.count(c) ? found.at(c) : 0, 0) << n << " lacks " << c << ": " << names(found);
    // and only checks that the semantic difference explains
    for (const auto& [c, k] : found) EXPECT_TRUE(checks.count(c)) << n << " raised " << c << " x" << k;
    // a real campaign shrinks them
    const CampaignResult res = campaign(*r, Contract{}, 500, 32, 2);
    ASSERT_FALSE(res.failures.empty()) << n;
    EXPECT_LE(res.failures[0].shrunk.T, 2) << n;
  }
}

TEST(ContractCampaigns, NoContractAcceptsAnotherContractsRouter) {
  for (const auto& router : routed_contracts()) {
    for (const auto& contract : routed_contracts()) {
      if (router == contract) continue;
      auto r = router_for(router);
      const auto found = survey(*r, named(contract), 500, 33);
      EXPECT_FALSE(found.empty()) << "contract " << contract << " accepted the " << router << " router";
    }
  }
}

TEST(ContractCampaigns, EveryContractCatchesRealBugs) {
  // bug -> the check that must catch it (wrong zero-row ids only exist where rows are zeroed or
  // masked rows have a defined tie order: under "any" ties every id choice of an all-masked row is valid)
  const std::vector<std::pair<Bug, std::string>> bugs = {
      {Bug::skip_renormalise, "weight"}, {Bug::wrong_scale, "weight"},      {Bug::duplicate_id, "duplicate-id"},
      {Bug::unwritten_slot, "unwritten"}, {Bug::wrong_zero_row_ids, ""},
  };
  const std::map<std::string, std::string> zero_row_check = {
      {"probability-ranked", "tie-order"},
      {"nan-zeroes-row", "zeroed-row-ids"},
      {"dense-probability-nan-zeroes-row", "zeroed-row-ids"},
  };
  for (const auto& n : routed_contracts()) {
    for (const auto& [bug, check] : bugs) {
      std::string want = check;
      if (bug == Bug::wrong_zero_row_ids) {
        if (!zero_row_check.count(n)) continue;
        want = zero_row_check.at(n);
      }
      auto r = router_for(n, bug);
      const CampaignResult res = campaign(*r, named(n), 1500, 34, 1);
      ASSERT_FALSE(res.failures.empty()) << "contract " << n << " missed " << bug_name(bug);
      EXPECT_EQ(res.failures[0].check, want) << n << " " << bug_name(bug) << ": " << res.failures[0].message;
    }
  }
}

// ---- layouts: outside the contract is counted, never failed --------------------------------

TEST(ContractCampaigns, DeclaredLayoutsAreOutsideTheContractNotFailures) {
  auto dense = router_for("dense-probability-nan-zeroes-row");
  const fs::path dir = temp_dir("contract_layouts");
  CampaignOptions o;
  o.seed = 40;
  o.max_cases = 400;
  o.progress = false;
  o.gen = small_config();
  o.results_json = (dir / "c.json").string();
  o.junit_xml = (dir / "c.xml").string();
  std::ostringstream log;
  const CampaignResult r = run_campaign(*dense, o, log);  // judged by what it declares
  EXPECT_TRUE(r.failures.empty()) << log.str();
  EXPECT_EQ(r.contract.name, "dense-probability-nan-zeroes-row");
  EXPECT_GT(r.outside_contract, 100);
  EXPECT_EQ(r.cases + r.skipped + r.outside_contract, 400);
  for (const char* reason : {"layout padded", "layout transposed", "layout strided"}) {
    EXPECT_GT(r.outside_contract_reasons.count(reason) ? r.outside_contract_reasons.at(reason) : 0, 0) << reason;
  }
  // the results name the contract and the reasons, apart from failures
  std::ifstream in(dir / "c.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("contract").at("name"), "dense-probability-nan-zeroes-row");
  EXPECT_EQ(j.at("outside_contract").get<std::int64_t>(), r.outside_contract);
  EXPECT_EQ(j.at("failures").get<int>(), 0);
  EXPECT_GT(j.at("outside_contract_reasons").at("layout transposed").get<int>(), 0);
  std::ifstream xin(dir / "c.xml");
  const std::string xml((std::istreambuf_iterator<char>(xin)), std::istreambuf_iterator<char>());
  EXPECT_NE(xml.find("name=\"contract\" value=\"dense-probability-nan-zeroes-row\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("<skipped message=\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("failures=\"0\""), std::string::npos) << xml;

  // --layouts contiguous: nothing outside
  o.gen.layouts = {Layout::contiguous};
  o.results_json.clear();
  o.junit_xml.clear();
  const CampaignResult c = run_campaign(*dense, o, log);
  EXPECT_TRUE(c.failures.empty());
  EXPECT_EQ(c.outside_contract, 0);

  // The same router without the declaration: its UNSUPPORTED answers are rejected-valid failures.
  HostRouter undeclared("dense-undeclared", semantics_of("dense-probability-nan-zeroes-row"), Bug::none);
  Contract semantics = named("dense-probability-nan-zeroes-row");
  semantics.layouts = kAllLayouts;
  semantics.name = "dense-semantics-any-layout";
  o.gen.layouts.clear();
  o.contract = semantics;
  o.max_failures = 1;
  o.shrink_attempts = 200;
  const CampaignResult u = run_campaign(undeclared, o, log);
  ASSERT_FALSE(u.failures.empty());
  EXPECT_EQ(u.failures[0].check, "rejected-valid");
  // ...and a requested contract is narrowed to a declared domain, never widened
  const auto found = survey(*dense, Contract{}, 300, 41);
  EXPECT_EQ(found.count("rejected-valid"), 0u) << names(found);
  fs::remove_all(dir);
}

// ---- corpus entries record the contract; replay uses it ------------------------------------

TEST(ContractCorpus, FailuresRecordTheirContractAndReplayWithIt) {
  const fs::path dir = temp_dir("contract_corpus");
  auto r = router_for("probability-ranked", Bug::skip_renormalise);
  CampaignOptions o;
  o.seed = 50;
  o.max_cases = 800;
  o.progress = false;
  o.gen = small_config();
  o.contract = named("probability-ranked");
  o.max_failures = 1;
  o.corpus_dir = dir.string();
  std::ostringstream log;
  const CampaignResult res = run_campaign(*r, o, log);
  ASSERT_EQ(res.failures.size(), 1u) << log.str();
  const CorpusEntry e = read_corpus_file(res.failures[0].corpus_file);
  EXPECT_EQ(e.contract, "probability-ranked");
  std::ifstream in(res.failures[0].corpus_file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\ncontract probability-ranked\n"), std::string::npos);
  const TargetFactory factory = [](const std::string&, const TargetOptions&) -> std::unique_ptr<Target> {
    return router_for("probability-ranked", Bug::skip_renormalise);
  };
  const ReplayResult rr = replay_entry(e, "entry", "", factory);
  EXPECT_EQ(rr.outcome, "fail") << rr.detail;
  // a strict entry (no contract line) still reads as strict
  CorpusEntry old = e;
  old.contract = "strict";
  const std::string old_text = format_corpus_entry(old);
  EXPECT_EQ(old_text.find("\ncontract "), std::string::npos);
  EXPECT_EQ(parse_corpus_entry(old_text, "old").contract, "strict");
  // a custom contract is recorded in full, so the replay needs no file
  Contract custom = named("probability-ranked");
  custom.name = "my-router";
  custom.tolerance.kind = ToleranceKind::scaled;
  custom.tolerance.scale = 2;
  old.contract = contract_spec(custom);
  EXPECT_EQ(parse_contract_spec(parse_corpus_entry(format_corpus_entry(old), "x").contract, "x"), custom);
  // a malformed contract line names the field
  std::string broken = old_text;
  broken.replace(broken.find("seed "), 0, "contract ties=sometimes\n");
  try {
    parse_corpus_entry(broken, "broken.case");
    ADD_FAILURE();
  } catch (const CorpusError& ex) {
    EXPECT_EQ(ex.field(), "contract");
    EXPECT_NE(std::string(ex.what()).find("sometimes"), std::string::npos) << ex.what();
  }
  fs::remove_all(dir);
}

// ---- plugin ABI v2 ----------------------------------------------------------------------------

TEST(PluginV2, DescriptorDeclaresTheContractAndItsDomain) {
  auto t = make_core_target(std::string("plugin:") + MOECHECK_EXAMPLE_V2_PLUGIN, TargetOptions{});
  const Contract c = t->contract();
  EXPECT_EQ(c.name, "dense-probability-nan-zeroes-row");
  EXPECT_EQ(c, named("dense-probability-nan-zeroes-row"));
  const CampaignResult ok = campaign(*t, c, 300, 60);
  EXPECT_TRUE(ok.failures.empty()) << (ok.failures.empty() ? "" : ok.failures[0].message);
  EXPECT_GT(ok.outside_contract, 0);
  // judged by strict (narrowed to its declared layouts), its deliberate semantics fail
  const CampaignResult strict = campaign(*t, Contract{}, 300, 60, 1);
  ASSERT_FALSE(strict.failures.empty());
  EXPECT_EQ(strict.contract.name, "strict-on-dense-probability-nan-zeroes-row");

  auto inline_text = make_core_target(std::string("plugin:") + MOECHECK_EXAMPLE_V2_INLINE_PLUGIN, TargetOptions{});
  const Contract ic = inline_text->contract();
  EXPECT_EQ(ic.name, "example-v2-inline");
  EXPECT_EQ(ic.selection, SelectionBasis::fp32_probabilities);
  EXPECT_EQ(ic.layouts, layout_bit(InputLayout::contiguous));
  EXPECT_EQ(ic.nan, NanPolicy::zeroes_row);

  try {
    make_core_target(std::string("plugin:") + MOECHECK_EXAMPLE_V2_BAD_CONTRACT_PLUGIN, TargetOptions{});
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("key 'zero_rows': unknown key"), std::string::npos) << e.what();
  }
  try {
    make_core_target(std::string("plugin:") + MOECHECK_EXAMPLE_V2_SHORT_PLUGIN, TargetOptions{});
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("struct_size"), std::string::npos) << e.what();
  }
  // version-1 plugins keep loading, judged by the strict contract
  auto v1 = make_core_target(std::string("plugin:") + MOECHECK_EXAMPLE_PLUGIN, TargetOptions{});
  EXPECT_EQ(v1->contract(), Contract{});
}

// ---- messages -----------------------------------------------------------------------------

/// Writes the reference's output with one weight of row 0 off by 0.25.
class OffByAQuarter final : public Target {
 public:
  std::string spec() const override { return "host:off-by-a-quarter"; }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    reference_routing_fn()(m.view, m.params, weights, ids);
    weights[0] += 0.25f;
    return {};
  }
};

TEST(ContractMessages, MarginsOfInfiniteRowsAreNotNaN) {
  // +inf and -inf rows: the k-th key is infinite, so key - vk would be inf - inf
  for (float v : {kInfF, -kInfF}) {
    RoutingCase c;
    c.family = Family::softmax_topk;
    c.T = 1;
    c.E = 3;
    c.k = 2;
    c.logits = {v, v, 1.0f};
    if (v < 0) c.logits = {v, v, v};
    OffByAQuarter t;
    const Verdict verdict = evaluate(t, c);
    ASSERT_TRUE(verdict.failed());
    EXPECT_EQ(verdict.check, "weight");
    EXPECT_EQ(verdict.message.find("nan"), std::string::npos) << verdict.message;
    EXPECT_EQ(verdict.report.violations[0].margin, 0.0) << verdict.message;
  }
  // the contract-specific checks print their expectation plainly
  RoutingCase c;
  c.family = Family::softmax_topk;
  c.T = 1;
  c.E = 3;
  c.k = 2;
  c.logits = {kNanF, 1.0f, 2.0f};
  OracleOptions oo;
  oo.contract = named("nan-zeroes-row");
  OffByAQuarter t;
  const Verdict z = evaluate(t, c, oo);
  ASSERT_TRUE(z.failed());
  EXPECT_EQ(z.check, "zeroed-row-ids") << z.message;
  oo.contract = named("nan-propagates");
  const Verdict n = evaluate(t, c, oo);
  ASSERT_TRUE(n.failed());
  EXPECT_EQ(n.check, "selection") << n.message;
  EXPECT_NE(n.message.find("NaN logit"), std::string::npos) << n.message;
  bool nan_weight = false;
  for (const auto& vi : n.report.violations) {
    if (vi.check == "nan-weight") {
      nan_weight = true;
      EXPECT_NE(vi.str().find("expected NaN got"), std::string::npos) << vi.str();
    }
  }
  EXPECT_TRUE(nan_weight);
}

TEST(ContractMessages, StrictContractJudgesExactlyAsBefore) {
  // check_with_contract with the default contract = check_routing's verdict, case by case
  auto r = router_for("probability-ranked");
  const GenConfig g = small_config();
  for (int i = 0; i < 200; ++i) {
    const RoutingCase c = generate_case(case_seed(70, i), g);
    MaterializedCase m = materialize(c);
    try {
      validate_routing(m.view, m.params);
    } catch (const RoutingError&) {
      continue;
    }
    std::vector<float> w(static_cast<std::size_t>(std::max<std::int64_t>(c.T * c.k, 1)));
    std::vector<std::int32_t> ids(w.size());
    poison_outputs(w.data(), ids.data(), static_cast<std::int64_t>(w.size()));
    r->run(m, w.data(), ids.data());
    const CheckReport a = check_routing(m.view, m.params, w.data(), ids.data());
    const ContractCheck b = check_with_contract(m.view, m.params, w.data(), ids.data());
    ASSERT_TRUE(b.covered());
    EXPECT_EQ(a.str(), b.report.str());
  }
}
