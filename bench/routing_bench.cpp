// moecheck_routing_bench: Google Benchmark binary for the fused routing kernels.
//
// Benchmarks (names are parsed by reports/bench.cpp):
//   BM_Copy/bytes:<N>/manual_time                          copy ceiling (N bytes read + N written)
//   BM_Launch/manual_time                                  a kernel that does nothing, graph replay
//   BM_Route/variant:<v>/dtype:<d>/E:<E>/k:<k>/T:<T>/manual_time   launch_routing, gemma4 family
//     (v: warp_per_row, block_per_row, thread_per_row, auto, or thread_single: thread_per_row
//     with one thread per row at every T, launch_thread_per_row_lanes(a, 1, ..), or
//     thread_lanes<N>: N lanes per row, registered for each N in MOECHECK_BENCH_LANES)
//   BM_Composite/dtype:<d>/E:<E>/k:<k>/T:<T>/manual_time   LibTorch composite (when linked)
//   BM_Campaign/path:<p>/dtype:<d>/E:<E>/k:<k>/T:<T>/manual_time   campaign throughput per
//                                                          checking path (campaign_bench.cpp)
// Times are per launch, measured with CUDA events (UseManualTime; one benchmark iteration
// is one launch, timed in batches of about 1 ms). BM_Route replays each batch from a CUDA
// graph (device time per launch, without the host's launch rate; the counter
// stream_launch_us gives the same batch launched from the host one by one). Every launch reads a
// different slice of a pool of gating buffers several times the size of L2, so the input
// comes from device memory. Each configuration is checked once before it is timed: the
// outputs are poisoned, one launch must write every element, and the first and last rows
// must match the host emulation (emulate_routing) bit for bit.
//
// Counters: bytes_per_second (effective bytes / time per launch; effective bytes =
// T*E*sizeof(gating) + E*4 + T*k*8), copy_fraction (bytes_per_second / copy ceiling),
// floor_us (effective bytes / copy ceiling), rows (T), bytes (effective bytes).
// Context: moecheck_device, moecheck_driver, moecheck_toolkit, moecheck_commit,
// moecheck_copy_ceiling_gbs and further moecheck_* device facts.
//
// Without a CUDA device the binary prints why and exits with status 1. It also exits 1 when
// any benchmark failed (CUDA error or wrong result); the JSON output is written regardless.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include "bench/bench_common.hpp"
#include "kernels/routing_cuda.hpp"
#include "kernels/routing_kernels.hpp"

#ifndef MOECHECK_GIT_COMMIT
#define MOECHECK_GIT_COMMIT "unknown"
#endif
#ifndef MOECHECK_CUDA_COMPILER_VERSION
#define MOECHECK_CUDA_COMPILER_VERSION "unknown"
#endif

namespace moecheck::bench {

using kernels::GatingType;
using kernels::RoutingArgs;
using kernels::Variant;

namespace {

DeviceInfo g_info;
std::atomic<int> g_failures{0};

constexpr std::size_t kAlign = 256;               ///< slot alignment (keeps vector loads legal)
constexpr double kBatchTargetSeconds = 1e-3;  ///< device time per timed batch
constexpr std::size_t kCopyBytes = std::size_t{1} << 30;
constexpr std::int64_t kCheckRows = 1024;         ///< rows compared at each end of the output

std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string version_string(int v) {
  // CUDA encodes versions as 1000 * major + 10 * minor.
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string format_double(double v, int precision = 6) {
  std::ostringstream s;
  s.precision(precision);
  s << v;
  return s.str();
}

/// Display driver version from /proc/driver/nvidia/version ("" when unavailable).
std::string kernel_module_version() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  if (!in || !std::getline(in, line)) return {};
  std::istringstream words(line);
  std::string w;
  while (words >> w) {
    const bool digits_and_dots =
        !w.empty() && std::isdigit(static_cast<unsigned char>(w[0])) &&
        w.find('.') != std::string::npos &&
        std::all_of(w.begin(), w.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '.'; });
    if (digits_and_dots) return w;
  }
  return {};
}

// ---- fixtures ------------------------------------------------------------------------------

std::unique_ptr<Fixture> g_fixture;
std::string g_fixture_key;

/// Two CUDA events, destroyed on scope exit.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  std::string create() {
    MOECHECK_BENCH_TRY(cudaEventCreate(&start));
    MOECHECK_BENCH_TRY(cudaEventCreate(&stop));
    return {};
  }
  ~EventPair() {
    if (start != nullptr) (void)cudaEventDestroy(start);
    if (stop != nullptr) (void)cudaEventDestroy(stop);
  }
};

/// Times `n` launches on `stream`; *seconds = elapsed device time.
std::string time_batch(cudaStream_t stream, const LaunchFn& launch, int n, double* seconds) {
  EventPair ev;
  if (std::string e = ev.create(); !e.empty()) return e;
  MOECHECK_BENCH_TRY(cudaEventRecord(ev.start, stream));
  for (int i = 0; i < n; ++i)
    if (std::string e = launch(); !e.empty()) return e;
  MOECHECK_BENCH_TRY(cudaEventRecord(ev.stop, stream));
  MOECHECK_BENCH_TRY(cudaEventSynchronize(ev.stop));
  float ms = 0;
  MOECHECK_BENCH_TRY(cudaEventElapsedTime(&ms, ev.start, ev.stop));
  *seconds = static_cast<double>(ms) * 1e-3;
  return {};
}

