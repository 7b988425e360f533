#include "harness/core/campaign.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <signal.h>
#include <cstdio>
#include <deque>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "harness/core/shrink.hpp"
#include "harness/core/results_json.hpp"
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

}  // namespace

void write_atomically(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) {
    fs::create_directories(p.parent_path(), ec);
    if (ec) {
      throw std::runtime_error("cannot write '" + path + "': cannot create its folder '" +
                               p.parent_path().string() + "': " + ec.message());
    }
  }
  fs::path tmp = p;
  tmp += ".tmp";
  std::string why;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      why = std::strerror(errno);
    } else if (!(out << text) || !out.flush()) {
      why = "write failed";
    }
  }
  if (!why.empty()) {
    fs::remove(tmp, ec);
    throw std::runtime_error("cannot write '" + path + "': " + why);
  }
  fs::rename(tmp, p, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw std::runtime_error("cannot write '" + path + "': " + ec.message());
  }
}

namespace {

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
  // A time: a finite number >= 0 (`name`: the field as the message names it).
  auto seconds = [&](const nlohmann::json& v, const std::string& name) {
    if (!v.is_number() || !(v.get<double>() >= 0) || !std::isfinite(v.get<double>())) {
      throw bad(name, "must be a finite number >= 0, got " + quote_value(v.dump()));
    }
    return v.get<double>();
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
  std::string contract = "strict";  // state files written before contracts existed
  if (j.contains("contract")) {
    const nlohmann::json& cj = j.at("contract");
    if (!cj.is_object() || !cj.contains("spec") || !cj.at("spec").is_string()) {
      throw bad("contract", "must be an object with a string 'spec', got " + quote_value(cj.dump()));
    }
    contract = cj.at("spec").get<std::string>();
  }
  if (text(j, "target") != r.target || seed.get<std::uint64_t>() != r.seed ||
      integer(shard, "index", 0, kMax, "shard") != r.shard_index ||
      integer(shard, "count", 1, kMax, "shard") != r.shard_count ||
      (j.contains("mutant") ? text(j, "mutant") : std::string("none")) != r.mutant ||
      contract != contract_spec(r.contract)) {
    throw std::invalid_argument("--resume: state file '" + path +
                                "' belongs to another campaign (target/seed/shard/mutant/contract differ)");
  }
  r.next_index = integer(j, "next_index", 0, kMaxCaseIndex);
  if (r.next_index % r.shard_count != r.shard_index) {
    throw bad("next_index", "is " + std::to_string(r.next_index) + ", not a case of shard " +
                                std::to_string(r.shard_index) + "/" + std::to_string(r.shard_count));
  }
  r.cases = integer(j, "cases", 0, kMax);
  r.rows = integer(j, "rows", 0, kMax);
  r.skipped = j.contains("skipped") ? integer(j, "skipped", 0, kMax) : 0;
  r.outside_contract = j.contains("outside_contract") ? integer(j, "outside_contract", 0, kMax) : 0;
  if (j.contains("outside_contract_reasons")) {
    const nlohmann::json& reasons = j.at("outside_contract_reasons");
    if (!reasons.is_object()) throw bad("outside_contract_reasons", "must be an object");
    for (auto& [k, v] : reasons.items()) {
      r.outside_contract_reasons[k] = integer(reasons, k.c_str(), 0, kMax, "outside_contract_reasons");
    }
  }
  r.duplicate_failures = j.contains("duplicate_failures") ? integer(j, "duplicate_failures", 0, kMax) : 0;
  if (j.contains("check")) {  // the checking path and the device checker's counters so far
    const nlohmann::json& cj = j.at("check");
    if (!cj.is_object() || !cj.contains("path") || !cj.at("path").is_string()) {
      throw bad("check", "must be an object with a string 'path', got " + quote_value(cj.dump()));
    }
    r.check_path = cj.at("path").get<std::string>();
    if (cj.contains("device")) {
      const nlohmann::json& d = cj.at("device");
      for (const DeviceCheckField& f : kDeviceCheckFields) {
        if (f.count != nullptr) {
          r.device_check.*f.count = integer(d, f.name, 0, kMax, "check.device");
        } else if (d.is_object() && d.contains(f.name)) {  // times: absent in older states
          r.device_check.*f.seconds = seconds(d.at(f.name), std::string("check.device.") + f.name);
        }
      }
    }
  }
  r.elapsed_s = seconds(need(j, "elapsed_s"), "elapsed_s");
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
  if (!g.layouts.empty()) {
    out += " --layouts ";
    for (std::size_t i = 0; i < g.layouts.size(); ++i) out += (i ? "," : "") + std::string(layout_name(g.layouts[i]));
  }
  if (g.max_T != def.max_T) out += " --max-T " + std::to_string(g.max_T);
  if (g.max_E != def.max_E) out += " --max-E " + std::to_string(g.max_E);
  if (g.max_k != def.max_k) out += " --max-k " + std::to_string(g.max_k);
  return out;
}

}  // namespace

std::string human_number(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e4) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string tool_version() { return MOECHECK_VERSION; }
std::string source_commit() { return MOECHECK_GIT_COMMIT; }
std::string toolkit_string() { return toolkit_string(""); }
std::string toolkit_string(const std::string& device_name) {
  std::string s = std::string("torch=") + MOECHECK_TORCH_VERSION + " cuda=" + MOECHECK_CUDA_VERSION;
  std::string dev = device_name.empty() ? cuda_device_name() : device_name;
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

std::string failure_signature(const Target& t, const std::string& check, const RoutingCase& s,
                              const std::string& contract_spec) {
  // FNV-1a over the fields that identify the failure class of a minimal case.
  std::ostringstream os;
  os << t.spec() << '|' << t.mutant() << '|' << check << '|' << family_name(s.family) << '|'
     << dtype_name(s.dtype) << '|' << layout_name(s.layout) << '|' << s.T << '|' << s.E << '|' << s.k;
  if (contract_spec != "strict") os << "|contract=" << contract_spec;
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : os.str()) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  return hex64(h);
}

