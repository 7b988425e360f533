# CUDA plugins through the C ABI on a real device (label gpu; each test runs
# moecheck_cuda_device_probe first and is skipped when no CUDA device is usable):
#   gpu_plugin_no_unwritten     a correct but slow CUDA plugin (properties/plugins/slow_cuda_plugin.cu),
#                               large T, many cases: no failure at all, in particular no `unwritten`
#                               from a host/device handoff race in the harness;
#   gpu_contract_plugin_clean   kernels/plugins/cuda_router_plugin.cu under the contract it declares
#                               (dense-probability-nan-zeroes-row): no failure;
#   gpu_contract_plugin_strict  the same judged by --contract strict: its deliberate semantics fail,
#                               shrunk, with NaN/inf logits among the saved cases;
#   gpu_oob_plugin_contained    a plugin writing past `ids` on the device
#                               (properties/plugins/oob_cuda_plugin.cu): an out-of-bounds-write
#                               failure shrunk to T = 3, and the campaign runs its whole budget.
if(NOT MOECHECK_HAVE_CUDA)
  return()
endif()

add_executable(moecheck_cuda_device_probe ${CMAKE_CURRENT_SOURCE_DIR}/plugins/cuda_device_probe.cpp)
target_link_libraries(moecheck_cuda_device_probe PRIVATE CUDA::cudart_static)
moecheck_warnings(moecheck_cuda_device_probe)

foreach(p slow oob)
  add_library(moecheck_${p}_cuda_plugin SHARED ${CMAKE_CURRENT_SOURCE_DIR}/plugins/${p}_cuda_plugin.cu)
  target_include_directories(moecheck_${p}_cuda_plugin PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_options(moecheck_${p}_cuda_plugin PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  set_target_properties(moecheck_${p}_cuda_plugin PROPERTIES
    CUDA_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden CUDA_RUNTIME_LIBRARY Static PREFIX "lib")
endforeach()

# moecheck_gpu_fuzz_test(<name> RC <exit code> REGEX <regex> ARGS <fuzz arguments...>
#                        [FORBID <regex>] [TOTAL_CASES n] [MIN_CASES n] [MIN_ROWS n] [MIN_NONFINITE n]
#                        [TIMEOUT s])
# `moecheck fuzz ARGS --no-progress --corpus <build>/<name>-corpus --json <build>/<name>.json`,
# checked by properties/gpu_fuzz_expect.cmake.
function(moecheck_gpu_fuzz_test name)
  cmake_parse_arguments(G "" "RC;REGEX;FORBID;TOTAL_CASES;MIN_CASES;MIN_ROWS;MIN_NONFINITE;TIMEOUT" "ARGS" ${ARGN})
  set(corpus ${CMAKE_BINARY_DIR}/${name}-corpus)
  list(APPEND G_ARGS --no-progress --corpus ${corpus} --json ${CMAKE_BINARY_DIR}/${name}.json)
  string(REPLACE ";" "|" args "${G_ARGS}")
  set(defs -DPROBE=$<TARGET_FILE:moecheck_cuda_device_probe> -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=${G_RC}
           "-DREGEX=${G_REGEX}" "-DARGS=fuzz|${args}" -DCORPUS=${corpus})
  foreach(opt FORBID TOTAL_CASES MIN_CASES MIN_ROWS MIN_NONFINITE)
    if(DEFINED G_${opt})
      list(APPEND defs "-D${opt}=${G_${opt}}")
    endif()
  endforeach()
  if(NOT G_TIMEOUT)
    set(G_TIMEOUT 600)
  endif()
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} ${defs} -P ${PROJECT_SOURCE_DIR}/properties/gpu_fuzz_expect.cmake)
  set_tests_properties(${name} PROPERTIES LABELS gpu TIMEOUT ${G_TIMEOUT} SKIP_REGULAR_EXPRESSION "MOECHECK_GPU_SKIP")
endfunction()

set(softmax_families gemma4,softmax_topk,softmax_topk_raw)

# 20,000 cases up to T = 6000 (about 3 million rows): on an H200 about 1-2 minutes (the host
# side - generation and oracle - takes about 4 ms per case on one core; each case adds the
# plugin's 100 us wait, allocations and copies).
moecheck_gpu_fuzz_test(gpu_plugin_no_unwritten RC 0
  REGEX "failures 0 "
  FORBID "unwritten"
  TOTAL_CASES 20000 MIN_CASES 20000 MIN_ROWS 1000000
  ARGS --plugin $<TARGET_FILE:moecheck_slow_cuda_plugin> --families ${softmax_families}
       --cases 20000 --max-T 6000 --seed 15015)

moecheck_gpu_fuzz_test(gpu_contract_plugin_clean RC 0
  REGEX "outside contract 'dense-probability-nan-zeroes-row[^']*' [0-9]+, failures 0 "
  TOTAL_CASES 5000 MIN_CASES 800
  ARGS --plugin $<TARGET_FILE:moecheck_cuda_router_plugin> --families ${softmax_families}
       --cases 5000 --max-E 4096 --max-T 4096 --seed 15016)

moecheck_gpu_fuzz_test(gpu_contract_plugin_strict RC 1
  REGEX "FAIL \\[(selection|weight)\\].*shrunk T=1 "
  FORBID "FAIL \\[(unwritten|id-range|duplicate-id|crash|timeout|out-of-bounds-write|rejected-valid|accepted-invalid)\\]"
  MIN_NONFINITE 1
  ARGS --plugin $<TARGET_FILE:moecheck_cuda_router_plugin> --contract strict --families ${softmax_families}
       --cases 5000 --max-E 4096 --max-T 4096 --seed 15016)

# About a tenth of the cases (bf16 softmax_topk_raw, T >= 3) overrun; --max-failures 0 keeps the
# campaign going past every one of them.
moecheck_gpu_fuzz_test(gpu_oob_plugin_contained RC 1
  REGEX "cases 2000, .*FAIL \\[out-of-bounds-write\\].*shrunk T=3 E=[0-9]+ k=[0-9]+ bf16"
  FORBID "FAIL \\[(unwritten|selection|weight|id-range|duplicate-id|crash|timeout|rejected-valid)\\]"
  TOTAL_CASES 2000 MIN_CASES 2000
  ARGS --plugin $<TARGET_FILE:moecheck_oob_cuda_plugin> --families ${softmax_families}
       --cases 2000 --max-T 64 --max-failures 0 --seed 15017)
