// moecheck substitution: the functional-substitution property suite on the command line and
// the replay of its counterexample corpus (*.subst; format and replay in
// harness/torch/substitution_corpus.hpp).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/cli/commands.hpp"
#include "harness/core/campaign.hpp"
#include "harness/core/corpus.hpp"
#include "harness/torch/substitution_corpus.hpp"
#include "harness/torch/substitution_suite.hpp"
#include "harness/torch/torch_targets.hpp"

namespace fs = std::filesystem;

namespace moecheck::cli {

using harness::ModuleVariant;
using harness::PropertyResult;
using harness::RoutingBackend;
using harness::SubstitutionMode;
using harness::SubstitutionOptions;
using harness::SubstitutionProperty;
using harness::SubstitutionReport;

namespace {

// ---------------------------------------------------------------------------------------
// Option parsing.
// ---------------------------------------------------------------------------------------
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string item;
  std::stringstream ss(s);
  while (std::getline(ss, item, ',')) out.push_back(item);
  if (!s.empty() && s.back() == ',') out.push_back("");
  return out;
}

std::string variant_list() {
  std::string s;
  for (ModuleVariant v : harness::all_module_variants()) s += std::string(s.empty() ? "" : ", ") + module_variant_name(v);
  return s + " or all";
}

std::string property_list() {
  std::string s;
  for (SubstitutionProperty p : harness::all_substitution_properties()) {
    s += std::string(s.empty() ? "" : ", ") + substitution_property_name(p);
  }
  return s + " or all";
}

std::vector<ModuleVariant> parse_variants(const std::string& s) {
  if (s == "all") return harness::all_module_variants();
  ModuleVariant v;
  if (!harness::parse_module_variant(s, &v)) {
    throw std::invalid_argument("--variant: unknown module variant '" + s + "' (" + variant_list() + ")");
  }
  return {v};
}

std::vector<SubstitutionMode> parse_modes(const std::string& s) {
  std::vector<SubstitutionMode> m;
  if (!harness::parse_substitution_modes(s, &m) || m.empty()) {
    throw std::invalid_argument("--mode: unknown substitution mode list '" + s +
                                "' (rebind, in_place, copy_into, both, all, or a comma list)");
  }
  return m;
}

std::vector<SubstitutionProperty> parse_properties(const std::string& s) {
  if (s == "all") return harness::all_substitution_properties();
  std::vector<SubstitutionProperty> out;
  for (const std::string& name : split_commas(s)) {
    SubstitutionProperty p;
    if (!harness::parse_substitution_property(name, &p)) {
      throw std::invalid_argument("--property: unknown property '" + name + "' (" + property_list() + ")");
    }
    out.push_back(p);
  }
  if (out.empty()) throw std::invalid_argument("--property: empty list");
  return out;
}

RoutingBackend parse_backend(const std::string& s) {
  RoutingBackend b;
  if (!harness::parse_routing_backend(s, &b)) {
    throw std::invalid_argument("--backend: unknown routing backend '" + s + "' (composite, reference, fused)");
  }
  return b;
}

DType parse_dtype_or_throw(const std::string& s) {
  DType d;
  if (!parse_dtype(s, &d)) throw std::invalid_argument("--dtype: unknown dtype '" + s + "' (f32, f16, bf16)");
  return d;
}

/// "cpu", "cuda" (or "cuda:N") after resolving "auto"; throws when CUDA is asked for but absent.
std::string resolve_device(const std::string& d) {
  if (d == "auto") return torch_cuda_available() ? "cuda" : "cpu";
  if (d == "cpu") return d;
  if (d == "cuda" || d.rfind("cuda:", 0) == 0) {
    if (!torch_cuda_available()) {
      throw std::invalid_argument("--device " + d + ": LibTorch in this build/process cannot use a CUDA device");
    }
    return d;
  }
  throw std::invalid_argument("--device: unknown device '" + d + "' (cpu, cuda, auto)");
}

/// CLI11 validator from a parse function that throws std::invalid_argument.
template <class Parse>
CLI::Validator validator(Parse parse, const std::string& desc) {
  return CLI::Validator(
      [parse](std::string& v) -> std::string {
        try {
          parse(v);
        } catch (const std::invalid_argument& e) {
          // CLI11 names the option itself; drop the "--option: " prefix of the message.
          std::string msg = e.what();
          const std::size_t colon = msg.find(": ");
          if (msg.rfind("--", 0) == 0 && colon != std::string::npos) msg.erase(0, colon + 2);
          return msg;
        }
        return {};
      },
      desc);
}

// ---------------------------------------------------------------------------------------
// Expectations.
// ---------------------------------------------------------------------------------------

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::string line;
  std::stringstream ss(s);
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

std::string indent(const std::string& text, const std::string& pad) {
  std::string s;
  for (const std::string& l : split_lines(text)) s += pad + l + "\n";
  return s;
}

void write_text_file(const std::string& path, const std::string& text) {
  fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out || !(out << text) || !out.flush()) throw std::runtime_error("cannot write '" + path + "'");
}

