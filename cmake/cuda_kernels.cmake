# The project's own CUDA kernels (train.fused_kernels; src/*.cu) for a CUDA build of LibTorch.
# They need a CUDA compiler; without one the build goes on and runs ATen's kernels only.
# Defines target sdxl_cuda_kernels and sets SDXL_CUDA_KERNELS (ON/OFF).
include(CheckLanguage)
check_language(CUDA)
set(SDXL_CUDA_KERNELS OFF)
find_package(CUDAToolkit QUIET)
if(NOT CMAKE_CUDA_COMPILER OR NOT CUDAToolkit_FOUND)
  message(STATUS "sdxl-dreambooth: no CUDA compiler or toolkit found (set CUDACXX or put nvcc on the "
                 "PATH): train.fused_kernels will be unavailable")
  return()
endif()
# GPU architectures: SDXL_CUDA_ARCHITECTURES, else TORCH_CUDA_ARCH_LIST's ("8.0;9.0+PTX" -> 80;90),
# else A100 and H100 (90 also carries PTX, which newer GPUs compile at load time).
set(_sdxl_arch 80 90)
if(DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT "$ENV{TORCH_CUDA_ARCH_LIST}" STREQUAL "")
  string(REPLACE " " ";" _sdxl_list "$ENV{TORCH_CUDA_ARCH_LIST}")
  set(_sdxl_arch "")
  foreach(_a IN LISTS _sdxl_list)
    string(REPLACE "+PTX" "" _a "${_a}")
    string(REPLACE "." "" _a "${_a}")
    if(_a MATCHES "^[0-9]+[af]?$")
      list(APPEND _sdxl_arch ${_a})
    endif()
  endforeach()
endif()
set(SDXL_CUDA_ARCHITECTURES "${_sdxl_arch}" CACHE STRING "GPU architectures of the project's CUDA kernels")
enable_language(CUDA)
file(GLOB SDXL_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*/*.cu)
add_library(sdxl_cuda_kernels STATIC ${SDXL_CUDA_SOURCES})
# The shared CUDA runtime, the one LibTorch loads, rather than a second, static copy.
set_target_properties(sdxl_cuda_kernels PROPERTIES
  CUDA_ARCHITECTURES "${SDXL_CUDA_ARCHITECTURES}" CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
  CUDA_RUNTIME_LIBRARY Shared POSITION_INDEPENDENT_CODE ON)
target_include_directories(sdxl_cuda_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/include)
target_link_libraries(sdxl_cuda_kernels PUBLIC CUDA::cudart)
set(SDXL_CUDA_KERNELS ON)
message(STATUS "sdxl-dreambooth: CUDA kernels for architectures ${SDXL_CUDA_ARCHITECTURES} "
               "(${CMAKE_CUDA_COMPILER_ID} ${CMAKE_CUDA_COMPILER_VERSION})")
