// Worker processes for code under test (see isolated_worker.hpp for the design).
#include "harness/core/isolated_worker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace moecheck {
namespace {

/// Requests to the zygote.
struct ZygoteRequest {
  std::int32_t op = 0;  ///< kSpawn (the worker's socket attached), kReap or kForget
  std::int32_t pid = 0; ///< kReap, kForget: the worker
};
constexpr std::int32_t kSpawn = 1;   ///< fork a worker; answered with its pid (or -errno)
constexpr std::int32_t kReap = 2;    ///< answer the worker's wait status once it has ended
constexpr std::int32_t kForget = 3;  ///< reap the worker once it has ended, no answer

/// The zygote's answers, matched to their request by op and pid.
struct ZygoteReply {
  std::int32_t op = 0;
  std::int32_t pid = 0;
  std::int32_t status = 0;
};

/// How long the caller waits for the zygote: to fork a worker, or for a killed worker's end
/// (a process killed while its GPU work runs may take a moment to leave the driver).
constexpr int kZygoteAnswerMs = 10000;

/// The most workers a zygote tracks at once: the live one, and those given up but not ended
/// yet (a worker torn down after a device fault may take a while to leave the driver).
constexpr int kMaxTracked = 64;

/// Reply code of a request the worker itself could not serve (region mapping, exception).
constexpr std::int32_t kWorkerFailure = -1;

double seconds_since(const timespec& t0) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<double>(now.tv_sec - t0.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec - t0.tv_nsec);
}

timespec now_monotonic() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t;
}

void copy_message(char (&dst)[1024], const std::string& src) {
  const std::size_t n = std::min(src.size(), sizeof dst - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

/// Sends `msg` with up to two descriptors attached (negative ones are left out). True when the
/// whole message went.
template <typename Msg>
bool send_with_fds(int sock, const Msg& msg, int fd_a = -1, int fd_b = -1) {
  iovec iov{const_cast<Msg*>(&msg), sizeof msg};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  int fds[2];
  int n_fds = 0;
  for (int fd : {fd_a, fd_b}) {
    if (fd >= 0) fds[n_fds++] = fd;
  }
  alignas(cmsghdr) char ctl[CMSG_SPACE(2 * sizeof(int))] = {};
  if (n_fds > 0) {
    h.msg_control = ctl;
    h.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
  }
  for (;;) {
    const ssize_t n = sendmsg(sock, &h, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    return n == static_cast<ssize_t>(sizeof msg);
  }
}

/// Receives one message and up to two descriptors attached to it, in order (-1 where none).
/// Returns the bytes received (0 at end of stream, -1 on error).
template <typename Msg>
ssize_t recv_with_fds(int sock, Msg* msg, int (&fds)[2]) {
  iovec iov{msg, sizeof *msg};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(2 * sizeof(int))] = {};
  h.msg_control = ctl;
  h.msg_controllen = sizeof ctl;
  fds[0] = fds[1] = -1;
  for (;;) {
    const ssize_t n = recvmsg(sock, &h, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) {
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int tmp[8];
        std::memcpy(tmp, CMSG_DATA(c), std::min<std::size_t>(got, 8) * sizeof(int));
        for (std::size_t k = 0; k < got && k < 8; ++k) {
          if (k < 2) {
            fds[k] = tmp[k];
          } else {
            ::close(tmp[k]);
          }
        }
      }
    }
    return n;
  }
}

void close_fds(int (&fds)[2]) {
  for (int& fd : fds) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

// ---- tracing (MOECHECK_WORKER_TRACE=1) -----------------------------------------------------

/// Set from MOECHECK_WORKER_TRACE by the IsolatedWorker constructor, inherited by its processes.
bool g_trace = false;

/// One trace line on stderr: "[moecheck worker trace <seconds> <role> <pid>] <text>". Only
/// snprintf and write, also used by the zygote.
void trace(const char* role, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void trace(const char* role, const char* fmt, ...) {
  if (!g_trace) return;
  char buf[512];
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  int n = std::snprintf(buf, sizeof buf, "[moecheck worker trace %ld.%03ld %s %d] ", static_cast<long>(now.tv_sec),
                        static_cast<long>(now.tv_nsec / 1000000), role, static_cast<int>(getpid()));
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && n < static_cast<int>(sizeof buf)) n += std::vsnprintf(buf + n, sizeof buf - n, fmt, ap);
  va_end(ap);
  n = std::min<int>(n, static_cast<int>(sizeof buf) - 2);
  buf[n++] = '\n';
  if (write(STDERR_FILENO, buf, static_cast<std::size_t>(n)) < 0) {
    // a trace line that cannot be written is dropped
  }
}

double ms_since(const timespec& t0) { return 1000 * seconds_since(t0); }

/// Closes every descriptor >= 3 except `keep_a` and `keep_b`.
void close_other_fds(int keep_a, int keep_b) {
  const int lo = std::min(keep_a, keep_b), hi = std::max(keep_a, keep_b);
  auto close_range_of = [](int first, int last) {  // [first, last], last may be "unbounded"
    if (first > last) return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, static_cast<unsigned>(first), static_cast<unsigned>(last), 0u) == 0) return;
#endif
    rlimit rl{};
    long top = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
      top = std::min<long>(static_cast<long>(rl.rlim_cur), top);
    }
    for (long fd = first; fd <= std::min<long>(last, top - 1); ++fd) ::close(static_cast<int>(fd));
  };
  close_range_of(3, lo - 1);
  close_range_of(lo + 1, hi - 1);
  close_range_of(hi + 1, 0x7fffffff);
}

