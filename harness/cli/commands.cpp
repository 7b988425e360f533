#include "harness/cli/commands.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "harness/core/campaign.hpp"
#include "harness/torch/torch_targets.hpp"
#include "kernels/routing_kernels.hpp"
#include "reports/reports.hpp"

namespace fs = std::filesystem;

namespace moecheck::cli {
namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string xml_escape(const std::string& s) { return reports::html_escape(s); }

void write_file(const std::string& path, const std::string& text) {
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out || !(out << text) || !out.flush()) throw std::runtime_error("cannot write '" + path + "'");
}

/// Folder holding this executable (resolved through /proc/self/exe, falling back to argv[0]).
fs::path exe_dir(const char* argv0) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) self = fs::absolute(argv0 ? argv0 : ".");
  return self.parent_path();
}

}  // namespace

void apply_generator_lists(const std::string& dtypes, const std::string& families, GenConfig& gen) {
  if (!dtypes.empty()) {
    gen.dtypes.clear();
    for (const auto& d : split_list(dtypes)) {
      DType v;
      if (!parse_dtype(d, &v)) throw CLI::ValidationError("--dtypes", "unknown dtype '" + d + "' (f32, f16, bf16)");
      gen.dtypes.push_back(v);
    }
    if (gen.dtypes.empty()) throw CLI::ValidationError("--dtypes", "empty list");
  }
  if (!families.empty()) {
    gen.families.clear();
    for (const auto& f : split_list(families)) {
      Family v;
      if (!parse_family(f, &v)) {
        throw CLI::ValidationError("--families", "unknown routing family '" + f +
                                                     "' (gemma4, softmax_topk, softmax_topk_raw, "
                                                     "sigmoid_grouped, sigmoid_top1)");
      }
      gen.families.push_back(v);
    }
    if (gen.families.empty()) throw CLI::ValidationError("--families", "empty list");
  }
}

void apply_layout_list(const std::string& layouts, GenConfig& gen) {
  if (layouts.empty()) return;
  gen.layouts.clear();
  for (const auto& name : split_list(layouts)) {
    Layout l;
    if (!parse_layout(name, &l)) {
      throw CLI::ValidationError("--layouts",
                                 "unknown layout '" + name + "' (contiguous, padded, transposed, strided)");
    }
    if (std::find(gen.layouts.begin(), gen.layouts.end(), l) != gen.layouts.end()) {
      throw CLI::ValidationError("--layouts", "layout '" + name + "' listed twice");
    }
    gen.layouts.push_back(l);
  }
  if (gen.layouts.empty()) throw CLI::ValidationError("--layouts", "empty list");
}

int report_replay(const std::vector<ReplayResult>& results, const std::string& json_path,
                  const std::string& junit_path, std::ostream& out) {
  int bad = 0, skipped = 0;
  for (const auto& r : results) {
    if (!r.ok) ++bad;
    if (r.outcome == "skipped") ++skipped;
    out << (r.ok ? (r.outcome == "skipped" ? "SKIP " : "ok   ") : "FAIL ") << r.path;
    if (!r.target.empty()) out << " [" << r.target << ": " << r.outcome << "]";
    if (!r.detail.empty() && (!r.ok || r.outcome == "skipped")) out << "\n     " << r.detail;
    out << "\n";
  }
  out << results.size() << " corpus entries: " << (results.size() - bad - skipped) << " matched, " << skipped
      << " skipped, " << bad << " did not match\n";
  if (!json_path.empty()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : results) {
      j.push_back({{"path", r.path}, {"target", r.target}, {"outcome", r.outcome}, {"ok", r.ok}, {"detail", r.detail}});
    }
    write_file(json_path, nlohmann::json{{"schema", "moecheck-replay/1"}, {"results", j}}.dump(1));
  }
  if (!junit_path.empty()) {
    std::ostringstream os;
    os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"" << results.size() << "\" failures=\""
       << bad << "\">\n <testsuite name=\"moecheck.replay\" tests=\"" << results.size() << "\" failures=\"" << bad
       << "\" skipped=\"" << skipped << "\">\n";
    for (const auto& r : results) {
      os << "  <testcase classname=\"moecheck.replay\" name=\"" << xml_escape(r.path) << "\">";
      if (!r.ok) os << "<failure message=\"" << xml_escape(r.detail) << "\"/>";
      else if (r.outcome == "skipped") os << "<skipped message=\"" << xml_escape(r.detail) << "\"/>";
      os << "</testcase>\n";
    }
    os << " </testsuite>\n</testsuites>\n";
    write_file(junit_path, os.str());
  }
  // Unreadable or malformed entries are input errors (2), reported after every other entry ran.
  for (const auto& r : results) {
    if (r.outcome == "error") return 2;
  }
  return bad == 0 ? 0 : 1;
}

