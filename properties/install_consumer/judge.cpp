#include "judge.hpp"

std::string judge(const moecheck::GatingView& g, const moecheck::RoutingParams& p, const float* weights,
                  const std::int32_t* ids, const std::string& contract) {
  moecheck::OracleOptions opt;
  opt.contract = moecheck::resolve_contract(contract);
  const moecheck::ContractCheck r = moecheck::check_with_contract(g, p, weights, ids, opt);
  if (!r.covered()) return "outside: " + r.outside;
  if (r.report.ok()) return "ok";
  const moecheck::Violation& v = r.report.violations.front();
  return "fail [" + v.check + "] " + v.str();
}
