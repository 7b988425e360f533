// moecheck test support: implementation of properties/support/kernel_problem.hpp.
#include "properties/support/kernel_problem.hpp"

#include <cmath>
#include <cstring>
#include <map>

namespace moecheck::testing {

namespace {

/// Independent streams derived from a problem's seed (pad, NaN encodings, scale, row families).
constexpr std::uint64_t kPadStream = 0x5061645f5061645full;
constexpr std::uint64_t kNanStream = 0x4e614e5f4e614e5full;
constexpr std::uint64_t kScaleStream = 0x5363616c655f5363ull;
constexpr std::uint64_t kMixedStream = 0x4d697865645f4d69ull;

/// Gap fill: a huge finite value (f32 ~3.4e38, bf16 ~1.8e36, f16 60832) that wins any selection.
constexpr std::uint32_t kGapF32 = 0x7f7fbadbu;
constexpr std::uint16_t kGap16 = 0x7badu;

/// NaN encodings written for the case's NaNs: quiet and signalling, both signs, payloads.
constexpr std::uint32_t kNanF32[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffc12345u, 0x7fbadbadu};
constexpr std::uint16_t kNanF16[] = {0x7e00u, 0xfe00u, 0x7c01u, 0xfd2bu, 0x7dadu};
constexpr std::uint16_t kNanBF16[] = {0x7fc0u, 0xffc0u, 0x7f81u, 0xffa5u, 0x7fadu};

CaseShape shape_of(DType dtype, std::int64_t T, int E, int k, Family family, Layout layout, std::int64_t pad,
                   const std::string& values, const std::string& scales) {
  CaseShape s;
  s.family = family;
  s.dtype = dtype;
  s.T = T;
  s.E = E;
  s.k = k;
  s.layout = layout;
  s.pad = pad;
  s.value_family = values;
  s.scale_family = scales;
  return s;
}

/// Logits of a kMixedValues case: each row's family drawn from the seed ("normal" 30%, else
/// uniform over all_value_families()); the rows of one family come from one build_case.
std::vector<float> mixed_logits(const CaseShape& shape, std::uint64_t seed) {
  const std::vector<std::string>& fams = all_value_families();
  Rng rng(seed);
  std::vector<std::size_t> row_family(static_cast<std::size_t>(shape.T));
  std::map<std::size_t, std::int64_t> rows_of;
  for (auto& f : row_family) {
    f = rng.chance(0.3) ? 0 : static_cast<std::size_t>(rng.below(fams.size()));
    ++rows_of[f];
  }
  std::map<std::size_t, RoutingCase> built;
  for (const auto& [f, n] : rows_of) {
    CaseShape s = shape;
    s.T = n;
    s.value_family = fams[f];
    s.scale_family = "ones";
    built.emplace(f, build_case(s, rng.next()));
  }
  std::vector<float> logits(static_cast<std::size_t>(shape.T * shape.E));
  std::map<std::size_t, std::int64_t> next_row;
  for (std::int64_t t = 0; t < shape.T; ++t) {
    const std::size_t f = row_family[static_cast<std::size_t>(t)];
    const std::int64_t src = next_row[f]++;
    const float* from = built.at(f).logits.data() + src * shape.E;
    std::copy(from, from + shape.E, logits.begin() + t * shape.E);
  }
  return logits;
}

}  // namespace

kernels::GatingType gating_type(DType d) { return static_cast<kernels::GatingType>(static_cast<int>(d)); }

kernels::KernelFamily kernel_family(Family f) { return static_cast<kernels::KernelFamily>(static_cast<int>(f)); }

const char* scale_family_for(std::uint64_t seed) {
  static const char* const fams[] = {"uniform", "zero", "negative", "mixed"};
  return fams[seed % 4];
}

kernels::RoutingArgs KernelProblem::args(const void* gating, const float* scale, float* weights,
                                         std::int32_t* ids) const {
  kernels::RoutingArgs a;
  a.gating = gating;
  a.dtype = gating_type(c.dtype);
  a.T = c.T;
  a.E = static_cast<int>(c.E);
  a.k = c.k;
  a.row_stride = c.row_stride();
  a.col_stride = c.col_stride();
  a.scale = scale;
  a.family = kernel_family(c.family);
  a.weights = weights;
  a.ids = ids;
  return a;
}

kernels::RoutingArgs KernelProblem::host_args(float* weights, std::int32_t* ids) const {
  return args(storage.empty() ? nullptr : storage.data(), c.scale.empty() ? nullptr : c.scale.data(), weights, ids);
}

std::string KernelProblem::describe() const {
  const std::string d = describe_case(c, 0);
  return d.substr(0, d.find('\n'));
}

GatingView view_of(const KernelProblem& p) {
  GatingView g;
  g.data = p.storage.empty() ? nullptr : p.storage.data();
  g.dtype = p.c.dtype;
  g.T = p.c.T;
  g.E = p.c.E;
  g.row_stride = p.c.row_stride();
  g.col_stride = p.c.col_stride();
  return g;
}

RoutingParams params_of(const KernelProblem& p) { return p.c.params(); }

KernelProblem make_problem(std::uint64_t seed, DType dtype, std::int64_t T, int E, int k, Family family,
                           Layout layout, const std::string& values, const std::string& scales) {
  std::int64_t pad = 0;
  if (layout == Layout::padded || layout == Layout::strided) {
    pad = 1 + static_cast<std::int64_t>(Rng(seed ^ kPadStream).below(7));
  }
  const bool mixed = values == kMixedValues;
  CaseShape shape = shape_of(dtype, T, E, k, family, layout, pad, mixed ? "normal" : values, scales);
  RoutingCase c;
  if (mixed) {
    shape.T = 0;  // validation and scale only; the rows come from mixed_logits
    c = build_case(shape, seed);
    shape.T = T;
    c.T = T;
    c.logits = mixed_logits(shape, seed ^ kMixedStream);
    c.value_family = kMixedValues;
  } else {
    c = build_case(shape, seed);
  }
  if (c.scale_family != scales) {  // build_case gives the softmax families no scale
    CaseShape g = shape_of(dtype, 0, E, k, Family::gemma4, Layout::contiguous, 0, "normal", scales);
    c.scale = build_case(g, seed ^ kScaleStream).scale;
    c.scale_family = scales;
  }
  return lay_out(std::move(c));
}

KernelProblem lay_out(RoutingCase c) {
  c.check_consistent();
  KernelProblem p;
  const std::size_t es = dtype_size(c.dtype);
  const std::vector<std::uint8_t> values = c.materialize();
  p.storage.resize(values.size());
  for (std::size_t i = 0; i < values.size(); i += es) {
    if (es == 4) {
      std::memcpy(p.storage.data() + i, &kGapF32, 4);
    } else {
      std::memcpy(p.storage.data() + i, &kGap16, 2);
    }
  }
  Rng nan_rng(c.seed ^ kNanStream);
  const std::int64_t rs = c.row_stride(), cs = c.col_stride();
  for (std::int64_t t = 0; t < c.T; ++t) {
    for (std::int64_t e = 0; e < c.E; ++e) {
      const std::size_t off = static_cast<std::size_t>(t * rs + e * cs) * es;
      std::memcpy(p.storage.data() + off, values.data() + off, es);
      if (!std::isnan(c.logits[static_cast<std::size_t>(t * c.E + e)])) continue;
      const std::size_t pick = static_cast<std::size_t>(nan_rng.below(5));
      if (c.dtype == DType::f32) {
        std::memcpy(p.storage.data() + off, &kNanF32[pick], 4);
      } else {
        std::memcpy(p.storage.data() + off, c.dtype == DType::f16 ? &kNanF16[pick] : &kNanBF16[pick], 2);
      }
    }
  }
  p.c = std::move(c);
  return p;
}

}  // namespace moecheck::testing
