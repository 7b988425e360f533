// moecheck counter-generated cases: implementation of harness/core/counter_case.hpp.
#include "harness/core/counter_case.hpp"

#include <algorithm>

namespace moecheck {

namespace {

using checker::CgScales;
using checker::CgValues;

int value_code(const std::string& vf) {
  const auto& all = counter_value_families();
  const auto it = std::find(all.begin(), all.end(), vf);
  if (it == all.end()) throw RoutingError("value_family: unknown value family \"" + vf + "\"");
  return static_cast<int>(it - all.begin());
}

int scale_code(const std::string& sf) {
  static const char* names[] = {"ones", "uniform", "zero", "negative", "mixed"};
  for (int i = 0; i < 5; ++i) {
    if (sf == names[i]) return i;
  }
  throw RoutingError("scale_family: unknown scale family \"" + sf + "\"");
}

}  // namespace

const std::vector<std::string>& counter_value_families() {
  // Index = CgValues code.
  static const std::vector<std::string> v = {"normal", "ties",     "near-ties",  "constant", "huge",
                                             "inf",    "nan",      "denormal",   "bf16-exact", "integer"};
  return v;
}

CounterShape counter_shape(std::uint64_t seed, const GenConfig& cfg) {
  Rng rng(seed);
  CounterShape s;
  s.shape = generate_shape(rng, cfg);
  s.value_seed = rng.next();
  return s;
}

checker::CounterCaseDesc counter_desc(const CaseShape& shape, std::uint64_t value_seed) {
  if ((shape.layout == Layout::padded || shape.layout == Layout::strided) && shape.pad < 1) {
    throw RoutingError(std::string("pad: layout ") + layout_name(shape.layout) + " needs pad >= 1 (got " +
                       std::to_string(shape.pad) + ")");
  }
  if (shape.E < 1 || shape.E > (std::int64_t{1} << 30)) throw RoutingError("E must be in [1, 2^30] (got E = " + std::to_string(shape.E) + ")");
  if (shape.T < 0) throw RoutingError("T must be >= 0 (got T = " + std::to_string(shape.T) + ")");
  RoutingCase geometry;
  geometry.T = shape.T;
  geometry.E = shape.E;
  geometry.layout = shape.layout;
  geometry.pad = shape.pad;
  checker::CounterCaseDesc d;
  d.value_seed = value_seed;
  d.T = shape.T;
  d.E = static_cast<std::int32_t>(shape.E);
  d.k = shape.k;
  d.row_stride = geometry.row_stride();
  d.col_stride = geometry.col_stride();
  d.storage_elems = geometry.storage_elems();
  d.layout = static_cast<std::int32_t>(shape.layout);
  d.dtype = static_cast<std::int32_t>(shape.dtype);
  d.family = static_cast<std::int32_t>(shape.family);
  d.values = value_code(shape.value_family);
  d.scales = shape.family == Family::gemma4 ? scale_code(shape.scale_family) : 0;
  const std::uint64_t ck = checker::cg_row_key(value_seed, checker::kStreamCase, 0);
  d.sigma_index = static_cast<std::int32_t>(checker::cg_draw(ck, 0, 0) % 4);
  static const int ranges[] = {2, 5, 100};
  d.int_range = ranges[checker::cg_draw(ck, 0, 1) % 3];
  d.forced_column = static_cast<std::int32_t>(checker::cg_draw(ck, 0, 2) % static_cast<std::uint64_t>(shape.E));
  return d;
}

void counter_row(const checker::CounterCaseDesc& d, std::int64_t t, float* out) {
  const checker::CgRow row = checker::cg_row(d, t);
  for (std::int64_t e = 0; e < d.E; ++e) out[e] = checker::counter_logit_in(d, row, e);
}

RoutingCase counter_case_without_logits(const CaseShape& s, std::uint64_t value_seed) {
  const checker::CounterCaseDesc d = counter_desc(s, value_seed);
  RoutingCase c;
  c.family = s.family;
  c.dtype = s.dtype;
  c.T = s.T;
  c.E = s.E;
  c.k = s.k;
  c.layout = s.layout;
  c.pad = s.pad;
  c.n_group = s.n_group;
  c.topk_group = s.topk_group;
  c.routed_scaling = s.routed_scaling;
  c.seed = value_seed;
  c.value_family = s.value_family;
  c.scale_family = s.family == Family::gemma4 ? s.scale_family : "ones";
  if (d.scales != static_cast<std::int32_t>(CgScales::ones)) {
    c.scale.resize(static_cast<std::size_t>(s.E));
    for (std::int64_t e = 0; e < s.E; ++e) c.scale[static_cast<std::size_t>(e)] = checker::counter_scale(d, e);
  }
  if (s.family == Family::sigmoid_grouped && s.with_bias) {
    c.bias.resize(static_cast<std::size_t>(s.E));
    const std::uint64_t bk = checker::cg_row_key(value_seed, checker::kStreamBias, 0);
    for (std::int64_t e = 0; e < s.E; ++e) {
      const double u = checker::cg_u01(checker::cg_draw(bk, static_cast<std::uint64_t>(e), 0));
      c.bias[static_cast<std::size_t>(e)] = static_cast<float>(-0.1 + 0.2 * u);
    }
  }
  return c;
}

RoutingCase build_counter_case(const CaseShape& s, std::uint64_t value_seed) {
  RoutingCase c = counter_case_without_logits(s, value_seed);
  const checker::CounterCaseDesc d = counter_desc(s, value_seed);
  c.logits.resize(static_cast<std::size_t>(s.T * s.E));
  for (std::int64_t t = 0; t < s.T; ++t) counter_row(d, t, c.logits.data() + t * s.E);
  return c;
}

RoutingCase generate_counter_case(std::uint64_t seed, const GenConfig& cfg) {
  const CounterShape s = counter_shape(seed, cfg);
  RoutingCase c = build_counter_case(s.shape, s.value_seed);
  c.seed = seed;
  return c;
}

RoutingCase counter_row_case(const RoutingCase& shape_case, const checker::CounterCaseDesc& d, std::int64_t t) {
  RoutingCase r = shape_case;
  r.T = 1;
  r.layout = Layout::contiguous;
  r.pad = 0;
  r.logits.resize(static_cast<std::size_t>(d.E));
  counter_row(d, t, r.logits.data());
  return r;
}

}  // namespace moecheck
