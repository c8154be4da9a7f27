# graftConfig.cmake: what an out-of-tree plugin gets from find_package(graft): the public headers
# as graft::headers and graft_add_plugin(). Nothing of the core library: plugins never link it.
get_filename_component(_graft_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET graft::headers)
  add_library(graft::headers INTERFACE IMPORTED)
  set_target_properties(graft::headers PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_graft_prefix}/include")
endif()
set(GRAFT_PLUGIN_INSTALL_DIR "${_graft_prefix}/lib/graft/plugins")
include(${CMAKE_CURRENT_LIST_DIR}/GraftPlugin.cmake)
set(graft_FOUND TRUE)
