# Runs a GPU campaign and checks what the user sees (cmake -P):
#   PROBE        executable that exits 0 when a CUDA device is usable; otherwise the test prints
#                "MOECHECK_GPU_SKIP: <its reason>" and stops (the test's SKIP_REGULAR_EXPRESSION)
#   EXE, ARGS    the command ('|'-separated arguments); CORPUS, when given, is emptied first
#   EXPECT_RC    the exit code it must return
#   REGEX        stdout+stderr must match it; FORBID (optional): must not match it
#   TOTAL_CASES  (optional) cases + skipped + outside contract of the summary line must equal it
#                (the campaign ran its whole budget)
#   MIN_CASES, MIN_ROWS (optional) lower bounds on the cases run and the rows they had
#   MIN_NONFINITE (optional) at least this many shrunk cases saved in CORPUS have a NaN or an
#                infinite logit
if(NOT PROBE OR NOT EXE)
  message(FATAL_ERROR "gpu_fuzz_expect.cmake needs -DPROBE and -DEXE")
endif()
execute_process(COMMAND ${PROBE} RESULT_VARIABLE probe_rc OUTPUT_VARIABLE probe_out ERROR_VARIABLE probe_err)
if(NOT probe_rc STREQUAL "0")
  string(STRIP "${probe_out}${probe_err}" why)
  message(STATUS "MOECHECK_GPU_SKIP: ${why}")
  return()
endif()

if(CORPUS)
  file(REMOVE_RECURSE "${CORPUS}")
endif()
string(REPLACE "|" ";" args "${ARGS}")
execute_process(COMMAND ${EXE} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
# The summary on stdout first (failure details, on stderr, can be long).
set(shown "stdout:\n${out}\nstderr:\n${err}")
if(NOT rc STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "exit code ${rc}, expected ${EXPECT_RC}\n${shown}")
endif()
if(NOT "${all}" MATCHES "${REGEX}")
  message(FATAL_ERROR "output does not match '${REGEX}'\n${shown}")
endif()
if(FORBID AND "${all}" MATCHES "${FORBID}")
  message(FATAL_ERROR "output matches the forbidden '${FORBID}' ('${CMAKE_MATCH_0}')\n${shown}")
endif()

if(DEFINED TOTAL_CASES OR DEFINED MIN_CASES OR DEFINED MIN_ROWS)
  if(NOT out MATCHES "cases ([0-9]+), rows ([0-9]+), skipped ([0-9]+), outside contract '[^']*' ([0-9]+), failures")
    message(FATAL_ERROR "no campaign summary line in the output\n${shown}")
  endif()
  set(cases ${CMAKE_MATCH_1})
  set(rows ${CMAKE_MATCH_2})
  math(EXPR total "${CMAKE_MATCH_1} + ${CMAKE_MATCH_3} + ${CMAKE_MATCH_4}")
  if(DEFINED TOTAL_CASES AND NOT total EQUAL TOTAL_CASES)
    message(FATAL_ERROR "the campaign drew ${total} cases, expected its whole budget of ${TOTAL_CASES}\n${shown}")
  endif()
  if(DEFINED MIN_CASES AND cases LESS MIN_CASES)
    message(FATAL_ERROR "only ${cases} cases ran, expected at least ${MIN_CASES}\n${shown}")
  endif()
  if(DEFINED MIN_ROWS AND rows LESS MIN_ROWS)
    message(FATAL_ERROR "only ${rows} rows ran, expected at least ${MIN_ROWS}\n${shown}")
  endif()
endif()

if(DEFINED MIN_NONFINITE)
  file(GLOB saved "${CORPUS}/*.case")
  set(nonfinite 0)
  foreach(f IN LISTS saved)
    file(READ "${f}" text)
    # The logits block: "logits T E", then the values, then "end".
    if(text MATCHES "\nlogits [0-9]+ [0-9]+\n([^e]|e[^n]|en[^d])*(nan|inf)")
      math(EXPR nonfinite "${nonfinite} + 1")
    endif()
  endforeach()
  list(LENGTH saved n_saved)
  if(nonfinite LESS MIN_NONFINITE)
    message(FATAL_ERROR "${nonfinite} of the ${n_saved} shrunk cases in ${CORPUS} have a NaN or infinite logit, "
                        "expected at least ${MIN_NONFINITE}\n${shown}")
  endif()
  message(STATUS "${nonfinite} of ${n_saved} shrunk cases have a NaN or infinite logit")
endif()
message(STATUS "ok (exit ${rc})\n${all}")