void request_campaign_stop() { g_stop = 1; }

void install_stop_handlers() {
  g_stop = 0;
  std::signal(SIGINT, moecheck_on_signal);
  std::signal(SIGTERM, moecheck_on_signal);
  // A `fuzz --workers` worker starts with both blocked (harness/core/workers.cpp) so that a stop
  // forwarded while it is still starting up waits for these handlers instead of killing it
  // before it can write its results; a pending one is delivered here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
}

double effective_case_timeout(const CampaignOptions& opt) {
  if (opt.case_timeout > 0) return opt.case_timeout;
  if (!(opt.seconds > 0)) return 60.0;
  const double t = opt.seconds / 10.0;
  return t >= 60.0 ? 60.0 : (t >= 2.0 ? t : 2.0);
}

namespace {

/// `t` plus `seconds` (clamped to [0, 1e9] s so that no budget overflows the clock).
Clock::time_point after(Clock::time_point t, double seconds) {
  const double s = seconds > 0 ? std::min(seconds, 1e9) : 0.0;
  return t + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

namespace {

namespace fs = std::filesystem;

[[noreturn]] void bad_output(const char* flag, const std::string& path, const std::string& why) {
  throw std::invalid_argument(std::string(flag) + " '" + path + "': " + why);
}

/// Creates (and removes) a scratch file `probe`: proves its folder accepts new files.
void probe_create(const char* flag, const std::string& path, const fs::path& probe, const fs::path& folder) {
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    bad_output(flag, path, "cannot create files in '" + folder.string() + "': " + std::strerror(errno));
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

/// --json / --junit / --state: a file (or nothing yet) in a folder that takes new files.
void check_file_output(const char* flag, const std::string& path) {
  if (path.empty()) return;
  const fs::path p(path);
  if (!p.has_filename() || p.filename() == "." || p.filename() == "..") bad_output(flag, path, "names a folder, not a file");
  std::error_code ec;
  const fs::file_status st = fs::status(p, ec);
  if (fs::is_directory(st)) bad_output(flag, path, "is a folder, not a file");
  if (fs::exists(st) && !fs::is_regular_file(st)) bad_output(flag, path, "exists and is not a regular file");
  const fs::path folder = p.has_parent_path() ? p.parent_path() : fs::path(".");
  fs::create_directories(folder, ec);
  if (ec || !fs::is_directory(folder, ec)) {
    bad_output(flag, path, "cannot create its folder '" + folder.string() + "'" + (ec ? ": " + ec.message() : ""));
  }
  fs::path tmp = p;
  tmp += ".tmp";  // the name write_atomically uses
  if (fs::is_directory(fs::symlink_status(tmp, ec))) bad_output(flag, path, "'" + tmp.string() + "' is a folder in the way");
  probe_create(flag, path, tmp, folder);
}

/// --corpus: a folder (created when missing) that takes new files.
void check_folder_output(const char* flag, const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (fs::exists(st) && !fs::is_directory(st)) bad_output(flag, dir, "exists and is not a folder");
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir, ec)) bad_output(flag, dir, "cannot create the folder" + (ec ? ": " + ec.message() : ""));
  probe_create(flag, dir, fs::path(dir) / (".moecheck-probe-" + std::to_string(::getpid())), dir);
}

}  // namespace

void check_output_paths(const CampaignOptions& opt) {
  const std::pair<const char*, const std::string*> files[] = {
      {"--json", &opt.results_json}, {"--junit", &opt.junit_xml}, {"--state", &opt.state_file}};
  for (std::size_t i = 0; i < 3; ++i) {
    for (std::size_t j = i + 1; j < 3; ++j) {
      if (files[i].second->empty() || files[j].second->empty()) continue;
      std::error_code e1, e2;
      const fs::path a = fs::weakly_canonical(*files[i].second, e1), b = fs::weakly_canonical(*files[j].second, e2);
      if (!e1 && !e2 && a == b) {
        throw std::invalid_argument(std::string(files[i].first) + " and " + files[j].first + " name the same file '" +
                                    *files[i].second + "'");
      }
    }
  }
  check_folder_output("--corpus", opt.corpus_dir);
  for (const auto& [flag, path] : files) check_file_output(flag, *path);
}

int campaign_exit_code(const CampaignResult& r) {
  if (!r.write_errors.empty()) return 3;
  if (!r.failures.empty()) return 1;
  if (r.interrupted) return kExitInterrupted;
  return 0;
}

std::string campaign_summary(const CampaignResult& r) {
  std::ostringstream os;
  os << "cases " << r.cases << ", rows " << r.rows << ", skipped " << r.skipped << ", outside contract '"
     << r.contract.name << "' " << r.outside_contract << ", failures " << r.failures.size() << " (+"
     << r.duplicate_failures << " duplicates) in " << r.elapsed_s << " s";
  if (r.cases_per_s > 0 || r.rows_per_s > 0) {
    os << " (" << human_number(r.cases_per_s) << " cases/s, " << human_number(r.rows_per_s) << " rows/s, checked on the "
       << r.check_path << ")";
  }
  if (r.aborted) os << " [aborted: " << r.abort_reason << "]";
  else if (r.interrupted) os << " [interrupted: resume with --resume --state FILE]";
  os << "\n";
  if (r.check_path == "device" && r.device_check.batches > 0) {
    const DeviceCheckStats& d = r.device_check;
    const auto sec = [](double s) {
      std::ostringstream t;
      t << std::fixed << std::setprecision(2) << s << " s";
      return t.str();
    };
    os << "  device checker: " << d.batches << " batches, " << human_number(static_cast<double>(d.device_rows))
       << " rows; GPU " << sec(d.device_seconds) << " (generate " << sec(d.generate_seconds) << ", kernel "
       << sec(d.route_seconds) << ", check " << sec(d.check_seconds) << "); host: prepare "
       << sec(d.prepare_seconds) << ", waited " << sec(d.wait_seconds) << ", re-checked " << d.sampled_rows
       << " rows in " << sec(d.host_seconds) << "; flagged " << d.flagged_rows << ", confirmed " << d.confirmed_rows
       << ", disagreements " << d.disagreements << "\n";
  }
  for (const auto& [reason, n] : r.outside_contract_reasons) {
    os << "  outside contract: " << reason << ": " << n << " case(s) (not run, not failures)\n";
  }
  for (const auto& f : r.failures) os << "  " << f.replay << "\n";
  return os.str();
}

namespace {

/// One running campaign: its result, outputs and failure bookkeeping (shared by the normal
/// path and the emergency end).
struct CampaignRun {
  Target& target;
  const CampaignOptions& opt;
  CampaignResult& r;
  std::ostream& log;
  std::set<std::string> known;
  Clock::time_point t0;
  double elapsed_before = 0;

