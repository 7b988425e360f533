// moecheck substitution suite: property checks and the RapidCheck-driven runner.
#include "harness/torch/substitution_suite.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include <rapidcheck.h>

#include "harness/torch/dtype.hpp"
#include "harness/torch/functional_call.hpp"
#include "harness/torch/moe_module.hpp"
#include "harness/torch/moe_reference.hpp"
#include "harness/torch/substitution_gen.hpp"
#include "reference/format.hpp"
#include "reference/oracle.hpp"

namespace moecheck::harness {

// ---------------------------------------------------------------------------------------
// Names and printing.
// ---------------------------------------------------------------------------------------
const char* substitution_property_name(SubstitutionProperty p) {
  switch (p) {
    case SubstitutionProperty::scale_substitution: return "scale_substitution";
    case SubstitutionProperty::restoration: return "restoration";
    case SubstitutionProperty::scale_linearity: return "scale_linearity";
    case SubstitutionProperty::zero_scale: return "zero_scale";
    case SubstitutionProperty::every_parameter: return "every_parameter";
  }
  return "?";
}

bool parse_substitution_property(std::string_view s, SubstitutionProperty* out) {
  std::string n(s);
  for (char& ch : n) ch = ch == '-' ? '_' : ch;
  for (SubstitutionProperty p : all_substitution_properties()) {
    if (n == substitution_property_name(p)) {
      *out = p;
      return true;
    }
  }
  return false;
}

bool property_expected_to_fail(SubstitutionProperty p, ModuleVariant v, SubstitutionMode m) {
  if (p == SubstitutionProperty::restoration) return false;
  if (p == SubstitutionProperty::scale_linearity && v == ModuleVariant::scale_by_slot) return false;
  return variant_caught_by(v, m);
}

std::vector<SubstitutionProperty> all_substitution_properties() {
  return {SubstitutionProperty::scale_substitution, SubstitutionProperty::restoration,
          SubstitutionProperty::scale_linearity, SubstitutionProperty::zero_scale,
          SubstitutionProperty::every_parameter};
}

std::string describe_case(const SubstitutionCase& c) {
  std::ostringstream os;
  os << "E=" << c.E << " k=" << c.k << " H=" << c.H << " I=" << c.I << " T=" << c.T
     << " tie_gate_up=" << (c.tie_gate_up ? "true" : "false") << " init_seed=" << c.init_seed
     << " value_seed=" << c.value_seed << " zero_expert=" << c.zero_expert << " alpha=" << num(c.alpha)
     << "\nx=[";
  for (std::int64_t t = 0; t < c.T; ++t) {
    os << (t ? ", [" : "[");
    for (std::int64_t h = 0; h < c.H; ++h) {
      const std::size_t i = static_cast<std::size_t>(t * c.H + h);
      os << (h ? ", " : "") << (i < c.x.size() ? num(c.x[i]) : "?");
    }
    os << ']';
  }
  os << "]\nscale=[";
  for (std::size_t e = 0; e < c.scale.size(); ++e) os << (e ? ", " : "") << num(c.scale[e]);
  os << ']';
  return os.str();
}

void showValue(const SubstitutionCase& c, std::ostream& os) { os << describe_case(c); }

std::string ModuleSpec::str() const {
  return std::string("variant=") + module_variant_name(variant) + " backend=" + routing_backend_name(backend) +
         " dtype=" + dtype_name(dtype) + " device=" + device;
}

// ---------------------------------------------------------------------------------------
// Property checks.
// ---------------------------------------------------------------------------------------
namespace {

torch::Device parse_device(const std::string& s) {
  torch::Device dev(torch::kCPU);
  try {
    dev = torch::Device(s);
  } catch (const std::exception&) {
    throw std::invalid_argument("substitution: unknown device '" + s + "' (cpu, cuda or cuda:N)");
  }
  if (dev.is_cuda() && !torch::cuda::is_available()) {
    throw std::invalid_argument("substitution: device '" + s + "' requested but no CUDA device is available");
  }
  if (!dev.is_cpu() && !dev.is_cuda()) {
    throw std::invalid_argument("substitution: device '" + s + "' is neither cpu nor cuda");
  }
  return dev;
}

struct Built {
  MoeConfig cfg;
  MoeLayer module{nullptr};
  torch::Tensor x;
};

torch::Tensor from_floats(const std::vector<float>& v, std::vector<std::int64_t> shape, torch::Dtype dt,
                          torch::Device dev) {
  torch::Tensor t = torch::empty(shape, torch::kFloat);
  std::copy(v.begin(), v.end(), t.data_ptr<float>());
  return t.to(dt).to(dev);
}

Built build(const SubstitutionCase& c, const ModuleSpec& spec) {
  Built b;
  b.cfg.num_experts = c.E;
  b.cfg.top_k = c.k;
  b.cfg.hidden = c.H;
  b.cfg.intermediate = c.I;
  b.cfg.dtype = torch_dtype(spec.dtype);
  b.cfg.device = parse_device(spec.device);
  b.cfg.backend = spec.backend;
  b.cfg.variant = spec.variant;
  b.cfg.tie_gate_up = c.tie_gate_up;
  b.cfg.seed = c.init_seed;
  if (static_cast<std::int64_t>(c.x.size()) != c.T * c.H || static_cast<std::int64_t>(c.scale.size()) != c.E) {
    throw std::invalid_argument("substitution case: x or scale has the wrong number of values");
  }
  b.module = MoeLayer(b.cfg);
  b.x = from_floats(c.x, {c.T, c.H}, b.cfg.dtype, b.cfg.device);
  return b;
}

torch::Tensor scale_tensor(const Built& b, const std::vector<float>& s) {
  return from_floats(s, {b.cfg.num_experts}, b.cfg.dtype, b.cfg.device);
}

/// A fresh random value for a registered tensor: normal(0, 1) in its dtype on its device;
/// the RMSNorm eps uniform in [0.25, 2] (positive, and large enough to move the output).
torch::Tensor random_like(const std::string& name, const torch::Tensor& like, std::uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  const auto dbl = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor v = name == "router.norm.eps" ? torch::rand(like.sizes(), gen, dbl) * 1.75 + 0.25
                                              : torch::randn(like.sizes(), gen, dbl);
  return v.to(like.scalar_type()).to(like.device());
}

std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t stream) {
  return seed * 0xD1B54A32D192ED03ull + stream * 0x9E3779B97F4A7C15ull + 1;
}

std::string mode_note(SubstitutionMode m) { return std::string(" (mode ") + substitution_mode_name(m) + ")"; }

MoeForward call_with(Built& b, const NamedTensors& t, SubstitutionMode mode, bool strict = false) {
  FunctionalCallOptions o;
  o.mode = mode;
  o.strict = strict;
  return functional_call(*b.module, t, [&] { return b.module->forward_detailed(b.x); }, o);
}

/// First index where a != b (ids/logits/weights/out), described; "" when bitwise equal.
std::string first_difference(const char* what, const torch::Tensor& a, const torch::Tensor& b) {
  if (bitwise_equal(a, b)) return "";
  const std::vector<double> va = tensor_to_doubles(a), vb = tensor_to_doubles(b);
  const std::int64_t cols = a.dim() >= 2 ? a.size(-1) : 1;
  for (std::size_t i = 0; i < va.size() && i < vb.size(); ++i) {
    if (!(va[i] == vb[i]) && !(std::isnan(va[i]) && std::isnan(vb[i]))) {
      return std::string(what) + "[row " + std::to_string(static_cast<std::int64_t>(i) / cols) + ", col " +
             std::to_string(static_cast<std::int64_t>(i) % cols) + "]: " + num(va[i]) + " vs " + num(vb[i]);
    }
  }
  return std::string(what) + ": bit patterns differ (signed zeros or NaN payloads)";
}

/// moecheck::check_routing on the module's own logits with the given fp32 scale.
std::string routing_oracle(const MoeForward& f, const std::vector<float>& scale, std::int64_t k) {
  const torch::Tensor lg = f.logits.detach().to(torch::kCPU).contiguous();
  const torch::Tensor w = f.routing.weights.detach().to(torch::kCPU, torch::kFloat).contiguous();
  const torch::Tensor ids = f.routing.ids.detach().to(torch::kCPU, torch::kInt).contiguous();
  GatingView g;
  g.T = lg.size(0);
  g.E = lg.size(1);
  g.data = g.T > 0 ? lg.data_ptr() : nullptr;
  g.dtype = reference_dtype(lg.scalar_type());
  g.row_stride = g.E;
  g.col_stride = 1;
  RoutingParams p;
  p.family = Family::gemma4;
  p.k = static_cast<int>(k);
  p.scale = scale.data();
  OracleOptions opt;
  opt.precision = fp32_exact_selection();
  opt.check_poison = false;
  const CheckReport rep = check_routing(g, p, w.data_ptr<float>(), ids.data_ptr<std::int32_t>(), opt);
  return rep.ok() ? "" : rep.str();
}

std::string prop_scale_substitution(const SubstitutionCase& c, const ModuleSpec& spec, SubstitutionMode mode) {
  Built b = build(c, spec);
  const MoeForward before = b.module->forward_detailed(b.x);
  const MoeForward after = call_with(b, {{"per_expert_scale", scale_tensor(b, c.scale)}}, mode);
  std::string msg = routing_oracle(after, c.scale, c.k);
  if (!msg.empty()) {
    return "routing weights with per_expert_scale substituted" + mode_note(mode) +
           " disagree with the fp64 reference for the new scale:\n" + msg;
  }
  msg = first_difference("logits", before.logits, after.logits);
  if (!msg.empty()) return "router logits changed when only per_expert_scale was substituted" + mode_note(mode) + ": " + msg;
  msg = first_difference("ids", before.routing.ids, after.routing.ids);
  if (!msg.empty()) return "expert ids changed when only per_expert_scale was substituted" + mode_note(mode) + ": " + msg;
  return "";
}

/// A strict substitution map: a random value for every registered tensor, tied names
/// sharing one tensor object.
NamedTensors random_state(MoeLayerImpl& m, std::uint64_t seed) {
  NamedTensors all;
  std::uint64_t stream = 0;
  for (const SlotInfo& s : list_slots(m)) {
    ++stream;
    if (all.count(s.name)) continue;
    torch::Tensor v = random_like(s.name, s.tensor, stream_seed(seed, stream));
    all[s.name] = v;
    for (const std::string& t : s.tied) all[t] = v;
  }
  return all;
}

std::string prop_restoration(const SubstitutionCase& c, const ModuleSpec& spec, SubstitutionMode mode) {
  Built b = build(c, spec);
  const auto fp_before = fingerprint_module(*b.module);
  const MoeForward f0 = b.module->forward_detailed(b.x);
  const NamedTensors all = random_state(*b.module, c.value_seed);
  call_with(b, all, mode, /*strict=*/true);
  std::string diff = compare_fingerprints(fp_before, fingerprint_module(*b.module));
  if (!diff.empty()) return "module state not restored after a strict call" + mode_note(mode) + ":\n" + diff;
  bool propagated = false;
  try {
    FunctionalCallOptions o;
    o.mode = mode;
    o.strict = true;
    functional_call(*b.module, all, [&]() -> int {
      b.module->forward_detailed(b.x);
      throw std::runtime_error("planted failure inside the call");
    }, o);
  } catch (const std::runtime_error&) {
    propagated = true;
  }
  if (!propagated) return "an exception thrown inside functional_call did not propagate" + mode_note(mode);
  diff = compare_fingerprints(fp_before, fingerprint_module(*b.module));
  if (!diff.empty()) return "module state not restored after a call that threw" + mode_note(mode) + ":\n" + diff;
  const MoeForward f1 = b.module->forward_detailed(b.x);
  for (auto [what, x0, x1] : {std::make_tuple("out", f0.out, f1.out), std::make_tuple("logits", f0.logits, f1.logits),
                              std::make_tuple("weights", f0.routing.weights, f1.routing.weights),
                              std::make_tuple("ids", f0.routing.ids, f1.routing.ids)}) {
    const std::string d = first_difference(what, x0, x1);
    if (!d.empty()) return "module outputs differ before and after functional calls" + mode_note(mode) + ": " + d;
  }
  return "";
}

std::string prop_scale_linearity(const SubstitutionCase& c, const ModuleSpec& spec, SubstitutionMode mode) {
  Built b = build(c, spec);
  std::vector<float> scaled(c.scale.size());
  for (std::size_t e = 0; e < scaled.size(); ++e) {
    scaled[e] = c.alpha * c.scale[e];
    if (round_to_dtype(scaled[e], spec.dtype) != scaled[e]) {
      throw std::invalid_argument("scale_linearity: alpha * scale is not exact in the dtype");
    }
  }
  const MoeForward f1 = call_with(b, {{"per_expert_scale", scale_tensor(b, c.scale)}}, mode);
  const MoeForward f2 = call_with(b, {{"per_expert_scale", scale_tensor(b, scaled)}}, mode);
  std::string msg = first_difference("ids", f1.routing.ids, f2.routing.ids);
  if (!msg.empty()) return "expert ids depend on per_expert_scale" + mode_note(mode) + ": " + msg;
  const std::vector<double> w1 = tensor_to_doubles(f1.routing.weights), w2 = tensor_to_doubles(f2.routing.weights);
  const torch::Tensor ids_t = f1.routing.ids.to(torch::kCPU, torch::kInt).contiguous();
  for (std::size_t i = 0; i < w1.size(); ++i) {
    const double want = c.alpha * w1[i];
    const double tol = 8 * 0x1p-24 * std::fabs(want) + 1e-38;  // two fp32 roundings of p*s, with slack
    if (!(std::fabs(w2[i] - want) <= tol)) {
      const std::int64_t row = static_cast<std::int64_t>(i) / c.k, slot = static_cast<std::int64_t>(i) % c.k;
      return "weights are not linear in per_expert_scale" + mode_note(mode) + ": row " + std::to_string(row) +
             " slot " + std::to_string(slot) + " (expert " + std::to_string(ids_t.data_ptr<std::int32_t>()[i]) +
             "): weight(s) = " + num(w1[i]) + ", weight(" + num(c.alpha) + " s) = " + num(w2[i]) +
             ", expected " + num(want) + " (tol " + num(tol) + ")";
    }
  }
  return "";
}

std::string prop_zero_scale(const SubstitutionCase& c, const ModuleSpec& spec, SubstitutionMode mode) {
  Built b = build(c, spec);
  const std::int64_t z = c.zero_expert;
  std::vector<float> s0 = c.scale;
  s0[static_cast<std::size_t>(z)] = 0.0f;
  const MoeForward fa = call_with(b, {{"per_expert_scale", scale_tensor(b, s0)}}, mode);
  const torch::Tensor w = fa.routing.weights.to(torch::kCPU, torch::kFloat).contiguous();
  const torch::Tensor ids = fa.routing.ids.to(torch::kCPU, torch::kInt).contiguous();
  for (std::int64_t i = 0; i < ids.numel(); ++i) {
    if (ids.data_ptr<std::int32_t>()[i] == z && w.data_ptr<float>()[i] != 0.0f) {
      return "expert " + std::to_string(z) + " keeps weight " + num(w.data_ptr<float>()[i]) + " at row " +
             std::to_string(i / c.k) + " slot " + std::to_string(i % c.k) + " although per_expert_scale[" +
             std::to_string(z) + "] = 0 was substituted" + mode_note(mode);
    }
  }
  const torch::Tensor down = *registered_tensor(*b.module->experts(), "down_proj");
  torch::Tensor down0 = down.detach().clone();
  down0[z].zero_();
  const MoeForward fb = call_with(
      b, {{"per_expert_scale", scale_tensor(b, c.scale)}, {"experts.down_proj", down0}}, mode);
  const torch::Tensor oa = fa.out.to(torch::kCPU, torch::kDouble), ob = fb.out.to(torch::kCPU, torch::kDouble);
  const torch::Tensor ne = (oa != ob).nonzero();
  if (ne.size(0) > 0) {
    const std::int64_t t = ne[0][0].item<std::int64_t>(), h = ne[0][1].item<std::int64_t>();
    return "zeroing per_expert_scale[" + std::to_string(z) + "] does not remove expert " + std::to_string(z) +
           "'s contribution" + mode_note(mode) + ": out[row " + std::to_string(t) + ", col " + std::to_string(h) +
           "] = " + num(oa[t][h].item<double>()) + " but with down_proj[" + std::to_string(z) + "] zeroed instead " +
           num(ob[t][h].item<double>());
  }
  return "";
}

std::string prop_every_parameter(const SubstitutionCase& c, const ModuleSpec& spec, SubstitutionMode mode) {
  Built b = build(c, spec);
  // The state the reference starts from: value snapshots, taken before any call.
  std::map<std::string, torch::Tensor> original;
  for (const auto& [name, t] : moe_named_tensors(*b.module)) original[name] = t.detach().clone();
  const std::vector<SlotInfo> slots = list_slots(*b.module);

  std::string msg = compare_forward_with_reference(b.cfg, b.module->forward_detailed(b.x), b.x, original);
  if (!msg.empty()) return "the unsubstituted module disagrees with the fp64 reference: " + msg;

  std::uint64_t stream = 0;
  for (const SlotInfo& s : slots) {
    ++stream;
    const torch::Tensor v = random_like(s.name, s.tensor, stream_seed(c.value_seed, 1000 + stream));
    const MoeForward f = call_with(b, {{s.name, v}}, mode);
    std::map<std::string, torch::Tensor> state = original;
    state[s.name] = v;
    for (const std::string& t : s.tied) state[t] = v;  // tied names follow (tie_weights)
    msg = compare_forward_with_reference(b.cfg, f, b.x, state);
    if (!msg.empty()) {
      return "after substituting '" + s.name + "'" + mode_note(mode) +
             ", the module disagrees with the fp64 recomputation from the substituted state: " + msg;
    }
  }
  return "";
}

}  // namespace

