// LibTorch glue for the fused routing kernels: argument checks, dtype mapping, device guard,
// current stream. Kept to one translation unit including <ATen/ATen.h> only.
#include "kernels/torch_ops.hpp"

#include <string>

#include <ATen/ATen.h>

#if defined(MOECHECK_WITH_TORCH_CUDA) && defined(MOECHECK_HAVE_CUDA_KERNELS)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/routing_mutants.hpp"
#define MOECHECK_TORCH_OPS_CUDA 1
#endif

namespace moecheck::kernels {

namespace {

GatingType gating_type(at::ScalarType t) {
  GatingType g = GatingType::f32;
  TORCH_CHECK(gating_type_of(t, &g), "fused_routing: gating dtype must be float32, float16 or bfloat16, got ", t);
  return g;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> fused_routing(const at::Tensor& gating, std::int64_t k,
                                                 const std::optional<at::Tensor>& scale,
                                                 KernelFamily family, Variant variant,
                                                 Mutant mutant) {
  TORCH_CHECK(gating.defined(), "fused_routing: gating is undefined");
  TORCH_CHECK(gating.dim() == 2, "fused_routing: gating must be 2-D [T, E], got ", gating.dim(), "-D");
  const GatingType dtype = gating_type(gating.scalar_type());
  const std::int64_t T = gating.size(0), E = gating.size(1);
  TORCH_CHECK(E >= 1 && E <= kMaxExperts, "fused_routing: E = ", E, " outside [1, ", kMaxExperts, "]");
  TORCH_CHECK(k >= 1 && k <= E && k <= kMaxK, "fused_routing: k = ", k, " outside [1, min(E = ", E,
              ", ", kMaxK, ")]");
  TORCH_CHECK(gating.device().is_cpu() || gating.device().is_cuda(),
              "fused_routing: gating must be on the CPU or a CUDA device, got ", gating.device());
  at::Tensor s;
  if (scale.has_value() && scale->defined()) {
    s = *scale;
    TORCH_CHECK(s.dim() == 1 && s.size(0) == E, "fused_routing: scale must have shape [", E, "], got ",
                s.sizes());
    TORCH_CHECK(s.scalar_type() == at::kFloat, "fused_routing: scale must be float32, got ", s.scalar_type());
    TORCH_CHECK(s.device() == gating.device(), "fused_routing: scale is on ", s.device(),
                " but gating is on ", gating.device());
    TORCH_CHECK(at::isfinite(s).all().item<bool>(), "fused_routing: scale has non-finite entries");
    s = s.contiguous();
  }
  // Broadcast (stride 0) views are valid tensors but alias rows/experts: materialize them.
  at::Tensor g = gating;
  if ((T > 1 && g.stride(0) == 0) || (E > 1 && g.stride(1) == 0)) g = g.contiguous();

  const auto opts = at::TensorOptions().device(g.device());
  at::Tensor weights = at::empty({T, k}, opts.dtype(at::kFloat));
  at::Tensor ids = at::empty({T, k}, opts.dtype(at::kInt));

  RoutingArgs a;
  a.gating = g.data_ptr();
  a.dtype = dtype;
  a.T = T;
  a.E = static_cast<int>(E);
  a.k = static_cast<int>(k);
  a.row_stride = g.stride(0);
  a.col_stride = g.stride(1);
  a.scale = s.defined() ? s.data_ptr<float>() : nullptr;
  a.family = family;
  a.weights = weights.data_ptr<float>();
  a.ids = ids.data_ptr<std::int32_t>();

  if (g.device().is_cpu()) {
    std::string msg;
    const ArgStatus st = emulate_routing(a, variant, mutant, &msg);
    TORCH_CHECK(st == ArgStatus::ok, "fused_routing: ", msg);
    return {weights, ids};
  }
#if defined(MOECHECK_TORCH_OPS_CUDA)
  const c10::cuda::CUDAGuard guard(g.device());
  std::string msg;
  TORCH_CHECK(validate_args(a, &msg) == ArgStatus::ok, "fused_routing: ", msg);
  const cudaError_t e =
      launch_routing_mutant(a, variant, c10::cuda::getCurrentCUDAStream(g.device().index()).stream(), mutant);
  TORCH_CHECK(e == cudaSuccess, "fused_routing: launch_routing failed: ", cudaGetErrorName(e), " (",
              cudaGetErrorString(e), ")");
  return {weights, ids};
#else
  TORCH_CHECK(false, "fused_routing: CUDA tensors need a build with the CUDA kernels and LibTorch's CUDA backend");
  return {weights, ids};
#endif
}

}  // namespace moecheck::kernels
