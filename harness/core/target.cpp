#include "harness/core/target.hpp"

#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "harness/core/targets_internal.hpp"
#include "kernels/routing_kernels.hpp"

namespace moecheck {
namespace {

/// The fp64 reference rounded to fp32: the self-check target (its oracle bound is the rounding).
class ReferenceTarget final : public Target {
 public:
  std::string spec() const override { return "reference"; }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    const std::int64_t n = m.view.T * m.params.k;
    std::vector<double> w(static_cast<std::size_t>(n));
    try {
      route_reference(m.view, m.params, w.data(), ids);
    } catch (const RoutingError& e) {
      return {RunOutcome::Status::rejected, e.what()};
    }
    for (std::int64_t i = 0; i < n; ++i) weights[i] = static_cast<float>(w[static_cast<std::size_t>(i)]);
    return {};
  }
};

/// The fused kernels' own algorithm run on the host (same per-row code as the device).
class KernelHostTarget final : public Target {
 public:
  KernelHostTarget(kernels::Variant v, kernels::Mutant m) : variant_(v), mutant_(m) {}
  std::string spec() const override { return std::string("kernel:") + kernels::variant_name(variant_); }
  std::string mutant() const override { return kernels::mutant_name(mutant_); }
  std::string unsupported(const RoutingCase& c) const override { return kernel_unsupported(c, variant_); }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    kernels::RoutingArgs a = to_kernel_args(m, weights, ids);
    std::string msg;
    kernels::ArgStatus st = kernels::emulate_routing(a, variant_, mutant_, &msg);
    if (st != kernels::ArgStatus::ok) return {RunOutcome::Status::rejected, msg};
    return {};
  }

 private:
  kernels::Variant variant_;
  kernels::Mutant mutant_;
};

std::string after_colon(const std::string& spec) {
  auto p = spec.find(':');
  return p == std::string::npos ? std::string() : spec.substr(p + 1);
}

}  // namespace

std::string kernel_unsupported(const RoutingCase& c, kernels::Variant v) {
  if (c.family != Family::gemma4 && c.family != Family::softmax_topk &&
      c.family != Family::softmax_topk_raw) {
    return std::string("family ") + family_name(c.family) + " has no fused kernel";
  }
  if (c.k > kernels::kMaxK) return "k > " + std::to_string(kernels::kMaxK);
  if (c.E > kernels::kMaxExperts) return "E > " + std::to_string(kernels::kMaxExperts);
  // block_per_row and thread_per_row take every E <= kMaxExperts.
  if (v == kernels::Variant::warp_per_row && c.E > kernels::kWarpMaxExperts) {
    return "E > " + std::to_string(kernels::kWarpMaxExperts) + " for warp_per_row";
  }
  return {};
}

kernels::RoutingArgs to_kernel_args(const MaterializedCase& m, float* weights, std::int32_t* ids) {
  kernels::RoutingArgs a;
  a.gating = m.view.data;
  a.dtype = static_cast<kernels::GatingType>(static_cast<int>(m.view.dtype));
  a.T = m.view.T;
  a.E = static_cast<int>(m.view.E);
  a.k = m.params.k;
  a.row_stride = m.view.row_stride;
  a.col_stride = m.view.col_stride;
  a.scale = m.params.scale;
  a.family = static_cast<kernels::KernelFamily>(static_cast<int>(m.params.family));
  a.weights = weights;
  a.ids = ids;
  return a;
}

kernels::Variant parse_variant_or_throw(const std::string& spec, const std::string& name) {
  kernels::Variant v = kernels::Variant::automatic;
  if (!name.empty() && !kernels::parse_variant(name, &v)) {
    throw std::invalid_argument("target '" + spec + "': unknown kernel variant '" + name +
                                "' (auto, warp_per_row, block_per_row, thread_per_row)");
  }
  return v;
}

kernels::Mutant parse_mutant_or_throw(const std::string& name) {
  kernels::Mutant m = kernels::Mutant::none;
  if (!kernels::parse_mutant(name, &m)) {
    std::string all;
    for (int i = 0; i < static_cast<int>(kernels::Mutant::count_); ++i) {
      all += (i ? ", " : "") + std::string(kernels::mutant_name(static_cast<kernels::Mutant>(i)));
    }
    throw std::invalid_argument("unknown kernel mutant '" + name + "' (known: " + all + ")");
  }
  return m;
}

