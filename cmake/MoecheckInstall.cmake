# The installable part of moecheck: the pure C++17 libraries (no CUDA, no LibTorch, no JSON)
# as a CMake package. `cmake --install <build> [--prefix P]` writes
#   P/include/moecheck/<folder>/<header>   public headers, by the path the sources include them
#                                          (reference/routing.hpp -> include/moecheck/reference/routing.hpp)
#   P/lib/libmoecheck_<name>.a             the static libraries (position-independent)
#   P/lib/cmake/moecheck/                  moecheckConfig.cmake, moecheckConfigVersion.cmake and
#                                          moecheckTargets.cmake (imported targets moecheck::<name>)
#   P/bin/moecheck                         the CLI, when it is built (component "cli")
# so that an outside project does `find_package(moecheck CONFIG REQUIRED)` and links
# moecheck::reference, moecheck::oracle, moecheck::corpus, moecheck::plugin_api
# (README.md, "Using moecheck from your own CMake project"; tested by properties/install_consumer.cmake).
#
# Adding a library to the package is one call next to its add_library():
#   moecheck_installed_library(moecheck_<name> HEADERS <public headers...>)
# (its PUBLIC dependencies must be installed libraries too: install(EXPORT) says which one is not.)

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MOECHECK_INSTALL_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}/moecheck")
set(MOECHECK_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/moecheck")

# moecheck_installed_library(<moecheck_NAME> [C_HEADERS] [HEADERS <headers...>])
#   Makes the library <moecheck_NAME> (static or INTERFACE) part of the installed package as
#   moecheck::<NAME>: its public headers (paths relative to the calling folder) install under
#   include/moecheck/ keeping their path from the source root; the include folders are the source
#   root in the build tree and include/moecheck (for "reference/routing.hpp", the form the headers
#   include each other by) plus include (for <moecheck/reference/routing.hpp>) once installed; C++17
#   is a usage requirement (not with C_HEADERS: headers that C code includes too); the code is
#   position-independent (consumers may link it into shared libraries).
function(moecheck_installed_library target)
  cmake_parse_arguments(L "C_HEADERS" "" "HEADERS" ${ARGN})
  if(NOT target MATCHES "^moecheck_(.+)$")
    message(FATAL_ERROR "moecheck_installed_library: '${target}' is not named moecheck_<name>")
  endif()
  set(_name "${CMAKE_MATCH_1}")
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "INTERFACE_LIBRARY")
    set(_scope INTERFACE)
  else()
    set(_scope PUBLIC)
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endif()
  if(L_HEADERS)
    target_sources(${target} ${_scope} FILE_SET HEADERS BASE_DIRS ${PROJECT_SOURCE_DIR} FILES ${L_HEADERS})
  endif()
  target_include_directories(${target} ${_scope}
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:${MOECHECK_INSTALL_INCLUDEDIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  if(NOT L_C_HEADERS)
    target_compile_features(${target} ${_scope} cxx_std_17)
  endif()
  if(MOECHECK_SANITIZE AND NOT _type STREQUAL "INTERFACE_LIBRARY")
    # Instrumented code needs the sanitizer runtimes wherever it is linked.
    target_link_options(${target} INTERFACE $<INSTALL_INTERFACE:-fsanitize=address,undefined>)
  endif()
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${_name})
  set_property(GLOBAL APPEND PROPERTY MOECHECK_INSTALLED_LIBRARIES ${target})
endfunction()

# moecheck_assert_sources_assigned()
#   Call at the end of a folder whose libraries list their sources one by one: fails the
#   configuration when a .cpp of the folder is compiled by none of the folder's targets (so that a
#   new file is given to a library, not forgotten).
function(moecheck_assert_sources_assigned)
  get_directory_property(_targets BUILDSYSTEM_TARGETS)
  set(_assigned)
  foreach(_t IN LISTS _targets)
    get_target_property(_src ${_t} SOURCES)
    if(_src)
      list(APPEND _assigned ${_src})
    endif()
  endforeach()
  list(JOIN _targets ", " _names)
  file(GLOB _all RELATIVE ${CMAKE_CURRENT_SOURCE_DIR} CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  foreach(_f IN LISTS _all)
    if(NOT _f IN_LIST _assigned AND NOT "${CMAKE_CURRENT_SOURCE_DIR}/${_f}" IN_LIST _assigned)
      message(FATAL_ERROR "${CMAKE_CURRENT_SOURCE_DIR}/${_f} belongs to no library: add it to the "
                          "sources of one of ${_names} (${CMAKE_CURRENT_LIST_FILE})")
    endif()
  endforeach()
endfunction()

# Called once at the end of the top-level CMakeLists.txt, after every library is defined.
# Components: "development" (libraries, headers, CMake package), "cli" (bin/moecheck).
function(moecheck_install_package)
  get_property(_libs GLOBAL PROPERTY MOECHECK_INSTALLED_LIBRARIES)
  install(TARGETS ${_libs} EXPORT moecheckTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
    FILE_SET HEADERS DESTINATION ${MOECHECK_INSTALL_INCLUDEDIR} COMPONENT development)
  install(EXPORT moecheckTargets NAMESPACE moecheck:: DESTINATION ${MOECHECK_INSTALL_CMAKEDIR}
          COMPONENT development)
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/moecheckConfig.cmake.in
    ${PROJECT_BINARY_DIR}/moecheckConfig.cmake INSTALL_DESTINATION ${MOECHECK_INSTALL_CMAKEDIR})
  # 0.x: a minor release may change the interface.
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/moecheckConfigVersion.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/moecheckConfig.cmake ${PROJECT_BINARY_DIR}/moecheckConfigVersion.cmake
          DESTINATION ${MOECHECK_INSTALL_CMAKEDIR} COMPONENT development)

  if(TARGET moecheck)
    # The installed CLI finds LibTorch (and the CUDA runtime) where it was linked against them.
    set(_rpath "${TORCH_INSTALL_PREFIX}/lib")
    if(MOECHECK_HAVE_CUDA AND CUDAToolkit_LIBRARY_DIR)
      list(APPEND _rpath "${CUDAToolkit_LIBRARY_DIR}")
    endif()
    set_target_properties(moecheck PROPERTIES INSTALL_RPATH "${_rpath}")
    install(TARGETS moecheck RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT cli)
  endif()
endfunction()
