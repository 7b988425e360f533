// Corpus format version 2 through `moecheck replay`, as a user sees it: a large case whose logits
// live in a binary sidecar replays; a missing, truncated or corrupted sidecar is an error (exit 2)
// naming the file; a plugin that ranks NaNs by their sign and signalling bit is caught again on
// replay because the NaN bits are recorded exactly (the version-1 spelling loses them).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "harness/core/campaign.hpp"
#include "harness/core/corpus.hpp"
#include "harness/core/merge.hpp"
#include "harness/core/target.hpp"
#include "properties/support/run_cli.hpp"
#include "properties/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moecheck;

namespace {

float nan_bits(std::uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

moecheck_test::CliRun cli(const std::string& args) { return moecheck_test::run_cli(MOECHECK_EXE, args); }

/// T x E logits (exact in bf16) with NaNs of the given bit patterns at every 53rd position.
CorpusEntry entry(Family family, DType dtype, std::int64_t T, std::int64_t E, int k,
                  const std::vector<std::uint32_t>& nans) {
  CorpusEntry e;
  e.c.family = family;
  e.c.dtype = dtype;
  e.c.T = T;
  e.c.E = E;
  e.c.k = k;
  std::uint64_t s = 12345;
  for (std::int64_t i = 0; i < T * E; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    float v = static_cast<float>(static_cast<std::int64_t>(s >> 44) % 512) / 32.0f - 8.0f;  // exact in bf16
    if (!nans.empty() && i % 53 == 7) v = nan_bits(nans[static_cast<std::size_t>(i / 53) % nans.size()]);
    e.c.logits.push_back(v);
  }
  if (family == Family::gemma4) {
    for (std::int64_t j = 0; j < E; ++j) e.c.scale.push_back(0.5f + 0.25f * static_cast<float>(j % 5));
  }
  return e;
}

class CaseReplay : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = moecheck_test::temp_dir(std::string("case_replay_") +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

}  // namespace

TEST_F(CaseReplay, LargeCaseWithSidecarReplays) {
  // A regression case (the correct kernel must pass) and a planted bug (must still be caught),
  // both larger than the sidecar threshold, with NaNs of several signs and payloads.
  CorpusEntry pass = entry(Family::softmax_topk, DType::f32, 600, 128, 4, {0x7fc00000u, 0xffc00001u, 0x7f800003u});
  pass.target = "kernel:warp_per_row";
  pass.signature = "passcase";
  CorpusEntry fail = entry(Family::gemma4, DType::bf16, 300, 256, 4, {0xffc10000u});
  fail.target = "kernel:block_per_row";
  fail.mutant = "scale_by_slot";
  fail.expect = Expectation::fail;
  fail.signature = "failcase";
  ASSERT_GT(pass.c.T * pass.c.E, kCorpusSidecarElements);
  ASSERT_GT(fail.c.T * fail.c.E, kCorpusSidecarElements);
  const std::string pass_path = write_corpus_entry(pass, dir_.string());
  const std::string fail_path = write_corpus_entry(fail, dir_.string());
  int bins = 0;
  for (const auto& f : fs::directory_iterator(dir_)) bins += f.path().extension() == ".bin";
  EXPECT_EQ(bins, 2);
  const auto r = cli("replay " + dir_.string());
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("2 corpus entries: 2 matched, 0 skipped, 0 did not match"), std::string::npos) << r.out;

  // A broken sidecar is an error naming it; the other entry still replays.
  const std::string pass_text = read_bounded_file(pass_path, kCorpusMaxFileBytes);
  const fs::path side = dir_ / corpus_sidecar_names(pass_text).at(0);
  std::string bytes = read_bounded_file(side.string(), std::int64_t{1} << 30);
  auto put = [&](const std::string& b) { std::ofstream(side, std::ios::binary | std::ios::trunc) << b; };
  std::string flipped = bytes;
  flipped[4000] ^= 0x10;
  put(flipped);
  auto bad = cli("replay " + dir_.string());
  EXPECT_EQ(bad.rc, 2) << bad.out;
  EXPECT_NE(bad.out.find(side.string() + "' is corrupted"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("1 matched"), std::string::npos) << bad.out;
  put(bytes.substr(0, bytes.size() / 2));
  bad = cli("replay " + pass_path);
  EXPECT_EQ(bad.rc, 2) << bad.out;
  EXPECT_NE(bad.out.find("(truncated)"), std::string::npos) << bad.out;
  fs::remove(side);
  bad = cli("replay " + pass_path);
  EXPECT_EQ(bad.rc, 2) << bad.out;
  EXPECT_NE(bad.out.find(side.string() + "' is missing"), std::string::npos) << bad.out;
  put(bytes);
  EXPECT_EQ(cli("replay " + pass_path).rc, 0);
  // Replayed from another working folder through a relative path: the sidecar is found next to the .case.
  const auto rel = moecheck_test::run_cli("cd " + dir_.parent_path().string() + " && " + MOECHECK_EXE,
                                          "replay " + dir_.filename().string() + "/" + fs::path(fail_path).filename().string());
  EXPECT_EQ(rel.rc, 0) << rel.out;
}

TEST_F(CaseReplay, NanBitsThatChangeRankingReplayExactly) {
  // The plugin ranks a negative or signalling NaN above everything: a strict-contract failure
  // that only the exact NaN bits reproduce.
  const std::string plugin = std::string(" --plugin ") + MOECHECK_NAN_SIGN_PLUGIN;
  struct Variant {
    DType dtype;
    std::uint32_t nan;
  };
  for (const Variant& v : {Variant{DType::f32, 0xffc00000u}, Variant{DType::f32, 0x7f800001u},
                           Variant{DType::f32, 0xff8abcdeu}, Variant{DType::bf16, 0xffc00000u},
                           Variant{DType::f16, 0xffc02000u}}) {
    fs::remove_all(dir_);
    CorpusEntry e = entry(Family::softmax_topk, v.dtype, 3, 8, 2, {});
    e.c.logits[1 * 8 + 5] = nan_bits(v.nan);
    e.target = "plugin:nan_sign";
    e.expect = Expectation::fail;
    e.signature = "nansign";
    const std::string path = write_corpus_entry(e, dir_.string());
    const std::string text = read_bounded_file(path, kCorpusMaxFileBytes);
    ASSERT_EQ(text.rfind("moecheck-case 2\n", 0), 0u) << text;
    const auto r = cli("replay" + plugin + " " + path);
    EXPECT_EQ(r.rc, 0) << dtype_name(v.dtype) << " " << std::hex << v.nan << "\n" << text << "\n" << r.out;
    EXPECT_NE(r.out.find("[plugin:nan_sign: fail]"), std::string::npos) << r.out;
    // The same case with its NaN spelled as version 1 can (nan) does: the bug no longer shows.
    std::string v1 = text;
    v1.replace(0, v1.find('\n'), "moecheck-case 1");
    const std::size_t at = v1.find(" nan:0x");
    ASSERT_NE(at, std::string::npos);
    v1.replace(at, 15, " nan");
    std::ofstream(path, std::ios::trunc) << v1;
    const auto lost = cli("replay" + plugin + " " + path);
    EXPECT_EQ(lost.rc, 1) << lost.out;
    EXPECT_NE(lost.out.find("[plugin:nan_sign: pass]"), std::string::npos) << lost.out;
  }
}

TEST_F(CaseReplay, MergeCopiesSidecarsWithTheirEntries) {
  // Two shards of a campaign (nothing found), one shard's corpus folder holding a sidecar entry:
  // the merged corpus gets the entry and its sidecar, and the copy replays.
  for (int i = 0; i < 2; ++i) {
    CampaignOptions o;
    o.seed = 3;
    o.max_cases = 6;
    o.shard_index = i;
    o.shard_count = 2;
    o.progress = false;
    o.results_json = (dir_ / ("s" + std::to_string(i) + ".json")).string();
    o.corpus_dir = (dir_ / ("corpus-s" + std::to_string(i))).string();
    auto target = make_core_target("kernel:auto", TargetOptions{});
    std::ostringstream log;
    run_campaign(*target, o, log);
  }
  CorpusEntry e = entry(Family::softmax_topk, DType::f32, 300, 256, 4, {0xff800001u});
  e.target = "kernel:warp_per_row";
  e.signature = "merged";
  write_corpus_entry(e, (dir_ / "corpus-s0").string());
  MergeOptions mo;
  mo.corpus_dirs = {(dir_ / "corpus-s0").string(), (dir_ / "corpus-s1").string()};
  mo.into_dir = (dir_ / "merged").string();
  const MergeResult m = merge_campaigns({(dir_ / "s0.json").string(), (dir_ / "s1.json").string()}, mo);
  EXPECT_EQ(m.corpus_copied, 1);
  const auto merged = list_corpus_paths({mo.into_dir});
  ASSERT_EQ(merged.size(), 1u);
  const std::string side = corpus_sidecar_names(read_bounded_file(merged[0], kCorpusMaxFileBytes)).at(0);
  EXPECT_TRUE(fs::exists(fs::path(mo.into_dir) / side));
  const CorpusEntry back = read_corpus_file(merged[0]);
  EXPECT_EQ(back.c.logits.size(), e.c.logits.size());
  const auto r = cli("replay " + mo.into_dir);
  EXPECT_EQ(r.rc, 0) << r.out;
  // Merging again copies nothing and changes nothing.
  const MergeResult again = merge_campaigns({(dir_ / "s0.json").string(), (dir_ / "s1.json").string()}, mo);
  EXPECT_EQ(again.corpus_copied, 0);
  EXPECT_EQ(std::distance(fs::directory_iterator(mo.into_dir), fs::directory_iterator()), 2);
}
