# LibTorch MoE modules, functional_call and the substitution property suite.
moecheck_add_test(functional_call_test SOURCES functional_call_test.cpp
                  LIBS moecheck::harness rapidcheck LABELS quick)
moecheck_add_test(module_test SOURCES module_test.cpp
                  LIBS moecheck::harness rapidcheck LABELS quick)
moecheck_add_test(substitution_prop SOURCES substitution_prop.cpp
                  LIBS moecheck::harness rapidcheck LABELS quick)
