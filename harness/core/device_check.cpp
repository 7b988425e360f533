// moecheck device-side checking: implementation of harness/core/device_check.hpp.
#include "harness/core/device_check.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "harness/core/campaign.hpp"
#include "harness/core/targets_internal.hpp"
#include "kernels/checker/row_check.hpp"

#ifdef MOECHECK_HAVE_CUDA_KERNELS
#include <cuda_runtime_api.h>

#include "kernels/checker/checker.hpp"
#include "kernels/routing_mutants.hpp"
#endif

namespace moecheck {

const std::vector<std::string>& checker_mutant_names() {
  static const std::vector<std::string> v = {"none", "accepts-any-weight"};  // index = CheckerMutant
  return v;
}

int parse_checker_mutant(const std::string& name) {
  const auto& all = checker_mutant_names();
  const auto it = std::find(all.begin(), all.end(), name);
  if (it == all.end()) {
    std::string list;
    for (const auto& n : all) list += (list.empty() ? "" : ", ") + n;
    throw std::invalid_argument("--checker-mutant '" + name + "': unknown (known: " + list + ")");
  }
  return static_cast<int>(it - all.begin());
}

const char* outcome_kind_name(DeviceCaseOutcome::Kind k) {
  switch (k) {
    case DeviceCaseOutcome::Kind::pass: return "pass";
    case DeviceCaseOutcome::Kind::skipped: return "skipped";
    case DeviceCaseOutcome::Kind::outside_contract: return "outside-contract";
    case DeviceCaseOutcome::Kind::host_path: return "host-path";
    case DeviceCaseOutcome::Kind::fail: return "fail";
    case DeviceCaseOutcome::Kind::disagreement: return "disagreement";
  }
  return "unknown";
}

#ifdef MOECHECK_HAVE_CUDA_KERNELS
namespace {

using Clock = std::chrono::steady_clock;

/// Growable CUDA allocation: device memory (DeviceBuf) or pinned host memory (PinnedBuf, for
/// asynchronous copies to and from the host).
template <cudaError_t (*Alloc)(void**, std::size_t), cudaError_t (*Release)(void*)>
struct CudaBuf {
  void* ptr = nullptr;
  std::size_t cap = 0;
  CudaBuf() = default;
  CudaBuf(const CudaBuf&) = delete;
  CudaBuf& operator=(const CudaBuf&) = delete;
  ~CudaBuf() {
    if (ptr) Release(ptr);
  }
  cudaError_t ensure(std::size_t bytes) {
    if (bytes <= cap && ptr) return cudaSuccess;
    if (ptr) Release(ptr);
    ptr = nullptr;
    cap = 0;
    const std::size_t want = std::max<std::size_t>(bytes + bytes / 2, 4096);
    const cudaError_t e = Alloc(&ptr, want);
    if (e == cudaSuccess) cap = want;
    return e;
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};
cudaError_t device_alloc(void** p, std::size_t n) { return cudaMalloc(p, n); }
cudaError_t pinned_alloc(void** p, std::size_t n) { return cudaMallocHost(p, n); }
using DeviceBuf = CudaBuf<device_alloc, cudaFree>;
using PinnedBuf = CudaBuf<pinned_alloc, cudaFreeHost>;

/// Runs fn(i) for i in [0, n) on up to hardware_concurrency threads (serially for small n).
/// fn must only write to its own i.
template <class Fn>
void parallel_for(std::size_t n, const Fn& fn) {
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t workers = std::min<std::size_t>({static_cast<std::size_t>(hw), n / 32, 32});
  if (workers <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(workers);
  for (std::size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      for (std::size_t i = w; i < n; i += workers) fn(i);
    });
  }
  for (auto& t : pool) t.join();
}

std::string cuda_text(const char* what, cudaError_t e) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

/// Value-dependent classify() tags of a ClassBit set.
void add_class_tags(std::uint32_t bits, std::vector<std::string>* tags) {
  static const std::pair<std::uint32_t, const char*> names[] = {
      {checker::kClassTie, "tie-at-k"},   {checker::kClassNearTie, "near-tie-at-k"},
      {checker::kClassConstant, "constant-row"}, {checker::kClassHasInf, "has-inf"},
      {checker::kClassHasPosInf, "has-pos-inf"}, {checker::kClassHasNan, "has-nan"},
      {checker::kClassMasked, "masked-row"}, {checker::kClassDenormal, "denormal"},
      {checker::kClassHuge, "huge"}};
  for (const auto& [bit, name] : names) {
    if (bits & bit) tags->push_back(name);
  }
}

/// One batch in flight: its device buffers, stream and stage events, the host copies of its
/// results, and the batch itself (outcomes, packed cases) from preparation to its verdicts.
struct Slot {
  cudaStream_t stream = nullptr;
  cudaEvent_t events[4] = {nullptr, nullptr, nullptr, nullptr};  ///< stage boundaries
  DeviceBuf storage, weights, ids, scale, cases, fails, samples, counters;
  PinnedBuf cases_host, counters_host;
  std::uint32_t fail_cap = 0, sample_cap = 0;
  std::vector<checker::RowRecord> host_fails, host_samples;
  // the batch
  bool busy = false;
  std::vector<DeviceCaseOutcome> out;
  std::vector<checker::BatchCase> batch;
  std::vector<std::size_t> slot_outcome;
  std::int64_t rows = 0;
  bool launched = false;  ///< device work was queued (error empty) or attempted (error set)
  std::string error;      ///< the CUDA error of the batch's device part
  Precision prec;
  bool ended_early = false;  ///< preparation stopped at the end of the index space
  // what a batch launched ahead by run_batch was prepared for
  std::uint64_t seed = 0;
  std::int64_t first = 0, step = 0;
  GenConfig gen;
  Contract contract;

