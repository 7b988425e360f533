// One campaign over several processes of one host: `moecheck fuzz --workers N` (host
// parallelism) and `moecheck fuzz --devices all|0,2,...` (one process per GPU). The shard
// arithmetic, the device list and the process supervision live here; merging the workers'
// results is merge.hpp's.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace moecheck {

/// The part of a campaign one worker runs.
struct WorkerShard {
  int shard_index = 0;         ///< --shard shard_index/shard_count of the worker
  int shard_count = 1;
  std::int64_t max_cases = 0;  ///< the worker's case budget (0 = the time budget alone)
};

/// Splits shard `index`/`count` of a campaign between `workers` processes. Worker i runs shard
/// index + i * count of count * workers, i.e. the cases t = i, i + workers, ... of the parent
/// shard's case sequence. With a case budget (`max_cases` > 0) worker i gets the t < max_cases
/// among them, so the workers together run exactly the cases one process would; there are then
/// at most max_cases workers. Throws std::invalid_argument for bad arguments.
std::vector<WorkerShard> plan_worker_shards(int index, int count, std::int64_t max_cases, int workers);

/// Parses --devices: "all" (the `visible` devices this process sees) or a comma list of
/// distinct device ordinals below `visible`. Throws std::invalid_argument naming the problem.
std::vector<int> parse_device_list(const std::string& spec, int visible);

/// CUDA_VISIBLE_DEVICES for a worker that must see only this process's device `ordinal`: the
/// ordinal-th entry of `parent` (this process's CUDA_VISIBLE_DEVICES, nullptr when unset: then
/// the ordinal itself). Throws std::invalid_argument when `parent` has no such entry.
std::string worker_visible_devices(int ordinal, const char* parent);

/// Path of the running executable (/proc/self/exe). Throws std::runtime_error.
std::string self_executable();

/// One worker process to start.
struct WorkerProcess {
  std::vector<std::string> argv;  ///< argv[0] is the executable path
  std::vector<std::pair<std::string, std::string>> env;  ///< set (or replaced) in its environment
  std::string label;              ///< prefix of its forwarded messages, e.g. "gpu 1"
  std::string state_file;         ///< its --state file, read for the aggregated progress line
};

struct WorkerRunOptions {
  bool progress = true;        ///< aggregated progress line on the log
  double budget_seconds = 0;   ///< shown in the progress line (0 = none)
};

/// How one worker ended.
struct WorkerExit {
  bool started = false;        ///< false when fork/exec failed (message on the log)
  bool signaled = false;       ///< killed by a signal (code = the signal)
  int code = 0;                ///< exit status or signal number
};

struct WorkersOutcome {
  std::vector<WorkerExit> exits;
  int stop_signals = 0;        ///< SIGINT/SIGTERM received while the workers ran
};

/// Runs the workers side by side and waits for all of them. Each worker dies with this process
/// (parent-death signal SIGTERM); its stdout is discarded and its stderr is forwarded line by
/// line to `log` as "[label] line". Every second the workers' state files are read and one
/// aggregated progress line (cases, rows, unique failures, rate) is printed. SIGINT/SIGTERM
/// sent to this process are forwarded to the workers as SIGTERM (each stops after its current
/// case and writes its results); a second one kills them (SIGKILL). The previous signal
/// dispositions are restored on return.
WorkersOutcome run_worker_processes(const std::vector<WorkerProcess>& workers, const WorkerRunOptions& opt,
                                    std::ostream& log);

}  // namespace moecheck
