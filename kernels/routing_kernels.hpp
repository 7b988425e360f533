// moecheck fused routing kernels: public host API (no CUDA headers needed to include this).
//
// Every kernel variant exists twice: as CUDA `__global__` kernels launched by
// `launch_routing` (kernels/routing_cuda.hpp; one translation unit per variant around the
// shared device header kernels/routing_device.cuh, only when built with CUDA), and as a host
// emulation `emulate_routing` (kernels/host_emulation.cpp) that runs the very same per-row
// `__host__ __device__` functions (kernels/routing_row.hpp) on the CPU, so CI without a GPU
// checks the kernel's own algorithm against the reference. Names, validation and the variant
// heuristic: kernels/routing_names.cpp. Design: DESIGN.md, section "Fused routing kernels".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moecheck::kernels {

/// Gating element type; numeric values match moecheck::DType and the plugin ABI.
enum class GatingType : int { f32 = 0, f16 = 1, bf16 = 2 };

/// Routing family implemented by the fused kernels; values match moecheck::Family.
enum class KernelFamily : int { gemma4 = 0, softmax_topk = 1, softmax_topk_raw = 2 };

/// Kernel variants. `automatic` resolves through `choose_variant`.
enum class Variant : int {
  automatic = 0,
  warp_per_row = 1,    ///< one warp owns a row; E <= kWarpMaxExperts
  block_per_row = 2,   ///< one block owns a row; any E <= kMaxExperts
  thread_per_row = 3,  ///< one thread (large T) or a group of 2..32 lanes owns a row; any E <= kMaxExperts
};
const char* variant_name(Variant v);
bool parse_variant(std::string_view s, Variant* out);

constexpr int kMaxK = 32;           ///< largest supported k
constexpr int kMaxExperts = 4096;   ///< largest supported E
constexpr int kWarpMaxExperts = 512;///< largest E the warp-per-row variant accepts
/// Rows from which choose_variant picks thread_per_row (see choose_variant).
constexpr std::int64_t kThreadPerRowMinRows = 16384;
/// From this many rows choose_variant picks thread_per_row (lane groups) for E > kWarpMaxExperts.
constexpr std::int64_t kThreadPerRowLargeExpertMinRows = 1024;
/// Up to this many rows choose_variant picks block_per_row for fp32 rows of E > 256.
constexpr std::int64_t kBlockPreferMaxRows = 256;

/// Planted-bug variants of the kernels (mutation testing). `none` is the correct kernel.
/// Each mutant is selectable by name; see mutant_name / parse_mutant.
enum class Mutant : int {
  none = 0,
  skip_renormalise,       ///< weights = full-softmax probs (no renormalise)
  topk_only_softmax,      ///< softmax over the k selected logits only: wrong for softmax_topk_raw
  scale_by_slot,          ///< multiplies by scale[slot] instead of scale[expert id]
  off_by_one_k,           ///< selects k-1 experts and leaves the last slot as a duplicate
  drop_tied_expert,       ///< tie at the k-th place resolved by picking an already-selected expert
  skip_partial_warp,      ///< ignores experts beyond the last multiple of 32 (thread_per_row:
                          ///< skips the rows of the last partial 32-row tile)
  fp16_accumulation,      ///< sums the softmax denominator in fp16
  ignore_col_stride,      ///< assumes contiguous columns
  nan_duplicates,         ///< NaN logits compare true, the same expert can be picked twice
  zero_sum_divide,        ///< no zero-sum guard: rows with all -inf give NaN
  grid_overflow,          ///< (GPU) row index in 16 bits: rows >= 65536 are never written
  shared_race,            ///< (GPU) missing barrier before reusing shared scratch (thread_per_row:
                          ///< no wait between a warp's cooperative chunk copy and its reads)
  count_
};
const char* mutant_name(Mutant m);
bool parse_mutant(std::string_view s, Mutant* out);
/// True for mutants whose bug only shows on the device (grid_overflow, shared_race).
bool mutant_is_gpu_only(Mutant m);

/// Problem description with raw pointers. All strides in elements.
struct RoutingArgs {
  const void* gating = nullptr;     ///< G[T, E], element (t, e) at t*row_stride + e*col_stride
  GatingType dtype = GatingType::f32;
  std::int64_t T = 0;
  int E = 0;
  int k = 0;
  std::int64_t row_stride = 0;
  std::int64_t col_stride = 1;
  const float* scale = nullptr;     ///< [E] per_expert_scale (gemma4); nullptr = ones
  KernelFamily family = KernelFamily::gemma4;
  float* weights = nullptr;         ///< [T, k] fp32 out, row-major contiguous
  std::int32_t* ids = nullptr;      ///< [T, k] int32 out
};

/// Status codes of argument validation (independent of CUDA).
enum class ArgStatus : int { ok = 0, bad_shape, bad_k, bad_stride, null_pointer, unsupported };
/// Validates args; on failure writes a sentence naming the field into *message.
ArgStatus validate_args(const RoutingArgs& a, std::string* message);

/// The checks emulate_routing and launch_routing run before any work, in this order:
/// validate_args, mutant m in range, Variant::automatic resolved (choose_variant) into *v,
/// *v a concrete variant, warp_per_row only for E <= kWarpMaxExperts. Returns ArgStatus::ok or
/// the first failure (message as validate_args).
ArgStatus check_request(const RoutingArgs& a, Variant* v, Mutant m, std::string* message);

/// Documented heuristic: which variant runs for E experts and T rows (see the function's
/// comment for the measurements it cites). Never returns Variant::automatic.
Variant choose_variant(int E, std::int64_t T, GatingType dtype);

/// Runs the kernel algorithm on the host for all rows (pointers are host pointers).
/// Returns ArgStatus::ok or the validation error.
ArgStatus emulate_routing(const RoutingArgs& a, Variant v, Mutant m = Mutant::none,
                          std::string* message = nullptr);

/// True when this build contains the CUDA kernels.
bool built_with_cuda();

}  // namespace moecheck::kernels
