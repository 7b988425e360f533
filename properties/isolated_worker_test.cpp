// The persistent worker process (harness/core/isolated_worker.hpp) that isolated CUDA plugins
// run in, driven on the host by a fake runner that routes correctly (the reference) and then
// misbehaves on purpose: crashes, hangs, exits, writes past its outputs, or "faults the device"
// (a fatal reply after which that process answers every call with the same fault, as a lost
// CUDA context does). No GPU needed: the CUDA runner differs only in where route() runs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "harness/core/campaign.hpp"
#include "harness/core/generators.hpp"
#include "harness/core/isolated_worker.hpp"
#include "harness/core/replay.hpp"
#include "properties/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moecheck;
using Clock = std::chrono::steady_clock;

namespace {

/// Routes with the reference, then misbehaves as `mode` says when T == trigger_T (or, for
/// "fault-on-nan", when any logit is NaN).
class FakeRunner final : public CaseRunner {
 public:
  FakeRunner(std::string mode, std::int64_t trigger_T = -1, std::string pid_file = "")
      : mode_(std::move(mode)), trigger_T_(trigger_T), pid_file_(std::move(pid_file)) {}

  std::string start() override {
    if (mode_ == "start-fails") return "no fake device is usable";
    return {};
  }
  std::string device_name() const override { return "Fake GPU 9000"; }

  RunOutcome run(const CaseInputs& in, float* weights, std::int32_t* ids, bool* fatal) override {
    if (lost_) {
      *fatal = true;
      return {RunOutcome::Status::device_fault, "device fault: the context was already lost"};
    }
    const bool hit = in.view.T == trigger_T_;
    if (hit && mode_ == "segv") raise(SIGSEGV);
    if (hit && mode_ == "exit") std::exit(3);
    if (hit && mode_ == "hang") {
      for (;;) pause();
    }
    if (mode_ == "fault-on-nan" && has_nan(in.view)) {
      lost_ = true;  // every later call in this process faults too
      *fatal = true;
      return {RunOutcome::Status::device_fault, "device fault: fake illegal address"};
    }
    const std::int64_t n = in.view.T * in.params.k;
    std::vector<double> w(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
    try {
      route_reference(in.view, in.params, w.data(), ids);
    } catch (const RoutingError& e) {
      return {RunOutcome::Status::rejected, e.what()};
    }
    for (std::int64_t i = 0; i < n; ++i) weights[i] = static_cast<float>(w[static_cast<std::size_t>(i)]);
    if (hit && mode_ == "oob") ids[n + 3] = 7;
    if (hit && mode_ == "linger") {
      // A process that outlives the worker, out of reach of its group kill (as a worker stuck
      // in the GPU driver does), holding the worker's stdout and stderr.
      if (fork() == 0) {
        setsid();
        std::fprintf(stderr, "lingering\n");
        std::fflush(stderr);
        const std::string tmp = pid_file_ + ".tmp";
        if (std::FILE* f = std::fopen(tmp.c_str(), "w")) {
          std::fprintf(f, "%d\n", static_cast<int>(getpid()));
          std::fclose(f);
          std::rename(tmp.c_str(), pid_file_.c_str());
        }
        sleep(20);
        _exit(0);
      }
      for (int i = 0; i < 400 && access(pid_file_.c_str(), F_OK) != 0; ++i) usleep(5000);
      raise(SIGSEGV);
    }
    return {};
  }

 private:
  static bool has_nan(const GatingView& v) {
    for (std::int64_t t = 0; t < v.T; ++t) {
      for (std::int64_t e = 0; e < v.E; ++e) {
        if (std::isnan(v.at(t, e))) return true;
      }
    }
    return false;
  }

  std::string mode_;
  std::int64_t trigger_T_;
  std::string pid_file_;
  bool lost_ = false;
};

/// A target whose implementation runs in a CaseWorker.
class WorkerTarget final : public Target {
 public:
  /// Starts the worker at once, as the plugin target does.
  explicit WorkerTarget(FakeRunner runner) : runner_(std::move(runner)), worker_(runner_) {
    const std::string why = worker_.start(call_limits());
    if (!why.empty()) throw std::runtime_error(why);
  }
  std::string spec() const override { return "reference"; }
  std::string device() const override { return "cuda"; }
  std::string device_name() const override { return worker_.device_name(); }
  bool runs_in_process() const override { return false; }
  std::string lost() const override { return worker_.lost(); }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    return worker_.run(m, weights, ids, call_limits(), "fake plugin");
  }
  CaseWorker& worker() { return worker_; }

