// moecheck check: judges routing outputs computed elsewhere (NumPy .npy or safetensors files).
#pragma once

#include <CLI/CLI.hpp>

#include <iosfwd>
#include <string>

namespace moecheck::cli {

struct CheckCliOptions {
  std::string family;
  int k = 0;                   ///< 0: from the weights' shape
  std::string logits, weights, ids, scale, bias;  ///< .npy files
  std::string tensors;         ///< one safetensors file holding logits, weights, ids [, scale, bias]
  std::string logits_dtype, weights_dtype;        ///< what 2-byte raw arrays hold ("bf16", "f16")
  int n_group = 1, topk_group = 1;
  double routed_scaling = 1.0;
  std::string contract;        ///< built-in name, file or spec ("" = strict)
  std::string compute = "f32"; ///< arithmetic of the implementation: f32, f16, bf16
  std::int64_t max_rows = 20;  ///< violating rows printed (all of them go to --json)
  std::string json;            ///< results JSON (schema moecheck-check/1), written atomically
};
void add_check_options(CLI::App* app, CheckCliOptions& o);
/// Reads the arrays, judges the outputs and prints the verdict. Returns 0 when every row
/// satisfies the contract (or the input lies outside it), 1 when rows violate it (listed), 3 when
/// the --json file cannot be written. Throws std::invalid_argument (ArrayFileError, RoutingError,
/// ContractError, CLI::ValidationError) for bad input: exit 2 in main.
int run_check(const CheckCliOptions& o, std::ostream& out);

}  // namespace moecheck::cli
