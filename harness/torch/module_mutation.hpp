// moecheck mutation testing, LibTorch part: the kill-matrix rows of the MoE module's
// stale-capture variants (substitution_types.hpp), found by the substitution suite.
#pragma once

#include <string>
#include <vector>

#include "harness/core/mutation.hpp"

namespace moecheck::harness {

/// Names of the module variants that are planted bugs ("module:capture_handle", ...).
std::vector<std::string> module_mutant_names();
/// Runs the substitution suite against every bug variant of the module on the CUDA device
/// (options.cuda) or the cpu: the properties that can kill a variant (every one except
/// restoration) in every mode, options.cases split evenly over the (property, mode) runs (at
/// least 1 case each), modes in order rebind, in_place, copy_into. A variant is killed by its
/// first failing run; by_check records "property/mode" -> cases to its first failure for every
/// run that caught it. The first kill's counterexample is saved as a .subst file in
/// options.corpus_dir (note = its path) or, without a corpus, note = its replay line.
std::vector<KillRow> run_module_mutants(const MutationOptions& options);

}  // namespace moecheck::harness
