// moecheck fused routing: LibTorch entry point. CPU tensors run the host emulation (the
// kernels' own algorithm); CUDA tensors run launch_routing on the current CUDA stream when
// this build links LibTorch's CUDA backend (MOECHECK_WITH_TORCH_CUDA) and the CUDA kernels.
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>

#include <ATen/core/Tensor.h>

#include "kernels/routing_kernels.hpp"

namespace moecheck::kernels {

/// LibTorch scalar type of a gating dtype: f32 -> kFloat, f16 -> kHalf, bf16 -> kBFloat16;
/// at::ScalarType::Undefined for a value outside the enum. The one mapping between the
/// project's three gating dtypes and LibTorch's (harness/torch/dtype.hpp builds on it).
inline at::ScalarType scalar_type_of(GatingType t) {
  switch (t) {
    case GatingType::f32: return at::kFloat;
    case GatingType::f16: return at::kHalf;
    case GatingType::bf16: return at::kBFloat16;
  }
  return at::ScalarType::Undefined;
}

/// Gating dtype of a LibTorch scalar type (the inverse of scalar_type_of). Returns false,
/// leaving *out untouched, for anything but kFloat, kHalf and kBFloat16.
inline bool gating_type_of(at::ScalarType t, GatingType* out) {
  for (const GatingType g : {GatingType::f32, GatingType::f16, GatingType::bf16}) {
    if (scalar_type_of(g) == t) {
      *out = g;
      return true;
    }
  }
  return false;
}

/// Fused routing of `gating` [T, E] (float32, float16 or bfloat16, any strides, CPU or CUDA).
/// scale: optional per_expert_scale [E] float32 on gating's device, finite (only gemma4 reads it).
/// Returns (weights float32 [T, k], ids int32 [T, k]), contiguous, on gating's device.
/// Caller misuse (rank, dtype, device mismatch, k outside [1, min(E, kMaxK)], E > kMaxExperts,
/// non-finite scale, CUDA tensor in a build without CUDA) raises c10::Error via TORCH_CHECK.
std::tuple<at::Tensor, at::Tensor> fused_routing(const at::Tensor& gating, std::int64_t k,
                                                 const std::optional<at::Tensor>& scale,
                                                 KernelFamily family = KernelFamily::gemma4,
                                                 Variant variant = Variant::automatic,
                                                 Mutant mutant = Mutant::none);

}  // namespace moecheck::kernels
