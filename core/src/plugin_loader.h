/* plugin_loader.h: finding, opening and validating plugin .so files (DESIGN: "the loader explains
 * every refusal"). A loaded plugin owns its dlopen handle; its descriptor (mixer or loss) is valid
 * until graft_plugin_unload.
 *
 * Search for a bare name ("gla" -> libgraft_gla.so), in order:
 *   1. each directory of GRAFT_PLUGIN_PATH (colon-separated),
 *   2. <directory of libgraft.so>/graft/plugins (build tree and install tree alike),
 *   3. <directory of the running executable>/../lib/graft/plugins,
 *   4. GRAFT_BUILD_PLUGIN_DIR, 5. GRAFT_INSTALL_PLUGIN_DIR (compile-time).
 * A name containing '/' or ending in ".so" is loaded as a path. Verbose mode (env
 * GRAFT_PLUGIN_VERBOSE=1, or graft_plugin_set_verbose(1)) logs every file considered and why it was
 * taken or refused.
 *
 * Thread safety: load/unload may be called from several threads (dlopen is thread-safe); a loaded
 * plugin is read-only after load.
 */
#ifndef GRAFT_PLUGIN_LOADER_H
#define GRAFT_PLUGIN_LOADER_H

#include "graft/plugin.h"

typedef struct graft_loaded_plugin graft_loaded_plugin;

/* `want` for a plugin of either kind. */
#define GRAFT_PLUGIN_KIND_ANY ((graft_plugin_kind)0)

/* Loads a plugin by bare name or path, checks its ABI (abi_version, struct sizes, kind, name vs
 * file, required functions) and returns it in *out. On failure *out is NULL, nothing stays loaded,
 * and err says why ("<path>: refused: <reason>"; status GRAFT_STATUS_PLUGIN, or BAD_INPUT for a
 * malformed name, IO when no file was found). */
graft_status graft_plugin_load(const char *path_or_name, graft_plugin_kind want,
                               graft_loaded_plugin **out, graft_err *err);

/* dlcloses and frees; accepts NULL. Every layer created from the plugin must be destroyed first. */
void graft_plugin_unload(graft_loaded_plugin *p);

/* The descriptor as the plugin filled it (members past its struct_size are zero). */
const graft_plugin *graft_plugin_info(const graft_loaded_plugin *p);
/* The mixer / loss descriptor, or NULL when the plugin is of the other kind. */
const graft_mixer *graft_plugin_mixer(const graft_loaded_plugin *p);
const graft_loss *graft_plugin_loss(const graft_loaded_plugin *p);
/* OK when mixer mx has an implementation on `device` (its caps); else UNSUPPORTED with a message
 * naming the mixer, its caps and the way out (the CPU). Callers prefix where it was asked for. */
graft_status graft_mixer_check_device(const graft_mixer *mx, graft_device device, graft_err *err);
/* The file it was loaded from (owned by p). */
const char *graft_plugin_path(const graft_loaded_plugin *p);
/* The host table passed to the plugin (pass it to create()). */
const graft_host *graft_plugin_host(const graft_loaded_plugin *p);

/* "mixer" / "loss" / "?" */
const char *graft_plugin_kind_name(graft_plugin_kind kind);

void graft_plugin_set_verbose(int on);

/* Visits every libgraft_*.so in the search directories (each directory once, in search order).
 * For each file, visit() gets the path and either the loaded plugin (refusal == NULL; it is
 * unloaded after visit returns) or the refusal. Returns the number of files visited. */
typedef void (*graft_plugin_visit_fn)(void *arg, const char *path, const graft_loaded_plugin *p,
                                      const graft_err *refusal);
int64_t graft_plugin_scan(graft_plugin_visit_fn visit, void *arg);

/* Writes the search directories, separated by ':', into buf (truncated to size). */
void graft_plugin_search_path(char *buf, size_t size);

#endif /* GRAFT_PLUGIN_LOADER_H */
