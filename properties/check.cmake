# moecheck check: the .npy/safetensors readers, check_outputs, and the command run as a user runs
# it (files written to disk, the real executable, exit codes 0/1/2/3 and the listed rows).
moecheck_add_test(check_test SOURCES check_test.cpp LIBS moecheck::check moecheck::harness_core LABELS quick)
add_dependencies(check_test moecheck)
target_compile_definitions(check_test PRIVATE MOECHECK_EXE="$<TARGET_FILE:moecheck>")
# The same command on files NumPy itself wrote (every header version, Fortran order, big-endian,
# float16, bfloat16 bits, float64, int32): the project's Python environment has NumPy
# (scripts/setup_python.sh); the test is skipped (77) where NumPy cannot be imported.
if(EXISTS "${PROJECT_SOURCE_DIR}/.deps/venv/bin/python")
  add_test(NAME check_numpy COMMAND ${PROJECT_SOURCE_DIR}/.deps/venv/bin/python
           ${CMAKE_CURRENT_SOURCE_DIR}/check_numpy_test.py $<TARGET_FILE:moecheck>)
  set_tests_properties(check_numpy PROPERTIES LABELS quick TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()

# Corpus format version 2 through `moecheck replay`: a large case with a binary logits sidecar
# (and a missing, truncated or corrupted sidecar), and NaN bit patterns that a plugin ranking NaNs
# by sign and signalling bit needs to fail again on replay.
add_library(moecheck_case_nan_sign_plugin SHARED case_nan_sign_plugin.cpp)
target_include_directories(moecheck_case_nan_sign_plugin PRIVATE ${PROJECT_SOURCE_DIR})
set_target_properties(moecheck_case_nan_sign_plugin PROPERTIES CXX_VISIBILITY_PRESET hidden PREFIX "lib")
moecheck_warnings(moecheck_case_nan_sign_plugin)
moecheck_add_test(corpus_cli_test SOURCES corpus_cli_test.cpp LIBS moecheck::harness_core LABELS quick)
add_dependencies(corpus_cli_test moecheck moecheck_case_nan_sign_plugin)
target_compile_definitions(corpus_cli_test PRIVATE MOECHECK_EXE="$<TARGET_FILE:moecheck>"
                           MOECHECK_NAN_SIGN_PLUGIN="$<TARGET_FILE:moecheck_case_nan_sign_plugin>")
