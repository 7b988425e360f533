// An outside program on the installed moecheck package: routes a small problem with the fp64
// reference, judges outputs with the oracle under named contracts, reads every .case file of a
// folder and replays it against the reference. One line per check; exit 0 when every result is
// the expected one, 1 when one is not, 2 on bad usage.
#include <cmath>
#include <cstdint>
#include <exception>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include <moecheck/harness/core/corpus.hpp>
#include <moecheck/kernels/moecheck_plugin.h>
#include <moecheck/reference/check/check.hpp>
#include <moecheck/reference/contract.hpp>
#include <moecheck/reference/routing.hpp>
#include "reference/format.hpp"  // the form the installed headers include each other by

#include "judge.hpp"

namespace {

int g_failures = 0;

void expect(bool ok, const std::string& what) {
  std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
  if (!ok) ++g_failures;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::string ids_text(const std::vector<std::int32_t>& ids, std::size_t row, int k) {
  std::string out;
  for (int j = 0; j < k; ++j) out += (j ? " " : "") + std::to_string(ids[row * static_cast<std::size_t>(k) + j]);
  return out;
}

/// The fp64 reference of (g, p) rounded to fp32.
void route_fp32(const moecheck::GatingView& g, const moecheck::RoutingParams& p, std::vector<float>* w,
                std::vector<std::int32_t>* ids) {
  const auto n = static_cast<std::size_t>(g.T * p.k);
  std::vector<double> wd(n);
  ids->assign(n, 0);
  moecheck::route_reference(g, p, wd.data(), ids->data());
  w->assign(wd.begin(), wd.end());
}

void routing_and_oracle() {
  using namespace moecheck;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // softmax_topk, T = 3, E = 4, k = 2: a plain row, a row with a NaN, a row with a tie.
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, -0.5f,
                                     nan,  0.5f, 0.25f, -1.0f,
                                     -2.0f, 4.0f, 4.0f, 1.0f};
  GatingView g;
  g.data = logits.data();
  g.dtype = DType::f32;
  g.T = 3;
  g.E = 4;
  g.row_stride = 4;
  g.col_stride = 1;
  RoutingParams p;
  p.family = Family::softmax_topk;
  p.k = 2;
  std::vector<float> w;
  std::vector<std::int32_t> ids;
  route_fp32(g, p, &w, &ids);
  expect(ids_text(ids, 0, 2) == "1 2", "reference row 0 selects experts 1 2 (got " + ids_text(ids, 0, 2) + ")");
  expect(ids_text(ids, 1, 2) == "1 2", "reference row 1 ranks the NaN last (got " + ids_text(ids, 1, 2) + ")");
  expect(ids_text(ids, 2, 2) == "1 2", "reference row 2 breaks the tie by index (got " + ids_text(ids, 2, 2) + ")");
  expect(std::fabs(double{w[0]} + w[1] - 1.0) < 1e-6 && w[0] > w[1],
         "reference row 0 weights " + num(w[0]) + " " + num(w[1]) + " renormalised");

  std::string r = judge(g, p, w.data(), ids.data(), "strict");
  expect(r == "ok", "oracle: the reference's output under strict: " + r);
  r = judge(g, p, w.data(), ids.data(), "nan-zeroes-row");
  expect(starts_with(r, "fail"), "oracle: the reference's output under nan-zeroes-row: " + r);

  // What a kernel that zeroes a row holding a NaN writes: ids 0..k-1, weights 0.
  std::vector<float> zw = w;
  std::vector<std::int32_t> zids = ids;
  zids[2] = 0;
  zids[3] = 1;
  zw[2] = zw[3] = 0.0f;
  r = judge(g, p, zw.data(), zids.data(), "strict");
  expect(starts_with(r, "fail"), "oracle: a zeroed NaN row under strict: " + r);
  r = judge(g, p, zw.data(), zids.data(), "nan-zeroes-row");
  expect(r == "ok", "oracle: a zeroed NaN row under nan-zeroes-row: " + r);

  std::vector<float> bad = w;
  bad[0] *= 1.001f;
  r = judge(g, p, bad.data(), ids.data(), "strict");
  expect(starts_with(r, "fail [weight]"), "oracle: a weight off by 0.1% under strict: " + r);

  Contract c;
  expect(builtin_contract("dense-probability-nan-zeroes-row", &c), "contract dense-probability-nan-zeroes-row is built in");
  expect(parse_contract_spec(contract_spec(c), "spec") == c, "contract spec round trip: " + contract_spec(c));
}

void corpus(const std::string& folder) {
  using namespace moecheck;
  const std::vector<std::string> paths = list_corpus_paths({folder});
  std::size_t clean = 0, round_trips = 0;
  for (const std::string& path : paths) {
    const CorpusEntry e = read_corpus_file(path);
    const MaterializedCase m = materialize(e.c);
    std::vector<float> w;
    std::vector<std::int32_t> ids;
    route_fp32(m.view, m.params, &w, &ids);
    const std::string r = judge(m.view, m.params, w.data(), ids.data(), "strict");
    if (r == "ok") {
      ++clean;
    } else {
      std::cout << "FAIL replay " << path << ": " << r << "\n";
    }
    const std::string text = format_corpus_entry(e);
    if (format_corpus_entry(parse_corpus_entry(text, path)) == text) ++round_trips;
  }
  std::cout << "corpus: " << paths.size() << " cases read, " << clean << " replayed clean against the reference, "
            << round_trips << " round-tripped\n";
  expect(!paths.empty() && clean == paths.size() && round_trips == paths.size(), "corpus replay");

  try {
    parse_corpus_entry("moecheck-case 1\nfamily no-such-family\n", "bad.case");
    expect(false, "a malformed case is rejected");
  } catch (const CorpusError& ex) {
    expect(ex.file() == "bad.case", std::string("a malformed case is rejected: ") + ex.what());
  }
}

}  // namespace