// ---- BM_Copy ---------------------------------------------------------------------------------

struct CopyFixture final : Fixture {
  DeviceBuffer src, dst;
  std::size_t bytes = 0;
  int launches_per_batch = 0;
};

std::string make_copy_buffers(std::size_t bytes, DeviceBuffer& src, DeviceBuffer& dst) {
  if (std::string e = src.allocate(bytes); !e.empty()) return e;
  if (std::string e = dst.allocate(bytes); !e.empty()) return e;
  MOECHECK_BENCH_TRY(fill_normal(src.get(), static_cast<std::int64_t>(bytes / 4), GatingType::f32, 0xC0FFEEull,
                                 g_info.stream));
  MOECHECK_BENCH_TRY(cudaMemsetAsync(dst.get(), 0xFF, bytes, g_info.stream));
  MOECHECK_BENCH_TRY(cudaStreamSynchronize(g_info.stream));
  return {};
}

void bm_copy(benchmark::State& state, std::size_t bytes) {
  const std::string key = "copy/" + std::to_string(bytes);
  auto* f = static_cast<CopyFixture*>(find_fixture(key));
  if (f == nullptr) {
    release_fixture();
    auto nf = std::make_unique<CopyFixture>();
    nf->bytes = bytes;
    MOECHECK_BENCH_REQUIRE(state, make_copy_buffers(bytes, nf->src, nf->dst));
    f = static_cast<CopyFixture*>(install_fixture(key, std::move(nf)));
  }
  const LaunchFn launch = [f]() -> std::string {
    if (g_info.copy_with_memcpy)
      MOECHECK_BENCH_TRY(cudaMemcpyAsync(f->dst.get(), f->src.get(), f->bytes, cudaMemcpyDeviceToDevice, g_info.stream));
    else
      MOECHECK_BENCH_TRY(copy_bytes(f->dst.get(), f->src.get(), f->bytes, g_info.stream));
    return {};
  };
  if (f->launches_per_batch == 0)
    MOECHECK_BENCH_REQUIRE(state, plan_launches(g_info.stream, launch, &f->launches_per_batch));
  run_timed(state, g_info.stream, launch, f->launches_per_batch, 2.0 * static_cast<double>(bytes), 0);
}

/// Copy speeds (read + write bytes / s) of the copy kernel and of a device-to-device
/// cudaMemcpyAsync: median of 10 timed copies of `bytes` each.
std::string measure_copy(std::size_t bytes, double* kernel_bytes_per_second, double* memcpy_bytes_per_second) {
  DeviceBuffer src, dst;
  if (std::string e = make_copy_buffers(bytes, src, dst); !e.empty()) return e;
  const auto median_of_runs = [&](const LaunchFn& launch, double* out) -> std::string {
    for (int i = 0; i < 2; ++i)
      if (std::string e = launch(); !e.empty()) return e;
    std::vector<double> t(10);
    for (double& s : t)
      if (std::string e = time_batch(g_info.stream, launch, 1, &s); !e.empty()) return e;
    std::sort(t.begin(), t.end());
    const double median = 0.5 * (t[4] + t[5]);
    if (!(median > 0)) return "copy ceiling: measured a non-positive time";
    *out = 2.0 * static_cast<double>(bytes) / median;
    return {};
  };
  if (std::string e = median_of_runs(
          [&]() -> std::string {
            MOECHECK_BENCH_TRY(copy_bytes(dst.get(), src.get(), bytes, g_info.stream));
            return {};
          },
          kernel_bytes_per_second);
      !e.empty())
    return e;
  return median_of_runs(
      [&]() -> std::string {
        MOECHECK_BENCH_TRY(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, g_info.stream));
        return {};
      },
      memcpy_bytes_per_second);
}

// ---- BM_Route --------------------------------------------------------------------------------

/// An instantiated CUDA graph, destroyed on scope exit.
struct GraphExec {
  cudaGraphExec_t exec = nullptr;
  ~GraphExec() {
    if (exec != nullptr) (void)cudaGraphExecDestroy(exec);
  }
};

/// Captures `n` calls of `launch` on `stream` into a graph and instantiates it.
std::string capture_graph(cudaStream_t stream, const LaunchFn& launch, int n, GraphExec* out) {
  MOECHECK_BENCH_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  std::string err;
  for (int i = 0; i < n && err.empty(); ++i) err = launch();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (err.empty() && end != cudaSuccess) err = cuda_error("cudaStreamEndCapture", end);
  if (err.empty()) {
    const cudaError_t inst = cudaGraphInstantiate(&out->exec, graph, 0);
    if (inst != cudaSuccess) err = cuda_error("cudaGraphInstantiate", inst);
  }
  if (graph != nullptr) (void)cudaGraphDestroy(graph);
  return err;
}

