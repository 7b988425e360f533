#include "python_target.hpp"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

#include <signal.h>

#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include "harness/core/campaign.hpp"
#include "reference/routing.hpp"

namespace nb = nanobind;

namespace moecheck::python {
namespace {

std::atomic<bool> g_stop{false};

using CpuArray = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;

/// Reads `h` as a read-only, C-contiguous CPU array through DLPack or the buffer protocol
/// (no conversion: the runner hands over exactly what it checked). "" or why not.
std::string import_array(nb::handle h, const char* what, std::int64_t n, CpuArray* out) {
  if (!nb::try_cast(h, *out, /*convert=*/false)) {
    return std::string(what) + " could not be imported as a C-contiguous CPU array (DLPack)";
  }
  if (static_cast<std::int64_t>(out->size()) != n) {
    return std::string(what) + " has " + std::to_string(out->size()) + " elements, expected " +
           std::to_string(n);
  }
  return {};
}

}  // namespace

void request_stop() {
  g_stop = true;
  request_campaign_stop();
}
void clear_stop() { g_stop = false; }
bool stop_requested() { return g_stop; }

PythonTarget::PythonTarget(nb::object runner, std::string spec, std::string device,
                           std::vector<Family> families, Precision precision, bool interruptible)
    : runner_(std::move(runner)),
      spec_(std::move(spec)),
      device_(std::move(device)),
      families_(std::move(families)),
      precision_(precision),
      interruptible_(interruptible) {}

PythonTarget::~PythonTarget() {
  {
    std::lock_guard<std::mutex> l(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
}

std::string PythonTarget::unsupported(const RoutingCase& c) const {
  if (g_stop) return "campaign stopped";
  if (families_.empty()) {
    if (c.family == Family::sigmoid_grouped) {
      return "fn(gating, k, scale) cannot take sigmoid_grouped's bias and expert groups";
    }
    return {};
  }
  for (Family f : families_) {
    if (f == c.family) return {};
  }
  std::string names;
  for (Family f : families_) names += (names.empty() ? "" : ", ") + std::string(family_name(f));
  return std::string("fn routes ") + names + ", not " + family_name(c.family);
}

Domain PythonTarget::domain() const {
  Domain d;
  d.families = families_;
  if (d.families.empty()) {
    d.families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw, Family::sigmoid_top1};
  }
  d.dtypes = {DType::f32, DType::f16, DType::bf16};
  return d;
}

// ---- the watcher of the call in flight --------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

/// True when SIGALRM has a handler (Python's, which moecheck.fuzz sets): never send it to a
/// process where its default action would end the process.
bool alarm_handled() {
  struct sigaction sa;
  if (sigaction(SIGALRM, nullptr, &sa) != 0) return false;
  if (sa.sa_flags & SA_SIGINFO) return sa.sa_sigaction != nullptr;
  return sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

void PythonTarget::arm() {
  std::lock_guard<std::mutex> l(mu_);
  if (!watcher_.joinable()) watcher_ = std::thread([this] { watch(); });
  armed_ = true;
  caller_ = pthread_self();
  start_ = Clock::now();
  abandon_seen_ = {};
  last_signal_ = {};
  fired_ = Fired::none;
  cv_.notify_all();
}

PythonTarget::Fired PythonTarget::disarm(double* elapsed_s) {
  std::lock_guard<std::mutex> l(mu_);
  armed_ = false;
  *elapsed_s = seconds_between(start_, Clock::now());
  // A call that ran past the timeout is a timeout even when no signal could stop it.
  if (fired_ == Fired::none && *elapsed_s >= call_limits().timeout_s) return Fired::timeout;
  return fired_;
}

void PythonTarget::watch() {
  std::unique_lock<std::mutex> l(mu_);
  while (!quit_) {
    if (!armed_) {
      cv_.wait(l);
      continue;
    }
    // call_limits() and what its abandon predicate reads change only between calls: arm() and
    // disarm() take mu_, which orders them with this thread's reads.
    const CallLimits& lim = call_limits();
    const Clock::time_point now = Clock::now();
    bool send = false;
    if (fired_ == Fired::none) {
      if (seconds_between(start_, now) >= lim.timeout_s) {
        fired_ = Fired::timeout;
      } else if (lim.abandon && lim.abandon()) {
        // An in-process call gets the grace the CLI gives one after a stop request.
        if (abandon_seen_ == Clock::time_point{}) abandon_seen_ = now;
        if (seconds_between(abandon_seen_, now) >= kStopGraceSeconds) fired_ = Fired::abandon;
      }
      send = fired_ != Fired::none;
    } else {
      send = seconds_between(last_signal_, now) >= kResignalSeconds;  // fn swallowed CaseTimeout
    }
    if (send) {
      last_signal_ = now;
      if (interruptible_ && alarm_handled()) pthread_kill(caller_, SIGALRM);
    }
    cv_.wait_for(l, std::chrono::milliseconds(5));
  }
}

// ---- run ----------------------------------------------------------------------------------------

RunOutcome PythonTarget::interrupted() {
  hard_interrupted_ = true;
  request_stop();
  return {RunOutcome::Status::abandoned, "KeyboardInterrupt in fn: the case was not judged"};
}

RunOutcome PythonTarget::run(const MaterializedCase& m, float* weights, std::int32_t* ids) {
  ++calls_;
  // Python runs pending signal handlers here (moecheck.fuzz's SIGINT handler asks for a stop).
  if (PyErr_CheckSignals() != 0) {
    nb::python_error err;
    if (err.matches(PyExc_KeyboardInterrupt)) return interrupted();
    return {RunOutcome::Status::crashed, std::string("a signal handler raised ") + err.what()};
  }
  const GatingView& v = m.view;
  const RoutingParams& p = m.params;
  bool valid = true;
  try {
    validate_routing(v, p);
  } catch (const RoutingError&) {
    valid = false;
  }
  return call_runner(m, weights, ids, valid);
}

RunOutcome PythonTarget::call_runner(const MaterializedCase& m, float* weights, std::int32_t* ids, bool valid) {
  const GatingView& v = m.view;
  const RoutingParams& p = m.params;
  // The user's function gets its own copy of the storage: whatever it does to its input, the
  // oracle reads the case's pristine values.
  nb::object storage = nb::steal(PyByteArray_FromStringAndSize(
      reinterpret_cast<const char*>(m.storage.data()), static_cast<Py_ssize_t>(m.storage.size())));
  if (!storage.is_valid()) throw nb::python_error();
  nb::object scale = nb::none();
  if (p.family == Family::gemma4 && v.E > 0) {
    std::vector<float> ones;
    const float* s = p.scale;
    if (!s) {
      ones.assign(static_cast<std::size_t>(v.E), 1.0f);
      s = ones.data();
    }
    scale = nb::steal(PyByteArray_FromStringAndSize(reinterpret_cast<const char*>(s),
                                                    static_cast<Py_ssize_t>(v.E * sizeof(float))));
    if (!scale.is_valid()) throw nb::python_error();
  }

  nb::object result;
  bool keyboard_interrupt = false;
  std::string runner_error;
  arm();
  try {
    result = runner_(storage, static_cast<int>(v.dtype), v.T, v.E, v.row_stride, v.col_stride, p.k,
                     static_cast<int>(p.family), scale);
  } catch (nb::python_error& e) {
    keyboard_interrupt = e.matches(PyExc_KeyboardInterrupt);
    runner_error = e.what();
  } catch (const std::exception& e) {
    runner_error = e.what();
  }
  double elapsed = 0;
  const Fired fired = disarm(&elapsed);
  if (keyboard_interrupt) return interrupted();
  const std::string limit = seconds_text(call_limits().timeout_s);
  if (fired == Fired::timeout) {
    // Past the timeout whatever it returned: interrupted, or not interruptible and late.
    nb::tuple t;
    int status = -1;
    const bool was_interrupted = result.is_valid() && nb::try_cast(result, t) && t.size() >= 1 &&
                                 nb::try_cast(nb::handle(t[0]), status) && status == 3;
    return {RunOutcome::Status::timed_out,
            "fn did not return within " + limit + " s " +
                (was_interrupted ? std::string("(interrupted by moecheck.CaseTimeout)")
                                 : "(it could not be interrupted and returned after " + seconds_text(elapsed) + " s)")};
  }
  if (!runner_error.empty()) {
    return {RunOutcome::Status::crashed, "moecheck's case runner failed: " + runner_error};
  }

  nb::tuple t;
  if (!nb::try_cast(result, t) || t.size() < 2) {
    return {RunOutcome::Status::crashed, "moecheck's case runner returned no status tuple"};
  }
  const int status = nb::cast<int>(t[0]);
  if (status == 3) {
    if (fired == Fired::abandon) {
      return {RunOutcome::Status::abandoned, "fn interrupted: stop requested or time budget spent (not judged)"};
    }
    // A CaseTimeout no watcher asked for (another SIGALRM user): fn raised it, a finding.
    return {RunOutcome::Status::crashed, "fn raised " + nb::cast<std::string>(nb::str(t[1]))};
  }
  if (status == 1) {
    const std::string msg = nb::cast<std::string>(nb::str(t[1]));
    if (!valid) return {RunOutcome::Status::rejected, msg};  // an invalid problem refused: correct
    return {RunOutcome::Status::crashed, "fn raised " + msg};
  }
  if (status == 2) {
    if (!valid) return {};  // fn accepted an invalid problem (evaluate reports accepted-invalid)
    return {RunOutcome::Status::crashed, "bad output: " + nb::cast<std::string>(nb::str(t[1]))};
  }
  if (status != 0 || t.size() != 3) {
    return {RunOutcome::Status::crashed, "moecheck's case runner returned an unknown status"};
  }
  if (!valid) return {};

  // Exactly T * k elements of each output: the guard elements around them stay untouched.
  const std::int64_t n = v.T * p.k;
  if (n == 0) return {};
  CpuArray w, id;
  std::string err = import_array(t[1], "weights", n, &w);
  if (err.empty()) err = import_array(t[2], "ids", n, &id);
  if (!err.empty()) return {RunOutcome::Status::crashed, "bad output: " + err};
  if (w.dtype() != nb::dtype<float>()) return {RunOutcome::Status::crashed, "bad output: weights are not float32"};
  std::memcpy(weights, w.data(), static_cast<std::size_t>(n) * sizeof(float));
  if (id.dtype() == nb::dtype<std::int32_t>()) {
    std::memcpy(ids, id.data(), static_cast<std::size_t>(n) * sizeof(std::int32_t));
  } else if (id.dtype() == nb::dtype<std::int64_t>()) {
    const auto* src = static_cast<const std::int64_t*>(id.data());
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t x = src[i];
      // An id beyond int32 is out of range for any E; -1 keeps it out of range after narrowing.
      const bool fits = x >= std::numeric_limits<std::int32_t>::min() && x <= std::numeric_limits<std::int32_t>::max();
      ids[i] = fits ? static_cast<std::int32_t>(x) : -1;
    }
  } else {
    return {RunOutcome::Status::crashed, "bad output: ids are neither int32 nor int64"};
  }
  return {};
}

}  // namespace moecheck::python