/// moecheck::check: outputs computed "elsewhere" (here: the reference rounded to fp32, then one
/// planted wrong weight) judged through the check_outputs API.
void check_api() {
  using namespace moecheck;
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, 3.0f,
                                     -0.25f, 1.0f, 0.75f, -2.0f, 2.5f, 0.125f};
  const std::vector<float> scale = {1.0f, 0.5f, 2.0f, 1.5f, 0.75f, 1.25f};
  GatingView g;
  g.data = logits.data();
  g.dtype = DType::f32;
  g.T = 2;
  g.E = 6;
  g.row_stride = 6;
  g.col_stride = 1;
  RoutingParams p;
  p.family = Family::gemma4;
  p.k = 2;
  p.scale = scale.data();
  std::vector<float> w;
  std::vector<std::int32_t> ids32;
  route_fp32(g, p, &w, &ids32);
  std::vector<std::int64_t> ids(ids32.begin(), ids32.end());
  CheckProblem problem;
  problem.logits = g;
  problem.params = p;
  problem.weights = w.data();
  problem.ids = ids.data();
  CheckOutputsReport r = check_outputs(problem, resolve_contract("strict"));
  expect(r.ok() && r.rows_checked == 2, "check_outputs: the reference's gemma4 outputs pass (" +
                                            std::to_string(r.violations_total) + " violations)");
  w[3] *= 1.01f;  // row 1, slot 1
  r = check_outputs(problem, resolve_contract("strict"));
  expect(!r.ok() && r.violating_rows == 1 && !r.violations.empty() && r.violations[0].row == 1,
         "check_outputs: a weight 1% off is found in row 1 (" + std::to_string(r.violating_rows) +
             " violating rows)");
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: moecheck_consumer <corpus folder>\n";
    return 2;
  }
  try {
    routing_and_oracle();
    check_api();
    corpus(argv[1]);
  } catch (const std::exception& ex) {
    std::cout << "FAIL unexpected error: " << ex.what() << "\n";
    ++g_failures;
  }
  expect(MOECHECK_PLUGIN_ABI_VERSION_2 == 2 && sizeof(moecheck_plugin_desc_v2) > sizeof(moecheck_plugin_desc_v1),
         "plugin ABI header version " + std::to_string(MOECHECK_PLUGIN_ABI_VERSION_2));
  std::cout << "consumer: " << (g_failures == 0 ? "all checks passed" : std::to_string(g_failures) + " failed")
            << "\n";
  return g_failures == 0 ? 0 : 1;
}