struct RouteFixture final : Fixture {
  GatingType dtype = GatingType::f32;
  int E = 0, k = 0;
  std::int64_t T = 0;
  DeviceBuffer gating, weights, ids, scale;
  std::size_t gating_stride = 0;  ///< bytes between the gating of consecutive slots
  std::size_t output_stride = 0;  ///< bytes between the weights (ids) of consecutive slots
  std::int64_t slots = 0;
  std::int64_t next = 0;          ///< slot of the next launch
  std::vector<float> host_scale;
  std::map<int, int> plans;              ///< variant -> launches per iteration (verified)
  std::map<int, std::string> failures;   ///< variant -> why it cannot be timed
  std::map<int, std::unique_ptr<GraphExec>> graphs;  ///< variant -> graph of plans[v] launches
  std::map<int, double> stream_seconds;  ///< variant -> per-launch time of stream launches

  RoutingArgs args(std::int64_t slot) const {
    RoutingArgs a;
    a.gating = gating.as<char>() + static_cast<std::size_t>(slot) * gating_stride;
    a.dtype = dtype;
    a.T = T;
    a.E = E;
    a.k = k;
    a.row_stride = E;
    a.col_stride = 1;
    a.scale = scale.as<float>();
    a.family = kernels::KernelFamily::gemma4;
    a.weights = reinterpret_cast<float*>(weights.as<char>() + static_cast<std::size_t>(slot) * output_stride);
    a.ids = reinterpret_cast<std::int32_t*>(ids.as<char>() + static_cast<std::size_t>(slot) * output_stride);
    return a;
  }
};

std::string create_route_fixture(GatingType dtype, int E, int k, std::int64_t T, RouteFixture* f) {
  f->dtype = dtype;
  f->E = E;
  f->k = k;
  f->T = T;
  const std::size_t elem = dtype_bytes(dtype);
  f->gating_stride = align_up(static_cast<std::size_t>(T) * static_cast<std::size_t>(E) * elem);
  f->output_stride = align_up(static_cast<std::size_t>(T) * static_cast<std::size_t>(k) * 4);
  std::size_t budget = 0;
  if (std::string e = memory_budget(&budget); !e.empty()) return e;
  const std::size_t slot_bytes = f->gating_stride + 2 * f->output_stride;
  f->slots = rotation_slots(f->gating_stride, budget / slot_bytes);
  if (f->slots == 0)
    return "not enough device memory for one input (" + std::to_string(slot_bytes) + " bytes, budget " +
           std::to_string(budget) + ")";
  const std::size_t n = static_cast<std::size_t>(f->slots);
  if (std::string e = f->gating.allocate(n * f->gating_stride); !e.empty()) return e;
  if (std::string e = f->weights.allocate(n * f->output_stride); !e.empty()) return e;
  if (std::string e = f->ids.allocate(n * f->output_stride); !e.empty()) return e;
  if (std::string e = f->scale.allocate(static_cast<std::size_t>(E) * sizeof(float)); !e.empty()) return e;
  // The whole pool (slot padding included) holds normal values; no slot is ever zeros.
  MOECHECK_BENCH_TRY(fill_normal(f->gating.get(), static_cast<std::int64_t>(n * f->gating_stride / elem), dtype,
                                 gating_seed(dtype, E, k, T), g_info.stream));
  f->host_scale = make_scale(E);
  MOECHECK_BENCH_TRY(cudaMemcpyAsync(f->scale.get(), f->host_scale.data(), f->host_scale.size() * sizeof(float),
                                     cudaMemcpyHostToDevice, g_info.stream));
  MOECHECK_BENCH_TRY(cudaStreamSynchronize(g_info.stream));
  return {};
}

std::string launch_error(cudaError_t e) { return cuda_error("launch_routing", e); }

/// A timed kernel: a variant of launch_routing, or (lanes >= 1) thread_per_row with a fixed
/// number of lanes per row (launch_thread_per_row_lanes; `thread_single` = one thread per
/// row, the thread_per_row kernel of the 2026-11-27 baselines, kept for same-run comparisons).
struct BenchKernel {
  Variant v = Variant::automatic;
  int lanes = -1;
  int key() const { return lanes >= 0 ? 100 + lanes : static_cast<int>(v); }
  cudaError_t launch(const RoutingArgs& a, cudaStream_t stream) const {
    return lanes >= 0 ? kernels::launch_thread_per_row_lanes(a, lanes, stream) : kernels::launch_routing(a, v, stream);
  }
};

