// moecheck check: the command over reference/check (array files -> check_outputs -> verdict).
#include "harness/cli/commands_check.hpp"

#include <cmath>
#include <iostream>
#include <map>
#include <ostream>
#include <set>

#include <nlohmann/json.hpp>

#include "harness/cli/commands.hpp"
#include "harness/core/campaign.hpp"
#include "reference/check/check.hpp"

namespace moecheck::cli {
namespace {

nlohmann::json number_or_null(double v) {
  if (std::isfinite(v)) return v;
  return nullptr;
}

nlohmann::json array_json(const HostArray& a) {
  return {{"origin", a.origin}, {"dtype", elem_type_name(a.type)}, {"descr", a.descr}, {"shape", a.shape}};
}

}  // namespace

void add_check_options(CLI::App* app, CheckCliOptions& o) {
  app->add_option("--family", o.family, "Routing family: gemma4, softmax_topk, softmax_topk_raw, sigmoid_grouped, sigmoid_top1")
      ->required();
  app->add_option("--k", o.k, "Experts per row (default: the weights' second dimension; must agree with it)")
      ->transform(integer_in(1, 1 << 20));
  app->add_option("--logits", o.logits, "Gating logits [T, E] (.npy: float32, float16, float64 exact in float32, "
                                        "or bfloat16 with --logits-dtype bf16)");
  app->add_option("--weights", o.weights, "Routing weights the implementation wrote [T, k] (.npy, floating-point)");
  app->add_option("--ids", o.ids, "Expert ids the implementation wrote [T, k] (.npy, int32 or int64)");
  app->add_option("--scale", o.scale, "per_expert_scale [E] (.npy; gemma4 only; default all ones)");
  app->add_option("--bias", o.bias, "Selection bias [E] (.npy; sigmoid_grouped only; default zeros)");
  app->add_option("--tensors", o.tensors,
                  "One safetensors file holding tensors named logits, weights, ids (and scale, bias) instead of the "
                  ".npy files")
      ->excludes("--logits")
      ->excludes("--weights")
      ->excludes("--ids")
      ->excludes("--scale")
      ->excludes("--bias");
  app->add_option("--logits-dtype", o.logits_dtype,
                  "What the logits hold when the file cannot say: bf16 or f16 for 2-byte raw arrays (|V2, <V2, <u2)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  app->add_option("--weights-dtype", o.weights_dtype, "The same for the weights")->check(CLI::IsMember({"f32", "f16", "bf16"}));
  app->add_option("--n-group", o.n_group, "sigmoid_grouped: expert groups (E % n_group == 0)")
      ->transform(integer_in(1, 1 << 20))
      ->capture_default_str();
  app->add_option("--topk-group", o.topk_group, "sigmoid_grouped: groups selected")
      ->transform(integer_in(1, 1 << 20))
      ->capture_default_str();
  app->add_option("--routed-scaling", o.routed_scaling, "sigmoid_grouped: final weight multiplier (finite)")
      ->capture_default_str();
  app->add_option("--contract", o.contract,
                  "Contract the outputs are judged by: a built-in name (strict, probability-ranked, nan-zeroes-row, "
                  "dense-probability-nan-zeroes-row, nan-propagates), a contract file or a one-line spec (default strict)");
  app->add_option("--compute", o.compute, "Arithmetic the implementation computes weights in: f32, f16, bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  app->add_option("--max-rows", o.max_rows, "Violating rows printed (every one goes to --json)")
      ->transform(integer_in(0, 1000000000))
      ->capture_default_str();
  app->add_option("--json", o.json, "Write the verdict and every violation as JSON here (schema moecheck-check/1)");
  app->footer(
      "Exit status: 0 every row satisfies the contract (or the input lies outside it: counted, not judged); "
      "1 rows violate it (listed: row, slot, check, message); 2 bad input (file, field and problem named); "
      "3 the --json file could not be written.");
}

int run_check(const CheckCliOptions& o, std::ostream& out) {
  CheckInputOptions in;
  if (!parse_family(o.family, &in.family)) {
    throw CLI::ValidationError("--family", "unknown routing family '" + o.family +
                                               "' (gemma4, softmax_topk, softmax_topk_raw, sigmoid_grouped, sigmoid_top1)");
  }
  if (!std::isfinite(o.routed_scaling) || static_cast<double>(static_cast<float>(o.routed_scaling)) != o.routed_scaling) {
    throw CLI::ValidationError("--routed-scaling", "expected a finite number exactly representable in float32");
  }
  if (in.family != Family::sigmoid_grouped && (o.n_group != 1 || o.topk_group != 1 || o.routed_scaling != 1.0)) {
    throw CLI::ValidationError("--n-group/--topk-group/--routed-scaling", "apply to sigmoid_grouped only");
  }
  in.k = o.k;
  in.n_group = o.n_group;
  in.topk_group = o.topk_group;
  in.routed_scaling = static_cast<float>(o.routed_scaling);
  in.logits_dtype = o.logits_dtype;
  in.weights_dtype = o.weights_dtype;

  CheckArrays arrays;
  if (!o.tensors.empty()) {
    auto tensors = read_safetensors_file(o.tensors);
    static const std::set<std::string> known = {"logits", "weights", "ids", "scale", "bias"};
    for (const auto& kv : tensors) {
      if (!known.count(kv.first)) {
        throw ArrayFileError(o.tensors, "tensors", "unexpected tensor '" + kv.first +
                                                       "' (expected logits, weights, ids and optionally scale, bias)");
      }
    }
    for (const char* name : {"logits", "weights", "ids"}) {
      if (!tensors.count(name)) throw ArrayFileError(o.tensors, "tensors", std::string("no tensor named '") + name + "'");
    }
    arrays.logits = std::move(tensors.at("logits"));
    arrays.weights = std::move(tensors.at("weights"));
    arrays.ids = std::move(tensors.at("ids"));
    if (tensors.count("scale")) arrays.scale = std::move(tensors.at("scale"));
    if (tensors.count("bias")) arrays.bias = std::move(tensors.at("bias"));
  } else {
    std::string missing;
    if (o.logits.empty()) missing += " --logits";
    if (o.weights.empty()) missing += " --weights";
    if (o.ids.empty()) missing += " --ids";
    if (!missing.empty()) {
      throw CLI::ValidationError("check", "missing" + missing + " (or --tensors FILE.safetensors holding them)");
    }
    arrays.logits = read_npy_file(o.logits);
    arrays.weights = read_npy_file(o.weights);
    arrays.ids = read_npy_file(o.ids);
    if (!o.scale.empty()) arrays.scale = read_npy_file(o.scale);
    if (!o.bias.empty()) arrays.bias = read_npy_file(o.bias);
  }
  const Contract contract = o.contract.empty() ? Contract{} : resolve_contract(o.contract);
  const OwnedCheckProblem owned = assemble_check_problem(arrays, in);
  CheckProblem problem = owned.view();
  DType compute = DType::f32;
  parse_dtype(o.compute, &compute);
  problem.precision = compute_precision(compute);
  const CheckOutputsReport r = check_outputs(problem, contract);

  out << "moecheck check: " << family_name(in.family) << ", T " << r.T << ", E " << r.E << ", k " << r.k << ", logits "
      << dtype_name(owned.logits_dtype) << " (" << arrays.logits.origin << "), compute " << o.compute << "\n"
      << "  " << describe_contract(contract) << "\n";
  for (const auto& note : owned.notes) out << "  note: " << note << "\n";
  if (!r.covered()) {
    out << "OUTSIDE the contract " << contract.name << " (" << r.outside_key << "): " << r.outside << "; " << r.T
        << " row(s) not judged (outside the declared contract is not a failure)\n";
  } else if (r.ok()) {
    out << "OK: " << r.rows_checked << " row(s) satisfy the contract " << contract.name << " (" << r.ties_at_kth
        << " with a tie at the k-th place)\n";
  } else {
    out << "FAIL: " << r.violating_rows << " of " << r.rows_checked << " row(s) violate the contract " << contract.name
        << " (" << r.violations_total << " violation(s)):\n";
    std::int64_t rows_shown = 0, last_row = -2;
    for (const Violation& v : r.violations) {
      if (v.row != last_row) {
        if (rows_shown == o.max_rows) break;
        ++rows_shown;
        last_row = v.row;
      }
      out << "  " << v.str() << "\n";
    }
    if (r.violating_rows > rows_shown) {
      out << "  ... and " << (r.violating_rows - rows_shown) << " more violating row(s)"
          << (o.json.empty() ? " (--json lists every one)" : " (every one is in " + o.json + ")") << "\n";
    }
  }

  if (!o.json.empty()) {
    nlohmann::json j;
    j["schema"] = "moecheck-check/1";
    j["tool"] = {{"version", tool_version()}, {"commit", source_commit()}};
    j["family"] = family_name(in.family);
    j["T"] = r.T;
    j["E"] = r.E;
    j["k"] = r.k;
    j["compute"] = o.compute;
    j["inputs"] = {{"logits", array_json(arrays.logits)}, {"weights", array_json(arrays.weights)},
                   {"ids", array_json(arrays.ids)}};
    if (arrays.scale) j["inputs"]["scale"] = array_json(*arrays.scale);
    if (arrays.bias) j["inputs"]["bias"] = array_json(*arrays.bias);
    j["notes"] = owned.notes;
    j["contract"] = {{"name", contract.name}, {"spec", contract_spec(contract)}, {"description", describe_contract(contract)}};
    j["outside_contract"] = r.covered() ? nlohmann::json(nullptr)
                                        : nlohmann::json{{"reason", r.outside_key}, {"detail", r.outside}};
    j["ok"] = r.ok();
    j["rows_checked"] = r.rows_checked;
    j["violating_rows"] = r.violating_rows;
    j["violations_total"] = r.violations_total;
    j["violations_listed"] = r.violations.size();
    j["ties_at_kth"] = r.ties_at_kth;
    nlohmann::json vs = nlohmann::json::array();
    for (const Violation& v : r.violations) {
      vs.push_back({{"row", v.row},
                    {"slot", v.slot >= 0 ? nlohmann::json(v.slot) : nlohmann::json(nullptr)},
                    {"expert", v.expert >= 0 ? nlohmann::json(v.expert) : nlohmann::json(nullptr)},
                    {"check", v.check},
                    {"expected", number_or_null(v.expected)},
                    {"got", number_or_null(v.got)},
                    {"tolerance", number_or_null(v.tolerance)},
                    {"message", v.str()}});
    }
    j["violations"] = std::move(vs);
    try {
      write_atomically(o.json, j.dump(1) + "\n");
    } catch (const std::exception& e) {
      std::cerr << "moecheck check: error: --json: " << e.what() << "\n";
      return 3;
    }
  }
  return r.ok() ? 0 : 1;
}

}  // namespace moecheck::cli
