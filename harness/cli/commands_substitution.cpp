// moecheck substitution: the functional-substitution property suite on the command line,
// its counterexample corpus (*.subst, corpora/FORMAT.md) and the module rows of the
// `moecheck mutants` kill matrix.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/cli/commands.hpp"
#include "harness/core/campaign.hpp"
#include "harness/core/corpus.hpp"
#include "harness/torch/substitution_suite.hpp"
#include "harness/torch/torch_targets.hpp"

namespace fs = std::filesystem;

namespace moecheck::cli {

using harness::ModuleSpec;
using harness::ModuleVariant;
using harness::PropertyResult;
using harness::RoutingBackend;
using harness::SubstitutionMode;
using harness::SubstitutionOptions;
using harness::SubstitutionProperty;
using harness::SubstitutionReport;

namespace {

constexpr const char* kSubstHeader = "moecheck-substitution";
constexpr int kSubstVersion = 1;
constexpr std::int64_t kMaxSubstBytes = std::int64_t{1} << 20;  // 1 MiB

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

/// Whether (property, variant, mode) is documented to fail (substitution_types.hpp and
/// substitution_suite.hpp): restoration checks functional_call, not the module, so it never
/// fails; scale_by_slot is linear in the scale, so scale_linearity does not see it.
bool expected_to_fail(SubstitutionProperty p, ModuleVariant v, SubstitutionMode m) {
  if (p == SubstitutionProperty::restoration) return false;
  if (p == SubstitutionProperty::scale_linearity && v == ModuleVariant::scale_by_slot) return false;
  return harness::variant_caught_by(v, m);
}

bool failed(const PropertyResult& r) { return !r.passed && !r.error; }

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

std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (std::size_t i = 0; i < lines.size(); ++i) s += (i ? "\n" : "") + lines[i];
  return s;
}

std::string indent(const std::string& text, const std::string& pad) {
  std::string s;
  for (const std::string& l : split_lines(text)) s += pad + l + "\n";
  return s;
}

// ---------------------------------------------------------------------------------------
// The .subst counterexample format (corpora/FORMAT.md).
// ---------------------------------------------------------------------------------------
struct SubstRecord {
  std::string variant = "correct", backend = "composite", dtype = "f32", device = "cpu";
  std::string property, mode;
  std::uint64_t seed = 1;
  int cases = 100;
  std::string reproduce;
  bool expect_fail = false;
  std::string toolkit;
  std::vector<std::string> case_lines;         ///< describe_case text
  std::vector<std::string> explanation_lines;  ///< why the case fails
  std::map<std::string, int> lines;            ///< field -> line number (parsed files)
};

std::string format_subst(const SubstRecord& r) {
  std::ostringstream os;
  os << kSubstHeader << ' ' << kSubstVersion << '\n'
     << "# replay: moecheck substitution --replay <this file>\n"
     << "variant " << r.variant << '\n'
     << "backend " << r.backend << '\n'
     << "dtype " << r.dtype << '\n'
     << "device " << r.device << '\n'
     << "property " << r.property << '\n'
     << "mode " << r.mode << '\n'
     << "seed " << r.seed << '\n'
     << "cases " << r.cases << '\n'
     << "reproduce " << r.reproduce << '\n'
     << "expect " << (r.expect_fail ? "fail" : "pass") << '\n';
  if (!r.toolkit.empty()) os << "toolkit " << r.toolkit << '\n';
  for (const std::string& l : r.case_lines) os << "case " << l << '\n';
  for (const std::string& l : r.explanation_lines) os << (l.empty() ? "explanation" : "explanation " + l) << '\n';
  os << "end\n";
  return os.str();
}

/// Parses one .subst text; throws CorpusError naming origin, line and field.
SubstRecord parse_subst(const std::string& text, const std::string& origin) {
  reject_utf8_bom(text, origin);
  SubstRecord r;
  auto fail = [&](int line, const std::string& field, const std::string& why) -> void {
    throw CorpusError(origin, line, field, why);
  };
  std::map<std::string, int> seen;
  bool header = false, ended = false, have_property = false, have_mode = false, have_reproduce = false,
       have_expect = false, have_variant = false;
  int line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    for (char ch : line) {
      const unsigned char u = static_cast<unsigned char>(ch);
      if ((u < 0x20 && ch != '\t') || u == 0x7f) fail(line_no, "text", "control byte in line");
    }
    if (line.empty() || line[0] == '#') continue;
    const std::size_t sp = line.find(' ');
    const std::string field = line.substr(0, sp);
    const std::string value = sp == std::string::npos ? std::string() : line.substr(sp + 1);
    if (ended) fail(line_no, field, "nothing may follow 'end'");
    if (!header) {
      if (field != kSubstHeader) {
        fail(line_no, "header", std::string("expected '") + kSubstHeader + " " + std::to_string(kSubstVersion) +
                                    "' as the first line, got " + quote_value(line));
      }
      if (value != std::to_string(kSubstVersion)) {
        fail(line_no, "header", "unsupported format version " + quote_value(value) + " (this build reads version " +
                                    std::to_string(kSubstVersion) + ")");
      }
      header = true;
      continue;
    }
    if (field == "end") {
      if (!value.empty()) fail(line_no, field, "'end' takes no value");
      ended = true;
      continue;
    }
    if (field == "case") {
      r.case_lines.push_back(value);
      continue;
    }
    if (field == "explanation") {
      r.explanation_lines.push_back(value);
      continue;
    }
    if (seen[field]++) fail(line_no, field, "field appears more than once");
    r.lines[field] = line_no;
    if (value.empty()) fail(line_no, field, "missing value");
    if (field == "variant") {
      ModuleVariant v;
      if (!harness::parse_module_variant(value, &v)) fail(line_no, field, "unknown module variant " + quote_value(value));
      r.variant = module_variant_name(v);
      have_variant = true;
    } else if (field == "backend") {
      RoutingBackend b;
      if (!harness::parse_routing_backend(value, &b)) fail(line_no, field, "unknown routing backend " + quote_value(value));
      r.backend = routing_backend_name(b);
    } else if (field == "dtype") {
      DType d;
      if (!parse_dtype(value, &d)) fail(line_no, field, "unknown dtype " + quote_value(value));
      r.dtype = dtype_name(d);
    } else if (field == "device") {
      if (value != "cpu" && value != "cuda" && value.rfind("cuda:", 0) != 0) {
        fail(line_no, field, "unknown device " + quote_value(value) + " (cpu, cuda, cuda:N)");
      }
      r.device = value;
    } else if (field == "property") {
      SubstitutionProperty p;
      if (!harness::parse_substitution_property(value, &p)) fail(line_no, field, "unknown property " + quote_value(value));
      r.property = substitution_property_name(p);
      have_property = true;
    } else if (field == "mode") {
      SubstitutionMode m;
      if (!harness::parse_substitution_mode(value, &m)) fail(line_no, field, "unknown substitution mode " + quote_value(value));
      r.mode = substitution_mode_name(m);
      have_mode = true;
    } else if (field == "seed" || field == "cases") {
      std::uint64_t v = 0;
      std::size_t used = 0;
      try {
        if (value[0] == '-' || value[0] == '+') throw std::invalid_argument("sign");
        v = std::stoull(value, &used, 10);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != value.size() || used == 0) fail(line_no, field, "expected a non-negative decimal integer, got " + quote_value(value));
      if (field == "seed") {
        r.seed = v;
      } else {
        if (v < 1 || v > 100000000) fail(line_no, field, "cases must be in [1, 1e8]");
        r.cases = static_cast<int>(v);
      }
    } else if (field == "reproduce") {
      r.reproduce = value;
      have_reproduce = true;
    } else if (field == "expect") {
      if (value != "fail" && value != "pass") fail(line_no, field, "expected 'fail' or 'pass', got " + quote_value(value));
      r.expect_fail = value == "fail";
      have_expect = true;
    } else if (field == "toolkit") {
      r.toolkit = value;
    } else {
      fail(line_no, field, "unknown field");
    }
  }
  if (!header) fail(line_no, "header", std::string("empty file: expected '") + kSubstHeader + " 1'");
  if (!ended) fail(line_no, "end", "missing 'end' line (truncated file?)");
  if (!have_variant) fail(line_no, "variant", "required field missing");
  if (!have_property) fail(line_no, "property", "required field missing");
  if (!have_mode) fail(line_no, "mode", "required field missing");
  if (!have_reproduce) fail(line_no, "reproduce", "required field missing");
  if (!have_expect) fail(line_no, "expect", "required field missing");
  return r;
}

