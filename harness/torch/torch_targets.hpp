// LibTorch-side targets: the composite-op routing path, on CPU or CUDA tensors.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "harness/core/target.hpp"

namespace moecheck {

/// Builds any target: "composite" / "composite:cpu" / "composite:cuda" (LibTorch ops:
/// topk + softmax + gather + renormalise + x scale), plus everything make_core_target knows.
/// Throws std::invalid_argument naming the spec.
std::unique_ptr<Target> make_target(const std::string& spec, const TargetOptions& opt);
/// All target specs this build knows.
std::vector<std::string> target_specs();
/// True when LibTorch in this process can use a CUDA device.
bool torch_cuda_available();

}  // namespace moecheck
