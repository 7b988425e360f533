// moecheck targets: the implementations a campaign checks, behind one interface, and the
// single-case evaluation every campaign, replay and shrink step goes through.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "harness/core/case.hpp"
#include "reference/oracle.hpp"

namespace moecheck {

/// What an implementation did with a case.
struct RunOutcome {
  /// timed_out: the call ran past CallLimits::timeout_s and was killed (a finding);
  /// abandoned: the call was killed because CallLimits::abandon said so (stop request, end of
  /// the budget), or the target can run nothing more (Target::lost): no verdict either way;
  /// device_fault: the implementation's device work faulted (illegal address, trap, misaligned
  /// access, ...) and left its CUDA context unusable (a finding, "device-fault").
  enum class Status { ok, rejected, crashed, timed_out, abandoned, device_fault };
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

/// Limits one Target::run call is held to. Targets that run the implementation out of process
/// (isolated plugins) enforce them themselves by killing the call, and so do in-process targets
/// that can interrupt the call (Target::interrupts_calls, e.g. Python callables); any other
/// in-process call cannot be interrupted, so campaigns enforce them there with a watchdog that
/// ends the process (campaign.hpp).
struct CallLimits {
  /// Wall-clock limit of one call in seconds; a call running longer is a "timeout" finding.
  double timeout_s = 60;
  /// Polled while waiting for a call (at least every 10 ms); true kills it as abandoned.
  std::function<bool()> abandon;
};

/// Guard elements placed before and after each output buffer ([T, k] weights and ids): filled
/// with kGuardWeightBits / kGuardId, and any change is an "out-of-bounds-write" failure.
constexpr std::int64_t kOutputGuardElements = 64;
/// Guard fill of the weights buffer (a NaN payload no routing result produces).
constexpr std::uint32_t kGuardWeightBits = 0x7fa5a5a5u;
/// Guard fill of the ids buffer.
constexpr std::int32_t kGuardId = static_cast<std::int32_t>(0xa5a5a5a5u);

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
  /// True when run() executes the implementation in this process (a hang or an exit() there
  /// takes the caller with it); false when it is contained elsewhere (isolated plugins).
  virtual bool runs_in_process() const { return true; }
  /// The routing contract the implementation declares (reference/CONTRACTS.md): its semantics
  /// and the inputs it covers. Strict for the built-in implementations; a plugin of ABI v2 may
  /// declare another one.
  virtual Contract contract() const { return Contract{}; }
  /// True when an in-process run() enforces call_limits() itself: it interrupts the
  /// implementation (without ending the process) at the timeout or when CallLimits::abandon
  /// says so, and reports a call it could not interrupt as timed_out once it returns.
  /// run_campaign then installs no watchdog for it (the watchdog ends the process, which a
  /// host process such as a Python interpreter running the campaign must survive).
  virtual bool interrupts_calls() const { return false; }
  /// Why this target cannot run any further case, "" while it can: e.g. an in-process CUDA
  /// plugin whose device fault destroyed the process's CUDA context, or an isolated one whose
  /// worker process cannot be started again. Campaigns stop (aborted, with this reason) once it
  /// is non-empty; run() then returns abandoned.
  virtual std::string lost() const { return {}; }
  /// Name of the CUDA device the implementation runs on, when another process knows it (an
  /// isolated CUDA plugin's worker); "" = ask this process's CUDA runtime (cuda_device_name()).
  /// Campaigns record it, so that they never initialise CUDA for a target that keeps CUDA out
  /// of this process.
  virtual std::string device_name() const { return {}; }
  /// Runs the implementation. Must not throw for implementation errors: report them in the
  /// outcome. Exceptions that escape are treated as crashes by `evaluate`.
  /// `weights` and `ids` hold T * k elements each, preceded and followed by
  /// kOutputGuardElements guard elements; a target that hands the implementation copies (a
  /// forked child, device memory) copies and returns the guards too, so overruns stay visible.
  virtual RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) = 0;

  /// Limits later run() calls are held to (see CallLimits).
  void set_call_limits(CallLimits limits) { limits_ = std::move(limits); }
  const CallLimits& call_limits() const { return limits_; }

 private:
  CallLimits limits_;
};

/// Options that shape how targets are built.
struct TargetOptions {
  std::string mutant = "none";  ///< planted-bug variant for kernel targets
  /// Crash containment: host plugins run in a forked child per call, CUDA plugins in one
  /// worker process per target that owns the CUDA context (plugin_target.cpp); false: in-process.
  bool isolate_plugins = true;
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
/// Number of CUDA devices this process sees (0 in CPU-only builds, without a driver or device).
int cuda_device_count();
/// Name of CUDA device 0, or "" when none.
std::string cuda_device_name();

/// Verdict on one case.
struct Verdict {
  /// skipped: outside the target's domain (Target::unsupported); outside_contract: outside the
  /// domain of the contract it is judged by (layout, alignment, T*E). Neither is a failure.
  /// abandoned: the call was killed by CallLimits::abandon (no verdict; the case is not counted).
  enum class Kind { pass, fail, skipped, outside_contract, abandoned };
  Kind kind = Kind::pass;
  std::string outside_key;  ///< outside_contract: short reason category ("layout transposed", ...)
  std::string check;    ///< failing check: "selection", "weight", "unwritten", "crash", "timeout",
                        ///< "device-fault", "out-of-bounds-write", "rejected-valid",
                        ///< "accepted-invalid", "checker-disagreement" (device checker vs
                        ///< host oracle), ...
                        ///< (empty when passing)
  std::string message;  ///< first violation / error, one line
  CheckReport report;   ///< full oracle report (when the implementation ran)
  bool failed() const { return kind == Kind::fail; }
};

/// Runs `target` on `c` with poisoned outputs and judges the result by `base.contract`:
///  - cases the target does not support are skipped, cases outside the contract's domain
///    (outside_contract) are not run (Kind::outside_contract, never a failure, so a plugin is
///    never asked for input it declared it does not take);
///  - a crash, a timeout, a device fault, or a write into the guards around the outputs is a
///    failure ("crash", "timeout", "device-fault", "out-of-bounds-write"; the guards are checked
///    after every call that returned, accepted or rejected);
///  - invalid problems (validate_routing throws) must be rejected by the implementation;
///  - valid problems must run and pass the tie-aware oracle (check_routing) under the contract.
Verdict evaluate(Target& target, const RoutingCase& c, const OracleOptions& base = {});

/// The contract a campaign or replay judges `target` by: `requested` (from --contract or a
/// corpus entry) narrowed to the domain the target declares (restrict_domain), or the target's
/// own declared contract when nothing is requested.
Contract effective_contract(const Target& target, const std::optional<Contract>& requested);

}  // namespace moecheck
