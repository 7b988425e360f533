// moecheck._core: nanobind bindings of the C++ core for the moecheck Python package.
//
// Nothing here links torch: cases go out as bytes/bytearrays, outputs and user arrays come in
// through DLPack or the buffer protocol (nb::ndarray), and the Python layer (python/moecheck)
// builds the torch tensors. Errors: std::invalid_argument (bad names, bad sizes, RoutingError)
// becomes ValueError; CorpusError becomes ValueError naming file, line and field.
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "harness/core/campaign.hpp"
#include "harness/core/corpus.hpp"
#include "harness/core/generators.hpp"
#include "harness/core/replay.hpp"
#include "python_target.hpp"
#include "reference/check/check.hpp"
#include "reference/oracle.hpp"
#include "values.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace moecheck::python {
namespace {

using F32Array = nb::ndarray<nb::ro, float, nb::c_contig, nb::device::cpu>;
using CpuArray = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;

// ---- names ------------------------------------------------------------------------------

DType dtype_or_throw(const std::string& s) {
  DType d;
  if (!parse_dtype(s, &d)) throw std::invalid_argument("unknown dtype '" + s + "' (f32, f16, bf16)");
  return d;
}

Family family_or_throw(const std::string& s) {
  Family f;
  if (!parse_family(s, &f)) {
    throw std::invalid_argument("unknown routing family '" + s +
                                "' (gemma4, softmax_topk, softmax_topk_raw, sigmoid_grouped, sigmoid_top1)");
  }
  return f;
}

Layout layout_or_throw(const std::string& s) {
  Layout l;
  if (!parse_layout(s, &l)) {
    throw std::invalid_argument("unknown layout '" + s + "' (contiguous, padded, transposed, strided)");
  }
  return l;
}

std::vector<Family> families_or_throw(const std::vector<std::string>& names) {
  std::vector<Family> out;
  for (const auto& n : names) out.push_back(family_or_throw(n));
  return out;
}

std::vector<std::string> check_names(const std::vector<std::string>& names, const std::vector<std::string>& known,
                                     const char* what) {
  for (const auto& n : names) {
    bool ok = false;
    for (const auto& k : known) ok = ok || k == n;
    if (!ok) {
      std::string all;
      for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
      throw std::invalid_argument(std::string("unknown ") + what + " '" + n + "' (" + all + ")");
    }
  }
  return names;
}

Precision precision_or_throw(const std::string& compute) { return compute_precision(dtype_or_throw(compute)); }

// ---- cases <-> Python ---------------------------------------------------------------------

nb::bytes float_bytes(const std::vector<float>& v) {
  return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

/// A case as a dict: the shape fields of the campaign JSON's "shrunk" plus values and provenance.
nb::dict case_dict(const RoutingCase& c) {
  nb::dict d;
  d["T"] = c.T;
  d["E"] = c.E;
  d["k"] = c.k;
  d["dtype"] = dtype_name(c.dtype);
  d["family"] = family_name(c.family);
  d["layout"] = layout_name(c.layout);
  d["pad"] = c.pad;
  d["seed"] = c.seed;
  d["value_family"] = c.value_family;
  d["scale_family"] = c.scale_family;
  d["logits"] = float_bytes(c.logits);  // [T, E] row-major float32, exact in dtype
  d["scale"] = c.scale.empty() ? nb::object(nb::none()) : nb::object(float_bytes(c.scale));
  d["description"] = describe_case(c, 64);
  // The storage exactly as a campaign hands it to fn (layout, gaps filled with NaN).
  const std::vector<std::uint8_t> storage = c.materialize();
  d["storage"] = nb::bytes(reinterpret_cast<const char*>(storage.data()), storage.size());
  d["row_stride"] = c.row_stride();
  d["col_stride"] = c.col_stride();
  return d;
}

std::vector<float> floats_of(const F32Array& a) {
  const auto* p = static_cast<const float*>(a.data());
  return std::vector<float>(p, p + a.size());
}

/// A contiguous case from Python values (logits: float32 [T, E] holding values exact in dtype).
RoutingCase case_from_arrays(const std::string& family, const std::string& dtype, std::int64_t T, std::int64_t E,
                             int k, const F32Array& logits, nb::object scale) {
  RoutingCase c;
  c.family = family_or_throw(family);
  c.dtype = dtype_or_throw(dtype);
  c.T = T;
  c.E = E;
  c.k = k;
  c.layout = Layout::contiguous;
  c.logits = floats_of(logits);
  if (!scale.is_none()) c.scale = floats_of(nb::cast<F32Array>(scale));
  c.value_family = "user";
  c.scale_family = c.scale.empty() ? "ones" : "user";
  c.check_consistent();  // sizes, values exact in dtype (RoutingError -> ValueError)
  return c;
}

nb::dict violation_dict(const Violation& v) {
  nb::dict d;
  d["check"] = v.check;
  d["row"] = v.row;
  d["slot"] = v.slot;
  d["expert"] = v.expert;
  d["expected"] = v.expected;
  d["got"] = v.got;
  d["tolerance"] = v.tolerance;
  d["detail"] = v.detail;
  d["text"] = v.str();
  return d;
}

nb::dict report_dict(const CheckReport& r) {
  nb::dict d;
  d["ok"] = r.ok();
  d["text"] = r.str();
  d["rows_checked"] = r.rows_checked;
  d["violations_total"] = r.violations_total;
  nb::list vs;
  for (const auto& v : r.violations) vs.append(violation_dict(v));
  d["violations"] = vs;
  return d;
}

nb::dict verdict_dict(const Verdict& v) {
  nb::dict d;
  d["kind"] = v.kind == Verdict::Kind::pass       ? "pass"
              : v.kind == Verdict::Kind::fail      ? "fail"
              : v.kind == Verdict::Kind::abandoned ? "abandoned"
                                                   : "skipped";
  d["check"] = v.check;
  d["message"] = v.message;
  d["report"] = report_dict(v.report);
  return d;
}

// ---- log stream -----------------------------------------------------------------------------

/// std::streambuf that hands complete lines (and flushes: the progress line) to a Python
/// callable such as sys.stderr.write. A KeyboardInterrupt raised while writing asks for a stop.
/// It takes the GIL itself: the campaign may write from inside exit() called by code under test
/// that had released it.
class PyLogBuf final : public std::streambuf {
 public:
  explicit PyLogBuf(nb::object write) : write_(std::move(write)) {}
  ~PyLogBuf() override { flush_now(); }

 protected:
  int_type overflow(int_type ch) override {
    if (ch != traits_type::eof()) {
      buf_.push_back(static_cast<char>(ch));
      if (ch == '\n') flush_now();
    }
    return ch;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    buf_.append(s, static_cast<std::size_t>(n));
    if (std::memchr(s, '\n', static_cast<std::size_t>(n))) flush_now();
    return n;
  }
  int sync() override {
    flush_now();
    return 0;
  }

 private:
  void flush_now() {
    if (buf_.empty()) return;
    if (!write_.is_none()) {
      nb::gil_scoped_acquire gil;
      try {
        write_(buf_);
      } catch (nb::python_error& e) {
        if (e.matches(PyExc_KeyboardInterrupt)) request_stop();
      }
    }
    buf_.clear();
  }
  nb::object write_;
  std::string buf_;
};

// ---- campaign ---------------------------------------------------------------------------------

nb::tuple fuzz(nb::object runner, const std::string& spec, const std::string& device,
               const std::vector<std::string>& families, std::uint64_t seed, double seconds, std::int64_t cases,
               int shard_index, int shard_count, const std::vector<std::string>& dtypes,
               const std::vector<std::string>& layouts, const std::vector<std::string>& values,
               const std::vector<std::string>& scales, std::int64_t max_T, std::int64_t max_E, int max_k,
               const std::string& corpus, int max_failures, int shrink_attempts, bool progress, nb::object log,
               const std::string& compute, double timeout, bool interruptible) {
  if (families.size() != 1) throw std::invalid_argument("fuzz: exactly one routing family per campaign");
  if (max_T < 0) throw std::invalid_argument("max_T must be >= 0 (got " + std::to_string(max_T) + ")");
  if (max_E < 1) throw std::invalid_argument("max_E must be >= 1 (got " + std::to_string(max_E) + ")");
  if (max_k < 1) throw std::invalid_argument("max_k must be >= 1 (got " + std::to_string(max_k) + ")");
  CampaignOptions opt;
  opt.seed = seed;
  opt.seconds = seconds;
  opt.max_cases = cases;
  opt.shard_index = shard_index;
  opt.shard_count = shard_count;
  opt.gen.max_T = max_T;
  opt.gen.max_E = max_E;
  opt.gen.max_k = max_k;
  opt.gen.families = families_or_throw(families);
  for (const auto& d : dtypes) opt.gen.dtypes.push_back(dtype_or_throw(d));
  for (const auto& l : layouts) opt.gen.layouts.push_back(layout_or_throw(l));
  opt.gen.value_families = check_names(values, all_value_families(), "value family");
  opt.gen.scale_families = check_names(scales, all_scale_families(), "scale family");
  opt.corpus_dir = corpus;
  opt.progress = progress;
  opt.max_failures = max_failures;
  opt.shrink_attempts = shrink_attempts;
  if (!(timeout > 0)) throw std::invalid_argument("timeout must be > 0 seconds");
  opt.case_timeout = timeout;  // the target enforces it (and the budget) by interrupting fn

  PythonTarget target(std::move(runner), spec, device, opt.gen.families, precision_or_throw(compute),
                      interruptible);
  clear_stop();
  PyLogBuf buf(std::move(log));
  std::ostream os(&buf);
  CampaignResult r = run_campaign(target, opt, os);
  os.flush();
  clear_stop();
  nb::list shrunk;
  for (const auto& f : r.failures) shrunk.append(case_dict(f.shrunk));
  return nb::make_tuple(campaign_json(r), shrunk, target.hard_interrupted(), target.calls());
}

// ---- replay -----------------------------------------------------------------------------------

nb::list replay(const std::vector<std::string>& paths, nb::object runner, const std::string& spec,
                const std::string& device, const std::vector<std::string>& families, const std::string& compute,
                double timeout, bool interruptible) {
  const bool python = !runner.is_none();
  const std::vector<Family> fams = families_or_throw(families);
  const Precision prec = precision_or_throw(compute);
  TargetFactory factory = [&](const std::string& s, const TargetOptions& o) -> std::unique_ptr<Target> {
    if (python) {
      auto t = std::make_unique<PythonTarget>(runner, spec, device, fams, prec, interruptible);
      t->set_call_limits({timeout, {}});
      return t;
    }
    return make_core_target(s, o);
  };
  auto error = [](const std::string& path, const std::string& why) {
    nb::dict d;
    d["path"] = path;
    d["target"] = "";
    d["outcome"] = "error";
    d["ok"] = false;
    d["detail"] = why;
    d["expect"] = "";
    d["recorded_target"] = "";
    d["case"] = nb::none();
    return d;
  };
  nb::list out;
  std::vector<std::string> files;
  for (const auto& p : paths) {
    try {
      auto found = list_corpus_paths({p});
      files.insert(files.end(), found.begin(), found.end());
    } catch (const CorpusError& e) {
      out.append(error(p, e.what()));
    }
  }
  clear_stop();
  for (const auto& f : files) {
    CorpusEntry e;
    try {
      e = read_corpus_file(f);
    } catch (const CorpusError& ex) {
      out.append(error(f, ex.what()));
      continue;
    }
    const std::string recorded = e.target;
    if (python && e.target != spec) {
      // Recorded for another implementation (a kernel, a planted bug, another function): for
      // this callable the case is a regression input, which it must pass.
      e.expect = Expectation::pass;
      e.mutant = "none";
    }
    ReplayResult r = replay_entry(e, f, spec, factory);
    nb::dict d;
    d["path"] = r.path;
    d["target"] = r.target;
    d["outcome"] = r.outcome;
    d["ok"] = r.ok;
    d["detail"] = r.detail;
    d["expect"] = e.expect == Expectation::fail ? "fail" : "pass";
    d["recorded_target"] = recorded;
    d["case"] = case_dict(e.c);
    out.append(d);
    if (stop_requested()) break;
  }
  clear_stop();
  return out;
}

// ---- single cases -------------------------------------------------------------------------------

nb::dict evaluate_case(nb::object runner, const std::string& spec, const std::string& device,
                       const std::string& family, const std::string& dtype, std::int64_t T, std::int64_t E, int k,
                       const F32Array& logits, nb::object scale, const std::string& compute) {
  RoutingCase c = case_from_arrays(family, dtype, T, E, k, logits, scale);
  PythonTarget target(std::move(runner), spec, device, {c.family}, precision_or_throw(compute),
                      /*interruptible=*/false);
  target.set_call_limits({std::numeric_limits<double>::infinity(), {}});  // one given problem: no limit
  Verdict v = evaluate(target, c, {});
  if (target.hard_interrupted()) {  // Ctrl-C inside fn: no verdict, the interrupt goes on
    clear_stop();
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw nb::python_error();
  }
  return verdict_dict(v);
}

nb::dict check_given_outputs(const std::string& family, const std::string& dtype, std::int64_t T, std::int64_t E, int k,
                       const F32Array& logits, nb::object scale, const F32Array& weights, const CpuArray& ids,
                       const std::string& compute, int max_violations, const std::string& contract) {
  RoutingCase c = case_from_arrays(family, dtype, T, E, k, logits, scale);
  const std::int64_t n = T * k;
  if (static_cast<std::int64_t>(weights.size()) != n || static_cast<std::int64_t>(ids.size()) != n) {
    throw std::invalid_argument("weights and ids must have T * k = " + std::to_string(n) + " elements (got " +
                                std::to_string(weights.size()) + " and " + std::to_string(ids.size()) + ")");
  }
  // Ids keep their values (an id beyond the int32 range is reported as it is).
  std::vector<std::int64_t> id64(static_cast<std::size_t>(n));
  if (ids.dtype() == nb::dtype<std::int32_t>()) {
    const auto* src = static_cast<const std::int32_t*>(ids.data());
    for (std::int64_t i = 0; i < n; ++i) id64[static_cast<std::size_t>(i)] = src[i];
  } else if (ids.dtype() == nb::dtype<std::int64_t>()) {
    if (n) std::memcpy(id64.data(), ids.data(), static_cast<std::size_t>(n) * sizeof(std::int64_t));
  } else {
    throw std::invalid_argument("ids must be int32 or int64");
  }
  MaterializedCase m = materialize(c);
  CheckProblem p;
  p.logits = m.view;
  p.params = m.params;
  p.weights = static_cast<const float*>(weights.data());
  p.ids = id64.data();
  p.precision = precision_or_throw(compute);
  const Contract ct = contract.empty() ? Contract{} : resolve_contract(contract);
  CheckOutputsOptions o;
  o.max_violations = max_violations;
  const CheckOutputsReport r = moecheck::check_outputs(p, ct, o);
  CheckReport cr;
  cr.violations = r.violations;
  cr.violations_total = r.violations_total;
  cr.rows_checked = r.rows_checked;
  cr.ties_at_kth = r.ties_at_kth;
  nb::dict d = report_dict(cr);
  d["contract"] = ct.name;
  d["outside"] = r.outside;
  d["violating_rows"] = r.violating_rows;
  if (!r.covered()) d["text"] = "outside the contract " + ct.name + " (" + r.outside_key + "): " + r.outside;
  return d;
}

// ---- corpus files -------------------------------------------------------------------------------

nb::dict read_case(const std::string& path) {
  CorpusEntry e;
  try {
    e = read_corpus_file(path);
  } catch (const CorpusError& ex) {
    throw std::invalid_argument(ex.what());
  }
  nb::dict d;
  d["path"] = path;
  d["target"] = e.target;
  d["mutant"] = e.mutant;
  d["device"] = e.device;
  d["expect"] = e.expect == Expectation::fail ? "fail" : "pass";
  d["check"] = e.check;
  d["signature"] = e.signature;
  d["message"] = e.message;
  d["toolkit"] = e.toolkit;
  d["commit"] = e.commit;
  d["found"] = e.found;
  d["case"] = case_dict(e.c);
  return d;
}

std::vector<std::string> list_cases(const std::vector<std::string>& paths) {
  try {
    return list_corpus_paths(paths);
  } catch (const CorpusError& ex) {
    throw std::invalid_argument(ex.what());
  }
}

nb::bytes values(std::uint64_t seed, std::int64_t n, const std::string& dtype, const std::string& kind) {
  return float_bytes(substitution_values(seed, n, dtype_or_throw(dtype), kind));
}

}  // namespace
}  // namespace moecheck::python