// ---- mutants ------------------------------------------------------------------------------

void add_mutants_options(CLI::App* app, MutantsCliOptions& o) {
  app->add_flag("--list", o.list, "List the mutant catalog and exit");
  app->add_option("--cases", o.cases, "Case budget per mutant")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--seed", o.seed, "Campaign seed")->capture_default_str();
  app->add_option("--device", o.device, "cpu, cuda or auto (GPU-only mutants need cuda)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  app->add_option("--json", o.json, "Write the kill matrix as JSON");
  app->add_option("--markdown", o.markdown, "Write the kill matrix as Markdown");
  app->add_option("--corpus", o.corpus_dir, "Save each mutant's shrunk counterexample here")->capture_default_str();
  app->add_flag("!--no-modules", o.include_modules, "Skip the MoE module's stale-capture variants");
  app->add_flag("!--no-plugins", o.include_plugins, "Skip the broken example plugin");
}

namespace {

struct KillRow {
  std::string mutant;
  std::string kind;      ///< "kernel", "module", "plugin"
  std::string target;
  std::string status;    ///< "killed", "survived", "not-run"
  std::string check;
  std::int64_t cases_to_first = 0;
  std::string shrunk;
  double seconds = 0;
  std::string note;
  /// Oracle check -> cases to its first failure (kernel and plugin rows: every check that
  /// fired within the budget, across all variants).
  std::map<std::string, std::int64_t> by_check;
  /// Variant spec -> cases to its first failure, or -1 when it survived that variant's budget.
  std::map<std::string, std::int64_t> by_variant;
};

std::string check_cells(const KillRow& r) {
  if (r.by_check.empty()) return r.check.empty() ? "-" : r.check;
  std::string s;
  for (const auto& [c, n] : r.by_check) s += (s.empty() ? "" : ", ") + c + " @" + std::to_string(n);
  return s;
}

std::string variant_cells(const KillRow& r) {
  if (r.by_variant.empty()) return "-";
  std::string s;
  for (const auto& [v, n] : r.by_variant) {
    s += (s.empty() ? "" : ", ") + v.substr(v.find(':') + 1) + (n < 0 ? " survived" : " @" + std::to_string(n));
  }
  return s;
}

/// Records, for each oracle check among `failures`, the cases to its first failure
/// (`offset` = cases run by earlier campaigns of the same row).
void record_checks(KillRow& row, const std::vector<FailureRecord>& failures, std::int64_t offset) {
  for (const auto& f : failures) {
    const std::int64_t n = offset + f.case_index + 1;
    auto it = row.by_check.find(f.check);
    if (it == row.by_check.end() || it->second > n) row.by_check[f.check] = n;
  }
}

KillRow run_kernel_mutant(kernels::Mutant m, const MutantsCliOptions& o, bool cuda) {
  KillRow row;
  row.mutant = kernels::mutant_name(m);
  row.kind = "kernel";
  if (kernels::mutant_is_gpu_only(m) && !cuda) {
    row.status = "not-run";
    row.note = "GPU-only: needs a CUDA device";
    return row;
  }
  const std::vector<std::string> specs =
      cuda ? std::vector<std::string>{"cuda:auto", "cuda:warp_per_row", "cuda:block_per_row", "cuda:thread_per_row"}
           : std::vector<std::string>{"kernel:auto", "kernel:warp_per_row", "kernel:block_per_row",
                                      "kernel:thread_per_row"};
  // Every variant runs its own campaign (up to 4 unique failures within the case budget), so
  // the row shows which variants and which oracle checks catch the mutant.
  auto t0 = std::chrono::steady_clock::now();
  std::int64_t total_cases = 0;
  for (const auto& spec : specs) {
    TargetOptions topt;
    topt.mutant = row.mutant;
    auto target = make_target(spec, topt);
    CampaignOptions co;
    co.seed = o.seed;
    co.max_cases = o.cases;
    co.max_failures = 4;
    co.progress = false;
    co.corpus_dir = o.corpus_dir;
    if (m == kernels::Mutant::grid_overflow) {
      co.gen.max_T = 140000;  // the bug needs rows beyond 65535
      co.gen.large_T_probability = 0.5;
    }
    if (m == kernels::Mutant::shared_race) {
      // A missing barrier only shows when many warps race: tens of thousands of contiguous rows
      // (the staged thread_per_row path) and rows spanning several warps (block_per_row, E > 256).
      // Such cases take seconds each to check, so the budget is capped.
      co.gen.max_T = 40000;
      co.gen.large_T_probability = 1.0;
      co.gen.max_elems = std::int64_t{1} << 25;
      co.gen.layouts = {Layout::contiguous};
      co.gen.families = {Family::gemma4};
      co.gen.value_families = {"normal"};
      co.max_cases = std::min<std::int64_t>(o.cases, 60);
    }
    std::ostringstream sink;
    CampaignResult r = run_campaign(*target, co, sink);
    row.by_variant[spec] = r.failures.empty() ? -1 : r.failures.front().case_index + 1;
    record_checks(row, r.failures, total_cases);
    if (!r.failures.empty() && row.status.empty()) {
      const auto& f = r.failures.front();
      row.status = "killed";
      row.target = spec;
      row.check = f.check;
      row.cases_to_first = total_cases + f.case_index + 1;
      row.shrunk = "T=" + std::to_string(f.shrunk.T) + " E=" + std::to_string(f.shrunk.E) +
                   " k=" + std::to_string(f.shrunk.k) + " " + dtype_name(f.shrunk.dtype);
      row.note = f.corpus_file;
    }
    total_cases += r.cases;
  }
  if (row.status.empty()) {
    row.status = "survived";
    row.target = specs.front();
    row.cases_to_first = total_cases;
  }
  row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return row;
}

std::string find_plugin(const char* name) {
  // Built next to the CLI's build tree: <build>/kernels/lib<name>.so
  fs::path dir = exe_dir(nullptr);
  for (fs::path cand : {dir / ".." / "kernels" / (std::string("lib") + name + ".so"),
                        dir / "kernels" / (std::string("lib") + name + ".so")}) {
    std::error_code ec;
    if (fs::exists(cand, ec)) return fs::canonical(cand, ec).string();
  }
  return {};
}

KillRow run_plugin_mutant(const MutantsCliOptions& o) {
  KillRow row;
  row.mutant = "broken_plugin";
  row.kind = "plugin";
  std::string path = find_plugin("moecheck_broken_plugin");
  if (path.empty()) {
    row.status = "not-run";
    row.note = "libmoecheck_broken_plugin.so not found next to the build";
    return row;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto target = make_target("plugin:" + path, {});
  CampaignOptions co;
  co.seed = o.seed;
  co.max_cases = o.cases;
  co.max_failures = 4;
  co.progress = false;
  co.corpus_dir = o.corpus_dir;
  std::ostringstream sink;
  CampaignResult r = run_campaign(*target, co, sink);
  row.target = "plugin:" + fs::path(path).filename().string();
  record_checks(row, r.failures, 0);
  if (!r.failures.empty()) {
    const auto& f = r.failures.front();
    row.status = "killed";
    row.check = f.check;
    row.cases_to_first = f.case_index + 1;
    row.shrunk = "T=" + std::to_string(f.shrunk.T) + " E=" + std::to_string(f.shrunk.E) + " k=" +
                 std::to_string(f.shrunk.k) + " " + dtype_name(f.shrunk.dtype);
    row.note = f.corpus_file;
  } else {
    row.status = "survived";
    row.cases_to_first = r.cases;
  }
  row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return row;
}

}  // namespace

int run_mutants(const MutantsCliOptions& o, std::ostream& out) {
  if (o.list) {
    for (int i = 1; i < static_cast<int>(kernels::Mutant::count_); ++i) {
      auto m = static_cast<kernels::Mutant>(i);
      out << "kernel  " << kernels::mutant_name(m) << (kernels::mutant_is_gpu_only(m) ? "  (GPU only)" : "") << "\n";
    }
    for (const auto& name : module_mutant_names()) out << "module  " << name << "\n";
    out << "plugin  broken_plugin\n";
    return 0;
  }
  const bool cuda = o.device == "cuda" || (o.device == "auto" && cuda_device_available());
  if (o.device == "cuda" && !cuda_device_available()) {
    throw std::invalid_argument("--device cuda: no usable CUDA device");
  }
  std::vector<KillRow> rows;
  for (int i = 1; i < static_cast<int>(kernels::Mutant::count_); ++i) {
    rows.push_back(run_kernel_mutant(static_cast<kernels::Mutant>(i), o, cuda));
    const auto& r = rows.back();
    out << std::left << std::setw(24) << r.mutant << r.status << " " << r.check << " (" << r.cases_to_first
        << " cases, " << std::fixed << std::setprecision(2) << r.seconds << " s)\n" << std::flush;
    out.unsetf(std::ios::fixed);
  }
  if (o.include_modules) {
    for (const auto& m : run_module_mutants(o, cuda)) {
      KillRow r{m.mutant, "module", m.target, m.status, m.check, m.cases_to_first, m.shrunk, m.seconds, m.note,
                m.caught, {}};
      rows.push_back(r);
      out << std::left << std::setw(24) << r.mutant << r.status << " " << r.check << "\n" << std::flush;
    }
  }
  if (o.include_plugins) rows.push_back(run_plugin_mutant(o));

  int killed = 0, runnable = 0;
  for (const auto& r : rows) {
    if (r.status == "not-run") continue;
    ++runnable;
    if (r.status == "killed") ++killed;
  }
  const double score = runnable ? 100.0 * killed / runnable : 0.0;
  std::ostringstream md;
  md << "| mutant | kind | status | first kill (target, check, cases) | oracle checks that fired (@ cases to first) | "
        "per variant (@ cases to first failure) | shrunk case | time (s) |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    md << "| " << r.mutant << " | " << r.kind << " | " << r.status << " | "
       << (r.status == "killed" ? r.target + ", " + r.check + ", " + std::to_string(r.cases_to_first)
                                : (r.note.empty() ? std::string("-") : r.note))
       << " | " << check_cells(r) << " | " << variant_cells(r) << " | " << (r.shrunk.empty() ? "-" : r.shrunk)
       << " | " << std::fixed << std::setprecision(2) << r.seconds << " |\n";
  }
  md << "\nMutation score: " << killed << "/" << runnable << " = " << std::setprecision(1) << score
     << "% (device: " << (cuda ? "cuda" : "cpu") << "; not run here: " << (rows.size() - runnable) << ")\n";
  out << "\n" << md.str();
  if (!o.markdown.empty()) write_file(o.markdown, md.str());
  if (!o.json.empty()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : rows) {
      j.push_back({{"mutant", r.mutant}, {"kind", r.kind}, {"target", r.target}, {"status", r.status},
                   {"check", r.check}, {"cases_to_first_failure", r.cases_to_first}, {"shrunk", r.shrunk},
                   {"checks", r.by_check}, {"variants", r.by_variant},
                   {"seconds", r.seconds}, {"note", r.note}});
    }
    write_file(o.json, nlohmann::json{{"schema", "moecheck-mutants/1"}, {"device", cuda ? "cuda" : "cpu"},
                                      {"killed", killed}, {"runnable", runnable}, {"score_percent", score},
                                      {"rows", j}}
                           .dump(1));
  }
  return killed == runnable ? 0 : 1;
}

