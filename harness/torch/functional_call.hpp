// moecheck functional_call: the C++ analogue of torch.func.functional_call
// (DESIGN.md, "Functional substitution").
//
// For the duration of a call, named parameters and buffers of a torch::nn::Module tree
// (dotted names, e.g. "router.norm.eps") are replaced by given tensors; afterwards the
// module is exactly as before: the same tensor objects (TensorImpl identity) holding the
// same storage and values, also when the call throws.
//
// Tied tensors. Two names are tied when their slots hold the same tensor object
// (e.g. `register_parameter("up_proj", gate_proj)`). With `tie_weights` (default, like
// PyTorch's tie_weights=True):
//   * giving one name of a tied group substitutes every name of the group;
//   * giving several names of a group with the *same* tensor object is allowed;
//   * giving several names of a group with different tensor objects is an error
//     (FunctionalCallError::Kind::tied_conflict), even when their values are equal.
// With `tie_weights = false` each given name is substituted alone; this unties the group
// for the call, which only rebind can do (in_place/copy_into change the one shared object,
// so substituting one name of a tied group without the others is an error there).
//
// Strict mode requires every parameter *and* buffer of the tree to be given (PyTorch's
// strict=True); with tie_weights one name covers its whole tied group.
//
// Note on LibTorch's own modules: torch::nn::Linear and friends keep their tensors in
// member handles (`weight`, `bias`) and read those in forward, so they behave like the
// capture_handle variant: only in_place / copy_into substitution reaches them. Modules
// that look their slots up at call time (see `registered_tensor`, MoeLayer) follow
// Python semantics and see rebind too.
//
// Not thread-safe: the module is mutated for the call's duration.
#pragma once

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "harness/torch/substitution_types.hpp"

namespace moecheck::harness {

/// Dotted name -> tensor. Ordered, so errors are reported deterministically.
using NamedTensors = std::map<std::string, torch::Tensor>;

/// Options of one functional call.
struct FunctionalCallOptions {
  SubstitutionMode mode = SubstitutionMode::rebind;
  /// Every parameter and buffer must be given (a tied group counts once).
  bool strict = false;
  /// Treat tied names as one tensor (see the file comment).
  bool tie_weights = true;
};

/// Caller misuse of functional_call. what() starts with "functional_call: " and names the
/// offending key in single quotes; key() returns it.
class FunctionalCallError : public std::invalid_argument {
 public:
  enum class Kind : int {
    unknown_name,     ///< no parameter or buffer has this dotted name
    undefined_tensor, ///< the given tensor is undefined, or the slot holds an undefined tensor
    shape_mismatch,   ///< sizes differ from the registered tensor's
    dtype_mismatch,   ///< dtype differs
    device_mismatch,  ///< device differs
    tied_conflict,    ///< names of one tied group were given different tensor objects
    cannot_untie,     ///< tie_weights = false with in_place/copy_into on a tied name
    missing_strict,   ///< strict mode: this name (the first missing one) was not given
  };
  FunctionalCallError(Kind kind, std::string key, const std::string& message);
  Kind kind() const noexcept { return kind_; }
  const std::string& key() const noexcept { return key_; }

