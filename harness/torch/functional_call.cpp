// moecheck functional_call implementation. See functional_call.hpp for the contract.
#include "harness/torch/functional_call.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <unordered_map>

namespace moecheck::harness {

// ---------------------------------------------------------------------------------------
// Slot access.
//
// LibTorch has no public API that replaces the tensor object stored in a registered slot
// (register_parameter/register_buffer refuse existing names, named_parameters() returns a
// copy of the dictionary). Rebinding needs the dictionaries themselves:
//  * `parameters_` is protected: a pointer to it is formed through a derived class, which
//    the access rules allow, and applied to any Module.
//  * `buffers_` is private: its member pointer is named in an explicit template
//    instantiation, where access checking does not apply ([temp.spec.general]/6).
// Both only read the member's address; no layout assumptions are made.
// ---------------------------------------------------------------------------------------
namespace {

using TensorDict = torch::OrderedDict<std::string, torch::Tensor>;

struct ParameterDictAccess : torch::nn::Module {
  static TensorDict& of(torch::nn::Module& m) { return m.*(&ParameterDictAccess::parameters_); }
};

struct BufferDictTag {
  using type = TensorDict torch::nn::Module::*;
  friend type member_pointer(BufferDictTag);
};
template <class Tag, typename Tag::type Member>
struct ExposeMember {
  friend typename Tag::type member_pointer(Tag) { return Member; }
};
template struct ExposeMember<BufferDictTag, &torch::nn::Module::buffers_>;

TensorDict& parameter_dict(torch::nn::Module& m) { return ParameterDictAccess::of(m); }
TensorDict& buffer_dict(torch::nn::Module& m) { return m.*member_pointer(BufferDictTag{}); }

[[noreturn]] void invariant_failed(const std::string& what) {
  std::fprintf(stderr, "moecheck: functional_call restoration invariant violated: %s\n",
               what.c_str());
  std::fflush(stderr);
  std::abort();
}

std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

/// A slot with the owner needed to rebind it.
struct Slot {
  std::string name;
  torch::nn::Module* owner = nullptr;
  std::string leaf;
  SlotKind kind = SlotKind::parameter;
  torch::Tensor tensor;
};

void collect(torch::nn::Module& m, const std::string& prefix, SlotKind kind,
             std::vector<Slot>* out) {
  TensorDict& dict = kind == SlotKind::parameter ? parameter_dict(m) : buffer_dict(m);
  for (auto& item : dict) out->push_back(Slot{prefix + item.key(), &m, item.key(), kind, item.value()});
  for (const auto& child : m.named_children()) {
    collect(*child.value(), prefix + child.key() + ".", kind, out);
  }
}

std::vector<Slot> all_slots(torch::nn::Module& m) {
  std::vector<Slot> slots;
  collect(m, "", SlotKind::parameter, &slots);
  collect(m, "", SlotKind::buffer, &slots);
  return slots;
}

torch::Tensor& slot_ref(const Slot& s) {
  TensorDict& dict = s.kind == SlotKind::parameter ? parameter_dict(*s.owner) : buffer_dict(*s.owner);
  torch::Tensor* t = dict.find(s.leaf);
  if (t == nullptr) invariant_failed("slot '" + s.name + "' disappeared during the call");
  return *t;
}

const void* impl_of(const torch::Tensor& t) {
  return t.defined() ? static_cast<const void*>(t.unsafeGetTensorImpl()) : nullptr;
}

std::string quoted_list(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) s += (i ? ", '" : "'") + names[i] + "'";
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Errors and names.
// ---------------------------------------------------------------------------------------
FunctionalCallError::FunctionalCallError(Kind kind, std::string key, const std::string& message)
    : std::invalid_argument("functional_call: " + message), kind_(kind), key_(std::move(key)) {}

const char* functional_call_error_kind_name(FunctionalCallError::Kind k) {
  switch (k) {
    case FunctionalCallError::Kind::unknown_name: return "unknown_name";
    case FunctionalCallError::Kind::undefined_tensor: return "undefined_tensor";
    case FunctionalCallError::Kind::shape_mismatch: return "shape_mismatch";
    case FunctionalCallError::Kind::dtype_mismatch: return "dtype_mismatch";
    case FunctionalCallError::Kind::device_mismatch: return "device_mismatch";
    case FunctionalCallError::Kind::tied_conflict: return "tied_conflict";
    case FunctionalCallError::Kind::cannot_untie: return "cannot_untie";
    case FunctionalCallError::Kind::missing_strict: return "missing_strict";
  }
  return "?";
}

torch::Tensor* registered_tensor(torch::nn::Module& module, const std::string& name,
                                 SlotKind* kind) {
  if (torch::Tensor* t = parameter_dict(module).find(name)) {
    if (kind) *kind = SlotKind::parameter;
    return t;
  }
  if (torch::Tensor* t = buffer_dict(module).find(name)) {
    if (kind) *kind = SlotKind::buffer;
    return t;
  }
  return nullptr;
}

std::vector<SlotInfo> list_slots(torch::nn::Module& module) {
  std::vector<Slot> slots = all_slots(module);
  std::unordered_map<const void*, std::vector<std::string>> by_impl;
  for (const Slot& s : slots) {
    if (s.tensor.defined()) by_impl[impl_of(s.tensor)].push_back(s.name);
  }
  std::vector<SlotInfo> out;
  out.reserve(slots.size());
  for (const Slot& s : slots) {
    SlotInfo info{s.name, s.kind, s.tensor, {}};
    if (s.tensor.defined()) {
      for (const std::string& n : by_impl[impl_of(s.tensor)]) {
        if (n != s.name) info.tied.push_back(n);
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// ScopedSubstitution.
// ---------------------------------------------------------------------------------------
struct ScopedSubstitution::Applied {
  SubstitutionMode mode = SubstitutionMode::rebind;
  std::vector<Slot> slots;        ///< rebind: exactly one; in_place/copy_into: the tied group
  torch::Tensor original;         ///< the tensor object the slot(s) held before
  torch::Tensor saved;            ///< in_place: alias of the original data; copy_into: value clone
  const void* saved_data = nullptr;
};

ScopedSubstitution::ScopedSubstitution(torch::nn::Module& module, const NamedTensors& tensors,
                                       const FunctionalCallOptions& options) {
  using Kind = FunctionalCallError::Kind;
  std::vector<Slot> slots = all_slots(module);
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < slots.size(); ++i) index.emplace(slots[i].name, i);
  // Tied groups: slots holding the same tensor object.
  std::unordered_map<const void*, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].tensor.defined()) groups[impl_of(slots[i].tensor)].push_back(i);
  }

  // 1. Every given name exists and matches its slot.
  for (const auto& [name, given] : tensors) {
    auto it = index.find(name);
    if (it == index.end()) {
      std::string best;
      std::size_t best_d = std::string::npos;
      for (const Slot& s : slots) {
        std::size_t d = edit_distance(name, s.name);
        if (d < best_d) best_d = d, best = s.name;
      }
      std::string msg = "unknown name '" + name + "': the module has no parameter or buffer of that name";
      if (!best.empty() && best_d <= std::max<std::size_t>(2, name.size() / 3)) {
        msg += " (did you mean '" + best + "'?)";
      }
      throw FunctionalCallError(Kind::unknown_name, name, msg);
    }
    const Slot& s = slots[it->second];
    const char* what = s.kind == SlotKind::parameter ? "parameter" : "buffer";
    if (!given.defined()) {
      throw FunctionalCallError(Kind::undefined_tensor, name,
                                "the tensor given for '" + name + "' is undefined");
    }
    if (!s.tensor.defined()) {
      throw FunctionalCallError(Kind::undefined_tensor, name,
                                std::string(what) + " '" + name +
                                    "' is registered undefined and cannot be substituted");
    }
    if (given.sizes() != s.tensor.sizes()) {
      throw FunctionalCallError(Kind::shape_mismatch, name,
                                std::string(what) + " '" + name + "' has shape " +
                                    shape_str(s.tensor.sizes()) + " but the given tensor has shape " +
                                    shape_str(given.sizes()));
    }
    if (given.scalar_type() != s.tensor.scalar_type()) {
      throw FunctionalCallError(Kind::dtype_mismatch, name,
                                std::string(what) + " '" + name + "' has dtype " +
                                    c10::toString(s.tensor.scalar_type()) +
                                    " but the given tensor has dtype " +
                                    c10::toString(given.scalar_type()));
    }
    if (given.device() != s.tensor.device()) {
      throw FunctionalCallError(Kind::device_mismatch, name,
                                std::string(what) + " '" + name + "' lives on " +
                                    s.tensor.device().str() + " but the given tensor lives on " +
                                    given.device().str());
    }
  }

  // 2. Tied groups: resolve what each slot receives.
  std::vector<torch::Tensor> target(slots.size());  // undefined = untouched
  for (const auto& [impl, members] : groups) {
    (void)impl;
    std::vector<std::size_t> given_idx;
    for (std::size_t i : members) {
      if (tensors.count(slots[i].name)) given_idx.push_back(i);
    }
    if (given_idx.empty()) continue;
    if (members.size() > 1 && !options.tie_weights &&
        options.mode != SubstitutionMode::rebind) {
      // Substituting a strict subset would need to untie; substituting all names with
      // different tensors too. Only one object exists to change.
      const Slot& first = slots[given_idx.front()];
      std::vector<std::string> names;
      for (std::size_t i : members) names.push_back(slots[i].name);
      throw FunctionalCallError(
          Kind::cannot_untie, first.name,
          "'" + first.name + "' is tied to " + quoted_list(names) +
              " (one tensor object); tie_weights = false needs mode rebind to substitute it alone, "
              "mode " + substitution_mode_name(options.mode) + " can only change the shared object");
    }
    if (options.tie_weights) {
      const torch::Tensor& chosen = tensors.at(slots[given_idx.front()].name);
      for (std::size_t i : given_idx) {
        const torch::Tensor& t = tensors.at(slots[i].name);
        if (impl_of(t) != impl_of(chosen)) {
          throw FunctionalCallError(
              Kind::tied_conflict, slots[i].name,
              "'" + slots[given_idx.front()].name + "' and '" + slots[i].name +
                  "' are tied (one tensor object) but were given different tensors; give one "
                  "of them, or the same tensor object for both, or set tie_weights = false");
        }
      }
      for (std::size_t i : members) target[i] = chosen;
    } else {
      for (std::size_t i : given_idx) target[i] = tensors.at(slots[i].name);
    }
  }

  // 3. Strict: every defined slot must be covered.
  if (options.strict) {
    std::vector<std::string> missing;
    for (std::size_t i = 0; i < slots.size(); ++i) {
      if (slots[i].tensor.defined() && !target[i].defined()) missing.push_back(slots[i].name);
    }
    if (!missing.empty()) {
      throw FunctionalCallError(Kind::missing_strict, missing.front(),
                                "strict mode: missing " + std::to_string(missing.size()) +
                                    " name(s): " + quoted_list(missing));
    }
  }

  // 4. Sources are fixed before anything changes, so a given tensor that is itself one of
  //    the module's tensors (e.g. swapping two parameters) is read as it was: in_place
  //    takes a second TensorImpl over the given data, copy_into a value clone.
  if (options.mode != SubstitutionMode::rebind) {
    torch::NoGradGuard no_grad;
    std::unordered_map<const void*, torch::Tensor> sources;
    for (torch::Tensor& t : target) {
      if (!t.defined()) continue;
      auto [it, fresh] = sources.emplace(impl_of(t), torch::Tensor());
      if (fresh) {
        it->second = options.mode == SubstitutionMode::in_place
                         ? t.detach()
                         : t.detach().clone(at::MemoryFormat::Preserve);
      }
      t = it->second;
    }
  }

  // 5. Apply, in slot order, so restoration (reverse order) is deterministic.
  try {
    std::set<const void*> done;
    for (std::size_t i = 0; i < slots.size(); ++i) {
      if (!target[i].defined()) continue;
      const Slot& s = slots[i];
      const torch::Tensor& given = target[i];
      if (options.mode == SubstitutionMode::rebind) {
        Applied a;
        a.mode = SubstitutionMode::rebind;
        a.slots = {s};
        a.original = s.tensor;
        slot_ref(s) = given;
        applied_.push_back(std::move(a));
        continue;
      }
      if (!done.insert(impl_of(s.tensor)).second) continue;  // tied group already handled
      Applied a;
      a.mode = options.mode;
      for (std::size_t j : groups[impl_of(s.tensor)]) a.slots.push_back(slots[j]);
      a.original = s.tensor;
      if (options.mode == SubstitutionMode::in_place) {
        a.saved = s.tensor.detach();  // a second TensorImpl over the original storage/metadata
        a.saved_data = s.tensor.data_ptr();
        s.tensor.set_data(given);
      } else {
        torch::NoGradGuard no_grad;
        a.saved = s.tensor.detach().clone(at::MemoryFormat::Preserve);
        a.saved_data = s.tensor.data_ptr();
        s.tensor.copy_(given);
      }
      applied_.push_back(std::move(a));
    }
  } catch (...) {
    restore();
    throw;
  }
}

ScopedSubstitution::~ScopedSubstitution() { restore(); }

void ScopedSubstitution::restore() noexcept {
  if (restored_) return;
  restored_ = true;
  try {
    for (auto it = applied_.rbegin(); it != applied_.rend(); ++it) {
      Applied& a = *it;
      switch (a.mode) {
        case SubstitutionMode::rebind: {
          torch::Tensor& ref = slot_ref(a.slots.front());
          ref = a.original;
          if (impl_of(ref) != impl_of(a.original)) invariant_failed("rebind of '" + a.slots.front().name + "'");
          break;
        }
        case SubstitutionMode::in_place: {
          a.original.set_data(a.saved);
          if (a.original.data_ptr() != a.saved_data) {
            invariant_failed("in_place restore of '" + a.slots.front().name + "' left another storage");
          }
          break;
        }
        case SubstitutionMode::copy_into: {
          torch::NoGradGuard no_grad;
          a.original.copy_(a.saved);
          if (a.original.data_ptr() != a.saved_data) {
            invariant_failed("copy_into restore of '" + a.slots.front().name + "' moved the storage");
          }
          break;
        }
      }
      for (const Slot& s : a.slots) {
        if (impl_of(slot_ref(s)) != impl_of(a.original)) {
          invariant_failed("slot '" + s.name + "' does not hold its original tensor object");
        }
      }
    }
  } catch (const std::exception& e) {
    invariant_failed(std::string("exception while restoring: ") + e.what());
  }
}

std::vector<std::string> ScopedSubstitution::substituted_names() const {
  std::vector<std::string> names;
  for (const Applied& a : applied_) {
    for (const Slot& s : a.slots) names.push_back(s.name);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

// ---------------------------------------------------------------------------------------
// Fingerprints.
// ---------------------------------------------------------------------------------------
bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  torch::Tensor ca = a.detach().to(torch::kCPU).contiguous();
  torch::Tensor cb = b.detach().to(torch::kCPU).contiguous();
  const std::size_t bytes = static_cast<std::size_t>(ca.numel()) * ca.element_size();
  return bytes == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), bytes) == 0;
}

std::vector<SlotFingerprint> fingerprint_module(torch::nn::Module& module, bool with_values) {
  std::vector<SlotFingerprint> out;
  for (const Slot& s : all_slots(module)) {
    SlotFingerprint f;
    f.name = s.name;
    f.impl = impl_of(s.tensor);
    if (s.tensor.defined()) {
      const torch::Tensor& t = s.tensor;
      f.storage = t.has_storage() ? static_cast<const void*>(t.storage().unsafeGetStorageImpl()) : nullptr;
      f.data = t.has_storage() ? t.data_ptr() : nullptr;
      f.sizes = t.sizes().vec();
      f.strides = t.strides().vec();
      f.storage_offset = t.storage_offset();
      f.dtype = c10::toString(t.scalar_type());
      f.device = t.device().str();
      f.requires_grad = t.requires_grad();
      if (with_values && !t.is_meta()) f.values = t.detach().to(torch::kCPU).clone();
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::string compare_fingerprints(const std::vector<SlotFingerprint>& before,
                                 const std::vector<SlotFingerprint>& after) {
  std::ostringstream os;
  if (before.size() != after.size()) {
    os << "slot count changed: " << before.size() << " -> " << after.size() << '\n';
    return os.str();
  }
  for (std::size_t i = 0; i < before.size(); ++i) {
    const SlotFingerprint& b = before[i];
    const SlotFingerprint& a = after[i];
    if (b.name != a.name) {
      os << "slot " << i << " renamed: '" << b.name << "' -> '" << a.name << "'\n";
      continue;
    }
    if (b.impl != a.impl) os << "'" << b.name << "': holds another tensor object\n";
    if (b.storage != a.storage) os << "'" << b.name << "': storage changed\n";
    if (b.data != a.data) os << "'" << b.name << "': data pointer changed\n";
    if (b.sizes != a.sizes || b.strides != a.strides || b.storage_offset != a.storage_offset) {
      os << "'" << b.name << "': sizes/strides/offset changed\n";
    }
    if (b.dtype != a.dtype || b.device != a.device) os << "'" << b.name << "': dtype/device changed\n";
    if (b.requires_grad != a.requires_grad) os << "'" << b.name << "': requires_grad changed\n";
    if (b.values.defined() && a.values.defined() && !bitwise_equal(b.values, a.values)) {
      os << "'" << b.name << "': values changed\n";
    }
  }
  return os.str();
}

}  // namespace moecheck::harness