  double elapsed() const {
    return elapsed_before + std::chrono::duration<double>(Clock::now() - t0).count();
  }

  void write_error(const std::string& what) {
    if (std::find(r.write_errors.begin(), r.write_errors.end(), what) != r.write_errors.end()) return;
    log << "\nmoecheck: error: " << what << "\n" << std::flush;
    r.write_errors.push_back(what);
  }

  /// A case whose shrink a stop request cut short. The results show its failure (shrunk as far
  /// as it got); the resume state leaves the case out, so that a resumed campaign runs and
  /// shrinks it again in full and ends exactly as one uninterrupted run would.
  struct CutShort {
    std::int64_t index = 0;
    std::int64_t rows = 0;             ///< its T
    std::vector<std::string> classes;  ///< classify() of it
    bool recorded = false;             ///< a new failure was recorded (else it counted as a duplicate)
  };
  std::optional<CutShort> cut_short;

  /// The resume state: the campaign without a case whose shrink was cut short.
  nlohmann::json resume_state() const {
    if (!cut_short) return state_json(r);
    CampaignResult s = r;
    s.next_index = cut_short->index;
    --s.cases;
    s.rows -= cut_short->rows;
    for (const auto& cls : cut_short->classes) {
      auto it = s.classes.find(cls);
      if (it != s.classes.end() && --it->second <= 0) s.classes.erase(it);
    }
    if (cut_short->recorded) s.failures.pop_back();
    else --s.duplicate_failures;
    return state_json(s);
  }

  void save_state() {
    if (opt.state_file.empty()) return;
    try {
      write_atomically(opt.state_file, resume_state().dump(1));
    } catch (const std::exception& e) {
      write_error(e.what());
    }
  }

  /// State, results JSON and JUnit, each written even when another one fails.
  void write_outputs() {
    save_state();
    if (!opt.results_json.empty()) {
      try {
        write_atomically(opt.results_json, campaign_json(r));
      } catch (const std::exception& e) {
        write_error(e.what());
      }
    }
    if (!opt.junit_xml.empty()) {
      try {
        write_atomically(opt.junit_xml, campaign_junit(r));
      } catch (const std::exception& e) {
        write_error(e.what());
      }
    }
  }

