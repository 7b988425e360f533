// moecheck check: implementation of reference/check/check.hpp.
#include "reference/check/check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "reference/format.hpp"

namespace moecheck {
namespace {

/// Rows judged per oracle call: bounded so the int32 ids copy stays small.
constexpr std::int64_t kChunkSlots = std::int64_t{1} << 16;

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string describe_type(const HostArray& a) {
  return std::string(elem_type_name(a.type)) + (a.descr.empty() ? "" : " ('" + a.descr + "')");
}

float f32_from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// A float64 NaN as a float32 NaN with the same sign and the top 23 bits of its payload
/// (quiet bit set when nothing of the payload would remain).
float nan_to_f32(double d) {
  std::uint64_t u;
  std::memcpy(&u, &d, 8);
  std::uint32_t man = static_cast<std::uint32_t>((u >> 29) & 0x7fffffu);
  if (man == 0) man = 0x400000u;
  return f32_from_bits(static_cast<std::uint32_t>((u >> 32) & 0x80000000u) | 0x7f800000u | man);
}

/// A float64 with every digit it needs to read back exactly ("%.17g").
std::string num17(double d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

/// Element (t, e) position text for messages: "[t, e]" for 2-D, "[i]" for 1-D.
std::string at_text(const HostArray& a, std::int64_t i) {
  if (a.shape.size() == 2 && a.shape[1] > 0) {
    return "[" + std::to_string(i / a.shape[1]) + ", " + std::to_string(i % a.shape[1]) + "]";
  }
  return "[" + std::to_string(i) + "]";
}

/// Resolves what a 2-byte raw array holds; checks a requested dtype against the file's.
ElemType resolve_type(const HostArray& a, const std::string& requested, const char* what, const char* flag) {
  if (requested.empty()) {
    if (a.type == ElemType::raw16) {
      throw ArrayFileError(a.origin, "descr",
                           std::string(what) + " hold 2-byte values of no standard NumPy float type ('" + a.descr +
                               "'): say what they are (" + flag + " bf16 or f16)");
    }
    return a.type;
  }
  DType d;
  if (!parse_dtype(requested, &d)) {
    throw ArrayFileError(a.origin, "descr", std::string("unknown ") + what + " dtype '" + requested + "' (f32, f16, bf16)");
  }
  const ElemType want = d == DType::f32 ? ElemType::f32 : d == DType::f16 ? ElemType::f16 : ElemType::bf16;
  if (a.type == ElemType::raw16 && want != ElemType::f32) return want;
  if (a.type == want || (want == ElemType::f32 && a.type == ElemType::f64)) return a.type;
  throw ArrayFileError(a.origin, "descr",
                       std::string(what) + " requested as " + dtype_name(d) + " (" + flag + ") but the file holds " +
                           describe_type(a));
}

/// Float values of a float array (f16/bf16 exact, f64 rounded to nearest); `inexact` counts
/// the float64 values that were not exactly representable.
std::vector<float> to_floats(const HostArray& a, ElemType type, const char* what, std::int64_t* inexact) {
  std::vector<float> out(static_cast<std::size_t>(a.elements()));
  *inexact = 0;
  for (std::int64_t i = 0; i < a.elements(); ++i) {
    float f = 0.0f;
    switch (type) {
      case ElemType::f32: std::memcpy(&f, a.bytes.data() + static_cast<std::size_t>(i) * 4, 4); break;
      case ElemType::f16: f = half_bits_to_float(a.bits16(i)); break;
      case ElemType::bf16: f = bf16_bits_to_float(a.bits16(i)); break;
      case ElemType::f64: {
        double d;
        std::memcpy(&d, a.bytes.data() + static_cast<std::size_t>(i) * 8, 8);
        if (std::isnan(d)) {
          f = nan_to_f32(d);
        } else {
          f = static_cast<float>(d);
          if (static_cast<double>(f) != d) ++*inexact;
        }
        break;
      }
      default:
        throw ArrayFileError(a.origin, "descr", std::string(what) + " must be floating-point, the file holds " + describe_type(a));
    }
    out[static_cast<std::size_t>(i)] = f;
  }
  return out;
}

void need_rank(const HostArray& a, std::size_t rank, const std::string& expected) {
  if (a.shape.size() != rank) {
    throw ArrayFileError(a.origin, "shape", "expected " + expected + ", got shape " + shape_text(a.shape));
  }
}

/// per_expert_scale or bias: [E], floating-point, finite.
std::vector<float> vector_e(const HostArray& a, std::int64_t E, const char* what, OwnedCheckProblem& out) {
  need_rank(a, 1, std::string(what) + " of shape [E] = [" + std::to_string(E) + "]");
  if (a.shape[0] != E) {
    throw ArrayFileError(a.origin, "shape", std::string(what) + " has " + std::to_string(a.shape[0]) +
                                                " values, the logits have E = " + std::to_string(E));
  }
  if (a.type == ElemType::raw16) {
    throw ArrayFileError(a.origin, "descr", std::string(what) + " holds 2-byte raw values ('" + a.descr +
                                                "'): save it as float32, float16 or float64");
  }
  std::int64_t inexact = 0;
  std::vector<float> v = to_floats(a, a.type, what, &inexact);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      throw ArrayFileError(a.origin, "values", std::string(what) + "[" + std::to_string(i) + "] is " + num(v[i]) +
                                                   ": the reference takes finite values only (a non-finite " + what +
                                                   " is an invalid problem)");
    }
  }
  if (inexact > 0) {
    out.notes.push_back(std::string(what) + ": " + std::to_string(inexact) +
                        " float64 value(s) rounded to the nearest float32 (the reference takes float32)");
  }
  return v;
}

}  // namespace

