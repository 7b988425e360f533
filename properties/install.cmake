# The installed package (cmake/MoecheckInstall.cmake): `cmake --install` of this build into a
# temporary prefix, then an outside project (properties/install_consumer) built against it with
# find_package(moecheck CONFIG REQUIRED) and run on the committed corpora.
add_test(NAME install_consumer
         COMMAND ${CMAKE_COMMAND}
                 -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DBINARY_DIR=${PROJECT_BINARY_DIR}
                 -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install_consumer
                 "-DGENERATOR=${CMAKE_GENERATOR}" -DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}
                 -DC_COMPILER=${CMAKE_C_COMPILER} -DCXX_COMPILER=${CMAKE_CXX_COMPILER}
                 -DBUILD_TYPE=${CMAKE_BUILD_TYPE} "-DLAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}"
                 -DLIBDIR=${CMAKE_INSTALL_LIBDIR} -DINCLUDEDIR=${CMAKE_INSTALL_INCLUDEDIR}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/install_consumer.cmake)
set_tests_properties(install_consumer PROPERTIES LABELS "quick;install" TIMEOUT 300)

# The programs linking LibTorch bind std:: to the system libstdc++ (properties/libstdcxx_binding.cmake).
find_program(MOECHECK_READELF readelf)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND NOT APPLE AND MOECHECK_READELF)
  add_test(NAME libstdcxx_binding
           COMMAND ${CMAKE_COMMAND} -DREADELF=${MOECHECK_READELF}
                   "-DEXES=$<TARGET_FILE:moecheck>|$<TARGET_FILE:module_test>|$<TARGET_FILE:functional_call_test>|$<TARGET_FILE:substitution_corpus_test>|$<TARGET_FILE:campaign_test>"
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/libstdcxx_binding.cmake)
  set_tests_properties(libstdcxx_binding PROPERTIES LABELS quick TIMEOUT 60)
endif()
