#include "harness/core/replay.hpp"

#include "kernels/routing_kernels.hpp"

namespace moecheck {

ReplayResult replay_entry(const CorpusEntry& e, const std::string& path, const std::string& target_override,
                          const TargetFactory& factory, const TargetOptions& base,
                          const std::optional<Contract>& contract_override) {
  ReplayResult r;
  r.path = path;
  std::string spec = target_override.empty() ? e.target : target_override;
  if (spec.rfind("cuda", 0) == 0 && !cuda_device_available()) {
    kernels::Mutant m = kernels::Mutant::none;
    if (kernels::parse_mutant(e.mutant, &m) && kernels::mutant_is_gpu_only(m)) {
      r.target = spec;
      r.outcome = "skipped";
      r.ok = true;
      r.detail = "GPU-only mutant '" + e.mutant + "' needs a CUDA device";
      return r;
    }
    spec = "kernel" + spec.substr(4);
  }
  r.target = spec;
  std::unique_ptr<Target> t;
  try {
    TargetOptions opt = base;
    opt.mutant = e.mutant;
    t = factory(spec, opt);
  } catch (const std::exception& ex) {
    r.outcome = "error";
    r.detail = ex.what();
    return r;
  }
  OracleOptions oracle;
  try {
    oracle.contract = effective_contract(
        *t, contract_override ? *contract_override : parse_contract_spec(e.contract, path));
  } catch (const ContractError& ex) {
    r.outcome = "error";
    r.detail = ex.what();
    return r;
  }
  Verdict v = evaluate(*t, e.c, oracle);
  if (v.kind == Verdict::Kind::abandoned) {  // interrupted before a verdict: not a match either way
    r.outcome = "error";
    r.detail = "not judged: " + v.message;
    return r;
  }
  if (v.kind == Verdict::Kind::skipped || v.kind == Verdict::Kind::outside_contract) {
    r.outcome = "skipped";
    r.ok = true;
    r.detail = v.kind == Verdict::Kind::outside_contract ? "outside the contract: " + v.message : v.message;
    return r;
  }
  r.outcome = v.failed() ? "fail" : "pass";
  r.detail = v.failed() ? "[" + v.check + "] " + v.message : std::string();
  const bool expect_fail = e.expect == Expectation::fail;
  r.ok = v.failed() == expect_fail;
  if (!r.ok) {
    r.detail = expect_fail ? "expected the target to be caught, but every check passed"
                           : "regression: " + r.detail;
  }
  return r;
}

std::vector<ReplayResult> replay_paths(const std::vector<std::string>& paths,
                                       const std::string& target_override, const TargetFactory& factory,
                                       const ReplayOptions& options) {
  std::vector<ReplayResult> out;
  std::vector<std::string> files;
  for (const auto& p : paths) {
    try {
      auto found = list_corpus_paths({p}, options.allow_empty);
      files.insert(files.end(), found.begin(), found.end());
    } catch (const CorpusError& ex) {
      out.push_back({p, "", "error", false, ex.what()});
    }
  }
  for (const auto& f : files) {
    try {
      CorpusEntry e = read_corpus_file(f);
      out.push_back(replay_entry(e, f, target_override, factory, options.target, options.contract));
    } catch (const CorpusError& ex) {
      out.push_back({f, "", "error", false, ex.what()});
    }
  }
  return out;
}

}  // namespace moecheck
