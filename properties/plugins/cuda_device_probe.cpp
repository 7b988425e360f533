// Exit status 0 when a CUDA device is usable (cudaGetDeviceCount succeeds with at least one
// device, the same test as moecheck's cuda_device_available), 1 otherwise with the reason on
// stdout. The GPU campaign tests (properties/gpu_fuzz_expect.cmake) run it first and skip without
// a device.
#include <cuda_runtime_api.h>

#include <cstdio>

int main() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    std::printf("no usable CUDA device: cudaGetDeviceCount: %s (%s)\n", cudaGetErrorName(e), cudaGetErrorString(e));
    return 1;
  }
  if (n < 1) {
    std::printf("no usable CUDA device: cudaGetDeviceCount returned 0\n");
    return 1;
  }
  std::printf("%d CUDA device(s)\n", n);
  return 0;
}
