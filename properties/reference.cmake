# Reference routing, oracles, cases and generators (pure C++: no LibTorch, no CUDA).
moecheck_add_test(reference_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/reference_test.cpp
  LIBS moecheck::harness_core rapidcheck
  LABELS quick)
moecheck_add_test(oracle_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/oracle_test.cpp
  LIBS moecheck::harness_core rapidcheck
  LABELS quick)
# Properties of the reference and oracles over the RapidCheck generators, including agreement
# with LibTorch's composite ops and the planted kernel bugs (LibTorch via moecheck::harness).
moecheck_add_test(reference_prop
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/reference_prop.cpp
  LIBS moecheck::harness rapidcheck
  LABELS quick)
# The tuned hot paths (generation, reference, oracle) against pinned case hashes and the plain
# implementation they replace.
moecheck_add_test(fast_path_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fast_path_test.cpp
  LIBS moecheck::harness_core
  LABELS quick)
