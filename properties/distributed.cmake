# Campaigns beyond one process: merging shard results (moecheck merge), --workers/--devices,
# the Slurm job array on a real single-node cluster, the Kubernetes and CI-matrix examples.
moecheck_add_test(merge_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/merge_test.cpp LIBS moecheck::harness_core moecheck::reports LABELS quick)

set(_dist ${CMAKE_CURRENT_SOURCE_DIR}/distributed)
# merge and --workers through the CLI: equivalence with one process, refusals (exit 2), Ctrl-C.
add_test(NAME cli_merge_and_workers COMMAND bash ${_dist}/cli_test.sh $<TARGET_FILE:moecheck> ${PROJECT_SOURCE_DIR})
set_tests_properties(cli_merge_and_workers PROPERTIES LABELS quick TIMEOUT 300)
# The Kubernetes Indexed Job and the GitHub Actions matrix: parsed, their shard arguments
# checked, and their commands run here for every index (the shards must merge into one run).
add_test(NAME cluster_manifests COMMAND python3 ${_dist}/manifests_test.py $<TARGET_FILE:moecheck> ${PROJECT_SOURCE_DIR})
set_tests_properties(cluster_manifests PROPERTIES LABELS quick TIMEOUT 300 SKIP_RETURN_CODE 77)
# A 4-shard Slurm job array + merge job on a single-node cluster started by the test (root,
# slurm-wlm and munge from scripts/setup.sh); skips (77) only where Slurm cannot run.
add_test(NAME slurm_job_array COMMAND bash ${_dist}/slurm_test.sh $<TARGET_FILE:moecheck> ${PROJECT_SOURCE_DIR})
set_tests_properties(slurm_job_array PROPERTIES LABELS distributed TIMEOUT 300 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK local_slurm_cluster)
# Every GPU of the host: --devices all equals a plain run case for case (skips without a GPU).
add_test(NAME fuzz_devices_all_equals_plain_run
         COMMAND bash ${_dist}/devices_test.sh $<TARGET_FILE:moecheck> ${PROJECT_SOURCE_DIR})
set_tests_properties(fuzz_devices_all_equals_plain_run PROPERTIES LABELS gpu TIMEOUT 600 SKIP_RETURN_CODE 77)
# The two-shard fuzz campaigns of harness.cmake (label fuzz), merged into one campaign each.
foreach(variant warp_per_row block_per_row thread_per_row)
  if(TEST fuzz_kernel_${variant}_shard0 AND TEST fuzz_kernel_${variant}_shard1)
    set_tests_properties(fuzz_kernel_${variant}_shard0 fuzz_kernel_${variant}_shard1 PROPERTIES
                         FIXTURES_SETUP fuzz_shards_${variant})
    add_test(NAME fuzz_kernel_${variant}_merged
             COMMAND moecheck merge ${CMAKE_BINARY_DIR}/fuzz-${variant}-0.json ${CMAKE_BINARY_DIR}/fuzz-${variant}-1.json
                     --json ${CMAKE_BINARY_DIR}/fuzz-${variant}.json --junit ${CMAKE_BINARY_DIR}/fuzz-${variant}.xml)
    set_tests_properties(fuzz_kernel_${variant}_merged PROPERTIES LABELS fuzz TIMEOUT 60
                         FIXTURES_REQUIRED fuzz_shards_${variant})
  endif()
endforeach()
