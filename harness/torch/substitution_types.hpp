// moecheck functional-substitution vocabulary: module variants (the known stale-capture
// bugs), routing backends and substitution modes. No LibTorch: the CLI and reporters can
// include this without pulling in torch headers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moecheck::harness {

/// How functional_call makes the module see a substituted tensor
/// (DESIGN.md, "Functional substitution").
///
/// * rebind    : the owning submodule's parameter/buffer slot is pointed at the given
///               tensor object for the call (Python `torch.func.functional_call` semantics).
///               Code that looks the slot up at call time sees the new value; code that
///               captured the old tensor handle, a copy of it or a pointer into its storage
///               keeps reading the old value.
/// * in_place  : the existing tensor object keeps its identity but its data is swapped with
///               `Tensor::set_data` (storage, sizes, strides, dtype are taken from the given
///               tensor). Captured handles see the new value; captured copies and raw
///               pointers into the old storage do not.
/// * copy_into : the given values are copied into the existing storage (`copy_`) and copied
///               back afterwards. Handles and raw pointers see the new value; only captured
///               copies do not.
enum class SubstitutionMode : int { rebind = 0, in_place = 1, copy_into = 2 };

/// "rebind", "in_place", "copy_into".
const char* substitution_mode_name(SubstitutionMode m);
/// Parses one mode name ("in-place" and "copy-into" are accepted too). Returns false on
/// anything else, leaving *out untouched.
bool parse_substitution_mode(std::string_view s, SubstitutionMode* out);
/// Parses a mode list: a single mode name, "both" (= rebind, in_place), "all" (every mode)
/// or a comma-separated list of names. Returns false (leaving *out untouched) on an unknown
/// or empty entry.
bool parse_substitution_modes(std::string_view s, std::vector<SubstitutionMode>* out);
/// Every mode, in enum order.
std::vector<SubstitutionMode> all_substitution_modes();

/// The MoE module built correctly or with one of the known stale-capture bugs. Every bug
/// is latent: with the parameters the module was built with, all variants compute the
/// same outputs (per_expert_scale starts at ones). They differ only once per_expert_scale
/// changes after construction, which is what functional substitution does.
///
/// Which substitution mode exposes which variant (checked by properties/substitution_prop.cpp):
///
///   variant          rebind   in_place   copy_into   why
///   correct          -        -          -           reads the slot at every call
///   capture_handle   caught   missed     missed      holds the old tensor object; in_place and
///                                                    copy_into change that very object
///   capture_copy     caught   caught     caught      holds a private copy nobody changes
///   cache_data_ptr   caught   caught     missed      holds a pointer into the old storage; only
///                                                    copy_into writes into that storage
///   scale_by_slot    caught   caught     caught      logic bug (scale[slot] instead of
///                                                    scale[id]), visible once scales differ
enum class ModuleVariant : int {
  correct = 0,        ///< the routing callable reads `per_expert_scale` from its slot per call
  capture_handle = 1, ///< callable captured the scale tensor handle at construction (the original bug)
  capture_copy = 2,   ///< callable captured an fp32 contiguous copy of the scale at construction
  cache_data_ptr = 3, ///< callable cached a raw pointer to the scale's data at construction
  scale_by_slot = 4,  ///< callable reads the current scale, but by slot index instead of expert id
};

/// "correct", "capture_handle", "capture_copy", "cache_data_ptr", "scale_by_slot".
const char* module_variant_name(ModuleVariant v);
/// Parses a variant name ("-" accepted for "_"). Returns false on anything else.
bool parse_module_variant(std::string_view s, ModuleVariant* out);
/// Every variant, correct first.
std::vector<ModuleVariant> all_module_variants();
/// The documented detection matrix above: true iff a functional substitution of
/// per_expert_scale in mode `m` makes variant `v` compute something other than the
/// correct module (always false for `correct`).
bool variant_caught_by(ModuleVariant v, SubstitutionMode m);

/// Which implementation computes routing weights/ids from the router logits.
enum class RoutingBackend : int {
  composite = 0, ///< LibTorch ops: topk on logits, fp32 softmax, gather, renormalise, x scale[id]
  reference = 1, ///< moecheck::route_reference (fp64, CPU; logits are copied to the host)
  fused = 2,     ///< the fused routing kernel through kernels_torch (host emulation on CPU)
};
/// "composite", "reference", "fused".
const char* routing_backend_name(RoutingBackend b);
/// Parses a backend name. Returns false on anything else.
bool parse_routing_backend(std::string_view s, RoutingBackend* out);
/// True when this build links the fused kernels' LibTorch glue (kernels/torch_ops.hpp).
bool fused_backend_available();

}  // namespace moecheck::harness