  Slot() = default;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot() {
    if (stream) cudaStreamSynchronize(stream);  // buffers are freed only after its work ended
    for (cudaEvent_t ev : events) {
      if (ev) cudaEventDestroy(ev);
    }
    if (stream) cudaStreamDestroy(stream);
  }
};

/// run_batch's cases: first, first + step, ... (none past kMaxCaseIndex).
auto batch_draw(std::uint64_t campaign_seed, std::int64_t first, std::int64_t step, const GenConfig& gen) {
  return [=, &gen](std::int64_t j, DeviceCaseOutcome& o) {
    const std::int64_t index = first + j * step;
    if (index > kMaxCaseIndex) return false;
    o.index = index;
    o.seed = case_seed(campaign_seed, index);
    o.shape = counter_shape(o.seed, gen);
    return true;
  };
}
/// run_cases' and submit_cases' cases: the given ones, in order.
auto request_draw(const std::vector<DeviceCaseRequest>& cases) {
  return [&cases](std::int64_t j, DeviceCaseOutcome& o) {
    if (j >= static_cast<std::int64_t>(cases.size())) return false;
    const DeviceCaseRequest& q = cases[static_cast<std::size_t>(j)];
    o.index = q.index;
    o.seed = q.seed;
    o.shape = q.shape;
    return true;
  };
}

class DeviceCheckerImpl final : public DeviceChecker {
 public:
  DeviceCheckerImpl(Target& target, kernels::Variant v, kernels::Mutant m, const DeviceCheckOptions& opt)
      : target_(target), variant_(v), mutant_(m), opt_(opt) {
    for (Slot& sl : slots_) {
      if (cudaStreamCreateWithFlags(&sl.stream, cudaStreamNonBlocking) != cudaSuccess) {
        cudaGetLastError();
        throw std::invalid_argument("device checker: cannot create a stream");
      }
      for (cudaEvent_t& ev : sl.events) {
        if (cudaEventCreate(&ev) != cudaSuccess) {
          cudaGetLastError();
          throw std::invalid_argument("device checker: cannot create an event");
        }
      }
    }
  }
  const DeviceCheckStats& stats() const override { return stats_; }

  std::vector<DeviceCaseOutcome> run_batch(std::uint64_t campaign_seed, std::int64_t first, std::int64_t step,
                                           std::int64_t max_cases, const GenConfig& gen,
                                           const OracleOptions& oracle) override {
    if (!submitted_.empty()) throw std::logic_error("device checker: run_batch with submitted batches not collected");
    max_cases = std::max<std::int64_t>(max_cases, 1);
    // The batch prepared ahead by the previous call, when it is the one asked for; otherwise it
    // is dropped (its stream orders it before any reuse of the slot).
    Slot* cur = nullptr;
    if (ahead_ && ahead_->seed == campaign_seed && ahead_->first == first && ahead_->step == step &&
        static_cast<std::int64_t>(ahead_->out.size()) <= max_cases && !ahead_->out.empty() &&
        ahead_->gen == gen && ahead_->contract == oracle.contract) {
      cur = ahead_;
      ahead_ = nullptr;
    }
    drop_ahead();
    if (!cur) {
      cur = free_slot();
      start(*cur, batch_draw(campaign_seed, first, step, gen), max_cases, oracle);
    }
    // Prepare and launch the next batch (the cases after this one) before this one's host part,
    // so that the device works on it meanwhile; a campaign that stops drops it.
    const std::int64_t taken = static_cast<std::int64_t>(cur->out.size());
    if (!cur->ended_early && taken < max_cases) {
      const std::int64_t next_first = first + taken * step;
      Slot* nx = free_slot();
      try {
        start(*nx, batch_draw(campaign_seed, next_first, step, gen), max_cases - taken, oracle);
        remember(*nx, campaign_seed, next_first, step, gen, oracle);
        ahead_ = nx;
      } catch (...) {
        nx->busy = false;  // not launched ahead: the next call prepares it and meets the error there
      }
    }
    return finish(*cur, oracle);
  }

