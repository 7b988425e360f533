# Harness core: corpus format, shrinking, campaigns, replay; CLI behaviour.
moecheck_add_test(corpus_test SOURCES corpus_test.cpp LIBS moecheck::harness_core rapidcheck LABELS quick)
moecheck_add_test(campaign_test SOURCES campaign_test.cpp LIBS moecheck::harness_core moecheck::reports rapidcheck
                  LABELS quick)
# The persistent worker process of isolated CUDA plugins, driven by a fake runner on the host.
moecheck_add_test(isolated_worker_test SOURCES isolated_worker_test.cpp LIBS moecheck::harness_core LABELS quick)
# Write-once corpus files (racing threads and processes) and the kill matrix.
moecheck_add_test(write_once_test SOURCES write_once_test.cpp LIBS moecheck::harness_core LABELS quick)
moecheck_add_test(mutation_test SOURCES mutation_test.cpp LIBS moecheck::harness_core LABELS quick)
add_dependencies(mutation_test moecheck_example_plugin moecheck_broken_plugin)
target_compile_definitions(mutation_test PRIVATE
  MOECHECK_EXAMPLE_PLUGIN="$<TARGET_FILE:moecheck_example_plugin>"
  MOECHECK_BROKEN_PLUGIN="$<TARGET_FILE:moecheck_broken_plugin>")

# The committed corpus replays in CI: planted bugs must still be caught, regression cases must pass.
add_test(NAME corpus_replay COMMAND moecheck replay ${PROJECT_SOURCE_DIR}/corpora
         --junit ${CMAKE_BINARY_DIR}/corpus_replay.xml)
set_tests_properties(corpus_replay PROPERTIES LABELS quick TIMEOUT 300)

