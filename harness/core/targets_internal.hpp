// Internal glue shared by the core target implementations (not a public API).
#pragma once

#include <memory>
#include <string>

#include "harness/core/target.hpp"
#include "kernels/routing_kernels.hpp"

namespace moecheck {

/// Why a kernel variant cannot take this case ("" when it can).
std::string kernel_unsupported(const RoutingCase& c, kernels::Variant v);
/// The families and E/k limits of a kernel variant (the domain kernel_unsupported accepts).
Domain kernel_domain(kernels::Variant v);
/// Kernel argument block for a materialized case and output buffers.
kernels::RoutingArgs to_kernel_args(const MaterializedCase& m, float* weights, std::int32_t* ids);
/// Parses a variant name ("" means automatic); throws std::invalid_argument naming the spec.
kernels::Variant parse_variant_or_throw(const std::string& spec, const std::string& name);
/// Parses a mutant name; throws std::invalid_argument listing the known names.
kernels::Mutant parse_mutant_or_throw(const std::string& name);
/// "cuda:<variant>" target; throws std::invalid_argument in builds without CUDA or without a device.
std::unique_ptr<Target> make_cuda_kernel_target(const std::string& spec, kernels::Variant v,
                                                kernels::Mutant m);
/// True when `t` is a "cuda:<variant>" target; *v and *m receive its variant and mutant (the
/// device checker, harness/core/device_check.cpp, launches the same kernel).
bool cuda_kernel_target_info(const Target& t, kernels::Variant* v, kernels::Mutant* m);
/// "plugin:<path>" target (dlopen); throws std::invalid_argument naming the problem.
/// Its spec() is "plugin:<descriptor name>".
std::unique_ptr<Target> make_plugin_target(const std::string& path, bool isolate);
/// True when `name` can name a plugin target ("plugin:<name>"): 1 to 64 characters of
/// [A-Za-z0-9._-], not "." or "..", not ending in ".so" (which would read as a file).
bool valid_plugin_name(const char* name);

}  // namespace moecheck
