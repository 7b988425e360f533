#include "harness/cli/distributed.hpp"

#include <ftw.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <unistd.h>

#include "harness/core/merge.hpp"
#include "harness/core/target.hpp"
#include "harness/core/workers.hpp"

namespace moecheck::cli {
namespace {

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  std::remove(path);  // errors ignored: what cannot be removed stays
  return 0;
}

/// Removes a folder and what it holds, ignoring errors. Not std::filesystem::remove_all: in a
/// program linked with the torch wheel's LibTorch that call can bind to the copy libtorch.so
/// exports, which crashed (null call) with a g++ 13 build on the GPU machine.
void remove_tree(const std::filesystem::path& p) {
  ::nftw(p.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

}  // namespace

namespace {

namespace fs = std::filesystem;

void print_merged(const MergeResult& m, std::ostream& out) {
  const CampaignResult& r = m.campaign;
  out << "merged " << m.shards.size() << " shard" << (m.shards.size() == 1 ? "" : "s") << ": cases " << r.cases
      << ", rows " << r.rows << ", skipped " << r.skipped << ", failures " << r.failures.size() << " (+"
      << r.duplicate_failures << " duplicates, " << m.cross_shard_duplicates << " across shards)";
  if (!m.missing.empty()) out << ", " << m.missing.size() << " shard(s) missing";
  out << "\n";
}

}  // namespace

void add_merge_options(CLI::App* app, MergeCliOptions& o) {
  app->add_option("shards", o.inputs, "Shard results (moecheck fuzz --shard i/n --json ...)")->required();
  app->add_option("--corpus", o.corpus_dirs, "Shard corpus folders to union into --into")->expected(1, -1);
  app->add_option("--into", o.into, "Merged corpus folder (files are copied, never overwritten)");
  app->add_option("--json", o.json, "Write the merged campaign results (moecheck-campaign/1) here");
  app->add_option("--junit", o.junit, "Write JUnit XML here");
  app->add_flag("--allow-partial", o.allow_partial, "Merge even when shard indices are missing or duplicated");
}

int run_merge(const MergeCliOptions& o, std::ostream& out) {
  MergeOptions mo;
  mo.corpus_dirs = o.corpus_dirs;
  mo.into_dir = o.into;
  mo.allow_partial = o.allow_partial;
  MergeResult m = merge_campaigns(o.inputs, mo);
  try {
    write_merge_outputs(m, o.json, o.junit);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("cannot write the merged results: ") + e.what());
  }
  print_merged(m, out);
  if (!o.into.empty()) {
    out << "corpus " << o.into << ": " << m.corpus_copied << " copied (" << m.corpus_renamed
        << " under a new name), " << m.corpus_present << " already there\n";
  }
  for (const auto& note : m.notes) out << "  note: " << note << "\n";
  for (const auto& f : m.campaign.failures) out << "  " << f.replay << "\n";
  return m.campaign.failures.empty() ? 0 : 1;
}

std::vector<std::string> fuzz_arguments(int argc, char** argv) {
  int i = 1;
  while (i < argc && std::string(argv[i]) != "fuzz") ++i;
  std::vector<std::string> out;
  for (++i; i < argc; ++i) out.emplace_back(argv[i]);
  return out;
}

int run_fuzz_workers(const FuzzWorkersRequest& req, const CampaignOptions& fz, std::ostream& out, std::ostream& log) {
  if (req.use_devices && req.workers > 0) throw std::invalid_argument("--devices and --workers exclude each other");
  if (fz.first_index >= 0) throw std::invalid_argument("--first-case replays one case in one process: drop --workers/--devices");
  if (fz.resume && fz.state_file.empty()) throw std::invalid_argument("--resume needs --state FILE");

  // One worker per device (each sees only its own) or per --workers.
  std::vector<int> devices;
  int n = req.workers;
  if (req.use_devices) {
    devices = parse_device_list(req.devices, cuda_device_count());
    n = static_cast<int>(devices.size());
  }
  const std::vector<WorkerShard> plan = plan_worker_shards(fz.shard_index, fz.shard_count, fz.max_cases, n);
  const char* parent_visible = std::getenv("CUDA_VISIBLE_DEVICES");
  std::vector<std::string> visible;
  for (std::size_t i = 0; i < plan.size() && !devices.empty(); ++i) {
    visible.push_back(worker_visible_devices(devices[i], parent_visible));
  }

  // The fuzz command line minus what each worker gets of its own.
  static const char* const kWithValue[] = {"--devices", "--workers", "--shard", "--cases", "--json",
                                           "--junit",   "--state",   "--corpus", "--first-case"};
  static const char* const kFlags[] = {"--resume", "--no-progress"};
  std::vector<std::string> base;
  for (std::size_t i = 0; i < req.fuzz_args.size(); ++i) {
    const std::string& a = req.fuzz_args[i];
    bool dropped = false;
    for (const char* opt : kWithValue) {
      const std::string o(opt);
      if (a == o) {
        ++i;  // and its value
        dropped = true;
      } else if (a.rfind(o + "=", 0) == 0) {
        dropped = true;
      }
    }
    for (const char* flag : kFlags) dropped = dropped || a == flag;
    if (!dropped) base.push_back(a);
  }

  // Every output is checked before any worker starts, as one process checks them before its
  // first case: a bad --json/--junit/--state/--corpus is exit 2 with nothing run.
  check_output_paths(fz);

  const fs::path tmp = fs::temp_directory_path() / ("moecheck-workers." + std::to_string(::getpid()));
  remove_tree(tmp);
  fs::create_directories(tmp);
  const std::string exe = self_executable();
  std::vector<WorkerProcess> procs;
  std::vector<std::string> jsons, corpora;
  const int count = static_cast<int>(plan.size());
  for (int i = 0; i < count; ++i) {
    const WorkerShard& w = plan[static_cast<std::size_t>(i)];
    WorkerProcess p;
    p.label = devices.empty() ? "worker " + std::to_string(i) : "gpu " + std::to_string(devices[static_cast<std::size_t>(i)]);
    const std::string tag = std::to_string(i) + "-of-" + std::to_string(count);
    jsons.push_back((tmp / ("worker-" + tag + ".json")).string());
    corpora.push_back(fz.corpus_dir.empty() ? std::string() : (tmp / ("corpus-" + tag)).string());
    p.state_file = fz.state_file.empty() ? (tmp / ("state-" + tag + ".json")).string() : fz.state_file + "." + tag;
    p.argv = {exe, "fuzz"};
    p.argv.insert(p.argv.end(), base.begin(), base.end());
    for (const std::string& a : {std::string("--shard"), std::to_string(w.shard_index) + "/" + std::to_string(w.shard_count),
                                 std::string("--no-progress"), std::string("--json"), jsons.back(),
                                 std::string("--corpus"), corpora.back(), std::string("--state"), p.state_file}) {
      p.argv.push_back(a);
    }
    if (fz.resume) p.argv.push_back("--resume");
    if (w.max_cases > 0) {
      p.argv.push_back("--cases");
      p.argv.push_back(std::to_string(w.max_cases));
    }
    if (!devices.empty()) p.env.emplace_back("CUDA_VISIBLE_DEVICES", visible[static_cast<std::size_t>(i)]);
    procs.push_back(std::move(p));
  }
  log << "moecheck fuzz: " << count << " worker" << (count == 1 ? "" : "s");
  if (!devices.empty()) {
    log << " on devices";
    for (std::size_t i = 0; i < visible.size(); ++i) log << (i ? "," : " ") << devices[i];
  }
  log << " for shard " << fz.shard_index << "/" << fz.shard_count << ": shards";
  for (std::size_t i = 0; i < plan.size(); ++i) {
    log << (i ? ", " : " ") << plan[i].shard_index << "/" << plan[i].shard_count;
    if (plan[i].max_cases > 0) log << " (" << plan[i].max_cases << " cases)";
  }
  log << "\n";

  WorkerRunOptions ro;
  ro.progress = fz.progress;
  ro.budget_seconds = fz.seconds;
  const WorkersOutcome oc = run_worker_processes(procs, ro, log);

  bool died = false, usage = false;
  for (int i = 0; i < count; ++i) {
    const WorkerExit& e = oc.exits[static_cast<std::size_t>(i)];
    const std::string& label = procs[static_cast<std::size_t>(i)].label;
    if (!e.started) {
      died = true;
    } else if (e.signaled) {
      died = true;
      log << "[" << label << "] killed by signal " << e.code << "\n";
    } else if (e.code == 2) {
      usage = true;
    } else if (e.code != 0 && e.code != 1 && e.code != kExitInterrupted) {
      died = true;  // 3: an output it could not write, or an internal error; 127: not executed
      log << "[" << label << "] exited with status " << e.code << "\n";
    }
  }
  std::vector<std::string> present, present_corpora;
  for (int i = 0; i < count; ++i) {
    std::error_code ec;
    if (fs::exists(jsons[static_cast<std::size_t>(i)], ec)) present.push_back(jsons[static_cast<std::size_t>(i)]);
    if (!corpora[static_cast<std::size_t>(i)].empty() && fs::is_directory(corpora[static_cast<std::size_t>(i)], ec)) {
      present_corpora.push_back(corpora[static_cast<std::size_t>(i)]);
    }
  }
  if (present.empty()) {
    log << "moecheck fuzz: no worker wrote results (worker files kept in " << tmp.string() << ")\n";
    return usage && !died ? 2 : 3;
  }
  MergeOptions mo;
  mo.corpus_dirs = present_corpora;
  mo.into_dir = fz.corpus_dir;
  mo.allow_partial = true;
  mo.parent_index = fz.shard_index;
  mo.parent_count = fz.shard_count;
  mo.same_budget = false;
  mo.kept_failures_only = true;
  MergeResult m;
  try {
    m = merge_campaigns(present, mo);
    write_merge_outputs(m, fz.results_json, fz.junit_xml);
  } catch (const std::exception& e) {
    log << "moecheck fuzz: cannot merge or write the workers' results: " << e.what()
        << "\n  (the workers' results are kept in " << tmp.string() << ")\n";
    return 2;
  }
  const CampaignResult& r = m.campaign;
  out << "cases " << r.cases << ", rows " << r.rows << ", skipped " << r.skipped << ", failures "
      << r.failures.size() << " (+" << r.duplicate_failures << " duplicates) in " << r.elapsed_s << " s"
      << (r.elapsed_s > 0 ? " (" + human_number(static_cast<double>(r.cases) / r.elapsed_s) + " cases/s, " +
                                human_number(static_cast<double>(r.rows) / r.elapsed_s) + " rows/s)"
                          : std::string())
      << ", " << count << " worker" << (count == 1 ? "" : "s")
      << (r.interrupted ? " [interrupted: resume with --resume --state FILE and the same worker count]" : "")
      << "\n";
  for (const auto& f : r.failures) out << "  " << f.replay << "\n";
  for (const auto& note : m.notes) log << "note: " << note << "\n";
  if (died || usage || !m.missing.empty()) {
    log << "moecheck fuzz: " << m.missing.size() << " worker(s) wrote no results; worker files kept in "
        << tmp.string() << "\n";
    return died || !m.missing.empty() ? 3 : 2;
  }
  remove_tree(tmp);
  // As one process: 1 failures, else 4 (kExitInterrupted) when a worker was interrupted (Ctrl-C
  // forwarded, or a campaign aborted by the code under test), else 0. A worker that could not
  // write an output exited 3 and was handled above.
  return campaign_exit_code(r);
}

}  // namespace moecheck::cli
