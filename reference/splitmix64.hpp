// moecheck splitmix64: the 64-bit mixer behind every seed (case seeds of a campaign, the
// generators' xoshiro256** state, the benchmark's device-side input fill). Header-only and
// constexpr; compiled by nvcc it is also a device function, so host and device agree bit for bit.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MOECHECK_SPLITMIX64_HD __host__ __device__
#else
#define MOECHECK_SPLITMIX64_HD
#endif

namespace moecheck {

/// Golden-ratio increment of the splitmix64 sequence.
constexpr std::uint64_t kSplitmix64Gamma = 0x9e3779b97f4a7c15ull;

/// splitmix64 output for state x: mixes x + kSplitmix64Gamma (a bijection on 64-bit values).
/// Stateless form, used to derive independent seeds from (seed, index) pairs.
MOECHECK_SPLITMIX64_HD constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += kSplitmix64Gamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// splitmix64 step: returns splitmix64(*state) and advances *state by kSplitmix64Gamma.
/// Used to expand one 64-bit seed into a longer generator state.
MOECHECK_SPLITMIX64_HD constexpr std::uint64_t splitmix64(std::uint64_t* state) {
  const std::uint64_t x = *state;
  *state = x + kSplitmix64Gamma;
  return splitmix64(x);
}

}  // namespace moecheck

#undef MOECHECK_SPLITMIX64_HD