 private:
  Kind kind_;
  std::string key_;
};
/// "unknown_name", "shape_mismatch", ...
const char* functional_call_error_kind_name(FunctionalCallError::Kind k);

/// Whether a registered slot is a parameter or a buffer.
enum class SlotKind : int { parameter = 0, buffer = 1 };

/// The tensor slot `name` (a direct, undotted name) registered on `module`, as stored in
/// its parameter or buffer dictionary; nullptr if there is none. Reading through this
/// pointer at call time is what makes a module see rebind substitutions (Python
/// semantics). `kind` (optional) receives the slot kind.
torch::Tensor* registered_tensor(torch::nn::Module& module, const std::string& name,
                                 SlotKind* kind = nullptr);

/// One registered tensor of a module tree, in registration order.
struct SlotInfo {
  std::string name;               ///< dotted name from the root
  SlotKind kind = SlotKind::parameter;
  torch::Tensor tensor;           ///< the tensor object currently in the slot
  std::vector<std::string> tied;  ///< other dotted names holding the same tensor object
};
/// Every parameter and buffer slot of the tree rooted at `module` (parameters and buffers
/// of each module, depth-first in registration order, like named_parameters/named_buffers),
/// undefined slots included.
std::vector<SlotInfo> list_slots(torch::nn::Module& module);

/// RAII substitution: validates everything first (nothing is changed when validation
/// throws), substitutes in the constructor, restores in `restore()` or the destructor.
/// Restoration is exact; a failed restoration invariant aborts the process (it would mean
/// the module is corrupted).
class ScopedSubstitution {
 public:
  /// Throws FunctionalCallError (caller misuse) before touching the module.
  ScopedSubstitution(torch::nn::Module& module, const NamedTensors& tensors,
                     const FunctionalCallOptions& options = {});
  ScopedSubstitution(const ScopedSubstitution&) = delete;
  ScopedSubstitution& operator=(const ScopedSubstitution&) = delete;
  ~ScopedSubstitution();
  /// Restores now (idempotent).
  void restore() noexcept;
  /// Dotted names whose slots were substituted (tied names expanded), sorted.
  std::vector<std::string> substituted_names() const;

 private:
  struct Applied;
  std::vector<Applied> applied_;
  bool restored_ = false;
};

/// Calls `fn()` with the named tensors substituted, restores, returns fn's result.
/// Exceptions thrown by fn propagate after restoration.
template <class Fn, class = std::enable_if_t<std::is_invocable_v<Fn&>>>
auto functional_call(torch::nn::Module& module, const NamedTensors& tensors, Fn&& fn,
                     const FunctionalCallOptions& options = {}) -> std::invoke_result_t<Fn&> {
  ScopedSubstitution scope(module, tensors, options);
  return fn();
}

/// Module-holder form: calls `module->forward(inputs...)` with the tensors substituted.
template <class Impl, class... Args>
auto functional_call(const torch::nn::ModuleHolder<Impl>& module, const NamedTensors& tensors,
                     const std::tuple<Args...>& inputs, const FunctionalCallOptions& options = {}) {
  // A const holder still owns a mutable module (shared_ptr<Impl>); substitution needs it.
  Impl& m = *module.ptr();
  ScopedSubstitution scope(m, tensors, options);
  return std::apply([&](const auto&... a) { return m.forward(a...); }, inputs);
}

/// Module-holder form with a single tensor input.
template <class Impl>
auto functional_call(const torch::nn::ModuleHolder<Impl>& module, const NamedTensors& tensors,
                     const torch::Tensor& input, const FunctionalCallOptions& options = {}) {
  Impl& m = *module.ptr();
  ScopedSubstitution scope(m, tensors, options);
  return m.forward(input);
}

/// Identity and metadata of every slot of a module tree, for restoration checks.
struct SlotFingerprint {
  std::string name;
  const void* impl = nullptr;          ///< TensorImpl address
  const void* storage = nullptr;       ///< StorageImpl address (null for undefined)
  const void* data = nullptr;          ///< data pointer
  std::vector<std::int64_t> sizes, strides;
  std::int64_t storage_offset = 0;
  std::string dtype, device;
  bool requires_grad = false;
  torch::Tensor values;                ///< a CPU clone of the values (undefined if `with_values` was false)
};
/// Fingerprints every slot (list_slots order). `with_values` also snapshots the values.
std::vector<SlotFingerprint> fingerprint_module(torch::nn::Module& module, bool with_values = true);
/// Empty iff `after` equals `before` in identity, metadata and (where both have values)
/// bitwise values; otherwise one line per difference naming the slot.
std::string compare_fingerprints(const std::vector<SlotFingerprint>& before,
                                 const std::vector<SlotFingerprint>& after);
/// Bitwise equality of two tensors (same dtype/shape; NaN payloads compared as bits).
bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace moecheck::harness
