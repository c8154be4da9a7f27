# graftConfig.cmake: what an out-of-tree plugin gets from find_package(graft): the public headers
# as graft::headers and graft_add_plugin(). Nothing of the core library: plugins never link it.
#
# This file is a template: the top-level CMakeLists.txt runs configure_package_config_file() on it
# and installs the result to <prefix>/<libdir>/cmake/graft/, next to GraftPlugin.cmake and
# graftConfigVersion.cmake. The PACKAGE_INIT block below computes the prefix from the installed
# file's own location, so the install tree can be moved (cmake --install --prefix, DESTDIR) and a
# multiarch libdir (lib/x86_64-linux-gnu) works. Do not include this file from the source tree.
@PACKAGE_INIT@

set_and_check(GRAFT_INCLUDE_DIR "@PACKAGE_CMAKE_INSTALL_INCLUDEDIR@")
if(NOT TARGET graft::headers)
  add_library(graft::headers INTERFACE IMPORTED)
  set_target_properties(graft::headers PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${GRAFT_INCLUDE_DIR}")
endif()
# Where graft's loader looks for installed plugins (install(TARGETS) of graft_add_plugin uses it).
set(GRAFT_PLUGIN_INSTALL_DIR "@PACKAGE_GRAFT_PLUGIN_INSTALL_DIR@")
include("${CMAKE_CURRENT_LIST_DIR}/GraftPlugin.cmake")
check_required_components(graft)
