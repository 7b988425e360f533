// moecheck targets: the implementations a campaign checks, behind one interface, and the
// single-case evaluation every campaign, replay and shrink step goes through.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "harness/core/case.hpp"
#include "reference/oracle.hpp"

namespace moecheck {

/// What an implementation did with a case.
struct RunOutcome {
  enum class Status { ok, rejected, crashed };
  Status status = Status::ok;
  std::string error;  ///< the implementation's error message (rejected) or crash description
};

/// What a target can run, declared before a campaign starts so that it draws only such cases
/// (Target::unsupported stays the per-case check). Empty lists and 0 limits mean "any".
struct Domain {
  std::vector<Family> families;  ///< routing families it runs (empty: all)
  std::vector<DType> dtypes;     ///< gating dtypes it reads (empty: all)
  std::int64_t max_E = 0;        ///< largest E (0: no limit)
  int max_k = 0;                 ///< largest k (0: no limit)
};

/// One implementation under test. Implementations write [T, k] weights/ids into host buffers
/// that the caller poisons beforehand.
class Target {
 public:
  virtual ~Target() = default;
  /// Spec string that recreates this target with make_target ("kernel:warp_per_row", ...).
  virtual std::string spec() const = 0;
  /// "cpu" or "cuda": where the implementation runs.
  virtual std::string device() const { return "cpu"; }
  /// Planted-bug name, "none" for real code.
  virtual std::string mutant() const { return "none"; }
  /// Reason the case lies outside the target's documented domain (dtype, family, E or k limits);
  /// empty when supported. Unsupported cases are skipped and counted, never failed.
  virtual std::string unsupported(const RoutingCase&) const { return {}; }
  /// The families, dtypes and E/k limits it runs, declared up front (see Domain). Must agree
  /// with `unsupported`: a case inside the domain is supported. Default: everything.
  virtual Domain domain() const { return {}; }
  /// The precision model its outputs are checked with.
  virtual Precision precision() const { return fp32_exact_selection(); }
  /// Runs the implementation. Must not throw for implementation errors: report them in the
  /// outcome. Exceptions that escape are treated as crashes by `evaluate`.
  virtual RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) = 0;
};

/// Options that shape how targets are built.
struct TargetOptions {
  std::string mutant = "none";  ///< planted-bug variant for kernel targets
  bool isolate_plugins = true;  ///< run host plugins in a forked child (crash containment)
  /// Plugin shared objects, or folders whose *.so files are plugins, searched in this order
  /// for a "plugin:<name>" target; the entries of MOECHECK_PLUGIN_PATH (':'-separated, files
  /// or folders alike) are searched after them.
  std::vector<std::string> plugin_paths = {};
};

/// Builds the pure-C++ targets: "reference", "kernel:<variant>" (kernel algorithm on the host),
/// "cuda:<variant>" (only in CUDA builds), "plugin:<path>" (the plugin in that shared object:
/// a path holding a '/' or ending in ".so") and "plugin:<name>" (the plugin whose descriptor
/// name is <name>, found in TargetOptions::plugin_paths, then MOECHECK_PLUGIN_PATH). A plugin
/// target's spec() is always "plugin:<descriptor name>", never a path, so corpus entries and
/// reports stay portable. Throws std::invalid_argument naming the spec for unknown or
/// unavailable targets (for "plugin:<name>": every file searched and the plugin it holds).
std::unique_ptr<Target> make_core_target(const std::string& spec, const TargetOptions& opt);
/// Lists target specs this build knows (for --help and errors).
std::vector<std::string> core_target_specs();
/// True when a CUDA device is usable by this process (false in CPU-only builds).
bool cuda_device_available();
/// Name of CUDA device 0, or "" when none.
std::string cuda_device_name();

/// Verdict on one case.
struct Verdict {
  enum class Kind { pass, fail, skipped };
  Kind kind = Kind::pass;
  std::string check;    ///< failing check: "selection", "weight", "unwritten", "crash", "rejected-valid",
                        ///< "accepted-invalid", ... (empty when passing)
  std::string message;  ///< first violation / error, one line
  CheckReport report;   ///< full oracle report (when the implementation ran)
  bool failed() const { return kind == Kind::fail; }
};

/// Runs `target` on `c` with poisoned outputs and judges the result:
///  - invalid problems (validate_routing throws) must be rejected by the implementation;
///  - valid problems must run and pass the tie-aware oracle (check_routing).
Verdict evaluate(Target& target, const RoutingCase& c, const OracleOptions& base = {});

}  // namespace moecheck
