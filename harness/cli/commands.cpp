#include "harness/cli/commands.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "harness/core/campaign.hpp"
#include "harness/core/corpus.hpp"
#include "harness/core/mutation.hpp"
#include "harness/torch/module_mutation.hpp"
#include "harness/torch/torch_targets.hpp"
#include "kernels/routing_kernels.hpp"
#include "reports/reports.hpp"

namespace fs = std::filesystem;

namespace moecheck::cli {
namespace {

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

CLI::Validator integer_in(std::int64_t lo, std::int64_t hi) {
  const std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        const bool neg = !text.empty() && text[0] == '-' && lo < 0;
        const std::size_t first = neg ? 1 : 0;
        bool digits = text.size() > first;
        for (std::size_t i = first; i < text.size(); ++i) digits = digits && text[i] >= '0' && text[i] <= '9';
        if (!digits) return quote_value(text) + " is not " + range;
        errno = 0;
        const long long v = std::strtoll(text.c_str(), nullptr, 10);
        if (errno == ERANGE || v < lo || v > hi) return quote_value(text) + " is out of range: expected " + range;
        text = std::to_string(v);  // canonical decimal: CLI11 would read a leading 0 as octal
        return {};
      },
      hi < 1000000000 ? "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" : ">= " + std::to_string(lo));
}

CLI::Validator seed_value() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
        bool ok = !text.empty();
        for (std::size_t i = hex ? 2 : 0; i < text.size(); ++i) {
          ok = ok && (hex ? std::isxdigit(static_cast<unsigned char>(text[i])) != 0 : text[i] >= '0' && text[i] <= '9');
        }
        if (!ok) return quote_value(text) + " is not a seed: expected a decimal or 0x-hexadecimal integer from 0 to 2^64 - 1";
        errno = 0;
        const unsigned long long v = std::strtoull(text.c_str(), nullptr, hex ? 16 : 10);
        if (errno == ERANGE) return quote_value(text) + " is out of range: a seed is at most 2^64 - 1 = 18446744073709551615";
        text = std::to_string(v);  // canonical decimal: CLI11 would read a leading 0 as octal
        return {};
      },
      "SEED");
}

CLI::Validator positive_seconds() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::string want = "expected a finite number of seconds > 0 and <= 1e9";
        errno = 0;
        char* end = nullptr;
        const double v = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size()) return quote_value(text) + " is not a number: " + want;
        if (!std::isfinite(v) || errno == ERANGE || v <= 0 || v > kMaxSeconds) {
          return quote_value(text) + " is out of range: " + want +
                 (v == 0 ? " (leave out --seconds and --cases for the default 60 s budget)" : "");
        }
        return {};
      },
      "SECONDS");
}

std::vector<std::string> split_flag_list(const std::string& flag, const std::string& list) {
  if (list.empty()) throw CLI::ValidationError(flag, "empty list");
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = list.find(',', start);
    const std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty()) throw CLI::ValidationError(flag, quote_value(list) + " has an empty entry");
    out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void apply_generator_lists(const std::string& dtypes, const std::string& families, GenConfig& gen) {
  if (!dtypes.empty()) {
    gen.dtypes.clear();
    for (const auto& d : split_flag_list("--dtypes", dtypes)) {
      DType v;
      if (!parse_dtype(d, &v)) throw CLI::ValidationError("--dtypes", "unknown dtype " + quote_value(d) + " (f32, f16, bf16)");
      gen.dtypes.push_back(v);
    }
  }
  if (!families.empty()) {
    gen.families.clear();
    for (const auto& f : split_flag_list("--families", families)) {
      Family v;
      if (!parse_family(f, &v)) {
        throw CLI::ValidationError("--families", "unknown routing family " + quote_value(f) +
                                                     " (gemma4, softmax_topk, softmax_topk_raw, "
                                                     "sigmoid_grouped, sigmoid_top1)");
      }
      gen.families.push_back(v);
    }
  }
}