  std::vector<DeviceCaseOutcome> run_cases(const std::vector<DeviceCaseRequest>& cases,
                                           const OracleOptions& oracle) override {
    if (!submitted_.empty()) throw std::logic_error("device checker: run_cases with submitted batches not collected");
    if (cases.empty()) return {};
    drop_ahead();
    Slot* sl = free_slot();
    start(*sl, request_draw(cases), static_cast<std::int64_t>(cases.size()), oracle);
    return finish(*sl, oracle);
  }

  std::int64_t submit_cases(const std::vector<DeviceCaseRequest>& cases, const OracleOptions& oracle) override {
    if (cases.empty()) return 0;
    drop_ahead();
    if (submitted_.size() >= kSlots) throw std::logic_error("device checker: submit_cases with two batches in flight");
    Slot* sl = free_slot();
    start(*sl, request_draw(cases), static_cast<std::int64_t>(cases.size()), oracle);
    submitted_.push_back(sl);
    return static_cast<std::int64_t>(sl->out.size());
  }

  std::vector<DeviceCaseOutcome> collect(const OracleOptions& oracle) override {
    if (submitted_.empty()) throw std::logic_error("device checker: collect with no submitted batch");
    Slot* sl = submitted_.front();
    submitted_.erase(submitted_.begin());
    return finish(*sl, oracle);
  }

 private:
  static constexpr std::size_t kSlots = 2;

  /// What the batch launched ahead in `sl` was prepared for (run_batch matches it).
  void remember(Slot& sl, std::uint64_t seed, std::int64_t first, std::int64_t step, const GenConfig& gen,
                const OracleOptions& oracle) {
    sl.seed = seed;
    sl.first = first;
    sl.step = step;
    sl.gen = gen;
    sl.contract = oracle.contract;
  }

  void drop_ahead() {
    if (ahead_) ahead_->busy = false;
    ahead_ = nullptr;
  }

  Slot* free_slot() {
    for (Slot& sl : slots_) {
      if (!sl.busy) {
        sl.busy = true;
        return &sl;
      }
    }
    throw std::logic_error("device checker: no free batch slot");
  }

  /// Prepares a batch into `sl` on the host (shapes, scales, domain and contract checks, packing)
  /// and queues its device part on sl's stream without waiting for it. When preparation throws,
  /// the slot is released and the exception passes on.
  template <class Next>
  void start(Slot& sl, const Next& next, std::int64_t max_cases, const OracleOptions& oracle) {
    try {
      prepare_and_launch(sl, next, max_cases, oracle);
    } catch (...) {
      sl.busy = false;
      throw;
    }
  }