// ---------------------------------------------------------------------------------------
// Suite runs.
// ---------------------------------------------------------------------------------------
struct Outcome {
  ModuleVariant variant = ModuleVariant::correct;
  PropertyResult result;
  bool expect_fail = false;
  std::string corpus_file, corpus_status;
  bool as_expected() const { return !result.error && harness::property_failed(result) == expect_fail; }
};

std::string verdict_word(const PropertyResult& r) { return r.passed ? "pass" : r.error ? "ERROR" : "FAIL"; }

void print_progress_line(std::ostream& out, const Outcome& o, bool show_expectation) {
  const PropertyResult& r = o.result;
  char line[256];
  std::snprintf(line, sizeof line, "  %-15s %-19s %-10s %-5s %5d cases", module_variant_name(o.variant),
                substitution_property_name(r.property), substitution_mode_name(r.mode), verdict_word(r).c_str(),
                r.cases_passed);
  out << line;
  if (harness::property_failed(r)) out << " + 1 failing, shrunk in " << r.shrink_steps << " steps";
  out << "  " << fixed2(r.seconds) << " s";
  if (show_expectation) {
    out << "  (expected " << (o.expect_fail ? "fail" : "pass") << (o.as_expected() ? ")" : "; UNEXPECTED)");
  }
  out << "\n" << std::flush;
}

void print_failure(std::ostream& out, const Outcome& o) {
  const PropertyResult& r = o.result;
  out << "\n" << verdict_word(r) << " " << module_variant_name(o.variant) << " / " << substitution_property_name(r.property)
      << " / " << substitution_mode_name(r.mode) << (o.expect_fail ? " (planted bug, expected)" : "") << "\n";
  out << "  why:\n" << indent(r.failure, "    ");
  if (!r.counterexample.empty()) out << "  shrunk counterexample:\n" << indent(r.counterexample, "    ");
  out << "  replay: " << r.replay << "\n";
  if (!o.corpus_file.empty()) {
    out << "     or: moecheck substitution --replay " << o.corpus_file << "   [" << o.corpus_status << "]\n";
  }
}

nlohmann::json outcome_json(const Outcome& o) {
  const PropertyResult& r = o.result;
  return {{"variant", module_variant_name(o.variant)},
          {"property", substitution_property_name(r.property)},
          {"mode", substitution_mode_name(r.mode)},
          {"verdict", r.passed ? "pass" : r.error ? "error" : "fail"},
          {"expected", o.expect_fail ? "fail" : "pass"},
          {"as_expected", o.as_expected()},
          {"cases_passed", r.cases_passed},
          {"shrink_steps", r.shrink_steps},
          {"seconds", r.seconds},
          {"failure", r.failure},
          {"counterexample", r.counterexample},
          {"reproduce", r.reproduce},
          {"replay", r.replay},
          {"corpus_file", o.corpus_file}};
}

