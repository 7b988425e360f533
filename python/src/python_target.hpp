// moecheck Python targets: the campaign engine's Target interface implemented by a Python
// callable, so that generation, the oracle, shrinking and corpus writing stay the C++ core's.
//
// The callable is the per-case runner of moecheck/_fuzz.py (it wraps the user's routing
// function fn). Arrays cross the boundary without torch on the C++ side: the gating storage
// goes out as a bytearray (buffer protocol), the outputs come back through DLPack.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>

#include <nanobind/nanobind.h>

#include "harness/core/target.hpp"

namespace moecheck::python {

/// Asks every running Python campaign to stop after the current case (request_campaign_stop)
/// and makes the remaining shrink candidates count as skipped, so the campaign returns soon
/// with what it has. Called by the SIGINT handler moecheck.fuzz installs.
void request_stop();
/// Clears a stop request (at the start of a campaign).
void clear_stop();
/// True after request_stop() until clear_stop().
bool stop_requested();

/// Runner protocol (moecheck/_fuzz.py, `_CaseRunner.__call__`):
///   runner(storage: bytearray, dtype: int, T, E, row_stride, col_stride, k, family: int,
///          scale: bytes | None)
///   -> (0, weights, ids)  weights: float32 [T, k], ids: int32 or int64 [T, k], both on the CPU,
///                         C-contiguous, exported through DLPack;
///   -> (1, message)       fn raised (message: "TypeName: text");
///   -> (2, message)       fn returned outputs of the wrong kind, shape, dtype or device;
///   -> (3, message)       fn was interrupted by moecheck.CaseTimeout (see interrupts_calls()).
/// `scale` holds E float32 values for gemma4 (all ones when the case has none), None otherwise.
/// A KeyboardInterrupt escaping the runner stops the campaign (see hard_interrupted()).
///
/// The user's function runs in this process (runs_in_process) and the target holds it to
/// call_limits() itself (interrupts_calls), so a campaign never ends the interpreter because a
/// call is slow: a watcher thread sends SIGALRM to the calling thread when the call runs past
/// CallLimits::timeout_s (outcome timed_out) or kStopGraceSeconds after CallLimits::abandon first
/// said so (outcome abandoned), and again every kResignalSeconds while the call keeps running.
/// The Python SIGALRM handler moecheck installs raises moecheck.CaseTimeout inside fn. Signals
/// are sent only when the target is `interruptible` (the runner is called on Python's main
/// thread, where the handler runs) and a handler is installed; otherwise, and for code that
/// never returns to the interpreter, a call that ran past the timeout is reported as timed_out
/// when it returns.
class PythonTarget final : public Target {
 public:
  /// Seconds between repeated SIGALRMs to a call that keeps running after the first one.
  static constexpr double kResignalSeconds = 0.5;

  /// `spec` is the target string written to corpus files and results ("python:<name>"),
  /// `device` "cpu" or "cuda", `families` the routing families the callable takes (empty: every
  /// family except sigmoid_grouped), `precision` the oracle's precision model, `interruptible`
  /// whether calls may be interrupted with SIGALRM (see above).
  PythonTarget(nanobind::object runner, std::string spec, std::string device,
               std::vector<Family> families, Precision precision, bool interruptible);
  ~PythonTarget() override;

  std::string spec() const override { return spec_; }
  std::string device() const override { return device_; }
  std::string unsupported(const RoutingCase& c) const override;
  /// The families of `families` (every family fn(gating, k, scale) can take when empty) and
  /// the three gating dtypes the runner builds tensors for.
  Domain domain() const override;
  Precision precision() const override { return precision_; }
  bool runs_in_process() const override { return true; }
  bool interrupts_calls() const override { return true; }
  /// Writes exactly T * k weights and ids (never the guards around them).
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override;

  /// True when a KeyboardInterrupt escaped the runner: that case was not judged (abandoned)
  /// and the campaign was asked to stop.
  bool hard_interrupted() const { return hard_interrupted_; }
  /// Number of runner calls so far (campaign cases plus shrink candidates).
  long long calls() const { return calls_; }

 private:
  enum class Fired { none, timeout, abandon };
  RunOutcome interrupted();
  RunOutcome call_runner(const MaterializedCase& m, float* weights, std::int32_t* ids, bool valid);
  void arm();
  Fired disarm(double* elapsed_s);
  void watch();

  nanobind::object runner_;
  std::string spec_;
  std::string device_;
  std::vector<Family> families_;
  Precision precision_;
  bool interruptible_;
  bool hard_interrupted_ = false;
  long long calls_ = 0;

  // Watcher of the call in flight (guarded by mu_).
  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
  bool armed_ = false;
  pthread_t caller_{};
  std::chrono::steady_clock::time_point start_{}, abandon_seen_{}, last_signal_{};
  Fired fired_ = Fired::none;
  std::thread watcher_;
};

}  // namespace moecheck::python
