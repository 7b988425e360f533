# Test driver (cmake -P) of install_consumer: installs the build BINARY_DIR (component
# "development") into WORK_DIR/prefix, checks the installed package text names no build or source
# path and no CUDA/LibTorch/JSON dependency, builds the outside project
# properties/install_consumer against it with find_package(moecheck CONFIG REQUIRED) and runs it
# on the committed corpora. Variables: SOURCE_DIR, BINARY_DIR, WORK_DIR, GENERATOR, MAKE_PROGRAM,
# C_COMPILER, CXX_COMPILER, BUILD_TYPE, LAUNCHER (compiler launcher, may be empty), LIBDIR and
# INCLUDEDIR (the build's CMAKE_INSTALL_LIBDIR / CMAKE_INSTALL_INCLUDEDIR).
foreach(v SOURCE_DIR BINARY_DIR WORK_DIR GENERATOR CXX_COMPILER LIBDIR INCLUDEDIR)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "install_consumer.cmake: ${v} is not set")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (exit ${rc}):\n${out}\n${err}")
  endif()
  set(run_out "${out}" PARENT_SCOPE)
endfunction()

set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")

# 1. Install.
run("cmake --install" "${CMAKE_COMMAND}" --install "${BINARY_DIR}" --prefix "${prefix}" --component development)

# 2. The package: its files, and no path of this machine's build or sources in its text.
foreach(f ${LIBDIR}/cmake/moecheck/moecheckConfig.cmake ${LIBDIR}/cmake/moecheck/moecheckConfigVersion.cmake
          ${LIBDIR}/cmake/moecheck/moecheckTargets.cmake ${INCLUDEDIR}/moecheck/reference/routing.hpp
          ${INCLUDEDIR}/moecheck/reference/oracle.hpp ${INCLUDEDIR}/moecheck/harness/core/corpus.hpp)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
file(GLOB_RECURSE text_files "${prefix}/*.cmake" "${prefix}/*.hpp" "${prefix}/*.h")
foreach(f IN LISTS text_files)
  file(READ "${f}" text)
  foreach(dir "${SOURCE_DIR}" "${BINARY_DIR}")
    string(FIND "${text}" "${dir}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${f} names the build machine's path ${dir}")
    endif()
  endforeach()
  if(f MATCHES "\\.cmake$" AND text MATCHES "(nlohmann|CUDA::|torch|find_dependency)")
    message(FATAL_ERROR "${f} depends on something outside the package: '${CMAKE_MATCH_1}'")
  endif()
endforeach()

# 3. Configure and build the outside project with nothing but the installed prefix to find.
set(build "${WORK_DIR}/build")
set(args -S "${SOURCE_DIR}/properties/install_consumer" -B "${build}" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
foreach(v C_COMPILER MAKE_PROGRAM BUILD_TYPE)
  set(cache_name "CMAKE_${v}")
  if(v STREQUAL "BUILD_TYPE")
    set(cache_name CMAKE_BUILD_TYPE)
  endif()
  if(NOT "${${v}}" STREQUAL "")
    list(APPEND args "-D${cache_name}=${${v}}")
  endif()
endforeach()
if(NOT "${LAUNCHER}" STREQUAL "")
  list(APPEND args "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}" "-DCMAKE_C_COMPILER_LAUNCHER=${LAUNCHER}")
endif()
run("configuring the consumer" "${CMAKE_COMMAND}" ${args})
message(STATUS "${run_out}")
file(STRINGS "${build}/CMakeCache.txt" found REGEX "^moecheck_DIR:")
if(NOT found STREQUAL "moecheck_DIR:PATH=${prefix}/${LIBDIR}/cmake/moecheck")
  message(FATAL_ERROR "the consumer found moecheck elsewhere: ${found}")
endif()
run("building the consumer" "${CMAKE_COMMAND}" --build "${build}")

# 4. Each library alone, then the whole program on every committed case.
run("reference_only" "${build}/reference_only")
message(STATUS "${run_out}")
if(NOT run_out MATCHES "reference only: ids 5 2 ")
  message(FATAL_ERROR "reference_only: unexpected output")
endif()
set(contract_case "${WORK_DIR}/contract.case")
file(READ "${SOURCE_DIR}/corpora/regressions/kernel_automatic-049cfe90c9aa1688.case" text)
string(REPLACE "\nexpect pass\n" "\nexpect pass\ncontract name=mine nan=zeroes-row\n" text "${text}")
file(WRITE "${contract_case}" "${text}")
run("corpus_only" "${build}/corpus_only" "${contract_case}")
message(STATUS "${run_out}")
if(NOT run_out MATCHES "corpus only: softmax_topk f32 T=1 E=2 k=1 layout=contiguous target=kernel:automatic contract=name=mine ")
  message(FATAL_ERROR "corpus_only: unexpected output")
endif()

file(GLOB_RECURSE cases "${SOURCE_DIR}/corpora/*.case")
list(LENGTH cases n_cases)
run("the consumer" "${build}/moecheck_consumer" "${SOURCE_DIR}/corpora")
message(STATUS "${run_out}")
set(want "corpus: ${n_cases} cases read, ${n_cases} replayed clean against the reference, ${n_cases} round-tripped")
string(FIND "${run_out}" "${want}" at)
if(at EQUAL -1 OR NOT run_out MATCHES "consumer: all checks passed" OR run_out MATCHES "FAIL ")
  message(FATAL_ERROR "the consumer's output is not the expected one (want '${want}')")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
