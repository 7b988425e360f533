#include "harness/torch/substitution_corpus.hpp"

#include <cctype>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness/core/campaign.hpp"
#include "harness/core/corpus.hpp"
#include "harness/core/write_once.hpp"
#include "harness/torch/torch_targets.hpp"

namespace moecheck::harness {
namespace {

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

}  // namespace

std::string format_subst(const SubstRecord& r) {
  std::ostringstream os;
  os << kSubstHeader << ' ' << kSubstFormatVersion << '\n'
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
        fail(line_no, "header", std::string("expected '") + kSubstHeader + " " + std::to_string(kSubstFormatVersion) +
                                    "' as the first line, got " + quote_value(line));
      }
      if (value != std::to_string(kSubstFormatVersion)) {
        fail(line_no, "header", "unsupported format version " + quote_value(value) + " (this build reads version " +
                                    std::to_string(kSubstFormatVersion) + ")");
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
      if (!parse_module_variant(value, &v)) fail(line_no, field, "unknown module variant " + quote_value(value));
      r.variant = module_variant_name(v);
      have_variant = true;
    } else if (field == "backend") {
      RoutingBackend b;
      if (!parse_routing_backend(value, &b)) fail(line_no, field, "unknown routing backend " + quote_value(value));
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
      if (!parse_substitution_property(value, &p)) fail(line_no, field, "unknown property " + quote_value(value));
      r.property = substitution_property_name(p);
      have_property = true;
    } else if (field == "mode") {
      SubstitutionMode m;
      if (!parse_substitution_mode(value, &m)) fail(line_no, field, "unknown substitution mode " + quote_value(value));
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
  return parse_subst(read_bounded_file(path, kSubstMaxFileBytes), path);
}

std::vector<std::string> list_subst_paths(const std::string& path, bool allow_empty) {
  return list_paths_with_extension({path}, ".subst", allow_empty);
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

std::string save_subst(const SubstRecord& r, const std::string& dir, std::string* status) {
  const std::string text = format_subst(r);
  const WriteOnceResult w = write_file_once(dir, subst_file_name(r), text);
  if (w.created) {
    *status = "saved";
  } else {
    *status = read_whole_file(w.path) == text ? "unchanged" : "kept existing (differs from this run)";
  }
  return w.path;
}

SubstRecord subst_record_of(const SubstitutionOptions& so, const PropertyResult& r) {
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

bool property_failed(const PropertyResult& r) { return !r.passed && !r.error; }

SubstReplay replay_subst_record(const SubstRecord& rec, const std::string& path) {
  SubstReplay out;
  // parse_subst validated every name; what is left to go wrong is the reproduce string.
  SubstitutionOptions so;
  parse_module_variant(rec.variant, &so.spec.variant);
  parse_routing_backend(rec.backend, &so.spec.backend);
  parse_dtype(rec.dtype, &so.spec.dtype);
  SubstitutionProperty prop = SubstitutionProperty::scale_substitution;
  SubstitutionMode mode = SubstitutionMode::rebind;
  parse_substitution_property(rec.property, &prop);
  parse_substitution_mode(rec.mode, &mode);
  so.properties = {prop};
  so.modes = {mode};
  so.seed = rec.seed;
  so.cases = rec.cases;
  so.reproduce = rec.reproduce;
  so.spec.device = rec.device;
  if (rec.device != "cpu" && !torch_cuda_available()) {
    so.spec.device = "cpu";
    out.note = "recorded on " + rec.device + "; no CUDA device here, replayed on cpu";
  }
  const auto line = rec.lines.find("reproduce");
  const int reproduce_line = line == rec.lines.end() ? 0 : line->second;
  SubstitutionReport report;
  try {
    report = run_substitution_suite(so);
  } catch (const std::invalid_argument& e) {
    out.malformed = true;
    out.outcome = "error";
    out.detail = CorpusError(path, reproduce_line, "reproduce", e.what()).what();
    return out;
  }
  if (report.results.size() != 1) {
    out.malformed = true;
    out.outcome = "error";
    out.detail = CorpusError(path, reproduce_line, "reproduce",
                             "the reproduce string does not name substitution/" + rec.property + "/" + rec.mode)
                     .what();
    return out;
  }
  const PropertyResult& r = report.results.front();
  out.seconds = r.seconds;
  out.ok = !r.error && property_failed(r) == rec.expect_fail;
  if (r.error) out.detail = r.failure;
  else if (!out.ok) out.detail = rec.expect_fail ? "the recorded case no longer fails" : "the recorded case fails:\n" + r.failure;
  if (out.ok && property_failed(r) && !rec.case_lines.empty() && r.counterexample != join_lines(rec.case_lines)) {
    out.ok = false;
    out.detail = "the reproduce string now yields another case than the recorded one (generator changed?):\n" +
                 r.counterexample;
  }
  out.outcome = r.error ? "error" : property_failed(r) ? "fail" : "pass";
  return out;
}

}  // namespace moecheck::harness
