// moecheck device-side checking of cuda:<variant> campaigns (DESIGN.md, "Device checker").
//
// Cases are drawn in batches: the host draws each case's shape (generate_shape, as classic
// generation does), the device generates the values with the counter RNG, runs the fused kernel
// once per case, and judges every row with the fp64 device oracle. Back on the host, every row
// the device flags is confirmed with the host reference and oracle (reference/oracle.hpp), and a
// sample of passing rows (at least one per case, about 1 in 1,000) is re-checked there. A
// disagreement between the two checkers is a failure of its own (kCheckerDisagreement).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "harness/core/counter_case.hpp"
#include "harness/core/target.hpp"

namespace moecheck {

/// Failure class of a disagreement between the device checker and the host oracle (a checker
/// bug, never a kernel finding, never dropped).
constexpr const char* kCheckerDisagreement = "checker-disagreement";

/// Planted device-checker bugs, by name ("none", "accepts-any-weight"); used to show that the
/// host sample catches a wrong device checker.
const std::vector<std::string>& checker_mutant_names();
/// Parses a checker mutant name; throws std::invalid_argument listing the names.
int parse_checker_mutant(const std::string& name);

/// What happened to one case of a device batch.
struct DeviceCaseOutcome {
  enum class Kind {
    pass,              ///< every row passed on the device; its host samples agreed
    skipped,           ///< outside the target's domain
    outside_contract,  ///< outside the contract's domain
    host_path,         ///< not checkable on the device: evaluate it on the host
    fail,              ///< the device flagged it (confirmed: the host oracle agreed on a row)
    disagreement,      ///< device checker and host oracle disagree on a row
  };
  Kind kind = Kind::pass;
  std::int64_t index = 0;
  std::uint64_t seed = 0;
  CounterShape shape;
  RoutingCase c;                     ///< the case without its logits (shape, scale, names)
  std::vector<std::string> classes;  ///< pass / fail: classify() tags (value tags from the device)
  std::string outside_key;           ///< outside_contract
  bool confirmed = false;            ///< fail: the host oracle failed a flagged row too
  std::string check, message;        ///< fail / disagreement
  std::int64_t row = -1;             ///< the row concerned (-1: none)
};

/// Counters of a device-checked campaign.
struct DeviceCheckStats {
  std::int64_t batches = 0;
  std::int64_t device_cases = 0;      ///< cases judged on the device
  std::int64_t device_rows = 0;       ///< rows judged on the device
  std::int64_t flagged_rows = 0;      ///< rows the device flagged
  std::int64_t confirmed_rows = 0;    ///< flagged rows the host oracle confirmed
  std::int64_t sampled_rows = 0;      ///< passing or failing rows re-checked on the host
  std::int64_t disagreements = 0;     ///< rows on which the checkers disagreed
  double device_seconds = 0;          ///< GPU time of the batches (CUDA events): the three stages below
  double host_seconds = 0;            ///< wall time of host confirmation and sampling
  double generate_seconds = 0;        ///< GPU time: counter generation of values, scales and poisoned outputs
  double route_seconds = 0;           ///< GPU time: the fused kernel, one launch per case
  double check_seconds = 0;           ///< GPU time: the fp64 device oracle and the guards
  double prepare_seconds = 0;         ///< wall time of the host's case preparation (shapes, scales, domains)
  double wait_seconds = 0;            ///< wall time the host waited for the device

