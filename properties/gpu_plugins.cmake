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
# Device faults (properties/plugins/fault_cuda_plugin.cu: rows holding a NaN fault the device),
# contained by the plugin's worker process (harness/core/isolated_worker.hpp):
#   gpu_fault_plugin_contained  illegal address: `device-fault` failures shrunk to T = 1, the
#                               campaign runs its whole budget past the fault of its first case
#                               (the worker is replaced after each fault) and nothing else fails;
#                               `replay` of the saved cases reproduces `device-fault`;
#   gpu_fault_plugin_trap       the same with a trap instruction;
#   gpu_fault_plugin_hang       a kernel that never completes: a `timeout` failure, the worker is
#                               killed at the case timeout, the shrink goes on in new workers;
#   gpu_fault_plugin_in_process --no-isolation: the fault is reported for its case, then the
#                               campaign ends, aborted, naming the lost CUDA context;
#   gpu_worker_sigkill, gpu_worker_sigint  SIGKILL of moecheck leaves no worker process; SIGINT
#                               stops a campaign on a CUDA plugin within 2 s (cli_hostile_test.py).
if(NOT MOECHECK_HAVE_CUDA)
  return()
endif()

add_executable(moecheck_cuda_device_probe ${CMAKE_CURRENT_SOURCE_DIR}/plugins/cuda_device_probe.cpp)
target_link_libraries(moecheck_cuda_device_probe PRIVATE CUDA::cudart_static)
moecheck_warnings(moecheck_cuda_device_probe)

foreach(p slow oob fault)
  add_library(moecheck_${p}_cuda_plugin SHARED ${CMAKE_CURRENT_SOURCE_DIR}/plugins/${p}_cuda_plugin.cu)
  target_include_directories(moecheck_${p}_cuda_plugin PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_options(moecheck_${p}_cuda_plugin PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  set_target_properties(moecheck_${p}_cuda_plugin PROPERTIES
    CUDA_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden CUDA_RUNTIME_LIBRARY Static PREFIX "lib")
endforeach()

# moecheck_gpu_fuzz_test(<name> RC <exit code> REGEX <regex> ARGS <fuzz arguments...>
#                        [FORBID <regex>] [TOTAL_CASES n] [MIN_CASES n] [MIN_ROWS n] [MIN_NONFINITE n]
#                        [REPLAY_ARGS <replay arguments...> REPLAY_RC <exit code> REPLAY_REGEX <regex>]
#                        [ENV <VAR=value...>] [TIMEOUT s])
# `moecheck fuzz ARGS --no-progress --corpus <build>/<name>-corpus --json <build>/<name>.json`,
# then (REPLAY_ARGS) `moecheck replay REPLAY_ARGS <corpus>`, checked by
# properties/gpu_fuzz_expect.cmake.
function(moecheck_gpu_fuzz_test name)
  cmake_parse_arguments(G "" "RC;REGEX;FORBID;TOTAL_CASES;MIN_CASES;MIN_ROWS;MIN_NONFINITE;TIMEOUT;REPLAY_RC;REPLAY_REGEX"
                        "ARGS;REPLAY_ARGS;ENV" ${ARGN})
  set(corpus ${CMAKE_BINARY_DIR}/${name}-corpus)
  list(APPEND G_ARGS --no-progress --corpus ${corpus} --json ${CMAKE_BINARY_DIR}/${name}.json)
  string(REPLACE ";" "|" args "${G_ARGS}")
  set(defs -DPROBE=$<TARGET_FILE:moecheck_cuda_device_probe> -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=${G_RC}
           "-DREGEX=${G_REGEX}" "-DARGS=fuzz|${args}" -DCORPUS=${corpus})
  foreach(opt FORBID TOTAL_CASES MIN_CASES MIN_ROWS MIN_NONFINITE REPLAY_RC REPLAY_REGEX)
    if(DEFINED G_${opt})
      list(APPEND defs "-D${opt}=${G_${opt}}")
    endif()
  endforeach()
  if(G_REPLAY_ARGS)
    list(APPEND G_REPLAY_ARGS ${corpus})
    string(REPLACE ";" "|" replay_args "${G_REPLAY_ARGS}")
    list(APPEND defs "-DREPLAY_ARGS=replay|${replay_args}")
  endif()
  if(NOT G_TIMEOUT)
    set(G_TIMEOUT 600)
  endif()
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} ${defs} -P ${PROJECT_SOURCE_DIR}/properties/gpu_fuzz_expect.cmake)
  set_tests_properties(${name} PROPERTIES LABELS gpu TIMEOUT ${G_TIMEOUT} SKIP_REGULAR_EXPRESSION "MOECHECK_GPU_SKIP")
  if(G_ENV)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${G_ENV}")
  endif()
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

