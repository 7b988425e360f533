// moecheck routing benchmarks: declarations shared by the benchmark translation units.
//
// routing_bench.cpp  main, context, BM_Copy (copy ceiling), BM_Route (fused kernels through
//                    launch_routing) and the shared timing loop;
// bench_kernels.cu   device helpers: input fill and the copy kernel;
// composite_bench.cpp BM_Composite (LibTorch ops on CUDA tensors), built only when LibTorch's
//                    CUDA backend is linked (MOECHECK_WITH_TORCH_CUDA).
// This header includes the CUDA runtime API header but no LibTorch header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include "kernels/routing_kernels.hpp"

namespace moecheck::bench {

// ---- CUDA error handling ---------------------------------------------------------------

/// "<call> failed: <error name> (<error string>)".
std::string cuda_error(const char* call, cudaError_t e);

/// Marks the benchmark as failed (SkipWithError with `message`) and counts the failure so
/// that the process exits non-zero at the end.
void fail(benchmark::State& state, const std::string& message);

/// Number of benchmarks that failed so far (CUDA error or wrong result).
int failure_count();

/// Inside a function returning std::string (empty = success): returns the error message
/// naming the call when it does not return cudaSuccess.
#define MOECHECK_BENCH_TRY(call)                                                     \
  do {                                                                               \
    const cudaError_t moecheck_bench_e_ = (call);                                    \
    if (moecheck_bench_e_ != cudaSuccess)                                            \
      return ::moecheck::bench::cuda_error(#call, moecheck_bench_e_);                \
  } while (0)

/// Inside a benchmark function: aborts the benchmark (SkipWithError naming the call and the
/// CUDA error) when the call does not return cudaSuccess.
#define MOECHECK_BENCH_CHECK(state, call)                                                   \
  do {                                                                                      \
    const cudaError_t moecheck_bench_e_ = (call);                                           \
    if (moecheck_bench_e_ != cudaSuccess) {                                                 \
      ::moecheck::bench::fail((state), ::moecheck::bench::cuda_error(#call, moecheck_bench_e_)); \
      return;                                                                               \
    }                                                                                       \
  } while (0)

/// Inside a benchmark function: aborts the benchmark when `expr` (a std::string error
/// message, empty = success) is not empty.
#define MOECHECK_BENCH_REQUIRE(state, expr)                     \
  do {                                                          \
    const std::string moecheck_bench_msg_ = (expr);             \
    if (!moecheck_bench_msg_.empty()) {                         \
      ::moecheck::bench::fail((state), moecheck_bench_msg_);    \
      return;                                                   \
    }                                                           \
  } while (0)

// ---- device memory -------------------------------------------------------------------

/// Owning device allocation (cudaMalloc / cudaFree).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  /// Frees the current allocation and allocates `bytes`; returns an error message or "".
  std::string allocate(std::size_t bytes);
  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  std::size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// ---- device helpers (bench_kernels.cu) -------------------------------------------------

/// Fills `n` gating elements of type `dtype` at `dst` with standard-normal values
/// (counter-based hash + Box-Muller, rounded to nearest even into fp16/bf16), a pure
/// function of (seed, element index). Launch error returned.
cudaError_t fill_normal(void* dst, std::int64_t n, kernels::GatingType dtype, std::uint64_t seed,
                        cudaStream_t stream);

/// Copies `bytes` (a multiple of 16, both pointers 16-byte aligned) with a vectorized
/// grid-stride kernel. Launch error returned.
cudaError_t copy_bytes(void* dst, const void* src, std::size_t bytes, cudaStream_t stream);

/// Launches a kernel of one warp that does nothing (the fixed cost of a launch). Launch error
/// returned.
cudaError_t launch_empty(cudaStream_t stream);

// ---- device and run-wide facts ---------------------------------------------------------

struct DeviceInfo {
  int device = 0;
  std::string name;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  std::size_t l2_bytes = 0;
  std::size_t total_bytes = 0;
  int memory_clock_khz = 0;
  int bus_width_bits = 0;
  double theoretical_bytes_per_second = 0;  ///< 2 (DDR) x memory clock x bus width
  double copy_bytes_per_second = 0;         ///< measured copy ceiling (read + write bytes / s)
  std::size_t copy_buffer_bytes = 0;        ///< size of each buffer of the copy ceiling
  bool copy_with_memcpy = false;            ///< the ceiling came from cudaMemcpyAsync (faster
                                            ///< than the copy kernel on this device)
  cudaStream_t stream = nullptr;            ///< stream of the fused/copy benchmarks
};

/// Facts about the benchmarked device, filled in by main before any benchmark runs.
const DeviceInfo& device_info();

/// Bytes of distinct gating data a benchmark cycles through, so that every launch reads
/// its input from device memory and not from L2 (a multiple of the L2 size).
std::size_t rotation_bytes();

/// Device memory a benchmark may allocate for its inputs and outputs (a fraction of the
/// currently free memory); "" or an error message.
std::string memory_budget(std::size_t* out);

/// Number of rotating input slots whose gating takes `slot_bytes` each: enough to cover
/// rotation_bytes(), at least 2, at most `max_slots` (what fits in memory); 0 when
/// max_slots is 0.
std::int64_t rotation_slots(std::size_t slot_bytes, std::size_t max_slots);

/// Per-expert scale of E experts, uniform in [0.5, 2], fixed seed.
std::vector<float> make_scale(int E);

/// Seed of the gating data of one benchmark configuration.
std::uint64_t gating_seed(kernels::GatingType dtype, int E, int k, std::int64_t T);

const char* dtype_name(kernels::GatingType t);
std::size_t dtype_bytes(kernels::GatingType t);

/// Effective bytes of one routing problem: the gating read once, the scale read once and
/// the weights (fp32) and ids (int32) written once: T*E*sizeof(gating) + E*4 + T*k*8.
double effective_bytes(kernels::GatingType dtype, int E, int k, std::int64_t T);

// ---- the benchmark grid -----------------------------------------------------------------

struct Shape {
  int E;
  int k;
};
const std::vector<Shape>& grid_shapes();
const std::vector<std::int64_t>& grid_tokens();
const std::vector<kernels::GatingType>& grid_dtypes();

// ---- cached per-configuration state ----------------------------------------------------

/// State built once per benchmark configuration (inputs, verification, launch plan) and
/// kept while Google Benchmark calls the benchmark function again for the same
/// configuration (iteration-count probing, repetitions). Only one exists at a time, so the
/// device memory of the previous configuration is released before the next allocates.
struct Fixture {
  virtual ~Fixture() = default;
};
/// The current fixture when its key is `key`, else nullptr.
Fixture* find_fixture(const std::string& key);
/// Destroys the current fixture (frees its memory).
void release_fixture();
/// Makes `f` the current fixture under `key` (the previous one must have been released).
Fixture* install_fixture(const std::string& key, std::unique_ptr<Fixture> f);

// ---- timing ------------------------------------------------------------------------------

/// One launch of the benchmarked operation; returns an error message or "".
using LaunchFn = std::function<std::string()>;

/// Warm-up launches, then a short timed batch to choose how many launches one timed batch
/// holds (about 1 ms of device time). Returns an error message or "".
std::string plan_launches(cudaStream_t stream, const LaunchFn& launch, int* launches_per_batch);

/// The timed loop (UseManualTime): batches of `launches_per_batch` launches between two CUDA
/// events on `stream`; each batch counts as that many benchmark iterations, so the reported
/// time is the time per launch. Sets the counters bytes_per_second, copy_fraction, floor_us,
/// bytes (`bytes` = effective bytes per launch) and rows (when rows > 0). On error the
/// benchmark is failed and the loop left.
void run_timed(benchmark::State& state, cudaStream_t stream, const LaunchFn& launch,
               int launches_per_batch, double bytes, std::int64_t rows);

/// run_timed for a `launch` that replays a CUDA graph of `launches_per_replay` launches: each
/// timed batch is one replay, counted as that many iterations.
void run_timed_graph(benchmark::State& state, cudaStream_t stream, const LaunchFn& replay,
                     int launches_per_replay, double bytes, std::int64_t rows);

#if defined(MOECHECK_BENCH_CAMPAIGN)
/// Registers BM_Campaign/path:<device|host>/dtype:<d>/E:<E>/k:<k>/T:<T>/manual_time: campaign
/// throughput on each checking path (campaign_bench.cpp).
void register_campaign_benchmarks();
#endif

#if defined(MOECHECK_WITH_TORCH_CUDA)
/// Registers BM_Composite/dtype:<d>/E:<E>/k:<k>/T:<T>/manual_time (composite_bench.cpp).
void register_composite_benchmarks();
#endif

}  // namespace moecheck::bench