  template <class Next>
  void prepare_and_launch(Slot& sl, const Next& next, std::int64_t max_cases, const OracleOptions& oracle) {
    const auto t_prep = Clock::now();
    std::vector<DeviceCaseOutcome>& out = sl.out;
    std::vector<checker::BatchCase>& batch = sl.batch;
    std::vector<std::size_t>& slot_outcome = sl.slot_outcome;
    out.clear();
    batch.clear();
    slot_outcome.clear();
    sl.error.clear();
    sl.launched = false;
    sl.ended_early = false;
    std::int64_t rows = 0, elems = 0, storage_bytes = 0, out_elems = 0, scale_elems = 0;
    const Precision prec = target_.precision();
    sl.prec = prec;
    const bool device_semantics = oracle.contract.strict_semantics() && prec.select_band_ulps == 0.0;
    // Cases are prepared in parallel chunks (shape, scale, domain and contract checks), then
    // packed in index order until the batch is full; prepared cases beyond it are dropped.
    struct Prepared {
      DeviceCaseOutcome o;
      bool drawn = false;
      bool batchable = false;
    };
    const std::int64_t total = std::max<std::int64_t>(max_cases, 1);
    bool full = false;
    for (std::int64_t j0 = 0; j0 < total && !full;) {
      const std::int64_t chunk = std::min<std::int64_t>(total - j0, 512);
      std::vector<Prepared> prep(static_cast<std::size_t>(chunk));
      parallel_for(prep.size(), [&](std::size_t i) {
        Prepared& p = prep[i];
        DeviceCaseOutcome& o = p.o;
        if (!next(j0 + static_cast<std::int64_t>(i), o)) return;
        p.drawn = true;
        const CaseShape& s = o.shape.shape;
        try {
          o.c = counter_case_without_logits(s, o.shape.value_seed);
        } catch (const std::exception& e) {  // e.g. a value family counter generation lacks
          o.kind = DeviceCaseOutcome::Kind::host_path;
          o.message = e.what();
          return;
        }
        o.c.seed = o.seed;
        if (std::string why = target_.unsupported(o.c); !why.empty()) {
          o.kind = DeviceCaseOutcome::Kind::skipped;
          o.message = why;
          return;
        }
        const int dummy = 0;
        GatingView g{nullptr, s.dtype, s.T, s.E, o.c.row_stride(), o.c.col_stride()};
        if (std::string why = outside_contract(oracle.contract, g, &o.outside_key); !why.empty()) {
          o.kind = DeviceCaseOutcome::Kind::outside_contract;
          o.message = why;
          return;
        }
        bool valid = true;
        try {
          g.data = &dummy;  // validate_routing only checks that it is set
          validate_routing(g, o.c.params());
        } catch (const RoutingError&) {
          valid = false;
        }
        const bool softmax = s.family == Family::gemma4 || s.family == Family::softmax_topk ||
                             s.family == Family::softmax_topk_raw;
        if (!valid || !device_semantics || !softmax || s.k > checker::kRecordMaxK) {
          o.kind = DeviceCaseOutcome::Kind::host_path;
          return;
        }
        p.batchable = true;
      });
      j0 += chunk;
      for (Prepared& p : prep) {
        if (!p.drawn) {
          full = true;
          sl.ended_early = true;  // the draw has no more cases
          break;
        }
        DeviceCaseOutcome& o = p.o;
        if (!p.batchable) {
          out.push_back(std::move(o));
          continue;
        }
        const CaseShape& s = o.shape.shape;
        const checker::CounterCaseDesc d = counter_desc(s, o.shape.value_seed);
        if (!batch.empty() && (rows + s.T > opt_.max_batch_rows || elems + d.storage_elems > opt_.max_batch_elements ||
                               static_cast<std::int64_t>(batch.size()) >= opt_.max_batch_cases)) {
          full = true;  // this case starts the next batch
          break;
        }
        checker::BatchCase b;
        b.desc = d;
        b.storage_byte = (storage_bytes + 255) / 256 * 256;
        b.out_begin = out_elems;
        b.scale_begin = scale_elems;
        b.has_scale = (s.family == Family::gemma4 && !o.c.scale.empty()) ? 1 : 0;
        b.row_begin = rows;
        storage_bytes = b.storage_byte + d.storage_elems * static_cast<std::int64_t>(dtype_size(s.dtype));
        elems += d.storage_elems;
        out_elems += s.T * s.k + 2 * checker::kCkGuardElements;
        scale_elems += b.has_scale ? s.E : 0;
        rows += s.T;
        batch.push_back(b);
        slot_outcome.push_back(out.size());
        out.push_back(std::move(o));
      }
    }
    sl.rows = rows;
    stats_.prepare_seconds += std::chrono::duration<double>(Clock::now() - t_prep).count();
    if (batch.empty()) return;
    sl.launched = true;
    sl.error = launch(sl, storage_bytes, elems, out_elems, scale_elems);
  }