# Device faults in a CUDA plugin. Each faulting call costs the plugin's worker process: a new
# one, with a new CUDA context, runs the next case or shrink candidate (about 0.3 s on an H200,
# up to 1 s with other GPU tests running), and shrinking a fault takes about ten faulting
# candidates, so these campaigns are small: tiny shapes, and a seed whose faulting cases are
# known (seed 15020 with these flags: cases #0, #1 and #15 have a NaN logit). The saved cases are
# regression entries ("expect pass"), so their replay fails (exit 1) with the fault's class.
set(fault_forbid_others "FAIL \\[(unwritten|selection|weight|id-range|duplicate-id|crash|out-of-bounds-write|rejected-valid|accepted-invalid)\\]")
set(fault_flags --plugin $<TARGET_FILE:moecheck_fault_cuda_plugin> --families ${softmax_families}
    --max-T 8 --max-E 16 --max-failures 0 --seed 15020)
# Case #0 faults; the eleven after it still run (in new workers) and pass.
moecheck_gpu_fuzz_test(gpu_fault_plugin_contained RC 1
  REGEX "cases 12, .*FAIL \\[device-fault\\] device fault: plugin work on the stream: cudaErrorIllegalAddress.*case #0 .*shrunk T=1 "
  FORBID "${fault_forbid_others}|FAIL \\[timeout\\]|aborted"
  TOTAL_CASES 12 MIN_CASES 12
  ARGS ${fault_flags} --cases 12
  REPLAY_ARGS --plugin $<TARGET_FILE:moecheck_fault_cuda_plugin>
  REPLAY_RC 1
  REPLAY_REGEX "\\[plugin:fault-cuda: fail\\].*\\[device-fault\\] device fault: .*cudaErrorIllegalAddress.* 0 matched, 0 skipped, [1-9][0-9]* did not match"
  TIMEOUT 120)

# A trap instruction: another sticky error than an illegal address, contained the same way.
moecheck_gpu_fuzz_test(gpu_fault_plugin_trap RC 1
  REGEX "cases 2, .*FAIL \\[device-fault\\] device fault: .*shrunk T=1 "
  FORBID "${fault_forbid_others}|FAIL \\[timeout\\]|aborted|cudaErrorIllegalAddress"
  TOTAL_CASES 2
  ENV MOECHECK_CUDA_FAULT=trap
  ARGS ${fault_flags} --cases 2
  TIMEOUT 120)

# A kernel that never completes: the worker is killed at the 1 s case timeout (a `timeout`
# failure); the shrink candidates run in new workers, those that hang are killed in turn.
moecheck_gpu_fuzz_test(gpu_fault_plugin_hang RC 1
  REGEX "cases 1, .*FAIL \\[timeout\\] plugin did not return within 1 s.*shrunk T=1 "
  FORBID "${fault_forbid_others}|FAIL \\[device-fault\\]|aborted"
  TOTAL_CASES 1
  ENV MOECHECK_CUDA_FAULT=hang
  ARGS ${fault_flags} --cases 1 --case-timeout 1
  TIMEOUT 120)

# In-process: case #0 faults, then the campaign ends, aborted, naming the lost context.
moecheck_gpu_fuzz_test(gpu_fault_plugin_in_process RC 1
  REGEX "FAIL \\[device-fault\\].*aborted: a device fault of the in-process CUDA plugin"
  FORBID "${fault_forbid_others}|FAIL \\[timeout\\]"
  ARGS ${fault_flags} --cases 12 --no-isolation
  TIMEOUT 120)

find_program(MOECHECK_GPU_PYTHON3 NAMES python3)
if(MOECHECK_GPU_PYTHON3)
  foreach(scenario cuda_worker_sigkill cuda_worker_sigint)
    add_test(NAME gpu_${scenario}
             COMMAND ${MOECHECK_GPU_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/cli_hostile_test.py
                     --exe $<TARGET_FILE:moecheck> --plugin $<TARGET_FILE:moecheck_slow_cuda_plugin>
                     --probe $<TARGET_FILE:moecheck_cuda_device_probe> ${scenario})
    set_tests_properties(gpu_${scenario} PROPERTIES LABELS gpu TIMEOUT 120 SKIP_REGULAR_EXPRESSION "MOECHECK_GPU_SKIP")
  endforeach()
endif()