CheckProblem OwnedCheckProblem::view() const {
  CheckProblem p;
  p.logits.data = logits.empty() ? nullptr : logits.data();
  p.logits.dtype = logits_dtype;
  p.logits.T = T;
  p.logits.E = E;
  p.logits.row_stride = E;
  p.logits.col_stride = 1;
  p.params = params;
  p.params.scale = scale.empty() ? nullptr : scale.data();
  p.params.bias = bias.empty() ? nullptr : bias.data();
  p.weights = weights.empty() ? nullptr : weights.data();
  p.ids = ids.empty() ? nullptr : ids.data();
  return p;
}

OwnedCheckProblem assemble_check_problem(const CheckArrays& in, const CheckInputOptions& o) {
  OwnedCheckProblem out;
  // logits [T, E]
  const HostArray& L = in.logits;
  need_rank(L, 2, "logits of shape [T, E]");
  out.T = L.shape[0];
  out.E = L.shape[1];
  if (out.E < 1) throw ArrayFileError(L.origin, "shape", "E = 0: the logits have no experts (shape " + shape_text(L.shape) + ")");
  if (out.E > (std::int64_t{1} << 30)) {
    throw ArrayFileError(L.origin, "shape", "E = " + std::to_string(out.E) + " is larger than 2^30 experts");
  }
  const ElemType lt = resolve_type(L, o.logits_dtype, "logits", "--logits-dtype");
  switch (lt) {
    case ElemType::f32:
    case ElemType::f16:
    case ElemType::bf16:
      out.logits_dtype = lt == ElemType::f32 ? DType::f32 : lt == ElemType::f16 ? DType::f16 : DType::bf16;
      out.logits = L.bytes;
      break;
    case ElemType::f64: {
      out.logits_dtype = DType::f32;
      out.logits.resize(static_cast<std::size_t>(L.elements()) * 4);
      std::int64_t nans = 0;
      for (std::int64_t i = 0; i < L.elements(); ++i) {
        double d;
        std::memcpy(&d, L.bytes.data() + static_cast<std::size_t>(i) * 8, 8);
        float f;
        if (std::isnan(d)) {
          f = nan_to_f32(d);
          ++nans;
        } else {
          f = static_cast<float>(d);
          if (static_cast<double>(f) != d) {
            throw ArrayFileError(L.origin, "values",
                                 "logits" + at_text(L, i) + " = " + num17(d) +
                                     " (float64) is not exactly representable in float32 (nearest " + num(f) +
                                     "): moecheck judges float32, float16 and bfloat16 logits; save the logits the "
                                     "router read");
          }
        }
        std::memcpy(out.logits.data() + static_cast<std::size_t>(i) * 4, &f, 4);
      }
      out.notes.push_back("logits: float64 values read as the float32 values they equal" +
                          std::string(nans ? " (NaNs keep their sign and top payload bits)" : ""));
      break;
    }
    default:
      throw ArrayFileError(L.origin, "descr", "logits must be floating-point, the file holds " + describe_type(L));
  }

  // weights and ids [T, k]
  const HostArray& W = in.weights;
  const HostArray& I = in.ids;
  for (const HostArray* a : {&W, &I}) {
    if (a->shape.size() != 1 && a->shape.size() != 2) {
      throw ArrayFileError(a->origin, "shape", "expected [T, k] (or [T] when k is 1), got shape " + shape_text(a->shape));
    }
    if (a->shape[0] != out.T) {
      throw ArrayFileError(a->origin, "shape", "has " + std::to_string(a->shape[0]) + " rows, the logits have T = " +
                                                   std::to_string(out.T) + " (shape " + shape_text(a->shape) + ")");
    }
  }
  if (W.shape != I.shape) {
    throw ArrayFileError(I.origin, "shape", "ids shape " + shape_text(I.shape) + " differs from the weights' " +
                                                shape_text(W.shape) + " (" + W.origin + ")");
  }
  const std::int64_t kw = W.shape.size() == 2 ? W.shape[1] : 1;
  if (W.shape.size() == 1 && o.k > 1) {
    throw ArrayFileError(W.origin, "shape", "shape " + shape_text(W.shape) + " has one expert per row, but k = " +
                                                std::to_string(o.k) + " (expected [T, k])");
  }
  if (o.k != 0 && o.k != kw) {
    throw ArrayFileError(W.origin, "shape", "k = " + std::to_string(o.k) + " but the weights have " + std::to_string(kw) +
                                                " per row (shape " + shape_text(W.shape) + ")");
  }
  if (kw < 1) throw ArrayFileError(W.origin, "shape", "k = 0: no experts per row (shape " + shape_text(W.shape) + ")");
  if (kw > out.E) {
    throw ArrayFileError(W.origin, "shape", "k = " + std::to_string(kw) + " is larger than E = " + std::to_string(out.E) +
                                                " (logits shape " + shape_text(L.shape) + ")");
  }
  const ElemType wt = resolve_type(W, o.weights_dtype, "weights", "--weights-dtype");
  std::int64_t inexact = 0;
  out.weights = to_floats(W, wt, "weights", &inexact);
  if (inexact > 0) {
    out.notes.push_back("weights: " + std::to_string(inexact) +
                        " float64 value(s) rounded to the nearest float32 (the bound is that of float32 math)");
  }
  if (I.type != ElemType::i32 && I.type != ElemType::i64) {
    throw ArrayFileError(I.origin, "descr", "ids must be int32 or int64, the file holds " + describe_type(I));
  }
  out.ids.resize(static_cast<std::size_t>(I.elements()));
  for (std::int64_t i = 0; i < I.elements(); ++i) out.ids[static_cast<std::size_t>(i)] = I.as_int(i);

  out.params.family = o.family;
  out.params.k = static_cast<int>(kw);
  out.params.n_group = o.n_group;
  out.params.topk_group = o.topk_group;
  out.params.routed_scaling = o.routed_scaling;
  if (in.scale) {
    if (o.family != Family::gemma4) {
      throw ArrayFileError(in.scale->origin, "family", std::string("per_expert_scale applies to gemma4 only, the family is ") +
                                                           family_name(o.family));
    }
    out.scale = vector_e(*in.scale, out.E, "scale", out);
  }
  if (in.bias) {
    if (o.family != Family::sigmoid_grouped) {
      throw ArrayFileError(in.bias->origin, "family", std::string("bias applies to sigmoid_grouped only, the family is ") +
                                                          family_name(o.family));
    }
    out.bias = vector_e(*in.bias, out.E, "bias", out);
  }
  return out;
}