  /// Queues the device part of sl's batch on its stream: "" or the CUDA error.
  std::string launch(Slot& sl, std::int64_t storage_bytes, std::int64_t elems, std::int64_t out_elems,
                     std::int64_t scale_elems) {
    const std::vector<checker::BatchCase>& batch = sl.batch;
    const std::int64_t rows = sl.rows;
    const std::size_t n = batch.size();
    const cudaStream_t stream = sl.stream;
    sl.fail_cap = 4096;
    sl.sample_cap = static_cast<std::uint32_t>(std::min<std::int64_t>(
        static_cast<std::int64_t>(n) + rows / 250 + 4096, std::int64_t{1} << 24));
    cudaError_t e;
#define MOECHECK_DC_TRY(call, what)          \
  if ((e = (call)) != cudaSuccess) {         \
    cudaGetLastError();                      \
    cudaStreamSynchronize(stream);           \
    cudaGetLastError();                      \
    return cuda_text(what, e);               \
  }
    // The slot's previous batch, when it was dropped unfinished, may still use its buffers.
    MOECHECK_DC_TRY(cudaStreamSynchronize(stream), "kernel execution (a dropped batch)");
    MOECHECK_DC_TRY(sl.storage.ensure(static_cast<std::size_t>(storage_bytes) + 256), "cudaMalloc(storage)");
    MOECHECK_DC_TRY(sl.weights.ensure(static_cast<std::size_t>(out_elems) * sizeof(float)), "cudaMalloc(weights)");
    MOECHECK_DC_TRY(sl.ids.ensure(static_cast<std::size_t>(out_elems) * sizeof(std::int32_t)), "cudaMalloc(ids)");
    MOECHECK_DC_TRY(sl.scale.ensure(static_cast<std::size_t>(scale_elems) * sizeof(float) + 4), "cudaMalloc(scale)");
    MOECHECK_DC_TRY(sl.cases.ensure(n * sizeof(checker::BatchCase)), "cudaMalloc(cases)");
    MOECHECK_DC_TRY(sl.fails.ensure(sl.fail_cap * sizeof(checker::RowRecord)), "cudaMalloc(fails)");
    MOECHECK_DC_TRY(sl.samples.ensure(sl.sample_cap * sizeof(checker::RowRecord)), "cudaMalloc(samples)");
    MOECHECK_DC_TRY(sl.counters.ensure((2 + 2 * n) * sizeof(std::uint32_t)), "cudaMalloc(counters)");
    MOECHECK_DC_TRY(sl.cases_host.ensure(n * sizeof(checker::BatchCase)), "cudaMallocHost(cases)");
    MOECHECK_DC_TRY(sl.counters_host.ensure((2 + 2 * n) * sizeof(std::uint32_t)), "cudaMallocHost(counters)");
    std::copy(batch.begin(), batch.end(), sl.cases_host.as<checker::BatchCase>());
    MOECHECK_DC_TRY(cudaMemcpyAsync(sl.cases.ptr, sl.cases_host.ptr, n * sizeof(checker::BatchCase),
                                    cudaMemcpyHostToDevice, stream),
                    "cudaMemcpy(cases)");
    MOECHECK_DC_TRY(cudaMemsetAsync(sl.counters.ptr, 0, (2 + 2 * n) * sizeof(std::uint32_t), stream),
                    "cudaMemset(counters)");
    const auto* cases = sl.cases.as<checker::BatchCase>();
    MOECHECK_DC_TRY(cudaEventRecord(sl.events[0], stream), "cudaEventRecord");
    MOECHECK_DC_TRY(checker::launch_counter_generate(cases, static_cast<std::int32_t>(n), rows, elems, out_elems,
                                                     scale_elems, sl.storage.as<std::uint8_t>(), sl.weights.as<float>(),
                                                     sl.ids.as<std::int32_t>(), sl.scale.as<float>(), stream),
                    "launch_counter_generate");
    MOECHECK_DC_TRY(cudaEventRecord(sl.events[1], stream), "cudaEventRecord");
    for (const checker::BatchCase& b : batch) {
      const checker::CounterCaseDesc& d = b.desc;
      if (d.T == 0) continue;
      kernels::RoutingArgs a;
      a.gating = sl.storage.as<std::uint8_t>() + b.storage_byte;
      a.dtype = static_cast<kernels::GatingType>(d.dtype);
      a.T = d.T;
      a.E = d.E;
      a.k = d.k;
      a.row_stride = d.row_stride;
      a.col_stride = d.col_stride;
      a.scale = b.has_scale ? sl.scale.as<float>() + b.scale_begin : nullptr;
      a.family = static_cast<kernels::KernelFamily>(d.family);
      a.weights = sl.weights.as<float>() + b.out_begin + checker::kCkGuardElements;
      a.ids = sl.ids.as<std::int32_t>() + b.out_begin + checker::kCkGuardElements;
      MOECHECK_DC_TRY(kernels::launch_routing_mutant(a, variant_, stream, mutant_), "launch_routing");
    }
    MOECHECK_DC_TRY(cudaEventRecord(sl.events[2], stream), "cudaEventRecord");
    checker::CheckLaunch p;
    p.cases = cases;
    p.n_cases = static_cast<std::int32_t>(n);
    p.rows_total = rows;
    p.storage = sl.storage.as<std::uint8_t>();
    p.weights = sl.weights.as<float>();
    p.ids = sl.ids.as<std::int32_t>();
    p.scale = sl.scale.as<float>();
    p.precision.compute_eps = sl.prec.compute_eps;
    p.precision.exp_ulps = sl.prec.exp_ulps;
    p.precision.min_normal = sl.prec.min_normal;
    p.mutant = opt_.checker_mutant;
    p.sample_one_in = opt_.sample_one_in;
    p.fails = sl.fails.as<checker::RowRecord>();
    p.fail_capacity = sl.fail_cap;
    p.samples = sl.samples.as<checker::RowRecord>();
    p.sample_capacity = sl.sample_cap;
    auto* counters = sl.counters.as<std::uint32_t>();
    p.fail_count = counters;
    p.sample_count = counters + 1;
    p.case_classes = counters + 2;
    p.case_fail_count = counters + 2 + n;
    MOECHECK_DC_TRY(checker::launch_device_check(p, stream), "launch_device_check");
    MOECHECK_DC_TRY(cudaEventRecord(sl.events[3], stream), "cudaEventRecord");
    MOECHECK_DC_TRY(cudaMemcpyAsync(sl.counters_host.ptr, sl.counters.ptr, (2 + 2 * n) * sizeof(std::uint32_t),
                                    cudaMemcpyDeviceToHost, stream),
                    "cudaMemcpy(counters)");
    return {};
  }

