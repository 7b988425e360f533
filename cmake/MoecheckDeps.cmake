# Dependency discovery. Everything comes from the system or from the project-local
# .deps/ folder made by scripts/setup.sh; nothing is downloaded at build time.

# moecheck_stdcxx_first(): at the end of the top-level CMakeLists.txt, -lstdc++ becomes the first
# link item of every program and module of the tree, ahead of LibTorch (see moecheck::torch below:
# the torch wheel's libraries export copies of libstdc++ functions). Right after a program's own
# objects, with a shared libstdc++ it comes first in DT_NEEDED; with a toolchain that links
# libstdc++ statically (-lstdc++ finds only libstdc++.a) the archive is searched while the
# objects' std:: references are still undefined, so they resolve to it (a link flag before the
# objects, where add_link_options and target_link_options put it, pulls nothing from an
# archive). A no-op without LibTorch; harmless for programs that do not link it.
macro(moecheck_stdcxx_first)
  if(MOECHECK_STDCXX_FIRST)
    cmake_language(DEFER CALL moecheck_stdcxx_first_apply "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
endmacro()

function(moecheck_stdcxx_first_apply dir)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    if(type STREQUAL "EXECUTABLE" OR type STREQUAL "MODULE_LIBRARY" OR type STREQUAL "SHARED_LIBRARY")
      get_target_property(libs ${t} LINK_LIBRARIES)
      if(NOT libs)
        set(libs "")
      endif()
      set_property(TARGET ${t} PROPERTY LINK_LIBRARIES "${MOECHECK_STDCXX_FIRST};${libs}")
    endif()
  endforeach()
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    moecheck_stdcxx_first_apply("${sub}")
  endforeach()
endfunction()

function(moecheck_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
    if(MOECHECK_WARNINGS_AS_ERRORS)
      target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
    endif()
  endif()
endfunction()

if(MOECHECK_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=undefined>)
  add_link_options(-fsanitize=address,undefined)
endif()

# ---- CUDA (optional) -------------------------------------------------------------
set(MOECHECK_HAVE_CUDA OFF)
if(NOT MOECHECK_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(MOECHECK_HAVE_CUDA ON)
  elseif(MOECHECK_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MOECHECK_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
endif()
message(STATUS "moecheck: CUDA kernels ${MOECHECK_HAVE_CUDA}")

# ---- Test and bench libraries ------------------------------------------------------
if(MOECHECK_BUILD_TESTS)
  find_package(GTest REQUIRED)
  find_package(benchmark REQUIRED)
endif()
if(MOECHECK_BUILD_TESTS OR MOECHECK_WITH_TORCH)
  find_package(rapidcheck REQUIRED)  # also drives the substitution suite (harness/torch)
endif()
if(MOECHECK_WITH_TORCH)
  find_package(CLI11 CONFIG QUIET)
  if(NOT CLI11_FOUND)
    find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
    add_library(CLI11::CLI11 INTERFACE IMPORTED)
    target_include_directories(CLI11::CLI11 INTERFACE ${CLI11_INCLUDE_DIR})
  endif()
endif()
find_package(nlohmann_json 3.10 REQUIRED)

# Version stamps recorded in corpus files and reports (MOECHECK_TORCH_VERSION: see below).
if(MOECHECK_HAVE_CUDA)
  set(MOECHECK_CUDA_VERSION "${CMAKE_CUDA_COMPILER_VERSION}")
else()
  set(MOECHECK_CUDA_VERSION "none")
endif()
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                OUTPUT_VARIABLE MOECHECK_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT MOECHECK_GIT_COMMIT)
  set(MOECHECK_GIT_COMMIT "unknown")
endif()

if(NOT MOECHECK_WITH_TORCH)
  # No LibTorch: moecheck::torch is an empty placeholder so that targets naming it still
  # configure (none of them is built: see the top-level CMakeLists.txt).
  add_library(moecheck_torch INTERFACE)
  add_library(moecheck::torch ALIAS moecheck_torch)
  set(MOECHECK_HAVE_TORCH_CUDA OFF)
  set(MOECHECK_TORCH_VERSION "none")
  message(STATUS "moecheck: LibTorch side OFF (MOECHECK_WITH_TORCH=OFF)")
  return()
endif()

# ---- LibTorch ----------------------------------------------------------------------
if(NOT DEFINED TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "9.0")
endif()
# LibTorch's CMake package (Caffe2/public/cuda.cmake) appends its own nvcc flags to
# CMAKE_CUDA_FLAGS (--expt-relaxed-constexpr, --expt-extended-lambda, -DONNX_NAMESPACE, -Xcudafe
# diagnostics, -gencode from TORCH_CUDA_ARCH_LIST) and clears CMAKE_CUDA_ARCHITECTURES. No
# moecheck CUDA source includes a LibTorch header, so both are restored: each CUDA target
# compiles with the project's flags and its own target options only.
set(_moecheck_cuda_flags "${CMAKE_CUDA_FLAGS}")
set(_moecheck_cuda_archs "${CMAKE_CUDA_ARCHITECTURES}")
find_package(Torch REQUIRED)
if(MOECHECK_HAVE_CUDA)
  set(CMAKE_CUDA_FLAGS "${_moecheck_cuda_flags}")
  set(CMAKE_CUDA_ARCHITECTURES "${_moecheck_cuda_archs}")
endif()
message(STATUS "moecheck: LibTorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}")

# LibTorch wheels built with CUDA carry libtorch_cuda.so, whose runtime (cuDNN, NCCL,
# cuBLAS...) exists only on GPU machines. On other machines we link the CPU backend
# alone: every CPU op, the nn API and the dispatcher live in libtorch_cpu.
set(_torch_cuda_lib "${TORCH_INSTALL_PREFIX}/lib/libtorch_cuda.so")
set(MOECHECK_HAVE_TORCH_CUDA OFF)
if(MOECHECK_TORCH_CUDA STREQUAL "ON")
  set(MOECHECK_HAVE_TORCH_CUDA ON)
elseif(MOECHECK_TORCH_CUDA STREQUAL "AUTO" AND EXISTS "${_torch_cuda_lib}" AND MOECHECK_HAVE_CUDA)
  execute_process(COMMAND ldd "${_torch_cuda_lib}" OUTPUT_VARIABLE _ldd_out ERROR_QUIET
                  RESULT_VARIABLE _ldd_rc)
  if(_ldd_rc EQUAL 0 AND NOT _ldd_out MATCHES "not found")
    set(MOECHECK_HAVE_TORCH_CUDA ON)
  endif()
endif()
message(STATUS "moecheck: LibTorch CUDA backend ${MOECHECK_HAVE_TORCH_CUDA}")

add_library(moecheck_torch INTERFACE)
add_library(moecheck::torch ALIAS moecheck_torch)
target_include_directories(moecheck_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_compile_options(moecheck_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${TORCH_CXX_FLAGS}>)
# The torch wheel's libraries export copies of libstdc++ functions (std::filesystem among them).
# Our std:: references must not bind to them: libtorch's std::filesystem::remove_all jumped to
# address 0 (`fuzz --devices`, and substitution_corpus_test in the CUDA build of a machine whose
# g++ links libstdc++ statically). moecheck_stdcxx_first() (above, called once from the top-level
# CMakeLists.txt) links every program against libstdc++ ahead of LibTorch; the libstdcxx_binding
# test checks it.
set(MOECHECK_STDCXX_FIRST "")
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND NOT APPLE)
  set(MOECHECK_STDCXX_FIRST "-Wl,--push-state,--no-as-needed,-lstdc++,--pop-state")
endif()
if(MOECHECK_HAVE_TORCH_CUDA)
  target_link_libraries(moecheck_torch INTERFACE ${TORCH_LIBRARIES})
  target_compile_definitions(moecheck_torch INTERFACE MOECHECK_WITH_TORCH_CUDA=1)
else()
  target_link_libraries(moecheck_torch INTERFACE torch_cpu c10)
endif()

set(MOECHECK_TORCH_VERSION "${Torch_VERSION}")