// ---- report -------------------------------------------------------------------------------

void add_report_options(CLI::App* app, ReportCliOptions& o) {
  app->add_option("inputs", o.inputs, "Campaign JSON (one) or benchmark JSON files (oldest first)")->required();
  app->add_option("--baseline", o.baseline, "Baseline benchmark JSON: compare and exit 1 on a regression");
  app->add_option("-o,--output", o.output, "Output HTML file")->required();
}

int run_report(const ReportCliOptions& o, std::ostream& out) {
  // A campaign file has schema moecheck-campaign/1; anything else is treated as benchmark output.
  bool campaign = false;
  if (o.inputs.size() == 1 && o.baseline.empty()) {
    std::ifstream in(o.inputs[0]);
    if (!in) {
      out << "moecheck report: cannot read '" << o.inputs[0] << "'\n";
      return 2;
    }
    try {
      nlohmann::json j;
      in >> j;
      campaign = j.is_object() && j.value("schema", std::string()) == "moecheck-campaign/1";
    } catch (const std::exception& e) {
      out << "moecheck report: '" << o.inputs[0] << "' is not valid JSON: " << e.what() << "\n";
      return 2;
    }
  }
  if (campaign) return reports::report_main_campaign(o.inputs[0], o.output, out);
  return reports::report_main_bench(o.inputs, o.baseline, o.output, out);
}

