#include "harness/torch/module_mutation.hpp"

#include <algorithm>
#include <chrono>
#include <sstream>

#include "harness/torch/substitution_corpus.hpp"

namespace moecheck::harness {

std::vector<std::string> module_mutant_names() {
  std::vector<std::string> names;
  for (ModuleVariant v : all_module_variants()) {
    if (v != ModuleVariant::correct) names.push_back(std::string("module:") + module_variant_name(v));
  }
  return names;
}

std::vector<KillRow> run_module_mutants(const MutationOptions& o) {
  // restoration checks functional_call itself, so it cannot kill a module variant.
  const std::vector<SubstitutionProperty> properties = {
      SubstitutionProperty::scale_substitution, SubstitutionProperty::scale_linearity,
      SubstitutionProperty::zero_scale, SubstitutionProperty::every_parameter};
  const std::vector<SubstitutionMode> modes = all_substitution_modes();
  const std::int64_t runs = static_cast<std::int64_t>(properties.size() * modes.size());
  const int per_run = static_cast<int>(std::clamp<std::int64_t>(o.cases / runs, 1, 1000000));
  const std::string device = o.cuda ? "cuda" : "cpu";
  std::vector<KillRow> rows;
  for (ModuleVariant v : all_module_variants()) {
    if (v == ModuleVariant::correct) continue;
    KillRow row;
    row.mutant = std::string("module:") + module_variant_name(v);
    row.kind = "module";
    row.target = "substitution:" + device;
    const auto t0 = std::chrono::steady_clock::now();
    std::int64_t cases = 0;
    // Modes in order rebind, in_place, copy_into: the first failure kills the variant.
    for (SubstitutionMode m : modes) {
      for (SubstitutionProperty p : properties) {
        SubstitutionOptions so;
        so.spec.variant = v;
        so.spec.device = device;
        so.properties = {p};
        so.modes = {m};
        so.cases = per_run;
        so.seed = o.seed;
        const SubstitutionReport rep = run_substitution_suite(so);
        if (rep.results.empty()) continue;
        const PropertyResult& r = rep.results.front();
        cases += r.cases_passed + (property_failed(r) ? 1 : 0);
        if (!property_failed(r)) continue;
        const std::string check = std::string(substitution_property_name(p)) + "/" + substitution_mode_name(m);
        row.by_check[check] = r.cases_passed + 1;
        if (!row.status.empty()) continue;  // already killed: only record which checks catch it
        row.status = "killed";
        row.check = check;
        row.cases_to_first = cases;
        std::istringstream lines(r.counterexample);
        std::getline(lines, row.shrunk);
        const std::size_t cut = row.shrunk.find(" tie_gate_up");
        if (cut != std::string::npos) row.shrunk.resize(cut);
        if (!o.corpus_dir.empty()) {
          std::string status;
          row.note = save_subst(subst_record_of(so, r), o.corpus_dir, &status);
        } else {
          row.note = r.replay;
        }
      }
    }
    if (row.status.empty()) {
      row.status = "survived";
      row.cases_to_first = cases;
    }
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace moecheck::harness
