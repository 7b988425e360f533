#include "harness/core/campaign.hpp"

#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "harness/core/shrink.hpp"

#ifndef MOECHECK_VERSION
#define MOECHECK_VERSION "0.0.0"
#endif
#ifndef MOECHECK_GIT_COMMIT
#define MOECHECK_GIT_COMMIT "unknown"
#endif
#ifndef MOECHECK_TORCH_VERSION
#define MOECHECK_TORCH_VERSION "unknown"
#endif
#ifndef MOECHECK_CUDA_VERSION
#define MOECHECK_CUDA_VERSION "none"
#endif

namespace moecheck {
namespace {

volatile std::sig_atomic_t g_stop = 0;

extern "C" void moecheck_on_signal(int) { g_stop = 1; }

using Clock = std::chrono::steady_clock;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

nlohmann::json shape_json(const RoutingCase& c) {
  return {{"T", c.T}, {"E", c.E}, {"k", c.k}, {"dtype", dtype_name(c.dtype)},
          {"layout", layout_name(c.layout)}, {"family", family_name(c.family)}};
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\n' && ch != '\t') o += ' ';
        else o += ch;
    }
  }
  return o;
}

/// Writes `text` to `path` atomically; never leaves a half-written file behind.
void write_atomically(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  fs::path tmp = p;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write '" + tmp.string() + "'");
    out << text;
    if (!out.flush()) throw std::runtime_error("write failed: '" + tmp.string() + "'");
  }
  fs::rename(tmp, p);
}

/// The generator configuration: with seed, target and mutant it determines every case.
nlohmann::json generator_json(const GenConfig& g) {
  auto names = [](const auto& values, auto name_of) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& v : values) a.push_back(name_of(v));
    return a;
  };
  return {{"max_T", g.max_T}, {"max_E", g.max_E}, {"max_k", g.max_k}, {"max_elems", g.max_elems},
          {"large_T_probability", g.large_T_probability},
          {"dtypes", names(g.dtypes, [](DType d) { return dtype_name(d); })},
          {"families", names(g.families, [](Family f) { return family_name(f); })},
          {"layouts", names(g.layouts, [](Layout l) { return layout_name(l); })},
          {"value_families", g.value_families}, {"scale_families", g.scale_families}};
}

nlohmann::json failure_json(const FailureRecord& f, const CampaignResult& r) {
  return {{"signature", f.signature}, {"target", r.target}, {"check", f.check},
          {"message", f.message}, {"seed", f.seed}, {"case_index", f.case_index},
          {"shrunk", shape_json(f.shrunk)}, {"original", shape_json(f.original)},
          {"shrink_steps", f.shrink_steps}, {"corpus_file", f.corpus_file}, {"replay", f.replay}};
}

/// Resume state: everything needed to continue a campaign where it stopped.
nlohmann::json state_json(const CampaignResult& r) {
  nlohmann::json j = nlohmann::json::parse(campaign_json(r));
  j["schema"] = "moecheck-campaign-state/1";
  j["next_index"] = r.next_index;
  j["skipped"] = r.skipped;
  j["duplicate_failures"] = r.duplicate_failures;
  j["mutant"] = r.mutant;
  return j;
}

