// The consumer's shared library: the installed static moecheck libraries linked into a .so.
#pragma once

#include <cstdint>
#include <string>

#include <moecheck/reference/oracle.hpp>

/// Judges an output ([T, k] weights and ids) of the problem (g, p) with the oracle under the
/// contract `contract` (a built-in name, a file or a spec line): "ok", "outside: <why>" when the
/// contract does not cover the input, or "fail [<check>] <first violation>".
std::string judge(const moecheck::GatingView& g, const moecheck::RoutingParams& p, const float* weights,
                  const std::int32_t* ids, const std::string& contract);
