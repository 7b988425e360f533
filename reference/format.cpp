// moecheck number text: implementation of reference/format.hpp.
#include "reference/format.hpp"

#include <cstdio>

namespace moecheck {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace moecheck
