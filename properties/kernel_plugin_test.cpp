// The sample plugins through their C ABI (kernels/moecheck_plugin.h), loaded with dlopen:
// the example plugin passes the oracle on random problems; the broken plugin's two planted
// defects are visible (scale ignored for experts >= 8, error for T > 1000).
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/moecheck_plugin.h"
#include "properties/support/kernel_problem.hpp"
#include "reference/oracle.hpp"

namespace {

using namespace moecheck::testing;  // KernelProblem, make_problem, view_of, DType, Family, ...

struct Plugin {
  void* handle = nullptr;
  const moecheck_plugin_desc_v1* desc = nullptr;
  explicit Plugin(const char* path) {
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) return;
    auto entry = reinterpret_cast<moecheck_plugin_entry_v1>(dlsym(handle, MOECHECK_PLUGIN_ENTRY_V1));
    if (entry) desc = entry();
  }
  ~Plugin() {
    if (handle) dlclose(handle);
  }
};

int run(const Plugin& pl, const KernelProblem& p, std::vector<float>& w, std::vector<std::int32_t>& ids) {
  const std::size_t n = static_cast<std::size_t>(p.c.T * p.c.k);
  w.assign(n, 0.0f);
  ids.assign(n, 0);
  moecheck::poison_outputs(w.data(), ids.data(), static_cast<std::int64_t>(n));
  return pl.desc->route(p.storage.data(), p.c.row_stride(), p.c.col_stride(), static_cast<std::int32_t>(p.c.dtype),
                        p.c.T, p.c.E, p.c.k, static_cast<std::int32_t>(p.c.family),
                        p.c.scale.empty() ? nullptr : p.c.scale.data(), w.data(), ids.data(), MOECHECK_DEVICE_HOST,
                        nullptr);
}

TEST(Plugins, ExamplePluginDescriptorAndOracle) {
  Plugin pl(MOECHECK_EXAMPLE_PLUGIN);
  ASSERT_NE(pl.handle, nullptr) << dlerror();
  ASSERT_NE(pl.desc, nullptr);
  EXPECT_EQ(pl.desc->abi_version, static_cast<std::uint32_t>(MOECHECK_PLUGIN_ABI_VERSION));
  EXPECT_GE(pl.desc->struct_size, sizeof(moecheck_plugin_desc_v1));
  EXPECT_STREQ(pl.desc->name, "example");
  EXPECT_TRUE(pl.desc->families & MOECHECK_PLUGIN_BIT(MOECHECK_FAMILY_GEMMA4));
  EXPECT_TRUE(pl.desc->dtypes & MOECHECK_PLUGIN_BIT(MOECHECK_DTYPE_BF16));
  EXPECT_FALSE(pl.desc->devices & MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_CUDA));
  std::vector<float> w;
  std::vector<std::int32_t> ids;
  for (std::uint64_t seed = 1; seed <= 120; ++seed) {
    const int E = 1 + static_cast<int>((seed * 37) % 300);
    const int k = 1 + static_cast<int>(seed % static_cast<std::uint64_t>(std::min(E, 8)));
    const auto p = make_problem(seed, static_cast<DType>(seed % 3), 1 + static_cast<std::int64_t>(seed % 9), E, k,
                                static_cast<Family>(seed % 3), static_cast<Layout>(seed % 4),
                                kMixedValues,
                                seed % 2 == 0 ? scale_family_for(seed / 2) : "ones");
    ASSERT_EQ(run(pl, p, w, ids), MOECHECK_PLUGIN_OK) << pl.desc->last_error();
    const auto rep = moecheck::check_routing(view_of(p), params_of(p), w.data(), ids.data());
    ASSERT_TRUE(rep.ok()) << rep.str() << "\nreplay: " << p.describe();
  }
  // errors are codes with a message, never crashes
  auto p = make_problem(1, DType::f32, 2, 8, 2, Family::gemma4, Layout::contiguous, "normal");
  p.c.k = 9;
  EXPECT_EQ(run(pl, p, w, ids), MOECHECK_PLUGIN_INVALID_ARGUMENT);
  EXPECT_STRNE(pl.desc->last_error(), "");
}

TEST(Plugins, BrokenPluginDefectsAreVisible) {
  Plugin pl(MOECHECK_BROKEN_PLUGIN);
  ASSERT_NE(pl.handle, nullptr) << dlerror();
  ASSERT_NE(pl.desc, nullptr);
  EXPECT_STREQ(pl.desc->name, "broken");
  std::vector<float> w;
  std::vector<std::int32_t> ids;
  // defect 1: the minimal failing case, T = 1, E = 9, k = 1, the top expert is 8 with scale 2
  RoutingCase c;
  c.family = Family::gemma4;
  c.dtype = DType::f32;
  c.T = 1;
  c.E = 9;
  c.k = 1;
  c.logits.assign(9, 0.0f);
  c.logits[8] = 1.0f;
  c.scale.assign(9, 1.0f);
  c.scale[8] = 2.0f;
  KernelProblem p = lay_out(c);
  ASSERT_EQ(run(pl, p, w, ids), MOECHECK_PLUGIN_OK);
  EXPECT_EQ(ids[0], 8);
  EXPECT_FALSE(moecheck::check_routing(view_of(p), params_of(p), w.data(), ids.data()).ok());
  // ... and it is correct without scales or below expert 8
  p.c.scale[8] = 1.0f;
  ASSERT_EQ(run(pl, p, w, ids), MOECHECK_PLUGIN_OK);
  EXPECT_TRUE(moecheck::check_routing(view_of(p), params_of(p), w.data(), ids.data()).ok());
  // defect 2: T > 1000 refused
  const auto big = make_problem(4, DType::bf16, 1001, 4, 2, Family::softmax_topk, Layout::contiguous, "normal");
  EXPECT_EQ(run(pl, big, w, ids), MOECHECK_PLUGIN_INTERNAL_ERROR);
  EXPECT_NE(std::string(pl.desc->last_error()).find("workspace"), std::string::npos);
}

}  // namespace