 private:
  FakeRunner runner_;
  CaseWorker worker_;
};

/// A valid f32 softmax_topk case of T rows and 8 experts with finite logits.
RoutingCase simple_case(std::int64_t T) {
  RoutingCase c;
  c.family = Family::softmax_topk;
  c.dtype = DType::f32;
  c.T = T;
  c.E = 8;
  c.k = 2;
  c.logits.resize(static_cast<std::size_t>(T * c.E));
  for (std::size_t i = 0; i < c.logits.size(); ++i) {
    c.logits[i] = 0.25f * static_cast<float>(i % 13) - 1.0f + 1e-3f * static_cast<float>(i);
  }
  return c;
}

/// True when `pid` no longer runs (gone, or a zombie nobody has reaped yet).
bool gone(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return true;
  const auto p = line.rfind(')');
  return p != std::string::npos && p + 2 < line.size() && line[p + 2] == 'Z';
}

bool gone_within(pid_t pid, double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (gone(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return gone(pid);
}

}  // namespace

TEST(IsolatedWorker, OneWorkerServesEveryCall) {
  WorkerTarget t(FakeRunner("none"));
  const pid_t first = t.worker().worker().worker_pid();
  ASSERT_GT(first, 0) << "the worker starts with the target";
  GenConfig g;
  g.max_T = 200;
  int judged = 0;
  for (std::uint64_t i = 0; i < 300; ++i) {
    const RoutingCase c = generate_case(case_seed(7, static_cast<std::int64_t>(i)), g);
    Verdict v = evaluate(t, c);
    EXPECT_FALSE(v.failed()) << "case " << i << ": [" << v.check << "] " << v.message;
    judged += v.kind == Verdict::Kind::pass;
  }
  EXPECT_GT(judged, 250);
  EXPECT_EQ(t.worker().worker().workers_started(), 1);
  EXPECT_EQ(t.worker().worker().worker_pid(), first);
}

TEST(IsolatedWorker, CrashIsAFindingAndTheNextCaseRunsInANewWorker) {
  WorkerTarget t(FakeRunner("segv", 3));
  const pid_t first = t.worker().worker().worker_pid();
  Verdict v = evaluate(t, simple_case(3));
  EXPECT_EQ(v.check, "crash");
  EXPECT_NE(v.message.find("signal 11"), std::string::npos) << v.message;
  EXPECT_TRUE(gone_within(first, 2.0));
  Verdict next = evaluate(t, simple_case(4));
  EXPECT_EQ(next.kind, Verdict::Kind::pass) << next.check << ": " << next.message;
  EXPECT_EQ(t.worker().worker().workers_started(), 2);
  EXPECT_NE(t.worker().worker().worker_pid(), first);
}

TEST(IsolatedWorker, AWorkerThatEndedWhileIdleIsReplacedWithoutBlamingTheNextCase) {
  WorkerTarget t(FakeRunner("none"));
  const pid_t first = t.worker().worker().worker_pid();
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(gone_within(first, 2.0));
  Verdict v = evaluate(t, simple_case(3));
  EXPECT_EQ(v.kind, Verdict::Kind::pass) << v.check << ": " << v.message;
  EXPECT_EQ(t.worker().worker().workers_started(), 2);
}

TEST(IsolatedWorker, ExitIsACrash) {
  WorkerTarget t(FakeRunner("exit", 5));
  Verdict v = evaluate(t, simple_case(5));
  EXPECT_EQ(v.check, "crash");
  EXPECT_NE(v.message.find("exited with status 3"), std::string::npos) << v.message;
  EXPECT_EQ(evaluate(t, simple_case(2)).kind, Verdict::Kind::pass);
}

TEST(IsolatedWorker, HangIsATimeoutAndTheWorkerIsKilled) {
  WorkerTarget t(FakeRunner("hang", 6));
  t.set_call_limits({0.3, {}});
  const pid_t hung = t.worker().worker().worker_pid();
  const auto t0 = Clock::now();
  Verdict v = evaluate(t, simple_case(6));
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(v.check, "timeout");
  EXPECT_NE(v.message.find("did not return within 0.3 s"), std::string::npos) << v.message;
  EXPECT_GE(s, 0.29);
  EXPECT_LT(s, 2.0);
  EXPECT_TRUE(gone_within(hung, 2.0));
  EXPECT_EQ(evaluate(t, simple_case(2)).kind, Verdict::Kind::pass);
}

TEST(IsolatedWorker, AbandonKillsTheCallPromptly) {
  WorkerTarget t(FakeRunner("hang", 6));
  std::atomic<bool> stop{false};
  t.set_call_limits({60, [&] { return stop.load(); }});
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stop = true;
  });
  const auto t0 = Clock::now();
  Verdict v = evaluate(t, simple_case(6));
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  stopper.join();
  EXPECT_EQ(v.kind, Verdict::Kind::abandoned) << v.check << ": " << v.message;
  EXPECT_LT(s, 1.0);
}

