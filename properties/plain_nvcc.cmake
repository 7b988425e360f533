# Compiles one kernels/*.cu with a plain nvcc line and no other flag:
#   nvcc -std=c++17 -arch=sm_90 -I. -Ikernels -c kernels/<SRC> -o <OUT>   (in ROOT)
# so that the kernels cannot come to depend on flags another package injects (LibTorch's
# --expt-relaxed-constexpr, -DONNX_NAMESPACE, ...). Prints "SKIPPED:" when no nvcc exists.
# -DNVCC=<path or empty> -DROOT=<source dir> -DSRC=<file name in kernels/> -DOUT=<object>
if(NOT NVCC OR NOT EXISTS "${NVCC}")
  find_program(NVCC nvcc PATHS /usr/local/cuda/bin)
endif()
if(NOT NVCC)
  message(STATUS "SKIPPED: no nvcc (neither the build's CUDA compiler nor nvcc in PATH or /usr/local/cuda/bin)")
  return()
endif()
get_filename_component(out_dir "${OUT}" DIRECTORY)
file(MAKE_DIRECTORY "${out_dir}")
set(cmd "${NVCC}" -std=c++17 -arch=sm_90 -I. -Ikernels -c "kernels/${SRC}" -o "${OUT}")
string(REPLACE ";" " " shown "${cmd}")
message(STATUS "${shown}")
execute_process(COMMAND ${cmd} WORKING_DIRECTORY "${ROOT}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "plain nvcc compile of kernels/${SRC} failed (exit ${rc}):\n${out}")
endif()
file(REMOVE "${OUT}")
message(STATUS "ok: kernels/${SRC} compiles with no flag beyond -std=c++17 -arch=sm_90 -I. -Ikernels\n${out}")