  /// Records a (shrunk) failure unless its signature is known; saves it to the corpus. Returns
  /// true when it was recorded, false when it counted as a duplicate.
  bool record_failure(const std::string& check, const std::string& message, std::uint64_t seed,
                      std::int64_t index, const RoutingCase& original, const RoutingCase& shrunk, int steps,
                      int attempts, const std::string& note) {
    FailureRecord rec;
    rec.check = check;
    rec.message = message;
    rec.seed = seed;
    rec.case_index = index;
    rec.original = original;
    rec.original.logits.clear();
    rec.shrunk = shrunk;
    rec.shrink_steps = steps;
    const std::string contract = contract_spec(r.contract);
    rec.signature = failure_signature(target, check, shrunk, contract);
    if (known.count(rec.signature)) {
      ++r.duplicate_failures;
      return false;
    }
    known.insert(rec.signature);
    rec.replay = "moecheck fuzz --target " + target.spec() + " --mutant " + target.mutant() + " --seed " +
                 std::to_string(opt.seed) + generator_flags(opt.gen) + " --first-case " + std::to_string(index) +
                 " --cases 1" + (contract == "strict" ? "" : " --contract '" + contract + "'") +
                 (opt.host_check && target.device() == "cuda" ? " --host-check" : "");
    if (!opt.corpus_dir.empty()) {
      CorpusEntry e;
      e.c = shrunk;
      e.target = target.spec();
      e.mutant = target.mutant();
      e.device = target.device();
      e.expect = opt.planted_bug || target.mutant() != "none" ? Expectation::fail : Expectation::pass;
      e.check = check;
      e.signature = rec.signature;
      e.message = rec.message;
      e.toolkit = toolkit_string(r.device_name);
      e.commit = source_commit();
      e.found = iso_time_now();
      e.contract = contract;
      try {
        rec.corpus_file = write_corpus_entry(e, opt.corpus_dir);
        rec.replay = "moecheck replay " + rec.corpus_file;
      } catch (const std::exception& ex) {
        write_error(std::string("corpus: ") + ex.what());
      }
    }
    if (opt.progress) log << "\n";
    log << "FAIL [" << check << "] " << rec.message << "\n"
        << "  target " << target.spec() << " mutant " << target.mutant() << " device " << target.device()
        << " case #" << index << " seed 0x" << hex64(seed) << "\n"
        << "  original T=" << original.T << " E=" << original.E << " k=" << original.k << " "
        << dtype_name(original.dtype) << " " << layout_name(original.layout) << " values=" << original.value_family
        << " -> shrunk T=" << shrunk.T << " E=" << shrunk.E << " k=" << shrunk.k << " " << dtype_name(shrunk.dtype)
        << " (" << steps << " steps, " << attempts << " attempts" << note << ")\n"
        << "  replay: " << rec.replay << "\n";
    r.failures.push_back(std::move(rec));
    return true;
  }
};

/// A shrink in progress: its best case so far survives an emergency end.
struct PendingShrink {
  bool active = false;
  std::string check, message;
  std::uint64_t seed = 0;
  std::int64_t index = 0;
  RoutingCase original, best;
  int steps = 0, attempts = 0;
};

/// The campaign running in this process, as seen by the process-exit handler and the watchdog
/// (they may run on another thread, or inside exit() called by the code under test). The
/// campaign thread holds `mu` except while the code under test runs, so whoever takes `mu`
/// finds the result in a consistent state.
struct ActiveCampaign {
  std::timed_mutex mu;
  std::thread::id owner;
  pid_t pid = 0;
  std::atomic<bool> in_call{false};
  std::atomic<std::uint64_t> call_seq{0};
  std::atomic<Clock::rep> call_start{0};
  std::atomic<bool> ending{false};  ///< an emergency end is under way
  // Guarded by mu:
  CampaignRun* run = nullptr;
  double timeout_s = 60;
  bool has_deadline = false;
  Clock::time_point hard_deadline{};  ///< end of the budget plus kBudgetGraceSeconds
  const RoutingCase* in_flight = nullptr;
  bool in_flight_is_candidate = false;  ///< a shrink candidate, not a campaign case
  std::int64_t in_flight_index = 0;
  std::uint64_t in_flight_seed = 0;
  PendingShrink shrink;
};

std::atomic<ActiveCampaign*> g_active{nullptr};

enum class Emergency { exit_called, timeout, stop, budget };

/// Records what can be recorded, writes every output, prints the summary and ends the process.
/// The caller holds `ac.mu` (or is the campaign thread outside a call).
[[noreturn]] void emergency_end(ActiveCampaign& ac, Emergency why) {
  CampaignRun& run = *ac.run;
  CampaignResult& r = run.r;
  r.elapsed_s = run.elapsed();
  const bool in_call = ac.in_call.load() && ac.in_flight != nullptr;
  const std::string where = in_call ? (ac.in_flight_is_candidate ? "a shrink candidate of case #" : "case #") +
                                          std::to_string(ac.in_flight_index)
                                    : std::string("no call");
  if (ac.shrink.active) {
    PendingShrink& ps = ac.shrink;
    ps.active = false;
    const bool recorded = run.record_failure(ps.check, ps.message, ps.seed, ps.index, ps.original, ps.best,
                                             ps.steps, ps.attempts, ", shrinking cut short");
    // Stopped (not aborted): a resumed campaign runs and shrinks this case again.
    if (why == Emergency::stop) run.cut_short = CampaignRun::CutShort{ps.index, ps.original.T, classify(ps.original), recorded};
  }
  auto record_in_flight = [&](const std::string& check, const std::string& message) {
    const RoutingCase& c = *ac.in_flight;
    if (!ac.in_flight_is_candidate) {
      ++r.cases;
      r.rows += c.T;
      for (const auto& cls : classify(c)) ++r.classes[cls];
    }
    run.record_failure(check, message, ac.in_flight_seed, ac.in_flight_index, c, c, 0, 0, ", not shrunk");
  };
  int code = -1;
  switch (why) {
    case Emergency::exit_called:
      r.aborted = true;
      if (in_call) {
        record_in_flight("crash", "implementation ended the process (exit() or quick_exit()) during an in-process "
                                  "call; the campaign was aborted (run it isolated, without --no-isolation)");
        r.abort_reason = "the code under test called exit() during " + where;
      } else {
        r.abort_reason = "the process was asked to exit outside any call to the code under test";
        code = 3;
      }
      break;
    case Emergency::timeout: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", ac.timeout_s);
      record_in_flight("timeout", std::string("implementation did not return within ") + buf +
                                      " s (in-process call, which cannot be killed: the campaign was aborted)");
      r.aborted = true;
      r.abort_reason = std::string("the code under test ran past the case timeout (") + buf + " s) during " + where;
      break;
    }
    case Emergency::stop:
      r.interrupted = true;
      if (!ac.in_flight_is_candidate) r.next_index = ac.in_flight_index;  // not judged: run again on resume
      run.log << "\nmoecheck: stop requested; " << where << " was still running in-process after "
              << kStopGraceSeconds << " s: abandoned\n";
      break;
    case Emergency::budget:
      if (!ac.in_flight_is_candidate) r.next_index = ac.in_flight_index;
      run.log << "\nmoecheck: " << where << " was still running in-process " << kBudgetGraceSeconds
              << " s after the end of the budget: abandoned (not counted)\n";
      break;
  }
  if (r.aborted) r.interrupted = true;
  if (r.aborted) run.log << "\nmoecheck: campaign aborted: " << r.abort_reason << "\n";
  run.write_outputs();
  run.log << std::flush;
  std::cout << campaign_summary(r) << std::flush;
  std::cerr << std::flush;
  std::fflush(nullptr);
  if (code < 0) code = campaign_exit_code(r);
  _exit(code);
}

/// exit()/quick_exit() while a campaign runs in this process: record, write, exit non-zero.
extern "C" void moecheck_on_process_exit() {
  ActiveCampaign* ac = g_active.load();
  if (!ac || ac->pid != ::getpid()) return;  // no campaign, or a forked child exiting
  if (ac->ending.exchange(true)) {
    for (;;) pause();  // another thread is already ending the process
  }
  const bool own_thread_holds_lock = std::this_thread::get_id() == ac->owner && !ac->in_call.load();
  if (!own_thread_holds_lock && !ac->mu.try_lock_for(std::chrono::seconds(2))) {
    std::fputs("moecheck: the process is exiting during a campaign and the results could not be recorded\n",
               stderr);
    _exit(3);
  }
  emergency_end(*ac, Emergency::exit_called);
}

/// Forwards to the target under test; releases the campaign lock while the code under test runs.
class GuardedTarget final : public Target {
 public:
  GuardedTarget(Target& inner, ActiveCampaign& ac) : inner_(inner), ac_(ac) {}
  std::string spec() const override { return inner_.spec(); }
  std::string device() const override { return inner_.device(); }
  std::string mutant() const override { return inner_.mutant(); }
  std::string unsupported(const RoutingCase& c) const override { return inner_.unsupported(c); }
  Precision precision() const override { return inner_.precision(); }
  Domain domain() const override { return inner_.domain(); }
  bool runs_in_process() const override { return inner_.runs_in_process(); }
  Contract contract() const override { return inner_.contract(); }
  bool interrupts_calls() const override { return inner_.interrupts_calls(); }
  std::string lost() const override { return inner_.lost(); }
  std::string device_name() const override { return inner_.device_name(); }
  RunOutcome run(const MaterializedCase& m, float* weights, std::int32_t* ids) override {
    ac_.call_start.store(Clock::now().time_since_epoch().count());
    ac_.call_seq.fetch_add(1);
    ac_.in_call.store(true);
    ac_.mu.unlock();
    struct Relock {
      ActiveCampaign& ac;
      ~Relock() {
        ac.in_call.store(false);
        ac.mu.lock();
      }
    } relock{ac_};
    return inner_.run(m, weights, ids);
  }

