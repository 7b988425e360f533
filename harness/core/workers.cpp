#include "harness/core/workers.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <poll.h>
#include <set>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "harness/core/campaign.hpp"

extern char** environ;

namespace moecheck {
namespace {

volatile std::sig_atomic_t g_stop_signals = 0;

extern "C" void moecheck_workers_on_signal(int) { g_stop_signals = g_stop_signals + 1; }

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

/// One worker's progress as recorded in its state file (absent until its first save).
struct StateSnapshot {
  std::int64_t cases = 0, rows = 0;
  std::vector<std::string> signatures;
};

bool read_state(const std::string& path, StateSnapshot* out) {
  if (path.empty()) return false;
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    out->cases = j.value("cases", std::int64_t{0});
    out->rows = j.value("rows", std::int64_t{0});
    out->signatures.clear();
    if (j.contains("failure_list") && j["failure_list"].is_array()) {
      for (const auto& f : j["failure_list"]) out->signatures.push_back(f.value("signature", std::string()));
    }
    return true;
  } catch (const std::exception&) {
    return false;  // a state file is replaced atomically; anything else is not ours to judge here
  }
}

/// A worker being supervised.
struct Running {
  pid_t pid = -1;
  int err_fd = -1;       ///< read end of its stderr pipe (-1 once closed)
  std::string pending;   ///< stderr bytes after the last newline
  bool reaped = false;
  StateSnapshot last;
};

}  // namespace

std::vector<WorkerShard> plan_worker_shards(int index, int count, std::int64_t max_cases, int workers) {
  if (count < 1 || index < 0 || index >= count) {
    throw std::invalid_argument("shard " + std::to_string(index) + "/" + std::to_string(count) + ": need 0 <= i < n");
  }
  if (workers < 1) throw std::invalid_argument("need at least one worker, got " + std::to_string(workers));
  if (max_cases < 0) throw std::invalid_argument("case budget must be >= 0");
  std::int64_t n = workers;
  if (max_cases > 0) n = std::min<std::int64_t>(n, max_cases);
  if (static_cast<std::int64_t>(count) * n > INT_MAX) {
    throw std::invalid_argument(std::to_string(workers) + " workers on shard count " + std::to_string(count) +
                                ": too many shards");
  }
  std::vector<WorkerShard> plan;
  for (std::int64_t i = 0; i < n; ++i) {
    WorkerShard w;
    w.shard_index = static_cast<int>(index + i * count);
    w.shard_count = static_cast<int>(count * n);
    w.max_cases = max_cases > 0 ? (max_cases - i + n - 1) / n : 0;
    plan.push_back(w);
  }
  return plan;
}

std::vector<int> parse_device_list(const std::string& spec, int visible) {
  const std::string seen = " (this process sees " + std::to_string(std::max(visible, 0)) + " CUDA device" +
                           (visible == 1 ? "" : "s") + ")";
  if (spec == "all") {
    if (visible <= 0) throw std::invalid_argument("--devices all: no CUDA device is visible" + seen);
    std::vector<int> all(static_cast<std::size_t>(visible));
    for (int i = 0; i < visible; ++i) all[static_cast<std::size_t>(i)] = i;
    return all;
  }
  if (spec.empty()) throw std::invalid_argument("--devices: expected 'all' or a comma list of device ordinals, got ''");
  std::vector<int> out;
  for (const std::string& tok : split_commas(spec)) {
    const bool digits = !tok.empty() && tok.size() <= 6 &&
                        std::all_of(tok.begin(), tok.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) {
      throw std::invalid_argument("--devices: '" + tok + "' in '" + spec +
                                  "' is not a device ordinal (expected 'all' or e.g. 0,2)");
    }
    const int d = std::stoi(tok);
    if (std::find(out.begin(), out.end(), d) != out.end()) {
      throw std::invalid_argument("--devices: device " + tok + " is listed twice in '" + spec + "'");
    }
    out.push_back(d);
  }
  for (int d : out) {  // the list is well-formed: now whether this process sees the devices
    if (d >= visible) throw std::invalid_argument("--devices: device " + std::to_string(d) + " is not visible" + seen);
  }
  return out;
}