void restore_state(const std::string& path, CampaignResult& r) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("--resume: cannot read state file '" + path + "'");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw std::invalid_argument("--resume: state file '" + path + "' is not valid JSON: " + e.what());
  }
  auto need = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) throw std::invalid_argument("--resume: state file '" + path + "' lacks '" + key + "'");
    return j.at(key);
  };
  if (need("schema") != "moecheck-campaign-state/1") {
    throw std::invalid_argument("--resume: '" + path + "' is not a moecheck campaign state file");
  }
  if (need("target").get<std::string>() != r.target || need("seed").get<std::uint64_t>() != r.seed ||
      need("shard").at("index").get<int>() != r.shard_index ||
      need("shard").at("count").get<int>() != r.shard_count ||
      j.value("mutant", std::string("none")) != r.mutant) {
    throw std::invalid_argument("--resume: state file '" + path +
                                "' belongs to another campaign (target/seed/shard/mutant differ)");
  }
  r.next_index = need("next_index").get<std::int64_t>();
  r.cases = need("cases").get<std::int64_t>();
  r.rows = need("rows").get<std::int64_t>();
  r.skipped = j.value("skipped", std::int64_t{0});
  r.duplicate_failures = j.value("duplicate_failures", std::int64_t{0});
  r.elapsed_s = need("elapsed_s").get<double>();
  r.started = j.value("started", r.started);
  for (auto& [k, v] : need("classes").items()) r.classes[k] = v.get<std::int64_t>();
  for (const auto& f : need("failure_list")) {
    FailureRecord rec;
    rec.signature = f.at("signature");
    rec.check = f.at("check");
    rec.message = f.at("message");
    rec.seed = f.at("seed");
    rec.case_index = f.at("case_index");
    rec.shrink_steps = f.at("shrink_steps");
    rec.corpus_file = f.at("corpus_file");
    rec.replay = f.at("replay");
    auto shape = [](const nlohmann::json& s, RoutingCase& c) {
      c.T = s.at("T");
      c.E = s.at("E");
      c.k = s.at("k");
      parse_dtype(s.at("dtype").get<std::string>(), &c.dtype);
      parse_layout(s.at("layout").get<std::string>(), &c.layout);
      parse_family(s.at("family").get<std::string>(), &c.family);
    };
    shape(f.at("shrunk"), rec.shrunk);
    shape(f.at("original"), rec.original);
    r.failures.push_back(std::move(rec));
  }
}

std::string human(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e4) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

}  // namespace

std::string tool_version() { return MOECHECK_VERSION; }
std::string source_commit() { return MOECHECK_GIT_COMMIT; }
std::string toolkit_string() {
  std::string s = std::string("torch=") + MOECHECK_TORCH_VERSION + " cuda=" + MOECHECK_CUDA_VERSION;
  std::string dev = cuda_device_name();
  if (!dev.empty()) s += " device=" + dev;
  return s;
}
std::string iso_time_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::uint64_t case_seed(std::uint64_t campaign_seed, std::int64_t index) {
  return splitmix64(campaign_seed ^ splitmix64(static_cast<std::uint64_t>(index) + 0x632be59bd9b4e019ull));
}

std::string failure_signature(const Target& t, const std::string& check, const RoutingCase& s) {
  // FNV-1a over the fields that identify the failure class of a minimal case.
  std::ostringstream os;
  os << t.spec() << '|' << t.mutant() << '|' << check << '|' << family_name(s.family) << '|'
     << dtype_name(s.dtype) << '|' << layout_name(s.layout) << '|' << s.T << '|' << s.E << '|' << s.k;
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : os.str()) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  return hex64(h);
}

void request_campaign_stop() { g_stop = 1; }

void install_stop_handlers() {
  std::signal(SIGINT, moecheck_on_signal);
  std::signal(SIGTERM, moecheck_on_signal);
}