TEST(IsolatedWorker, WritesPastTheOutputsReachTheGuards) {
  WorkerTarget t(FakeRunner("oob", 4));
  Verdict v = evaluate(t, simple_case(4));
  EXPECT_EQ(v.check, "out-of-bounds-write");
  EXPECT_NE(v.message.find("after `ids`"), std::string::npos) << v.message;
}

TEST(IsolatedWorker, DeviceFaultIsAFindingAndTheWorkerIsReplaced) {
  WorkerTarget t(FakeRunner("fault-on-nan"));
  RoutingCase bad = simple_case(4);
  bad.logits[5] = std::nanf("");
  const pid_t first = t.worker().worker().worker_pid();
  Verdict v = evaluate(t, bad);
  EXPECT_EQ(v.check, "device-fault");
  EXPECT_NE(v.message.find("fake illegal address"), std::string::npos) << v.message;
  EXPECT_TRUE(gone_within(first, 2.0));
  // The faulted process would answer every call with the fault; a new one passes.
  Verdict next = evaluate(t, simple_case(4));
  EXPECT_EQ(next.kind, Verdict::Kind::pass) << next.check << ": " << next.message;
  EXPECT_EQ(t.worker().worker().workers_started(), 2);
}

TEST(IsolatedWorker, StartFailureIsReported) {
  FakeRunner r("start-fails");
  CaseWorker w(r);
  EXPECT_EQ(w.start({}), "no fake device is usable");
  EXPECT_EQ(w.worker().worker_pid(), 0);
}

TEST(IsolatedWorker, BuiltOnAThreadThatEndsAndUsedOnAnother) {
  // The supervisor is not tied to the creating thread (PR_SET_PDEATHSIG follows threads).
  std::unique_ptr<WorkerTarget> t;
  std::thread([&] { t = std::make_unique<WorkerTarget>(FakeRunner("none")); }).join();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Verdict v = evaluate(*t, simple_case(3));
  EXPECT_EQ(v.kind, Verdict::Kind::pass) << v.check << ": " << v.message;
  EXPECT_EQ(t->worker().worker().workers_started(), 1);
}