// ---- bench --------------------------------------------------------------------------------

void add_bench_options(CLI::App* app, BenchCliOptions& o) {
  app->add_option("-o,--output", o.output, "Benchmark JSON output")->capture_default_str();
  app->add_option("--filter", o.filter, "Benchmark name regex");
  app->add_option("--repetitions", o.repetitions, "Repetitions per benchmark (medians are reported)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app->add_option("extra", o.extra, "Extra Google Benchmark flags (after --)");
}

int run_bench(const BenchCliOptions& o, const char* argv0, std::ostream& out) {
  fs::path dir = exe_dir(argv0);
  fs::path bin;
  for (fs::path cand : {dir / ".." / "bench" / "moecheck_routing_bench", dir / "bench" / "moecheck_routing_bench"}) {
    std::error_code ec;
    if (fs::exists(cand, ec)) {
      bin = fs::canonical(cand, ec);
      break;
    }
  }
  if (bin.empty()) {
    out << "moecheck bench: the benchmark binary (moecheck_routing_bench) is not in this build; it is built "
           "when CUDA is enabled (MOECHECK_CUDA=ON)\n";
    return 2;
  }
  std::vector<std::string> args = {bin.string(), "--benchmark_out=" + o.output, "--benchmark_out_format=json",
                                   "--benchmark_repetitions=" + std::to_string(o.repetitions),
                                   "--benchmark_report_aggregates_only=false"};
  if (!o.filter.empty()) args.push_back("--benchmark_filter=" + o.filter);
  for (const auto& e : o.extra) args.push_back(e);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  out << "moecheck bench: " << bin.string() << " -> " << o.output << "\n" << std::flush;
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return 3;
  return WEXITSTATUS(status) == 0 ? 0 : 1;
}

}  // namespace moecheck::cli