/// One launch on slot 0 with poisoned outputs: every output element must be written, ids in
/// range, and rows [0, n0) and [T - n1, T) bit-identical to emulate_routing.
std::string verify_variant(const RouteFixture& f, const BenchKernel& kern) {
  const Variant v = kern.v;
  const std::int64_t T = f.T;
  const int E = f.E, k = f.k;
  const std::size_t out_n = static_cast<std::size_t>(T) * static_cast<std::size_t>(k);
  const RoutingArgs a = f.args(0);
  MOECHECK_BENCH_TRY(cudaMemsetAsync(a.weights, 0xFF, out_n * sizeof(float), g_info.stream));
  MOECHECK_BENCH_TRY(cudaMemsetAsync(a.ids, 0xFF, out_n * sizeof(std::int32_t), g_info.stream));
  if (const cudaError_t e = kern.launch(a, g_info.stream); e != cudaSuccess) return launch_error(e);
  MOECHECK_BENCH_TRY(cudaStreamSynchronize(g_info.stream));
  std::vector<float> w(out_n);
  std::vector<std::int32_t> id(out_n);
  MOECHECK_BENCH_TRY(cudaMemcpy(w.data(), a.weights, out_n * sizeof(float), cudaMemcpyDeviceToHost));
  MOECHECK_BENCH_TRY(cudaMemcpy(id.data(), a.ids, out_n * sizeof(std::int32_t), cudaMemcpyDeviceToHost));
  const auto where = [k](std::size_t i) {
    return "row " + std::to_string(i / static_cast<std::size_t>(k)) + " slot " + std::to_string(i % static_cast<std::size_t>(k));
  };
  for (std::size_t i = 0; i < out_n; ++i) {
    std::uint32_t wb = 0;
    std::memcpy(&wb, &w[i], sizeof wb);
    if (wb == 0xFFFFFFFFu || id[i] == -1) return "wrong result: output not written at " + where(i);
    if (id[i] < 0 || id[i] >= E)
      return "wrong result: id " + std::to_string(id[i]) + " outside [0, " + std::to_string(E) + ") at " + where(i);
  }
  const std::int64_t n0 = std::min<std::int64_t>(T, kCheckRows);
  const std::int64_t n1 = std::min<std::int64_t>(T - n0, kCheckRows);
  const std::size_t elem = dtype_bytes(f.dtype);
  for (const auto& [first, n] : {std::pair<std::int64_t, std::int64_t>{0, n0}, {T - n1, n1}}) {
    if (n == 0) continue;
    const std::size_t in_bytes = static_cast<std::size_t>(n) * static_cast<std::size_t>(E) * elem;
    std::vector<unsigned char> g(in_bytes);
    MOECHECK_BENCH_TRY(cudaMemcpy(g.data(),
                                  static_cast<const unsigned char*>(a.gating) +
                                      static_cast<std::size_t>(first) * static_cast<std::size_t>(E) * elem,
                                  in_bytes, cudaMemcpyDeviceToHost));
    if (std::all_of(g.begin(), g.end(), [](unsigned char c) { return c == 0; }))
      return "input rows [" + std::to_string(first) + ", " + std::to_string(first + n) + ") are all zeros";
    const std::size_t rn = static_cast<std::size_t>(n) * static_cast<std::size_t>(k);
    std::vector<float> ew(rn);
    std::vector<std::int32_t> eid(rn);
    RoutingArgs h = a;
    h.gating = g.data();
    h.T = n;
    h.scale = f.host_scale.data();
    h.weights = ew.data();
    h.ids = eid.data();
    std::string msg;
    // automatic resolves with the launch's T (the emulated slice has fewer rows).
    const Variant ev = v == Variant::automatic ? kernels::choose_variant(E, T, f.dtype) : v;
    if (kernels::emulate_routing(h, ev, kernels::Mutant::none, &msg) != kernels::ArgStatus::ok)
      return "emulate_routing rejected the problem: " + msg;
    const std::size_t base = static_cast<std::size_t>(first) * static_cast<std::size_t>(k);
    for (std::size_t i = 0; i < rn; ++i) {
      if (std::memcmp(&ew[i], &w[base + i], sizeof(float)) != 0 || eid[i] != id[base + i]) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "(expected id %d weight %.9g, got id %d weight %.9g)", eid[i],
                      static_cast<double>(ew[i]), id[base + i], static_cast<double>(w[base + i]));
        return "wrong result: differs from emulate_routing at " + where(base + i) + " " + buf;
      }
    }
  }
  return {};
}

void bm_route(benchmark::State& state, GatingType dtype, int E, int k, std::int64_t T, BenchKernel kern) {
  const std::string key = "route/" + std::string(dtype_name(dtype)) + "/" + std::to_string(E) + "/" +
                          std::to_string(k) + "/" + std::to_string(T);
  auto* f = static_cast<RouteFixture*>(find_fixture(key));
  if (f == nullptr) {
    release_fixture();
    auto nf = std::make_unique<RouteFixture>();
    MOECHECK_BENCH_REQUIRE(state, create_route_fixture(dtype, E, k, T, nf.get()));
    f = static_cast<RouteFixture*>(install_fixture(key, std::move(nf)));
  }
  const int vi = kern.key();
  if (const auto bad = f->failures.find(vi); bad != f->failures.end()) MOECHECK_BENCH_REQUIRE(state, bad->second);
  const LaunchFn launch = [f, kern]() -> std::string {
    const RoutingArgs a = f->args(f->next);
    f->next = f->next + 1 == f->slots ? 0 : f->next + 1;
    if (const cudaError_t e = kern.launch(a, g_info.stream); e != cudaSuccess) return launch_error(e);
    return {};
  };
  if (f->plans.find(vi) == f->plans.end()) {
    std::string err = verify_variant(*f, kern);
    int per_batch = 0;
    if (err.empty()) err = plan_launches(g_info.stream, launch, &per_batch);
    double stream_seconds = 0;
    if (err.empty()) err = time_batch(g_info.stream, launch, per_batch, &stream_seconds);
    auto graph = std::make_unique<GraphExec>();
    if (err.empty()) err = capture_graph(g_info.stream, launch, per_batch, graph.get());
    if (!err.empty()) {
      f->failures[vi] = err;
      MOECHECK_BENCH_REQUIRE(state, err);
    }
    f->plans[vi] = per_batch;
    f->stream_seconds[vi] = stream_seconds / per_batch;
    f->graphs[vi] = std::move(graph);
  }
  // The launches are replayed from a CUDA graph (one graph of plans[v] launches over the
  // rotating slots per timed batch): the time per launch is the device's, not the host's
  // launch rate; stream_launch_us is the same batch launched one by one from the host.
  const cudaGraphExec_t exec = f->graphs[vi]->exec;
  const LaunchFn replay = [exec]() -> std::string {
    MOECHECK_BENCH_TRY(cudaGraphLaunch(exec, g_info.stream));
    return {};
  };
  run_timed_graph(state, g_info.stream, replay, f->plans[vi], effective_bytes(dtype, E, k, T), T);
  state.counters["stream_launch_us"] = f->stream_seconds[vi] * 1e6;
}

