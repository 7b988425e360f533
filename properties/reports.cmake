# Report, dashboard and regression-gate tests (moecheck::reports). Pure C++: always built.
moecheck_add_test(report_test
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/report_test.cpp
  LIBS moecheck::reports
  LABELS quick)
# Fixture location for running the binary by hand (ctest sets MOECHECK_SOURCE_DIR).
target_compile_definitions(report_test PRIVATE MOECHECK_REPORTS_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
