# Test driver (cmake -P) of libstdcxx_binding: the programs linking LibTorch bind their std::
# references to the system libstdc++, not to the copies of libstdc++ functions the torch wheel's
# libraries export (unversioned; std::filesystem among them). Bound to those, std::filesystem::
# remove_all crashed (cmake/MoecheckDeps.cmake: moecheck_stdcxx_first puts -lstdc++ ahead of
# LibTorch on every program's link line).
# For each of EXES ('|'-separated) it checks with READELF that
#   * libstdc++.so.6 is listed (DT_NEEDED) before every LibTorch library, so that it comes first
#     in the process's symbol lookup order (unless libstdc++ is linked statically);
#   * no undefined std:: symbol is unversioned: each was bound at link time to libstdc++
#     (GLIBCXX_*), none to a LibTorch library, which defines them without a version.
string(REPLACE "|" ";" exes "${EXES}")
foreach(exe IN LISTS exes)
  execute_process(COMMAND "${READELF}" -W -d "${exe}" RESULT_VARIABLE rc OUTPUT_VARIABLE dyn ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${READELF} -d ${exe} failed: ${err}")
  endif()
  string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*\\[[^]\n]+\\]" needed "${dyn}")
  set(order "")
  foreach(line IN LISTS needed)
    string(REGEX REPLACE ".*\\[([^]]+)\\]$" "\\1" lib "${line}")
    list(APPEND order "${lib}")
  endforeach()
  list(FIND order "libstdc++.so.6" at_stdcxx)
  set(first_torch -1)
  set(i 0)
  foreach(lib IN LISTS order)
    if(first_torch EQUAL -1 AND lib MATCHES "^lib(torch|c10)")
      set(first_torch ${i})
    endif()
    math(EXPR i "${i} + 1")
  endforeach()
  if(at_stdcxx EQUAL -1)
    # A toolchain that links libstdc++ statically (-lstdc++ finds only libstdc++.a): no order to
    # check; the symbol check below still finds any std:: reference left to LibTorch's copies.
    message(STATUS "${exe}: libstdc++ linked statically (not in DT_NEEDED)")
  elseif(first_torch GREATER -1 AND first_torch LESS at_stdcxx)
    message(FATAL_ERROR "${exe}: libstdc++.so.6 is not listed before the LibTorch libraries "
                        "(DT_NEEDED: ${order})")
  endif()

  execute_process(COMMAND "${READELF}" -W --dyn-syms "${exe}" RESULT_VARIABLE rc OUTPUT_VARIABLE syms ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${READELF} --dyn-syms ${exe} failed: ${err}")
  endif()
  # "UND _ZNSt10filesystem10remove_allERKNS_7__cxx114pathE" with no "@GLIBCXX_..." after it.
  string(REGEX MATCHALL "UND _Z(N|NK|T[VIS]N?)?St[A-Za-z0-9_]*[ \n]" unversioned "${syms}\n")
  string(REGEX MATCHALL "UND _ZSt[A-Za-z0-9_]*[ \n]" unversioned_free "${syms}\n")
  list(APPEND unversioned ${unversioned_free})
  if(unversioned)
    list(LENGTH unversioned n)
    list(SUBLIST unversioned 0 5 shown)
    list(TRANSFORM shown REPLACE "^UND ([A-Za-z0-9_]+).*$" "\\1")
    list(JOIN shown ", " shown)
    message(FATAL_ERROR "${exe}: ${n} std:: references are not bound to libstdc++ (no GLIBCXX version), "
                        "e.g. ${shown}")
  endif()
  list(LENGTH order n_needed)
  message(STATUS "${exe}: libstdc++.so.6 is DT_NEEDED entry ${at_stdcxx} of ${n_needed}; every std:: reference versioned")
endforeach()