SubstRecord read_subst_file(const std::string& path) {
  return parse_subst(read_bounded_file(path, kMaxSubstBytes), path);
}

/// Files and folders (recursively, "*.subst", sorted) to a list of paths.
std::vector<std::string> list_subst_paths(const std::string& p) {
  std::vector<std::string> found = list_paths_with_extension({p}, ".subst");
  if (found.empty()) throw CorpusError(p, 0, "path", "folder holds no *.subst files");
  return found;
}

std::string subst_file_name(const SubstRecord& r) {
  std::string name = r.variant + "-" + r.property + "-" + r.mode;
  if (r.backend != "composite" || r.dtype != "f32" || r.device != "cpu") {
    name += "-" + r.backend + "-" + r.dtype + "-" + r.device;
  }
  for (char& ch : name) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_')) ch = '_';
  }
  return name + ".subst";
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

/// Saves `r` into `dir` (created) as one file per (variant, property, mode[, spec]); never
/// replaces an existing file: its content is kept when it differs. Returns the path;
/// `status` receives "saved", "unchanged" or "kept existing (differs from this run)".
std::string save_subst(const SubstRecord& r, const std::string& dir, std::string* status) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create corpus folder '" + dir + "': " + ec.message());
  const std::string name = subst_file_name(r);
  const fs::path target = fs::path(dir) / name;
  const std::string text = format_subst(r);
  if (fs::exists(target, ec)) {
    *status = read_all(target) == text ? "unchanged" : "kept existing (differs from this run)";
    return target.string();
  }
  const fs::path tmp = fs::path(dir) / ("." + name + ".tmp" + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write '" + tmp.string() + "'");
    out << text;
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp, ec);
      throw std::runtime_error("write failed for '" + tmp.string() + "'");
    }
  }
  // link() publishes the complete file and fails if another run got there first, so an
  // existing file is never replaced; rename() is the fallback where hard links are refused.
  if (::link(tmp.c_str(), target.c_str()) == 0) {
    fs::remove(tmp, ec);
    *status = "saved";
  } else if (errno == EEXIST) {
    fs::remove(tmp, ec);
    *status = read_all(target) == text ? "unchanged" : "kept existing (differs from this run)";
  } else {
    fs::rename(tmp, target, ec);
    if (ec) {
      fs::remove(tmp, ec);
      throw std::runtime_error("cannot move corpus file into place: '" + target.string() + "'");
    }
    *status = "saved";
  }
  return target.string();
}