TEST(IsolatedWorker, DestructionLeavesNoProcess) {
  pid_t z = 0, w = 0;
  {
    WorkerTarget t(FakeRunner("none"));
    z = t.worker().worker().zygote_pid();
    w = t.worker().worker().worker_pid();
    ASSERT_GT(z, 0);
    ASSERT_GT(w, 0);
  }
  EXPECT_TRUE(gone_within(w, 2.0));
  EXPECT_TRUE(gone_within(z, 2.0));
}

TEST(IsolatedWorker, SigkillOfTheCallerLeavesNoWorker) {
  // A child process builds a worker, reports the pids, and is killed with SIGKILL: nothing
  // runs the caller's cleanup, yet the supervisor and the worker must go at once.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::fflush(nullptr);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    WorkerTarget t(FakeRunner("none"));
    const pid_t pids[2] = {t.worker().worker().zygote_pid(), t.worker().worker().worker_pid()};
    if (write(fds[1], pids, sizeof pids) != static_cast<ssize_t>(sizeof pids)) _exit(1);
    for (;;) pause();
  }
  ::close(fds[1]);
  pid_t pids[2] = {0, 0};
  const ssize_t got = read(fds[0], pids, sizeof pids);
  ::close(fds[0]);
  const bool worker_ran = got == static_cast<ssize_t>(sizeof pids) && pids[1] > 0 && !gone(pids[1]);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(worker_ran) << "the child did not report a live worker";
  ASSERT_GT(pids[0], 0);
  EXPECT_TRUE(gone_within(pids[0], 1.0)) << "supervisor " << pids[0] << " outlived its caller";
  EXPECT_TRUE(gone_within(pids[1], 1.0)) << "worker " << pids[1] << " outlived its caller";
}

TEST(IsolatedWorker, AProcessOutlivingTheWorkerDoesNotHoldTheCallersOutput) {
  // A child process runs a case whose worker leaves a lingering process behind and crashes,
  // then exits. Whoever reads the child's stdout/stderr (here a pipe) must see them close at
  // once, not when the lingering process ends: worker output goes through its own pipe.
  const fs::path dir = moecheck_test::temp_dir("linger");
  fs::create_directories(dir);
  const std::string pid_file = (dir / "lingering.pid").string();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::fflush(nullptr);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    int code = 1;
    {
      WorkerTarget t(FakeRunner("linger", 3, pid_file));
      code = evaluate(t, simple_case(3)).check == "crash" ? 0 : 1;
    }
    _exit(code);
  }
  ::close(fds[1]);
  const auto t0 = Clock::now();
  std::string seen;
  char buf[256];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) seen.append(buf, static_cast<std::size_t>(n));
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  ::close(fds[0]);
  int st = 0;
  waitpid(child, &st, 0);
  pid_t lingering = 0;
  std::ifstream(pid_file) >> lingering;
  if (lingering > 0) kill(lingering, SIGKILL);
  fs::remove_all(dir);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the case was not a crash";
  EXPECT_GT(lingering, 0) << "the lingering process was not started";
  EXPECT_LT(s, 5.0) << "the caller's output stayed open until the lingering process ended";
  EXPECT_NE(seen.find("lingering"), std::string::npos) << "the worker's output was not forwarded: " << seen;
}