/// Signals back to their defaults and none blocked (the caller may have blocked some or set
/// handlers, for its stop requests or crash reports; a worker must die of SIGTERM/SIGINT and
/// of its own crashes like any process, reported by the signal).
void default_signals() {
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2, SIGSEGV, SIGBUS,
                SIGFPE, SIGILL, SIGABRT, SIGTRAP}) {
    signal(s, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

/// A worker process: starts the service, then serves requests on `sock` until it closes.
[[noreturn]] void worker_main(int sock, int memfd, WorkerService& service) {
  WorkerReply ready{};
  const timespec t_start = now_monotonic();
  try {
    const std::string e = service.start();
    ready.code = e.empty() ? 0 : 1;
    copy_message(ready.message, e.empty() ? service.info() : e);
  } catch (const std::exception& ex) {
    ready.code = 1;
    copy_message(ready.message, std::string("exception while starting: ") + ex.what());
  } catch (...) {
    ready.code = 1;
    copy_message(ready.message, "unknown exception while starting");
  }
  trace("worker", "start: %s after %.1f ms", ready.code == 0 ? "ready" : ready.message, ms_since(t_start));
  if (send(sock, &ready, sizeof ready, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof ready) || ready.code != 0) {
    _exit(1);
  }
  unsigned char* map = nullptr;
  std::size_t mapped = 0;
  for (;;) {
    WorkerRequest req;
    const ssize_t n = recv(sock, &req, sizeof req, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof req)) _exit(n == 0 ? 0 : 2);  // the caller is gone
    WorkerReply rep{};
    rep.seq = req.seq;
    if (req.region_bytes > mapped) {
      if (map) munmap(map, mapped);
      void* p = mmap(nullptr, req.region_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
      map = p == MAP_FAILED ? nullptr : static_cast<unsigned char*>(p);
      mapped = map ? req.region_bytes : 0;
    }
    const timespec t_call = now_monotonic();
    if (!map) {
      rep.code = kWorkerFailure;
      rep.fatal = 1;
      copy_message(rep.message, std::string("worker: cannot map the exchange region: ") + std::strerror(errno));
    } else {
      try {
        service.serve(req, map, rep);
      } catch (const std::exception& ex) {
        rep.code = kWorkerFailure;
        rep.fatal = 1;
        copy_message(rep.message, std::string("worker: exception: ") + ex.what());
      } catch (...) {
        rep.code = kWorkerFailure;
        rep.fatal = 1;
        copy_message(rep.message, "worker: unknown exception");
      }
    }
    trace("worker", "request %llu: code %d%s after %.1f ms", static_cast<unsigned long long>(req.seq), rep.code,
          rep.fatal ? ", fatal (exiting)" : "", ms_since(t_call));
    if (send(sock, &rep, sizeof rep, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof rep)) _exit(3);
    if (rep.fatal) _exit(0);
  }
}

/// The zygote: forks workers on request, reaps them as they end (answering kReap with the wait
/// status), and leaves, killing its workers, when the caller's end of `ctl` closes. It never
/// blocks on a worker, so a worker slow to die (in the GPU driver) delays nothing else. Only
/// system calls until a worker is forked.
[[noreturn]] void zygote_main(int ctl, int memfd, WorkerService& service) {
  const pid_t self = getpid();
  struct Kid {
    pid_t pid = 0;
    int status = 0;
    bool ended = false;
    int then = 0;  ///< 0: keep tracking; kReap: answer when it ends; kForget: drop when it ends
    timespec asked{};  ///< when `then` was set
  };
  Kid kids[kMaxTracked] = {};
  for (;;) {
    bool waiting = false;
    for (Kid& k : kids) {
      if (k.pid <= 0) continue;
      int st = 0;
      if (!k.ended && waitpid(k.pid, &st, WNOHANG) == k.pid) {
        k.ended = true;
        k.status = st;
        if (k.then != 0) {
          trace("zygote", "worker %d ended (wait status %d), %.1f ms after it was given up", static_cast<int>(k.pid), st,
                ms_since(k.asked));
        } else {
          trace("zygote", "worker %d ended by itself (wait status %d)", static_cast<int>(k.pid), st);
        }
      }
      if (k.ended && k.then == kReap) {
        ZygoteReply rep;
        rep.op = kReap;
        rep.pid = k.pid;
        rep.status = k.status;
        if (!send_with_fds(ctl, rep)) _exit(0);
      }
      if (k.ended && k.then != 0) k = Kid{};
      if (k.pid > 0 && !k.ended && k.then != 0) waiting = true;
    }
    pollfd p{ctl, POLLIN, 0};
    const int r = poll(&p, 1, waiting ? 5 : 1000);
    if (r <= 0) continue;
    ZygoteRequest req;
    int fds[2];
    const ssize_t n = recv_with_fds(ctl, &req, fds);
    if (n != static_cast<ssize_t>(sizeof req)) {
      close_fds(fds);
      if (n > 0) continue;  // malformed: ignore
      // The caller is gone: kill every worker, give them a moment to end, leave.
      for (const Kid& k : kids) {
        if (k.pid > 0) kill(-k.pid, SIGKILL);  // the group: what a worker started goes too
        if (k.pid > 0 && !k.ended) kill(k.pid, SIGKILL);
      }
      for (int i = 0; i < 200; ++i) {
        bool left = false;
        for (Kid& k : kids) {
          if (k.pid <= 0 || k.ended) continue;
          if (waitpid(k.pid, nullptr, WNOHANG) == k.pid) {
            k.ended = true;
          } else {
            left = true;
          }
        }
        if (!left) break;
        const timespec step{0, 10000000};
        nanosleep(&step, nullptr);
      }
      _exit(0);
    }
    if (req.op == kSpawn) {
      ZygoteReply rep;
      rep.op = kSpawn;
      Kid* slot = nullptr;
      for (Kid& k : kids) {
        if (!slot && k.pid == 0) slot = &k;
      }
      if (fds[0] < 0 || fds[1] < 0 || !slot) {
        rep.pid = -(fds[0] < 0 || fds[1] < 0 ? EBADF : EAGAIN);
      } else {
        const pid_t pid = fork();
        if (pid == 0) {
          // The worker: own process group, killed with the zygote (single-threaded, so
          // PR_SET_PDEATHSIG follows the process), only its request socket and the region.
          setpgid(0, 0);
          prctl(PR_SET_PDEATHSIG, SIGKILL);
          if (getppid() != self) _exit(127);
          signal(SIGPIPE, SIG_DFL);  // ignored in the zygote only
          ::close(ctl);
          // Its output goes to a pipe the caller forwards, never to the caller's own stdout and
          // stderr: a worker stuck in the driver must not hold those open.
          dup2(fds[1], STDOUT_FILENO);
          dup2(fds[1], STDERR_FILENO);
          ::close(fds[1]);
          worker_main(fds[0], memfd, service);
        }
        const int e = errno;
        if (pid > 0) {
          setpgid(pid, pid);  // also here: no window in which a group kill would miss it
          *slot = Kid{};
          slot->pid = pid;
          trace("zygote", "forked worker %d", static_cast<int>(pid));
        }
        rep.pid = pid > 0 ? pid : -e;
      }
      close_fds(fds);
      if (!send_with_fds(ctl, rep)) _exit(0);
    } else if (req.op == kReap || req.op == kForget) {
      close_fds(fds);
      bool known = false;
      for (Kid& k : kids) {
        if (k.pid == req.pid && req.pid > 0) {
          k.then = req.op;
          k.asked = now_monotonic();
          known = true;
        }
      }
      if (!known && req.op == kReap) {  // not ours (already dropped): say so at once
        ZygoteReply rep;
        rep.op = kReap;
        rep.pid = req.pid;
        rep.status = -1;
        if (!send_with_fds(ctl, rep)) _exit(0);
      }
    } else {
      close_fds(fds);
    }
  }
}

/// Sends a request to the zygote. With `rep`, waits (at most kZygoteAnswerMs) for the answer
/// with the same op and pid (kSpawn: any pid), dropping others. 1: answered; 0: no answer in
/// time; -1: the zygote is gone.
int ask_zygote(int ctl, const ZygoteRequest& req, int fd_a, int fd_b, ZygoteReply* rep) {
  if (!send_with_fds(ctl, req, fd_a, fd_b)) return -1;
  if (!rep) return 1;
  timespec t0{};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    const int left = kZygoteAnswerMs - static_cast<int>(1000 * seconds_since(t0));
    if (left <= 0) return 0;
    pollfd p{ctl, POLLIN, 0};
    const int r = poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return 0;
    if (r < 0) return -1;
    int got[2];
    const ssize_t n = recv_with_fds(ctl, rep, got);
    close_fds(got);
    if (n != static_cast<ssize_t>(sizeof *rep)) return -1;
    if (rep->op == req.op && (req.op == kSpawn || rep->pid == req.pid)) return 1;
  }
}

/// True when process `pid` has ended (gone, or a zombie not reaped yet).
bool process_ended(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  std::FILE* f = std::fopen(path, "r");
  if (!f) return true;
  char line[512];
  const bool got = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  if (!got) return true;
  const char* paren = std::strrchr(line, ')');
  return paren && (paren[1] == ' ') && (paren[2] == 'Z' || paren[2] == 'X');
}

/// A descriptor that becomes readable when `pid` ends (pidfd), or -1 where the kernel has none.
int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  const long fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
    return static_cast<int>(fd);
  }