std::string check_substitution_property(SubstitutionProperty p, const SubstitutionCase& c,
                                        const ModuleSpec& spec, SubstitutionMode mode) {
  torch::NoGradGuard no_grad;
  switch (p) {
    case SubstitutionProperty::scale_substitution: return prop_scale_substitution(c, spec, mode);
    case SubstitutionProperty::restoration: return prop_restoration(c, spec, mode);
    case SubstitutionProperty::scale_linearity: return prop_scale_linearity(c, spec, mode);
    case SubstitutionProperty::zero_scale: return prop_zero_scale(c, spec, mode);
    case SubstitutionProperty::every_parameter: return prop_every_parameter(c, spec, mode);
  }
  throw std::invalid_argument("unknown substitution property");
}

// ---------------------------------------------------------------------------------------
// Runner.
// ---------------------------------------------------------------------------------------
namespace {

class CountingListener : public rc::detail::TestListener {
 public:
  void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
  void onShrinkTried(const rc::detail::CaseDescription&, bool accepted) override { shrinks += accepted ? 1 : 0; }
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
  int shrinks = 0;
};

std::string property_id(SubstitutionProperty p, SubstitutionMode m) {
  return std::string("substitution/") + substitution_property_name(p) + "/" + substitution_mode_name(m);
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

}  // namespace

std::string replay_command(const SubstitutionOptions& o, SubstitutionProperty p, SubstitutionMode m,
                           const std::string& reproduce) {
  std::ostringstream os;
  os << "moecheck substitution --device " << o.spec.device << " --variant " << module_variant_name(o.spec.variant)
     << " --backend " << routing_backend_name(o.spec.backend) << " --dtype " << dtype_name(o.spec.dtype)
     << " --mode " << substitution_mode_name(m) << " --property " << substitution_property_name(p)
     << " --cases " << o.cases << " --seed " << o.seed;
  if (!reproduce.empty()) os << " --reproduce " << shell_quote(reproduce);
  return os.str();
}

bool SubstitutionReport::passed() const {
  for (const PropertyResult& r : results) {
    if (!r.passed) return false;
  }
  return true;
}

std::string SubstitutionReport::str() const {
  std::ostringstream os;
  os << "moecheck substitution: " << options.spec.str() << " seed=" << options.seed << " cases=" << options.cases
     << '\n';
  for (const PropertyResult& r : results) {
    char line[256];
    std::snprintf(line, sizeof line, "  %-5s %-19s %-10s %4d cases", r.passed ? "PASS" : r.error ? "ERROR" : "FAIL",
                  substitution_property_name(r.property), substitution_mode_name(r.mode), r.cases_passed);
    os << line;
    if (!r.passed && !r.error) os << " then a failure, shrunk in " << r.shrink_steps << " steps";
    std::snprintf(line, sizeof line, "  %.2f s\n", r.seconds);
    os << line;
  }
  for (const PropertyResult& r : results) {
    if (r.passed) continue;
    os << '\n' << (r.error ? "ERROR " : "FAIL ") << substitution_property_name(r.property) << " / "
       << substitution_mode_name(r.mode) << ":\n  " << r.failure << '\n';
    if (!r.counterexample.empty()) os << "counterexample:\n" << r.counterexample << '\n';
    os << "replay: " << r.replay << '\n';
  }
  return os.str();
}

SubstitutionReport run_substitution_suite(const SubstitutionOptions& o) {
  if (o.cases < 1) throw std::invalid_argument("substitution: cases must be >= 1");
  parse_device(o.spec.device);
  if (o.spec.backend == RoutingBackend::fused && !fused_backend_available()) {
    throw std::invalid_argument("substitution: backend 'fused' is not available in this build");
  }
  std::unordered_map<std::string, rc::detail::Reproduce> reproduce;
  if (!o.reproduce.empty()) {
    try {
      reproduce = rc::detail::configFromString(o.reproduce).reproduce;
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string("substitution: bad reproduce string: ") + e.what());
    }
    if (reproduce.empty()) throw std::invalid_argument("substitution: the reproduce string names no case");
  }