void apply_layout_list(const std::string& layouts, GenConfig& gen) {
  if (layouts.empty()) return;
  gen.layouts.clear();
  for (const auto& name : split_flag_list("--layouts", layouts)) {
    Layout l;
    if (!parse_layout(name, &l)) {
      throw CLI::ValidationError("--layouts",
                                 "unknown layout " + quote_value(name) + " (contiguous, padded, transposed, strided)");
    }
    if (std::find(gen.layouts.begin(), gen.layouts.end(), l) != gen.layouts.end()) {
      throw CLI::ValidationError("--layouts", "layout " + quote_value(name) + " listed twice");
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
  app->add_option("--cases", o.cases, "Case budget per mutant")
      ->transform(integer_in(1, kMaxCampaignCases))
      ->capture_default_str();
  app->add_option("--seed", o.seed, "Campaign seed")->transform(seed_value())->capture_default_str();
  app->add_option("--device", o.device, "cpu, cuda or auto (GPU-only mutants need cuda)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  app->add_option("--json", o.json, "Write the kill matrix as JSON");
  app->add_option("--markdown", o.markdown, "Write the kill matrix as Markdown");
  app->add_option("--corpus", o.corpus_dir,
                  "Save each mutant's shrunk counterexample here (the committed corpora/mutants only when named)")
      ->capture_default_str();
  app->add_flag("!--no-modules", o.include_modules, "Skip the MoE module's stale-capture variants");
  app->add_flag("!--no-plugins", o.include_plugins, "Skip the broken example plugin");
}

namespace {

/// The broken example plugin built next to the CLI's build tree (<build>/kernels/), or "".
std::string find_broken_plugin() {
  fs::path dir = exe_dir(nullptr);
  for (fs::path cand : {dir / ".." / "kernels" / kBrokenPluginFile, dir / "kernels" / kBrokenPluginFile}) {
    std::error_code ec;
    if (fs::exists(cand, ec)) return fs::canonical(cand, ec).string();
  }
  return {};
}

void print_row(std::ostream& out, const KillRow& r) {
  out << std::left << std::setw(24) << r.mutant << r.status << " " << r.check << " (" << r.cases_to_first
      << " cases, " << std::fixed << std::setprecision(2) << r.seconds << " s)\n" << std::flush;
  out.unsetf(std::ios::fixed);
}

}  // namespace

int run_mutants(const MutantsCliOptions& o, std::ostream& out) {
  if (o.list) {
    for (kernels::Mutant m : kernel_mutants()) {
      out << "kernel  " << kernels::mutant_name(m) << (kernels::mutant_is_gpu_only(m) ? "  (GPU only)" : "") << "\n";
    }
    for (const auto& name : harness::module_mutant_names()) out << "module  " << name << "\n";
    out << "plugin  " << kBrokenPluginMutant << "\n";
    return 0;
  }
  const bool cuda = o.device == "cuda" || (o.device == "auto" && cuda_device_available());
  if (o.device == "cuda" && !cuda_device_available()) {
    throw std::invalid_argument("--device cuda: no usable CUDA device");
  }
  MutationOptions mo;
  mo.cases = o.cases;
  mo.seed = o.seed;
  mo.corpus_dir = o.corpus_dir;
  mo.cuda = cuda;
  std::vector<KillRow> rows;
  for (kernels::Mutant m : kernel_mutants()) {
    rows.push_back(run_kernel_mutant(m, mo));
    print_row(out, rows.back());
  }
  if (o.include_modules) {
    for (KillRow& r : harness::run_module_mutants(mo)) {
      out << std::left << std::setw(24) << r.mutant << r.status << " " << r.check << "\n" << std::flush;
      rows.push_back(std::move(r));
    }
  }
  if (o.include_plugins) rows.push_back(run_plugin_mutant(find_broken_plugin(), mo));

  const KillMatrix matrix = tally_kill_matrix(std::move(rows), cuda);
  const std::string md = kill_matrix_markdown(matrix);
  out << "\n" << md;
  if (!o.markdown.empty()) write_file(o.markdown, md);
  if (!o.json.empty()) write_file(o.json, kill_matrix_json(matrix));
  return matrix.all_killed() ? 0 : 1;
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
      ->transform(integer_in(1, 100))
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
