# LibTorch MoE modules, functional_call and the substitution property suite.
moecheck_add_test(functional_call_test SOURCES functional_call_test.cpp
                  LIBS moecheck::harness rapidcheck LABELS quick)
moecheck_add_test(module_test SOURCES module_test.cpp
                  LIBS moecheck::harness rapidcheck LABELS quick)
moecheck_add_test(substitution_prop SOURCES substitution_prop.cpp
                  LIBS moecheck::harness rapidcheck LABELS quick)
# The .subst corpus format and replay, and the module rows of the kill matrix.
moecheck_add_test(substitution_corpus_test SOURCES substitution_corpus_test.cpp
                  LIBS moecheck::harness LABELS quick)
if(MOECHECK_HAVE_TORCH_CUDA)
  # The same properties on a CUDA module (skipped without a device).
  moecheck_add_test(substitution_gpu_prop SOURCES substitution_prop.cpp
                    LIBS moecheck::harness rapidcheck LABELS gpu)
  target_compile_definitions(substitution_gpu_prop PRIVATE MOECHECK_SUBSTITUTION_GPU=1)
endif()

# The CLI: every variant behaves as documented (the correct module passes, each bug variant
# is caught exactly in the modes that catch it), counterexamples saved as *.subst.
add_test(NAME cli_substitution_all
         COMMAND moecheck substitution --device cpu --variant all --mode all --cases 100 --seed 1
                 --corpus ${CMAKE_BINARY_DIR}/subst-corpus --json ${CMAKE_BINARY_DIR}/substitution.json)
set_tests_properties(cli_substitution_all PROPERTIES LABELS quick TIMEOUT 300)

# The committed counterexamples replay: each planted bug is still caught by its recorded case.
add_test(NAME substitution_corpus_replay
         COMMAND moecheck substitution --replay ${PROJECT_SOURCE_DIR}/corpora/substitution)
set_tests_properties(substitution_corpus_replay PROPERTIES LABELS quick TIMEOUT 300)

# A single bug variant is a failure finder: exit 1 with a shrunk counterexample and a replay line.
add_test(NAME cli_substitution_finds_bug
         COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:moecheck> -DEXPECT_RC=1
                 "-DREGEX=shrunk counterexample:.*replay: moecheck substitution .*--reproduce"
                 "-DARGS=substitution|--device|cpu|--variant|capture_handle|--mode|rebind|--property|scale_substitution|--cases|50|--corpus|${CMAKE_BINARY_DIR}/subst-corpus-bug"
                 -P ${PROJECT_SOURCE_DIR}/properties/cli_expect.cmake)
set_tests_properties(cli_substitution_finds_bug PROPERTIES LABELS quick TIMEOUT 120)

# Bad options and malformed corpus files are named errors with exit code 2.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/malformed.subst
     "moecheck-substitution 1\nvariant capture_handle\nsede 1\nend\n")
moecheck_cli_test(substitution_bad_variant "unknown module variant 'bogus'" "substitution|--variant|bogus")
moecheck_cli_test(substitution_missing_file "no such file" "substitution|--replay|/nonexistent/x.subst")
# A byte order mark is named (and not echoed invisibly); a long bad value is shortened.
string(ASCII 239 187 191 _bom)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/bom.subst "${_bom}moecheck-substitution 1\nvariant correct\nend\n")
string(REPEAT "x" 100000 _long)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/long-value.subst "moecheck-substitution 1\nvariant ${_long}\nend\n")
moecheck_cli_test(substitution_bom "bom.subst:1: field 'header': the file starts with a UTF-8 byte order mark \\(BOM"
                  "substitution|--replay|${CMAKE_CURRENT_BINARY_DIR}/bom.subst")
moecheck_cli_test(substitution_long_value "unknown module variant 'x+'[.][.][.] [(]100000 bytes[)]"
                  "substitution|--replay|${CMAKE_CURRENT_BINARY_DIR}/long-value.subst")
moecheck_cli_test(substitution_malformed "malformed.subst:3: field 'sede': unknown field"
                  "substitution|--replay|${CMAKE_CURRENT_BINARY_DIR}/malformed.subst")