 private:
  Target& inner_;
  ActiveCampaign& ac_;
};

/// Watches in-process calls: past the case timeout, still running kStopGraceSeconds after a stop
/// request, or past the budget plus grace -> emergency_end (such a call cannot be interrupted).
class Watchdog {
 public:
  explicit Watchdog(ActiveCampaign& ac) : ac_(ac), thread_([this] { loop(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> l(m_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> l(m_);
    Clock::time_point stop_seen{};
    while (!cv_.wait_for(l, std::chrono::milliseconds(20), [this] { return quit_; })) {
      const Clock::time_point now = Clock::now();
      if (g_stop && stop_seen == Clock::time_point{}) stop_seen = now;
      if (!ac_.in_call.load()) continue;
      const std::uint64_t seq = ac_.call_seq.load();
      const Clock::time_point started{Clock::duration(ac_.call_start.load())};
      const double running = std::chrono::duration<double>(now - started).count();
      Emergency why = Emergency::timeout;
      if (running >= ac_.timeout_s) why = Emergency::timeout;
      else if (g_stop && std::chrono::duration<double>(now - stop_seen).count() >= kStopGraceSeconds) why = Emergency::stop;
      else if (ac_.has_deadline && now >= ac_.hard_deadline) why = Emergency::budget;
      else continue;
      if (!ac_.mu.try_lock()) continue;
      if (!ac_.in_call.load() || ac_.call_seq.load() != seq || ac_.ending.exchange(true)) {
        ac_.mu.unlock();
        continue;
      }
      emergency_end(ac_, why);
    }
  }

  ActiveCampaign& ac_;
  std::mutex m_;
  std::condition_variable cv_;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace

CampaignResult run_campaign(Target& target, const CampaignOptions& opt, std::ostream& log) {
  if (opt.shard_count < 1 || opt.shard_index < 0 || opt.shard_index >= opt.shard_count) {
    throw std::invalid_argument("--shard " + std::to_string(opt.shard_index) + "/" +
                                std::to_string(opt.shard_count) + ": need 0 <= i < n");
  }
  if (opt.seconds <= 0 && opt.max_cases <= 0) {
    throw std::invalid_argument("a campaign needs a budget: --seconds > 0 or --cases > 0");
  }
  if (!(opt.case_timeout >= 0) || !std::isfinite(opt.case_timeout)) {
    throw std::invalid_argument("--case-timeout: need a finite number of seconds > 0");
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
  check_output_paths(opt);
  CampaignResult r;
  r.target = target.spec();
  r.mutant = target.mutant();
  r.device = target.device();
  r.device_name = target.device_name();
  r.seed = opt.seed;
  r.shard_index = opt.shard_index;
  r.shard_count = opt.shard_count;
  r.budget_seconds = opt.seconds;
  r.budget_cases = opt.max_cases;
  r.case_timeout = effective_case_timeout(opt);
  r.max_failures = opt.max_failures;
  r.shrink_attempts = opt.shrink_attempts;
  r.started = iso_time_now();
  r.contract = effective_contract(target, opt.contract);
  OracleOptions oracle;
  oracle.contract = r.contract;
  r.next_index = opt.shard_index;
  if (opt.first_index >= 0) r.next_index = opt.first_index;
  if (opt.resume) {
    restore_state(opt.state_file, r);
    log << "resuming at case " << r.next_index << " (" << r.cases << " cases, " << r.failures.size()
        << " failures so far)\n";
  }
  CampaignRun run{target, opt, r, log, {}, Clock::now(), r.elapsed_s};
  for (const auto& f : r.failures) run.known.insert(f.signature);
  // Draw only what the target runs (skipping stays as the per-case safety net).
  const GenConfig gen = draw_config(opt.gen, target, &r.restriction);
  r.drawn = gen;
  r.expected_classes = expected_case_classes(gen);
  if (!r.restriction.empty()) log << "drawing only what " << target.spec() << " runs: " << r.restriction << "\n";

  // A stop requested before this point (a signal while the target was being built) is honoured
  // by the loop below; the request is consumed when the campaign returns, so that the next
  // campaign of the same process starts afresh.
  struct ConsumeStop {
    ~ConsumeStop() { g_stop = 0; }
  } consume_stop;
  // cuda:<variant> targets: counter-generated cases judged on the device (device_check.hpp).
  std::unique_ptr<DeviceChecker> device;
  std::deque<DeviceCaseOutcome> pending;
  if (!opt.host_check && target.device() == "cuda") {
    DeviceCheckOptions dco;
    dco.checker_mutant = opt.checker_mutant;
    dco.sample_one_in = opt.sample_one_in;
    std::string why;
    device = make_device_checker(target, dco, &why);
    if (!device) log << "checking on the host: " << why << "\n";
  }
  {
    // A resumed campaign keeps its checking path: the two paths generate different cases.
    const std::string path = device ? "device" : "host";
    if (opt.resume && r.check_path != path) {
      throw std::invalid_argument("--resume: state file '" + opt.state_file + "' was checked on the " + r.check_path +
                                  " and this run would check on the " + path +
                                  (path == "host" ? "" : " (add --host-check)") +
                                  ": the two paths draw different cases");
    }
    r.check_path = path;
  }
  const DeviceCheckStats device_before = r.device_check;
  const auto sync_device_stats = [&] {  // the results' counters: the resumed ones plus this run's
    if (!device) return;
    r.device_check = device_before;
    r.device_check += device->stats();
  };

  const std::int64_t cases_before = r.cases;
  const std::int64_t rows_before = r.rows;
  const auto t0 = run.t0;
  auto last_progress = t0, last_state = t0;
  auto seconds_since = [](Clock::time_point a) {
    return std::chrono::duration<double>(Clock::now() - a).count();
  };
  // The time budget ends at `deadline`; a call still running kBudgetGraceSeconds later is
  // abandoned, and so is any call once a stop is requested.
  const bool has_deadline = opt.seconds > 0;
  const Clock::time_point deadline = after(t0, has_deadline ? opt.seconds - run.elapsed_before : 0.0);
  const Clock::time_point hard_deadline = after(deadline, kBudgetGraceSeconds);

  ActiveCampaign ac;
  ac.owner = std::this_thread::get_id();
  ac.pid = ::getpid();
  ac.run = &run;
  ac.timeout_s = r.case_timeout;
  ac.has_deadline = has_deadline;
  ac.hard_deadline = hard_deadline;
  ac.mu.lock();
  static const bool exit_hooks = [] {
    std::atexit(moecheck_on_process_exit);
    std::at_quick_exit(moecheck_on_process_exit);
    return true;
  }();
  (void)exit_hooks;
  GuardedTarget guarded(target, ac);
  const CallLimits previous_limits = target.call_limits();
  bool shrinking = false;  // a shrink candidate is abandoned at the deadline itself, a case 1 s later
  target.set_call_limits({r.case_timeout, [&] {
                            return g_stop != 0 ||
                                   (has_deadline && Clock::now() >= (shrinking ? deadline : hard_deadline));
                          }});
  struct Deactivate {
    ActiveCampaign& ac;
    Target& target;
    const CallLimits& previous;
    ~Deactivate() {
      g_active.store(nullptr);
      target.set_call_limits(previous);
      ac.mu.unlock();
    }
  } deactivate{ac, target, previous_limits};
  g_active.store(&ac);
  std::unique_ptr<Watchdog> watchdog;
  // A target that interrupts its own calls (Target::interrupts_calls) gets no watchdog: nothing
  // may end the process under it because one of its calls is slow.
  if (target.runs_in_process() && !target.interrupts_calls()) watchdog = std::make_unique<Watchdog>(ac);
  // A target that can run nothing more (Target::lost, e.g. a device fault in-process) ends the
  // campaign, aborted with its reason.
  auto aborted_by_loss = [&] {
    const std::string why = target.lost();
    if (why.empty()) return false;
    r.aborted = r.interrupted = true;
    r.abort_reason = why;
    log << (opt.progress ? "\n" : "") << "moecheck: campaign aborted: " << why << "\n";
    return true;
  };

  while (true) {
    const double run_s = seconds_since(t0);
    r.elapsed_s = run.elapsed_before + run_s;
    if (g_stop) {
      r.interrupted = true;
      break;
    }
    if (opt.seconds > 0 && r.elapsed_s >= opt.seconds) break;
    if (opt.max_cases > 0 && r.cases + r.skipped + r.outside_contract >= opt.max_cases) break;
    if (opt.max_failures > 0 && static_cast<int>(r.failures.size()) >= opt.max_failures) break;
    if (r.next_index > kMaxCaseIndex) break;  // the index space is spent
    if (aborted_by_loss()) break;

    std::int64_t index = r.next_index;
    std::uint64_t seed = case_seed(opt.seed, index);
    RoutingCase c;
    Verdict v;
    std::optional<DeviceCaseOutcome> dev;  // the device path's outcome of this case
    if (device) {
      if (pending.empty()) {
        const std::int64_t left =
            opt.max_cases > 0 ? opt.max_cases - (r.cases + r.skipped + r.outside_contract) : kMaxCampaignCases;
        // The batch runs in-process like a call to the code under test: the watchdog sees it.
        RoutingCase placeholder;  // what a hang in the batch is recorded as: its first case, shape only
        placeholder = counter_case_without_logits(counter_shape(seed, gen).shape, 0);
        placeholder.T = 0;
        placeholder.seed = seed;
        ac.in_flight = &placeholder;
        ac.in_flight_is_candidate = false;
        ac.in_flight_index = index;
        ac.in_flight_seed = seed;
        ac.call_start.store(Clock::now().time_since_epoch().count());
        ac.call_seq.fetch_add(1);
        ac.in_call.store(true);
        ac.mu.unlock();
        std::vector<DeviceCaseOutcome> batch;
        try {
          batch = device->run_batch(opt.seed, index, opt.shard_count, std::max<std::int64_t>(left, 1), gen, oracle);
        } catch (...) {
          ac.in_call.store(false);
          ac.mu.lock();
          ac.in_flight = nullptr;
          throw;
        }
        ac.in_call.store(false);
        ac.mu.lock();
        ac.in_flight = nullptr;
        pending.assign(std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
      }
      dev = std::move(pending.front());
      pending.pop_front();
      index = dev->index;
      seed = dev->seed;
      using K = DeviceCaseOutcome::Kind;
      if (dev->kind == K::skipped) v.kind = Verdict::Kind::skipped;
      if (dev->kind == K::outside_contract) {
        v.kind = Verdict::Kind::outside_contract;
        v.outside_key = dev->outside_key;
      }
      if (dev->kind == K::pass) c = std::move(dev->c);
      if (dev->kind == K::host_path || dev->kind == K::fail || dev->kind == K::disagreement) {
        c = build_counter_case(dev->shape.shape, dev->shape.value_seed);
        c.seed = seed;
      }
      if (dev->kind == K::disagreement) {
        v.kind = Verdict::Kind::fail;
        v.check = dev->check;
        v.message = dev->message;
      }
    } else {
      c = generate_case(seed, gen);
    }
    r.next_index = index + opt.shard_count;

    using DK = DeviceCaseOutcome::Kind;
    if (!dev || dev->kind == DK::host_path || dev->kind == DK::fail) {
      ac.in_flight = &c;
      ac.in_flight_is_candidate = false;
      ac.in_flight_index = index;
      ac.in_flight_seed = seed;
      v = evaluate(guarded, c, oracle);
      ac.in_flight = nullptr;
    }
    if (dev && dev->kind == DK::fail && v.kind == Verdict::Kind::pass) {
      // The host re-run of the case passed: a failure the host oracle confirmed on the device's
      // outputs stands (a kernel that is not deterministic); an unconfirmed one is a disagreement.
      v.kind = Verdict::Kind::fail;
      v.check = dev->confirmed ? dev->check : std::string(kCheckerDisagreement);
      v.message = dev->confirmed ? dev->message + " (on the device run; the host re-run of the case passed)"
                                 : "the device checker flagged case #" + std::to_string(index) + " (" + dev->message +
                                       ") and the host evaluation of it passes";
    }
    if (v.kind == Verdict::Kind::abandoned) {
      r.next_index = index;  // not judged: a resumed campaign runs it again
      if (g_stop) {
        r.interrupted = true;
      } else if (!aborted_by_loss()) {
        log << (opt.progress ? "\n" : "") << "case #" << index << " was still running " << kBudgetGraceSeconds
            << " s after the end of the budget: abandoned (not counted)\n";
      }
      break;
    }
    if (v.kind == Verdict::Kind::skipped) {
      ++r.skipped;
      continue;
    }
    if (v.kind == Verdict::Kind::outside_contract) {
      ++r.outside_contract;
      ++r.outside_contract_reasons[v.outside_key];
      continue;
    }
    ++r.cases;
    r.rows += c.T;
    const bool device_tags = dev && dev->kind == DK::pass;  // its logits stayed on the device
    for (const auto& cls : device_tags ? dev->classes : classify(c)) ++r.classes[cls];

    if (v.failed() && v.check == kCheckerDisagreement) {
      // A checker bug: recorded as found (the case is the counter case), never shrunk.
      run.record_failure(v.check, v.message, seed, index, c, c, 0, 0, ", not shrunk");
    } else if (v.failed()) {
      PendingShrink& ps = ac.shrink;
      ps = PendingShrink{true, v.check, v.message, seed, index, c, c, 0, 0};
      const std::string check = v.check;
      std::int64_t hint = v.report.violations.empty() ? (dev ? dev->row : -1) : v.report.violations.front().row;
      const Clock::time_point shrink_end =
          opt.shrink_seconds > 0 ? after(Clock::now(), opt.shrink_seconds) : Clock::time_point::max();
      shrinking = true;
      ShrinkResult s = shrink_case(
          c,
          [&](const RoutingCase& cand) {
            ac.in_flight = &cand;
            ac.in_flight_is_candidate = true;
            Verdict w = evaluate(guarded, cand, oracle);
            ac.in_flight = nullptr;
            ++ps.attempts;
            if (!(w.failed() && w.check == check)) return false;
            ps.best = cand;
            ps.message = w.message;
            ++ps.steps;
            return true;
          },
          hint, opt.shrink_attempts,
          [&] {
            const auto now = Clock::now();
            return g_stop != 0 || (has_deadline && now >= deadline) || now >= shrink_end || !target.lost().empty();
          });
      shrinking = false;
      ps.active = false;
      std::string note;
      if (s.stopped) {
        note = !target.lost().empty() ? ", stopped: the target can run nothing more"
               : g_stop               ? ", stopped by the stop request"
                      : (has_deadline && Clock::now() >= deadline ? ", stopped by the time budget"
                                                                  : ", stopped after " + human_number(opt.shrink_seconds) + " s");
      }
      const bool recorded = run.record_failure(check, ps.message, seed, index, c, s.minimal, s.steps, s.attempts, note);
      if (s.stopped && g_stop) run.cut_short = CampaignRun::CutShort{index, c.T, classify(c), recorded};
    }

    if (opt.progress && seconds_since(last_progress) >= 0.5) {
      last_progress = Clock::now();
      const double rs = std::max(run_s, 1e-9);
      log << "\r[" << std::fixed << std::setprecision(1) << r.elapsed_s << "s";
      if (opt.seconds > 0) log << "/" << opt.seconds << "s";
      log << "] cases " << r.cases << " (" << human_number(static_cast<double>(r.cases - cases_before) / rs)
          << "/s) rows " << human_number(static_cast<double>(r.rows)) << " ("
          << human_number(static_cast<double>(r.rows - rows_before) / rs) << "/s) failures " << r.failures.size()
          << "   " << std::flush;
      log.unsetf(std::ios::fixed);
    }
    if (seconds_since(last_state) >= 5.0) {
      last_state = Clock::now();
      sync_device_stats();
      run.save_state();
    }
  }
  watchdog.reset();
  r.elapsed_s = run.elapsed();
  {
    const double own = std::max(r.elapsed_s - run.elapsed_before, 1e-9);
    r.cases_per_s = static_cast<double>(r.cases - cases_before) / own;
    r.rows_per_s = static_cast<double>(r.rows - rows_before) / own;
  }
  sync_device_stats();
  if (opt.progress) log << "\n";
  run.write_outputs();
  return r;
}

nlohmann::json device_check_json(const DeviceCheckStats& d) {
  nlohmann::json j = nlohmann::json::object();
  for (const DeviceCheckField& f : kDeviceCheckFields) {
    if (f.count != nullptr) j[f.name] = d.*f.count;
    else j[f.name] = d.*f.seconds;
  }
  return j;
}

std::string campaign_json(const CampaignResult& r) {
  nlohmann::json j;
  j["schema"] = "moecheck-campaign/1";
  j["tool"] = {{"version", tool_version()}, {"commit", source_commit()},
               {"torch", MOECHECK_TORCH_VERSION}, {"cuda", MOECHECK_CUDA_VERSION}};
  std::string dev_name =
      r.device != "cuda" ? std::string("host") : !r.device_name.empty() ? r.device_name : cuda_device_name();
  j["device"] = {{"kind", r.device}, {"name", dev_name}};
  j["target"] = r.target;
  j["mutant"] = r.mutant;
  j["seed"] = r.seed;
  j["shard"] = {{"index", r.shard_index}, {"count", r.shard_count}};
  j["budget"] = {{"seconds", r.budget_seconds > 0 ? nlohmann::json(r.budget_seconds) : nlohmann::json()},
                 {"cases", r.budget_cases > 0 ? nlohmann::json(r.budget_cases) : nlohmann::json()}};
  j["limits"] = {{"max_failures", r.max_failures}, {"shrink_attempts", r.shrink_attempts}};
  j["started"] = r.started;
  j["elapsed_s"] = r.elapsed_s;
  j["cases"] = r.cases;
  j["rows"] = r.rows;
  j["skipped"] = r.skipped;
  j["contract"] = {{"name", r.contract.name}, {"spec", contract_spec(r.contract)},
                   {"description", describe_contract(r.contract)}};
  j["outside_contract"] = r.outside_contract;
  j["outside_contract_reasons"] = r.outside_contract_reasons;
  j["failures"] = r.failures.size();
  j["duplicate_failures"] = r.duplicate_failures;
  j["interrupted"] = r.interrupted;
  j["aborted"] = r.aborted;
  if (r.aborted) j["abort_reason"] = r.abort_reason;
  j["case_timeout_s"] = r.case_timeout;
  j["next_index"] = r.next_index;
  nlohmann::json drawn_families = nlohmann::json::array(), drawn_dtypes = nlohmann::json::array();
  for (Family f : r.drawn.families) drawn_families.push_back(family_name(f));
  for (DType d : r.drawn.dtypes) drawn_dtypes.push_back(dtype_name(d));
  j["generator"] = {{"families", drawn_families}, {"dtypes", drawn_dtypes}, {"max_T", r.drawn.max_T},
                    {"max_E", r.drawn.max_E}, {"max_k", r.drawn.max_k}, {"restriction", r.restriction}};
  j["expected_classes"] = r.expected_classes;
  j["rates"] = {{"cases_per_s", r.cases_per_s}, {"rows_per_s", r.rows_per_s}};
  {
    nlohmann::json check = {{"path", r.check_path}};
    if (r.check_path == "device") {
      check["device"] = device_check_json(r.device_check);
    }
    j["check"] = check;
  }
  j["classes"] = r.classes;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& f : r.failures) list.push_back(failure_json(f, r));
  j["failure_list"] = list;
  return j.dump(1);
}

std::string campaign_junit(const CampaignResult& r) {
  std::ostringstream os;
  // An interrupted or aborted campaign is an error of the "campaign" test case: a cancelled run
  // must not look green in a CI system that reads only this file.
  const int errors = r.interrupted || r.aborted ? 1 : 0;
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  const std::size_t tests = 1 + r.failures.size() + (r.outside_contract > 0 ? 1 : 0);
  os << "<testsuites tests=\"" << tests << "\" failures=\"" << r.failures.size()
     << "\" errors=\"" << errors << "\" time=\"" << r.elapsed_s << "\">\n";
  os << " <testsuite name=\"moecheck.fuzz." << xml_escape(r.target) << "\" tests=\""
     << tests << "\" failures=\"" << r.failures.size() << "\" errors=\"" << errors
     << "\" skipped=\"" << (r.outside_contract > 0 ? 1 : 0)
     << "\" time=\"" << r.elapsed_s << "\">\n";
  os << "  <properties><property name=\"seed\" value=\"" << r.seed
     << "\"/><property name=\"mutant\" value=\"" << xml_escape(r.mutant)
     << "\"/><property name=\"cases\" value=\"" << r.cases << "\"/><property name=\"rows\" value=\""
     << r.rows << "\"/><property name=\"contract\" value=\"" << xml_escape(contract_spec(r.contract))
     << "\"/><property name=\"outside_contract\" value=\"" << r.outside_contract << "\"/></properties>\n";
  os << "  <testcase classname=\"moecheck.fuzz\" name=\"campaign\" time=\"" << r.elapsed_s << "\"";
  if (errors) {
    const std::string why = r.aborted ? "aborted: " + r.abort_reason
                                      : "interrupted before the budget ran out (next case " +
                                            std::to_string(r.next_index) + "; resume with --resume --state FILE)";
    os << ">\n   <error message=\"" << xml_escape(why) << "\"/>\n  </testcase>\n";
  } else {
    os << "/>\n";
  }
  if (r.outside_contract > 0) {  // shown, never failing
    std::string why;
    for (const auto& [reason, n] : r.outside_contract_reasons) why += (why.empty() ? "" : ", ") + reason + ": " + std::to_string(n);
    os << "  <testcase classname=\"moecheck.fuzz\" name=\"outside-contract\"><skipped message=\""
       << xml_escape(std::to_string(r.outside_contract) + " case(s) outside contract '" + r.contract.name + "' (" + why + ")")
       << "\"/></testcase>\n";
  }
  for (const auto& f : r.failures) {
    os << "  <testcase classname=\"moecheck.fuzz." << xml_escape(f.check) << "\" name=\""
       << xml_escape(f.signature) << "\">\n   <failure message=\"" << xml_escape(f.message)
       << "\">" << xml_escape(f.replay) << "</failure>\n  </testcase>\n";
  }
  os << " </testsuite>\n</testsuites>\n";
  return os.str();
}

}  // namespace moecheck
