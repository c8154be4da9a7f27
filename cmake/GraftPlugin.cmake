# graft_add_plugin(NAME src...): a mixer or loss plugin as a MODULE library libgraft_<NAME>.so.
# One exported symbol (graft_plugin_init): everything else hidden. Linked with --no-undefined and
# against nothing of the core, so a stray call into the core fails at link time (STYLE.md).
# Used by graft's own plugins and, installed, by out-of-tree plugins (find_package(graft)).
#
# CUDA sources (*.cu) in the list are compiled only when the CUDA language is enabled in the
# calling project (graft's own build: wherever nvcc is found). Then the plugin links the CUDA
# runtime (CUDA::cudart, shared) and is compiled with GRAFT_PLUGIN_CUDA=1, so its C code can tell
# whether its kernels are in the .so. Without nvcc the .cu files are left out and the plugin
# builds CPU-only from the same call.
function(graft_add_plugin name)
  set(_srcs)
  set(_cuda_srcs)
  foreach(_s IN LISTS ARGN)
    if(_s MATCHES "\\.cu$")
      list(APPEND _cuda_srcs ${_s})
    else()
      list(APPEND _srcs ${_s})
    endif()
  endforeach()
  set(_use_cuda OFF)
  if(_cuda_srcs)
    get_property(_langs GLOBAL PROPERTY ENABLED_LANGUAGES)
    if("CUDA" IN_LIST _langs)
      set(_use_cuda ON)
      list(APPEND _srcs ${_cuda_srcs})
    endif()
  endif()
  add_library(graft_plugin_${name} MODULE ${_srcs})
  set_target_properties(graft_plugin_${name} PROPERTIES
    OUTPUT_NAME graft_${name}
    PREFIX lib
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    C_STANDARD 11
    C_STANDARD_REQUIRED ON)
  if(_use_cuda)
    if(NOT TARGET CUDA::cudart)
      find_package(CUDAToolkit REQUIRED)
    endif()
    set_target_properties(graft_plugin_${name} PROPERTIES
      CUDA_STANDARD 17
      CUDA_STANDARD_REQUIRED ON
      CUDA_RUNTIME_LIBRARY Shared)
    target_compile_definitions(graft_plugin_${name} PRIVATE GRAFT_PLUGIN_CUDA=1)
    target_link_libraries(graft_plugin_${name} PRIVATE CUDA::cudart)
  endif()
  if(DEFINED GRAFT_PLUGIN_OUTPUT_DIR)
    set_target_properties(graft_plugin_${name} PROPERTIES
      LIBRARY_OUTPUT_DIRECTORY ${GRAFT_PLUGIN_OUTPUT_DIR})
  endif()
  if(TARGET graft_headers)
    target_link_libraries(graft_plugin_${name} PRIVATE graft_headers)
  elseif(TARGET graft::headers)
    target_link_libraries(graft_plugin_${name} PRIVATE graft::headers)
  endif()
  if(DEFINED GRAFT_WARNINGS)
    target_compile_options(graft_plugin_${name} PRIVATE $<$<COMPILE_LANGUAGE:C>:${GRAFT_WARNINGS}>)
  endif()
  target_link_options(graft_plugin_${name} PRIVATE -Wl,--no-undefined)
  target_link_libraries(graft_plugin_${name} PRIVATE m)
  if(DEFINED GRAFT_PLUGIN_INSTALL_DIR)
    install(TARGETS graft_plugin_${name} LIBRARY DESTINATION ${GRAFT_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