/// BM_Launch: graph replay of a kernel that does nothing, timed like BM_Route (the fixed
/// device time of one launch in a graph, which no routing launch can go below).
struct LaunchFixture final : Fixture {
  int per_batch = 0;
  GraphExec graph;
};

void bm_launch(benchmark::State& state) {
  const LaunchFn launch = []() -> std::string {
    MOECHECK_BENCH_TRY(launch_empty(g_info.stream));
    return {};
  };
  auto* f = static_cast<LaunchFixture*>(find_fixture("launch"));
  if (f == nullptr) {
    release_fixture();
    auto nf = std::make_unique<LaunchFixture>();
    MOECHECK_BENCH_REQUIRE(state, plan_launches(g_info.stream, launch, &nf->per_batch));
    MOECHECK_BENCH_REQUIRE(state, capture_graph(g_info.stream, launch, nf->per_batch, &nf->graph));
    f = static_cast<LaunchFixture*>(install_fixture("launch", std::move(nf)));
  }
  const cudaGraphExec_t exec = f->graph.exec;
  const int per_batch = f->per_batch;
  const LaunchFn replay = [exec]() -> std::string {
    MOECHECK_BENCH_TRY(cudaGraphLaunch(exec, g_info.stream));
    return {};
  };
  run_timed_graph(state, g_info.stream, replay, per_batch, 0.0, 0);
}

std::string bench_variant_name(const BenchKernel& k) {
  if (k.lanes == 1) return "thread_single";
  if (k.lanes >= 0) return "thread_lanes" + std::to_string(k.lanes);
  return k.v == Variant::automatic ? "auto" : kernels::variant_name(k.v);
}

/// The timed kernels: every variant, thread_single, and thread_lanes<N> for each N in the
/// comma-separated environment variable MOECHECK_BENCH_LANES (2, 4, .., 32; for tuning
/// row::thread_lanes_per_row).
std::vector<BenchKernel> kernels_to_time() {
  std::vector<BenchKernel> v = {BenchKernel{Variant::warp_per_row}, BenchKernel{Variant::block_per_row},
                                BenchKernel{Variant::thread_per_row}, BenchKernel{Variant::thread_per_row, 1}};
  if (const char* env = std::getenv("MOECHECK_BENCH_LANES"); env != nullptr) {
    std::stringstream in(env);
    std::string item;
    while (std::getline(in, item, ',')) {
      const int n = std::atoi(item.c_str());
      if (n >= 2 && n <= 32 && (n & (n - 1)) == 0) v.push_back(BenchKernel{Variant::thread_per_row, n});
    }
  }
  v.push_back(BenchKernel{Variant::automatic});
  return v;
}

