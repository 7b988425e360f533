# Fused routing kernels: host emulation vs the reference oracle (quick), the device kernels
# (gpu, skips without a device), the sample plugins through their C ABI (quick).

# Test problems for the kernel suites: harness cases laid out for the raw-pointer API.
add_library(moecheck_kernel_test_support STATIC ${CMAKE_CURRENT_SOURCE_DIR}/support/kernel_problem.cpp)
target_include_directories(moecheck_kernel_test_support PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(moecheck_kernel_test_support PUBLIC moecheck::harness_core)
moecheck_warnings(moecheck_kernel_test_support)

moecheck_add_test(kernel_host_test SOURCES kernel_host_test.cpp
                  LIBS moecheck_kernel_test_support moecheck::kernels moecheck::reference LABELS quick)

moecheck_add_test(kernel_plugin_test SOURCES kernel_plugin_test.cpp
                  LIBS moecheck_kernel_test_support moecheck::reference ${CMAKE_DL_LIBS} LABELS quick)
add_dependencies(kernel_plugin_test moecheck_example_plugin moecheck_broken_plugin)
target_compile_definitions(kernel_plugin_test PRIVATE
  MOECHECK_EXAMPLE_PLUGIN="$<TARGET_FILE:moecheck_example_plugin>"
  MOECHECK_BROKEN_PLUGIN="$<TARGET_FILE:moecheck_broken_plugin>")

if(MOECHECK_HAVE_CUDA)
  moecheck_add_test(kernel_gpu_test SOURCES kernel_gpu_test.cpp
                    LIBS moecheck_kernel_test_support moecheck::kernels_cuda moecheck::kernel_mutants moecheck::reference
                    LABELS gpu TIMEOUT 900)
endif()

# The kernels build with their own flags: each kernels/*.cu compiles with a plain
# `nvcc -std=c++17 -arch=sm_90 -I. -Ikernels -c` and nothing else (no LibTorch flag). One test
# per file so that ctest -j runs them in parallel; skipped where no nvcc exists.
file(GLOB MOECHECK_KERNEL_CUDA_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cu)
foreach(cu ${MOECHECK_KERNEL_CUDA_SOURCES})
  get_filename_component(cu_file ${cu} NAME)
  get_filename_component(cu_name ${cu} NAME_WE)
  add_test(NAME kernels_plain_nvcc_${cu_name}
           COMMAND ${CMAKE_COMMAND} "-DNVCC=${CMAKE_CUDA_COMPILER}" -DROOT=${PROJECT_SOURCE_DIR} -DSRC=${cu_file}
                   -DOUT=${CMAKE_CURRENT_BINARY_DIR}/plain_nvcc/${cu_name}.o
                   -P ${PROJECT_SOURCE_DIR}/properties/plain_nvcc.cmake)
  set_tests_properties(kernels_plain_nvcc_${cu_name} PROPERTIES LABELS quick TIMEOUT 900
                       SKIP_REGULAR_EXPRESSION "SKIPPED:")
endforeach()
