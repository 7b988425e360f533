# Folder replay reports every entry it cannot read, and an empty corpus is an error unless
# --allow-empty: `moecheck replay` (*.case) and `moecheck substitution --replay` (*.subst)
# behave alike.
#   cmake -DEXE=<moecheck> -DWORK=<scratch folder> -P cli_replay_folders.cmake
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

set(failures "")
# expect(<name> <rc> <regex> <args...>): runs EXE with args, checks exit code and output.
function(expect name want_rc regex)
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT 120)
  if(NOT rc STREQUAL "${want_rc}")
    message(SEND_ERROR "${name}: exit code ${rc}, expected ${want_rc}\nstdout: ${out}\nstderr: ${err}")
  elseif(NOT "${out}${err}" MATCHES "${regex}")
    message(SEND_ERROR "${name}: output does not match '${regex}'\nstdout: ${out}\nstderr: ${err}")
  else()
    message(STATUS "ok ${name} (exit ${rc})")
  endif()
endfunction()

foreach(ext case subst)
  if(ext STREQUAL "case")
    set(cmd replay)
  else()
    set(cmd substitution --replay)
  endif()
  # A dangling symbolic link, a symbolic-link loop and a FIFO named like corpus files.
  file(MAKE_DIRECTORY "${WORK}/${ext}-dangling" "${WORK}/${ext}-loop" "${WORK}/${ext}-fifo" "${WORK}/${ext}-empty/sub")
  file(CREATE_LINK "${WORK}/does-not-exist" "${WORK}/${ext}-dangling/gone.${ext}" SYMBOLIC)
  file(CREATE_LINK "${WORK}/${ext}-loop/b.${ext}" "${WORK}/${ext}-loop/a.${ext}" SYMBOLIC)
  file(CREATE_LINK "${WORK}/${ext}-loop/a.${ext}" "${WORK}/${ext}-loop/b.${ext}" SYMBOLIC)
  execute_process(COMMAND mkfifo "${WORK}/${ext}-fifo/pipe.${ext}" RESULT_VARIABLE mk)
  if(NOT mk EQUAL 0)
    message(FATAL_ERROR "mkfifo failed: ${mk}")
  endif()
  expect(${ext}_dangling 2 "gone\\.${ext}" ${cmd} "${WORK}/${ext}-dangling")
  expect(${ext}_loop 2 "a\\.${ext}.*b\\.${ext}|b\\.${ext}.*a\\.${ext}" ${cmd} "${WORK}/${ext}-loop")
  expect(${ext}_fifo 2 "pipe\\.${ext}.*not a readable regular file" ${cmd} "${WORK}/${ext}-fifo")
  # The same entries given directly are errors too.
  expect(${ext}_dangling_direct 2 "gone\\.${ext}" ${cmd} "${WORK}/${ext}-dangling/gone.${ext}")
  expect(${ext}_fifo_direct 2 "pipe\\.${ext}" ${cmd} "${WORK}/${ext}-fifo/pipe.${ext}")
  # An empty corpus (a folder holding no entry, even in a sub-folder) is an error ...
  expect(${ext}_empty 2 "${ext}-empty.*holds no \\*\\.${ext} files" ${cmd} "${WORK}/${ext}-empty")
  # ... unless accepted explicitly.
  expect(${ext}_empty_allowed 0 "0 " ${cmd} "${WORK}/${ext}-empty" --allow-empty)
endforeach()
