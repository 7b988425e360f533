#include "harness/core/campaign.hpp"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <limits>
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
#include <type_traits>

#include <nlohmann/json.hpp>

#include "harness/core/shrink.hpp"
#include "reference/splitmix64.hpp"

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
  const auto bad = [&](const std::string& key, const std::string& why) {
    return std::invalid_argument("--resume: state file '" + path + "': field '" + key + "' " + why);
  };
  if (!j.is_object()) throw std::invalid_argument("--resume: state file '" + path + "' is not a JSON object");
  auto need = [&](const nlohmann::json& obj, const char* key) -> const nlohmann::json& {
    if (!obj.is_object() || !obj.contains(key)) throw bad(key, "is missing");
    return obj.at(key);
  };
  // Integers in [lo, hi]; anything else (a string, a fraction, -5) names the field.
  auto integer = [&](const nlohmann::json& obj, const char* key, std::int64_t lo, std::int64_t hi,
                     const std::string& parent = "") {
    const std::string name = parent.empty() ? std::string(key) : parent + "." + key;
    if (!obj.is_object() || !obj.contains(key)) throw bad(name, "is missing");
    const nlohmann::json& v = obj.at(key);
    if (!v.is_number_integer()) throw bad(name, "must be an integer, got " + quote_value(v.dump()));
    const bool inside = v.is_number_unsigned()
                            ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(hi) &&
                                  static_cast<std::int64_t>(v.get<std::uint64_t>()) >= lo
                            : v.get<std::int64_t>() >= lo && v.get<std::int64_t>() <= hi;
    if (!inside) {
      throw bad(name, "is " + quote_value(v.dump()) + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v.get<std::int64_t>();
  };
  auto text = [&](const nlohmann::json& obj, const char* key) {
    const nlohmann::json& v = need(obj, key);
    if (!v.is_string()) throw bad(key, "must be a string, got " + quote_value(v.dump()));
    return v.get<std::string>();
  };
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  if (text(j, "schema") != "moecheck-campaign-state/1") {
    throw std::invalid_argument("--resume: '" + path + "' is not a moecheck campaign state file");
  }
  const nlohmann::json& seed = need(j, "seed");
  if (!seed.is_number_unsigned() && !(seed.is_number_integer() && seed.get<std::int64_t>() >= 0)) {
    throw bad("seed", "must be an unsigned integer, got " + quote_value(seed.dump()));
  }
  const nlohmann::json& shard = need(j, "shard");
  if (text(j, "target") != r.target || seed.get<std::uint64_t>() != r.seed ||
      integer(shard, "index", 0, kMax, "shard") != r.shard_index ||
      integer(shard, "count", 1, kMax, "shard") != r.shard_count ||
      (j.contains("mutant") ? text(j, "mutant") : std::string("none")) != r.mutant) {
    throw std::invalid_argument("--resume: state file '" + path +
                                "' belongs to another campaign (target/seed/shard/mutant differ)");
  }
  r.next_index = integer(j, "next_index", 0, kMaxCaseIndex);
  if (r.next_index % r.shard_count != r.shard_index) {
    throw bad("next_index", "is " + std::to_string(r.next_index) + ", not a case of shard " +
                                std::to_string(r.shard_index) + "/" + std::to_string(r.shard_count));
  }
  r.cases = integer(j, "cases", 0, kMax);
  r.rows = integer(j, "rows", 0, kMax);
  r.skipped = j.contains("skipped") ? integer(j, "skipped", 0, kMax) : 0;
  r.duplicate_failures = j.contains("duplicate_failures") ? integer(j, "duplicate_failures", 0, kMax) : 0;
  const nlohmann::json& elapsed = need(j, "elapsed_s");
  if (!elapsed.is_number() || !(elapsed.get<double>() >= 0) || !std::isfinite(elapsed.get<double>())) {
    throw bad("elapsed_s", "must be a finite number >= 0, got " + quote_value(elapsed.dump()));
  }
  r.elapsed_s = elapsed.get<double>();
  if (j.contains("started")) r.started = text(j, "started");
  const nlohmann::json& classes = need(j, "classes");
  if (!classes.is_object()) throw bad("classes", "must be an object");
  for (auto& [k, v] : classes.items()) r.classes[k] = integer(classes, k.c_str(), 0, kMax, "classes");
  const nlohmann::json& list = need(j, "failure_list");
  if (!list.is_array()) throw bad("failure_list", "must be an array");
  try {
    for (const auto& f : list) {
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
        if (!parse_dtype(s.at("dtype").get<std::string>(), &c.dtype) ||
            !parse_layout(s.at("layout").get<std::string>(), &c.layout) ||
            !parse_family(s.at("family").get<std::string>(), &c.family)) {
          throw std::invalid_argument("unknown dtype, layout or family");
        }
      };
      shape(f.at("shrunk"), rec.shrunk);
      shape(f.at("original"), rec.original);
      r.failures.push_back(std::move(rec));
    }
  } catch (const std::exception& e) {  // nlohmann type/out-of-range errors and the above
    throw bad("failure_list", std::string("has a malformed entry: ") + e.what());
  }
}

