// The "plugin:<path.so>" target: an external routing implementation loaded with dlopen through
// the C ABI of kernels/moecheck_plugin.h and checked like every built-in implementation. The
// target is named after the plugin's descriptor name ("plugin:<name>"), never its path.
//
// Crash containment. Host plugins run in a forked child by default (TargetOptions::
// isolate_plugins): the child calls route() on its copy-on-write view of the case and writes
// the outputs (with their guard regions) into an anonymous shared mapping; the parent reads
// them back. A plugin that segfaults, aborts or calls exit() is reported as a "crash" failure
// of that case, one that runs past CallLimits::timeout_s as a "timeout" failure (the child is
// killed), and the campaign's own memory cannot be corrupted by it. While waiting, the parent
// polls CallLimits::abandon (stop request, end of the budget) and kills the child when it says
// so. The child runs in its own process group (killed as a group) and dies with its parent
// (PR_SET_PDEATHSIG), so no worker outlives moecheck. Without isolation (or for CUDA plugins,
// since CUDA contexts do not survive fork) the call is made in-process: errors are still
// reported, a crash is not contained, and hangs/exit() are left to the campaign's watchdog.
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
#include <cstring>
#include <stdexcept>
#include <string>

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
      if (!cuda_device_available()) {
        close();
        throw std::invalid_argument("plugin '" + path_ + "' runs on CUDA only and no CUDA device is usable");
      }
#else
      close();
      throw std::invalid_argument("plugin '" + path_ + "' runs on CUDA only and this moecheck was built without CUDA");
#endif
    }
  }
  ~PluginTarget() override { close(); }

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
  bool runs_in_process() const override { return !host_ || !isolate_; }

  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    if (!host_) return run_cuda(m, weights, ids);
    if (!isolate_) {
      const int s = call(m, m.view.data, m.params.scale, weights, ids, MOECHECK_DEVICE_HOST, nullptr);
      if (s != MOECHECK_PLUGIN_OK) return {RunOutcome::Status::rejected, describe_status(s, desc_->last_error())};
      return {};
    }
    return run_isolated(m, weights, ids);
  }

 private:
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

  RunOutcome run_cuda(const MaterializedCase& m, float* weights, std::int32_t* ids) {
#ifdef MOECHECK_HAVE_CUDA_KERNELS
    // Device outputs carry the guard regions too: [guard | T * k | guard], copied in with the
    // caller's poison and guards and copied back whole, so device-side overruns are caught.
    // Every copy is queued on the plugin's own (non-blocking) stream: a copy on the legacy
    // default stream is not ordered with a non-blocking stream, and a pageable host-to-device
    // cudaMemcpy may return before its DMA lands, so the poison could overwrite the plugin's
    // results after it ran. On one stream, inputs and poison land before route()'s work and the
    // copy-back starts after it.
    const std::size_t g = static_cast<std::size_t>(kOutputGuardElements);
    const std::size_t n = static_cast<std::size_t>(m.view.T) * static_cast<std::size_t>(m.params.k);
    const std::size_t padded = n + 2 * g;
    const std::size_t storage = m.storage.size();
    const std::size_t sbytes = m.params.scale ? sizeof(float) * static_cast<std::size_t>(m.view.E) : 0;
    void *gate = nullptr, *s = nullptr, *w = nullptr, *id = nullptr;
    cudaStream_t stream = nullptr;
    std::string err;
    auto chk = [&](cudaError_t e, const char* what) {
      if (e != cudaSuccess && err.empty()) {
        err = std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
        cudaGetLastError();
      }
      return err.empty();
    };
    int status = MOECHECK_PLUGIN_OK;
    std::string pmsg;
    if (chk(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate") &&
        chk(cudaMalloc(&gate, storage ? storage : 1), "cudaMalloc(gating)") &&
        chk(cudaMalloc(&w, padded * sizeof(float)), "cudaMalloc(weights)") &&
        chk(cudaMalloc(&id, padded * sizeof(std::int32_t)), "cudaMalloc(ids)") &&
        (!sbytes || chk(cudaMalloc(&s, sbytes), "cudaMalloc(scale)")) &&
        (!storage ||
         chk(cudaMemcpyAsync(gate, m.storage.data(), storage, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync(gating)")) &&
        (!sbytes || chk(cudaMemcpyAsync(s, m.params.scale, sbytes, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync(scale)")) &&
        chk(cudaMemcpyAsync(w, weights - g, padded * sizeof(float), cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync(poison)") &&
        chk(cudaMemcpyAsync(id, ids - g, padded * sizeof(std::int32_t), cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync(poison)")) {
      status = call(m, gate, static_cast<const float*>(s), static_cast<float*>(w) + g,
                    static_cast<std::int32_t*>(id) + g, MOECHECK_DEVICE_CUDA, stream);
      if (status != MOECHECK_PLUGIN_OK) pmsg = desc_->last_error();
      chk(cudaStreamSynchronize(stream), "plugin work on the stream");
      // Outputs and guards come back whatever the status (a rejecting call may still overrun).
      if (err.empty()) {
        chk(cudaMemcpyAsync(weights - g, w, padded * sizeof(float), cudaMemcpyDeviceToHost, stream),
            "cudaMemcpyAsync(weights)") &&
            chk(cudaMemcpyAsync(ids - g, id, padded * sizeof(std::int32_t), cudaMemcpyDeviceToHost, stream),
                "cudaMemcpyAsync(ids)") &&
            chk(cudaStreamSynchronize(stream), "copy-back on the stream");
      }
    }
    cudaFree(gate);
    cudaFree(s);
    cudaFree(w);
    cudaFree(id);
    if (stream) cudaStreamDestroy(stream);
    if (!err.empty()) return {RunOutcome::Status::crashed, err};
    if (status != MOECHECK_PLUGIN_OK) return {RunOutcome::Status::rejected, describe_status(status, pmsg.c_str())};
    return {};
#else
    (void)m;
    (void)weights;
    (void)ids;
    return {RunOutcome::Status::crashed, "CUDA plugin in a build without CUDA"};
#endif
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
};

}  // namespace

std::unique_ptr<Target> make_plugin_target(const std::string& path, bool isolate) {
  if (path.empty()) throw std::invalid_argument("target 'plugin:': missing the path of a shared object");
  return std::make_unique<PluginTarget>(path, isolate);
}

}  // namespace moecheck