# CLI contract: bad flags and bad inputs are named errors with exit code 2, never crashes.
function(moecheck_cli_test name regex)
  add_test(NAME cli_${name} COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=2
           -DREGEX=${regex} "-DARGS=${ARGN}" -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
  set_tests_properties(cli_${name} PROPERTIES LABELS quick TIMEOUT 60)
endfunction()
moecheck_cli_test(unknown_flag "--bogus" "fuzz|--bogus")
moecheck_cli_test(bad_shard "shard" "fuzz|--shard|3/2|--cases|1")
moecheck_cli_test(bad_target "unknown target" "fuzz|--target|warp9|--cases|1")
moecheck_cli_test(bad_mutant "unknown kernel mutant" "fuzz|--target|kernel:auto|--mutant|nope|--cases|1")
moecheck_cli_test(bad_dtype "unknown dtype" "fuzz|--dtypes|f64|--cases|1")
moecheck_cli_test(missing_corpus "no such file" "replay|/nonexistent/corpus.case")
moecheck_cli_test(no_subcommand "subcommand" "")
# Flag values: nothing is wrapped, saturated, silently defaulted or let through (NaN, empty
# list entries); each is exit 2 naming the flag and the value, and a range message never
# prints the digits of DBL_MAX. "--cases 1" keeps a run that wrongly accepts the value short.
function(moecheck_cli_flag_test name regex)
  add_test(NAME cli_flag_${name} COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=2
           -DREGEX=${regex} -DFORBID=1797693134862315 "-DARGS=${ARGN}"
           -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
  set_tests_properties(cli_flag_${name} PROPERTIES LABELS quick TIMEOUT 60)
endfunction()
set(_fz "fuzz|--target|reference|--no-progress|--corpus|${CMAKE_BINARY_DIR}/flag-corpus")
moecheck_cli_flag_test(seconds_nan "--seconds: 'nan' is out of range" "${_fz}|--seconds|nan|--cases|1")
moecheck_cli_flag_test(seconds_inf "--seconds: 'inf' is out of range" "${_fz}|--seconds|inf")
moecheck_cli_flag_test(seconds_huge "--seconds: '1e400' is out of range" "${_fz}|--seconds|1e400")
moecheck_cli_flag_test(seconds_negative "--seconds: '-1' is out of range" "${_fz}|--seconds|-1")
moecheck_cli_flag_test(seconds_zero "--seconds: '0' is out of range.*default 60 s" "${_fz}|--seconds|0|--cases|1")
moecheck_cli_flag_test(cases_zero "--cases: '0' is out of range" "${_fz}|--cases|0|--seconds|1")
moecheck_cli_flag_test(cases_overflow "--cases: '99999999999999999999' is out of range"
                       "${_fz}|--cases|99999999999999999999|--seconds|1")
moecheck_cli_flag_test(first_case_overflow "--first-case: '18446744073709551615' is out of range"
                       "${_fz}|--first-case|18446744073709551615|--cases|1")
moecheck_cli_flag_test(first_case_other_shard "--first-case 3: .*shard 0/2" "${_fz}|--first-case|3|--shard|0/2|--cases|1")
moecheck_cli_flag_test(seed_negative "--seed: '-1' is not a seed" "${_fz}|--seed|-1|--cases|1")
moecheck_cli_flag_test(seed_overflow "--seed: '18446744073709551616' is out of range"
                       "${_fz}|--seed|18446744073709551616|--cases|1")
moecheck_cli_flag_test(max_failures_negative "--max-failures: '-1' is not an integer" "${_fz}|--max-failures|-1|--cases|1")
moecheck_cli_flag_test(dtypes_empty "--dtypes: empty list" "${_fz}|--dtypes|<empty>|--cases|1")
moecheck_cli_flag_test(dtypes_empty_entry "--dtypes: 'f32,,bf16' has an empty entry" "${_fz}|--dtypes|f32,,bf16|--cases|1")
moecheck_cli_flag_test(families_empty_entry "--families: 'gemma4,' has an empty entry" "${_fz}|--families|gemma4,|--cases|1")
moecheck_cli_flag_test(substitution_cases_overflow "--cases: 5000000000 is out of range"
                       "fuzz|--target|substitution|--cases|5000000000")
moecheck_cli_flag_test(substitution_seed_negative "--seed: '-1' is not a seed"
                       "substitution|--seed|-1|--cases|1|--variant|correct|--property|restoration|--mode|rebind|--corpus|<empty>")
moecheck_cli_flag_test(substitution_cases_nan "--cases: 'nan' is not an integer" "substitution|--cases|nan")
moecheck_cli_flag_test(mutants_cases_overflow "--cases: '99999999999999999999' is out of range"
                       "mutants|--list|--cases|99999999999999999999")
moecheck_cli_flag_test(mutants_seed_negative "--seed: '-1' is not a seed" "mutants|--list|--seed|-1")
moecheck_cli_flag_test(bench_repetitions "--repetitions: '1e400' is not an integer" "bench|--repetitions|1e400")
string(ASCII 239 187 191 _bom)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/bom.case "${_bom}moecheck-case 1\n")
moecheck_cli_test(case_bom "bom.case:1: field 'header': the file starts with a UTF-8 byte order mark \\(BOM"
                  "replay|${CMAKE_CURRENT_BINARY_DIR}/bom.case")
add_test(NAME cli_version COMMAND moecheck --version)
set_tests_properties(cli_version PROPERTIES LABELS quick PASS_REGULAR_EXPRESSION "moecheck [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit")
# A short real campaign through the CLI on the kernel host emulation (must find nothing).
add_test(NAME cli_fuzz_smoke COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=0
         "-DREGEX=cases 400, rows [0-9]+, skipped 0,.* s \\([0-9.]+k? cases/s, [0-9.]+[kMG]? rows/s, checked on the host\\)"
         "-DARGS=fuzz|--target|kernel:auto|--cases|400|--seed|11|--no-progress|--corpus|${CMAKE_BINARY_DIR}/smoke-corpus|--json|${CMAKE_BINARY_DIR}/smoke.json"
         -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
set_tests_properties(cli_fuzz_smoke PROPERTIES LABELS quick TIMEOUT 300)
# Campaigns draw only what their target runs: nothing is skipped.
add_test(NAME cli_fuzz_composite COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=0
         "-DREGEX=skipped 0,.*drawing only what composite runs: no families sigmoid_grouped"
         "-DARGS=fuzz|--target|composite|--cases|300|--seed|12|--no-progress|--max-T|64|--corpus|${CMAKE_BINARY_DIR}/smoke-corpus"
         -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
set_tests_properties(cli_fuzz_composite PROPERTIES LABELS quick TIMEOUT 300)

# CPU harness throughput (Google Benchmark; compared with the Python anchor by scripts/throughput.sh).
add_executable(throughput_bench throughput_bench.cpp)
target_link_libraries(throughput_bench PRIVATE moecheck::harness benchmark::benchmark)
# Its normal sampler (Ziggurat) against N(0, 1).
moecheck_add_test(bench_rng_test SOURCES bench_rng_test.cpp LABELS quick)
# Mutation score gate: every CPU-runnable mutant (kernel, module, plugin) must be killed.
add_test(NAME cli_mutants_cpu COMMAND moecheck mutants --device cpu --cases 600
         --corpus ${CMAKE_BINARY_DIR}/mutant-corpus --json ${CMAKE_BINARY_DIR}/mutants.json)
set_tests_properties(cli_mutants_cpu PROPERTIES LABELS quick TIMEOUT 900)
# Plugins through the C ABI: the example plugin survives a campaign; the broken one is caught,
# shrunk and saved (exit 1), its crash contained.
add_test(NAME cli_fuzz_example_plugin COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=0
         "-DREGEX=cases 400, rows [0-9]+, skipped 0,"
         "-DARGS=fuzz|--plugin|$<TARGET_FILE:moecheck_example_plugin>|--cases|400|--seed|5|--no-progress|--corpus|${CMAKE_BINARY_DIR}/plugin-corpus"
         -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
set_tests_properties(cli_fuzz_example_plugin PROPERTIES LABELS quick TIMEOUT 300)
add_test(NAME cli_fuzz_broken_plugin COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=1
         "-DREGEX=shrunk T=1 E=9 "
         "-DARGS=fuzz|--plugin|$<TARGET_FILE:moecheck_broken_plugin>|--cases|400|--seed|5|--max-failures|2|--no-progress|--corpus|${CMAKE_BINARY_DIR}/broken-plugin-corpus"
         -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
set_tests_properties(cli_fuzz_broken_plugin PROPERTIES LABELS quick TIMEOUT 300)

# Longer randomized campaigns (label fuzz): every kernel variant's host algorithm, each
# campaign split into two shards that ctest runs in parallel (the same partitioning a CI
# matrix or a batch scheduler would use: case j belongs to shard j % 2).
foreach(variant warp_per_row block_per_row thread_per_row)
  foreach(shard 0 1)
    add_test(NAME fuzz_kernel_${variant}_shard${shard}
             COMMAND moecheck fuzz --target kernel:${variant} --seconds 40 --seed 20261127 --shard ${shard}/2
                     --max-T 20000 --no-progress --corpus ${CMAKE_BINARY_DIR}/fuzz-corpus
                     --json ${CMAKE_BINARY_DIR}/fuzz-${variant}-${shard}.json)
    set_tests_properties(fuzz_kernel_${variant}_shard${shard} PROPERTIES LABELS fuzz TIMEOUT 600)
  endforeach()
endforeach()

# Folder replay reports unreadable entries (dangling or looping symbolic links, FIFOs named like
# corpus files) and empty folders as errors (exit 2) unless --allow-empty; .case and .subst alike.
add_test(NAME cli_replay_folders
         COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DWORK=${CMAKE_BINARY_DIR}/replay-folders
                 -P ${PROJECT_SOURCE_DIR}/properties/cli_replay_folders.cmake)
set_tests_properties(cli_replay_folders PROPERTIES LABELS quick TIMEOUT 300)
# `moecheck mutants` without --corpus, run in a copy of the checkout's corpora: the committed
# corpus is untouched and still replays; the findings saved elsewhere replay, with portable names.
add_test(NAME cli_mutants_clean_corpus
         COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DSOURCE=${PROJECT_SOURCE_DIR}
                 -DPLUGIN=$<TARGET_FILE:moecheck_broken_plugin> -DWORK=${CMAKE_BINARY_DIR}/mutants-clean
                 -P ${PROJECT_SOURCE_DIR}/properties/cli_mutants_clean_corpus.cmake)
set_tests_properties(cli_mutants_clean_corpus PROPERTIES LABELS quick TIMEOUT 900)
# Contracts as data: named contracts against host routers of exactly their semantics, contract
# files, --layouts, plugin ABI v2 descriptors (the example and test-only variants of it).
foreach(variant 1 2 3)
  add_library(moecheck_example_v2_plugin_variant${variant} SHARED ${PROJECT_SOURCE_DIR}/kernels/plugins/example_v2_plugin.cpp)
  target_include_directories(moecheck_example_v2_plugin_variant${variant} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(moecheck_example_v2_plugin_variant${variant} PRIVATE MOECHECK_EXAMPLE_V2_VARIANT=${variant})
  set_target_properties(moecheck_example_v2_plugin_variant${variant} PROPERTIES CXX_VISIBILITY_PRESET hidden PREFIX "lib")
endforeach()
moecheck_add_test(contract_test SOURCES contract_test.cpp LIBS moecheck::harness_core LABELS quick)
add_dependencies(contract_test moecheck_example_plugin moecheck_example_v2_plugin moecheck_example_v2_plugin_variant1
                 moecheck_example_v2_plugin_variant2 moecheck_example_v2_plugin_variant3)
target_compile_definitions(contract_test PRIVATE
  MOECHECK_EXAMPLE_PLUGIN="$<TARGET_FILE:moecheck_example_plugin>"
  MOECHECK_EXAMPLE_V2_PLUGIN="$<TARGET_FILE:moecheck_example_v2_plugin>"
  MOECHECK_EXAMPLE_V2_INLINE_PLUGIN="$<TARGET_FILE:moecheck_example_v2_plugin_variant1>"
  MOECHECK_EXAMPLE_V2_BAD_CONTRACT_PLUGIN="$<TARGET_FILE:moecheck_example_v2_plugin_variant2>"
  MOECHECK_EXAMPLE_V2_SHORT_PLUGIN="$<TARGET_FILE:moecheck_example_v2_plugin_variant3>")

moecheck_cli_test(bad_contract "unknown contract" "fuzz|--contract|lenient|--cases|1")
moecheck_cli_test(bad_contract_file "key 'ties': unknown value 'sometimes'"
                  "fuzz|--contract|${PROJECT_SOURCE_DIR}/properties/testdata/bad_contract.toml|--cases|1")
moecheck_cli_test(replay_bad_contract "unknown contract" "replay|--contract|lenient|${PROJECT_SOURCE_DIR}/corpora/regressions")
moecheck_cli_test(bad_layouts "unknown layout 'diagonal'" "fuzz|--layouts|contiguous,diagonal|--cases|1")
moecheck_cli_test(repeated_layouts "listed twice" "fuzz|--layouts|padded,padded|--cases|1")
# The v2 example plugin is clean under the contract it declares, its non-dense layouts counted
# as outside the contract (exit 0); judged by --contract strict its deliberate semantics fail
# (exit 1) with shrunk cases; a contract file and --layouts work on the command line.
add_test(NAME cli_fuzz_example_v2_plugin COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=0
         "-DREGEX=outside contract: layout transposed: [0-9]+ case"
         "-DARGS=fuzz|--plugin|$<TARGET_FILE:moecheck_example_v2_plugin>|--cases|400|--seed|5|--no-progress|--corpus|${CMAKE_BINARY_DIR}/v2-plugin-corpus|--json|${CMAKE_BINARY_DIR}/v2-plugin.json"
         -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
set_tests_properties(cli_fuzz_example_v2_plugin PROPERTIES LABELS quick TIMEOUT 300)
add_test(NAME cli_fuzz_example_v2_plugin_strict COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=1
         "-DREGEX=FAIL \\[(selection|weight)\\].*shrunk T=1 "
         "-DARGS=fuzz|--plugin|$<TARGET_FILE:moecheck_example_v2_plugin>|--contract|strict|--cases|400|--seed|5|--max-failures|2|--no-progress|--corpus|${CMAKE_BINARY_DIR}/v2-plugin-strict-corpus"
         -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
set_tests_properties(cli_fuzz_example_v2_plugin_strict PROPERTIES LABELS quick TIMEOUT 300)
add_test(NAME cli_fuzz_contract_file_layouts COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=0
         "-DREGEX=outside contract 'kernel-scaled' 0, failures 0"
         "-DARGS=fuzz|--target|kernel:auto|--contract|${PROJECT_SOURCE_DIR}/properties/testdata/kernel-scaled.toml|--layouts|contiguous,padded|--cases|200|--seed|6|--no-progress|--corpus|${CMAKE_BINARY_DIR}/contract-file-corpus"
         -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
set_tests_properties(cli_fuzz_contract_file_layouts PROPERTIES LABELS quick TIMEOUT 300)
# The composite target's outputs stay bit-identical to its implementation before its ATen calls
# were cut down (kept verbatim in the test).
moecheck_add_test(composite_identity_test SOURCES composite_identity_test.cpp LIBS moecheck::harness LABELS quick)
