// Corpus format: round trips, and every malformed input gives a CorpusError naming the field.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "harness/core/corpus.hpp"
#include "harness/core/generators.hpp"

namespace fs = std::filesystem;
using namespace moecheck;

namespace {

CorpusEntry sample_entry() {
  CorpusEntry e;
  e.c.family = Family::gemma4;
  e.c.dtype = DType::bf16;
  e.c.T = 2;
  e.c.E = 3;
  e.c.k = 2;
  e.c.logits = {1.0f, -INFINITY, std::nanf(""), 0.5f, 0.5f, -2.0f};
  e.c.scale = {2.0f, 0.0f, -0.5f};
  e.c.seed = 42;
  e.c.value_family = "ties";
  e.target = "kernel:warp_per_row";
  e.mutant = "scale_by_slot";
  e.expect = Expectation::fail;
  e.check = "weight";
  e.signature = "00112233aabbccdd";
  e.message = "row 0 slot 1: weight expected 0.25 got 0.5";
  return e;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return false;
    if (!std::isnan(a[i]) && a[i] != b[i]) return false;
  }
  return true;
}

/// Expects a CorpusError whose field is `field` and whose text contains `needle`.
void expect_error(const std::string& text, const std::string& field, const std::string& needle) {
  try {
    parse_corpus_entry(text, "t.case");
    ADD_FAILURE() << "accepted malformed input (wanted error in field '" << field << "'):\n" << text;
  } catch (const CorpusError& e) {
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("t.case"), std::string::npos) << e.what();
  }
}

std::string replace_line(std::string text, const std::string& prefix, const std::string& with) {
  auto p = text.find("\n" + prefix);
  if (p == std::string::npos) return text;
  auto end = text.find('\n', p + 1);
  return text.substr(0, p + 1) + with + text.substr(end);
}

}  // namespace

TEST(Corpus, RoundTripIsBitExact) {
  CorpusEntry e = sample_entry();
  std::string text = format_corpus_entry(e);
  CorpusEntry back = parse_corpus_entry(text, "mem");
  EXPECT_EQ(back.target, e.target);
  EXPECT_EQ(back.mutant, e.mutant);
  EXPECT_EQ(back.expect, Expectation::fail);
  EXPECT_EQ(back.c.T, 2);
  EXPECT_EQ(back.c.E, 3);
  EXPECT_EQ(back.c.k, 2);
  EXPECT_EQ(back.c.dtype, DType::bf16);
  EXPECT_TRUE(same_bits(back.c.logits, e.c.logits));
  EXPECT_TRUE(same_bits(back.c.scale, e.c.scale));
  EXPECT_EQ(format_corpus_entry(back), text);
}

