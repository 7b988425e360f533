#include "harness/core/target.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
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
  Domain domain() const override { return kernel_domain(variant_); }
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

/// Fills the guard regions of padded [guard | n | guard] output buffers.
void fill_guards(float* weights, std::int32_t* ids, std::int64_t n) {
  float gw;
  std::memcpy(&gw, &kGuardWeightBits, sizeof gw);
  const std::int64_t g = kOutputGuardElements;
  for (std::int64_t i = 0; i < g; ++i) {
    weights[i] = weights[g + n + i] = gw;
    ids[i] = ids[g + n + i] = kGuardId;
  }
}

/// Describes the guard elements that changed in one padded buffer ("" when none).
template <typename T, typename Same>
std::string guard_damage(const char* name, const T* buf, std::int64_t n, Same intact) {
  const std::int64_t g = kOutputGuardElements;
  std::int64_t before = 0, after = 0, first_before = -1, last_after = -1;
  for (std::int64_t i = 0; i < g; ++i) {
    if (!intact(buf[i])) {
      ++before;
      if (first_before < 0) first_before = i;
    }
    if (!intact(buf[g + n + i])) {
      ++after;
      last_after = i;
    }
  }
  std::string out;
  if (after) {
    out += std::to_string(after) + " of the " + std::to_string(g) + " guard elements after `" + name +
           "` overwritten (up to " + name + "[" + std::to_string(n + last_after) + "])";
  }
  if (before) {
    out += std::string(out.empty() ? "" : ", ") + std::to_string(before) + " of the " + std::to_string(g) +
           " guard elements before `" + name + "` overwritten (down to " + name + "[" +
           std::to_string(first_before - g) + "])";
  }
  return out;
}

/// Describes every damaged guard of the padded weights/ids buffers ("" when all are intact).
std::string damaged_guards(const float* weights, const std::int32_t* ids, std::int64_t n) {
  std::string w = guard_damage("weights", weights, n, [](float v) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return bits == kGuardWeightBits;
  });
  std::string i = guard_damage("ids", ids, n, [](std::int32_t v) { return v == kGuardId; });
  if (!w.empty() && !i.empty()) return i + "; " + w;
  return w.empty() ? i : w;
}

std::string after_colon(const std::string& spec) {
  auto p = spec.find(':');
  return p == std::string::npos ? std::string() : spec.substr(p + 1);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

/// "plugin:<arg>": a shared object when <arg> looks like a file, else a descriptor name.
bool plugin_arg_is_file(const std::string& arg) {
  return arg.empty() || arg.find('/') != std::string::npos || ends_with(arg, ".so") ||
         arg.find(".so.") != std::string::npos;
}

/// The plugin files to search for a plugin name: each given file as it is, each folder's
/// *.so files (sorted), from `paths` first, then from MOECHECK_PLUGIN_PATH.
std::vector<std::string> plugin_candidates(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<std::string> where = paths;
  if (const char* env = std::getenv("MOECHECK_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ':')) {
      if (!item.empty()) where.push_back(item);
    }
  }
  std::vector<std::string> out;
  for (const auto& w : where) {
    std::error_code ec;
    if (!fs::is_directory(w, ec)) {
      out.push_back(w);
      continue;
    }
    std::vector<std::string> found;
    for (auto it = fs::directory_iterator(w, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::error_code fec;
      if (it->path().extension() == ".so" && it->is_regular_file(fec)) found.push_back(it->path().string());
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

/// The plugin whose descriptor name is `name`, searched as plugin_candidates says.
std::unique_ptr<Target> find_plugin_by_name(const std::string& name, const TargetOptions& opt) {
  const std::string spec = "plugin:" + name;
  std::string searched;
  for (const auto& file : plugin_candidates(opt.plugin_paths)) {
    std::string what;
    try {
      auto t = make_plugin_target(file, opt.isolate_plugins);
      if (t->spec() == spec) return t;
      what = t->spec();
    } catch (const std::invalid_argument& e) {
      what = e.what();
    }
    searched += "\n  " + file + ": " + what;
  }
  throw std::invalid_argument("target '" + spec + "': no plugin named '" + name + "'" +
                              (searched.empty() ? std::string(" (no plugin file to search)") : " among:" + searched) +
                              "\n  give its shared object with --plugin PATH (a file or a folder of plugins) or "
                              "list it in MOECHECK_PLUGIN_PATH");
}

}  // namespace

bool valid_plugin_name(const char* name) {
  if (!name) return false;
  const std::string n(name);
  if (n.empty() || n.size() > 64 || n == "." || n == ".." || ends_with(n, ".so")) return false;
  for (char ch : n) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-')) return false;
  }
  return true;
}

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

Domain kernel_domain(kernels::Variant v) {
  Domain d;
  d.families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw};
  d.max_E = v == kernels::Variant::warp_per_row ? kernels::kWarpMaxExperts : kernels::kMaxExperts;
  d.max_k = kernels::kMaxK;
  return d;
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
    const std::string arg = after_colon(spec);
    if (plugin_arg_is_file(arg)) return make_plugin_target(arg, opt.isolate_plugins);
    return find_plugin_by_name(arg, opt);
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
          "cuda:thread_per_row", "plugin:<path.so>", "plugin:<name>"};
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
  // Outputs sit between two guard regions: [guard | T * k | guard] for weights and for ids.
  const std::int64_t n = std::max<std::int64_t>(c.T * c.k, 0);
  const std::int64_t g = kOutputGuardElements;
  const auto padded = static_cast<std::size_t>(n + 2 * g);
  // This thread's output buffers, reused from case to case: every element of [0, padded) is
  // written below (guards, then poison) before the target runs.
  thread_local std::vector<float> weights;
  thread_local std::vector<std::int32_t> ids;
  if (weights.size() < padded) {
    weights.resize(padded);
    ids.resize(padded);
  }
  fill_guards(weights.data(), ids.data(), n);
  poison_outputs(weights.data() + g, ids.data() + g, n);
  RunOutcome out;
  try {
    out = target.run(m, weights.data() + g, ids.data() + g);
  } catch (const std::exception& e) {
    out = {RunOutcome::Status::crashed, std::string("exception: ") + e.what()};
  } catch (...) {
    out = {RunOutcome::Status::crashed, "unknown exception"};
  }
  if (out.status == RunOutcome::Status::abandoned) {
    v.kind = Verdict::Kind::abandoned;
    v.message = out.error;
    return v;
  }
  if (out.status == RunOutcome::Status::crashed || out.status == RunOutcome::Status::timed_out ||
      out.status == RunOutcome::Status::device_fault) {
    v.kind = Verdict::Kind::fail;
    v.check = out.status == RunOutcome::Status::crashed     ? "crash"
              : out.status == RunOutcome::Status::timed_out ? "timeout"
                                                            : "device-fault";
    v.message = out.error;
    return v;
  }
  if (std::string damage = damaged_guards(weights.data(), ids.data(), n); !damage.empty()) {
    v.kind = Verdict::Kind::fail;
    v.check = "out-of-bounds-write";
    v.message = "implementation wrote outside its outputs ([T, k] = [" + std::to_string(c.T) + ", " +
                std::to_string(c.k) + "]): " + damage;
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
  v.report = check_routing(m.view, m.params, weights.data() + g, ids.data() + g, opt);
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
