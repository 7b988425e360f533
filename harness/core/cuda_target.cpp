// The "cuda:<variant>" target: the fused kernels on the device, outputs poisoned on the device
// before every launch (with the guard regions around them, copied back and checked by
// `evaluate`), every CUDA call checked and reported as a failure (never a crash).
#include <cstring>
#include <stdexcept>
#include <vector>

#include "harness/core/targets_internal.hpp"

#ifdef MOECHECK_HAVE_CUDA_KERNELS
#include <cuda_runtime_api.h>

#include "kernels/routing_mutants.hpp"
#endif

namespace moecheck {

#ifdef MOECHECK_HAVE_CUDA_KERNELS
namespace {

/// Device buffer owned for the duration of one run.
struct DeviceBuffer {
  void* ptr = nullptr;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  cudaError_t alloc(std::size_t bytes) { return cudaMalloc(&ptr, bytes ? bytes : 1); }
};

std::string cuda_message(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

class CudaKernelTarget final : public Target {
 public:
  CudaKernelTarget(kernels::Variant v, kernels::Mutant m) : variant_(v), mutant_(m) {
    if (cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking) != cudaSuccess) {
      throw std::invalid_argument("cuda target: cannot create a stream");
    }
  }
  ~CudaKernelTarget() override {
    if (stream_) cudaStreamDestroy(stream_);
  }
  std::string spec() const override { return std::string("cuda:") + kernels::variant_name(variant_); }
  std::string device() const override { return "cuda"; }
  std::string mutant() const override { return kernels::mutant_name(mutant_); }
  std::string unsupported(const RoutingCase& c) const override { return kernel_unsupported(c, variant_); }
  Domain domain() const override { return kernel_domain(variant_); }

  kernels::Variant variant() const { return variant_; }
  kernels::Mutant kernel_mutant() const { return mutant_; }

  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    const std::size_t n = static_cast<std::size_t>(m.view.T * m.params.k);
    const std::size_t guard = static_cast<std::size_t>(kOutputGuardElements);
    const std::size_t padded = n + 2 * guard;  // [guard | T * k | guard], as on the host
    const std::size_t storage = m.storage.size();
    DeviceBuffer g, s, w, id;
    cudaError_t e;
#define MOECHECK_CUDA_TRY(call, what)                                           \
  if ((e = (call)) != cudaSuccess) {                                           \
    cudaGetLastError();                                                        \
    return {RunOutcome::Status::crashed, cuda_message(what, e)};               \
  }
    MOECHECK_CUDA_TRY(g.alloc(storage), "cudaMalloc(gating)");
    MOECHECK_CUDA_TRY(w.alloc(padded * sizeof(float)), "cudaMalloc(weights)");
    MOECHECK_CUDA_TRY(id.alloc(padded * sizeof(std::int32_t)), "cudaMalloc(ids)");
    if (storage) {
      MOECHECK_CUDA_TRY(cudaMemcpyAsync(g.ptr, m.storage.data(), storage, cudaMemcpyHostToDevice, stream_),
                        "cudaMemcpy(gating)");
    }
    const float* scale_dev = nullptr;
    if (m.params.scale) {
      MOECHECK_CUDA_TRY(s.alloc(sizeof(float) * static_cast<std::size_t>(m.view.E)), "cudaMalloc(scale)");
      MOECHECK_CUDA_TRY(cudaMemcpyAsync(s.ptr, m.params.scale, sizeof(float) * static_cast<std::size_t>(m.view.E),
                                        cudaMemcpyHostToDevice, stream_),
                        "cudaMemcpy(scale)");
      scale_dev = static_cast<const float*>(s.ptr);
    }
    // Poison the device outputs and their guards with the host's patterns (the host buffers
    // arrive poisoned and guarded).
    MOECHECK_CUDA_TRY(cudaMemcpyAsync(w.ptr, weights - guard, padded * sizeof(float), cudaMemcpyHostToDevice,
                                      stream_),
                      "cudaMemcpy(poison weights)");
    MOECHECK_CUDA_TRY(cudaMemcpyAsync(id.ptr, ids - guard, padded * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                                      stream_),
                      "cudaMemcpy(poison ids)");
    // Same view and parameters, device pointers (no copy of the host storage).
    kernels::RoutingArgs a = to_kernel_args(m, static_cast<float*>(w.ptr) + guard,
                                            static_cast<std::int32_t*>(id.ptr) + guard);
    a.gating = g.ptr;
    a.scale = scale_dev;
    std::string msg;
    if (kernels::validate_args(a, &msg) != kernels::ArgStatus::ok) {
      MOECHECK_CUDA_TRY(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
      return {RunOutcome::Status::rejected, msg};
    }
    MOECHECK_CUDA_TRY(kernels::launch_routing_mutant(a, variant_, stream_, mutant_), "launch_routing");
    MOECHECK_CUDA_TRY(cudaStreamSynchronize(stream_), "kernel execution");
    MOECHECK_CUDA_TRY(cudaMemcpy(weights - guard, w.ptr, padded * sizeof(float), cudaMemcpyDeviceToHost),
                      "cudaMemcpy(weights)");
    MOECHECK_CUDA_TRY(cudaMemcpy(ids - guard, id.ptr, padded * sizeof(std::int32_t), cudaMemcpyDeviceToHost),
                      "cudaMemcpy(ids)");
#undef MOECHECK_CUDA_TRY
    return {};
  }

 private:
  kernels::Variant variant_;
  kernels::Mutant mutant_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<Target> make_cuda_kernel_target(const std::string& spec, kernels::Variant v,
                                                kernels::Mutant m) {
  if (!cuda_device_available()) {
    throw std::invalid_argument("target '" + spec + "' needs a CUDA device and none is usable");
  }
  return std::make_unique<CudaKernelTarget>(v, m);
}

bool cuda_kernel_target_info(const Target& t, kernels::Variant* v, kernels::Mutant* m) {
  const auto* k = dynamic_cast<const CudaKernelTarget*>(&t);
  if (k == nullptr) return false;
  *v = k->variant();
  *m = k->kernel_mutant();
  return true;
}

bool cuda_device_available() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string cuda_device_name() {
  if (!cuda_device_available()) return "";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "";
  return p.name;
}

#else  // no CUDA kernels in this build

std::unique_ptr<Target> make_cuda_kernel_target(const std::string& spec, kernels::Variant,
                                                kernels::Mutant) {
  throw std::invalid_argument("target '" + spec + "' needs the CUDA kernels; this build has none "
                              "(configure with MOECHECK_CUDA=ON)");
}
bool cuda_kernel_target_info(const Target&, kernels::Variant*, kernels::Mutant*) { return false; }
bool cuda_device_available() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_device_name() { return ""; }

#endif

}  // namespace moecheck