  /// Adds `o`'s counters and times (a resumed campaign's earlier part, merged shards).
  DeviceCheckStats& operator+=(const DeviceCheckStats& o);
};

/// One counter or time of DeviceCheckStats with its name in the results JSON (`check.device`):
/// `count` or `seconds` points at the member.
struct DeviceCheckField {
  const char* name;
  std::int64_t DeviceCheckStats::*count;
  double DeviceCheckStats::*seconds;
};

/// Every field of DeviceCheckStats, in the results JSON's order: the writer, the `--resume`
/// reader, the shard merger and operator+= all go through this list.
inline constexpr DeviceCheckField kDeviceCheckFields[] = {
    {"batches", &DeviceCheckStats::batches, nullptr},
    {"cases", &DeviceCheckStats::device_cases, nullptr},
    {"rows", &DeviceCheckStats::device_rows, nullptr},
    {"flagged_rows", &DeviceCheckStats::flagged_rows, nullptr},
    {"confirmed_rows", &DeviceCheckStats::confirmed_rows, nullptr},
    {"host_checked_rows", &DeviceCheckStats::sampled_rows, nullptr},
    {"disagreements", &DeviceCheckStats::disagreements, nullptr},
    {"device_seconds", nullptr, &DeviceCheckStats::device_seconds},
    {"host_seconds", nullptr, &DeviceCheckStats::host_seconds},
    {"generate_seconds", nullptr, &DeviceCheckStats::generate_seconds},
    {"route_seconds", nullptr, &DeviceCheckStats::route_seconds},
    {"check_seconds", nullptr, &DeviceCheckStats::check_seconds},
    {"prepare_seconds", nullptr, &DeviceCheckStats::prepare_seconds},
    {"wait_seconds", nullptr, &DeviceCheckStats::wait_seconds},
};

inline DeviceCheckStats& DeviceCheckStats::operator+=(const DeviceCheckStats& o) {
  for (const DeviceCheckField& f : kDeviceCheckFields) {
    if (f.count != nullptr) this->*f.count += o.*f.count;
    else this->*f.seconds += o.*f.seconds;
  }
  return *this;
}

/// One explicitly given case (benchmarks, tests): its index and seed (recorded in the outcome)
/// and its counter shape.
struct DeviceCaseRequest {
  std::int64_t index = 0;
  std::uint64_t seed = 0;
  CounterShape shape;
};

/// The device checker of one campaign (owns its device buffers and stream).
class DeviceChecker {
 public:
  virtual ~DeviceChecker() = default;
  /// Runs cases first, first + step, ... (at most max_cases of them, fewer when the batch's row
  /// or element limits are reached, at least one) and returns one outcome per case in index
  /// order. Never throws for CUDA errors: the cases of a batch that hit one come back as
  /// host_path (the host evaluation then reports the crash).
  ///
  /// Pipelined: before the host confirms and samples this batch, the next one (the cases after
  /// it, same seed, step, config and contract, the rest of max_cases) is prepared and launched,
  /// so the device works on it meanwhile; the next call that asks for exactly those cases gets
  /// it, any other call drops it. The outcomes are the same as without it, case for case.
  virtual std::vector<DeviceCaseOutcome> run_batch(std::uint64_t campaign_seed, std::int64_t first,
                                                   std::int64_t step, std::int64_t max_cases,
                                                   const GenConfig& gen, const OracleOptions& oracle) = 0;
  /// run_batch for the given cases, in order: returns the outcomes of the leading cases that fit
  /// one batch (at least one case). Not pipelined.
  virtual std::vector<DeviceCaseOutcome> run_cases(const std::vector<DeviceCaseRequest>& cases,
                                                   const OracleOptions& oracle) = 0;
  /// run_cases in two halves, for callers that pipeline given cases themselves: submit_cases
  /// prepares and launches the leading cases that fit one batch and returns how many it took,
  /// without waiting for the device; collect() waits for the oldest submitted batch and returns
  /// its outcomes (its host part overlaps the device part of a batch submitted after it). At most
  /// two batches are submitted and not collected (std::logic_error otherwise, and for run_batch or
  /// run_cases while any is).
  virtual std::int64_t submit_cases(const std::vector<DeviceCaseRequest>& cases, const OracleOptions& oracle) = 0;
  virtual std::vector<DeviceCaseOutcome> collect(const OracleOptions& oracle) = 0;
  virtual const DeviceCheckStats& stats() const = 0;
};

/// Options of the device checker.
struct DeviceCheckOptions {
  int checker_mutant = 0;            ///< parse_checker_mutant
  std::uint32_t sample_one_in = 1000;  ///< host-sample rate (plus one row per case)
  std::int64_t max_batch_rows = std::int64_t{1} << 22;
  /// Gating elements of a batch, gaps of padded and strided layouts included (2^28: at most
  /// 1 GiB of fp32 storage; a batch of 2^20 rows of E = 256 fits). Two batches are in flight
  /// (run_batch), each with its own buffers.
  std::int64_t max_batch_elements = std::int64_t{1} << 28;
  std::int64_t max_batch_cases = 4096;
};

/// A device checker for `target` when it is a cuda:<variant> target and this build and machine
/// can run one; nullptr otherwise, with the reason in *why.
std::unique_ptr<DeviceChecker> make_device_checker(Target& target, const DeviceCheckOptions& opt, std::string* why);

/// Outcome kind name ("pass", "skipped", ...), for logs and tests.
const char* outcome_kind_name(DeviceCaseOutcome::Kind k);

}  // namespace moecheck