#endif
  (void)pid;
  return -1;
}

std::string describe_wait_status(int st) {
  if (WIFSIGNALED(st)) {
    const int sig = WTERMSIG(st);
    const char* sn = strsignal(sig);
    return "was killed by signal " + std::to_string(sig) + " (" + (sn ? sn : "?") + ")";
  }
  if (WIFEXITED(st)) return "exited with status " + std::to_string(WEXITSTATUS(st));
  return "ended (wait status " + std::to_string(st) + ")";  // not reached: the zygote waits for exits only
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

IsolatedWorker::IsolatedWorker(WorkerService& service) : service_(service) {
  const char* t = std::getenv("MOECHECK_WORKER_TRACE");
  g_trace = t && std::strcmp(t, "1") == 0;
  memfd_ = memfd_create("moecheck-worker", MFD_CLOEXEC);
  if (memfd_ < 0) throw std::runtime_error(std::string("worker exchange: memfd_create failed: ") + std::strerror(errno));
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    const int e = errno;
    ::close(memfd_);
    throw std::runtime_error(std::string("worker channel: socketpair failed: ") + std::strerror(e));
  }
  std::fflush(nullptr);  // nothing buffered may be written twice
  const pid_t pid = fork();
  if (pid < 0) {
    const int e = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    ::close(memfd_);
    throw std::runtime_error(std::string("worker supervisor: fork failed: ") + std::strerror(e));
  }
  if (pid == 0) {
    setpgid(0, 0);
    default_signals();
    signal(SIGPIPE, SIG_IGN);
    ::close(sv[0]);
    close_other_fds(sv[1], memfd_);
    zygote_main(sv[1], memfd_, service_);
  }
  setpgid(pid, pid);
  ::close(sv[1]);
  zctl_ = sv[0];
  zpid_ = pid;
  trace("caller", "forked the worker supervisor %d", static_cast<int>(pid));
}

