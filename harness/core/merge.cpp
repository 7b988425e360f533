#include "harness/core/merge.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "harness/core/corpus.hpp"
#include "harness/core/write_once.hpp"
#include "harness/core/results_json.hpp"

namespace moecheck {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kCampaignSchema = "moecheck-campaign/1";
constexpr const char* kStateSchema = "moecheck-campaign-state/1";
/// Campaign documents are small (a failure list); this only bounds hostile input.
constexpr std::int64_t kMaxCampaignBytes = std::int64_t{256} << 20;

/// Fields that identify a campaign: two shards merge only when all of them are equal (a field
/// absent from both documents is equal).
struct IdentityField {
  const char* name;
  const char* pointer;
};
constexpr IdentityField kIdentity[] = {
    {"schema", "/schema"},       {"tool.version", "/tool/version"}, {"tool.commit", "/tool/commit"},
    {"target", "/target"},       {"mutant", "/mutant"},             {"seed", "/seed"},
    {"shard.count", "/shard/count"}, {"budget", "/budget"},         {"device.kind", "/device/kind"},
    {"generator", "/generator"}, {"limits", "/limits"},             {"contract", "/contract"},
    {"case_timeout_s", "/case_timeout_s"},
};

std::string short_dump(const json* v) {
  if (!v) return "absent";
  std::string s = v->dump();
  if (s.size() > 160) s = s.substr(0, 157) + "...";
  return s;
}

const json* find_pointer(const json& doc, const char* pointer) {
  const json::json_pointer p(pointer);
  return doc.contains(p) ? &doc.at(p) : nullptr;
}

/// Typed field access whose errors name the origin and the dotted field.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}

  const json& at(const json& obj, const char* key, const std::string& dotted) const {
    if (!obj.is_object() || !obj.contains(key)) fail(dotted, "is missing");
    return obj.at(key);
  }
  template <class T>
  T get(const json& obj, const char* key, const std::string& dotted) const {
    const json& v = at(obj, key, dotted);
    try {
      return v.get<T>();
    } catch (const json::exception&) {
      fail(dotted, "has the wrong type (" + short_dump(&v) + ")");
    }
  }
  template <class T>
  T get_or(const json& obj, const char* key, const std::string& dotted, T fallback) const {
    if (!obj.is_object() || !obj.contains(key) || obj.at(key).is_null()) return fallback;
    return get<T>(obj, key, dotted);
  }
  [[noreturn]] void fail(const std::string& dotted, const std::string& why) const {
    throw MergeError("campaign results '" + origin_ + "': field '" + dotted + "' " + why);
  }

 private:
  std::string origin_;
};

void parse_shape(const Reader& rd, const json& s, const std::string& dotted, RoutingCase& c) {
  c.T = rd.get<std::int64_t>(s, "T", dotted + ".T");
  c.E = rd.get<std::int64_t>(s, "E", dotted + ".E");
  c.k = rd.get<int>(s, "k", dotted + ".k");
  const std::string dtype = rd.get<std::string>(s, "dtype", dotted + ".dtype");
  const std::string layout = rd.get<std::string>(s, "layout", dotted + ".layout");
  const std::string family = rd.get<std::string>(s, "family", dotted + ".family");
  if (!parse_dtype(dtype, &c.dtype)) rd.fail(dotted + ".dtype", "is not a dtype: '" + dtype + "'");
  if (!parse_layout(layout, &c.layout)) rd.fail(dotted + ".layout", "is not a layout: '" + layout + "'");
  if (!parse_family(family, &c.family)) rd.fail(dotted + ".family", "is not a routing family: '" + family + "'");
}