/// The fuzz flags that reproduce `g`'s choices where they differ from the defaults (part of
/// a `--first-case` replay line).
std::string generator_flags(const GenConfig& g) {
  const GenConfig def;
  std::string out;
  if (!g.dtypes.empty()) {
    out += " --dtypes ";
    for (std::size_t i = 0; i < g.dtypes.size(); ++i) out += (i ? "," : "") + std::string(dtype_name(g.dtypes[i]));
  }
  if (!g.families.empty()) {
    out += " --families ";
    for (std::size_t i = 0; i < g.families.size(); ++i) out += (i ? "," : "") + std::string(family_name(g.families[i]));
  }
  if (g.max_T != def.max_T) out += " --max-T " + std::to_string(g.max_T);
  if (g.max_E != def.max_E) out += " --max-E " + std::to_string(g.max_E);
  if (g.max_k != def.max_k) out += " --max-k " + std::to_string(g.max_k);
  return out;
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

GenConfig draw_config(const GenConfig& cfg, const Target& target, std::string* restriction) {
  static const std::vector<DType> all_dtypes = {DType::f32, DType::f16, DType::bf16};
  static const std::vector<Family> all_families = {Family::gemma4, Family::softmax_topk, Family::softmax_topk_raw,
                                                   Family::sigmoid_grouped, Family::sigmoid_top1};
  const Domain d = target.domain();
  GenConfig out = cfg;
  std::string note;
  const auto add = [&](const std::string& s) { note += (note.empty() ? "" : "; ") + s; };
  // Keeps the configured entries the domain allows, in the configured order.
  const auto restrict = [&](const auto& configured, const auto& all, const auto& allowed, auto& result,
                            const char* what, auto name) {
    const auto& from = configured.empty() ? all : configured;
    std::decay_t<decltype(from)> kept, dropped;
    for (const auto& v : from) {
      const bool ok = allowed.empty() || std::find(allowed.begin(), allowed.end(), v) != allowed.end();
      (ok ? kept : dropped).push_back(v);
    }
    if (kept.empty()) {
      std::string list;
      for (const auto& v : allowed) list += (list.empty() ? "" : ", ") + std::string(name(v));
      throw std::invalid_argument("target " + target.spec() + " runs none of the " + what + " to draw (it runs " +
                                  list + ")");
    }
    if (!dropped.empty()) {
      std::string list;
      for (const auto& v : dropped) list += (list.empty() ? "" : ",") + std::string(name(v));
      add(std::string("no ") + what + " " + list);
    }
    result = kept;  // the same choices in the same order as an empty ("all") list
  };
  restrict(cfg.families, all_families, d.families, out.families, "families", family_name);
  restrict(cfg.dtypes, all_dtypes, d.dtypes, out.dtypes, "dtypes", dtype_name);
  if (d.max_E > 0 && out.max_E > d.max_E) {
    out.max_E = d.max_E;
    add("E <= " + std::to_string(d.max_E));
  }
  if (d.max_k > 0 && out.max_k > d.max_k) {
    out.max_k = d.max_k;
    add("k <= " + std::to_string(d.max_k));
  }
  if (restriction) *restriction = note;
  return out;
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
  if (!std::isfinite(opt.seconds) || opt.seconds < 0 || opt.max_cases < 0 || opt.max_cases > kMaxCampaignCases ||
      opt.max_failures < 0) {
    throw std::invalid_argument("campaign budget: need finite --seconds >= 0, 0 <= --cases <= 2^62 and "
                                "--max-failures >= 0");
  }
  if (opt.first_index > kMaxCaseIndex || (opt.first_index >= 0 && opt.first_index % opt.shard_count != opt.shard_index)) {
    throw std::invalid_argument("--first-case " + std::to_string(opt.first_index) + ": must be at most 2^62 and a case of shard " +
                                std::to_string(opt.shard_index) + "/" + std::to_string(opt.shard_count) +
                                " (case j belongs to shard j % n)");
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
  // Draw only what the target runs (skipping stays as the per-case safety net).
  const GenConfig gen = draw_config(opt.gen, target, &r.restriction);
  r.drawn = gen;
  r.expected_classes = expected_case_classes(gen);
  if (!r.restriction.empty()) log << "drawing only what " << target.spec() << " runs: " << r.restriction << "\n";

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
  const bool planted = opt.planted_bug || target.mutant() != "none";

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
    if (r.next_index > kMaxCaseIndex) break;  // the index space is spent

    const std::int64_t index = r.next_index;
    const std::uint64_t seed = case_seed(opt.seed, index);
    RoutingCase c = generate_case(seed, gen);
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
                     " --seed " + std::to_string(opt.seed) + generator_flags(opt.gen) + " --first-case " +
                     std::to_string(index) + " --cases 1";
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
  j["started"] = r.started;
  j["elapsed_s"] = r.elapsed_s;
  j["cases"] = r.cases;
  j["rows"] = r.rows;
  j["skipped"] = r.skipped;
  j["failures"] = r.failures.size();
  j["duplicate_failures"] = r.duplicate_failures;
  j["interrupted"] = r.interrupted;
  j["next_index"] = r.next_index;
  nlohmann::json drawn_families = nlohmann::json::array(), drawn_dtypes = nlohmann::json::array();
  for (Family f : r.drawn.families) drawn_families.push_back(family_name(f));
  for (DType d : r.drawn.dtypes) drawn_dtypes.push_back(dtype_name(d));
  j["generator"] = {{"families", drawn_families}, {"dtypes", drawn_dtypes}, {"max_T", r.drawn.max_T},
                    {"max_E", r.drawn.max_E}, {"max_k", r.drawn.max_k}, {"restriction", r.restriction}};
  j["expected_classes"] = r.expected_classes;
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