TEST(IsolatedWorker, CampaignShrinksDeviceFaultsKeepsGoingAndTheCaseReplays) {
  const fs::path dir = moecheck_test::temp_dir("device_fault");
  WorkerTarget t(FakeRunner("fault-on-nan"));
  CampaignOptions o;
  o.seed = 3;
  o.max_cases = 400;
  o.max_failures = 0;  // keep going past every fault
  o.shrink_attempts = 400;
  o.progress = false;
  o.corpus_dir = dir.string();
  o.results_json = (dir / "r.json").string();
  o.gen.max_T = 300;
  std::ostringstream log;
  CampaignResult r = run_campaign(t, o, log);
  EXPECT_FALSE(r.aborted) << r.abort_reason;
  EXPECT_EQ(r.cases + r.skipped + r.outside_contract, 400) << "the campaign ran its whole budget\n" << log.str();
  ASSERT_FALSE(r.failures.empty()) << log.str();
  int faults = 0;
  for (const FailureRecord& f : r.failures) {
    EXPECT_EQ(f.check, "device-fault") << f.message << "\n" << log.str();  // correct cases still pass
    faults += f.check == "device-fault";
    EXPECT_EQ(f.shrunk.T, 1) << "one row with a NaN is enough";
    EXPECT_LE(f.shrunk.E, f.original.E);
  }
  // Every fault costs its worker (each shrink candidate that faults, too): more workers than
  // unique failures, and at least one case ran after the first fault.
  EXPECT_GT(t.worker().worker().workers_started(), faults);
  EXPECT_LT(r.failures.front().case_index, 399);
  // The results and the saved cases name the device the worker reported: this process never
  // asked a CUDA runtime.
  std::ifstream results(dir / "r.json");
  const std::string json((std::istreambuf_iterator<char>(results)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"name\": \"Fake GPU 9000\""), std::string::npos) << json.substr(0, 400);
  const std::string file = r.failures.front().corpus_file;
  ASSERT_FALSE(file.empty());
  EXPECT_EQ(read_corpus_file(file).toolkit.find("device=Fake GPU 9000") == std::string::npos, false);
  // The saved case replays to the same class, in a fresh target (and worker).
  auto factory = [](const std::string&, const TargetOptions&) -> std::unique_ptr<Target> {
    return std::make_unique<WorkerTarget>(FakeRunner("fault-on-nan"));
  };
  ReplayResult rr = replay_entry(read_corpus_file(file), file, "", factory);
  EXPECT_EQ(rr.outcome, "fail") << rr.detail;
  EXPECT_NE(rr.detail.find("[device-fault]"), std::string::npos) << rr.detail;
  fs::remove_all(dir);
}

namespace {

/// In-process stand-in for a CUDA plugin run with --no-isolation: its first device fault (a NaN
/// logit) destroys "the context", after which it can run nothing (Target::lost).
class LosesItsContext final : public Target {
 public:
  std::string spec() const override { return "reference"; }
  std::string lost() const override { return lost_; }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    if (!lost_.empty()) return {RunOutcome::Status::abandoned, lost_};
    bool fatal = false;
    RunOutcome out = runner_.run(case_inputs(m), weights, ids, &fatal);
    if (fatal) lost_ = "the fake CUDA context is gone";
    ++calls_;
    return out;
  }
  int calls() const { return calls_; }

 private:
  FakeRunner runner_{"fault-on-nan"};
  std::string lost_;
  int calls_ = 0;
};

}  // namespace

TEST(IsolatedWorker, ALostTargetEndsTheCampaignAbortedWithItsReason) {
  LosesItsContext t;
  CampaignOptions o;
  o.seed = 3;
  o.max_cases = 400;
  o.max_failures = 0;
  o.progress = false;
  o.gen.max_T = 300;
  std::ostringstream log;
  CampaignResult r = run_campaign(t, o, log);
  EXPECT_TRUE(r.aborted);
  EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(r.abort_reason, "the fake CUDA context is gone");
  ASSERT_EQ(r.failures.size(), 1u) << log.str();
  EXPECT_EQ(r.failures[0].check, "device-fault");
  EXPECT_EQ(r.failures[0].shrink_steps, 0) << "nothing can run after the fault: no shrinking";
  EXPECT_EQ(r.cases, r.failures[0].case_index + 1) << "the campaign ended at the fault";
  EXPECT_EQ(t.calls(), r.cases) << "no call after the fault";
  EXPECT_NE(log.str().find("campaign aborted: the fake CUDA context is gone"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("stopped: the target can run nothing more"), std::string::npos) << log.str();
  EXPECT_NE(campaign_summary(r).find("[aborted: the fake CUDA context is gone]"), std::string::npos);
  EXPECT_EQ(campaign_exit_code(r), 1);
}
