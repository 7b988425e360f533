// Corpus format: round trips, and every malformed input gives a CorpusError naming the field.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <tuple>
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
  if (*rc::gen::arbitrary<bool>()) {  // version 2 text: NaNs with a sign and a payload
    for (float& v : e.c.logits) {
      if (std::isnan(v)) v = -std::nanf("0x123");
    }
  }
  std::string text = format_corpus_entry(e);
  const int edits = *rc::gen::inRange(1, 6);
  for (int i = 0; i < edits; ++i) {
    const int op = *rc::gen::inRange(0, 5);
    const std::size_t pos = *rc::gen::inRange<std::size_t>(0, text.size() + 1);
    switch (op) {
      case 0: text = text.substr(0, pos); break;                                   // truncate
      case 1: if (pos < text.size()) text[pos] = *rc::gen::arbitrary<char>(); break; // flip a byte
      case 2: text.insert(pos, *rc::gen::element<std::string>(" ", "\n", "-", "9", "nan", "x", "\n\n#", "nan:0x7f80", "nan:0xffc00001")); break;
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

// ==== format version 2: NaN sign and payload, binary sidecar ====================================

namespace {

std::uint32_t bits_of(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

float nan_bits(std::uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

/// Every value bit for bit (NaN sign and payload included).
::testing::AssertionResult identical_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes " << a.size() << " vs " << b.size();
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (bits_of(a[i]) != bits_of(b[i])) {
      return ::testing::AssertionFailure() << "value " << i << ": bits " << std::hex << bits_of(a[i]) << " vs " << bits_of(b[i]);
    }
  }
  return ::testing::AssertionSuccess();
}

/// The fp32 NaNs a kernel could rank differently: signs, quiet and signalling, payloads.
const std::vector<std::uint32_t> kNanPatterns = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fc12345u,
                                                 0x7fffffffu, 0xffffffffu, 0x7fa00000u, 0xffbfffffu, 0x7fc00001u};

CorpusEntry nan_entry(DType dtype) {
  CorpusEntry e = sample_entry();
  e.c.dtype = dtype;
  e.c.family = Family::gemma4;
  e.c.T = 2;
  e.c.E = static_cast<std::int64_t>(kNanPatterns.size());
  e.c.k = 3;
  e.c.logits.clear();
  for (std::uint32_t u : kNanPatterns) e.c.logits.push_back(nan_bits(u));
  for (std::size_t i = 0; i < kNanPatterns.size(); ++i) e.c.logits.push_back(static_cast<float>(i) - 4.0f);
  e.c.scale.assign(kNanPatterns.size(), 1.0f);
  e.c.scale[3] = nan_bits(0xff812345u);  // invalid problems are stored too (replayed as error tests)
  e.c.routed_scaling = nan_bits(0x7fd00001u);
  return e;
}

}  // namespace

TEST(CorpusV2, VersionOneIsWrittenWhenNothingNeedsTwoAndOldFilesReadUnchanged) {
  const std::string text = format_corpus_entry(sample_entry());  // only the default quiet NaN
  EXPECT_EQ(text.rfind("moecheck-case 1\n", 0), 0u) << text;
  EXPECT_EQ(text.find("nan:"), std::string::npos);
  // Version 1: "-nan" has always read as the default NaN; it still does.
  std::string old = text;
  old.replace(old.find(" nan\n"), 5, " -nan\n");
  const CorpusEntry back = parse_corpus_entry(old, "old.case");
  EXPECT_EQ(bits_of(back.c.logits[2]), 0x7fc00000u);
  // In version 2 the sign counts.
  std::string v2 = "moecheck-case 2" + old.substr(old.find('\n'));
  EXPECT_EQ(bits_of(parse_corpus_entry(v2, "new.case").c.logits[2]), 0xffc00000u);
  // Every committed corpus file still parses (and is still version 1).
  const char* src = std::getenv("MOECHECK_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  int n = 0;
  for (const std::string& p : list_corpus_paths({std::string(src) + "/corpora"})) {
    EXPECT_NO_THROW(read_corpus_file(p)) << p;
    ++n;
  }
  EXPECT_GT(n, 10);
}

TEST(CorpusV2, NanSignAndPayloadRoundTripBitExactlyInEveryDtype) {
  for (DType d : {DType::f32, DType::f16, DType::bf16}) {
    const CorpusEntry e = nan_entry(d);
    const std::string text = format_corpus_entry(e);
    EXPECT_EQ(text.rfind("moecheck-case 2\n", 0), 0u) << text;
    EXPECT_NE(text.find("nan:0xff800001"), std::string::npos) << text;
    EXPECT_NE(text.find("routed_scaling nan:0x7fd00001"), std::string::npos) << text;
    const CorpusEntry back = parse_corpus_entry(text, "nan.case");
    EXPECT_TRUE(identical_bits(back.c.logits, e.c.logits)) << dtype_name(d);
    EXPECT_TRUE(identical_bits(back.c.scale, e.c.scale)) << dtype_name(d);
    EXPECT_EQ(bits_of(back.c.routed_scaling), 0x7fd00001u);
    EXPECT_EQ(format_corpus_entry(back), text);
    // What the code under test is handed is the same bytes as when the case was found.
    EXPECT_EQ(back.c.materialize(), e.c.materialize()) << dtype_name(d);
  }
  // f32 logits reach the code under test with sign, payload and the signalling bit intact.
  const CorpusEntry back = parse_corpus_entry(format_corpus_entry(nan_entry(DType::f32)), "nan.case");
  const auto bytes = back.c.materialize();
  for (std::size_t i = 0; i < kNanPatterns.size(); ++i) {
    std::uint32_t u;
    std::memcpy(&u, bytes.data() + 4 * i, 4);
    EXPECT_EQ(u, kNanPatterns[i]) << i;
  }
}

TEST(CorpusV2, SixteenBitNanPatternsAreHandedOverExactly) {
  // f16/bf16 logits may be written with their own 4-digit bit patterns.
  std::string text = format_corpus_entry(sample_entry());
  text = "moecheck-case 2" + text.substr(text.find('\n'));
  const std::string row0 = "0x1p+0 -inf nan\n";
  ASSERT_NE(text.find(row0), std::string::npos) << text;
  for (const auto& [dtype, token, want] : std::vector<std::tuple<std::string, std::string, std::uint16_t>>{
           {"bf16", "nan:0xffc1", 0xffc1}, {"bf16", "nan:0x7fff", 0x7fff}, {"f16", "nan:0xfe01", 0xfe01},
           {"f16", "nan:0x7fff", 0x7fff}}) {
    std::string t = replace_line(text, "dtype ", "dtype " + dtype);
    t.replace(t.find(row0), row0.size(), "0x1p+0 -inf " + token + "\n");
    const CorpusEntry e = parse_corpus_entry(t, "h.case");
    const auto bytes = e.c.materialize();
    std::uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * 2, 2);
    EXPECT_EQ(h, want) << dtype << " " << token;
    // And it survives a rewrite (as fp32 bits) bit for bit.
    EXPECT_EQ(parse_corpus_entry(format_corpus_entry(e), "h2.case").c.materialize(), bytes) << token;
  }
  // Signalling 16-bit NaNs cannot reach the code under test: named, with the quiet pattern to use.
  std::string sig = replace_line(text, "dtype ", "dtype f16");
  sig.replace(sig.find(row0), row0.size(), "0x1p+0 -inf nan:0x7c01\n");
  expect_error(sig, "logits", "'nan:0x7c01' is a signalling f16 NaN");
  expect_error(sig, "logits", "write nan:0x7e01");
}

TEST(CorpusV2, MalformedVersionTwoInputsNameTheProblem) {
  const std::string v2 = format_corpus_entry(nan_entry(DType::f32));
  ASSERT_EQ(v2.rfind("moecheck-case 2\n", 0), 0u);
  const std::string token = "nan:0x7fc12345";
  ASSERT_NE(v2.find(token), std::string::npos);
  auto with = [&](const std::string& t) {
    std::string s = v2;
    s.replace(s.find(token), token.size(), t);
    return s;
  };
  expect_error(with("nan:0x7f800000"), "logits", "is not an fp32 NaN");
  expect_error(with("nan:0x7f800000"), "logits", "it is an infinity");
  expect_error(with("nan:0x3f800000"), "logits", "is not an fp32 NaN");
  expect_error(with("nan:0x7fc1234"), "logits", "8 hex digits");
  expect_error(with("nan:0x7fc1234g"), "logits", "is not hexadecimal");
  expect_error(with("-nan:0x7fc12345"), "logits", "the sign is one of the bits");
  expect_error(with("nan:7fc12345"), "logits", "nan:0x<hex digits>");
  expect_error(with("nan:0x7e01"), "logits", "4-digit NaN patterns are for the logits of f16 and bf16");
  std::string scale16 = v2;
  scale16.replace(scale16.find("nan:0xff812345"), 14, "nan:0xfe01");
  expect_error(scale16, "scale", "fp32 values take 8 digits");
  expect_error("moecheck-case 1" + v2.substr(v2.find('\n')), "routed_scaling", "need format version 2");
  expect_error("moecheck-case 3" + v2.substr(v2.find('\n')), "header", "this build reads 1 to 2");
}

namespace {

/// A case of T x E logits with NaN patterns sprinkled in (deterministic).
CorpusEntry big_entry(DType d, std::int64_t T, std::int64_t E, bool nans) {
  CorpusEntry e;
  e.target = "kernel:warp_per_row";
  e.signature = "0123456789abcdef";
  e.c.family = Family::softmax_topk;
  e.c.dtype = d;
  e.c.T = T;
  e.c.E = E;
  e.c.k = 2;
  std::uint64_t s = 5;
  for (std::int64_t i = 0; i < T * E; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    float v = round_to_dtype(static_cast<float>(static_cast<std::int64_t>(s >> 40) % 2000) / 64.0f - 15.0f, d);
    if (nans && (s >> 20) % 97 == 0) v = nan_bits(kNanPatterns[(s >> 8) % kNanPatterns.size()]);
    e.c.logits.push_back(v);
  }
  return e;
}

}  // namespace

TEST(CorpusV2, SidecarRoundTripsAndIsWrittenWriteOnce) {
  const fs::path dir = fs::temp_directory_path() / ("moecheck_sidecar_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  // Above the default threshold: the logits go to a sidecar next to the .case.
  const CorpusEntry e = big_entry(DType::f32, 300, 256, true);
  ASSERT_GT(e.c.T * e.c.E, kCorpusSidecarElements);
  const std::string path = write_corpus_entry(e, dir.string());
  std::vector<std::string> names;
  for (const auto& f : fs::directory_iterator(dir)) names.push_back(f.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 2u);
  const std::string text = read_bounded_file(path, kCorpusMaxFileBytes);
  EXPECT_EQ(text.rfind("moecheck-case 2\n", 0), 0u);
  EXPECT_LT(text.size(), 2000u) << "the logits are not inline";
  const std::string sidecar = names[0];
  EXPECT_EQ(sidecar.rfind("kernel_warp_per_row-0123456789abcdef.", 0), 0u) << sidecar;
  EXPECT_NE(text.find("\nlogits_file 300 256 " + sidecar + " f32 307200 fnv1a64:"), std::string::npos) << text;
  const CorpusEntry back = read_corpus_file(path);
  EXPECT_TRUE(identical_bits(back.c.logits, e.c.logits));
  EXPECT_EQ(back.c.materialize(), e.c.materialize());
  // Writing it again changes nothing; a parallel writer of the same entry finds both files.
  EXPECT_EQ(write_corpus_entry(e, dir.string()), path);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);
  EXPECT_EQ(list_corpus_paths({dir.string()}).size(), 1u) << "the sidecar is not a corpus entry";
  // 16-bit cases whose values all have exact 16-bit patterns store 2 bytes per logit.
  fs::remove_all(dir);
  for (DType d : {DType::bf16, DType::f16}) {
    CorpusEntry h = big_entry(d, 70, 1000, false);
    h.c.logits[17] = nan_bits(d == DType::f16 ? 0xffc02000u : 0xffc10000u);  // exact quiet 16-bit NaNs
    h.signature = std::string("sixteen") + dtype_name(d);
    const std::string p16 = write_corpus_entry(h, dir.string());
    EXPECT_NE(read_bounded_file(p16, kCorpusMaxFileBytes).find(std::string(" ") + dtype_name(d) + " 140000 fnv1a64:"),
              std::string::npos);
    const CorpusEntry b16 = read_corpus_file(p16);
    EXPECT_TRUE(identical_bits(b16.c.logits, h.c.logits)) << dtype_name(d);
    // A NaN whose float bits a 16-bit pattern would not give back: fp32 sidecar, still exact.
    h.c.logits[18] = nan_bits(0x7f800001u);
    h.signature += "-f32";
    const std::string p32 = write_corpus_entry(h, dir.string());
    EXPECT_NE(read_bounded_file(p32, kCorpusMaxFileBytes).find(" f32 280000 fnv1a64:"), std::string::npos);
    EXPECT_TRUE(identical_bits(read_corpus_file(p32).c.logits, h.c.logits)) << dtype_name(d);
    EXPECT_EQ(read_corpus_file(p32).c.materialize(), h.c.materialize());
  }
  // Below the threshold (or with it raised) the logits stay inline and the file version 1.
  const CorpusEntry small = big_entry(DType::f32, 4, 8, false);
  EXPECT_TRUE(format_corpus_files(small, "x.case").sidecar_name.empty());
  EXPECT_FALSE(format_corpus_files(small, "x.case", 16).sidecar_name.empty());
  fs::remove_all(dir);
}

TEST(CorpusV2, MissingTruncatedOrCorruptedSidecarsAreNamed) {
  const fs::path dir = fs::temp_directory_path() / ("moecheck_sidecar_bad_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const CorpusEntry e = big_entry(DType::f32, 8, 16, true);
  const std::string path = write_corpus_entry(e, dir.string(), /*sidecar_elements=*/64);
  const CorpusFiles files = format_corpus_files(e, fs::path(path).filename().string(), 64);
  const fs::path side = dir / files.sidecar_name;
  ASSERT_TRUE(fs::exists(side));
  auto expect_read_error = [&](const std::string& needle) {
    try {
      read_corpus_file(path);
      ADD_FAILURE() << "accepted (wanted: " << needle << ")";
    } catch (const CorpusError& ex) {
      EXPECT_EQ(ex.field(), "logits_file") << ex.what();
      EXPECT_NE(std::string(ex.what()).find(needle), std::string::npos) << ex.what();
      EXPECT_NE(std::string(ex.what()).find(path), std::string::npos) << "names the .case: " << ex.what();
    }
  };
  const std::string good = files.sidecar_bytes;
  auto put = [&](const std::string& bytes) {
    std::ofstream(side, std::ios::binary | std::ios::trunc) << bytes;
  };
  put(good.substr(0, good.size() - 5));
  expect_read_error(side.string() + "' has 507 bytes, the entry declares 512 (truncated)");
  put(good + "x");
  expect_read_error("has 513 bytes, the entry declares 512");
  std::string flipped = good;
  flipped[100] ^= 0x01;
  put(flipped);
  expect_read_error("is corrupted: its checksum is fnv1a64:");
  fs::remove(side);
  expect_read_error(side.string() + "' is missing (no such file)");
  fs::create_directory(side);
  expect_read_error("is a folder");
  fs::remove(side);
  put(good);
  EXPECT_NO_THROW(read_corpus_file(path));
  // Malformed logits_file lines.
  const std::string text = read_bounded_file(path, kCorpusMaxFileBytes);
  const std::string line = text.substr(text.find("logits_file"), text.find('\n', text.find("logits_file")) - text.find("logits_file"));
  auto toks = [&](int i, const std::string& v) {
    std::vector<std::string> t;
    std::istringstream is(line);
    for (std::string w; is >> w;) t.push_back(w);
    t[static_cast<std::size_t>(i)] = v;
    std::string out;
    for (const auto& w : t) out += (out.empty() ? "" : " ") + w;
    return replace_line(text, "logits_file", out);
  };
  auto expect_text_error = [&](const std::string& t, const std::string& needle) {
    try {
      parse_corpus_entry(t, path);
      ADD_FAILURE() << "accepted (wanted: " << needle << ")";
    } catch (const CorpusError& ex) {
      EXPECT_EQ(ex.field(), "logits_file") << ex.what();
      EXPECT_NE(std::string(ex.what()).find(needle), std::string::npos) << ex.what();
    }
  };
  expect_text_error(toks(3, "../etc/passwd"), "is not a plain file name next to the .case file");
  expect_text_error(toks(3, ".hidden"), "is not a plain file name");
  expect_text_error(toks(4, "f64"), "sidecar dtype 'f64' must be f32 or the case's dtype f32");
  expect_text_error(toks(5, "511"), "declares 511 bytes, but 8 x 16 f32 values take 512");
  expect_text_error(toks(6, "crc32:1234"), "must be fnv1a64:<16 hex digits>");
  expect_text_error(toks(1, "9"), "does not match T=8");
  expect_text_error(replace_line(text, "logits_file", "logits_file 8 16"), "expects 'logits_file <T> <E>");
  expect_text_error("moecheck-case 1" + text.substr(text.find('\n')), "needs format version 2");
  fs::remove_all(dir);
}

TEST(CorpusV2, GeneratedCasesWithArbitraryNansReplayBitExactly) {
  // Generated cases (every family, dtype, layout, value family) with NaNs given random signs
  // and payloads: write (inline or sidecar) -> read -> the same logical values and the same
  // bytes handed to the code under test.
  const fs::path dir = fs::temp_directory_path() / ("moecheck_sidecar_gen_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  GenConfig cfg;
  cfg.max_T = 24;
  cfg.max_E = 40;
  cfg.value_families = {"nan", "inf", "normal"};
  std::uint64_t s = 99;
  for (std::uint64_t seed = 1; seed <= 150; ++seed) {
    CorpusEntry e;
    e.c = generate_case(seed, cfg);
    e.signature = "g" + std::to_string(seed);
    for (float& v : e.c.logits) {
      if (!std::isnan(v)) continue;
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      const std::uint32_t payload = static_cast<std::uint32_t>(s >> 41) | 1u;  // non-zero
      v = nan_bits(((s >> 7) & 1 ? 0x80000000u : 0u) | 0x7f800000u | (payload & 0x7fffffu));
    }
    const std::string p = write_corpus_entry(e, dir.string(), seed % 2 ? 0 : kCorpusSidecarElements);
    const CorpusEntry back = read_corpus_file(p);
    ASSERT_TRUE(identical_bits(back.c.logits, e.c.logits)) << "seed " << seed;
    ASSERT_EQ(back.c.materialize(), e.c.materialize()) << "seed " << seed;
  }
  fs::remove_all(dir);
}

TEST(CorpusV2, CopyingAnEntryTakesItsSidecarAlong) {
  const fs::path a = fs::temp_directory_path() / ("moecheck_sidecar_a_" + std::to_string(::getpid()));
  const fs::path b = fs::temp_directory_path() / ("moecheck_sidecar_b_" + std::to_string(::getpid()));
  fs::remove_all(a);
  fs::remove_all(b);
  const CorpusEntry e = big_entry(DType::f32, 8, 16, true);
  const std::string path = write_corpus_entry(e, a.string(), 64);
  const std::string text = read_bounded_file(path, kCorpusMaxFileBytes);
  ASSERT_EQ(corpus_sidecar_names(text).size(), 1u);
  EXPECT_TRUE(corpus_sidecar_names(format_corpus_entry(e)).empty());
  fs::create_directories(b);
  copy_corpus_sidecars(path, text, b.string());
  copy_corpus_sidecars(path, text, b.string());  // again: the same bytes are there, nothing changes
  std::ofstream(b / "copy.case") << text;
  EXPECT_TRUE(identical_bits(read_corpus_file((b / "copy.case").string()).c.logits, e.c.logits));
  // A different file of that name in the way is never replaced.
  const fs::path theirs = b / corpus_sidecar_names(text)[0];
  std::ofstream(theirs, std::ios::trunc) << "other";
  EXPECT_THROW(copy_corpus_sidecars(path, text, b.string()), std::runtime_error);
  EXPECT_EQ(read_bounded_file(theirs.string(), 100), "other");
  // A missing source sidecar is named.
  fs::remove(a / corpus_sidecar_names(text)[0]);
  EXPECT_THROW(copy_corpus_sidecars(path, text, (b / "sub").string()), CorpusError);
  fs::remove_all(a);
  fs::remove_all(b);
}
