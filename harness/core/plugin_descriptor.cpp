// Plugin descriptor loading: implementation of harness/core/plugin_descriptor.hpp.
#include "harness/core/plugin_descriptor.hpp"

#include <dlfcn.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "harness/core/targets_internal.hpp"

namespace moecheck {
namespace {

/// The version-1 checks, shared by both versions. Returns "" when fine.
std::string check_base(const moecheck_plugin_desc_v1& d) {
  if (!valid_plugin_name(d.name)) {
    return "descriptor name must be 1 to 64 characters of [A-Za-z0-9._-], not ending in \".so\" (it names "
           "the target, plugin:<name>)";
  }
  if (!d.route) return "descriptor has no route function";
  if (!d.last_error) return "descriptor has no last_error function";
  if (d.devices == 0 || d.dtypes == 0 || d.families == 0) return "descriptor declares no device, dtype or family";
  if (d.max_experts < 0 || d.max_k < 0) return "descriptor has negative max_experts or max_k";
  return {};
}

/// The contract a version-2 descriptor declares, with its domain fields folded in.
Contract declared_contract(const moecheck_plugin_desc_v2& d, const std::string& path) {
  const std::string origin = "plugin '" + path + "' contract";
  Contract c;
  constexpr std::size_t kMaxText = 64 * 1024;
  const std::size_t len = d.contract ? strnlen(d.contract, kMaxText + 1) : 0;
  if (len > kMaxText) throw ContractError(origin, 0, "contract", "text longer than " + std::to_string(kMaxText) + " bytes");
  const std::string text(d.contract ? d.contract : "", len);
  if (text.empty()) {
    // strict
  } else if (text.find('=') == std::string::npos && text.find('\n') == std::string::npos) {
    if (!builtin_contract(text, &c)) {
      std::string known;
      for (const auto& n : builtin_contract_names()) known += (known.empty() ? "" : ", ") + n;
      throw ContractError(origin, 0, "contract", "unknown built-in contract '" + text + "' (known: " + known + ")");
    }
  } else {
    c = parse_contract_text(text, origin, d.base.name && *d.base.name ? d.base.name : "plugin");
  }
  Contract domain;
  domain.name = d.base.name && *d.base.name ? d.base.name : "plugin";
  if (d.layouts != 0) {
    if ((d.layouts & ~kAllLayouts) != 0) {
      throw ContractError(origin, 0, "layouts", "bits outside MOECHECK_LAYOUT_* set (" + std::to_string(d.layouts) + ")");
    }
    domain.layouts = d.layouts;
  }
  if (d.alignment > 1) {
    if (d.alignment > 16 || (d.alignment & (d.alignment - 1)) != 0) {
      throw ContractError(origin, 0, "alignment",
                          "must be 0, 1, 2, 4, 8 or 16 bytes (got " + std::to_string(d.alignment) + ")");
    }
    domain.base_alignment = static_cast<int>(d.alignment);
  }
  if (d.max_elements < 0) throw ContractError(origin, 0, "max_elements", "is negative");
  domain.max_elements = d.max_elements;
  return restrict_domain(c, domain);
}

}  // namespace

PluginDescriptor load_plugin_descriptor(void* handle, const std::string& path) {
  const auto fail = [&](const std::string& why) -> PluginDescriptor {
    throw std::invalid_argument("plugin '" + path + "': " + why);
  };
  PluginDescriptor out;
  if (void* sym2 = dlsym(handle, MOECHECK_PLUGIN_ENTRY_V2)) {
    const moecheck_plugin_desc_v2* d = reinterpret_cast<moecheck_plugin_entry_v2>(sym2)();
    if (!d) return fail(std::string(MOECHECK_PLUGIN_ENTRY_V2) + " returned NULL");
    if (d->base.abi_version != MOECHECK_PLUGIN_ABI_VERSION_2) {
      return fail(std::string(MOECHECK_PLUGIN_ENTRY_V2) + " returned a descriptor of ABI version " +
                  std::to_string(d->base.abi_version) + ", expected " + std::to_string(MOECHECK_PLUGIN_ABI_VERSION_2));
    }
    if (d->base.struct_size < sizeof(moecheck_plugin_desc_v2)) {
      return fail("descriptor struct_size " + std::to_string(d->base.struct_size) + " < " +
                  std::to_string(sizeof(moecheck_plugin_desc_v2)) + " bytes required by ABI version 2");
    }
    if (std::string why = check_base(d->base); !why.empty()) return fail(why);
    out.base = &d->base;
    out.abi_version = 2;
    try {
      out.contract = declared_contract(*d, path);
    } catch (const ContractError& e) {
      return fail(std::string("declared contract is invalid: ") + e.what());
    }
    return out;
  }
  void* sym = dlsym(handle, MOECHECK_PLUGIN_ENTRY_V1);
  if (!sym) {
    return fail(std::string("not a moecheck plugin (no exported symbol ") + MOECHECK_PLUGIN_ENTRY_V2 + " or " +
                MOECHECK_PLUGIN_ENTRY_V1 + ")");
  }
  const moecheck_plugin_desc_v1* d = reinterpret_cast<moecheck_plugin_entry_v1>(sym)();
  if (!d) return fail("entry point returned NULL");
  if (d->abi_version != MOECHECK_PLUGIN_ABI_VERSION) {
    return fail("ABI version " + std::to_string(d->abi_version) + ", this moecheck speaks version " +
                std::to_string(MOECHECK_PLUGIN_ABI_VERSION));
  }
  if (d->struct_size < sizeof(moecheck_plugin_desc_v1)) {
    return fail("descriptor struct_size " + std::to_string(d->struct_size) + " < " +
                std::to_string(sizeof(moecheck_plugin_desc_v1)) + " bytes required by ABI version 1");
  }
  if (std::string why = check_base(*d); !why.empty()) return fail(why);
  out.base = d;
  return out;
}

}  // namespace moecheck
