// moecheck check: the array readers (.npy, safetensors), check_outputs and the `moecheck check`
// command as a user runs it (real files on disk, the real executable, exit codes and listings).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/core/case.hpp"
#include "harness/core/generators.hpp"
#include "properties/support/run_cli.hpp"
#include "properties/support/temp_dir.hpp"
#include "reference/check/arrays.hpp"
#include "reference/check/check.hpp"
#include "reference/routing.hpp"
#include "reference/splitmix64.hpp"

namespace fs = std::filesystem;
using namespace moecheck;

namespace {

// ---- arrays and files ------------------------------------------------------------------------

template <typename T>
HostArray array_of(ElemType type, std::vector<std::int64_t> shape, const std::vector<T>& values) {
  HostArray a;
  a.type = type;
  a.shape = std::move(shape);
  a.bytes.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(a.bytes.data(), values.data(), a.bytes.size());
  return a;
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << p;
}

/// .npy bytes built by hand (independently of format_npy): magic, version, header length,
/// the header text as given (padded with blanks and a newline to a 64-byte boundary), data.
std::string npy_bytes(int major, const std::string& dict, const std::string& data, int minor = 0) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += static_cast<char>(minor);
  for (std::size_t i = 0; i < prefix - 8; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// ---- routing problems and routers --------------------------------------------------------------

struct Routed {
  Family family = Family::gemma4;
  std::int64_t T = 0, E = 0;
  int k = 0;
  std::vector<float> logits;  ///< [T, E]
  std::vector<float> scale;   ///< [E] (gemma4)
  std::vector<float> weights; ///< [T, k]
  std::vector<std::int64_t> ids;
};

double unit(std::uint64_t* s) { return static_cast<double>(splitmix64(s) >> 11) * 0x1p-53; }

/// A problem with normal-ish logits (distinct values) and moecheck's reference outputs for it.
Routed reference_routed(Family family, std::int64_t T, std::int64_t E, int k, std::uint64_t seed) {
  Routed r;
  r.family = family;
  r.T = T;
  r.E = E;
  r.k = k;
  std::uint64_t s = seed;
  for (std::int64_t i = 0; i < T * E; ++i) r.logits.push_back(static_cast<float>(8.0 * unit(&s) - 4.0));
  if (family == Family::gemma4) {
    for (std::int64_t e = 0; e < E; ++e) r.scale.push_back(static_cast<float>(0.5 + 1.5 * unit(&s)));
  }
  GatingView g{r.logits.data(), DType::f32, T, E, E, 1};
  RoutingParams p;
  p.family = family;
  p.k = k;
  p.scale = r.scale.empty() ? nullptr : r.scale.data();
  std::vector<double> w(static_cast<std::size_t>(T * k));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
  route_reference(g, p, w.data(), ids.data());
  for (double x : w) r.weights.push_back(static_cast<float>(x));
  for (std::int32_t x : ids) r.ids.push_back(x);
  return r;
}

HostArray logits_array(const Routed& r) { return array_of(ElemType::f32, {r.T, r.E}, r.logits); }
HostArray weights_array(const Routed& r) { return array_of(ElemType::f32, {r.T, r.k}, r.weights); }
HostArray ids_array(const Routed& r) { return array_of(ElemType::i64, {r.T, r.k}, r.ids); }

/// Writes logits/weights/ids/scale .npy files of `r` into dir with the given prefix.
void write_routed(const fs::path& dir, const std::string& prefix, const Routed& r) {
  write_bytes(dir / (prefix + "logits.npy"), format_npy(logits_array(r)));
  write_bytes(dir / (prefix + "weights.npy"), format_npy(weights_array(r)));
  write_bytes(dir / (prefix + "ids.npy"), format_npy(ids_array(r)));
  if (!r.scale.empty()) write_bytes(dir / (prefix + "scale.npy"), format_npy(array_of(ElemType::f32, {r.E}, r.scale)));
}

CheckOutputsReport check_routed(const Routed& r, const Contract& c = Contract{}) {
  CheckArrays a;
  a.logits = logits_array(r);
  a.weights = weights_array(r);
  a.ids = ids_array(r);
  if (!r.scale.empty()) a.scale = array_of(ElemType::f32, {r.E}, r.scale);
  CheckInputOptions o;
  o.family = r.family;
  o.k = r.k;
  const OwnedCheckProblem owned = assemble_check_problem(a, o);
  return check_outputs(owned.view(), c);
}

std::set<std::int64_t> violating_rows(const CheckOutputsReport& r) {
  std::set<std::int64_t> rows;
  for (const auto& v : r.violations) rows.insert(v.row);
  return rows;
}

/// The index of the best expert not selected in row t (by logit).
std::int64_t best_unselected(const Routed& r, std::int64_t t) {
  std::int64_t best = -1;
  for (std::int64_t e = 0; e < r.E; ++e) {
    bool selected = false;
    for (int j = 0; j < r.k; ++j) selected |= r.ids[static_cast<std::size_t>(t * r.k + j)] == e;
    if (!selected && (best < 0 || r.logits[static_cast<std::size_t>(t * r.E + e)] >
                                      r.logits[static_cast<std::size_t>(t * r.E + best)])) {
      best = e;
    }
  }
  return best;
}

/// Planted wrong outputs in rows 5 (selection), 17 (duplicate id), 40 (negative id),
/// 41 (id beyond int32), 50 (weight 1.5x).
Routed planted_wrong(Routed r) {
  const int k = r.k;
  r.ids[static_cast<std::size_t>(5 * k + k - 1)] = best_unselected(r, 5);
  r.ids[static_cast<std::size_t>(17 * k + 1)] = r.ids[static_cast<std::size_t>(17 * k)];
  r.ids[static_cast<std::size_t>(40 * k)] = -3;
  r.ids[static_cast<std::size_t>(41 * k + 1)] = std::int64_t{1} << 40;
  r.weights[static_cast<std::size_t>(50 * k)] *= 1.5f;
  return r;
}

/// A deliberately wrong router for every row: gemma4 with per_expert_scale applied by slot
/// (scale[slot]) instead of by expert (scale[id]).
Routed scale_by_slot(Routed r) {
  for (std::int64_t t = 0; t < r.T; ++t) {
    for (int j = 0; j < r.k; ++j) {
      const std::size_t i = static_cast<std::size_t>(t * r.k + j);
      r.weights[i] = r.weights[i] / r.scale[static_cast<std::size_t>(r.ids[i])] * r.scale[static_cast<std::size_t>(j)];
    }
  }
  return r;
}

// ---- running the executable --------------------------------------------------------------------

using moecheck_test::CliRun;

CliRun run_cli(const std::string& args) { return moecheck_test::run_cli(MOECHECK_EXE, args); }

class CheckCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = moecheck_test::temp_dir(std::string("check_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  /// "--logits P/logits.npy --weights ... --ids ... [--scale ...]" for files written by write_routed.
  std::string files(const std::string& prefix, bool scale = true) const {
    std::string s = "--logits " + path(prefix + "logits.npy") + " --weights " + path(prefix + "weights.npy") + " --ids " +
                    path(prefix + "ids.npy");
    if (scale) s += " --scale " + path(prefix + "scale.npy");
    return s;
  }
  fs::path dir_;
};

}  // namespace

// ==== .npy reader ================================================================================

TEST(Npy, RoundTripsEveryTypeAndShape) {
  const std::vector<std::vector<std::int64_t>> shapes = {{}, {0}, {5}, {3, 4}, {0, 7}, {2, 3, 2}};
  for (ElemType t : {ElemType::f16, ElemType::bf16, ElemType::f32, ElemType::f64, ElemType::i32, ElemType::i64}) {
    for (const auto& shape : shapes) {
      std::int64_t n = 1;
      for (auto d : shape) n *= d;
      HostArray a;
      a.type = t;
      a.shape = shape;
      a.bytes.resize(static_cast<std::size_t>(n) * elem_type_size(t));
      for (std::size_t i = 0; i < a.bytes.size(); ++i) a.bytes[i] = static_cast<std::uint8_t>(i * 37 + 11);
      const std::string bytes = format_npy(a);
      ASSERT_EQ((bytes.size() - a.bytes.size()) % 64, 0u) << "data starts on a 64-byte boundary";
      const HostArray b = parse_npy(bytes, "x.npy");
      EXPECT_EQ(b.shape, a.shape);
      EXPECT_EQ(b.bytes, a.bytes);
      EXPECT_EQ(b.type, t == ElemType::bf16 ? ElemType::raw16 : t) << elem_type_name(t);
    }
  }
}

TEST(Npy, ReadsVersionsByteOrdersAndFortranOrder) {
  const std::vector<float> v = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};  // C order of [[1,2,3],[4,5,6]]
  for (int major : {1, 2, 3}) {
    const HostArray a = parse_npy(npy_bytes(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", raw(v)), "v.npy");
    EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(a.as_double(5), 6.0) << "version " << major;
  }
  // Fortran order: the file holds columns first; the reader returns C order.
  const std::vector<float> f = {1.0f, 4.0f, 2.0f, 5.0f, 3.0f, 6.0f};
  const HostArray fo = parse_npy(npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", raw(f)), "f.npy");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(fo.as_double(i), v[static_cast<std::size_t>(i)]) << i;
  // Big-endian float32 and int64, double quotes, Python 2 long suffixes, no trailing comma.
  std::string be;
  for (float x : v) {
    std::uint32_t u;
    std::memcpy(&u, &x, 4);
    for (int b = 3; b >= 0; --b) be += static_cast<char>((u >> (8 * b)) & 0xff);
  }
  const HostArray b = parse_npy(npy_bytes(1, "{\"descr\": \">f4\", \"fortran_order\": False, \"shape\": (2L, 3L)}", be), "be.npy");
  EXPECT_EQ(b.as_double(1), 2.0);
  std::string be64(8, '\0');
  be64[7] = 7;
  EXPECT_EQ(parse_npy(npy_bytes(1, "{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }", be64), "i.npy").as_int(0), 7);
  // 2-byte raw: void and uint16 are raw16 (the caller says whether bfloat16 or float16).
  for (const char* d : {"|V2", "<V2", "<u2"}) {
    const HostArray r = parse_npy(npy_bytes(1, std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': (1,), }",
                                            std::string("\x80\x3f", 2)),
                                  "r.npy");
    EXPECT_EQ(r.type, ElemType::raw16) << d;
    EXPECT_EQ(r.as_double(0), 1.0) << d;  // bf16 0x3f80
  }
}

TEST(Npy, MalformedFilesAreNamedErrors) {
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string data = raw(std::vector<float>{1.0f, 2.0f});
  const std::string good = npy_bytes(1, ok_dict, data);
  struct Bad {
    std::string name, bytes, field, words;
  };
  std::string long_header_len = good.substr(0, 8) + std::string("\xff\x7f", 2) + good.substr(10);
  const std::vector<Bad> bad = {
      {"empty", "", "magic", "not a NumPy .npy file"},
      {"bad magic", "\x93NUMPZ" + good.substr(6), "magic", "\\x93NUMPY"},
      {"text file", "hello world, not numpy", "magic", "not a NumPy .npy file"},
      {"version 4.0", good.substr(0, 6) + std::string("\x04\x00", 2) + good.substr(8), "version", "4.0 is not supported"},
      {"version 1.1", good.substr(0, 6) + std::string("\x01\x01", 2) + good.substr(8), "version", "1.1 is not supported"},
      {"cut in the length", good.substr(0, 9), "header length", "truncated"},
      {"length past the end", long_header_len, "header length", "goes past the end of the file"},
      {"truncated data", good.substr(0, good.size() - 3), "data", "truncated: shape [2] of float32 needs 8 bytes of data, the file has 5"},
      {"trailing bytes", good + "xyz", "data", "3 bytes after the data"},
      {"not a dict", npy_bytes(1, "descr='<f4'", data), "header", "expected '{'"},
      {"missing key", npy_bytes(1, "{'descr': '<f4', 'shape': (2,), }", data), "header", "missing key 'fortran_order'"},
      {"unknown key", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", data), "header",
       "unknown key 'x'"},
      {"repeated key", npy_bytes(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", data), "header",
       "appears twice"},
      {"unterminated string", npy_bytes(1, "{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}", data), "header",
       "unknown key"},
      {"garbage after dict", npy_bytes(1, ok_dict + " junk", data), "header", "unexpected content after the dict"},
      {"shape not a tuple", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': 2}", data), "header",
       "unexpected '2'"},
      {"negative dimension", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", data), "shape",
       "negative dimension"},
      {"fortran not bool", npy_bytes(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", data), "header",
       "unexpected '0'"},
      {"structured dtype", npy_bytes(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", data), "descr",
       "structured dtypes"},
      {"unsupported dtype", npy_bytes(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (8,)}", data), "descr",
       "'|b1' is not supported"},
      {"object dtype", npy_bytes(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", data), "descr",
       "is not supported"},
      {"huge shape", npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4)}", data), "shape",
       "overflows"},
      {"non-ASCII header", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), '\xc3\xa9': 1}", data),
       "header", "not printable ASCII"},
  };
  for (const Bad& b : bad) {
    try {
      parse_npy(b.bytes, "bad.npy");
      ADD_FAILURE() << b.name << ": accepted";
    } catch (const ArrayFileError& e) {
      EXPECT_EQ(e.origin(), "bad.npy") << b.name;
      EXPECT_EQ(e.field(), b.field) << b.name << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(b.words), std::string::npos) << b.name << ": " << e.what();
    }
  }
  EXPECT_THROW(read_npy_file("/nonexistent/x.npy"), ArrayFileError);
}

// ==== safetensors ================================================================================

TEST(Safetensors, RoundTripAndMalformedFiles) {
  std::map<std::string, HostArray> t;
  t["logits"] = array_of(ElemType::f32, {2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  t["ids"] = array_of(ElemType::i32, {2, 1}, std::vector<std::int32_t>{2, 0});
  t["weights"] = array_of(ElemType::f16, {2, 1}, std::vector<std::uint16_t>{0x3c00, 0x3c00});
  const std::string bytes = format_safetensors(t);
  const auto back = parse_safetensors(bytes, "m.safetensors");
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back.at("logits").bytes, t["logits"].bytes);
  EXPECT_EQ(back.at("ids").as_int(0), 2);
  EXPECT_EQ(back.at("weights").as_double(1), 1.0);
  EXPECT_EQ(back.at("logits").origin, "m.safetensors:logits");

  auto with_header = [](const std::string& json, const std::string& data) {
    std::string out;
    for (int i = 0; i < 8; ++i) out += static_cast<char>((json.size() >> (8 * i)) & 0xff);
    return out + json + data;
  };
  const std::string d8(8, '\0');
  struct Bad {
    std::string name, bytes, words;
  };
  const std::vector<Bad> bad = {
      {"short", "abc", "8-byte header size"},
      {"huge header size", std::string("\xff\xff\xff\xff\xff\xff\x00\x00", 8) + "{}", "larger than the limit"},
      {"header past the end", with_header("{}", "").substr(0, 9), "goes past the end"},
      {"malformed JSON", with_header("{\"a\": [1, 2", d8), "malformed JSON"},
      {"not an object", with_header("[1]", ""), "does not start with '{'"},
      {"unknown dtype", with_header("{\"x\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", d8), "'U8' is not supported"},
      {"offsets outside", with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d8), "not inside the data"},
      {"span mismatch", with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", d8), "needs 4"},
      {"overlap",
       with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
                   "\"data_offsets\":[4,8]}}",
                   d8),
       "overlap"},
      {"hole", with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", d8), "a hole"},
      {"unknown key", with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", d8), "unknown key 'x'"},
      {"negative dim", with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", d8), "non-negative integer"},
      {"duplicate name",
       with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                   "\"data_offsets\":[4,8]}}",
                   d8),
       "appears twice"},
  };
  for (const Bad& b : bad) {
    try {
      parse_safetensors(b.bytes, "bad.safetensors");
      ADD_FAILURE() << b.name << ": accepted";
    } catch (const ArrayFileError& e) {
      EXPECT_NE(std::string(e.what()).find(b.words), std::string::npos) << b.name << ": " << e.what();
    }
  }
}

// ==== check_outputs ==============================================================================

TEST(CheckOutputs, ReferenceOutputsSatisfyTheStrictContractOnGeneratedCases) {
  // Generated cases cover every family, dtype, layout and the adversarial value families (NaN,
  // inf, ties, denormals); moecheck's own reference outputs must satisfy the strict contract.
  GenConfig cfg;
  cfg.max_T = 48;
  cfg.max_E = 96;
  int judged = 0;
  for (std::uint64_t seed = 1; seed <= 400; ++seed) {
    const RoutingCase c = generate_case(seed, cfg);
    MaterializedCase m = materialize(c);
    try {
      validate_routing(m.view, m.params);
    } catch (const RoutingError&) {
      continue;
    }
    std::vector<double> w(static_cast<std::size_t>(c.T * c.k));
    std::vector<std::int32_t> ids(w.size());
    route_reference(m.view, m.params, w.data(), ids.data());
    CheckProblem p;
    p.logits = m.view;
    p.params = m.params;
    std::vector<float> wf(w.begin(), w.end());
    std::vector<std::int64_t> id64(ids.begin(), ids.end());
    p.weights = wf.data();
    p.ids = id64.data();
    const CheckOutputsReport r = check_outputs(p);
    ASSERT_TRUE(r.ok()) << "seed " << seed << ": " << describe_case(c) << "\n" << r.violations.front().str();
    EXPECT_EQ(r.rows_checked, c.T);
    ++judged;
  }
  EXPECT_GT(judged, 300);
}

TEST(CheckOutputs, FindsExactlyThePlantedRows) {
  const Routed good = reference_routed(Family::gemma4, 64, 16, 4, 7);
  EXPECT_TRUE(check_routed(good).ok());
  const CheckOutputsReport r = check_routed(planted_wrong(good));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.violating_rows, 5);
  EXPECT_EQ(violating_rows(r), (std::set<std::int64_t>{5, 17, 40, 41, 50}));
  std::set<std::string> checks;
  for (const auto& v : r.violations) checks.insert(std::to_string(v.row) + ":" + v.check);
  EXPECT_TRUE(checks.count("5:selection")) << r.violations.front().str();
  EXPECT_TRUE(checks.count("17:duplicate-id"));
  EXPECT_TRUE(checks.count("40:id-range"));
  EXPECT_TRUE(checks.count("41:id-range"));
  EXPECT_TRUE(checks.count("50:weight"));
  for (const auto& v : r.violations) {
    if (v.row == 41) {
      EXPECT_NE(v.str().find("id 1099511627776 outside [0, 16)"), std::string::npos) << v.str();
    }
  }
  // The kept list is bounded, the counts are not.
  CheckArrays a;
  const Routed bad = scale_by_slot(good);
  a.logits = logits_array(bad);
  a.weights = weights_array(bad);
  a.ids = ids_array(bad);
  a.scale = array_of(ElemType::f32, {bad.E}, bad.scale);
  const OwnedCheckProblem owned = assemble_check_problem(a, CheckInputOptions{});
  CheckOutputsOptions few;
  few.max_violations = 3;
  const CheckOutputsReport all = check_outputs(owned.view(), Contract{});
  const CheckOutputsReport capped = check_outputs(owned.view(), Contract{}, few);
  EXPECT_GT(all.violating_rows, 60);
  EXPECT_EQ(capped.violations.size(), 3u);
  EXPECT_EQ(capped.violations_total, all.violations_total);
  EXPECT_EQ(capped.violating_rows, all.violating_rows);
}

TEST(CheckOutputs, ManyRowsAcrossChunksKeepTheirRowNumbers) {
  // More rows than one oracle call takes (2^16 slots): rows keep their global numbers.
  Routed r = reference_routed(Family::softmax_topk, 20000, 8, 8, 3);
  r.weights[static_cast<std::size_t>(19999 * 8 + 3)] = 0.5f;
  r.ids[static_cast<std::size_t>(8193 * 8)] = 8;
  const CheckOutputsReport rep = check_routed(r);
  EXPECT_EQ(violating_rows(rep), (std::set<std::int64_t>{8193, 19999}));
  EXPECT_EQ(rep.rows_checked, 20000);
}

TEST(CheckOutputs, DeclaredContractsAndOutsideInputs) {
  Routed r = reference_routed(Family::softmax_topk, 8, 6, 2, 9);
  r.logits[3 * 6 + 4] = std::nanf("");  // row 3 has a NaN: a nan-zeroes-row router zeroes it
  r.ids[6] = 0;
  r.ids[7] = 1;
  r.weights[6] = 0.0f;
  r.weights[7] = 0.0f;
  EXPECT_EQ(violating_rows(check_routed(r)), (std::set<std::int64_t>{3}));
  Contract nz;
  ASSERT_TRUE(builtin_contract("nan-zeroes-row", &nz));
  EXPECT_TRUE(check_routed(r, nz).ok());
  // Outside the contract's domain: counted, not judged, not a failure.
  Contract small = nz;
  small.max_elements = 10;
  const CheckOutputsReport out = check_routed(planted_wrong(reference_routed(Family::gemma4, 64, 16, 4, 1)), small);
  EXPECT_FALSE(out.covered());
  EXPECT_EQ(out.outside_key, "T*E limit");
  EXPECT_TRUE(out.ok());
  EXPECT_EQ(out.rows_checked, 0);
}

TEST(CheckOutputs, AssemblyRejectsBadShapesAndDtypesByName) {
  const Routed good = reference_routed(Family::gemma4, 4, 8, 2, 5);
  auto base = [&] {
    CheckArrays a;
    a.logits = logits_array(good);
    a.logits.origin = "L.npy";
    a.weights = weights_array(good);
    a.weights.origin = "W.npy";
    a.ids = ids_array(good);
    a.ids.origin = "I.npy";
    a.scale = array_of(ElemType::f32, {good.E}, good.scale);
    a.scale->origin = "S.npy";
    return a;
  };
  auto expect_error = [](const CheckArrays& a, const CheckInputOptions& o, const std::string& words, const char* what) {
    try {
      assemble_check_problem(a, o);
      ADD_FAILURE() << what << ": accepted";
    } catch (const ArrayFileError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << what << ": " << e.what();
    }
  };
  CheckInputOptions o;
  EXPECT_NO_THROW(assemble_check_problem(base(), o));
  {
    auto a = base();
    a.logits.shape = {32};
    expect_error(a, o, "L.npy: shape: expected logits of shape [T, E], got shape [32]", "1-D logits");
  }
  {
    auto a = base();
    a.weights.shape = {2, 4};
    expect_error(a, o, "W.npy: shape: has 2 rows, the logits have T = 4", "row mismatch");
  }
  {
    auto a = base();
    a.ids.shape = {4, 1};
    a.ids.bytes.resize(32);
    expect_error(a, o, "ids shape [4, 1] differs from the weights' [4, 2]", "ids vs weights");
  }
  {
    CheckInputOptions k3 = o;
    k3.k = 3;
    expect_error(base(), k3, "k = 3 but the weights have 2 per row", "k mismatch");
  }
  {
    auto a = base();
    a.weights = array_of(ElemType::f32, {4, 9}, std::vector<float>(36, 0.1f));
    a.weights.origin = "W.npy";
    a.ids = array_of(ElemType::i64, {4, 9}, std::vector<std::int64_t>(36, 0));
    expect_error(a, o, "k = 9 is larger than E = 8", "k > E");
  }
  {
    auto a = base();
    std::vector<float> s = good.scale;
    s[5] = std::nanf("");
    a.scale = array_of(ElemType::f32, {good.E}, s);
    a.scale->origin = "S.npy";
    expect_error(a, o, "S.npy: values: scale[5] is nan", "NaN scale");
  }
  {
    auto a = base();
    a.scale = array_of(ElemType::f32, {3}, std::vector<float>{1, 1, 1});
    a.scale->origin = "S.npy";
    expect_error(a, o, "scale has 3 values, the logits have E = 8", "scale size");
  }
  {
    auto a = base();
    a.ids = array_of(ElemType::f32, {4, 2}, good.weights);
    a.ids.origin = "I.npy";
    expect_error(a, o, "ids must be int32 or int64, the file holds float32", "float ids");
  }
  {
    auto a = base();
    a.logits.type = ElemType::raw16;
    a.logits.bytes.resize(a.logits.bytes.size() / 2);
    a.logits.descr = "<V2";
    expect_error(a, o, "say what they are (--logits-dtype bf16 or f16)", "raw16 logits");
    CheckInputOptions bf = o;
    bf.logits_dtype = "bf16";
    EXPECT_NO_THROW(assemble_check_problem(a, bf));
  }
  {
    auto a = base();
    CheckInputOptions bf = o;
    bf.logits_dtype = "bf16";
    expect_error(a, bf, "logits requested as bf16 (--logits-dtype) but the file holds float32", "dtype conflict");
  }
  {
    auto a = base();
    std::vector<double> d(good.logits.begin(), good.logits.end());
    d[9] = 0.1;  // not a float32 value
    a.logits = array_of(ElemType::f64, {good.T, good.E}, d);
    a.logits.origin = "L.npy";
    expect_error(a, o, "logits[1, 1] = 0.10000000000000001 (float64) is not exactly representable in float32", "f64 logits");
    d[9] = 0.25;
    a.logits = array_of(ElemType::f64, {good.T, good.E}, d);
    EXPECT_NO_THROW(assemble_check_problem(a, o));
  }
  {
    CheckInputOptions soft = o;
    soft.family = Family::softmax_topk;
    expect_error(base(), soft, "per_expert_scale applies to gemma4 only", "scale for softmax_topk");
  }
}

TEST(CheckOutputs, SixteenBitLogitsAreJudgedBitExactly) {
  // bf16 and f16 logits with ties that only exist in 16 bits: the reference outputs pass, a
  // router that broke the tie on the float32 values it never saw does too (ties in any order).
  for (DType dt : {DType::f16, DType::bf16}) {
    const std::int64_t T = 16, E = 12;
    const int k = 3;
    std::uint64_t s = 77;
    std::vector<std::uint16_t> bits(static_cast<std::size_t>(T * E));
    std::vector<float> logical(bits.size());
    for (std::size_t i = 0; i < bits.size(); ++i) {
      const float v = round_to_dtype(static_cast<float>(std::floor(8.0 * unit(&s)) / 4.0), dt);
      bits[i] = dt == DType::f16 ? float_to_half_bits(v) : float_to_bf16_bits(v);
      logical[i] = v;
    }
    GatingView g{bits.data(), dt, T, E, E, 1};
    RoutingParams p;
    p.family = Family::softmax_topk;
    p.k = k;
    std::vector<double> w(static_cast<std::size_t>(T * k));
    std::vector<std::int32_t> ids(w.size());
    route_reference(g, p, w.data(), ids.data());
    CheckArrays a;
    a.logits = array_of(dt == DType::f16 ? ElemType::f16 : ElemType::raw16, {T, E}, bits);
    a.weights = array_of(ElemType::f64, {T, k}, w);
    a.ids = array_of(ElemType::i32, {T, k}, ids);
    CheckInputOptions o;
    o.family = Family::softmax_topk;
    o.logits_dtype = dt == DType::f16 ? "" : "bf16";
    const OwnedCheckProblem owned = assemble_check_problem(a, o);
    EXPECT_EQ(owned.logits_dtype, dt);
    const CheckOutputsReport r = check_outputs(owned.view());
    EXPECT_TRUE(r.ok()) << dtype_name(dt) << ": " << (r.violations.empty() ? "" : r.violations.front().str());
    EXPECT_GT(r.ties_at_kth, 0) << "the data has ties at the k-th place";
  }
}

// ==== the command ================================================================================

TEST_F(CheckCli, ReferenceOutputsExitZero) {
  write_routed(dir_, "", reference_routed(Family::gemma4, 64, 16, 4, 7));
  const CliRun r = run_cli("check --family gemma4 --k 4 " + files("") + " --json " + path("out.json"));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("OK: 64 row(s) satisfy the contract strict"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(std::ifstream(path("out.json")));
  EXPECT_EQ(j["schema"], "moecheck-check/1");
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["rows_checked"], 64);
  EXPECT_EQ(j["violations"].size(), 0u);
}

TEST_F(CheckCli, WrongOutputsExitOneListingTheRows) {
  write_routed(dir_, "", planted_wrong(reference_routed(Family::gemma4, 64, 16, 4, 7)));
  const CliRun r = run_cli("check --family gemma4 --k 4 " + files("") + " --max-rows 3 --json " + path("out.json"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("FAIL: 5 of 64 row(s) violate the contract strict"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n  row 5 slot 3 expert "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("selection"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n  row 17 slot 1 expert"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("duplicate-id"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n  row 40 slot 0: id-range: id -3 outside [0, 16)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("row 41 "), std::string::npos) << "bounded listing: " << r.out;
  EXPECT_NE(r.out.find("... and 2 more violating row(s) (every one is in " + path("out.json") + ")"), std::string::npos)
      << r.out;
  const auto j = nlohmann::json::parse(std::ifstream(path("out.json")));
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["violating_rows"], 5);
  std::set<std::int64_t> rows;
  for (const auto& v : j["violations"]) rows.insert(v["row"].get<std::int64_t>());
  EXPECT_EQ(rows, (std::set<std::int64_t>{5, 17, 40, 41, 50}));
  bool big_id = false;
  for (const auto& v : j["violations"]) {
    if (v["row"] == 41) big_id = v["expert"] == (std::int64_t{1} << 40) && v["check"] == "id-range";
  }
  EXPECT_TRUE(big_id) << j["violations"].dump();
  for (const auto& name : moecheck_test::names_in(dir_)) EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
}

TEST_F(CheckCli, WrongRouterOnEveryRow) {
  const Routed good = reference_routed(Family::gemma4, 200, 32, 6, 21);
  write_routed(dir_, "", scale_by_slot(good));
  const CliRun r = run_cli("check --family gemma4 " + files(""));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("FAIL: 200 of 200 row(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("... and 180 more violating row(s) (--json lists every one)"), std::string::npos) << r.out;
}

TEST_F(CheckCli, ContractsDecide) {
  Routed r = reference_routed(Family::softmax_topk, 8, 6, 2, 9);
  r.logits[3 * 6 + 4] = std::nanf("");
  r.ids[6] = 0;
  r.ids[7] = 1;
  r.weights[6] = 0.0f;
  r.weights[7] = 0.0f;
  write_routed(dir_, "", r);
  CliRun strict = run_cli("check --family softmax_topk " + files("", false));
  EXPECT_EQ(strict.rc, 1) << strict.out;
  EXPECT_NE(strict.out.find("FAIL: 1 of 8 row(s)"), std::string::npos) << strict.out;
  CliRun nz = run_cli("check --family softmax_topk " + files("", false) + " --contract nan-zeroes-row");
  EXPECT_EQ(nz.rc, 0) << nz.out;
  EXPECT_NE(nz.out.find("OK: 8 row(s) satisfy the contract nan-zeroes-row"), std::string::npos) << nz.out;
  CliRun outside = run_cli("check --family softmax_topk " + files("", false) + " --contract 'nan=zeroes-row max_elements=10'");
  EXPECT_EQ(outside.rc, 0) << outside.out;
  EXPECT_NE(outside.out.find("OUTSIDE the contract"), std::string::npos) << outside.out;
  EXPECT_NE(outside.out.find("8 row(s) not judged"), std::string::npos) << outside.out;
  CliRun unknown = run_cli("check --family softmax_topk " + files("", false) + " --contract no-such-contract");
  EXPECT_EQ(unknown.rc, 2) << unknown.out;
}

TEST_F(CheckCli, DtypesAndSafetensors) {
  const Routed good = reference_routed(Family::softmax_topk, 10, 8, 2, 4);
  write_routed(dir_, "", good);
  // bf16 logits as raw uint16 need --logits-dtype bf16: build a problem whose logits are bf16-exact.
  Routed b = good;
  std::vector<std::uint16_t> bits;
  for (float& v : b.logits) {
    bits.push_back(float_to_bf16_bits(v));
    v = bf16_bits_to_float(bits.back());
  }
  {
    GatingView g{b.logits.data(), DType::f32, b.T, b.E, b.E, 1};
    RoutingParams p;
    p.family = Family::softmax_topk;
    p.k = 2;
    std::vector<double> w(20);
    std::vector<std::int32_t> ids(20);
    route_reference(g, p, w.data(), ids.data());
    for (int i = 0; i < 20; ++i) {
      b.weights[static_cast<std::size_t>(i)] = static_cast<float>(w[static_cast<std::size_t>(i)]);
      b.ids[static_cast<std::size_t>(i)] = ids[static_cast<std::size_t>(i)];
    }
  }
  write_routed(dir_, "b_", b);
  write_bytes(dir_ / "b_logits.npy", format_npy(array_of(ElemType::raw16, {b.T, b.E}, bits)));
  write_bytes(dir_ / "b_u2.npy", npy_bytes(1, "{'descr': '<u2', 'fortran_order': False, 'shape': (10, 8), }", raw(bits)));
  CliRun r = run_cli("check --family softmax_topk " + files("b_", false));
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("b_logits.npy: descr: logits hold 2-byte values of no standard NumPy float type ('<V2'): say "
                       "what they are (--logits-dtype bf16 or f16)"),
            std::string::npos)
      << r.out;
  r = run_cli("check --family softmax_topk " + files("b_", false) + " --logits-dtype bf16");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("logits bf16"), std::string::npos) << r.out;
  r = run_cli("check --family softmax_topk --logits " + path("b_u2.npy") + " --weights " + path("b_weights.npy") +
              " --ids " + path("b_ids.npy") + " --logits-dtype bf16");
  EXPECT_EQ(r.rc, 0) << r.out;
  // Fortran-order and big-endian logits, int32 ids, float64 weights.
  std::vector<float> fo(good.logits.size());
  for (std::int64_t t = 0; t < good.T; ++t) {
    for (std::int64_t e = 0; e < good.E; ++e) fo[static_cast<std::size_t>(e * good.T + t)] = good.logits[static_cast<std::size_t>(t * good.E + e)];
  }
  write_bytes(dir_ / "fortran.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (10, 8), }", raw(fo)));
  std::vector<std::int32_t> ids32(good.ids.begin(), good.ids.end());
  write_bytes(dir_ / "ids32.npy", format_npy(array_of(ElemType::i32, {good.T, 2}, ids32)));
  std::vector<double> w64(good.weights.begin(), good.weights.end());
  write_bytes(dir_ / "w64.npy", format_npy(array_of(ElemType::f64, {good.T, 2}, w64)));
  r = run_cli("check --family softmax_topk --logits " + path("fortran.npy") + " --weights " + path("w64.npy") + " --ids " +
              path("ids32.npy"));
  EXPECT_EQ(r.rc, 0) << r.out;
  // One safetensors file.
  std::map<std::string, HostArray> t;
  t["logits"] = logits_array(good);
  t["weights"] = weights_array(good);
  t["ids"] = ids_array(good);
  write_bytes(dir_ / "good.safetensors", format_safetensors(t));
  r = run_cli("check --family softmax_topk --tensors " + path("good.safetensors"));
  EXPECT_EQ(r.rc, 0) << r.out;
  Routed wrong = good;
  wrong.weights[0] *= 1.5f;  // row 0 slot 0
  t["weights"] = weights_array(wrong);
  write_bytes(dir_ / "bad.safetensors", format_safetensors(t));
  r = run_cli("check --family softmax_topk --tensors " + path("bad.safetensors"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("\n  row 0 slot 0"), std::string::npos) << r.out;
  t["weight"] = t["weights"];
  write_bytes(dir_ / "typo.safetensors", format_safetensors(t));
  r = run_cli("check --family softmax_topk --tensors " + path("typo.safetensors"));
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("unexpected tensor 'weight'"), std::string::npos) << r.out;
  r = run_cli("check --family softmax_topk --tensors " + path("good.safetensors") + " --logits " + path("logits.npy"));
  EXPECT_EQ(r.rc, 2) << r.out;
}

TEST_F(CheckCli, BadInputIsExitTwoNamingTheProblem) {
  const Routed good = reference_routed(Family::gemma4, 16, 8, 2, 3);
  write_routed(dir_, "", good);
  const std::string logits = format_npy(logits_array(good));
  write_bytes(dir_ / "badmagic.npy", "\x93NUMPX" + logits.substr(6));
  write_bytes(dir_ / "truncated.npy", logits.substr(0, logits.size() - 10));
  write_bytes(dir_ / "garbage.npy", npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (16, 8) junk}",
                                              logits.substr(logits.size() - 16 * 8 * 4)));
  write_bytes(dir_ / "shape3d.npy", format_npy(array_of(ElemType::f32, {2, 8, 8}, good.logits)));
  write_bytes(dir_ / "wrongrows.npy", format_npy(array_of(ElemType::f32, {8, 2}, std::vector<float>(16, 0.5f))));
  write_bytes(dir_ / "k9w.npy", format_npy(array_of(ElemType::f32, {16, 9}, std::vector<float>(144, 0.1f))));
  write_bytes(dir_ / "k9i.npy", format_npy(array_of(ElemType::i64, {16, 9}, std::vector<std::int64_t>(144, 0))));
  std::vector<float> nan_scale = good.scale;
  nan_scale[2] = std::nanf("");
  write_bytes(dir_ / "nanscale.npy", format_npy(array_of(ElemType::f32, {8}, nan_scale)));
  write_bytes(dir_ / "floatids.npy", format_npy(array_of(ElemType::f32, {16, 2}, good.weights)));
  const std::string W = " --weights " + path("weights.npy"), I = " --ids " + path("ids.npy"), L = " --logits " + path("logits.npy");
  struct Case {
    std::string args, words;
  };
  const std::vector<Case> cases = {
      {" --logits " + path("badmagic.npy") + W + I, "badmagic.npy: magic: not a NumPy .npy file"},
      {" --logits " + path("truncated.npy") + W + I, "truncated.npy: data: truncated: shape [16, 8] of float32 needs 512 bytes"},
      {" --logits " + path("garbage.npy") + W + I, "garbage.npy: header: expected ',' or '}' after a value"},
      {" --logits " + path("shape3d.npy") + W + I, "shape3d.npy: shape: expected logits of shape [T, E], got shape [2, 8, 8]"},
      {L + " --weights " + path("wrongrows.npy") + I, "wrongrows.npy: shape: has 8 rows, the logits have T = 16"},
      {L + " --weights " + path("k9w.npy") + " --ids " + path("k9i.npy"), "k = 9 is larger than E = 8"},
      {L + W + I + " --k 3", "k = 3 but the weights have 2 per row"},
      {L + W + I + " --scale " + path("nanscale.npy"), "nanscale.npy: values: scale[2] is nan"},
      {L + W + " --ids " + path("floatids.npy"), "floatids.npy: descr: ids must be int32 or int64"},
      {L + W + " --ids " + path("missing.npy"), "missing.npy: file: no such file"},
      {L + W, "missing --ids"},
      {" --logits " + dir_.string() + W + I, "not a regular file"},
      {L + W + I + " --n-group 2", "apply to sigmoid_grouped only"},
  };
  for (const Case& c : cases) {
    const CliRun r = run_cli("check --family gemma4" + c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.words), std::string::npos) << c.words << "\n" << r.out;
  }
  const CliRun fam = run_cli("check --family gemma5" + L + W + I);
  EXPECT_EQ(fam.rc, 2) << fam.out;
  EXPECT_NE(fam.out.find("unknown routing family 'gemma5'"), std::string::npos) << fam.out;
}

TEST_F(CheckCli, UnwritableJsonIsExitThreeAndLeavesNothing) {
  write_routed(dir_, "", reference_routed(Family::gemma4, 8, 8, 2, 3));
  write_bytes(dir_ / "afile", "x");
  const CliRun r = run_cli("check --family gemma4 " + files("") + " --json " + path("afile") + "/out.json");
  EXPECT_EQ(r.rc, 3) << r.out;
  EXPECT_NE(r.out.find("--json"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("OK: 8 row(s)"), std::string::npos) << "the verdict is still printed: " << r.out;
}

TEST_F(CheckCli, HelpDescribesTheCommand) {
  const CliRun r = run_cli("check --help");
  EXPECT_EQ(r.rc, 0) << r.out;
  for (const char* w : {"--logits", "--weights", "--ids", "--scale", "--tensors", "--contract", "--json", "--logits-dtype",
                        "Exit status: 0"}) {
    EXPECT_NE(r.out.find(w), std::string::npos) << w << "\n" << r.out;
  }
}

TEST(ArrayFiles, MutatedFilesNeverCrash) {
  // Arbitrary edits of valid files (truncation, flipped and inserted bytes) either decode or are
  // an ArrayFileError; no other exception, no crash, no huge allocation.
  std::map<std::string, HostArray> t;
  t["logits"] = array_of(ElemType::f32, {3, 4}, std::vector<float>(12, 1.5f));
  t["ids"] = array_of(ElemType::i64, {3, 2}, std::vector<std::int64_t>(6, 1));
  const std::vector<std::string> seeds = {
      format_npy(t["logits"]), format_npy(t["ids"]),
      npy_bytes(3, "{'descr': '>f8', 'fortran_order': True, 'shape': (2, 2), }", std::string(32, '\x01')),
      format_safetensors(t)};
  std::uint64_t s = 2026;
  int decoded = 0, rejected = 0;
  for (int iter = 0; iter < 6000; ++iter) {
    std::string b = seeds[static_cast<std::size_t>(iter) % seeds.size()];
    const int edits = 1 + static_cast<int>(splitmix64(&s) % 4);
    for (int i = 0; i < edits; ++i) {
      const std::size_t pos = static_cast<std::size_t>(splitmix64(&s) % (b.size() + 1));
      switch (splitmix64(&s) % 4) {
        case 0: b.resize(pos); break;
        case 1: if (pos < b.size()) b[pos] = static_cast<char>(splitmix64(&s)); break;
        case 2: b.insert(pos, std::string(1, static_cast<char>(splitmix64(&s)))); break;
        case 3: if (pos < b.size()) b[pos] = "0123456789(),:'{}[]\"-"[splitmix64(&s) % 21]; break;
      }
    }
    try {
      if (iter % seeds.size() == 3) {
        parse_safetensors(b, "m.safetensors");
      } else {
        const HostArray a = parse_npy(b, "m.npy");
        ASSERT_EQ(static_cast<std::int64_t>(a.bytes.size()), a.elements() * static_cast<std::int64_t>(elem_type_size(a.type)));
      }
      ++decoded;
    } catch (const ArrayFileError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(decoded, 10);
}

TEST_F(CheckCli, GroupedFamilyWithBiasAndGroups) {
  // sigmoid_grouped (DeepSeek-V3): bias, groups and routed scaling come from the flags.
  const std::int64_t T = 40, E = 16;
  const int k = 4;
  std::uint64_t s = 31;
  std::vector<float> logits, bias;
  for (std::int64_t i = 0; i < T * E; ++i) logits.push_back(static_cast<float>(6.0 * unit(&s) - 3.0));
  for (std::int64_t e = 0; e < E; ++e) bias.push_back(static_cast<float>(0.2 * unit(&s) - 0.1));
  GatingView g{logits.data(), DType::f32, T, E, E, 1};
  RoutingParams p;
  p.family = Family::sigmoid_grouped;
  p.k = k;
  p.bias = bias.data();
  p.n_group = 4;
  p.topk_group = 2;
  p.routed_scaling = 2.5f;
  std::vector<double> w(static_cast<std::size_t>(T * k));
  std::vector<std::int32_t> ids(w.size());
  route_reference(g, p, w.data(), ids.data());
  write_bytes(dir_ / "logits.npy", format_npy(array_of(ElemType::f32, {T, E}, logits)));
  write_bytes(dir_ / "bias.npy", format_npy(array_of(ElemType::f32, {E}, bias)));
  write_bytes(dir_ / "weights.npy", format_npy(array_of(ElemType::f64, {T, k}, w)));
  write_bytes(dir_ / "ids.npy", format_npy(array_of(ElemType::i32, {T, k}, ids)));
  const std::string args = "check --family sigmoid_grouped " + files("", false) + " --bias " + path("bias.npy");
  CliRun r = run_cli(args + " --n-group 4 --topk-group 2 --routed-scaling 2.5");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("OK: 40 row(s)"), std::string::npos) << r.out;
  r = run_cli(args + " --n-group 4 --topk-group 2 --routed-scaling 2");  // wrong multiplier: every weight off
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("FAIL: 40 of 40 row(s)"), std::string::npos) << r.out;
  r = run_cli(args + " --n-group 3 --topk-group 2 --routed-scaling 2.5");  // E % n_group != 0
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("n_group"), std::string::npos) << r.out;
  r = run_cli("check --family gemma4 " + files("", false) + " --bias " + path("bias.npy"));
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("bias applies to sigmoid_grouped only"), std::string::npos) << r.out;
}