std::unique_ptr<Target> make_core_target(const std::string& spec, const TargetOptions& opt) {
  if (spec == "reference") {
    if (opt.mutant != "none") throw std::invalid_argument("target 'reference' has no mutants");
    return std::make_unique<ReferenceTarget>();
  }
  if (spec.rfind("kernel", 0) == 0 && (spec.size() == 6 || spec[6] == ':')) {
    return std::make_unique<KernelHostTarget>(parse_variant_or_throw(spec, after_colon(spec)),
                                              parse_mutant_or_throw(opt.mutant));
  }
  if (spec.rfind("cuda", 0) == 0 && (spec.size() == 4 || spec[4] == ':')) {
    return make_cuda_kernel_target(spec, parse_variant_or_throw(spec, after_colon(spec)),
                                   parse_mutant_or_throw(opt.mutant));
  }
  if (spec.rfind("plugin:", 0) == 0) {
    if (opt.mutant != "none") throw std::invalid_argument("plugins have no mutants");
    return make_plugin_target(after_colon(spec), opt.isolate_plugins);
  }
  std::ostringstream os;
  os << "unknown target '" << spec << "' (known:";
  for (const auto& s : core_target_specs()) os << ' ' << s;
  os << ")";
  throw std::invalid_argument(os.str());
}

std::vector<std::string> core_target_specs() {
  return {"reference",          "kernel:auto",         "kernel:warp_per_row", "kernel:block_per_row",
          "kernel:thread_per_row", "cuda:auto",         "cuda:warp_per_row",   "cuda:block_per_row",
          "cuda:thread_per_row", "plugin:<path.so>"};
}

Verdict evaluate(Target& target, const RoutingCase& c, const OracleOptions& base) {
  Verdict v;
  if (std::string why = target.unsupported(c); !why.empty()) {
    v.kind = Verdict::Kind::skipped;
    v.message = why;
    return v;
  }
  MaterializedCase m = materialize(c);
  if (std::string why = outside_contract(base.contract, m.view, &v.outside_key); !why.empty()) {
    v.kind = Verdict::Kind::outside_contract;
    v.message = why;
    return v;
  }
  bool valid = true;
  std::string invalid_reason;
  try {
    validate_routing(m.view, m.params);
  } catch (const RoutingError& e) {
    valid = false;
    invalid_reason = e.what();
  }
  const std::int64_t n = c.T * c.k;
  std::vector<float> weights(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)));
  std::vector<std::int32_t> ids(weights.size());
  poison_outputs(weights.data(), ids.data(), static_cast<std::int64_t>(weights.size()));
  RunOutcome out;
  try {
    out = target.run(m, weights.data(), ids.data());
  } catch (const std::exception& e) {
    out = {RunOutcome::Status::crashed, std::string("exception: ") + e.what()};
  } catch (...) {
    out = {RunOutcome::Status::crashed, "unknown exception"};
  }
  if (out.status == RunOutcome::Status::crashed) {
    v.kind = Verdict::Kind::fail;
    v.check = "crash";
    v.message = out.error;
    return v;
  }
  if (!valid) {
    if (out.status == RunOutcome::Status::rejected) return v;  // correct: invalid input refused
    v.kind = Verdict::Kind::fail;
    v.check = "accepted-invalid";
    v.message = "implementation accepted an invalid problem: " + invalid_reason;
    return v;
  }
  if (out.status == RunOutcome::Status::rejected) {
    v.kind = Verdict::Kind::fail;
    v.check = "rejected-valid";
    v.message = "implementation rejected a valid problem: " + out.error;
    return v;
  }
  OracleOptions opt = base;
  opt.precision = target.precision();
  v.report = check_routing(m.view, m.params, weights.data(), ids.data(), opt);
  if (!v.report.ok()) {
    v.kind = Verdict::Kind::fail;
    v.check = v.report.violations.front().check;
    v.message = v.report.violations.front().str();
  }
  return v;
}

Contract effective_contract(const Target& target, const std::optional<Contract>& requested) {
  return requested ? restrict_domain(*requested, target.contract()) : target.contract();
}

static_assert(static_cast<int>(Layout::contiguous) == static_cast<int>(InputLayout::contiguous) &&
                  static_cast<int>(Layout::padded) == static_cast<int>(InputLayout::padded) &&
                  static_cast<int>(Layout::transposed) == static_cast<int>(InputLayout::transposed) &&
                  static_cast<int>(Layout::strided) == static_cast<int>(InputLayout::strided),
              "generator layouts and contract layouts share their values");

}  // namespace moecheck
