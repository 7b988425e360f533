// The "plugin:<path.so>" target: an external routing implementation loaded with dlopen through
// the C ABI of kernels/moecheck_plugin.h and checked like every built-in implementation. The
// target is named after the plugin's descriptor name ("plugin:<name>"), never its path.
//
// Crash containment (TargetOptions::isolate_plugins, the default).
//  - Host plugins run in a child forked for each call: the child calls route() on its
//    copy-on-write view of the case and writes the outputs (with their guard regions) into an
//    anonymous shared mapping; the parent reads them back. A plugin that segfaults, aborts or
//    calls exit() is reported as a "crash" failure of that case, one that runs past
//    CallLimits::timeout_s as a "timeout" failure (the child is killed), and the campaign's own
//    memory cannot be corrupted by it. While waiting, the parent polls CallLimits::abandon (stop
//    request, end of the budget) and kills the child when it says so. The child runs in its own
//    process group (killed as a group) and dies with its parent (PR_SET_PDEATHSIG).
//  - CUDA plugins run in one long-lived worker process per target (isolated_worker.hpp): the
//    worker owns the CUDA context (created once, reused by every call), this process never
//    initialises CUDA for them. Inputs, poison and guards travel through a shared region; the
//    worker copies them to the device on the plugin's stream, runs route() and copies the
//    padded outputs back. A device fault (a sticky CUDA error such as cudaErrorIllegalAddress
//    after the call) is a "device-fault" failure, a dead worker a "crash", a hung one a
//    "timeout"; each costs the worker, and the next call starts a new one (a fork of the
//    worker's supervisor plus a new CUDA context).
//  - MOECHECK_PLUGIN_WORKER=1 in the environment runs isolated host plugins in that persistent
//    worker too, instead of a fork per call: the CUDA plugin path without a GPU, for tests.
// Without isolation the call is made in-process: errors are still reported, a crash is not
// contained, hangs/exit() are left to the campaign's watchdog, and a device fault destroys the
// process's CUDA context: it is reported for its case, then the target is lost (Target::lost)
// and the campaign ends, aborted, with that reason.
#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "harness/core/isolated_worker.hpp"
#include "harness/core/plugin_descriptor.hpp"
#include "harness/core/targets_internal.hpp"
#include "kernels/moecheck_plugin.h"

#ifdef MOECHECK_HAVE_CUDA_KERNELS
#include <cuda_runtime_api.h>
#endif

namespace moecheck {
namespace {

/// Bytes of the shared mapping reserved for the child's error message.
constexpr std::size_t kMessageBytes = 1024;

const char* status_name(int s) {
  switch (s) {
    case MOECHECK_PLUGIN_OK: return "OK";
    case MOECHECK_PLUGIN_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case MOECHECK_PLUGIN_UNSUPPORTED: return "UNSUPPORTED";
    case MOECHECK_PLUGIN_INTERNAL_ERROR: return "INTERNAL_ERROR";
    default: return "unknown status";
  }
}

std::string describe_status(int s, const char* msg) {
  std::string out = "plugin returned " + std::to_string(s) + " (" + status_name(s) + ")";
  if (msg && *msg) out += ": " + std::string(msg);
  return out;
}

/// Header of the shared mapping between parent and child.
struct SharedHeader {
  int status;
  int finished;
  char message[kMessageBytes];
};

/// Calls the plugin's route() on a case's inputs (pointers on the host or on the device).
int call_route(const moecheck_plugin_desc_v1* d, const CaseInputs& in, const void* gating, const float* scale,
               float* w, std::int32_t* id, int device, void* stream) {
  return d->route(gating, in.view.row_stride, in.view.col_stride, static_cast<std::int32_t>(in.view.dtype),
                  in.view.T, static_cast<std::int32_t>(in.view.E), static_cast<std::int32_t>(in.params.k),
                  static_cast<std::int32_t>(in.params.family), scale, w, id, device, stream);
}

/// A host plugin run on the inputs where they are (the persistent worker's shared region).
class HostPluginRunner final : public CaseRunner {
 public:
  explicit HostPluginRunner(const moecheck_plugin_desc_v1* d) : desc_(d) {}
  RunOutcome run(const CaseInputs& in, float* weights, std::int32_t* ids, bool* /*fatal*/) override {
    const bool any = in.view.T > 0 && in.params.k > 0;
    const int s = call_route(desc_, in, in.view.data, in.params.scale, any ? weights : nullptr, any ? ids : nullptr,
                             MOECHECK_DEVICE_HOST, nullptr);
    if (s != MOECHECK_PLUGIN_OK) return {RunOutcome::Status::rejected, describe_status(s, desc_->last_error())};
    return {};
  }

