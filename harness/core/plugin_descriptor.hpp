// Loading and validation of a plugin's descriptor (kernels/moecheck_plugin.h, ABI versions 1
// and 2), apart from running it (plugin_target.cpp). Not a public API.
#pragma once

#include <string>

#include "kernels/moecheck_plugin.h"
#include "reference/contract.hpp"

namespace moecheck {

/// A validated plugin descriptor.
struct PluginDescriptor {
  const moecheck_plugin_desc_v1* base = nullptr;  ///< the version-1 fields (of a v2 descriptor too)
  int abi_version = 1;                            ///< 1 or 2
  /// The declared contract: its `contract` text or name with the descriptor's layouts,
  /// alignment and max_elements folded in (narrowing); strict for version 1.
  Contract contract;
};

/// Looks up moecheck_plugin_v2, else moecheck_plugin_v1, in the dlopen()ed `handle`, calls it
/// and validates the descriptor (ABI version, struct_size, functions, masks, limits, the
/// contract). Throws std::invalid_argument "plugin '<path>': <problem>" naming the problem
/// (a contract error names the key and problem).
PluginDescriptor load_plugin_descriptor(void* handle, const std::string& path);

}  // namespace moecheck
