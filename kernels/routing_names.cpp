// moecheck fused routing: names and parsing of variants and mutants, argument validation,
// the request check shared by emulate_routing and launch_routing, and the variant heuristic.
// Pure C++ (no CUDA header): part of moecheck::kernels in every build.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "kernels/routing_kernels.hpp"

namespace moecheck::kernels {

namespace {

/// Names indexed by enum value.
constexpr const char* kVariantNames[] = {"automatic", "warp_per_row", "block_per_row", "thread_per_row"};
constexpr const char* kMutantNames[] = {
    "none",           "skip_renormalise", "topk_only_softmax", "scale_by_slot",
    "off_by_one_k",   "drop_tied_expert", "skip_partial_warp", "fp16_accumulation",
    "ignore_col_stride", "nan_duplicates", "zero_sum_divide",  "grid_overflow",
    "shared_race",
};
static_assert(sizeof(kVariantNames) / sizeof(kVariantNames[0]) == static_cast<int>(Variant::thread_per_row) + 1,
              "one name per variant");
static_assert(sizeof(kMutantNames) / sizeof(kMutantNames[0]) == static_cast<int>(Mutant::count_),
              "one name per mutant");
/// Short variant names accepted by parse_variant, by enum value.
constexpr const char* kVariantShortNames[] = {"auto", "warp", "block", "thread"};

/// names[e] for an enum value e in range, "unknown" otherwise.
template <class Enum, std::size_t N>
const char* name_in(const char* const (&names)[N], Enum e) {
  const int i = static_cast<int>(e);
  return i >= 0 && i < static_cast<int>(N) ? names[i] : "unknown";
}

/// Sets *out to the enum value whose name in `names` is s; false (out untouched) if none is.
template <class Enum, std::size_t N>
bool find_in(const char* const (&names)[N], std::string_view s, Enum* out) {
  for (std::size_t i = 0; i < N; ++i) {
    if (s == names[i]) {
      *out = static_cast<Enum>(i);
      return true;
    }
  }
  return false;
}

ArgStatus fail(std::string* message, ArgStatus s, const std::string& text) {
  if (message != nullptr) *message = text;
  return s;
}

}  // namespace

const char* variant_name(Variant v) { return name_in(kVariantNames, v); }

bool parse_variant(std::string_view s, Variant* out) {
  return find_in(kVariantNames, s, out) || find_in(kVariantShortNames, s, out);
}

const char* mutant_name(Mutant m) { return name_in(kMutantNames, m); }

bool parse_mutant(std::string_view s, Mutant* out) { return find_in(kMutantNames, s, out); }

bool mutant_is_gpu_only(Mutant m) { return m == Mutant::grid_overflow || m == Mutant::shared_race; }

ArgStatus validate_args(const RoutingArgs& a, std::string* message) {
  using std::to_string;
  if (a.dtype != GatingType::f32 && a.dtype != GatingType::f16 && a.dtype != GatingType::bf16)
    return fail(message, ArgStatus::unsupported, "dtype " + to_string(static_cast<int>(a.dtype)) + " is not f32, f16 or bf16");
  if (a.family != KernelFamily::gemma4 && a.family != KernelFamily::softmax_topk &&
      a.family != KernelFamily::softmax_topk_raw)
    return fail(message, ArgStatus::unsupported, "family " + to_string(static_cast<int>(a.family)) + " is not supported by the fused kernels");
  if (a.T < 0) return fail(message, ArgStatus::bad_shape, "T = " + to_string(a.T) + " is negative");
  if (a.E < 1 || a.E > kMaxExperts)
    return fail(message, ArgStatus::bad_shape, "E = " + to_string(a.E) + " is outside [1, " + to_string(kMaxExperts) + "]");
  if (a.k < 1 || a.k > a.E || a.k > kMaxK)
    return fail(message, ArgStatus::bad_k, "k = " + to_string(a.k) + " is outside [1, min(E = " + to_string(a.E) + ", " + to_string(kMaxK) + ")]");
  if (a.row_stride < 0 || a.col_stride < 0)
    return fail(message, ArgStatus::bad_stride, "strides must be non-negative (row_stride = " + to_string(a.row_stride) + ", col_stride = " + to_string(a.col_stride) + ")");
  if (a.row_stride == 0 && a.T > 1)
    return fail(message, ArgStatus::bad_stride, "row_stride = 0 with T = " + to_string(a.T) + " > 1");
  if (a.col_stride == 0 && a.E > 1)
    return fail(message, ArgStatus::bad_stride, "col_stride = 0 with E = " + to_string(a.E) + " > 1");
  if (a.T > 0) {
    // The largest element offset (and the outputs' T*k) must fit in int64 bytes.
    const std::int64_t lim = std::numeric_limits<std::int64_t>::max() / 8;
    const std::int64_t col_span = static_cast<std::int64_t>(a.E - 1) * a.col_stride;
    if (a.row_stride != 0 && a.T - 1 > (lim - col_span) / a.row_stride)
      return fail(message, ArgStatus::bad_stride, "the last element's offset overflows (T = " + to_string(a.T) + ", row_stride = " + to_string(a.row_stride) + ")");
    if (a.T > lim / a.k) return fail(message, ArgStatus::bad_shape, "T * k overflows");
    if (a.gating == nullptr) return fail(message, ArgStatus::null_pointer, "gating is null with T > 0");
    if (a.weights == nullptr) return fail(message, ArgStatus::null_pointer, "weights is null with T > 0");
    if (a.ids == nullptr) return fail(message, ArgStatus::null_pointer, "ids is null with T > 0");
  }
  if (message != nullptr) message->clear();
  return ArgStatus::ok;
}

/// Heuristic (tuning thresholds; re-measure with bench/routing_bench when a kernel changes):
///  * T >= kThreadPerRowMinRows (16384): thread_per_row. One row per thread needs T / 32
///    warps; 16384 rows are 512 warps, about one per scheduler of an H100 / H200 (132 SMs x 4
///    schedulers), the point from which the thread variant's per-row latency is hidden by
///    other rows. At T = 250000 on an H200 the warp/block variants reach only 15-23% of the
///    copy bandwidth (bf16 E = 128 k = 8: ~80 us against a ~19 us memory floor) because a
///    whole warp spends k rounds of reductions on one row; the thread variant streams each
///    row once through registers.
///  * below: warp_per_row for E <= kWarpMaxExperts (512), block_per_row above. Measured on
///    an H200 at T = 250000, k = 8, warp_per_row beats block_per_row at E = 512 (bf16 329 vs
///    405 us, f16 352 vs 538 us, f32 626 vs 654 us) and at E <= 256.
///  * E > kWarpMaxExperts and T >= kThreadPerRowLargeExpertMinRows (1024): thread_per_row, whose
///    lane groups give each long row up to 32 lanes with all their loads in flight. Measured on
///    an H200 (2026-12-01, E = 2048, k = 8): T = 1024 bf16 5.32 against 7.13 us (block_per_row),
///    f16 5.32 against 8.66, f32 10.56 against 11.61; T = 2048 bf16 7.50 against 12.44 us.
///    (Layouts without 16-byte units, e.g. transposed, run one thread per row there: slower.)
Variant choose_variant(int E, std::int64_t T, GatingType dtype) {
  if (T >= kThreadPerRowMinRows) return Variant::thread_per_row;
  if (E > kWarpMaxExperts && T >= kThreadPerRowLargeExpertMinRows) return Variant::thread_per_row;
  // fp32 rows of more than 256 experts give a warp 16 64-bit entries per lane to sort: with
  // few rows (no other rows to overlap with) one block per row finishes sooner.
  if (dtype == GatingType::f32 && E > 256 && T <= kBlockPreferMaxRows) return Variant::block_per_row;
  return E <= kWarpMaxExperts ? Variant::warp_per_row : Variant::block_per_row;
}

ArgStatus check_request(const RoutingArgs& a, Variant* v, Mutant m, std::string* message) {
  const ArgStatus st = validate_args(a, message);
  if (st != ArgStatus::ok) return st;
  if (static_cast<int>(m) < 0 || m >= Mutant::count_)
    return fail(message, ArgStatus::unsupported, "mutant " + std::to_string(static_cast<int>(m)) + " is out of range");
  if (*v == Variant::automatic) *v = choose_variant(a.E, a.T, a.dtype);
  if (*v != Variant::warp_per_row && *v != Variant::block_per_row && *v != Variant::thread_per_row)
    return fail(message, ArgStatus::unsupported, "variant " + std::to_string(static_cast<int>(*v)) + " is out of range");
  if (*v == Variant::warp_per_row && a.E > kWarpMaxExperts)
    return fail(message, ArgStatus::unsupported, "warp_per_row supports E <= " + std::to_string(kWarpMaxExperts) + ", got E = " + std::to_string(a.E));
  return ArgStatus::ok;
}

bool built_with_cuda() {
#if defined(MOECHECK_HAVE_CUDA_KERNELS)
  return true;
#else
  return false;
#endif
}

}  // namespace moecheck::kernels
