# Reliability of `moecheck fuzz` against hostile code under test (hangs, out-of-bounds writes,
# exit() in-process, crashes), stop signals, worker cleanup, output-path checks and exit codes,
# driven through the real CLI by properties/cli_hostile_test.py (Python standard library only).
# The hostile plugin is a test-only shared object: never installed, never part of the plugin set.
add_library(moecheck_hostile_plugin SHARED plugins/hostile_plugin.cpp)
target_include_directories(moecheck_hostile_plugin PRIVATE ${PROJECT_SOURCE_DIR})
set_target_properties(moecheck_hostile_plugin PROPERTIES CXX_VISIBILITY_PRESET hidden PREFIX "lib")
moecheck_warnings(moecheck_hostile_plugin)

find_program(MOECHECK_PYTHON3 NAMES python3)
if(NOT MOECHECK_PYTHON3)
  message(WARNING "python3 not found: the cli_hostile_* tests are not registered")
  return()
endif()
foreach(scenario hang_budget hang_sigint hang_sigterm hang_sigint_inprocess hang_sigint_shrinking hang_sigkill
                 oob_ids oob_ids_inprocess oob_weights oob_weights_inprocess exit_inprocess quick_exit_inprocess
                 bad_output_paths write_fails_at_end case_timeout_flag interrupted_exit_code)
  add_test(NAME cli_hostile_${scenario}
           COMMAND ${MOECHECK_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/cli_hostile_test.py
                   --exe $<TARGET_FILE:moecheck> --plugin $<TARGET_FILE:moecheck_hostile_plugin> ${scenario})
  set_tests_properties(cli_hostile_${scenario} PROPERTIES LABELS quick TIMEOUT 90)
endforeach()
# The same through the persistent worker process that CUDA plugins run in (the host plugin is
# served by it: MOECHECK_PLUGIN_WORKER=1): hangs, stops, SIGKILL of moecheck, overruns, crashes.
foreach(scenario hang_budget hang_sigint hang_sigterm hang_sigint_shrinking hang_sigkill oob_ids oob_weights
                 case_timeout_flag segv_continues)
  add_test(NAME cli_hostile_worker_${scenario}
           COMMAND ${MOECHECK_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/cli_hostile_test.py
                   --exe $<TARGET_FILE:moecheck> --plugin $<TARGET_FILE:moecheck_hostile_plugin> --worker ${scenario})
  set_tests_properties(cli_hostile_worker_${scenario} PROPERTIES LABELS quick TIMEOUT 90)
endforeach()
add_test(NAME cli_hostile_segv_continues
         COMMAND ${MOECHECK_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/cli_hostile_test.py
                 --exe $<TARGET_FILE:moecheck> --plugin $<TARGET_FILE:moecheck_hostile_plugin> segv_continues)
set_tests_properties(cli_hostile_segv_continues PROPERTIES LABELS quick TIMEOUT 90)
