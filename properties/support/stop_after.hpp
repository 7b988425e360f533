// A target wrapper that interrupts a campaign after a number of runs (header-only, test code only).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "harness/core/campaign.hpp"
#include "harness/core/target.hpp"

namespace moecheck_test {

/// Runs `inner` unchanged and asks the running campaign to stop (request_campaign_stop, as a
/// Ctrl-C or a preempted batch task would) at its `stop_after`-th run. Every other member
/// forwards to `inner`, so the campaign sees the same target.
class StopAfter final : public moecheck::Target {
 public:
  StopAfter(std::unique_ptr<moecheck::Target> inner, int stop_after)
      : inner_(std::move(inner)), left_(stop_after) {}
  std::string spec() const override { return inner_->spec(); }
  std::string device() const override { return inner_->device(); }
  std::string mutant() const override { return inner_->mutant(); }
  std::string unsupported(const moecheck::RoutingCase& c) const override { return inner_->unsupported(c); }
  moecheck::Domain domain() const override { return inner_->domain(); }
  moecheck::Precision precision() const override { return inner_->precision(); }
  bool runs_in_process() const override { return inner_->runs_in_process(); }
  moecheck::Contract contract() const override { return inner_->contract(); }
  bool interrupts_calls() const override { return inner_->interrupts_calls(); }
  moecheck::RunOutcome run(const moecheck::MaterializedCase& m, float* weights, std::int32_t* ids) override {
    if (--left_ == 0) moecheck::request_campaign_stop();
    return inner_->run(m, weights, ids);
  }

 private:
  std::unique_ptr<moecheck::Target> inner_;
  int left_;
};

}  // namespace moecheck_test