CheckOutputsReport check_outputs(const CheckProblem& pr, const Contract& contract, const CheckOutputsOptions& options) {
  validate_routing(pr.logits, pr.params);
  const std::int64_t T = pr.logits.T, E = pr.logits.E;
  const int k = pr.params.k;
  if (T > 0 && (pr.weights == nullptr || pr.ids == nullptr)) {
    throw RoutingError("check_outputs: weights and ids must not be null when T > 0 (T = " + std::to_string(T) + ")");
  }
  CheckOutputsReport r;
  r.contract = contract;
  r.T = T;
  r.E = E;
  r.k = k;
  r.outside = outside_contract(contract, pr.logits, &r.outside_key);
  if (!r.covered()) return r;

  const std::int64_t keep = std::max<std::int64_t>(1, options.max_violations);
  OracleOptions opt;
  opt.precision = pr.precision;
  opt.check_poison = false;
  opt.contract = contract;
  opt.max_violations = std::numeric_limits<int>::max();
  const std::int64_t chunk = std::max<std::int64_t>(1, kChunkSlots / k);
  std::vector<std::int32_t> ids32;
  std::vector<char> row_bad;
  const std::size_t es = dtype_size(pr.logits.dtype);
  for (std::int64_t t0 = 0; t0 < T; t0 += chunk) {
    const std::int64_t n = std::min(chunk, T - t0);
    const std::int64_t* ids = pr.ids + t0 * k;
    ids32.resize(static_cast<std::size_t>(n * k));
    for (std::int64_t i = 0; i < n * k; ++i) {
      const std::int64_t id = ids[i];
      // Saturated ids stay outside [0, E) (E <= 2^30); their true value is restored below.
      ids32[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(
          std::clamp<std::int64_t>(id, std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max()));
    }
    GatingView g = pr.logits;
    g.T = n;
    g.data = static_cast<const std::uint8_t*>(pr.logits.data) + static_cast<std::size_t>(t0 * pr.logits.row_stride) * es;
    CheckReport cr = check_routing(g, pr.params, pr.weights + t0 * k, ids32.data(), opt);
    r.rows_checked += cr.rows_checked;
    r.ties_at_kth += cr.ties_at_kth;
    r.violations_total += cr.violations_total;
    row_bad.assign(static_cast<std::size_t>(n), 0);
    for (Violation& v : cr.violations) {
      if (v.row >= 0 && v.row < n) row_bad[static_cast<std::size_t>(v.row)] = 1;
      if (v.check == "id-range" && v.row >= 0 && v.slot >= 0) {
        const std::int64_t id = ids[v.row * k + v.slot];
        if (id != static_cast<std::int32_t>(id)) {
          v.expert = id >= 0 ? id : -1;
          v.detail = "id " + std::to_string(id) + " outside [0, " + std::to_string(E) + ")";
        }
      }
      if (v.row >= 0) v.row += t0;
      if (static_cast<std::int64_t>(r.violations.size()) < keep) r.violations.push_back(std::move(v));
    }
    for (char b : row_bad) r.violating_rows += b;
  }
  return r;
}

}  // namespace moecheck
