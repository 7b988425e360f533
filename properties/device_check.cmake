# Device-side checking of cuda:<variant> campaigns (harness/core/device_check.hpp): the counter
# generator and the device row oracle on the CPU (quick), the device batches on a GPU (gpu).
moecheck_add_test(device_check_test SOURCES device_check_test.cpp
                  LIBS moecheck::harness_core moecheck::kernels moecheck::reference nlohmann_json::nlohmann_json LABELS quick)

if(MOECHECK_HAVE_CUDA)
  moecheck_add_test(device_check_gpu_test SOURCES device_check_gpu_test.cpp
                    LIBS moecheck::harness_core moecheck::kernel_checker moecheck::kernel_mutants moecheck::reference
                    LABELS gpu TIMEOUT 900)
endif()

# The checker's kernels build with the plain nvcc line every kernels/*.cu builds with (no other flag).
add_test(NAME kernels_plain_nvcc_checker
         COMMAND ${CMAKE_COMMAND} "-DNVCC=${CMAKE_CUDA_COMPILER}" -DROOT=${PROJECT_SOURCE_DIR} -DSRC=checker/checker.cu
                 -DOUT=${CMAKE_CURRENT_BINARY_DIR}/plain_nvcc/checker.o
                 -P ${PROJECT_SOURCE_DIR}/properties/plain_nvcc.cmake)
set_tests_properties(kernels_plain_nvcc_checker PROPERTIES LABELS quick TIMEOUT 900 SKIP_REGULAR_EXPRESSION "SKIPPED:")