CampaignResult run_campaign(Target& target, const CampaignOptions& opt, std::ostream& log) {
  if (opt.shard_count < 1 || opt.shard_index < 0 || opt.shard_index >= opt.shard_count) {
    throw std::invalid_argument("--shard " + std::to_string(opt.shard_index) + "/" +
                                std::to_string(opt.shard_count) + ": need 0 <= i < n");
  }
  if (opt.seconds <= 0 && opt.max_cases <= 0) {
    throw std::invalid_argument("a campaign needs a budget: --seconds > 0 or --cases > 0");
  }
  if (opt.resume && opt.state_file.empty()) {
    throw std::invalid_argument("--resume needs --state FILE");
  }
  CampaignResult r;
  r.target = target.spec();
  r.mutant = target.mutant();
  r.device = target.device();
  r.seed = opt.seed;
  r.shard_index = opt.shard_index;
  r.shard_count = opt.shard_count;
  r.budget_seconds = opt.seconds;
  r.budget_cases = opt.max_cases;
  r.gen = opt.gen;
  r.max_failures = opt.max_failures;
  r.shrink_attempts = opt.shrink_attempts;
  r.started = iso_time_now();
  r.next_index = opt.shard_index;
  if (opt.first_index >= 0) r.next_index = opt.first_index;
  if (opt.resume) {
    restore_state(opt.state_file, r);
    log << "resuming at case " << r.next_index << " (" << r.cases << " cases, " << r.failures.size()
        << " failures so far)\n";
  }
  std::set<std::string> known;
  for (const auto& f : r.failures) known.insert(f.signature);

  g_stop = 0;
  const double elapsed_before = r.elapsed_s;
  const std::int64_t cases_before = r.cases;
  const auto t0 = Clock::now();
  auto last_progress = t0, last_state = t0;
  auto seconds_since = [](Clock::time_point a) {
    return std::chrono::duration<double>(Clock::now() - a).count();
  };
  auto save_state = [&] {
    if (!opt.state_file.empty()) write_atomically(opt.state_file, state_json(r).dump(1));
  };
  const bool planted = target.mutant() != "none";

  while (true) {
    const double run_s = seconds_since(t0);
    r.elapsed_s = elapsed_before + run_s;
    if (g_stop) {
      r.interrupted = true;
      break;
    }
    if (opt.seconds > 0 && r.elapsed_s >= opt.seconds) break;
    if (opt.max_cases > 0 && r.cases + r.skipped >= opt.max_cases) break;
    if (opt.max_failures > 0 && static_cast<int>(r.failures.size()) >= opt.max_failures) break;

    const std::int64_t index = r.next_index;
    const std::uint64_t seed = case_seed(opt.seed, index);
    RoutingCase c = generate_case(seed, opt.gen);
    r.next_index += opt.shard_count;

    Verdict v = evaluate(target, c, {});
    if (v.kind == Verdict::Kind::skipped) {
      ++r.skipped;
      continue;
    }
    ++r.cases;
    r.rows += c.T;
    for (const auto& cls : classify(c)) ++r.classes[cls];

    if (v.failed()) {
      const std::string check = v.check;
      std::int64_t hint = v.report.violations.empty() ? -1 : v.report.violations.front().row;
      ShrinkResult s = shrink_case(
          c, [&](const RoutingCase& cand) {
            Verdict w = evaluate(target, cand, {});
            return w.failed() && w.check == check;
          },
          hint, opt.shrink_attempts);
      Verdict sv = evaluate(target, s.minimal, {});
      FailureRecord rec;
      rec.check = check;
      rec.message = sv.failed() ? sv.message : v.message;
      rec.seed = seed;
      rec.case_index = index;
      rec.original = c;
      rec.original.logits.clear();
      rec.shrunk = s.minimal;
      rec.shrink_steps = s.steps;
      rec.signature = failure_signature(target, check, s.minimal);
      if (known.count(rec.signature)) {
        ++r.duplicate_failures;
        continue;
      }
      known.insert(rec.signature);
      if (!opt.corpus_dir.empty()) {
        CorpusEntry e;
        e.c = s.minimal;
        e.target = target.spec();
        e.mutant = target.mutant();
        e.device = target.device();
        e.expect = planted ? Expectation::fail : Expectation::pass;
        e.check = check;
        e.signature = rec.signature;
        e.message = rec.message;
        e.toolkit = toolkit_string();
        e.commit = source_commit();
        e.found = iso_time_now();
        rec.corpus_file = write_corpus_entry(e, opt.corpus_dir);
        rec.replay = "moecheck replay " + rec.corpus_file;
      } else {
        rec.replay = "moecheck fuzz --target " + target.spec() + " --mutant " + target.mutant() +
                     " --seed " + std::to_string(opt.seed) + " --first-case " + std::to_string(index) +
                     " --cases 1";
      }
      if (opt.progress) log << "\n";
      log << "FAIL [" << check << "] " << rec.message << "\n"
          << "  target " << target.spec() << " mutant " << target.mutant() << " device "
          << target.device() << " case #" << index << " seed 0x" << hex64(seed) << "\n"
          << "  original T=" << c.T << " E=" << c.E << " k=" << c.k << " " << dtype_name(c.dtype)
          << " " << layout_name(c.layout) << " values=" << c.value_family << " -> shrunk T="
          << s.minimal.T << " E=" << s.minimal.E << " k=" << s.minimal.k << " "
          << dtype_name(s.minimal.dtype) << " (" << s.steps << " steps, " << s.attempts
          << " attempts)\n"
          << "  replay: " << rec.replay << "\n";
      r.failures.push_back(std::move(rec));
    }

    if (opt.progress && seconds_since(last_progress) >= 0.5) {
      last_progress = Clock::now();
      const double rs = std::max(run_s, 1e-9);
      log << "\r[" << std::fixed << std::setprecision(1) << r.elapsed_s << "s";
      if (opt.seconds > 0) log << "/" << opt.seconds << "s";
      log << "] cases " << r.cases << " (" << human(static_cast<double>(r.cases - cases_before) / rs)
          << "/s) rows " << human(static_cast<double>(r.rows)) << " failures " << r.failures.size()
          << "   " << std::flush;
      log.unsetf(std::ios::fixed);
    }
    if (seconds_since(last_state) >= 5.0) {
      last_state = Clock::now();
      save_state();
    }
  }
  if (opt.progress) log << "\n";
  save_state();
  if (!opt.results_json.empty()) write_atomically(opt.results_json, campaign_json(r));
  if (!opt.junit_xml.empty()) write_atomically(opt.junit_xml, campaign_junit(r));
  return r;
}