CampaignResult result_from_doc(const json& j, const std::string& origin) {
  const Reader rd(origin);
  if (!j.is_object()) throw MergeError("campaign results '" + origin + "': top level is not a JSON object");
  const std::string schema = rd.get<std::string>(j, "schema", "schema");
  if (schema == kStateSchema) {
    throw MergeError("'" + origin + "' is a resume state file (--state), not campaign results (--json)");
  }
  if (schema != kCampaignSchema) rd.fail("schema", "is '" + schema + "', expected '" + kCampaignSchema + "'");
  CampaignResult r;
  r.target = rd.get<std::string>(j, "target", "target");
  r.mutant = rd.get<std::string>(j, "mutant", "mutant");
  r.device = rd.get<std::string>(rd.at(j, "device", "device"), "kind", "device.kind");
  r.seed = rd.get<std::uint64_t>(j, "seed", "seed");
  const json& shard = rd.at(j, "shard", "shard");
  r.shard_index = rd.get<int>(shard, "index", "shard.index");
  r.shard_count = rd.get<int>(shard, "count", "shard.count");
  if (r.shard_count < 1 || r.shard_index < 0 || r.shard_index >= r.shard_count) {
    rd.fail("shard", "is " + std::to_string(r.shard_index) + "/" + std::to_string(r.shard_count) +
                         " (need 0 <= index < count)");
  }
  const json& budget = rd.at(j, "budget", "budget");
  r.budget_seconds = rd.get_or<double>(budget, "seconds", "budget.seconds", 0.0);
  r.budget_cases = rd.get_or<std::int64_t>(budget, "cases", "budget.cases", 0);
  r.started = rd.get_or<std::string>(j, "started", "started", "");
  r.elapsed_s = rd.get<double>(j, "elapsed_s", "elapsed_s");
  r.next_index = rd.get<std::int64_t>(j, "next_index", "next_index");
  r.cases = rd.get<std::int64_t>(j, "cases", "cases");
  r.rows = rd.get<std::int64_t>(j, "rows", "rows");
  r.skipped = rd.get_or<std::int64_t>(j, "skipped", "skipped", 0);
  r.duplicate_failures = rd.get_or<std::int64_t>(j, "duplicate_failures", "duplicate_failures", 0);
  r.interrupted = rd.get_or<bool>(j, "interrupted", "interrupted", false);
  r.aborted = rd.get_or<bool>(j, "aborted", "aborted", false);
  r.abort_reason = rd.get_or<std::string>(j, "abort_reason", "abort_reason", "");
  r.case_timeout = rd.get_or<double>(j, "case_timeout_s", "case_timeout_s", 0.0);
  if (const json* gen = find_pointer(j, "/generator")) {
    r.restriction = rd.get_or<std::string>(*gen, "restriction", "generator.restriction", "");
  }
  r.expected_classes = rd.get_or<std::vector<std::string>>(j, "expected_classes", "expected_classes", {});
  if (const json* rates = find_pointer(j, "/rates")) {
    r.cases_per_s = rd.get_or<double>(*rates, "cases_per_s", "rates.cases_per_s", 0.0);
    r.rows_per_s = rd.get_or<double>(*rates, "rows_per_s", "rates.rows_per_s", 0.0);
  }
  if (const json* check = find_pointer(j, "/check")) {
    r.check_path = rd.get_or<std::string>(*check, "path", "check.path", "host");
    if (const json* d = find_pointer(*check, "/device")) {
      for (const DeviceCheckField& f : kDeviceCheckFields) {
        const std::string where = std::string("check.device.") + f.name;
        if (f.count != nullptr) r.device_check.*f.count = rd.get_or<std::int64_t>(*d, f.name, where, 0);
        else r.device_check.*f.seconds = rd.get_or<double>(*d, f.name, where, 0.0);
      }
    }
  }
  if (const json* lim = find_pointer(j, "/limits")) {
    r.max_failures = rd.get_or<int>(*lim, "max_failures", "limits.max_failures", 0);
    r.shrink_attempts = rd.get_or<int>(*lim, "shrink_attempts", "limits.shrink_attempts", 0);
  }
  const json& classes = rd.at(j, "classes", "classes");
  if (!classes.is_object()) rd.fail("classes", "is not an object");
  for (const auto& [name, v] : classes.items()) r.classes[name] = rd.get<std::int64_t>(classes, name.c_str(), "classes." + name);
  const json& list = rd.at(j, "failure_list", "failure_list");
  if (!list.is_array()) rd.fail("failure_list", "is not an array");
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json& f = list[i];
    const std::string at = "failure_list[" + std::to_string(i) + "]";
    FailureRecord rec;
    rec.signature = rd.get<std::string>(f, "signature", at + ".signature");
    rec.check = rd.get<std::string>(f, "check", at + ".check");
    rec.message = rd.get_or<std::string>(f, "message", at + ".message", "");
    rec.seed = rd.get<std::uint64_t>(f, "seed", at + ".seed");
    rec.case_index = rd.get<std::int64_t>(f, "case_index", at + ".case_index");
    rec.shrink_steps = rd.get_or<int>(f, "shrink_steps", at + ".shrink_steps", 0);
    rec.corpus_file = rd.get_or<std::string>(f, "corpus_file", at + ".corpus_file", "");
    rec.replay = rd.get_or<std::string>(f, "replay", at + ".replay", "");
    parse_shape(rd, rd.at(f, "shrunk", at + ".shrunk"), at + ".shrunk", rec.shrunk);
    parse_shape(rd, rd.at(f, "original", at + ".original"), at + ".original", rec.original);
    r.failures.push_back(std::move(rec));
  }
  return r;
}