void register_benchmarks(std::size_t copy_bytes_n) {
  benchmark::RegisterBenchmark(("BM_Copy/bytes:" + std::to_string(copy_bytes_n)).c_str(),
                               [copy_bytes_n](benchmark::State& st) { bm_copy(st, copy_bytes_n); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_Launch", [](benchmark::State& st) { bm_launch(st); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  for (GatingType dtype : grid_dtypes()) {
    for (const Shape& s : grid_shapes()) {
      for (std::int64_t T : grid_tokens()) {
        for (const BenchKernel v : kernels_to_time()) {
          if (v.v == Variant::warp_per_row && s.E > kernels::kWarpMaxExperts) continue;
          const std::string name = std::string("BM_Route/variant:") + bench_variant_name(v) + "/dtype:" +
                                   dtype_name(dtype) + "/E:" + std::to_string(s.E) + "/k:" +
                                   std::to_string(s.k) + "/T:" + std::to_string(T);
          const int E = s.E, k = s.k;
          benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { bm_route(st, dtype, E, k, T, v); })
              ->UseManualTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
  }
#if defined(MOECHECK_WITH_TORCH_CUDA)
  register_composite_benchmarks();
#endif
#if defined(MOECHECK_BENCH_CAMPAIGN)
  register_campaign_benchmarks();
#endif
}

/// Device selection and facts; "" or why there is no usable device.
std::string init_device() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return cuda_error("cudaGetDeviceCount", e);
  if (count == 0) return "cudaGetDeviceCount found no device";
  DeviceInfo& d = g_info;
  MOECHECK_BENCH_TRY(cudaGetDevice(&d.device));
  cudaDeviceProp p{};
  MOECHECK_BENCH_TRY(cudaGetDeviceProperties(&p, d.device));
  d.name = p.name;
  d.total_bytes = p.totalGlobalMem;
  int l2 = 0;
  MOECHECK_BENCH_TRY(cudaDeviceGetAttribute(&d.sm_count, cudaDevAttrMultiProcessorCount, d.device));
  MOECHECK_BENCH_TRY(cudaDeviceGetAttribute(&d.cc_major, cudaDevAttrComputeCapabilityMajor, d.device));
  MOECHECK_BENCH_TRY(cudaDeviceGetAttribute(&d.cc_minor, cudaDevAttrComputeCapabilityMinor, d.device));
  MOECHECK_BENCH_TRY(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, d.device));
  MOECHECK_BENCH_TRY(cudaDeviceGetAttribute(&d.memory_clock_khz, cudaDevAttrMemoryClockRate, d.device));
  MOECHECK_BENCH_TRY(cudaDeviceGetAttribute(&d.bus_width_bits, cudaDevAttrGlobalMemoryBusWidth, d.device));
  d.l2_bytes = static_cast<std::size_t>(l2);
  d.theoretical_bytes_per_second =
      2.0 * static_cast<double>(d.memory_clock_khz) * 1e3 * static_cast<double>(d.bus_width_bits) / 8.0;
  MOECHECK_BENCH_TRY(cudaStreamCreateWithFlags(&d.stream, cudaStreamNonBlocking));
  return {};
}

void add_context(double kernel_bytes_per_second, double memcpy_bytes_per_second) {
  const DeviceInfo& d = g_info;
  int driver = 0, runtime = 0;
  const cudaError_t de = cudaDriverGetVersion(&driver);
  const cudaError_t re = cudaRuntimeGetVersion(&runtime);
  const std::string driver_api = de == cudaSuccess ? version_string(driver) : cuda_error("cudaDriverGetVersion", de);
  const std::string module = kernel_module_version();
  benchmark::AddCustomContext("moecheck_device", d.name);
  benchmark::AddCustomContext("moecheck_driver", module.empty() ? "CUDA driver API " + driver_api : module);
  benchmark::AddCustomContext("moecheck_driver_cuda", driver_api);
  benchmark::AddCustomContext("moecheck_runtime",
                              re == cudaSuccess ? version_string(runtime) : cuda_error("cudaRuntimeGetVersion", re));
  benchmark::AddCustomContext("moecheck_toolkit", std::string("CUDA ") + MOECHECK_CUDA_COMPILER_VERSION);
  benchmark::AddCustomContext("moecheck_commit", MOECHECK_GIT_COMMIT);
  benchmark::AddCustomContext("moecheck_compute_capability",
                              std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
  benchmark::AddCustomContext("moecheck_sm_count", std::to_string(d.sm_count));
  benchmark::AddCustomContext("moecheck_memory_bytes", std::to_string(d.total_bytes));
  benchmark::AddCustomContext("moecheck_l2_bytes", std::to_string(d.l2_bytes));
  benchmark::AddCustomContext("moecheck_memory_clock_mhz", format_double(d.memory_clock_khz / 1e3));
  benchmark::AddCustomContext("moecheck_memory_bus_width_bits", std::to_string(d.bus_width_bits));
  benchmark::AddCustomContext("moecheck_theoretical_bw_gbs", format_double(d.theoretical_bytes_per_second / 1e9));
  benchmark::AddCustomContext("moecheck_copy_ceiling_gbs", format_double(d.copy_bytes_per_second / 1e9));
  benchmark::AddCustomContext("moecheck_copy_method",
                              std::string(d.copy_with_memcpy ? "cudaMemcpyAsync device to device"
                                                             : "vectorized copy kernel") +
                                  ", " + std::to_string(d.copy_buffer_bytes) +
                                  " bytes, read + write, median of 10 (the faster of kernel and memcpy)");
  benchmark::AddCustomContext("moecheck_copy_kernel_gbs", format_double(kernel_bytes_per_second / 1e9));
  benchmark::AddCustomContext("moecheck_memcpy_gbs", format_double(memcpy_bytes_per_second / 1e9));
  benchmark::AddCustomContext("moecheck_rotation_bytes", std::to_string(rotation_bytes()));
  benchmark::AddCustomContext("moecheck_family", "gemma4");
#if defined(MOECHECK_WITH_TORCH_CUDA)
  benchmark::AddCustomContext("moecheck_composite", "LibTorch");
#else
  benchmark::AddCustomContext("moecheck_composite", "not built (LibTorch CUDA backend not linked)");
#endif
}

bool has_flag(int argc, char** argv, const char* name) {
  const std::size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], name, n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '=')) return true;
  return false;
}

bool flag_is_true(int argc, char** argv, const char* name) {
  const std::string bare = name, eq = bare + "=";
  bool on = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == bare) on = true;
    else if (a.rfind(eq, 0) == 0) {
      const std::string v = a.substr(eq.size());
      on = !(v == "false" || v == "0" || v == "no" || v == "off");
    }
  }
  return on;
}

}  // namespace

// ---- shared definitions -----------------------------------------------------------------------

