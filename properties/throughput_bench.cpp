// Harness throughput on the CPU, on the same case class as the Python anchor
// (Hypothesis + PyTorch): E in [1, 256], k in [1, min(E, 32)], T in [0, 64], logits ~ N(0, 1),
// scale ~ U(0.5, 1.5), fp32. Each example = generate + run the implementation + tie-aware
// selection check + fp64 weight check. Reported as examples/s (items_per_second).
//
//   build/default/properties/throughput_bench --benchmark_repetitions=3
//   /usr/bin/python3 ../shared/anchors/hypothesis_routing_anchor.py 2000   (the anchor)
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>

#include "harness/core/target.hpp"
#include "harness/torch/torch_targets.hpp"

namespace {

using namespace moecheck;

/// xorshift-based generator for the anchor's distribution (deterministic, no std distributions).
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }
  int range(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<std::uint64_t>(hi - lo + 1)); }
  /// Standard normal deviates by Marsaglia's polar method (two per accepted pair).
  double normal() {
    if (have_spare) {
      have_spare = false;
      return spare;
    }
    double u, v, q;
    do {
      u = 2.0 * uniform() - 1.0;
      v = 2.0 * uniform() - 1.0;
      q = u * u + v * v;
    } while (q >= 1.0 || q == 0.0);
    const double f = std::sqrt(-2.0 * std::log(q) / q);
    spare = v * f;
    have_spare = true;
    return u * f;
  }
  double spare = 0.0;
  bool have_spare = false;
};

RoutingCase anchor_case(Rng& rng) {
  RoutingCase c;
  c.family = Family::gemma4;
  c.dtype = DType::f32;
  c.E = rng.range(1, 256);
  c.k = rng.range(1, static_cast<int>(std::min<std::int64_t>(c.E, 32)));
  c.T = rng.range(0, 64);
  c.logits.resize(static_cast<std::size_t>(c.T * c.E));
  for (auto& v : c.logits) v = static_cast<float>(rng.normal());
  c.scale.resize(static_cast<std::size_t>(c.E));
  for (auto& v : c.scale) v = static_cast<float>(rng.uniform() + 0.5);
  return c;
}

void run(benchmark::State& state, const char* spec) {
  auto target = make_target(spec, {});
  Rng rng{0x9e3779b97f4a7c15ull};
  std::int64_t examples = 0, failures = 0;
  for (auto _ : state) {
    RoutingCase c = anchor_case(rng);
    Verdict v = evaluate(*target, c);
    failures += v.failed();
    ++examples;
  }
  state.SetItemsProcessed(examples);
  state.counters["failures"] = static_cast<double>(failures);
  if (failures) state.SkipWithError("the implementation failed checks on the anchor's case class");
}

void BM_Examples_Composite(benchmark::State& s) { run(s, "composite"); }
void BM_Examples_KernelHost(benchmark::State& s) { run(s, "kernel:auto"); }
void BM_Examples_Reference(benchmark::State& s) { run(s, "reference"); }

BENCHMARK(BM_Examples_Composite)->MinTime(2.0)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Examples_KernelHost)->MinTime(2.0)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Examples_Reference)->MinTime(2.0)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
