// Long-lived worker processes that run code under test away from the campaign process: one
// worker per target (for a CUDA plugin it owns the CUDA context), reused across calls and
// replaced after it dies, hangs or declares itself unusable (a device fault). Not a public API:
// harness/core's plugin target and the tests use it. DESIGN.md, section "Campaigns" (the
// bullet "Isolation of CUDA plugins"), describes it.
//
// Processes. The constructor forks a supervisor process (the "zygote") at once, before the
// caller touches CUDA and normally while it is single-threaded (the CLI builds its target
// before starting any thread). The zygote stays single-threaded, never initialises CUDA and only
// makes system calls: on request it forks a worker, whose memory image is therefore the
// caller's at construction time, clean of any CUDA state and of locks held by other threads,
// however many threads the caller has started since. A worker runs WorkerService::start (e.g.
// creates the CUDA context), then serves requests until it is killed. Restarting a worker is a
// fork of the small zygote, not of the caller.
//
// Exchange. Requests and replies are fixed-size messages on a SOCK_SEQPACKET socket pair; the
// bulk (inputs, outputs and their guard regions) lives in one memfd shared with the worker,
// grown (never shrunk) as requests need, so nothing is copied through the socket.
//
// Output. A worker's stdout and stderr are a pipe that the caller forwards to its own stderr
// while it waits for the worker: a worker stuck in the GPU driver (a process being torn down
// after a device fault can sit there, unkillable, for a while) never holds the caller's
// stdout/stderr open, so whatever reads them (a CI runner, a pipe) is not held up by it.
// MOECHECK_WORKER_TRACE=1 writes a timestamped line for each step (start, requests, faults,
// kills, ends of workers) to stderr.
//
// Lifetime. Worker and zygote run in their own process groups (terminal signals meant for the
// campaign do not reach them; the caller kills a worker's whole group). The zygote leaves as
// soon as the caller's end of its socket closes, which the kernel does when the caller dies in
// any way (SIGKILL included), killing its workers first; each worker has PR_SET_PDEATHSIG
// SIGKILL tied to the zygote (single-threaded, so the signal follows the process) and also
// leaves when its request socket closes. The zygote is deliberately not tied to the caller with
// PR_SET_PDEATHSIG: that signal follows the creating thread, not the process, and a caller may
// build a target on one thread and use it on another.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "harness/core/case.hpp"
#include "harness/core/target.hpp"

namespace moecheck {

/// One request to a worker: a few fixed fields; the bulk lives in the shared region.
struct WorkerRequest {
  std::uint64_t seq = 0;           ///< set by IsolatedWorker::call
  std::uint64_t region_bytes = 0;  ///< bytes of the shared region this request uses
  std::int64_t args[24] = {};      ///< service-specific
};

/// A worker's answer to one request.
struct WorkerReply {
  std::uint64_t seq = 0;
  std::int32_t code = 0;   ///< service-specific
  std::int32_t fatal = 0;  ///< non-zero: this worker must not serve again (it exits after replying)
  char message[1024] = {};
};

/// The code a worker process runs. The object lives in the caller's memory and reaches the
/// workers as a copy (fork); only worker processes call its methods.
class WorkerService {
 public:
  virtual ~WorkerService() = default;
  /// Runs once in every new worker before its first request (e.g. creates the CUDA context):
  /// "" when ready, else why it cannot serve (the worker then exits).
  virtual std::string start() { return {}; }
  /// After a successful start: a line about the worker for the caller (IsolatedWorker::info).
  virtual std::string info() { return {}; }
  /// Serves one request on `region` (req.region_bytes bytes shared with the caller). Sets
  /// reply.fatal when this process must not serve another request.
  virtual void serve(const WorkerRequest& req, unsigned char* region, WorkerReply& reply) = 0;
};

/// How one IsolatedWorker::call (or start) ended.
struct WorkerCallResult {
  enum class Kind {
    replied,    ///< `reply` holds the worker's answer
    died,       ///< the worker ended during the call (signal, exit): `error` says how
    timed_out,  ///< ran past CallLimits::timeout_s: the worker was killed
    abandoned,  ///< CallLimits::abandon said so: the worker was killed
    failed      ///< no worker could be started: `error` says why
  };
  Kind kind = Kind::failed;
  WorkerReply reply;
  std::string error;
};

/// The caller's side of one worker slot: a zygote (forked by the constructor) and at most one
/// live worker. Not thread-safe: one call at a time.
class IsolatedWorker {
 public:
  /// Forks the zygote. `service` must outlive this object. Throws std::runtime_error when
  /// the socket, memfd or fork cannot be made.
  explicit IsolatedWorker(WorkerService& service);
  /// Kills the live worker and the zygote and reaps them.
  ~IsolatedWorker();
  IsolatedWorker(const IsolatedWorker&) = delete;
  IsolatedWorker& operator=(const IsolatedWorker&) = delete;