  /// Waits for sl's device part, then confirms and samples on the host; frees the slot.
  std::vector<DeviceCaseOutcome> finish(Slot& sl, const OracleOptions& oracle) {
    struct Release {
      Slot& sl;
      ~Release() { sl.busy = false; }
    } release{sl};
    std::vector<DeviceCaseOutcome> out = std::move(sl.out);
    sl.out.clear();
    if (!sl.launched) return out;
    const auto t0 = Clock::now();
    if (sl.error.empty()) sl.error = collect_device(sl);
    const auto t1 = Clock::now();
    stats_.wait_seconds += std::chrono::duration<double>(t1 - t0).count();
    if (!sl.error.empty()) {
      for (std::size_t i : sl.slot_outcome) {
        out[i].kind = DeviceCaseOutcome::Kind::host_path;
        out[i].message = sl.error;
      }
      return out;
    }
    ++stats_.batches;
    stats_.device_cases += static_cast<std::int64_t>(sl.batch.size());
    stats_.device_rows += sl.rows;
    judge_on_host(sl, out, oracle);
    stats_.host_seconds += std::chrono::duration<double>(Clock::now() - t1).count();
    return out;
  }

  /// The end of sl's device part: stage times, flagged and sampled rows. "" or the CUDA error.
  std::string collect_device(Slot& sl) {
    const cudaStream_t stream = sl.stream;
    cudaError_t e;
    MOECHECK_DC_TRY(cudaStreamSynchronize(stream), "kernel execution");
    float stage_ms[3] = {0, 0, 0};
    for (int i = 0; i < 3; ++i) {
      MOECHECK_DC_TRY(cudaEventElapsedTime(&stage_ms[i], sl.events[i], sl.events[i + 1]), "cudaEventElapsedTime");
    }
    stats_.generate_seconds += stage_ms[0] * 1e-3;
    stats_.route_seconds += stage_ms[1] * 1e-3;
    stats_.check_seconds += stage_ms[2] * 1e-3;
    stats_.device_seconds += (stage_ms[0] + stage_ms[1] + stage_ms[2]) * 1e-3;
    const std::uint32_t* counters = sl.counters_host.as<std::uint32_t>();
    const std::uint32_t nf = std::min(counters[0], sl.fail_cap);
    const std::uint32_t ns = std::min(counters[1], sl.sample_cap);
    sl.host_fails.resize(nf);
    sl.host_samples.resize(ns);
    if (nf) {
      MOECHECK_DC_TRY(cudaMemcpyAsync(sl.host_fails.data(), sl.fails.ptr, nf * sizeof(checker::RowRecord),
                                      cudaMemcpyDeviceToHost, stream),
                      "cudaMemcpy(flagged rows)");
    }
    if (ns) {
      MOECHECK_DC_TRY(cudaMemcpyAsync(sl.host_samples.data(), sl.samples.ptr, ns * sizeof(checker::RowRecord),
                                      cudaMemcpyDeviceToHost, stream),
                      "cudaMemcpy(sampled rows)");
    }
    MOECHECK_DC_TRY(cudaStreamSynchronize(stream), "cudaMemcpy(flagged and sampled rows)");
#undef MOECHECK_DC_TRY
    // The device appends rows in the order its threads get there: sorted, the verdicts (the first
    // confirmed row of a case, its message) do not depend on the scheduling.
    const auto by_row = [](const checker::RowRecord& a, const checker::RowRecord& b) {
      return std::tie(a.case_slot, a.row, a.slot, a.code) < std::tie(b.case_slot, b.row, b.slot, b.code);
    };
    std::sort(sl.host_fails.begin(), sl.host_fails.end(), by_row);
    std::sort(sl.host_samples.begin(), sl.host_samples.end(), by_row);
    return {};
  }

