/* version.c: the library's version, for callers that load libgraft.so dynamically. */
#include "graft/graft.h"

const char *graft_version(void) { return GRAFT_VERSION_STRING; }