  /// The shared region, at least `bytes` long (grown by remapping: earlier pointers become
  /// invalid). nullptr, with *error set, when it cannot grow.
  unsigned char* region(std::size_t bytes, std::string* error);
  /// Starts a worker unless one is live and waits for WorkerService::start, at most
  /// max(limits.timeout_s, kStartSeconds) and polling limits.abandon. Kind::replied when ready.
  WorkerCallResult start(const CallLimits& limits);
  /// Sends `req` (its seq is set here) to the live worker, starting one first if none is live
  /// (or if the live one ended while idle), and waits for the reply, polling limits.abandon at
  /// least every 10 ms. A worker that died, timed out, was abandoned or replied `fatal` is
  /// killed and reaped before this returns; the next call starts a new one.
  WorkerCallResult call(WorkerRequest& req, const CallLimits& limits);
  /// Kills the live worker, if any (the next call starts a new one).
  void stop_worker();

  pid_t worker_pid() const { return wpid_; }  ///< the live worker, 0 when none
  /// WorkerService::info of the last worker that became ready ("" before any).
  const std::string& info() const { return info_; }
  pid_t zygote_pid() const { return zpid_; }
  int workers_started() const { return started_; }

  /// Lower bound of the time a worker gets to become ready (CUDA context creation).
  static constexpr double kStartSeconds = 60;

 private:
  WorkerCallResult wait_reply(std::uint64_t seq, double timeout_s, const CallLimits& limits);
  void forward_output();  ///< copies what the worker wrote so far to this process's stderr
  /// Kills the live worker and has the zygote reap it; with `want_status`, waits for how it
  /// ended and describes it ("was killed by signal 11 (...)", "exited with status 0").
  std::string reap_worker(bool want_status);

  WorkerService& service_;
  int zctl_ = -1;       ///< socket to the zygote
  pid_t zpid_ = 0;
  int memfd_ = -1;
  unsigned char* map_ = nullptr;
  std::size_t cap_ = 0;
  int wsock_ = -1;      ///< socket to the live worker
  int out_ = -1;        ///< read end of the live worker's stdout/stderr pipe
  int wpidfd_ = -1;     ///< pidfd of the live worker (-1 where the kernel has none)
  pid_t wpid_ = 0;
  std::uint64_t seq_ = 0;
  int started_ = 0;
  std::string zygote_gone_;  ///< non-empty once the zygote cannot fork workers any more
  std::string info_;
};

/// The inputs of one routing call: the gating storage (the view points into it) and the
/// parameters, as a worker sees them (or MaterializedCase, in-process).
struct CaseInputs {
  const std::uint8_t* storage = nullptr;
  std::size_t storage_bytes = 0;
  GatingView view;
  RoutingParams params;
};

/// The inputs of a materialized case.
CaseInputs case_inputs(const MaterializedCase& m);

/// Code under test run on cases, in a worker (CaseWorker) or in-process.
class CaseRunner {
 public:
  virtual ~CaseRunner() = default;
  /// As WorkerService::start.
  virtual std::string start() { return {}; }
  /// After a successful start: the device it runs on ("" for the host); CaseWorker::device_name.
  virtual std::string device_name() const { return {}; }
  /// Runs one case as Target::run does: `weights` and `ids` hold T * k elements between
  /// kOutputGuardElements guards. Sets *fatal when this process cannot run another case (its
  /// CUDA context is lost). Must not throw.
  virtual RunOutcome run(const CaseInputs& in, float* weights, std::int32_t* ids, bool* fatal) = 0;
};

/// Runs a CaseRunner's cases in an IsolatedWorker: inputs, poison and guards go to the worker
/// through the shared region, outputs and guards come back, and what went wrong becomes a
/// RunOutcome: a worker that died is `crashed` ("... signal 11 (Segmentation fault)"), one
/// past the case timeout `timed_out`, a fatal reply keeps the runner's status (e.g.
/// device_fault); each replaces the worker for the next call.
class CaseWorker {
 public:
  /// Forks the zygote (IsolatedWorker). `runner` must outlive this object.
  explicit CaseWorker(CaseRunner& runner);
  ~CaseWorker();
  /// Starts the worker now: "" when ready, else why it cannot run cases.
  std::string start(const CallLimits& limits);
  /// Runs one case (see the class comment). `what` names the code in messages ("plugin").
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids, const CallLimits& limits,
                 const std::string& what = "plugin");
  /// Why no further case can run (no worker could be started), "" otherwise.
  const std::string& lost() const { return lost_; }
  /// CaseRunner::device_name as the worker reported it when it started.
  const std::string& device_name() const { return worker_->info(); }
  const IsolatedWorker& worker() const { return *worker_; }

 private:
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<IsolatedWorker> worker_;
  std::string lost_;
};

}  // namespace moecheck
