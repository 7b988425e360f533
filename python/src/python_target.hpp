// moecheck Python targets: the campaign engine's Target interface implemented by a Python
// callable, so that generation, the oracle, shrinking and corpus writing stay the C++ core's.
//
// The callable is the per-case runner of moecheck/_fuzz.py (it wraps the user's routing
// function fn). Arrays cross the boundary without torch on the C++ side: the gating storage
// goes out as a bytearray (buffer protocol), the outputs come back through DLPack.
#pragma once

#include <string>
#include <vector>

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
///   -> (2, message)       fn returned outputs of the wrong kind, shape, dtype or device.
/// `scale` holds E float32 values for gemma4 (all ones when the case has none), None otherwise.
/// A KeyboardInterrupt escaping the runner stops the campaign (see hard_interrupted()).
class PythonTarget final : public Target {
 public:
  /// `spec` is the target string written to corpus files and results ("python:<name>"),
  /// `device` "cpu" or "cuda", `families` the routing families the callable takes (empty: every
  /// family except sigmoid_grouped), `precision` the oracle's precision model.
  PythonTarget(nanobind::object runner, std::string spec, std::string device,
               std::vector<Family> families, Precision precision);

  std::string spec() const override { return spec_; }
  std::string device() const override { return device_; }
  std::string unsupported(const RoutingCase& c) const override;
  Precision precision() const override { return precision_; }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override;

  /// True when a KeyboardInterrupt escaped the runner: that case was not judged (its outputs
  /// are the reference's, so it counts as passed) and the campaign was asked to stop.
  bool hard_interrupted() const { return hard_interrupted_; }
  /// Number of runner calls so far (campaign cases plus shrink candidates).
  long long calls() const { return calls_; }

 private:
  RunOutcome interrupted(const MaterializedCase& m, float* weights, std::int32_t* ids);

  nanobind::object runner_;
  std::string spec_;
  std::string device_;
  std::vector<Family> families_;
  Precision precision_;
  bool hard_interrupted_ = false;
  long long calls_ = 0;
};

}  // namespace moecheck::python