SubstRecord record_of(const SubstitutionOptions& so, const PropertyResult& r) {
  SubstRecord rec;
  rec.variant = module_variant_name(so.spec.variant);
  rec.backend = routing_backend_name(so.spec.backend);
  rec.dtype = dtype_name(so.spec.dtype);
  rec.device = so.spec.device;
  rec.property = substitution_property_name(r.property);
  rec.mode = substitution_mode_name(r.mode);
  rec.seed = so.seed;
  rec.cases = so.cases;
  rec.reproduce = r.reproduce;
  rec.expect_fail = so.spec.variant != ModuleVariant::correct;
  rec.toolkit = toolkit_string();
  rec.case_lines = split_lines(r.counterexample);
  rec.explanation_lines = split_lines(r.failure);
  return rec;
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
  bool as_expected() const { return !result.error && failed(result) == expect_fail; }
};

std::string verdict_word(const PropertyResult& r) { return r.passed ? "pass" : r.error ? "ERROR" : "FAIL"; }

void print_progress_line(std::ostream& out, const Outcome& o, bool show_expectation) {
  const PropertyResult& r = o.result;
  char line[256];
  std::snprintf(line, sizeof line, "  %-15s %-19s %-10s %-5s %5d cases", module_variant_name(o.variant),
                substitution_property_name(r.property), substitution_mode_name(r.mode), verdict_word(r).c_str(),
                r.cases_passed);
  out << line;
  if (failed(r)) out << " + 1 failing, shrunk in " << r.shrink_steps << " steps";
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
      const auto found = list_subst_paths(p);
      files.insert(files.end(), found.begin(), found.end());
    } catch (const CorpusError& e) {
      ++malformed;
      out << "ERROR " << e.what() << "\n";
      entries.push_back({{"path", p}, {"outcome", "error"}, {"ok", false}, {"detail", e.what()}});
    }
  }
  for (const std::string& f : files) {
    SubstRecord rec;
    try {
      rec = read_subst_file(f);
    } catch (const CorpusError& e) {
      ++malformed;
      out << "ERROR " << e.what() << "\n";
      entries.push_back({{"path", f}, {"outcome", "error"}, {"ok", false}, {"detail", e.what()}});
      continue;
    }
    SubstitutionOptions so;
    harness::parse_module_variant(rec.variant, &so.spec.variant);
    harness::parse_routing_backend(rec.backend, &so.spec.backend);
    parse_dtype(rec.dtype, &so.spec.dtype);
    SubstitutionProperty prop;
    SubstitutionMode mode;
    harness::parse_substitution_property(rec.property, &prop);
    harness::parse_substitution_mode(rec.mode, &mode);
    so.properties = {prop};
    so.modes = {mode};
    so.seed = rec.seed;
    so.cases = rec.cases;
    so.reproduce = rec.reproduce;
    std::string note;
    so.spec.device = rec.device;
    if (rec.device != "cpu" && !torch_cuda_available()) {
      so.spec.device = "cpu";
      note = "recorded on " + rec.device + "; no CUDA device here, replayed on cpu";
    }
    const std::string what = rec.variant + "/" + rec.property + "/" + rec.mode;
    SubstitutionReport report;
    try {
      report = harness::run_substitution_suite(so);
    } catch (const std::invalid_argument& e) {
      // Spec and records were validated while parsing; what is left is the reproduce string.
      ++malformed;
      const std::string msg = CorpusError(f, rec.lines["reproduce"], "reproduce", e.what()).what();
      out << "ERROR " << msg << "\n";
      entries.push_back({{"path", f}, {"outcome", "error"}, {"ok", false}, {"detail", msg}});
      continue;
    }
    if (report.results.size() != 1) {
      ++malformed;
      const std::string msg = CorpusError(f, rec.lines["reproduce"], "reproduce",
                                          "the reproduce string does not name substitution/" + rec.property +
                                              "/" + rec.mode)
                                  .what();
      out << "ERROR " << msg << "\n";
      entries.push_back({{"path", f}, {"outcome", "error"}, {"ok", false}, {"detail", msg}});
      continue;
    }
    const PropertyResult& r = report.results.front();
    std::string detail;
    bool ok = !r.error && failed(r) == rec.expect_fail;
    if (r.error) detail = r.failure;
    else if (!ok) detail = rec.expect_fail ? "the recorded case no longer fails" : "the recorded case fails:\n" + r.failure;
    if (ok && failed(r) && !rec.case_lines.empty() && r.counterexample != join_lines(rec.case_lines)) {
      ok = false;
      detail = "the reproduce string now yields another case than the recorded one (generator changed?):\n" +
               r.counterexample;
    }
    const std::string outcome = r.error ? "error" : failed(r) ? "fail" : "pass";
    (ok ? matched : mismatched) += 1;
    out << (ok ? "ok   " : "FAIL ") << f << " [" << what << ": " << outcome << ", expected "
        << (rec.expect_fail ? "fail" : "pass") << ", " << fixed2(r.seconds) << " s]\n";
    if (!note.empty()) out << "     " << note << "\n";
    if (!detail.empty()) out << indent(detail, "     ");
    entries.push_back({{"path", f}, {"outcome", outcome}, {"expected", rec.expect_fail ? "fail" : "pass"},
                       {"ok", ok}, {"detail", detail}, {"note", note}});
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
          oc.expect_fail = expected_to_fail(p, v, m);
          if (failed(r) && !o.corpus_dir.empty()) {
            oc.corpus_file = save_subst(record_of(so, r), o.corpus_dir, &oc.corpus_status);
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
        caught = caught || failed(oc.result);
        error = error || oc.result.error;
      }
      bool expected = false;  // documented: caught by at least one selected property
      for (SubstitutionProperty p : properties) expected = expected || expected_to_fail(p, v, m);
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

// ---------------------------------------------------------------------------------------
// Kill-matrix rows for the module variants (`moecheck mutants`).
// ---------------------------------------------------------------------------------------
std::vector<std::string> module_mutant_names() {
  std::vector<std::string> names;
  for (ModuleVariant v : harness::all_module_variants()) {
    if (v != ModuleVariant::correct) names.push_back(std::string("module:") + module_variant_name(v));
  }
  return names;
}

std::vector<ModuleKill> run_module_mutants(const MutantsCliOptions& o, bool cuda) {
  // restoration checks functional_call itself, so it cannot kill a module variant.
  const std::vector<SubstitutionProperty> properties = {
      SubstitutionProperty::scale_substitution, SubstitutionProperty::scale_linearity,
      SubstitutionProperty::zero_scale, SubstitutionProperty::every_parameter};
  const std::vector<SubstitutionMode> modes = harness::all_substitution_modes();
  const std::int64_t runs = static_cast<std::int64_t>(properties.size() * modes.size());
  const int per_run = static_cast<int>(std::clamp<std::int64_t>(o.cases / runs, 1, 1000000));
  const std::string device = cuda ? "cuda" : "cpu";
  std::vector<ModuleKill> rows;
  for (ModuleVariant v : harness::all_module_variants()) {
    if (v == ModuleVariant::correct) continue;
    ModuleKill row;
    row.mutant = std::string("module:") + module_variant_name(v);
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
        const SubstitutionReport rep = harness::run_substitution_suite(so);
        if (rep.results.empty()) continue;
        const PropertyResult& r = rep.results.front();
        cases += r.cases_passed + (failed(r) ? 1 : 0);
        if (!failed(r)) continue;
        row.caught[std::string(substitution_property_name(p)) + "/" + substitution_mode_name(m)] =
            r.cases_passed + 1;
        if (!row.status.empty()) continue;  // already killed: only record which checks catch it
        row.status = "killed";
        row.check = std::string(substitution_property_name(p)) + "/" + substitution_mode_name(m);
        row.cases_to_first = cases;
        const std::vector<std::string> lines = split_lines(r.counterexample);
        row.shrunk = lines.empty() ? std::string() : lines.front();
        const std::size_t cut = row.shrunk.find(" tie_gate_up");
        if (cut != std::string::npos) row.shrunk.resize(cut);
        if (!o.corpus_dir.empty()) {
          std::string status;
          row.note = save_subst(record_of(so, r), o.corpus_dir, &status);
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

}  // namespace moecheck::cli