// ---------------------------------------------------------------------------------------
// Replay of .subst files.
// ---------------------------------------------------------------------------------------
int run_replay(const SubstitutionCliOptions& o, std::ostream& out) {
  int malformed = 0, mismatched = 0, matched = 0;
  nlohmann::json entries = nlohmann::json::array();
  std::vector<std::string> files;
  for (const std::string& p : o.replay) {
    try {
      const auto found = harness::list_subst_paths(p, o.allow_empty);
      files.insert(files.end(), found.begin(), found.end());
    } catch (const CorpusError& e) {
      ++malformed;
      out << "ERROR " << e.what() << "\n";
      entries.push_back({{"path", p}, {"outcome", "error"}, {"ok", false}, {"detail", e.what()}});
    }
  }
  for (const std::string& f : files) {
    harness::SubstRecord rec;
    try {
      rec = harness::read_subst_file(f);
    } catch (const CorpusError& e) {
      ++malformed;
      out << "ERROR " << e.what() << "\n";
      entries.push_back({{"path", f}, {"outcome", "error"}, {"ok", false}, {"detail", e.what()}});
      continue;
    }
    const std::string what = rec.variant + "/" + rec.property + "/" + rec.mode;
    const harness::SubstReplay r = harness::replay_subst_record(rec, f);
    if (r.malformed) {
      ++malformed;
      out << "ERROR " << r.detail << "\n";
      entries.push_back({{"path", f}, {"outcome", "error"}, {"ok", false}, {"detail", r.detail}});
      continue;
    }
    (r.ok ? matched : mismatched) += 1;
    out << (r.ok ? "ok   " : "FAIL ") << f << " [" << what << ": " << r.outcome << ", expected "
        << (rec.expect_fail ? "fail" : "pass") << ", " << fixed2(r.seconds) << " s]\n";
    if (!r.note.empty()) out << "     " << r.note << "\n";
    if (!r.detail.empty()) out << indent(r.detail, "     ");
    entries.push_back({{"path", f}, {"outcome", r.outcome}, {"expected", rec.expect_fail ? "fail" : "pass"},
                       {"ok", r.ok}, {"detail", r.detail}, {"note", r.note}});
  }
  out << files.size() << " substitution corpus files: " << matched
      << " matched, " << mismatched << " did not match, " << malformed << " malformed or unreadable\n";
  if (!o.json.empty()) {
    write_text_file(o.json, nlohmann::json{{"schema", "moecheck-substitution-replay/1"}, {"results", entries}}.dump(1));
  }
  if (malformed > 0) return 2;
  return mismatched > 0 ? 1 : 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// `moecheck substitution`.
// ---------------------------------------------------------------------------------------
void add_substitution_options(CLI::App* app, SubstitutionCliOptions& o) {
  app->add_option("--device", o.device, "cpu, cuda or auto (cuda when LibTorch can use one)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  app->add_option("--variant", o.variant, "Module variant: " + variant_list())
      ->check(validator([](const std::string& s) { parse_variants(s); }, "VARIANT"))
      ->capture_default_str();
  app->add_option("--mode", o.mode, "Substitution modes: rebind, in_place, copy_into, both, all, or a comma list")
      ->check(validator([](const std::string& s) { parse_modes(s); }, "MODES"))
      ->capture_default_str();
  app->add_option("--property", o.property, "Properties: " + property_list() + ", or a comma list")
      ->check(validator([](const std::string& s) { parse_properties(s); }, "PROPERTIES"))
      ->capture_default_str();
  app->add_option("--backend", o.backend, "Routing backend: composite, reference, fused")
      ->check(validator([](const std::string& s) { parse_backend(s); }, "BACKEND"))
      ->capture_default_str();
  app->add_option("--dtype", o.dtype, "Module dtype: f32, f16, bf16")
      ->check(validator([](const std::string& s) { parse_dtype_or_throw(s); }, "DTYPE"))
      ->capture_default_str();
  app->add_option("--cases", o.cases, "Passing cases required per (variant, property, mode)")
      ->transform(integer_in(1, 100000000))
      ->capture_default_str();
  app->add_option("--seed", o.seed, "RapidCheck seed")->transform(seed_value())->capture_default_str();
  app->add_option("--corpus", o.corpus_dir, "Folder where shrunk counterexamples are saved as *.subst (\"\" = none)")
      ->capture_default_str();
  app->add_option("--json", o.json, "Write the results as JSON here");
  app->add_option("--reproduce", o.reproduce,
                  "Re-run one recorded shrunk case (the string a failure report prints; one variant)");
  app->add_option("--replay", o.replay, "Replay *.subst files or folders instead of searching")->expected(1, -1);
  app->add_flag("--allow-empty", o.allow_empty, "With --replay: accept a folder holding no *.subst file")
      ->needs("--replay");
}

int run_substitution(const SubstitutionCliOptions& o, std::ostream& out) {
  if (!o.replay.empty()) return run_replay(o, out);

  const std::vector<ModuleVariant> variants = parse_variants(o.variant);
  const bool all_variants = o.variant == "all";
  const std::vector<SubstitutionMode> modes = parse_modes(o.mode);
  const std::vector<SubstitutionProperty> properties = parse_properties(o.property);
  if (o.cases < 1) throw std::invalid_argument("--cases must be >= 1");
  if (!o.reproduce.empty() && variants.size() != 1) {
    throw std::invalid_argument("--reproduce re-runs one recorded case: name a single --variant");
  }
  SubstitutionOptions base;
  base.spec.backend = parse_backend(o.backend);
  base.spec.dtype = parse_dtype_or_throw(o.dtype);
  base.spec.device = resolve_device(o.device);
  base.cases = o.cases;
  base.seed = o.seed;
  base.reproduce = o.reproduce;
  if (base.spec.backend == RoutingBackend::fused && !harness::fused_backend_available()) {
    throw std::invalid_argument("--backend fused: this build does not link the fused kernels' LibTorch glue");
  }

  out << "moecheck substitution: device " << base.spec.device << ", backend " << routing_backend_name(base.spec.backend)
      << ", dtype " << dtype_name(base.spec.dtype) << ", seed " << o.seed << ", " << o.cases
      << " cases per (variant, property, mode)" << (o.reproduce.empty() ? "" : ", reproducing one recorded case")
      << "\n";
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Outcome> outcomes;
  bool any_error = false;
  for (ModuleVariant v : variants) {
    for (SubstitutionProperty p : properties) {
      for (SubstitutionMode m : modes) {
        SubstitutionOptions so = base;
        so.spec.variant = v;
        so.properties = {p};
        so.modes = {m};
        const SubstitutionReport rep = harness::run_substitution_suite(so);
        for (const PropertyResult& r : rep.results) {
          Outcome oc;
          oc.variant = v;
          oc.result = r;
          oc.expect_fail = harness::property_expected_to_fail(p, v, m);
          if (harness::property_failed(r) && !o.corpus_dir.empty()) {
            oc.corpus_file = harness::save_subst(harness::subst_record_of(so, r), o.corpus_dir, &oc.corpus_status);
          }
          any_error = any_error || r.error;
          print_progress_line(out, oc, all_variants);
          outcomes.push_back(std::move(oc));
        }
      }
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (outcomes.empty()) {
    throw std::invalid_argument("--reproduce: the reproduce string names none of the selected (property, mode) pairs");
  }

  int failures = 0;
  for (const Outcome& oc : outcomes) {
    if (!oc.result.passed) {
      ++failures;
      print_failure(out, oc);
    }
  }

  // variant x mode: caught when any property failed in that mode.
  out << "\n" << std::left << std::setw(16) << "variant";
  for (SubstitutionMode m : modes) out << std::setw(22) << substitution_mode_name(m);
  out << "\n";
  bool all_as_expected = true;
  for (const Outcome& oc : outcomes) all_as_expected = all_as_expected && oc.as_expected();
  for (ModuleVariant v : variants) {
    out << std::setw(16) << module_variant_name(v);
    for (SubstitutionMode m : modes) {
      bool caught = false, error = false, any = false;
      for (const Outcome& oc : outcomes) {
        if (oc.variant != v || oc.result.mode != m) continue;
        any = true;
        caught = caught || harness::property_failed(oc.result);
        error = error || oc.result.error;
      }
      bool expected = false;  // documented: caught by at least one selected property
      for (SubstitutionProperty p : properties) expected = expected || harness::property_expected_to_fail(p, v, m);
      std::string cell = !any ? "-" : error ? "ERROR" : caught ? "caught" : "passed";
      if (any && !error) cell += caught == expected ? " (expected)" : " (UNEXPECTED)";
      out << std::setw(22) << cell;
    }
    out << "\n";
  }
  out << std::right;

  int rc = 0;
  if (all_variants) {
    out << "\n" << outcomes.size() << " (variant, property, mode) runs in " << fixed2(seconds) << " s: "
        << (all_as_expected ? "every variant behaved as documented (correct passes, each bug caught exactly "
                              "in the modes that catch it)"
                            : "SOME VARIANTS DID NOT BEHAVE AS DOCUMENTED")
        << "\n";
    for (const Outcome& oc : outcomes) {
      if (oc.as_expected()) continue;
      out << "  unexpected: " << module_variant_name(oc.variant) << " / " << substitution_property_name(oc.result.property)
          << " / " << substitution_mode_name(oc.result.mode) << ": " << verdict_word(oc.result) << ", expected "
          << (oc.expect_fail ? "fail" : "pass") << "\n";
    }
    rc = all_as_expected ? 0 : 1;
  } else {
    out << "\n" << outcomes.size() << " (property, mode) runs in " << fixed2(seconds) << " s: " << failures
        << (failures == 1 ? " failure" : " failures") << " found\n";
    rc = failures > 0 ? 1 : 0;
  }
  if (any_error) rc = 3;

  if (!o.json.empty()) {
    nlohmann::json results = nlohmann::json::array();
    for (const Outcome& oc : outcomes) results.push_back(outcome_json(oc));
    write_text_file(o.json, nlohmann::json{{"schema", "moecheck-substitution/1"},
                                           {"device", base.spec.device},
                                           {"backend", routing_backend_name(base.spec.backend)},
                                           {"dtype", dtype_name(base.spec.dtype)},
                                           {"seed", o.seed},
                                           {"cases", o.cases},
                                           {"toolkit", toolkit_string()},
                                           {"seconds", seconds},
                                           {"all_as_expected", all_as_expected},
                                           {"exit_code", rc},
                                           {"results", results}}
                                .dump(1));
  }
  return rc;
}

}  // namespace moecheck::cli