IsolatedWorker::~IsolatedWorker() {
  stop_worker();
  if (zctl_ >= 0) ::close(zctl_);
  if (zpid_ > 0) {
    kill(zpid_, SIGKILL);
    while (waitpid(zpid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (map_) munmap(map_, cap_);
  if (memfd_ >= 0) ::close(memfd_);
}

unsigned char* IsolatedWorker::region(std::size_t bytes, std::string* error) {
  if (bytes <= cap_ && map_) return map_;
  const std::size_t page = 65536;
  std::size_t want = std::max<std::size_t>({bytes, cap_ * 2, page});
  want = (want + page - 1) / page * page;
  if (ftruncate(memfd_, static_cast<off_t>(want)) != 0) {
    *error = "cannot grow the worker exchange region to " + std::to_string(want) + " bytes: " + std::strerror(errno);
    return nullptr;
  }
  if (map_) munmap(map_, cap_);
  map_ = nullptr;
  cap_ = 0;
  void* p = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
  if (p == MAP_FAILED) {
    *error = "cannot map the worker exchange region (" + std::to_string(want) + " bytes): " + std::strerror(errno);
    return nullptr;
  }
  map_ = static_cast<unsigned char*>(p);
  cap_ = want;
  return map_;
}

void IsolatedWorker::forward_output() {
  if (out_ < 0) return;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(out_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // drained (EAGAIN) or every writer gone
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = write(STDERR_FILENO, buf + done, static_cast<std::size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;  // stderr is gone: the output is dropped
      done += w;
    }
  }
}

std::string IsolatedWorker::reap_worker(bool want_status) {
  if (wpid_ <= 0) return {};
  trace("caller", "giving up worker %d (%s)", static_cast<int>(wpid_), want_status ? "waiting for its status" : "not waiting");
  kill(-wpid_, SIGKILL);
  kill(wpid_, SIGKILL);
  if (wsock_ >= 0) ::close(wsock_);
  wsock_ = -1;
  if (wpidfd_ >= 0) ::close(wpidfd_);
  wpidfd_ = -1;
  forward_output();  // what it wrote before it went; a stuck worker keeps only its own pipe
  if (out_ >= 0) ::close(out_);
  out_ = -1;
  ZygoteRequest req;
  req.op = want_status ? kReap : kForget;
  req.pid = wpid_;
  wpid_ = 0;
  ZygoteReply rep;
  const timespec t0 = now_monotonic();
  const int answered = ask_zygote(zctl_, req, -1, -1, want_status ? &rep : nullptr);
  if (want_status) trace("caller", "status of worker %d after %.1f ms: %s", static_cast<int>(req.pid), ms_since(t0),
                         answered > 0 ? describe_wait_status(rep.status).c_str() : "none");
  if (answered < 0) {
    zygote_gone_ = "the worker supervisor process (pid " + std::to_string(zpid_) + ") is gone";
    return "ended (how is unknown: " + zygote_gone_ + ")";
  }
  if (!want_status) return {};
  if (answered == 0 || rep.status < 0) return "ended (its exit status is unknown)";
  return describe_wait_status(rep.status);
}

void IsolatedWorker::stop_worker() { reap_worker(false); }

WorkerCallResult IsolatedWorker::wait_reply(std::uint64_t seq, double timeout_s, const CallLimits& limits) {
  WorkerCallResult out;
  timespec t0{};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  // The worker's end is seen on its socket (end of stream) or, should a process it started hold
  // the socket open, on its pidfd (or, without pidfds, by looking it up every 50 ms).
  for (int round = 0;; ++round) {
    pollfd p[3] = {{wsock_, POLLIN, 0}, {wpidfd_, POLLIN, 0}, {out_, POLLIN, 0}};
    const int r = poll(p, 3, 10);  // negative descriptors are skipped
    if (r > 0 && out_ >= 0 && p[2].revents) {
      forward_output();
      if (!(p[2].revents & POLLIN)) {  // every writer gone
        ::close(out_);
        out_ = -1;
      }
    }
    const bool ended = (r > 0 && wpidfd_ >= 0 && p[1].revents) || (wpidfd_ < 0 && round % 5 == 4 && process_ended(wpid_));
    if ((r > 0 && p[0].revents) || ended) {
      WorkerReply rep;
      const ssize_t n = recv(wsock_, &rep, sizeof rep, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN && !ended) continue;
      if (n == static_cast<ssize_t>(sizeof rep)) {
        if (rep.seq != seq) continue;  // a late answer to an earlier request
        out.kind = WorkerCallResult::Kind::replied;
        out.reply = rep;
        if (rep.fatal) reap_worker(false);
        return out;
      }
      out.kind = WorkerCallResult::Kind::died;
      if (n == 0 || ended) {
        out.error = reap_worker(true);
      } else {
        out.error = "sent a malformed reply (then was killed)";
        reap_worker(false);
      }
      return out;
    }
    if (r < 0 && errno != EINTR) {
      out.kind = WorkerCallResult::Kind::died;
      out.error = std::string("had a channel error: ") + std::strerror(errno) + " (then was killed)";
      reap_worker(false);
      return out;
    }
    if (limits.abandon && limits.abandon()) {
      reap_worker(false);
      out.kind = WorkerCallResult::Kind::abandoned;
      return out;
    }
    if (seconds_since(t0) >= timeout_s) {
      reap_worker(false);
      out.kind = WorkerCallResult::Kind::timed_out;
      return out;
    }
  }
}

WorkerCallResult IsolatedWorker::start(const CallLimits& limits) {
  WorkerCallResult out;
  if (wpid_ > 0) {
    out.kind = WorkerCallResult::Kind::replied;
    return out;
  }
  if (!zygote_gone_.empty()) {
    out.error = zygote_gone_;
    return out;
  }
  int sv[2], op[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    out.error = std::string("socketpair failed: ") + std::strerror(errno);
    return out;
  }
  if (pipe2(op, O_CLOEXEC | O_NONBLOCK) != 0) {
    out.error = std::string("pipe failed: ") + std::strerror(errno);
    ::close(sv[0]);
    ::close(sv[1]);
    return out;
  }
  fcntl(op[1], F_SETFL, 0);  // the worker writes blocking; this process reads without blocking
  ZygoteRequest req;
  req.op = kSpawn;
  ZygoteReply rep;
  const timespec t0 = now_monotonic();
  const int answered = ask_zygote(zctl_, req, sv[1], op[1], &rep);
  ::close(sv[1]);
  ::close(op[1]);
  out_ = op[0];
  if (answered <= 0 || rep.pid <= 0) {
    ::close(out_);
    out_ = -1;
  }
  if (answered <= 0) {
    ::close(sv[0]);
    zygote_gone_ = "the worker supervisor process (pid " + std::to_string(zpid_) + ") " +
                   (answered < 0 ? "is gone" : "no longer answers");
    out.error = zygote_gone_;
    return out;
  }
  if (rep.pid <= 0) {
    ::close(sv[0]);
    out.error = std::string("fork of a worker failed: ") + std::strerror(-rep.pid);
    return out;
  }
  wpid_ = rep.pid;
  wsock_ = sv[0];
  wpidfd_ = open_pidfd(wpid_);
  ++started_;
  const double limit = std::max(limits.timeout_s, kStartSeconds);
  WorkerCallResult ready = wait_reply(0, limit, limits);
  trace("caller", "worker %d: %s after %.1f ms", static_cast<int>(rep.pid),
        ready.kind == WorkerCallResult::Kind::replied && ready.reply.code == 0 ? "ready" : "not started", ms_since(t0));
  switch (ready.kind) {
    case WorkerCallResult::Kind::replied:
      if (ready.reply.code != 0) {
        out.error = ready.reply.message;
        reap_worker(false);
        return out;
      }
      info_ = ready.reply.message;
      return ready;
    case WorkerCallResult::Kind::died:
      out.error = "the worker " + ready.error + " while starting";
      return out;
    case WorkerCallResult::Kind::timed_out:
      out.error = "the worker did not become ready within " + seconds_text(limit) + " s (killed)";
      return out;
    case WorkerCallResult::Kind::abandoned:
      return ready;
    case WorkerCallResult::Kind::failed:
      break;
  }
  return ready;
}

WorkerCallResult IsolatedWorker::call(WorkerRequest& req, const CallLimits& limits) {
  if (wpid_ <= 0) {
    WorkerCallResult s = start(limits);
    if (s.kind != WorkerCallResult::Kind::replied) return s;
  }
  req.seq = ++seq_;
  ssize_t n = send(wsock_, &req, sizeof req, MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(sizeof req)) {
    // The worker ended while idle, before this request: not this request's doing. Replace it.
    reap_worker(false);
    WorkerCallResult s = start(limits);
    if (s.kind != WorkerCallResult::Kind::replied) return s;
    n = send(wsock_, &req, sizeof req, MSG_NOSIGNAL);
  }
  if (n != static_cast<ssize_t>(sizeof req)) {
    WorkerCallResult out;
    out.kind = WorkerCallResult::Kind::died;
    out.error = reap_worker(true);
    return out;
  }
  const timespec t0 = now_monotonic();
  WorkerCallResult r = wait_reply(req.seq, limits.timeout_s, limits);
  if (g_trace) {
    static const char* const kinds[] = {"replied", "died", "timed out", "abandoned", "failed"};
    trace("caller", "request %llu: %s (code %d%s) after %.1f ms", static_cast<unsigned long long>(req.seq),
          kinds[static_cast<int>(r.kind)], r.reply.code, r.reply.fatal ? ", fatal" : "", ms_since(t0));
  }
  return r;
}

// ---- cases through a worker ----------------------------------------------------------------

CaseInputs case_inputs(const MaterializedCase& m) {
  CaseInputs in;
  in.storage = m.storage.data();
  in.storage_bytes = m.storage.size();
  in.view = m.view;
  in.params = m.params;
  return in;
}

namespace {

/// Where the parts of one case sit in the shared region (64-byte aligned).
struct RegionLayout {
  std::size_t scale = 0, bias = 0, weights = 0, ids = 0, total = 0;
};

RegionLayout layout_for(std::size_t storage_bytes, std::int64_t E, bool scale, bool bias, std::size_t padded) {
  auto up = [](std::size_t x) { return (x + 63) / 64 * 64; };
  const std::size_t eb = sizeof(float) * static_cast<std::size_t>(std::max<std::int64_t>(E, 0));
  RegionLayout l;
  std::size_t o = up(storage_bytes);
  l.scale = o;
  if (scale) o = up(o + eb);
  l.bias = o;
  if (bias) o = up(o + eb);
  l.weights = o;
  o = up(o + padded * sizeof(float));
  l.ids = o;
  o = up(o + padded * sizeof(std::int32_t));
  l.total = std::max<std::size_t>(o, 64);
  return l;
}

// Request arguments of a case.
enum Arg {
  kStorageBytes, kDataOffset, kDType, kT, kE, kRowStride, kColStride, kFamily, kK, kHasScale, kHasBias,
  kNGroup, kTopkGroup, kRoutedScaling, kN
};

}  // namespace

/// The worker side of CaseWorker: decodes a case from the region and runs the runner on it.
class CaseWorker::Service final : public WorkerService {
 public:
  explicit Service(CaseRunner& r) : runner_(r) {}
  std::string start() override { return runner_.start(); }
  std::string info() override { return runner_.device_name(); }
  void serve(const WorkerRequest& req, unsigned char* region, WorkerReply& reply) override {
    const std::int64_t* a = req.args;
    const std::size_t n = static_cast<std::size_t>(a[kN]);
    const std::size_t g = static_cast<std::size_t>(kOutputGuardElements);
    const RegionLayout l = layout_for(static_cast<std::size_t>(a[kStorageBytes]), a[kE], a[kHasScale] != 0,
                                      a[kHasBias] != 0, n + 2 * g);
    if (l.total > req.region_bytes) {
      reply.code = kWorkerFailure;
      reply.fatal = 1;
      copy_message(reply.message, "worker: request larger than its region");
      return;
    }
    CaseInputs in;
    in.storage = region;
    in.storage_bytes = static_cast<std::size_t>(a[kStorageBytes]);
    in.view.data = a[kDataOffset] < 0 ? nullptr : region + a[kDataOffset];
    in.view.dtype = static_cast<DType>(a[kDType]);
    in.view.T = a[kT];
    in.view.E = a[kE];
    in.view.row_stride = a[kRowStride];
    in.view.col_stride = a[kColStride];
    in.params.family = static_cast<Family>(a[kFamily]);
    in.params.k = static_cast<int>(a[kK]);
    in.params.scale = a[kHasScale] ? reinterpret_cast<const float*>(region + l.scale) : nullptr;
    in.params.bias = a[kHasBias] ? reinterpret_cast<const float*>(region + l.bias) : nullptr;
    in.params.n_group = static_cast<int>(a[kNGroup]);
    in.params.topk_group = static_cast<int>(a[kTopkGroup]);
    const std::uint32_t rs = static_cast<std::uint32_t>(a[kRoutedScaling]);
    std::memcpy(&in.params.routed_scaling, &rs, sizeof rs);
    auto* w = reinterpret_cast<float*>(region + l.weights);
    auto* id = reinterpret_cast<std::int32_t*>(region + l.ids);
    bool fatal = false;
    const RunOutcome out = runner_.run(in, w + g, id + g, &fatal);
    reply.code = static_cast<std::int32_t>(out.status);
    reply.fatal = fatal ? 1 : 0;
    copy_message(reply.message, out.error);
  }

 private:
  CaseRunner& runner_;
};

CaseWorker::CaseWorker(CaseRunner& runner)
    : service_(std::make_unique<Service>(runner)), worker_(std::make_unique<IsolatedWorker>(*service_)) {}

CaseWorker::~CaseWorker() = default;

std::string CaseWorker::start(const CallLimits& limits) {
  WorkerCallResult r = worker_->start(limits);
  if (r.kind == WorkerCallResult::Kind::replied) return {};
  if (r.kind == WorkerCallResult::Kind::abandoned) return "the start of the worker was abandoned";
  return r.error;
}

RunOutcome CaseWorker::run(const MaterializedCase& m, float* weights, std::int32_t* ids, const CallLimits& limits,
                           const std::string& what) {
  if (!lost_.empty()) return {RunOutcome::Status::abandoned, lost_};
  const std::size_t g = static_cast<std::size_t>(kOutputGuardElements);
  const std::int64_t n64 = std::max<std::int64_t>(m.view.T * static_cast<std::int64_t>(m.params.k), 0);
  const std::size_t n = static_cast<std::size_t>(n64);
  const std::size_t padded = n + 2 * g;
  const bool has_scale = m.params.scale != nullptr, has_bias = m.params.bias != nullptr;
  const RegionLayout l = layout_for(m.storage.size(), m.view.E, has_scale, has_bias, padded);
  std::string err;
  unsigned char* region = worker_->region(l.total, &err);
  if (!region) return {RunOutcome::Status::crashed, "harness: " + err};
  const std::size_t eb = sizeof(float) * static_cast<std::size_t>(std::max<std::int64_t>(m.view.E, 0));
  if (!m.storage.empty()) std::memcpy(region, m.storage.data(), m.storage.size());
  if (has_scale) std::memcpy(region + l.scale, m.params.scale, eb);
  if (has_bias) std::memcpy(region + l.bias, m.params.bias, eb);
  std::memcpy(region + l.weights, weights - g, padded * sizeof(float));  // the caller's poison and guards
  std::memcpy(region + l.ids, ids - g, padded * sizeof(std::int32_t));
  WorkerRequest req;
  req.region_bytes = l.total;
  std::int64_t* a = req.args;
  a[kStorageBytes] = static_cast<std::int64_t>(m.storage.size());
  a[kDataOffset] = m.view.data ? static_cast<const std::uint8_t*>(m.view.data) - m.storage.data() : -1;
  a[kDType] = static_cast<std::int64_t>(m.view.dtype);
  a[kT] = m.view.T;
  a[kE] = m.view.E;
  a[kRowStride] = m.view.row_stride;
  a[kColStride] = m.view.col_stride;
  a[kFamily] = static_cast<std::int64_t>(m.params.family);
  a[kK] = m.params.k;
  a[kHasScale] = has_scale;
  a[kHasBias] = has_bias;
  a[kNGroup] = m.params.n_group;
  a[kTopkGroup] = m.params.topk_group;
  std::uint32_t rs;
  std::memcpy(&rs, &m.params.routed_scaling, sizeof rs);
  a[kRoutedScaling] = rs;
  a[kN] = n64;
  const WorkerCallResult r = worker_->call(req, limits);
  switch (r.kind) {
    case WorkerCallResult::Kind::replied: {
      // The guards come back whatever the status: a rejecting call may have written past them too.
      std::memcpy(weights - g, region + l.weights, padded * sizeof(float));
      std::memcpy(ids - g, region + l.ids, padded * sizeof(std::int32_t));
      const int code = r.reply.code;
      if (code == kWorkerFailure || code < 0 || code > static_cast<int>(RunOutcome::Status::device_fault)) {
        return {RunOutcome::Status::crashed, std::string("harness: ") + r.reply.message};
      }
      return {static_cast<RunOutcome::Status>(code), r.reply.message};
    }
    case WorkerCallResult::Kind::died:
      return {RunOutcome::Status::crashed,
              what + " crashed: its worker process " + r.error + " (a new worker runs the next case)"};
    case WorkerCallResult::Kind::timed_out:
      return {RunOutcome::Status::timed_out, what + " did not return within " + seconds_text(limits.timeout_s) +
                                                 " s (its worker process was killed; a new one runs the next case)"};
    case WorkerCallResult::Kind::abandoned:
      return {RunOutcome::Status::abandoned, what + " call abandoned (stop requested or budget exhausted)"};
    case WorkerCallResult::Kind::failed:
      break;
  }
  lost_ = "no worker process could be started for the " + what + ": " + r.error;
  return {RunOutcome::Status::abandoned, lost_};
}

}  // namespace moecheck