NB_MODULE(_core, m) {
  using namespace moecheck;
  using namespace moecheck::python;
  m.doc() = "moecheck's C++ core (generators, fp64 reference, tie-aware oracle, shrinking, corpus)";
  m.attr("__version__") = MOECHECK_VERSION;

  m.def("fuzz", &fuzz, "runner"_a, "spec"_a, "device"_a, "families"_a, "seed"_a, "seconds"_a, "cases"_a,
        "shard_index"_a, "shard_count"_a, "dtypes"_a, "layouts"_a, "values"_a, "scales"_a, "max_T"_a, "max_E"_a,
        "max_k"_a, "corpus"_a, "max_failures"_a, "shrink_attempts"_a, "progress"_a, "log"_a, "compute"_a,
        "timeout"_a, "interruptible"_a,
        "Runs a campaign (run_campaign) on a Python case runner with per-case timeout `timeout` (s); "
        "interruptible: the runner is called on the main thread with moecheck's SIGALRM handler "
        "installed. Returns (campaign JSON, shrunk cases, hard_interrupted, runner calls).");
  m.def("replay", &replay, "paths"_a, "runner"_a.none(), "spec"_a, "device"_a, "families"_a, "compute"_a,
        "timeout"_a = std::numeric_limits<double>::infinity(), "interruptible"_a = false,
        "Replays .case files/folders against a Python runner or, with runner=None, a built-in target "
        "(spec, or each entry's own target when spec is empty).");
  m.def("evaluate_case", &evaluate_case, "runner"_a, "spec"_a, "device"_a, "family"_a, "dtype"_a, "T"_a, "E"_a,
        "k"_a, "logits"_a, "scale"_a.none(), "compute"_a, "Runs the runner on one case and judges it (evaluate).");
  m.def("check_outputs", &check_given_outputs, "family"_a, "dtype"_a, "T"_a, "E"_a, "k"_a, "logits"_a, "scale"_a.none(),
        "weights"_a, "ids"_a, "compute"_a, "max_violations"_a, "contract"_a = "",
        "Judges given routing outputs by a contract (built-in name, file or spec; '' = strict) with the "
        "tie-aware oracle (check_outputs of reference/check/check.hpp).");
  m.def("read_case", &read_case, "path"_a, "Reads one .case file (ValueError names file, line and field).");
  m.def("list_cases", &list_cases, "paths"_a, "Expands files and folders into the .case files they hold.");
  m.def("values", &values, "seed"_a, "n"_a, "dtype"_a, "kind"_a,
        "n float32 values exact in dtype (substitution_values), as bytes.");
  m.def("value_kinds", [] { return substitution_value_kinds(); });
  m.def("value_families", [] { return all_value_families(); });
  m.def("scale_families", [] { return all_scale_families(); });
  m.def("case_seed", &case_seed, "campaign_seed"_a, "index"_a);
  m.def("request_stop", &request_stop, "Asks a running campaign to stop after the current case.");
  m.def("toolkit", [] { return toolkit_string(); });
  m.def("commit", [] { return source_commit(); });
}