json parse_text(const std::string& text, const std::string& origin) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw MergeError("campaign results '" + origin + "': not valid JSON: " + e.what());
  }
}

struct Input {
  std::string path;
  int order = 0;  ///< position on the command line
  json doc;
  CampaignResult r;
};

Input load_input(const std::string& path, int order) {
  Input in;
  in.path = path;
  in.order = order;
  std::string text;
  try {
    text = read_bounded_file(path, kMaxCampaignBytes);
  } catch (const CorpusError& e) {
    throw MergeError("cannot read campaign results '" + path + "': " + e.what());
  }
  in.doc = parse_text(text, path);
  in.r = result_from_doc(in.doc, path);
  return in;
}

/// The first identity field in which `b` differs from `a`, with both values; "" when none.
std::string identity_difference(const Input& a, const Input& b, bool same_budget) {
  for (const auto& f : kIdentity) {
    if (!same_budget && std::strcmp(f.name, "budget") == 0) continue;
    const json* va = find_pointer(a.doc, f.pointer);
    const json* vb = find_pointer(b.doc, f.pointer);
    if ((va == nullptr) != (vb == nullptr) || (va && *va != *vb)) {
      return "field '" + std::string(f.name) + "' differs (" + short_dump(va) + " in '" + a.path + "', " +
             short_dump(vb) + " in '" + b.path + "')";
    }
  }
  return "";
}

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

std::string base_name(const std::string& p) { return fs::path(p).filename().string(); }

std::string canonical_or_self(const std::string& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  return ec ? p : c.string();
}

struct CorpusSource {
  std::string path;   ///< where it is read from
  std::string bytes;  ///< its content (validated as a corpus entry)
};

/// Places one source into `into`; returns its path there. Never overwrites a file.
std::string place_corpus_file(const CorpusSource& src, const fs::path& into, bool write_once,
                              MergeResult& m) {
  const std::string name = base_name(src.path);
  const fs::path ext = fs::path(name).extension();
  const std::string stem = fs::path(name).stem().string();
  if (canonical_or_self((into / name).string()) == canonical_or_self(src.path)) {
    ++m.corpus_present;
    return (into / name).string();
  }
  copy_corpus_sidecars(src.path, src.bytes, into.string());  // before the .case that names it
  for (int k = 1; k < 100000; ++k) {
    const fs::path dest = into / (k == 1 ? name : stem + "-" + std::to_string(k) + ext.string());
    std::error_code ec;
    if (fs::exists(dest, ec)) {
      std::string there;
      try {
        there = read_bounded_file(dest.string(), kCorpusMaxFileBytes);
      } catch (const CorpusError&) {
        there.clear();  // unreadable: certainly not the same file; never touched
      }
      if (there == src.bytes) {
        ++m.corpus_present;
        return dest.string();
      }
      if (write_once && k == 1) {
        m.notes.push_back("kept the existing '" + dest.string() + "' (same name as '" + src.path + "')");
        ++m.corpus_present;
        return dest.string();
      }
      continue;
    }
    if (!write_file_once(into.string(), dest.filename().string(), src.bytes).created) {
      --k;  // taken meanwhile: look at it again
      continue;
    }
    ++m.corpus_copied;
    if (k > 1) {
      ++m.corpus_renamed;
      m.notes.push_back("'" + src.path + "' differs from '" + (into / name).string() + "': kept as '" +
                        dest.string() + "'");
    }
    return dest.string();
  }
  throw std::runtime_error("no free name for '" + src.path + "' in '" + into.string() + "'");
}

}  // namespace

