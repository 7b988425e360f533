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