std::string cuda_error(const char* call, cudaError_t e) {
  return std::string(call) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

void fail(benchmark::State& state, const std::string& message) {
  ++g_failures;
  state.SkipWithError(message.c_str());
}

int failure_count() { return g_failures.load(); }

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) {
    const cudaError_t e = cudaFree(ptr_);
    if (e != cudaSuccess) std::fprintf(stderr, "moecheck_routing_bench: %s\n", cuda_error("cudaFree", e).c_str());
  }
}

std::string DeviceBuffer::allocate(std::size_t bytes) {
  if (ptr_ != nullptr) {
    void* p = ptr_;
    ptr_ = nullptr;
    bytes_ = 0;
    MOECHECK_BENCH_TRY(cudaFree(p));
  }
  MOECHECK_BENCH_TRY(cudaMalloc(&ptr_, bytes));
  bytes_ = bytes;
  return {};
}

const DeviceInfo& device_info() { return g_info; }

std::size_t rotation_bytes() {
  // Four times L2 (H100: 4 x 50 MB): with LRU-like replacement nothing of a slot survives
  // until the slot comes round again.
  const std::size_t l2 = g_info.l2_bytes > 0 ? g_info.l2_bytes : std::size_t{50} << 20;
  return std::max<std::size_t>(4 * l2, std::size_t{64} << 20);
}

std::string memory_budget(std::size_t* out) {
  std::size_t free_b = 0, total_b = 0;
  MOECHECK_BENCH_TRY(cudaMemGetInfo(&free_b, &total_b));
  const std::size_t reserve = std::size_t{512} << 20;
  *out = free_b > reserve ? (free_b - reserve) / 10 * 7 : 0;
  return {};
}

std::int64_t rotation_slots(std::size_t slot_bytes, std::size_t max_slots) {
  if (slot_bytes == 0 || max_slots == 0) return 0;
  constexpr std::size_t kMaxSlots = std::size_t{1} << 21;
  std::size_t want = (rotation_bytes() + slot_bytes - 1) / slot_bytes;
  want = std::clamp<std::size_t>(want, 2, kMaxSlots);
  return static_cast<std::int64_t>(std::min(want, max_slots));
}

std::vector<float> make_scale(int E) {
  std::mt19937_64 rng(0x5CA1Eull + static_cast<std::uint64_t>(E));
  std::vector<float> s(static_cast<std::size_t>(E));
  for (float& x : s) {
    const double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    x = static_cast<float>(0.5 + 1.5 * u);
  }
  return s;
}

std::uint64_t gating_seed(GatingType dtype, int E, int k, std::int64_t T) {
  std::uint64_t h = 0x6D6F65636865636Bull;  // "moecheck"
  for (std::uint64_t v : {static_cast<std::uint64_t>(dtype), static_cast<std::uint64_t>(E),
                          static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(T)})
    h = (h ^ v) * 0x100000001B3ull;
  return h;
}

const char* dtype_name(GatingType t) {
  switch (t) {
    case GatingType::f32: return "f32";
    case GatingType::f16: return "f16";
    case GatingType::bf16: return "bf16";
  }
  return "?";
}

std::size_t dtype_bytes(GatingType t) { return t == GatingType::f32 ? 4 : 2; }

double effective_bytes(GatingType dtype, int E, int k, std::int64_t T) {
  return static_cast<double>(T) * E * static_cast<double>(dtype_bytes(dtype)) + 4.0 * E +
         static_cast<double>(T) * k * 8.0;
}

const std::vector<Shape>& grid_shapes() {
  static const std::vector<Shape> s = {{128, 8}, {256, 8}, {64, 4}, {512, 8}, {2048, 8}};
  return s;
}
const std::vector<std::int64_t>& grid_tokens() {
  static const std::vector<std::int64_t> t = {1, 16, 64, 1024, 2048, 16384, 250000};
  return t;
}
const std::vector<GatingType>& grid_dtypes() {
  static const std::vector<GatingType> d = {GatingType::f32, GatingType::bf16, GatingType::f16};
  return d;
}

Fixture* find_fixture(const std::string& key) {
  return g_fixture != nullptr && g_fixture_key == key ? g_fixture.get() : nullptr;
}

void release_fixture() {
  g_fixture.reset();
  g_fixture_key.clear();
}

Fixture* install_fixture(const std::string& key, std::unique_ptr<Fixture> f) {
  release_fixture();
  g_fixture = std::move(f);
  g_fixture_key = key;
  return g_fixture.get();
}

std::string plan_launches(cudaStream_t stream, const LaunchFn& launch, int* launches_per_batch) {
  for (int i = 0; i < 3; ++i)
    if (std::string e = launch(); !e.empty()) return e;
  double one = 0;
  if (std::string e = time_batch(stream, launch, 1, &one); !e.empty()) return e;
  double per_launch = one;
  if (one < 0.2 * kBatchTargetSeconds) {
    // Short launches: estimate from a batch (the single launch includes event overhead).
    const int n = static_cast<int>(std::clamp(std::ceil(0.5 * kBatchTargetSeconds / std::max(one, 1e-7)), 2.0, 200.0));
    double batch = 0;
    if (std::string e = time_batch(stream, launch, n, &batch); !e.empty()) return e;
    per_launch = batch / n;
  }
  *launches_per_batch =
      static_cast<int>(std::clamp(std::ceil(kBatchTargetSeconds / std::max(per_launch, 1e-8)), 1.0, 20000.0));
  return {};
}