std::string campaign_json(const CampaignResult& r) {
  nlohmann::json j;
  j["schema"] = "moecheck-campaign/1";
  j["tool"] = {{"version", tool_version()}, {"commit", source_commit()},
               {"torch", MOECHECK_TORCH_VERSION}, {"cuda", MOECHECK_CUDA_VERSION}};
  std::string dev_name = r.device == "cuda" ? cuda_device_name() : std::string("host");
  j["device"] = {{"kind", r.device}, {"name", dev_name}};
  j["target"] = r.target;
  j["mutant"] = r.mutant;
  j["seed"] = r.seed;
  j["shard"] = {{"index", r.shard_index}, {"count", r.shard_count}};
  j["budget"] = {{"seconds", r.budget_seconds > 0 ? nlohmann::json(r.budget_seconds) : nlohmann::json()},
                 {"cases", r.budget_cases > 0 ? nlohmann::json(r.budget_cases) : nlohmann::json()}};
  j["generator"] = generator_json(r.gen);
  j["limits"] = {{"max_failures", r.max_failures}, {"shrink_attempts", r.shrink_attempts}};
  j["started"] = r.started;
  j["elapsed_s"] = r.elapsed_s;
  j["cases"] = r.cases;
  j["rows"] = r.rows;
  j["skipped"] = r.skipped;
  j["failures"] = r.failures.size();
  j["duplicate_failures"] = r.duplicate_failures;
  j["interrupted"] = r.interrupted;
  j["next_index"] = r.next_index;
  j["classes"] = r.classes;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& f : r.failures) list.push_back(failure_json(f, r));
  j["failure_list"] = list;
  return j.dump(1);
}

std::string campaign_junit(const CampaignResult& r) {
  std::ostringstream os;
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  os << "<testsuites tests=\"" << (1 + r.failures.size()) << "\" failures=\"" << r.failures.size()
     << "\" time=\"" << r.elapsed_s << "\">\n";
  os << " <testsuite name=\"moecheck.fuzz." << xml_escape(r.target) << "\" tests=\""
     << (1 + r.failures.size()) << "\" failures=\"" << r.failures.size() << "\" time=\""
     << r.elapsed_s << "\">\n";
  os << "  <properties><property name=\"seed\" value=\"" << r.seed
     << "\"/><property name=\"mutant\" value=\"" << xml_escape(r.mutant)
     << "\"/><property name=\"cases\" value=\"" << r.cases << "\"/><property name=\"rows\" value=\""
     << r.rows << "\"/></properties>\n";
  os << "  <testcase classname=\"moecheck.fuzz\" name=\"campaign\" time=\"" << r.elapsed_s << "\"/>\n";
  for (const auto& f : r.failures) {
    os << "  <testcase classname=\"moecheck.fuzz." << xml_escape(f.check) << "\" name=\""
       << xml_escape(f.signature) << "\">\n   <failure message=\"" << xml_escape(f.message)
       << "\">" << xml_escape(f.replay) << "</failure>\n  </testcase>\n";
  }
  os << " </testsuite>\n</testsuites>\n";
  return os.str();
}

}  // namespace moecheck