std::string worker_visible_devices(int ordinal, const char* parent) {
  if (ordinal < 0) throw std::invalid_argument("device ordinal " + std::to_string(ordinal) + " is negative");
  if (parent == nullptr) return std::to_string(ordinal);
  const std::vector<std::string> entries = split_commas(parent);
  if (static_cast<std::size_t>(ordinal) >= entries.size() || entries[static_cast<std::size_t>(ordinal)].empty()) {
    throw std::invalid_argument("device " + std::to_string(ordinal) + " is not in CUDA_VISIBLE_DEVICES='" +
                                std::string(parent) + "'");
  }
  return entries[static_cast<std::size_t>(ordinal)];
}

std::string self_executable() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw std::runtime_error(std::string("cannot find this executable (/proc/self/exe): ") + std::strerror(errno));
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

WorkersOutcome run_worker_processes(const std::vector<WorkerProcess>& workers, const WorkerRunOptions& opt,
                                    std::ostream& log) {
  using Clock = std::chrono::steady_clock;
  WorkersOutcome outcome;
  outcome.exits.resize(workers.size());
  std::vector<Running> run(workers.size());

  g_stop_signals = 0;
  struct sigaction act {}, old_int {}, old_term {};
  act.sa_handler = moecheck_workers_on_signal;
  sigemptyset(&act.sa_mask);
  ::sigaction(SIGINT, &act, &old_int);
  ::sigaction(SIGTERM, &act, &old_term);

  const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  for (std::size_t i = 0; i < workers.size(); ++i) {
    const WorkerProcess& w = workers[i];
    // Everything the child needs is built before fork: between fork and exec it only makes
    // async-signal-safe calls.
    std::vector<std::string> env_strings;
    for (char** e = environ; e && *e; ++e) {
      const std::string entry(*e);
      const std::string key = entry.substr(0, entry.find('='));
      const bool replaced = std::any_of(w.env.begin(), w.env.end(), [&](const auto& kv) { return kv.first == key; });
      if (!replaced) env_strings.push_back(entry);
    }
    for (const auto& [k, v] : w.env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp, argv;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = w.argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    if (args.empty()) {
      log << "[" << w.label << "] no command\n";
      continue;
    }

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      log << "[" << w.label << "] cannot create a pipe: " << std::strerror(errno) << "\n";
      continue;
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      log << "[" << w.label << "] cannot start: " << std::strerror(errno) << "\n";
      ::close(fds[0]);
      ::close(fds[1]);
      continue;
    }
    if (pid == 0) {
      // Stop signals stay blocked through exec until the worker's campaign has its handlers
      // (install_stop_handlers unblocks them): a stop forwarded during start-up is then a
      // graceful stop with results, not a kill. PR_SET_PDEATHSIG's SIGTERM waits the same way.
      sigset_t stop;
      sigemptyset(&stop);
      sigaddset(&stop, SIGINT);
      sigaddset(&stop, SIGTERM);
      ::sigprocmask(SIG_BLOCK, &stop, nullptr);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);  // the parent is already gone
      if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
      ::execve(argv[0], argv.data(), envp.data());
      const char msg[] = "cannot execute the worker\n";
      (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
      ::_exit(127);
    }
    ::close(fds[1]);
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    run[i].pid = pid;
    run[i].err_fd = fds[0];
    outcome.exits[i].started = true;
  }
  if (devnull >= 0) ::close(devnull);

  bool progress_shown = false;
  auto end_progress_line = [&] {
    if (progress_shown) log << "\n";
    progress_shown = false;
  };
  auto emit = [&](std::size_t i, const std::string& line) {
    end_progress_line();
    log << "[" << workers[i].label << "] " << line << "\n" << std::flush;
  };
  auto drain = [&](std::size_t i) {
    Running& r = run[i];
    char buf[4096];
    while (r.err_fd >= 0) {
      const ssize_t n = ::read(r.err_fd, buf, sizeof buf);
      if (n > 0) {
        r.pending.append(buf, static_cast<std::size_t>(n));
        std::size_t nl;
        while ((nl = r.pending.find('\n')) != std::string::npos) {
          std::string line = r.pending.substr(0, nl);
          if (!line.empty() && line.back() == '\r') line.pop_back();
          const std::size_t cr = line.rfind('\r');  // keep the last state of a rewritten line
          if (cr != std::string::npos) line = line.substr(cr + 1);
          r.pending.erase(0, nl + 1);
          if (!line.empty()) emit(i, line);
        }
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      ::close(r.err_fd);  // end of file (or a read error): nothing more will come
      r.err_fd = -1;
    }
  };

  const auto t0 = Clock::now();
  auto last_progress = t0;
  int forwarded = 0;
  while (true) {
    bool all_reaped = true;
    for (std::size_t i = 0; i < run.size(); ++i) {
      Running& r = run[i];
      if (r.pid < 0 || r.reaped) continue;
      int status = 0;
      const pid_t got = ::waitpid(r.pid, &status, WNOHANG);
      if (got == r.pid) {
        r.reaped = true;
        outcome.exits[i].signaled = WIFSIGNALED(status);
        outcome.exits[i].code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
      } else {
        all_reaped = false;
      }
    }
    const int signals = g_stop_signals;
    if (signals > forwarded && !all_reaped) {
      const int sig = signals >= 2 ? SIGKILL : SIGTERM;
      end_progress_line();
      log << (sig == SIGKILL ? "stopping: killing the workers\n"
                             : "stopping: every worker finishes its current case and writes its results "
                               "(again to kill them)\n")
          << std::flush;
      for (const Running& r : run) {
        if (r.pid > 0 && !r.reaped) ::kill(r.pid, sig);
      }
      forwarded = signals;
    }
    if (all_reaped) {
      // Whatever is left in the pipes; a grandchild still holding one open is not waited for.
      for (std::size_t i = 0; i < run.size(); ++i) drain(i);
      break;
    }
    std::vector<pollfd> fds;
    std::vector<std::size_t> owner;
    for (std::size_t i = 0; i < run.size(); ++i) {
      if (run[i].err_fd >= 0) {
        fds.push_back(pollfd{run[i].err_fd, POLLIN, 0});
        owner.push_back(i);
      }
    }
    const int ready = ::poll(fds.empty() ? nullptr : fds.data(), fds.size(), 200);
    if (ready > 0) {
      for (std::size_t k = 0; k < fds.size(); ++k) {
        if (fds[k].revents != 0) drain(owner[k]);
      }
    }
    const auto now = Clock::now();
    if (opt.progress && std::chrono::duration<double>(now - last_progress).count() >= 1.0) {
      last_progress = now;
      std::int64_t cases = 0, rows = 0;
      std::set<std::string> sigs;
      int reporting = 0;
      for (std::size_t i = 0; i < run.size(); ++i) {
        if (read_state(workers[i].state_file, &run[i].last)) ++reporting;
        cases += run[i].last.cases;
        rows += run[i].last.rows;
        sigs.insert(run[i].last.signatures.begin(), run[i].last.signatures.end());
      }
      const double wall = std::chrono::duration<double>(now - t0).count();
      std::ostringstream line;
      line << "\r[" << std::fixed << std::setprecision(1) << wall << "s";
      if (opt.budget_seconds > 0) line << "/" << opt.budget_seconds << "s";
      line << "] " << workers.size() << (workers.size() == 1 ? " worker" : " workers");
      if (reporting == 0) {
        line << " started (totals as they save their state)";
      } else {
        line << ": cases " << cases << " (" << human_number(static_cast<double>(cases) / std::max(wall, 1e-9))
             << "/s) rows " << human_number(static_cast<double>(rows)) << " ("
             << human_number(static_cast<double>(rows) / std::max(wall, 1e-9)) << "/s) failures " << sigs.size() << "   ";
      }
      log << line.str() << std::flush;
      progress_shown = true;
    }
  }
  for (std::size_t i = 0; i < run.size(); ++i) {
    Running& r = run[i];
    if (!r.pending.empty()) emit(i, r.pending);
    if (r.err_fd >= 0) ::close(r.err_fd);
    r.err_fd = -1;
  }
  end_progress_line();
  outcome.stop_signals = g_stop_signals;
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return outcome;
}

}  // namespace moecheck
