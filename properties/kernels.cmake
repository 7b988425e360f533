# Fused routing kernels: host emulation vs the reference oracle (quick), the device kernels
# (gpu, skips without a device), the sample plugins through their C ABI (quick).
moecheck_add_test(kernel_host_test SOURCES kernel_host_test.cpp
                  LIBS moecheck::kernels moecheck::reference LABELS quick)

moecheck_add_test(kernel_plugin_test SOURCES kernel_plugin_test.cpp
                  LIBS moecheck::kernels moecheck::reference ${CMAKE_DL_LIBS} LABELS quick)
add_dependencies(kernel_plugin_test moecheck_example_plugin moecheck_broken_plugin)
target_compile_definitions(kernel_plugin_test PRIVATE
  MOECHECK_EXAMPLE_PLUGIN="$<TARGET_FILE:moecheck_example_plugin>"
  MOECHECK_BROKEN_PLUGIN="$<TARGET_FILE:moecheck_broken_plugin>")

if(MOECHECK_HAVE_CUDA)
  moecheck_add_test(kernel_gpu_test SOURCES kernel_gpu_test.cpp
                    LIBS moecheck::kernels_cuda moecheck::reference LABELS gpu TIMEOUT 900)
endif()
