#include "python_target.hpp"

#include <atomic>
#include <cstring>
#include <limits>
#include <utility>

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
                           std::vector<Family> families, Precision precision)
    : runner_(std::move(runner)),
      spec_(std::move(spec)),
      device_(std::move(device)),
      families_(std::move(families)),
      precision_(precision) {}

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

RunOutcome PythonTarget::interrupted(const MaterializedCase& m, float* weights, std::int32_t* ids) {
  hard_interrupted_ = true;
  request_stop();
  // The case was not judged: hand the oracle the reference's answer so it is not reported.
  const std::int64_t n = m.view.T * m.params.k;
  std::vector<double> w(static_cast<std::size_t>(n > 0 ? n : 1));
  try {
    route_reference(m.view, m.params, w.data(), ids);
  } catch (const RoutingError& e) {
    return {RunOutcome::Status::rejected, e.what()};
  }
  for (std::int64_t i = 0; i < n; ++i) weights[i] = static_cast<float>(w[static_cast<std::size_t>(i)]);
  return {};
}

RunOutcome PythonTarget::run(const MaterializedCase& m, float* weights, std::int32_t* ids) {
  ++calls_;
  // Python runs pending signal handlers here (moecheck.fuzz's SIGINT handler asks for a stop).
  if (PyErr_CheckSignals() != 0) {
    nb::python_error err;
    if (err.matches(PyExc_KeyboardInterrupt)) return interrupted(m, weights, ids);
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
  try {
    result = runner_(storage, static_cast<int>(v.dtype), v.T, v.E, v.row_stride, v.col_stride, p.k,
                     static_cast<int>(p.family), scale);
  } catch (nb::python_error& e) {
    if (e.matches(PyExc_KeyboardInterrupt)) return interrupted(m, weights, ids);
    return {RunOutcome::Status::crashed, std::string("moecheck's case runner failed: ") + e.what()};
  }

  nb::tuple t;
  if (!nb::try_cast(result, t) || t.size() < 2) {
    return {RunOutcome::Status::crashed, "moecheck's case runner returned no status tuple"};
  }
  const int status = nb::cast<int>(t[0]);
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
