// moecheck dtype <-> LibTorch dtype: the project's DType on top of the kernels' one mapping
// (kernels::scalar_type_of / gating_type_of in kernels/torch_ops.hpp), so the three dtypes map
// to LibTorch in exactly one place.
#pragma once

#include <stdexcept>
#include <string>

#include <c10/core/ScalarType.h>

#include "kernels/routing_kernels.hpp"
#include "kernels/torch_ops.hpp"
#include "reference/routing.hpp"

namespace moecheck::harness {

static_assert(static_cast<int>(DType::f32) == static_cast<int>(kernels::GatingType::f32) &&
                  static_cast<int>(DType::f16) == static_cast<int>(kernels::GatingType::f16) &&
                  static_cast<int>(DType::bf16) == static_cast<int>(kernels::GatingType::bf16),
              "DType and kernels::GatingType must number the three dtypes alike");

/// LibTorch dtype of a moecheck dtype (f32 -> kFloat, f16 -> kHalf, bf16 -> kBFloat16).
/// Throws std::invalid_argument for a value outside the enum.
inline c10::ScalarType torch_dtype(DType d) {
  const c10::ScalarType t = kernels::scalar_type_of(static_cast<kernels::GatingType>(d));
  if (t == c10::ScalarType::Undefined) {
    throw std::invalid_argument("unknown dtype value " + std::to_string(static_cast<int>(d)));
  }
  return t;
}

/// moecheck dtype of a LibTorch dtype. Returns false, leaving *out untouched, for anything but
/// kFloat, kHalf and kBFloat16.
inline bool dtype_of(c10::ScalarType t, DType* out) {
  kernels::GatingType g;
  if (!kernels::gating_type_of(t, &g)) return false;
  *out = static_cast<DType>(static_cast<int>(g));
  return true;
}

}  // namespace moecheck::harness