namespace {
/// The timed loop of run_timed / run_timed_graph: batches of calls_per_batch calls of `launch`
/// (each `launches_per_call` kernel launches) between two events.
void timed_loop(benchmark::State& state, cudaStream_t stream, const LaunchFn& launch, int calls_per_batch,
                int launches_per_call, double bytes, std::int64_t rows) {
  EventPair ev;
  MOECHECK_BENCH_REQUIRE(state, ev.create());
  const int n = calls_per_batch * launches_per_call;
  double total_seconds = 0;
  std::int64_t launches = 0;
  // One benchmark iteration is one launch: each pass of the loop counts n iterations and
  // reports the elapsed time of its n launches, so Google Benchmark's real_time is the time
  // per launch and --benchmark_min_time bounds the device time of a run.
  while (state.KeepRunningBatch(n)) {
    MOECHECK_BENCH_CHECK(state, cudaEventRecord(ev.start, stream));
    for (int i = 0; i < calls_per_batch; ++i) MOECHECK_BENCH_REQUIRE(state, launch());
    MOECHECK_BENCH_CHECK(state, cudaEventRecord(ev.stop, stream));
    MOECHECK_BENCH_CHECK(state, cudaEventSynchronize(ev.stop));
    float ms = 0;
    MOECHECK_BENCH_CHECK(state, cudaEventElapsedTime(&ms, ev.start, ev.stop));
    const double seconds = static_cast<double>(ms) * 1e-3;
    state.SetIterationTime(seconds);
    total_seconds += seconds;
    launches += n;
  }
  if (launches == 0 || !(total_seconds > 0)) return;
  const double per_launch = total_seconds / static_cast<double>(launches);
  const double bps = bytes / per_launch;
  const double ceiling = g_info.copy_bytes_per_second;
  state.counters["bytes_per_second"] = bps;
  state.counters["bytes"] = bytes;
  if (ceiling > 0) {
    state.counters["copy_fraction"] = bps / ceiling;
    state.counters["floor_us"] = bytes / ceiling * 1e6;
  }
  if (rows > 0) state.counters["rows"] = static_cast<double>(rows);
}
}  // namespace

void run_timed(benchmark::State& state, cudaStream_t stream, const LaunchFn& launch, int launches_per_batch,
               double bytes, std::int64_t rows) {
  timed_loop(state, stream, launch, std::max(1, launches_per_batch), 1, bytes, rows);
}

void run_timed_graph(benchmark::State& state, cudaStream_t stream, const LaunchFn& replay, int launches_per_replay,
                     double bytes, std::int64_t rows) {
  timed_loop(state, stream, replay, 1, std::max(1, launches_per_replay), bytes, rows);
}

}  // namespace moecheck::bench

int main(int argc, char** argv) {
  using namespace moecheck::bench;
  // Without an explicit --benchmark_min_time every benchmark runs for about 30 ms of device
  // time per repetition (the whole grid then takes a minute or two on an H100). A
  // per-benchmark MinTime or Iterations would add "/min_time:..." or "/iterations:..." to the
  // names the reports parse.
  std::vector<char*> args(argv, argv + argc);
  static char default_min_time[] = "--benchmark_min_time=0.03";
  if (!has_flag(argc, argv, "--benchmark_min_time")) args.insert(args.begin() + 1, default_min_time);
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;

  if (flag_is_true(argc, argv, "--benchmark_list_tests")) {
    register_benchmarks(kCopyBytes);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
  }
  if (!moecheck::kernels::built_with_cuda()) {
    std::fprintf(stderr, "moecheck_routing_bench: this build has no CUDA kernels\n");
    return 1;
  }
  if (std::string e = init_device(); !e.empty()) {
    std::fprintf(stderr, "moecheck_routing_bench: no CUDA device: %s\n", e.c_str());
    return 1;
  }
  std::size_t budget = 0;
  if (std::string e = memory_budget(&budget); !e.empty()) {
    std::fprintf(stderr, "moecheck_routing_bench: %s\n", e.c_str());
    return 1;
  }
  std::size_t copy_n = kCopyBytes;
  while (copy_n > (std::size_t{16} << 20) && 2 * copy_n > budget) copy_n /= 2;
  double kernel_bps = 0, memcpy_bps = 0;
  if (std::string e = measure_copy(copy_n, &kernel_bps, &memcpy_bps); !e.empty()) {
    std::fprintf(stderr, "moecheck_routing_bench: measuring the copy ceiling: %s\n", e.c_str());
    return 1;
  }
  g_info.copy_with_memcpy = memcpy_bps > kernel_bps;
  g_info.copy_bytes_per_second = std::max(kernel_bps, memcpy_bps);
  g_info.copy_buffer_bytes = copy_n;
  add_context(kernel_bps, memcpy_bps);
  register_benchmarks(copy_n);
  benchmark::RunSpecifiedBenchmarks();
  release_fixture();
  benchmark::Shutdown();
  if (g_info.stream != nullptr) (void)cudaStreamDestroy(g_info.stream);
  const int failures = failure_count();
  if (failures > 0) {
    std::fprintf(stderr, "moecheck_routing_bench: %d benchmark run(s) failed (see error_message)\n", failures);
    return 1;
  }
  return 0;
}
