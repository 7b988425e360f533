#include "harness/core/mutation.hpp"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

namespace moecheck {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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

}  // namespace

std::vector<kernels::Mutant> kernel_mutants() {
  std::vector<kernels::Mutant> out;
  for (int i = 1; i < static_cast<int>(kernels::Mutant::count_); ++i) out.push_back(static_cast<kernels::Mutant>(i));
  return out;
}

std::vector<std::string> kernel_mutant_specs(bool cuda) {
  if (cuda) return {"cuda:auto", "cuda:warp_per_row", "cuda:block_per_row", "cuda:thread_per_row"};
  return {"kernel:auto", "kernel:warp_per_row", "kernel:block_per_row", "kernel:thread_per_row"};
}

CampaignOptions kernel_mutant_campaign(kernels::Mutant m, const MutationOptions& o) {
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
  return co;
}

std::string shrunk_summary(const RoutingCase& c) {
  return "T=" + std::to_string(c.T) + " E=" + std::to_string(c.E) + " k=" + std::to_string(c.k) + " " +
         dtype_name(c.dtype);
}

void record_checks(KillRow& row, const std::vector<FailureRecord>& failures, std::int64_t offset) {
  for (const auto& f : failures) {
    const std::int64_t n = offset + f.case_index + 1;
    auto it = row.by_check.find(f.check);
    if (it == row.by_check.end() || it->second > n) row.by_check[f.check] = n;
  }
}

KillRow run_kernel_mutant(kernels::Mutant m, const MutationOptions& o) {
  KillRow row;
  row.mutant = kernels::mutant_name(m);
  row.kind = "kernel";
  if (kernels::mutant_is_gpu_only(m) && !o.cuda) {
    row.status = "not-run";
    row.note = "GPU-only: needs a CUDA device";
    return row;
  }
  const std::vector<std::string> specs = kernel_mutant_specs(o.cuda);
  // Every variant runs its own campaign (up to 4 unique failures within the case budget), so
  // the row shows which variants and which oracle checks catch the mutant.
  const auto t0 = Clock::now();
  std::int64_t total_cases = 0;
  for (const auto& spec : specs) {
    TargetOptions topt;
    topt.mutant = row.mutant;
    auto target = make_core_target(spec, topt);
    const CampaignOptions co = kernel_mutant_campaign(m, o);
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
      row.shrunk = shrunk_summary(f.shrunk);
      row.note = f.corpus_file;
    }
    total_cases += r.cases;
  }
  if (row.status.empty()) {
    row.status = "survived";
    row.target = specs.front();
    row.cases_to_first = total_cases;
  }
  row.seconds = seconds_since(t0);
  return row;
}

KillRow run_plugin_mutant(const std::string& plugin_path, const MutationOptions& o) {
  KillRow row;
  row.mutant = kBrokenPluginMutant;
  row.kind = "plugin";
  if (plugin_path.empty()) {
    row.status = "not-run";
    row.note = std::string(kBrokenPluginFile) + " not found next to the build";
    return row;
  }
  const auto t0 = Clock::now();
  auto target = make_core_target("plugin:" + plugin_path, {});
  CampaignOptions co;
  co.seed = o.seed;
  co.max_cases = o.cases;
  co.max_failures = 4;
  co.progress = false;
  co.corpus_dir = o.corpus_dir;
  co.planted_bug = true;
  std::ostringstream sink;
  CampaignResult r = run_campaign(*target, co, sink);
  row.target = target->spec();
  record_checks(row, r.failures, 0);
  if (!r.failures.empty()) {
    const auto& f = r.failures.front();
    row.status = "killed";
    row.check = f.check;
    row.cases_to_first = f.case_index + 1;
    row.shrunk = shrunk_summary(f.shrunk);
    row.note = f.corpus_file;
  } else {
    row.status = "survived";
    row.cases_to_first = r.cases;
  }
  row.seconds = seconds_since(t0);
  return row;
}

KillMatrix tally_kill_matrix(std::vector<KillRow> rows, bool cuda) {
  KillMatrix m;
  m.rows = std::move(rows);
  m.cuda = cuda;
  for (const auto& r : m.rows) {
    if (r.status == "not-run") continue;
    ++m.runnable;
    if (r.status == "killed") ++m.killed;
  }
  m.score_percent = m.runnable ? 100.0 * m.killed / m.runnable : 0.0;
  return m;
}

std::string kill_matrix_markdown(const KillMatrix& m) {
  std::ostringstream md;
  md << "| mutant | kind | status | first kill (target, check, cases) | oracle checks that fired (@ cases to first) | "
        "per variant (@ cases to first failure) | shrunk case | time (s) |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : m.rows) {
    md << "| " << r.mutant << " | " << r.kind << " | " << r.status << " | "
       << (r.status == "killed" ? r.target + ", " + r.check + ", " + std::to_string(r.cases_to_first)
                                : (r.note.empty() ? std::string("-") : r.note))
       << " | " << check_cells(r) << " | " << variant_cells(r) << " | " << (r.shrunk.empty() ? "-" : r.shrunk)
       << " | " << std::fixed << std::setprecision(2) << r.seconds << " |\n";
  }
  md << "\nMutation score: " << m.killed << "/" << m.runnable << " = " << std::setprecision(1) << m.score_percent
     << "% (device: " << (m.cuda ? "cuda" : "cpu") << "; not run here: " << (m.rows.size() - m.runnable) << ")\n";
  return md.str();
}

std::string kill_matrix_json(const KillMatrix& m) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : m.rows) {
    j.push_back({{"mutant", r.mutant}, {"kind", r.kind}, {"target", r.target}, {"status", r.status},
                 {"check", r.check}, {"cases_to_first_failure", r.cases_to_first}, {"shrunk", r.shrunk},
                 {"checks", r.by_check}, {"variants", r.by_variant},
                 {"seconds", r.seconds}, {"note", r.note}});
  }
  return nlohmann::json{{"schema", "moecheck-mutants/1"}, {"device", m.cuda ? "cuda" : "cpu"},
                        {"killed", m.killed}, {"runnable", m.runnable}, {"score_percent", m.score_percent},
                        {"rows", j}}
      .dump(1);
}

}  // namespace moecheck