 private:
  const moecheck_plugin_desc_v1* desc_;
};

#ifdef MOECHECK_HAVE_CUDA_KERNELS
/// True for the CUDA errors that leave the context unusable (every later call fails with them).
bool sticky_cuda_error(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorContextIsDestroyed:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

std::string cuda_error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

/// A CUDA plugin: owns one stream and device buffers reused (grown) across calls, in the process
/// that owns the CUDA context (the worker, or this process without isolation).
///
/// Device outputs carry the guard regions too: [guard | T * k | guard], copied in with the
/// caller's poison and guards and copied back whole, so device-side overruns are caught. Every
/// copy is queued on the plugin's own (non-blocking) stream: a copy on the legacy default
/// stream is not ordered with a non-blocking stream, and a pageable host-to-device cudaMemcpy
/// may return before its DMA lands, so the poison could overwrite the plugin's results after it
/// ran. On one stream, inputs and poison land before route()'s work and the copy-back starts
/// after it.
class CudaPluginRunner final : public CaseRunner {
 public:
  explicit CudaPluginRunner(const moecheck_plugin_desc_v1* d) : desc_(d) {}
  ~CudaPluginRunner() override {
    if (!started_ || broken_) return;  // a broken context is torn down with the process
    for (void* p : {gate_.p, scale_.p, w_.p, id_.p}) cudaFree(p);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string start() override {
    if (started_) return {};
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return "no CUDA device is usable (cudaGetDeviceCount: " + cuda_error_text(e) + ")";
    if (n < 1) return "no CUDA device is usable (cudaGetDeviceCount found none)";
    e = cudaFree(nullptr);  // creates the context now, not inside the first case's time
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
    if (e != cudaSuccess) return "its CUDA context cannot be created (" + cuda_error_text(e) + ")";
    int dev = 0;
    cudaDeviceProp prop{};
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess) name_ = prop.name;
    cudaGetLastError();
    started_ = true;
    return {};
  }

  std::string device_name() const override { return name_; }

  RunOutcome run(const CaseInputs& in, float* weights, std::int32_t* ids, bool* fatal) override {
    if (!started_) {
      std::string e = start();
      if (!e.empty()) return {RunOutcome::Status::crashed, "harness: " + e};
    }
    const std::size_t g = static_cast<std::size_t>(kOutputGuardElements);
    const std::size_t n = static_cast<std::size_t>(std::max<std::int64_t>(in.view.T * in.params.k, 0));
    const std::size_t padded = n + 2 * g;
    const std::size_t sbytes = in.params.scale ? sizeof(float) * static_cast<std::size_t>(in.view.E) : 0;
    std::string err;
    cudaError_t first = cudaSuccess;
    auto chk = [&](cudaError_t e, const char* what) {
      if (e != cudaSuccess && err.empty()) {
        err = std::string(what) + ": " + cuda_error_text(e);
        first = e;
        cudaGetLastError();
      }
      return err.empty();
    };
    int status = MOECHECK_PLUGIN_OK;
    std::string pmsg;
    bool called = false;
    if (grow(gate_, in.storage_bytes, chk, "cudaMalloc(gating)") && grow(scale_, sbytes, chk, "cudaMalloc(scale)") &&
        grow(w_, padded * sizeof(float), chk, "cudaMalloc(weights)") &&
        grow(id_, padded * sizeof(std::int32_t), chk, "cudaMalloc(ids)") &&
        (!in.storage_bytes || chk(cudaMemcpyAsync(gate_.p, in.storage, in.storage_bytes, cudaMemcpyHostToDevice, stream_),
                                  "cudaMemcpyAsync(gating)")) &&
        (!sbytes || chk(cudaMemcpyAsync(scale_.p, in.params.scale, sbytes, cudaMemcpyHostToDevice, stream_),
                        "cudaMemcpyAsync(scale)")) &&
        chk(cudaMemcpyAsync(w_.p, weights - g, padded * sizeof(float), cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync(poison)") &&
        chk(cudaMemcpyAsync(id_.p, ids - g, padded * sizeof(std::int32_t), cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync(poison)")) {
      // The view's data pointer keeps its offset into the storage (padded layouts).
      const auto offset = in.view.data ? static_cast<const std::uint8_t*>(in.view.data) - in.storage : 0;
      const void* gating = in.view.data ? static_cast<const std::uint8_t*>(gate_.p) + offset : nullptr;
      called = true;
      status = call_route(desc_, in, gating, sbytes ? static_cast<const float*>(scale_.p) : nullptr,
                          static_cast<float*>(w_.p) + g, static_cast<std::int32_t*>(id_.p) + g,
                          MOECHECK_DEVICE_CUDA, stream_);
      if (status != MOECHECK_PLUGIN_OK) {
        const char* e = desc_->last_error();
        pmsg = e ? e : "";
      }
      chk(cudaStreamSynchronize(stream_), "plugin work on the stream");
      // Outputs and guards come back whatever the status (a rejecting call may still overrun).
      if (err.empty()) {
        chk(cudaMemcpyAsync(weights - g, w_.p, padded * sizeof(float), cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync(weights)") &&
            chk(cudaMemcpyAsync(ids - g, id_.p, padded * sizeof(std::int32_t), cudaMemcpyDeviceToHost, stream_),
                "cudaMemcpyAsync(ids)") &&
            chk(cudaStreamSynchronize(stream_), "copy-back on the stream") &&
            // Work the plugin queued elsewhere, against the ABI, faults within its own call.
            chk(cudaDeviceSynchronize(), "device synchronisation after the call");
      }
    }
    if (!err.empty()) {
      // A sticky error, or any error that a fresh synchronisation still reports, means the
      // context is gone: nothing more can run in this process.
      const cudaError_t again = cudaDeviceSynchronize();
      cudaGetLastError();
      if (sticky_cuda_error(first) || sticky_cuda_error(again)) {
        broken_ = true;
        *fatal = true;
        std::string msg = "device fault: " + err;
        if (called && status != MOECHECK_PLUGIN_OK) msg += "; " + describe_status(status, pmsg.c_str());
        return {RunOutcome::Status::device_fault, msg};
      }
      return {RunOutcome::Status::crashed, err};
    }
    if (status != MOECHECK_PLUGIN_OK) return {RunOutcome::Status::rejected, describe_status(status, pmsg.c_str())};
    return {};
  }

 private:
  struct Buffer {
    void* p = nullptr;
    std::size_t bytes = 0;
  };

  /// Makes `b` hold at least `bytes` bytes (at least 1), reallocating when it is too small.
  template <typename Check>
  static bool grow(Buffer& b, std::size_t bytes, Check& chk, const char* what) {
    bytes = std::max<std::size_t>(bytes, 1);
    if (b.bytes >= bytes) return true;
    if (b.p) cudaFree(b.p);
    b.p = nullptr;
    b.bytes = 0;
    if (!chk(cudaMalloc(&b.p, bytes), what)) return false;
    b.bytes = bytes;
    return true;
  }

  const moecheck_plugin_desc_v1* desc_;
  std::string name_;
  bool started_ = false;
  bool broken_ = false;
  cudaStream_t stream_ = nullptr;
  Buffer gate_, scale_, w_, id_;
};

/// A hint for a worker that cannot initialise CUDA: whether this process had initialised it
/// before the worker was forked (a forked child cannot use the CUDA driver then).
std::string cuda_before_fork_hint() {
  std::FILE* f = std::fopen("/proc/self/maps", "r");
  if (!f) return {};
  char line[512];
  bool seen = false;
  while (!seen && std::fgets(line, sizeof line, f)) seen = std::strstr(line, "/dev/nvidia") != nullptr;
  std::fclose(f);
  return seen ? " (this process had already initialised CUDA when it forked the plugin's worker: create CUDA "
                "plugin targets before any other CUDA use, or run with --no-isolation)"
              : std::string();
}
#endif


class PluginTarget final : public Target {
 public:
  PluginTarget(std::string path, bool isolate) : path_(std::move(path)), isolate_(isolate) {
    dlerror();
    handle_ = dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      const char* e = dlerror();
      throw std::invalid_argument("plugin '" + path_ + "': cannot load: " + (e ? e : "dlopen failed"));
    }
    try {
      PluginDescriptor d = load_plugin_descriptor(handle_, path_);
      desc_ = d.base;
      contract_ = std::move(d.contract);
    } catch (...) {
      close();
      throw;
    }
    name_ = desc_->name;
    host_ = (desc_->devices & MOECHECK_PLUGIN_BIT(MOECHECK_DEVICE_HOST)) != 0;
    if (!host_) {
#ifdef MOECHECK_HAVE_CUDA_KERNELS
      runner_ = std::make_unique<CudaPluginRunner>(desc_);
      if (isolate_) {
        start_worker(" runs on CUDA only and ");
      } else if (!cuda_device_available()) {
        close();
        throw std::invalid_argument("plugin '" + path_ + "' runs on CUDA only and no CUDA device is usable");
      }
#else
      close();
      throw std::invalid_argument("plugin '" + path_ + "' runs on CUDA only and this moecheck was built without CUDA");
#endif
    } else if (isolate_) {
      const char* w = std::getenv("MOECHECK_PLUGIN_WORKER");
      if (w && std::strcmp(w, "1") == 0) {
        runner_ = std::make_unique<HostPluginRunner>(desc_);
        start_worker(": ");
      }
    }
  }
  ~PluginTarget() override {
    worker_.reset();  // the worker processes first: they run the plugin's code
    runner_.reset();
    close();
  }

  std::string spec() const override { return "plugin:" + name_; }
  Contract contract() const override { return contract_; }
  std::string device() const override { return host_ ? "cpu" : "cuda"; }
  std::string unsupported(const RoutingCase& c) const override {
    if (!(desc_->dtypes & MOECHECK_PLUGIN_BIT(static_cast<int>(c.dtype)))) {
      return std::string("plugin '") + name_ + "' does not declare dtype " + dtype_name(c.dtype);
    }
    if (!(desc_->families & MOECHECK_PLUGIN_BIT(static_cast<int>(c.family)))) {
      return std::string("plugin '") + name_ + "' does not declare family " + family_name(c.family);
    }
    if (desc_->max_experts > 0 && c.E > desc_->max_experts) {
      return "E > " + std::to_string(desc_->max_experts) + " (plugin max_experts)";
    }
    if (desc_->max_k > 0 && c.k > desc_->max_k) return "k > " + std::to_string(desc_->max_k) + " (plugin max_k)";
    return {};
  }

  Domain domain() const override {
    Domain d;
    for (DType t : {DType::f32, DType::f16, DType::bf16}) {
      if (desc_->dtypes & MOECHECK_PLUGIN_BIT(static_cast<int>(t))) d.dtypes.push_back(t);
    }
    for (Family f : {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw, Family::sigmoid_grouped,
                     Family::sigmoid_top1}) {
      if (desc_->families & MOECHECK_PLUGIN_BIT(static_cast<int>(f))) d.families.push_back(f);
    }
    d.max_E = desc_->max_experts;
    d.max_k = desc_->max_k;
    return d;
  }
  bool runs_in_process() const override { return !worker_ && !(host_ && isolate_); }
  std::string lost() const override { return worker_ ? worker_->lost() : lost_; }
  std::string device_name() const override { return worker_ && !host_ ? worker_->device_name() : std::string(); }

  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    if (worker_) return worker_->run(m, weights, ids, call_limits());
    if (!host_) return run_cuda_in_process(m, weights, ids);
    if (!isolate_) {
      const int s = call(m, m.view.data, m.params.scale, weights, ids, MOECHECK_DEVICE_HOST, nullptr);
      if (s != MOECHECK_PLUGIN_OK) return {RunOutcome::Status::rejected, describe_status(s, desc_->last_error())};
      return {};
    }
    return run_isolated(m, weights, ids);
  }

 private:
  /// Starts the persistent worker now, so that a plugin it cannot run is a clear error here
  /// (e.g. no usable CUDA device) rather than a failure of every case. Throws
  /// std::invalid_argument "plugin '<path>'<joint><why>".
  void start_worker(const char* joint) {
    std::string why;
    try {
      worker_ = std::make_unique<CaseWorker>(*runner_);
      why = worker_->start(call_limits());
    } catch (const std::exception& e) {
      why = std::string("its worker process cannot be started: ") + e.what();
    }
    if (why.empty()) return;
#ifdef MOECHECK_HAVE_CUDA_KERNELS
    if (!host_) why += cuda_before_fork_hint();
#endif
    worker_.reset();
    runner_.reset();
    close();
    throw std::invalid_argument("plugin '" + path_ + "'" + joint + why);
  }

  /// A CUDA plugin in this process (--no-isolation): a device fault is reported for its case,
  /// then the target is lost (the process's CUDA context is gone).
  RunOutcome run_cuda_in_process(const MaterializedCase& m, float* weights, std::int32_t* ids) {
    if (!lost_.empty()) return {RunOutcome::Status::abandoned, lost_};
    if (!runner_) return {RunOutcome::Status::crashed, "CUDA plugin in a build without CUDA"};
    bool fatal = false;
    RunOutcome out = runner_->run(case_inputs(m), weights, ids, &fatal);
    if (fatal) {
      lost_ = "a device fault of the in-process CUDA plugin (--no-isolation) destroyed this process's CUDA "
              "context: no further case can run (run without --no-isolation to contain device faults)";
    }
    return out;
  }

  int call(const MaterializedCase& m, const void* gating, const float* scale, float* w, std::int32_t* id,
           int device, void* stream) const {
    return desc_->route(gating, m.view.row_stride, m.view.col_stride, static_cast<std::int32_t>(m.view.dtype),
                        m.view.T, static_cast<std::int32_t>(m.view.E), static_cast<std::int32_t>(m.params.k),
                        static_cast<std::int32_t>(m.params.family), scale, w, id, device, stream);
  }

  RunOutcome run_isolated(const MaterializedCase& m, float* weights, std::int32_t* ids) {
    // The exchange carries the padded outputs [guard | T * k | guard] so that overruns land in
    // guards the caller checks, exactly as they would in-process.
    const std::size_t g = static_cast<std::size_t>(kOutputGuardElements);
    const std::size_t n = static_cast<std::size_t>(m.view.T) * static_cast<std::size_t>(m.params.k);
    const std::size_t padded = n + 2 * g;
    const std::size_t bytes = sizeof(SharedHeader) + padded * (sizeof(float) + sizeof(std::int32_t));
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      return {RunOutcome::Status::crashed, std::string("harness: mmap of the plugin exchange failed: ") +
                                               std::strerror(errno)};
    }
    struct Unmap {
      void* p;
      std::size_t b;
      ~Unmap() { munmap(p, b); }
    } unmap{mem, bytes};
    auto* hdr = static_cast<SharedHeader*>(mem);
    hdr->status = -1;
    hdr->finished = 0;
    hdr->message[0] = '\0';
    auto* w = reinterpret_cast<float*>(static_cast<char*>(mem) + sizeof(SharedHeader));
    auto* id = reinterpret_cast<std::int32_t*>(w + padded);
    std::memcpy(w, weights - g, padded * sizeof(float));  // the caller's poison and guards
    std::memcpy(id, ids - g, padded * sizeof(std::int32_t));
    std::fflush(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      return {RunOutcome::Status::crashed, std::string("harness: fork failed: ") + std::strerror(errno)};
    }
    if (pid == 0) {
      // Child: only async-signal-tolerant work from here on; leave with _exit. Own process group
      // (the parent kills the group), killed when the parent dies, default stop signals.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before the line above
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      const int s = call(m, m.view.data, m.params.scale, n ? w + g : nullptr, n ? id + g : nullptr,
                         MOECHECK_DEVICE_HOST, nullptr);
      hdr->status = s;
      if (s != MOECHECK_PLUGIN_OK) {
        const char* e = desc_->last_error();
        std::strncpy(hdr->message, e ? e : "", kMessageBytes - 1);
        hdr->message[kMessageBytes - 1] = '\0';
      }
      hdr->finished = 1;
      _exit(0);
    }
    setpgid(pid, pid);  // also here: no window in which a group kill would miss the child
    int wstatus = 0;
    const Wait waited = wait_for_child(pid, &wstatus);
    if (waited == Wait::timed_out) {
      return {RunOutcome::Status::timed_out,
              "plugin did not return within " + seconds_text(call_limits().timeout_s) + " s (killed)"};
    }
    if (waited == Wait::abandoned) {
      return {RunOutcome::Status::abandoned, "plugin call abandoned (stop requested or budget exhausted)"};
    }
    if (WIFSIGNALED(wstatus)) {
      const int sig = WTERMSIG(wstatus);
      const char* sn = strsignal(sig);
      return {RunOutcome::Status::crashed,
              "plugin crashed: signal " + std::to_string(sig) + " (" + (sn ? sn : "?") + ")"};
    }
    if (!hdr->finished) {
      return {RunOutcome::Status::crashed,
              "plugin terminated the process (exit status " + std::to_string(WEXITSTATUS(wstatus)) + ")"};
    }
    // The guards come back whatever the status: a rejecting call may have written past them too.
    std::memcpy(weights - g, w, padded * sizeof(float));
    std::memcpy(ids - g, id, padded * sizeof(std::int32_t));
    if (hdr->status != MOECHECK_PLUGIN_OK) {
      return {RunOutcome::Status::rejected, describe_status(hdr->status, hdr->message)};
    }
    return {};
  }

  enum class Wait { exited, timed_out, abandoned };

  static std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", s);
    return buf;
  }

  /// Kills the child's process group and the child, then reaps it.
  static void kill_child(pid_t pid, int* wstatus) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, wstatus, 0) < 0 && errno == EINTR) {
    }
  }

  /// Waits for `pid`, polling CallLimits::abandon; kills it after CallLimits::timeout_s or when
  /// abandon() says so.
  Wait wait_for_child(pid_t pid, int* wstatus) const {
    const CallLimits& lim = call_limits();
    timespec start{};
    clock_gettime(CLOCK_MONOTONIC, &start);
    long sleep_ns = 100000;  // 0.1 ms, growing to 5 ms: quick calls stay quick, long waits stay cheap
    for (;;) {
      const pid_t r = waitpid(pid, wstatus, WNOHANG);
      if (r == pid) return Wait::exited;
      if (r < 0 && errno != EINTR) return Wait::exited;  // reaped elsewhere: treat as exited
      if (lim.abandon && lim.abandon()) {
        kill_child(pid, wstatus);
        return Wait::abandoned;
      }
      timespec now{};
      clock_gettime(CLOCK_MONOTONIC, &now);
      const double waited = static_cast<double>(now.tv_sec - start.tv_sec) +
                            1e-9 * static_cast<double>(now.tv_nsec - start.tv_nsec);
      if (waited >= lim.timeout_s) {
        kill_child(pid, wstatus);
        return Wait::timed_out;
      }
      const timespec step{0, sleep_ns};
      nanosleep(&step, nullptr);
      sleep_ns = std::min(sleep_ns * 2, 5000000L);
    }
  }

  void close() {
    if (handle_) dlclose(handle_);
    handle_ = nullptr;
  }

  std::string path_;
  bool isolate_;
  void* handle_ = nullptr;
  const moecheck_plugin_desc_v1* desc_ = nullptr;
  std::string name_;
  bool host_ = true;
  Contract contract_;
  std::unique_ptr<CaseRunner> runner_;  ///< CUDA plugins, and host plugins in a worker
  std::unique_ptr<CaseWorker> worker_;  ///< the persistent worker process, when isolated there
  std::string lost_;                    ///< in-process: why no further case can run
};

}  // namespace

std::unique_ptr<Target> make_plugin_target(const std::string& path, bool isolate) {
  if (path.empty()) throw std::invalid_argument("target 'plugin:': missing the path of a shared object");
  return std::make_unique<PluginTarget>(path, isolate);
}

}  // namespace moecheck
