// moecheck number text: the one spelling of a number in corpus files, case descriptions and
// error messages. Pure C++17.
#pragma once

#include <string>

namespace moecheck {

/// "%.9g" of v: nine significant digits, enough for every float to read back bit-exactly,
/// with nan/inf spelled the C way ("nan", "-nan", "inf", "-inf"). Corpus files depend on this
/// exact text: changing it changes every committed case.
std::string num(double v);

}  // namespace moecheck
