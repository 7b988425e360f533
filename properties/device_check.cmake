# Device-side checking of cuda:<variant> campaigns (harness/core/device_check.hpp): the counter
# generator and the device row oracle on the CPU (quick), the device batches on a GPU (gpu).
moecheck_add_test(device_check_test SOURCES device_check_test.cpp
                  LIBS moecheck::harness_core moecheck::kernels moecheck::reference LABELS quick)

if(MOECHECK_HAVE_CUDA)
  moecheck_add_test(device_check_gpu_test SOURCES device_check_gpu_test.cpp
                    LIBS moecheck::harness_core moecheck::kernel_checker moecheck::kernel_mutants moecheck::reference
                    LABELS gpu TIMEOUT 900)
endif()
