// Substitution corpus (harness/torch/substitution_corpus.hpp) and the module rows of the kill
// matrix (harness/torch/module_mutation.hpp): .subst files round-trip, malformed files are
// errors naming file, line and field, saved counterexamples are never replaced and replay, and
// every stale-capture variant of the module is killed.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "harness/core/corpus.hpp"
#include "harness/torch/module_mutation.hpp"
#include "harness/torch/substitution_corpus.hpp"
#include "properties/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moecheck;
using namespace moecheck::harness;

namespace {

using moecheck_test::temp_dir;
using moecheck_test::names_in;

/// A real counterexample: capture_handle is caught by scale_substitution under rebind.
struct Found {
  SubstitutionOptions so;
  PropertyResult result;
};
const Found& found_counterexample() {
  static const Found f = [] {
    Found out;
    out.so.spec.variant = ModuleVariant::capture_handle;
    out.so.properties = {SubstitutionProperty::scale_substitution};
    out.so.modes = {SubstitutionMode::rebind};
    out.so.cases = 50;
    const SubstitutionReport rep = run_substitution_suite(out.so);
    out.result = rep.results.at(0);
    return out;
  }();
  return f;
}

TEST(SubstitutionCorpus, RecordOfARealFailureRoundTrips) {
  const Found& f = found_counterexample();
  ASSERT_TRUE(property_failed(f.result)) << "capture_handle not caught";
  const SubstRecord rec = subst_record_of(f.so, f.result);
  EXPECT_EQ(rec.variant, "capture_handle");
  EXPECT_EQ(rec.property, "scale_substitution");
  EXPECT_EQ(rec.mode, "rebind");
  EXPECT_TRUE(rec.expect_fail);
  EXPECT_FALSE(rec.reproduce.empty());
  EXPECT_FALSE(rec.case_lines.empty());
  const std::string text = format_subst(rec);
  EXPECT_EQ(text.rfind("moecheck-substitution 1\n", 0), 0u);
  const SubstRecord back = parse_subst(text, "mem.subst");
  EXPECT_EQ(back.variant, rec.variant);
  EXPECT_EQ(back.backend, rec.backend);
  EXPECT_EQ(back.dtype, rec.dtype);
  EXPECT_EQ(back.device, rec.device);
  EXPECT_EQ(back.property, rec.property);
  EXPECT_EQ(back.mode, rec.mode);
  EXPECT_EQ(back.seed, rec.seed);
  EXPECT_EQ(back.cases, rec.cases);
  EXPECT_EQ(back.reproduce, rec.reproduce);
  EXPECT_EQ(back.expect_fail, rec.expect_fail);
  EXPECT_EQ(back.toolkit, rec.toolkit);
  EXPECT_EQ(back.case_lines, rec.case_lines);
  EXPECT_EQ(back.explanation_lines, rec.explanation_lines);
  EXPECT_EQ(format_subst(back), text);
  EXPECT_EQ(back.lines.at("reproduce"), 11);
  EXPECT_EQ(subst_file_name(rec), "capture_handle-scale_substitution-rebind.subst");
  SubstRecord cuda = rec;
  cuda.device = "cuda:1";
  EXPECT_EQ(subst_file_name(cuda), "capture_handle-scale_substitution-rebind-composite-f32-cuda_1.subst");
}

const char* kValid =
    "moecheck-substitution 1\n"   // 1
    "# a comment\n"               // 2
    "variant capture_handle\n"    // 3
    "backend composite\n"         // 4
    "dtype f32\n"                 // 5
    "device cpu\n"                // 6
    "property scale_substitution\n"  // 7
    "mode rebind\n"               // 8
    "seed 1\n"                    // 9
    "cases 100\n"                 // 10
    "reproduce abc\n"             // 11
    "expect fail\n"               // 12
    "end\n";                      // 13

/// `kValid` with line `line` (1-based) replaced by `with` ("" removes it).
std::string with_line(int line, const std::string& with) {
  std::string out, l;
  std::istringstream in(kValid);
  for (int n = 1; std::getline(in, l); ++n) {
    if (n != line) out += l + "\n";
    else if (!with.empty()) out += with + "\n";
  }
  return out;
}

void expect_error(const std::string& text, int line, const std::string& field, const std::string& needle) {
  try {
    parse_subst(text, "bad.subst");
    ADD_FAILURE() << "accepted malformed input (wanted field '" << field << "'):\n" << text;
  } catch (const CorpusError& e) {
    EXPECT_EQ(e.file(), "bad.subst") << e.what();
    EXPECT_EQ(e.line(), line) << e.what();
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(SubstitutionCorpus, MalformedFilesNameFileLineAndField) {
  EXPECT_NO_THROW(parse_subst(kValid, "ok.subst"));
  expect_error("", 0, "header", "empty file");
  expect_error(with_line(1, "moecheck-case 1"), 1, "header", "expected 'moecheck-substitution 1'");
  expect_error(with_line(1, "moecheck-substitution 2"), 1, "header", "unsupported format version '2'");
  expect_error(with_line(3, "variant bogus"), 3, "variant", "unknown module variant 'bogus'");
  expect_error(with_line(4, "backend gpu"), 4, "backend", "unknown routing backend");
  expect_error(with_line(5, "dtype f64"), 5, "dtype", "unknown dtype");
  expect_error(with_line(6, "device tpu"), 6, "device", "unknown device");
  expect_error(with_line(7, "property nope"), 7, "property", "unknown property");
  expect_error(with_line(8, "mode swap"), 8, "mode", "unknown substitution mode");
  expect_error(with_line(9, "sede 1"), 9, "sede", "unknown field");
  expect_error(with_line(9, "seed -1"), 9, "seed", "non-negative decimal integer");
  expect_error(with_line(10, "cases 0"), 10, "cases", "cases must be in [1, 1e8]");
  expect_error(with_line(10, "cases"), 10, "cases", "missing value");
  expect_error(with_line(12, "expect maybe"), 12, "expect", "expected 'fail' or 'pass'");
  expect_error(with_line(10, "seed 2"), 10, "seed", "more than once");
  expect_error(with_line(6, "device cpu\x01"), 6, "text", "control byte");
  expect_error(std::string(kValid) + "variant correct\n", 14, "variant", "nothing may follow 'end'");
  expect_error(with_line(13, ""), 12, "end", "missing 'end' line");
  expect_error(with_line(13, "end now"), 13, "end", "'end' takes no value");
  expect_error(with_line(3, ""), 12, "variant", "required field missing");
  expect_error(with_line(11, ""), 12, "reproduce", "required field missing");
}

TEST(SubstitutionCorpus, FilesAreReadBoundedAndListedPerFolder) {
  const fs::path dir = temp_dir("subst_files");
  fs::create_directories(dir / "empty");
  std::ofstream(dir / "a.subst") << kValid;
  std::ofstream(dir / "notes.txt") << "not a corpus file";
  EXPECT_EQ(read_subst_file((dir / "a.subst").string()).variant, "capture_handle");
  EXPECT_EQ(list_subst_paths(dir.string()), std::vector<std::string>{(dir / "a.subst").string()});
  EXPECT_THROW(list_subst_paths((dir / "empty").string()), CorpusError);
  EXPECT_TRUE(list_subst_paths((dir / "empty").string(), true).empty());
  EXPECT_THROW(list_subst_paths((dir / "missing").string()), CorpusError);
  std::ofstream(dir / "big.subst") << std::string(static_cast<std::size_t>(kSubstMaxFileBytes) + 1, '#');
  try {
    read_subst_file((dir / "big.subst").string());
    ADD_FAILURE() << "read an oversized file";
  } catch (const CorpusError& e) {
    EXPECT_EQ(e.field(), "file");
  }
  fs::remove_all(dir);
}

TEST(SubstitutionCorpus, SavedCounterexampleIsNeverReplacedAndReplays) {
  const fs::path dir = temp_dir("subst_save");
  const Found& f = found_counterexample();
  ASSERT_TRUE(property_failed(f.result));
  const SubstRecord rec = subst_record_of(f.so, f.result);
  std::string status;
  const std::string path = save_subst(rec, dir.string(), &status);
  EXPECT_EQ(status, "saved");
  EXPECT_EQ(path, (dir / "capture_handle-scale_substitution-rebind.subst").string());
  EXPECT_EQ(save_subst(rec, dir.string(), &status), path);
  EXPECT_EQ(status, "unchanged");
  SubstRecord other = rec;
  other.seed = 77;
  EXPECT_EQ(save_subst(other, dir.string(), &status), path);
  EXPECT_EQ(status, "kept existing (differs from this run)");
  EXPECT_EQ(read_subst_file(path).seed, rec.seed);
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"capture_handle-scale_substitution-rebind.subst"});

  // Replays as the planted bug it is.
  const SubstReplay ok = replay_subst_record(read_subst_file(path), path);
  EXPECT_FALSE(ok.malformed) << ok.detail;
  EXPECT_TRUE(ok.ok) << ok.detail;
  EXPECT_EQ(ok.outcome, "fail");
  EXPECT_TRUE(ok.note.empty());

  // Expecting a pass from a bug variant does not match.
  SubstRecord wrong = read_subst_file(path);
  wrong.expect_fail = false;
  const SubstReplay mismatch = replay_subst_record(wrong, path);
  EXPECT_FALSE(mismatch.malformed);
  EXPECT_FALSE(mismatch.ok);
  EXPECT_EQ(mismatch.outcome, "fail");
  EXPECT_EQ(mismatch.detail.rfind("the recorded case fails:", 0), 0u) << mismatch.detail;

  // A recorded case that no longer matches what the reproduce string yields does not match.
  SubstRecord changed = read_subst_file(path);
  changed.case_lines = {"E=99"};
  const SubstReplay drift = replay_subst_record(changed, path);
  EXPECT_FALSE(drift.ok);
  EXPECT_NE(drift.detail.find("generator changed"), std::string::npos) << drift.detail;

  // A reproduce string that cannot be decoded is a malformed record naming its line.
  SubstRecord garbage = read_subst_file(path);
  garbage.reproduce = "reproduce=@@@";
  const SubstReplay bad = replay_subst_record(garbage, path);
  EXPECT_TRUE(bad.malformed);
  EXPECT_NE(bad.detail.find(path + ":11: field 'reproduce'"), std::string::npos) << bad.detail;
  fs::remove_all(dir);
}

TEST(ModuleMutation, EveryStaleCaptureVariantIsKilledAndSaved) {
  const fs::path dir = temp_dir("module_mutation");
  EXPECT_EQ(module_mutant_names(), (std::vector<std::string>{"module:capture_handle", "module:capture_copy",
                                                             "module:cache_data_ptr", "module:scale_by_slot"}));
  MutationOptions o;
  o.cases = 120;  // 10 cases per (property, mode)
  o.seed = 1;
  o.corpus_dir = dir.string();
  const std::vector<KillRow> rows = run_module_mutants(o);
  ASSERT_EQ(rows.size(), 4u);
  for (const KillRow& r : rows) {
    EXPECT_EQ(r.kind, "module");
    EXPECT_EQ(r.target, "substitution:cpu");
    ASSERT_EQ(r.status, "killed") << r.mutant;
    // Modes run in order rebind, in_place, copy_into; every variant is caught under rebind.
    EXPECT_EQ(r.check, "scale_substitution/rebind") << r.mutant;
    EXPECT_TRUE(r.by_check.count(r.check)) << r.mutant;
    EXPECT_TRUE(r.by_variant.empty());
    EXPECT_EQ(r.shrunk.rfind("E=", 0), 0u) << r.shrunk;
    EXPECT_GT(r.cases_to_first, 0);
    const SubstReplay rep = replay_subst_record(read_subst_file(r.note), r.note);
    EXPECT_TRUE(rep.ok) << r.note << ": " << rep.detail;
    EXPECT_EQ(rep.outcome, "fail") << r.note;
  }
  // capture_handle is only caught under rebind; capture_copy in every mode.
  for (const auto& [check, n] : rows[0].by_check) EXPECT_NE(check.find("/rebind"), std::string::npos) << check;
  EXPECT_TRUE(rows[1].by_check.count("scale_substitution/copy_into"));
  EXPECT_EQ(names_in(dir).size(), 4u);

  // Without a corpus the note is the replay command line.
  o.corpus_dir.clear();
  o.cases = 12;
  const std::vector<KillRow> quick = run_module_mutants(o);
  for (const KillRow& r : quick) {
    if (r.status == "killed") {
      EXPECT_EQ(r.note.rfind("moecheck substitution ", 0), 0u) << r.note;
    }
  }
  fs::remove_all(dir);
}

}  // namespace