TEST(Corpus, MalformedInputsNameTheField) {
  const std::string good = format_corpus_entry(sample_entry());
  expect_error("", "header", "empty");
  expect_error("hello\n", "header", "moecheck-case");
  expect_error("moecheck-case 7" + good.substr(good.find('\n')), "header", "not supported");
  expect_error(replace_line(good, "T ", "T -1"), "T", "outside");
  expect_error(replace_line(good, "T ", "T 9999999999999"), "T", "outside");
  expect_error(replace_line(good, "E ", "E abc"), "E", "not an integer");
  expect_error(replace_line(good, "dtype ", "dtype f64"), "dtype", "unknown dtype");
  expect_error(replace_line(good, "family ", "family switch"), "family", "unknown routing family");
  expect_error(replace_line(good, "layout ", "layout diagonal"), "layout", "unknown layout");
  expect_error(replace_line(good, "expect ", "expect maybe"), "expect", "pass or fail");
  expect_error(replace_line(good, "scale ", "scale 2 0x1p+0 0x1p+0"), "scale", "E is 3");
  expect_error(replace_line(good, "scale ", "scale 3 1 2"), "scale", "declares 3 values");
  expect_error(replace_line(good, "scale ", "scale 3 1 2 zebra"), "scale", "not a number");
  expect_error(replace_line(good, "logits ", "logits 5 3"), "logits", "does not match");
  expect_error(good + "extra\n", "end", "after 'end'");
  expect_error(good.substr(0, good.rfind("end")), "end", "missing 'end'");
  expect_error(good.substr(0, good.find("logits")), "logits", "missing 'logits'");
  expect_error(good.substr(0, good.find("0x1p+0 -inf")), "logits", "truncated");
  expect_error(replace_line(good, "target ", "colour blue"), "colour", "unknown field");
  expect_error(replace_line(good, "mutant ", "T 2"), "T", "twice");
  expect_error(std::string("moecheck-case 1\nta\0rget x\n", 25), "line", "NUL");
  // A logit that bf16 cannot hold exactly: named at its own line, row and column.
  std::string inexact = good;
  auto p = inexact.find("0x1p+0 -inf");
  inexact.replace(p, 6, "0x1.001p+0");
  expect_error(inexact, "logits", "row 0 column 0: '0x1.001p+0' is not exactly representable in bf16");
  try {
    parse_corpus_entry(inexact, "t.case");
  } catch (const CorpusError& e) {
    const int row0_line = 1 + static_cast<int>(std::count(inexact.begin(), inexact.begin() + p, '\n'));
    EXPECT_EQ(e.line(), row0_line) << e.what();
  }
  std::string inexact_row1 = good;
  p = inexact_row1.find("-0x1p+1");
  inexact_row1.replace(p, 7, "-0x1.0001p+1");
  expect_error(inexact_row1, "logits", "row 1 column 2");
  // Missing a required field.
  expect_error(replace_line(good, "k ", "# no k"), "logits", "'k'");
}

TEST(Corpus, ByteOrderMarkIsNamed) {
  const std::string good = format_corpus_entry(sample_entry());
  expect_error("\xEF\xBB\xBF" + good, "header", "byte order mark (BOM");
  try {
    parse_corpus_entry("\xEF\xBB\xBF" + good, "t.case");
  } catch (const CorpusError& e) {
    EXPECT_EQ(e.line(), 1);
    EXPECT_EQ(std::string(e.what()).find("\xEF\xBB\xBF"), std::string::npos) << "the invisible BOM is echoed";
  }
  EXPECT_TRUE(has_utf8_bom("\xEF\xBB\xBFx"));
  EXPECT_FALSE(has_utf8_bom("\xEF\xBB"));
  EXPECT_FALSE(has_utf8_bom(good));
}