CampaignResult campaign_from_json(const std::string& text, const std::string& origin) {
  return result_from_doc(parse_text(text, origin), origin);
}

MergeResult merge_campaigns(const std::vector<std::string>& shard_paths, const MergeOptions& opt) {
  if (shard_paths.empty()) throw MergeError("no campaign results to merge");
  if (opt.parent_count < 1 || opt.parent_index < 0 || opt.parent_index >= opt.parent_count) {
    throw MergeError("merge: parent shard " + std::to_string(opt.parent_index) + "/" +
                     std::to_string(opt.parent_count) + " is not 0 <= i < n");
  }
  if (!opt.corpus_dirs.empty() && opt.into_dir.empty()) {
    throw MergeError("corpus folders to merge need a destination (--into DIR)");
  }

  // ---- read and check every input before anything is written
  std::vector<Input> inputs;
  for (std::size_t i = 0; i < shard_paths.size(); ++i) inputs.push_back(load_input(shard_paths[i], static_cast<int>(i)));
  for (std::size_t i = 1; i < inputs.size(); ++i) {
    const std::string diff = identity_difference(inputs[0], inputs[i], opt.same_budget);
    if (!diff.empty()) throw MergeError("not shards of one campaign: " + diff);
  }
  const int count = inputs[0].r.shard_count;
  if (count % opt.parent_count != 0) {
    throw MergeError("shards of " + std::to_string(count) + " do not partition shard " +
                     std::to_string(opt.parent_index) + "/" + std::to_string(opt.parent_count));
  }
  std::map<int, std::vector<const Input*>> by_index;
  for (const Input& in : inputs) {
    if (in.r.shard_index % opt.parent_count != opt.parent_index) {
      throw MergeError("'" + in.path + "' is shard " + std::to_string(in.r.shard_index) + "/" +
                       std::to_string(count) + ", which is not part of shard " + std::to_string(opt.parent_index) +
                       "/" + std::to_string(opt.parent_count));
    }
    by_index[in.r.shard_index].push_back(&in);
  }
  MergeResult m;
  for (int idx = opt.parent_index; idx < count; idx += opt.parent_count) {
    auto it = by_index.find(idx);
    if (it == by_index.end()) m.missing.push_back(idx);
    else if (it->second.size() > 1) m.duplicated.push_back(idx);
  }
  if (!opt.allow_partial && (!m.missing.empty() || !m.duplicated.empty())) {
    std::string why;
    if (!m.missing.empty()) why += "missing shard indices " + join_ints(m.missing) + " of " + std::to_string(count);
    if (!m.duplicated.empty()) {
      why += std::string(why.empty() ? "" : "; ") + "shard indices given more than once: " + join_ints(m.duplicated);
    }
    throw MergeError(why + " (--allow-partial merges what is there)");
  }
  // One document per index: a duplicated index keeps the one that ran furthest.
  std::vector<const Input*> used;
  for (auto& [idx, list] : by_index) {
    const Input* best = list.front();
    for (const Input* in : list) {
      if (in->r.next_index > best->r.next_index) best = in;
    }
    for (const Input* in : list) {
      if (in != best) m.notes.push_back("shard " + std::to_string(idx) + ": used '" + best->path + "', ignored '" + in->path + "'");
    }
    used.push_back(best);
  }
  for (int idx : m.missing) m.notes.push_back("shard " + std::to_string(idx) + "/" + std::to_string(count) + " is missing");

  // ---- failures: one per signature, the lowest case index (what one process would keep)
  struct Kept {
    json entry;
    std::int64_t case_index;
  };
  std::map<std::string, Kept> kept;
  std::int64_t listed = 0;
  for (const Input* in : used) {
    const json& list = in->doc.at("failure_list");
    for (std::size_t i = 0; i < list.size(); ++i) {
      ++listed;
      const FailureRecord& f = in->r.failures[i];
      auto it = kept.find(f.signature);
      if (it == kept.end() || f.case_index < it->second.case_index) kept[f.signature] = Kept{list[i], f.case_index};
    }
  }
  m.cross_shard_duplicates = listed - static_cast<std::int64_t>(kept.size());
  std::vector<Kept> failures;
  for (auto& [sig, k] : kept) failures.push_back(std::move(k));
  std::stable_sort(failures.begin(), failures.end(),
                   [](const Kept& a, const Kept& b) { return a.case_index < b.case_index; });

  // ---- corpus: read and validate every source, then copy without overwriting anything
  if (!opt.into_dir.empty()) {
    std::vector<std::string> listed_files;
    try {
      // A shard that found nothing has an empty corpus folder: that is a result, not an error.
      if (!opt.corpus_dirs.empty()) listed_files = list_corpus_paths(opt.corpus_dirs, /*allow_empty=*/true);
    } catch (const CorpusError& e) {
      throw MergeError(std::string("corpus folder: ") + e.what());
    }
    std::vector<CorpusSource> sources;
    std::map<std::string, int> source_index;  // canonical path -> sources[]
    std::vector<int> source_of_failure(failures.size(), -1);
    auto add_source = [&](const std::string& path) -> int {
      const auto [it, fresh] = source_index.emplace(canonical_or_self(path), static_cast<int>(sources.size()));
      if (!fresh) return it->second;
      CorpusSource src;
      src.path = path;
      try {
        src.bytes = read_bounded_file(path, kCorpusMaxFileBytes);
        (void)parse_corpus_entry(src.bytes, path);
      } catch (const CorpusError& e) {
        throw MergeError(std::string("corpus file: ") + e.what());
      }
      sources.push_back(std::move(src));
      return static_cast<int>(sources.size() - 1);
    };
    for (std::size_t i = 0; i < failures.size(); ++i) {
      const std::string file = failures[i].entry.value("corpus_file", std::string());
      if (file.empty()) continue;
      std::string found;
      std::error_code ec;
      if (fs::is_regular_file(file, ec)) {
        found = file;
      } else {
        for (const std::string& p : listed_files) {
          if (base_name(p) == base_name(file)) {
            found = p;
            break;
          }
        }
      }
      if (found.empty()) {
        m.notes.push_back("corpus file '" + file + "' of failure " + failures[i].entry.value("signature", "") +
                          " not found; its entry keeps that path");
        continue;
      }
      source_of_failure[i] = add_source(found);
    }
    if (!opt.kept_failures_only) {
      for (const std::string& p : listed_files) add_source(p);
    }
    std::vector<std::string> placed(sources.size());
    try {
      fs::create_directories(opt.into_dir);
      for (std::size_t s = 0; s < sources.size(); ++s) {
        placed[s] = place_corpus_file(sources[s], opt.into_dir, opt.kept_failures_only, m);
      }
    } catch (const std::exception& e) {
      throw MergeError("merging corpus into '" + opt.into_dir + "': " + e.what());
    }
    for (std::size_t i = 0; i < failures.size(); ++i) {
      if (source_of_failure[i] < 0) continue;
      json& f = failures[i].entry;
      const std::string dest = placed[static_cast<std::size_t>(source_of_failure[i])];
      f["corpus_file"] = dest;
      if (f.value("replay", std::string()).rfind("moecheck replay ", 0) == 0) f["replay"] = "moecheck replay " + dest;
    }
  }

  // ---- the merged document: the lowest shard's document with merged totals
  const Input& first = *used.front();
  json out = first.doc;
  std::int64_t cases = 0, rows = 0, skipped = 0, dups = 0, budget_cases = 0, next_index = -1;
  double elapsed = 0, shard_seconds = 0, budget_seconds = 0;
  bool interrupted = !m.missing.empty();
  std::string started;
  std::map<std::string, std::int64_t> classes;
  std::vector<std::string> device_names;
  json shards = json::array();
  for (const Input* in : used) {
    const CampaignResult& r = in->r;
    cases += r.cases;
    rows += r.rows;
    skipped += r.skipped;
    dups += r.duplicate_failures;
    budget_cases += r.budget_cases;
    budget_seconds = std::max(budget_seconds, r.budget_seconds);
    elapsed = std::max(elapsed, r.elapsed_s);
    shard_seconds += r.elapsed_s;
    interrupted = interrupted || r.interrupted;
    if (next_index < 0 || r.next_index < next_index) next_index = r.next_index;
    if (!r.started.empty() && (started.empty() || r.started < started)) started = r.started;
    for (const auto& [name, n] : r.classes) classes[name] += n;
    const std::string dev = in->doc.contains("device") ? in->doc["device"].value("name", std::string()) : "";
    if (!dev.empty() && std::find(device_names.begin(), device_names.end(), dev) == device_names.end()) {
      device_names.push_back(dev);
    }
    shards.push_back({{"index", r.shard_index}, {"count", r.shard_count}, {"file", in->path},
                      {"cases", r.cases}, {"rows", r.rows}, {"skipped", r.skipped},
                      {"failures", r.failures.size()}, {"elapsed_s", r.elapsed_s},
                      {"interrupted", r.interrupted}, {"started", r.started}, {"next_index", r.next_index},
                      {"device", dev}});
    m.shards.push_back(MergedShard{r.shard_index, r.shard_count, in->path, r.cases, r.rows, r.next_index,
                                   r.elapsed_s, r.failures.size(), r.interrupted});
  }
  out["shard"] = {{"index", opt.parent_index}, {"count", opt.parent_count}};
  out["budget"] = {{"seconds", budget_seconds > 0 ? json(budget_seconds) : json()},
                   {"cases", budget_cases > 0 ? json(budget_cases) : json()}};
  if (!started.empty()) out["started"] = started;
  out["elapsed_s"] = elapsed;
  out["cases"] = cases;
  out["rows"] = rows;
  out["skipped"] = skipped;
  out["failures"] = failures.size();
  out["duplicate_failures"] = dups + m.cross_shard_duplicates;
  out["interrupted"] = interrupted;
  out["next_index"] = next_index;
  out["classes"] = classes;
  // Rates of the merged campaign (its shards run side by side: per second of the longest one) and
  // the checking path with the device checker's counters summed ("mixed" when shards differ).
  if (elapsed > 0) {
    out["rates"] = {{"cases_per_s", static_cast<double>(cases) / elapsed},
                    {"rows_per_s", static_cast<double>(rows) / elapsed}};
  }
  {
    std::string path;
    DeviceCheckStats sum;
    bool device = false;
    for (const Input* in : used) {
      const CampaignResult& r = in->r;
      path = path.empty() || path == r.check_path ? r.check_path : std::string("mixed");
      if (r.check_path != "device") continue;
      device = true;
      sum += r.device_check;
    }
    json check = {{"path", path.empty() ? std::string("host") : path}};
    if (device) {
      check["device"] = device_check_json(sum);
    }
    out["check"] = check;
  }
  if (out.contains("device") && out["device"].is_object() && !device_names.empty()) {
    std::string names;
    for (const auto& n : device_names) names += (names.empty() ? "" : ", ") + n;
    out["device"]["name"] = names;
  }
  // A shard ended by the code under test (exit(), a hang) ends the merged campaign the same way.
  bool any_abort_field = false, aborted = false;
  std::string abort_reasons;
  for (const Input* in : used) {
    if (!in->doc.contains("aborted")) continue;
    any_abort_field = true;
    const json& a = in->doc["aborted"];
    if (a.is_boolean() && a.get<bool>()) {
      aborted = true;
      const std::string why = in->doc.contains("abort_reason") && in->doc["abort_reason"].is_string()
                                  ? in->doc["abort_reason"].get<std::string>()
                                  : std::string("aborted");
      abort_reasons += (abort_reasons.empty() ? "" : "; ") + std::string("shard ") +
                       std::to_string(in->r.shard_index) + ": " + why;
    }
  }
  if (any_abort_field) {
    out["aborted"] = aborted;
    if (aborted) out["abort_reason"] = abort_reasons;
    else out.erase("abort_reason");
  }
  json list = json::array();
  for (auto& f : failures) list.push_back(std::move(f.entry));
  out["failure_list"] = std::move(list);
  out["merged_from"] = {{"parent", {{"index", opt.parent_index}, {"count", opt.parent_count}}},
                        {"shard_count", count},
                        {"shards", shards},
                        {"missing", m.missing},
                        {"duplicated", m.duplicated},
                        {"cross_shard_duplicates", m.cross_shard_duplicates},
                        {"shard_seconds", shard_seconds}};
  m.json = out.dump(1);
  m.campaign = result_from_doc(out, "merged campaign");
  return m;
}

void write_merge_outputs(const MergeResult& m, const std::string& json_path, const std::string& junit_path) {
  if (!json_path.empty()) write_atomically(json_path, m.json);
  if (!junit_path.empty()) write_atomically(junit_path, campaign_junit(m.campaign));
}

}  // namespace moecheck
