// moecheck test support for the GPU suites (kernel_gpu_test, device_check_gpu_test): a checked
// CUDA call as a gtest assertion, and whether a usable CUDA device exists. Test-only code.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

/// Asserts that a CUDA call returns cudaSuccess, naming the call and the error.
#define CUDA_ASSERT(call)                                                                                       \
  do {                                                                                                          \
    const cudaError_t e_ = (call);                                                                              \
    ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorName(e_) << " (" << cudaGetErrorString(e_) << ")"; \
  } while (0)

namespace moecheck::testing {

/// True when cudaGetDeviceCount succeeds with at least one device (the sticky error of a failed
/// query is cleared).
inline bool have_cuda_device() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

}  // namespace moecheck::testing