TEST(Corpus, LongValuesAreShortenedInMessages) {
  const std::string good = format_corpus_entry(sample_entry());
  const std::string huge(5 * 1024 * 1024, 'x');
  for (const auto& [line, field] : {std::make_pair("dtype ", "dtype"), std::make_pair("T ", "T"),
                                    std::make_pair("seed ", "seed"), std::make_pair("layout ", "layout")}) {
    try {
      parse_corpus_entry(replace_line(good, line, std::string(line) + huge), "t.case");
      ADD_FAILURE() << field << ": accepted";
    } catch (const CorpusError& e) {
      EXPECT_EQ(e.field(), field);
      EXPECT_LT(std::string(e.what()).size(), 300u) << field;
      EXPECT_NE(std::string(e.what()).find("... (5242880 bytes)"), std::string::npos) << e.what();
    }
  }
  // Single-word fields that a replay would echo (unknown target, unknown mutant) are bounded.
  for (const auto& [line, field] : {std::make_pair("target ", "target"), std::make_pair("mutant ", "mutant")}) {
    try {
      parse_corpus_entry(replace_line(good, line, std::string(line) + huge), "t.case");
      ADD_FAILURE() << field << ": accepted";
    } catch (const CorpusError& e) {
      EXPECT_EQ(e.field(), field);
      EXPECT_NE(std::string(e.what()).find("is longer than 4096 bytes"), std::string::npos) << e.what();
      EXPECT_LT(std::string(e.what()).size(), 300u);
    }
  }
  // A 5 MB logit token and a 5 MB unknown field name.
  std::string bad_logit = good;
  bad_logit.replace(bad_logit.find("0x1p+0 -inf"), 6, huge);
  std::string bad_field = replace_line(good, "target ", huge + " 1");
  for (const std::string& text : {bad_logit, bad_field}) {
    try {
      parse_corpus_entry(text, "t.case");
      ADD_FAILURE() << "accepted";
    } catch (const CorpusError& e) {
      EXPECT_LT(std::string(e.what()).size(), 300u) << std::string(e.what()).substr(0, 300);
    }
  }
  // quote_value: short values whole, long ones cut at a character boundary, invisible bytes spelled out.
  EXPECT_EQ(quote_value("f64"), "'f64'");
  EXPECT_EQ(quote_value(std::string(64, 'a')), "'" + std::string(64, 'a') + "'");
  EXPECT_EQ(quote_value(std::string(65, 'a')), "'" + std::string(64, 'a') + "'... (65 bytes)");
  const std::string euros = std::string(63, 'a') + "\xE2\x82\xAC\xE2\x82\xAC";  // 63 + two 3-byte characters
  EXPECT_EQ(quote_value(euros), "'" + std::string(63, 'a') + "'... (69 bytes)");
  EXPECT_EQ(quote_value("\xEF\xBB\xBFmoecheck\x01"), "'\\xEF\\xBB\\xBFmoecheck\\x01'");
}

TEST(Corpus, WriterIsAtomicAndNeverOverwrites) {
  fs::path dir = fs::temp_directory_path() / ("moecheck_corpus_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  CorpusEntry e = sample_entry();
  std::string p1 = write_corpus_entry(e, dir.string());
  CorpusEntry changed = e;
  changed.message = "different";
  std::string p2 = write_corpus_entry(changed, dir.string());
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(read_corpus_file(p1).message, e.message);  // first one kept
  auto listed = list_corpus_paths({dir.string()});
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_THROW(list_corpus_paths({(dir / "nope").string()}), CorpusError);
  fs::remove_all(dir);
}

/// Parser robustness: arbitrary edits of valid files either parse or throw CorpusError.
/// (Run under the asan preset this also proves the absence of memory errors on these inputs.)
RC_GTEST_PROP(CorpusFuzz, MutatedFilesNeverCrash, ()) {
  const auto seed = *rc::gen::arbitrary<std::uint64_t>();
  GenConfig cfg;
  cfg.max_T = 4;
  cfg.max_E = 12;
  CorpusEntry e;
  e.c = generate_case(seed, cfg);
  std::string text = format_corpus_entry(e);
  const int edits = *rc::gen::inRange(1, 6);
  for (int i = 0; i < edits; ++i) {
    const int op = *rc::gen::inRange(0, 5);
    const std::size_t pos = *rc::gen::inRange<std::size_t>(0, text.size() + 1);
    switch (op) {
      case 0: text = text.substr(0, pos); break;                                   // truncate
      case 1: if (pos < text.size()) text[pos] = *rc::gen::arbitrary<char>(); break; // flip a byte
      case 2: text.insert(pos, *rc::gen::element<std::string>(" ", "\n", "-", "9", "nan", "x", "\n\n#")); break;
      case 3: if (pos < text.size()) text.erase(pos, 1); break;                    // delete a byte
      case 4: text.insert(pos, *rc::gen::element<std::string>("99999999999", "-inf", "0x1p+999", "end\n")); break;
    }
  }
  try {
    CorpusEntry back = parse_corpus_entry(text, "fuzz.case");
    RC_ASSERT(static_cast<std::int64_t>(back.c.logits.size()) == back.c.T * back.c.E);
  } catch (const CorpusError&) {
    RC_SUCCEED("rejected with a named error");
  }
}