  /// Host oracle on one row of a batch case with the device's outputs: "" when it passes, else
  /// the first violation (its row set to t); *check receives the check name.
  std::string host_row_verdict(const DeviceCaseOutcome& o, const checker::CounterCaseDesc& d,
                               const checker::RowRecord& rec, const OracleOptions& oracle, const Precision& prec,
                               std::string* check) {
    const RoutingCase row = counter_row_case(o.c, d, rec.row);
    const MaterializedCase m = materialize(row);
    OracleOptions opt = oracle;
    opt.precision = prec;
    opt.max_violations = 1;
    const CheckReport rep = check_routing(m.view, m.params, rec.weights, rec.ids, opt);
    if (rep.ok()) return {};
    Violation v = rep.violations.front();
    v.row = rec.row;
    *check = v.check;
    return v.str();
  }

  void disagree(DeviceCaseOutcome& o, std::int64_t row, const std::string& what) {
    ++stats_.disagreements;
    if (o.kind == DeviceCaseOutcome::Kind::disagreement) return;
    o.kind = DeviceCaseOutcome::Kind::disagreement;
    o.check = kCheckerDisagreement;
    o.row = row;
    o.message = "device checker and host oracle disagree on row " + std::to_string(row) + " of case #" +
                std::to_string(o.index) + ": " + what;
  }