  SubstitutionReport report;
  report.options = o;
  for (SubstitutionProperty p : o.properties) {
    for (SubstitutionMode m : o.modes) {
      const std::string id = property_id(p, m);
      if (!reproduce.empty() && !reproduce.count(id)) continue;
      PropertyResult r;
      r.property = p;
      r.mode = m;
      rc::detail::TestMetadata meta;
      meta.id = id;
      meta.description = id;
      rc::detail::TestParams params;
      params.seed = o.seed;
      params.maxSuccess = o.cases;
      params.maxSize = o.max_size;
      params.disableShrinking = !o.shrink;
      const ModuleSpec spec = o.spec;
      const CaseLimits lim = o.limits;
      auto property = [p, m, spec, lim] {
        const SubstitutionCase c = *gen_substitution_case(lim);
        const std::string msg = check_substitution_property(p, c, spec, m);
        if (!msg.empty()) throw rc::detail::CaseResult(rc::detail::CaseResult::Type::Failure, msg);
      };
      CountingListener listener;
      const auto t0 = std::chrono::steady_clock::now();
      const rc::detail::TestResult result =
          rc::detail::checkTestable(property, meta, params, listener, reproduce);
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.shrink_steps = listener.shrinks;
      if (result.template is<rc::detail::SuccessResult>()) {
        r.passed = true;
        r.cases_passed = result.template get<rc::detail::SuccessResult>().numSuccess;
        r.replay = replay_command(o, p, m);
      } else if (result.template is<rc::detail::FailureResult>()) {
        const auto& f = result.template get<rc::detail::FailureResult>();
        r.cases_passed = f.numSuccess;
        r.failure = f.description;
        for (const auto& entry : f.counterExample) {
          r.counterexample += (r.counterexample.empty() ? "" : "\n") + entry.second;
        }
        rc::detail::Configuration cfg;
        cfg.reproduce[id] = f.reproduce;
        r.reproduce = rc::detail::configToMinimalString(cfg);
        r.replay = replay_command(o, p, m, r.reproduce);
      } else if (result.template is<rc::detail::GaveUpResult>()) {
        const auto& g = result.template get<rc::detail::GaveUpResult>();
        r.error = true;
        r.cases_passed = g.numSuccess;
        r.failure = "gave up: " + g.description;
        r.replay = replay_command(o, p, m);
      } else {
        const std::string what = result.template get<rc::detail::Error>().description;
        if (!reproduce.empty() && what.find("Reproduced result is not a failure") != std::string::npos) {
          // The recorded case was re-run and now holds (e.g. a fixed bug): a pass, not an error.
          r.passed = true;
          r.cases_passed = 1;
          r.replay = replay_command(o, p, m, o.reproduce);
        } else {
          r.error = true;
          r.failure = "error: " + what;
          r.replay = replay_command(o, p, m);
        }
      }
      report.results.push_back(std::move(r));
    }
  }
  return report;
}

}  // namespace moecheck::harness
