# Reference routing, oracles, cases and generators (pure C++: no LibTorch, no CUDA).
moecheck_add_test(reference_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/reference_test.cpp
  LIBS moecheck::harness_core rapidcheck
  LABELS quick)
moecheck_add_test(oracle_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/oracle_test.cpp
  LIBS moecheck::harness_core rapidcheck
  LABELS quick)