  void judge_on_host(Slot& sl, std::vector<DeviceCaseOutcome>& out, const OracleOptions& oracle) {
    const std::vector<checker::BatchCase>& batch = sl.batch;
    const std::vector<std::size_t>& slot_outcome = sl.slot_outcome;
    const Precision& prec = sl.prec;
    const std::vector<checker::RowRecord>& fails = sl.host_fails;
    const std::vector<checker::RowRecord>& samples = sl.host_samples;
    const std::uint32_t* host_counters = sl.counters_host.as<std::uint32_t>();
    const std::size_t n = batch.size();
    const std::uint32_t* classes = host_counters + 2;
    const std::uint32_t* case_fails = host_counters + 2 + n;
    std::vector<char> forced_seen(n, 0);
    const auto bad_slot = [&](const checker::RowRecord& r) {
      return r.case_slot < 0 || static_cast<std::size_t>(r.case_slot) >= n ||
             (r.row >= batch[static_cast<std::size_t>(r.case_slot)].desc.T);
    };
    // The host oracle on every flagged row (at most 8 per case) and every sampled row, in
    // parallel; the verdicts are then applied in list order.
    std::vector<char> judge_fail(fails.size(), 0);
    {
      std::vector<int> per_case(n, 0);
      for (std::size_t i = 0; i < fails.size(); ++i) {
        const checker::RowRecord& r = fails[i];
        if (bad_slot(r) || r.code == checker::kCheckGuard || r.row < 0) continue;
        judge_fail[i] = per_case[static_cast<std::size_t>(r.case_slot)]++ < 8;
      }
    }
    std::vector<std::string> fail_verdict(fails.size()), fail_check(fails.size());
    std::vector<std::string> sample_verdict(samples.size()), sample_check(samples.size());
    parallel_for(fails.size() + samples.size(), [&](std::size_t i) {
      const bool flagged = i < fails.size();
      const std::size_t at = flagged ? i : i - fails.size();
      const checker::RowRecord& r = flagged ? fails[at] : samples[at];
      if (flagged ? !judge_fail[at] : (bad_slot(r) || r.row < 0)) return;
      const std::size_t slot = static_cast<std::size_t>(r.case_slot);
      (flagged ? fail_verdict : sample_verdict)[at] = host_row_verdict(
          out[slot_outcome[slot]], batch[slot].desc, r, oracle, prec, &(flagged ? fail_check : sample_check)[at]);
    });
    // flagged rows: confirmed by the host oracle, or a disagreement
    for (std::size_t fi = 0; fi < fails.size(); ++fi) {
      const checker::RowRecord& r = fails[fi];
      if (bad_slot(r)) continue;
      const std::size_t slot = static_cast<std::size_t>(r.case_slot);
      DeviceCaseOutcome& o = out[slot_outcome[slot]];
      ++stats_.flagged_rows;
      if (r.code == checker::kCheckGuard || r.row < 0) {
        if (o.kind == DeviceCaseOutcome::Kind::pass) {
          o.kind = DeviceCaseOutcome::Kind::fail;
          o.check = checker::check_code_name(checker::kCheckGuard);
          o.message = "device checker: a guard element around the outputs changed";
        }
        continue;
      }
      if (!judge_fail[fi]) continue;  // beyond 8 rows of one case: the case fails either way
      ++stats_.sampled_rows;
      const std::string& check = fail_check[fi];
      const std::string& host = fail_verdict[fi];
      if (host.empty()) {
        disagree(o, r.row, std::string("the device flags it (") + checker::check_code_name(r.code) +
                               ", slot " + std::to_string(r.slot) + ") and the host oracle passes it");
        continue;
      }
      ++stats_.confirmed_rows;
      if (o.kind == DeviceCaseOutcome::Kind::pass || (o.kind == DeviceCaseOutcome::Kind::fail && !o.confirmed)) {
        o.kind = DeviceCaseOutcome::Kind::fail;
        o.confirmed = true;
        o.check = check;
        o.message = host;
        o.row = r.row;
      }
    }
    // sampled rows: the host oracle must reach the same verdict
    for (std::size_t si = 0; si < samples.size(); ++si) {
      const checker::RowRecord& r = samples[si];
      if (bad_slot(r) || r.row < 0) continue;
      const std::size_t slot = static_cast<std::size_t>(r.case_slot);
      DeviceCaseOutcome& o = out[slot_outcome[slot]];
      const checker::CounterCaseDesc& d = batch[slot].desc;
      const std::uint64_t rk = checker::cg_row_key(d.value_seed, checker::kStreamSample, 0);
      if (static_cast<std::int64_t>(checker::cg_draw(rk, 0, 0) % static_cast<std::uint64_t>(d.T)) == r.row) {
        forced_seen[slot] = 1;
      }
      ++stats_.sampled_rows;
      const std::string& host = sample_verdict[si];
      const bool device_fail = r.code != checker::kCheckOk;
      if (host.empty() == !device_fail) continue;
      disagree(o, r.row,
               device_fail ? std::string("the device flags it (") + checker::check_code_name(r.code) +
                                 ") and the host oracle passes it"
                           : "the device passes it and the host oracle fails it: " + host);
    }
    const bool samples_complete = host_counters[1] <= sl.sample_cap;
    for (std::size_t slot = 0; slot < n; ++slot) {
      DeviceCaseOutcome& o = out[slot_outcome[slot]];
      const checker::CounterCaseDesc& d = batch[slot].desc;
      if (samples_complete && d.T > 0 && !forced_seen[slot]) {
        const std::uint64_t rk = checker::cg_row_key(d.value_seed, checker::kStreamSample, 0);
        disagree(o, static_cast<std::int64_t>(checker::cg_draw(rk, 0, 0) % static_cast<std::uint64_t>(d.T)),
                 "the device checker returned no verdict for this sampled row");
      }
      if (o.kind == DeviceCaseOutcome::Kind::pass && case_fails[slot] > 0) {
        o.kind = DeviceCaseOutcome::Kind::fail;  // flagged rows beyond the list: the host evaluation decides
        o.check = "unconfirmed";
        o.message = std::to_string(case_fails[slot]) + " row(s) flagged by the device checker";
      }
    }
    parallel_for(n, [&](std::size_t slot) {  // coverage tags: shape and scale here, values from the device
      DeviceCaseOutcome& o = out[slot_outcome[slot]];
      o.classes = classify(o.c);
      add_class_tags(classes[slot], &o.classes);
    });
  }

  Target& target_;
  kernels::Variant variant_;
  kernels::Mutant mutant_;
  DeviceCheckOptions opt_;
  Slot slots_[kSlots];
  Slot* ahead_ = nullptr;           ///< run_batch: the next batch, prepared and launched ahead
  std::vector<Slot*> submitted_;    ///< submit_cases: batches in flight, oldest first
  DeviceCheckStats stats_;
};

}  // namespace

std::unique_ptr<DeviceChecker> make_device_checker(Target& target, const DeviceCheckOptions& opt, std::string* why) {
  kernels::Variant v;
  kernels::Mutant m;
  if (!cuda_kernel_target_info(target, &v, &m)) {
    if (why) *why = "target " + target.spec() + " is not a cuda:<variant> target";
    return nullptr;
  }
  if (!cuda_device_available()) {
    if (why) *why = "no usable CUDA device";
    return nullptr;
  }
  return std::make_unique<DeviceCheckerImpl>(target, v, m, opt);
}

#else  // no CUDA kernels in this build

std::unique_ptr<DeviceChecker> make_device_checker(Target& target, const DeviceCheckOptions&, std::string* why) {
  if (why) *why = "this build has no CUDA kernels (target " + target.spec() + ")";
  return nullptr;
}

#endif

}  // namespace moecheck
