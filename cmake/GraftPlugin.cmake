# graft_add_plugin(NAME src...): a mixer or loss plugin as a MODULE library libgraft_<NAME>.so.
# One exported symbol (graft_plugin_init): everything else hidden. Linked with --no-undefined and
# against nothing of the core, so a stray call into the core fails at link time (STYLE.md).
# Used by graft's own plugins and, installed, by out-of-tree plugins (find_package(graft)).
function(graft_add_plugin name)
  add_library(graft_plugin_${name} MODULE ${ARGN})
  set_target_properties(graft_plugin_${name} PROPERTIES
    OUTPUT_NAME graft_${name}
    PREFIX lib
    C_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    C_STANDARD 11
    C_STANDARD_REQUIRED ON)
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
