/* plugin_loader.c: dlopen-based plugin loading with an explanation for every refusal
 * (plugin_loader.h). Each accepted .so receives the core's host table (host.c).
 *
 * Not here: what a mixer computes (the conformance suite in tests/plugins checks that).
 *
 * Checks, in order, each refusal naming the file: dlopen (dlerror text), the entry symbol,
 * graft_plugin_init's own status and message, graft_plugin.abi_version, graft_plugin.struct_size,
 * kind (known, and the one wanted), name present, the descriptor pointer, the descriptor's
 * struct_size / abi_version / name (equal to graft_plugin.name and to the file name
 * libgraft_<name>.so), and its required function pointers.
 */
#define _GNU_SOURCE
#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"

struct graft_loaded_plugin {
    void *handle;
    char *path;
    graft_plugin info;
    const graft_host *host;
};

static atomic_int verbose_flag = -1; /* -1: not decided yet (read the environment) */

void graft_plugin_set_verbose(int on) { atomic_store(&verbose_flag, on ? 1 : 0); }

static int verbose(void) {
    int v = atomic_load(&verbose_flag);
    if (v < 0) {
        const char *e = getenv("GRAFT_PLUGIN_VERBOSE");
        v = (e && *e && strcmp(e, "0") != 0) ? 1 : 0;
        atomic_store(&verbose_flag, v);
    }
    return v;
}

const char *graft_plugin_kind_name(graft_plugin_kind kind) {
    switch (kind) {
    case GRAFT_PLUGIN_MIXER: return "mixer";
    case GRAFT_PLUGIN_LOSS: return "loss";
    }
    return "?";
}

const graft_plugin *graft_plugin_info(const graft_loaded_plugin *p) { return p ? &p->info : NULL; }
const graft_mixer *graft_plugin_mixer(const graft_loaded_plugin *p) {
    return p && p->info.kind == GRAFT_PLUGIN_MIXER ? p->info.mixer : NULL;
}
const graft_loss *graft_plugin_loss(const graft_loaded_plugin *p) {
    return p && p->info.kind == GRAFT_PLUGIN_LOSS ? p->info.loss : NULL;
}

graft_status graft_mixer_check_device(const graft_mixer *mx, graft_device device, graft_err *err) {
    uint32_t need = device == GRAFT_DEVICE_CUDA ? GRAFT_MIXER_CAP_CUDA : GRAFT_MIXER_CAP_CPU;
    if (mx->caps & need) return GRAFT_STATUS_OK;
    return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "mixer \"%s\" has no %s implementation (caps 0x%x): run it on "
                         "the CPU (device: cpu)", mx->name, device == GRAFT_DEVICE_CUDA ? "CUDA" : "CPU", mx->caps);
}
const char *graft_plugin_path(const graft_loaded_plugin *p) { return p ? p->path : NULL; }
const graft_host *graft_plugin_host(const graft_loaded_plugin *p) { return p ? p->host : NULL; }

void graft_plugin_unload(graft_loaded_plugin *p) {
    if (!p) return;
    if (p->handle) dlclose(p->handle);
    free(p->path);
    free(p);
}

/* Minimum struct sizes: up to and including the last member this loader requires. */
#define MIN_SIZE(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* If `path`'s file name is libgraft_<X>.so, copies X into buf and returns 1. */
static int name_from_file(const char *path, char *buf, size_t size) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len <= 12 || strncmp(base, "libgraft_", 9) != 0 || strcmp(base + len - 3, ".so") != 0) return 0;
    size_t n = len - 12;
    if (n + 1 > size) return 0;
    memcpy(buf, base + 9, n);
    buf[n] = 0;
    return 1;
}

#define REFUSE(...) (graft_err_set(err, GRAFT_STATUS_PLUGIN, __VA_ARGS__))

#define NEED_FN(desc, type, fn)                                                                 \
    do {                                                                                         \
        if (!(desc)->fn)                                                                         \
            return REFUSE("%s: refused: " #type "." #fn " is NULL (a required function)", path); \
    } while (0)

static graft_status check_mixer(const char *path, const graft_plugin *info, graft_err *err) {
    const graft_mixer *m = info->mixer;
    if (!m) return REFUSE("%s: refused: kind is mixer but graft_plugin.mixer is NULL", path);
    size_t need = MIN_SIZE(graft_mixer, backward);
    if (m->struct_size < need)
        return REFUSE("%s: refused: graft_mixer struct_size %u too short, wanted at least %zu", path,
                      m->struct_size, need);
    if (m->abi_version != GRAFT_ABI_VERSION)
        return REFUSE("%s: refused: graft_mixer abi_version %u, this graft speaks %u", path, m->abi_version,
                      GRAFT_ABI_VERSION);
    if (!m->name || strcmp(m->name, info->name) != 0)
        return REFUSE("%s: refused: graft_mixer.name \"%s\" differs from graft_plugin.name \"%s\"", path,
                      m->name ? m->name : "(null)", info->name);
    if (!(m->caps & (GRAFT_MIXER_CAP_CPU | GRAFT_MIXER_CAP_CUDA)))
        return REFUSE("%s: refused: mixer caps 0x%x name no device (CAP_CPU or CAP_CUDA)", path, m->caps);
    NEED_FN(m, graft_mixer, create);
    NEED_FN(m, graft_mixer, destroy);
    NEED_FN(m, graft_mixer, n_params);
    NEED_FN(m, graft_mixer, param);
    NEED_FN(m, graft_mixer, init);
    NEED_FN(m, graft_mixer, workspace);
    NEED_FN(m, graft_mixer, state_bytes);
    NEED_FN(m, graft_mixer, forward);
    NEED_FN(m, graft_mixer, backward);
    if (m->carry_name) NEED_FN(m, graft_mixer, carry_width);
    return GRAFT_STATUS_OK;
}

static graft_status check_loss(const char *path, const graft_plugin *info, graft_err *err) {
    const graft_loss *l = info->loss;
    if (!l) return REFUSE("%s: refused: kind is loss but graft_plugin.loss is NULL", path);
    size_t need = MIN_SIZE(graft_loss, compute);
    if (l->struct_size < need)
        return REFUSE("%s: refused: graft_loss struct_size %u too short, wanted at least %zu", path,
                      l->struct_size, need);
    if (l->abi_version != GRAFT_ABI_VERSION)
        return REFUSE("%s: refused: graft_loss abi_version %u, this graft speaks %u", path, l->abi_version,
                      GRAFT_ABI_VERSION);
    if (!l->name || strcmp(l->name, info->name) != 0)
        return REFUSE("%s: refused: graft_loss.name \"%s\" differs from graft_plugin.name \"%s\"", path,
                      l->name ? l->name : "(null)", info->name);
    if (l->n_parts < 0 || (l->n_parts > 0 && !l->part_names))
        return REFUSE("%s: refused: graft_loss.n_parts %d without part_names", path, l->n_parts);
    NEED_FN(l, graft_loss, create);
    NEED_FN(l, graft_loss, destroy);
    NEED_FN(l, graft_loss, compute);
    return GRAFT_STATUS_OK;
}

/* Opens one file and checks it; on success fills *out. */
static graft_status load_file(const char *path, graft_plugin_kind want, graft_loaded_plugin **out,
                              graft_err *err) {
    *out = NULL;
    /* dlopen searches the library path for a name without '/': make a relative path explicit. */
    char open_path[PATH_MAX + 3];
    if (strchr(path, '/')) snprintf(open_path, sizeof open_path, "%s", path);
    else snprintf(open_path, sizeof open_path, "./%s", path);
    dlerror();
    /* RTLD_NODELETE: a plugin stays mapped after its last dlclose. A plugin with CUDA kernels
     * registers its fatbinary with the CUDA runtime when loaded and unregisters it when unmapped;
     * unloading and loading one again in a process that keeps its CUDA context (graft bench frees
     * one model's plugins, then loads the next model's) broke on an H100 (2026-11-24): "named
     * symbol not found" from the softmax plugin's next launch, or a segfault. dlopen of a
     * resident library returns it again, so nothing is registered twice. */
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        const char *why = dlerror();
        return REFUSE("%s: refused: dlopen failed: %s", path, why ? why : "(no dlerror text)");
    }
    graft_status st = GRAFT_STATUS_OK;
    dlerror();
    void *sym = dlsym(h, GRAFT_PLUGIN_ENTRY);
    if (!sym) {
        const char *why = dlerror();
        st = REFUSE("%s: refused: no exported symbol %s (%s)", path, GRAFT_PLUGIN_ENTRY,
                    why ? why : "symbol is NULL");
        goto fail;
    }
    graft_plugin_init_fn init;
    memcpy(&init, &sym, sizeof init); /* object pointer -> function pointer without a pedantic cast */

    graft_loaded_plugin *p = calloc(1, sizeof *p);
    if (!p) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
        goto fail;
    }
    p->handle = h;
    p->host = graft_host_get();
    p->path = strdup(path);
    if (!p->path) {
        free(p);
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
        goto fail;
    }
    graft_plugin *info = &p->info;
    info->struct_size = (uint32_t)sizeof *info;
    info->abi_version = GRAFT_ABI_VERSION;
    graft_err perr;
    memset(&perr, 0, sizeof perr);
    graft_status ist = init(p->host, info, &perr);
    perr.msg[sizeof perr.msg - 1] = 0;
    if (ist != GRAFT_STATUS_OK) {
        st = REFUSE("%s: refused: %s failed (%s): %s", path, GRAFT_PLUGIN_ENTRY, graft_status_name(ist),
                    perr.msg[0] ? perr.msg : "(no message)");
        goto fail_p;
    }
    if (info->abi_version != GRAFT_ABI_VERSION) {
        st = REFUSE("%s: refused: plugin abi_version %u, this graft speaks %u", path, info->abi_version,
                    GRAFT_ABI_VERSION);
        goto fail_p;
    }
    size_t need = MIN_SIZE(graft_plugin, loss);
    if (info->struct_size < need || info->struct_size > sizeof *info) {
        st = REFUSE("%s: refused: graft_plugin struct_size %u, wanted at least %zu (and at most %zu)", path,
                    info->struct_size, need, sizeof *info);
        goto fail_p;
    }
    if (info->kind != GRAFT_PLUGIN_MIXER && info->kind != GRAFT_PLUGIN_LOSS) {
        st = REFUSE("%s: refused: unknown plugin kind %d, expected 1 (mixer) or 2 (loss)", path, (int)info->kind);
        goto fail_p;
    }
    if (want != GRAFT_PLUGIN_KIND_ANY && info->kind != want) {
        st = REFUSE("%s: refused: it is a %s plugin, expected a %s", path, graft_plugin_kind_name(info->kind),
                    graft_plugin_kind_name(want));
        goto fail_p;
    }
    if (!info->name || !info->name[0]) {
        st = REFUSE("%s: refused: graft_plugin.name is empty", path);
        goto fail_p;
    }
    char fname[256];
    if (name_from_file(path, fname, sizeof fname) && strcmp(fname, info->name) != 0) {
        st = REFUSE("%s: refused: the file is named for \"%s\" but the plugin calls itself \"%s\"", path,
                    fname, info->name);
        goto fail_p;
    }
    st = info->kind == GRAFT_PLUGIN_MIXER ? check_mixer(path, info, err) : check_loss(path, info, err);
    if (st) goto fail_p;
    if (!info->version) info->version = "";
    *out = p;
    return GRAFT_STATUS_OK;

fail_p:
    free(p->path);
    free(p);
fail:
    dlclose(h);
    return st;
}

/* ---- search path ------------------------------------------------------------------------------ */

#define MAX_DIRS 64

typedef struct dir_list {
    char *dirs[MAX_DIRS];
    int n;
} dir_list;

static void dirs_add(dir_list *l, const char *dir, size_t len) {
    if (len == 0 || l->n >= MAX_DIRS) return;
    char *d = malloc(len + 1);
    if (!d) return;
    memcpy(d, dir, len);
    d[len] = 0;
    while (len > 1 && d[len - 1] == '/') d[--len] = 0;
    /* the same directory reached twice (symlinks, "..") is searched once */
    char real[PATH_MAX];
    const char *key = realpath(d, real) ? real : d;
    for (int i = 0; i < l->n; i++) {
        char other[PATH_MAX];
        const char *ok = realpath(l->dirs[i], other) ? other : l->dirs[i];
        if (!strcmp(ok, key)) {
            free(d);
            return;
        }
    }
    l->dirs[l->n++] = d;
}

static void dirs_free(dir_list *l) {
    for (int i = 0; i < l->n; i++) free(l->dirs[i]);
    l->n = 0;
}

static void dirs_make(dir_list *l) {
    memset(l, 0, sizeof *l);
    const char *env = getenv("GRAFT_PLUGIN_PATH");
    if (env) {
        const char *s = env;
        while (*s) {
            const char *e = strchr(s, ':');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            dirs_add(l, s, len);
            s += len;
            if (*s == ':') s++;
        }
    }
    char buf[PATH_MAX + 32];
    Dl_info di;
    if (dladdr((void *)&verbose_flag, &di) && di.dli_fname && di.dli_fname[0] == '/') {
        const char *slash = strrchr(di.dli_fname, '/');
        int n = snprintf(buf, sizeof buf, "%.*s/graft/plugins", (int)(slash - di.dli_fname), di.dli_fname);
        if (n > 0 && (size_t)n < sizeof buf) dirs_add(l, buf, (size_t)n);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            int m = snprintf(buf, sizeof buf, "%s/../lib/graft/plugins", exe);
            if (m > 0 && (size_t)m < sizeof buf) dirs_add(l, buf, (size_t)m);
        }
    }
#ifdef GRAFT_BUILD_PLUGIN_DIR
    dirs_add(l, GRAFT_BUILD_PLUGIN_DIR, strlen(GRAFT_BUILD_PLUGIN_DIR));
#endif
#ifdef GRAFT_INSTALL_PLUGIN_DIR
    dirs_add(l, GRAFT_INSTALL_PLUGIN_DIR, strlen(GRAFT_INSTALL_PLUGIN_DIR));
#endif
}

void graft_plugin_search_path(char *buf, size_t size) {
    if (!size) return;
    buf[0] = 0;
    dir_list l;
    dirs_make(&l);
    size_t len = 0;
    for (int i = 0; i < l.n && len + 1 < size; i++) {
        int w = snprintf(buf + len, size - len, "%s%s", i ? ":" : "", l.dirs[i]);
        if (w < 0) break;
        len += (size_t)w;
    }
    dirs_free(&l);
}

static int valid_name(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

graft_status graft_plugin_load(const char *path_or_name, graft_plugin_kind want, graft_loaded_plugin **out,
                               graft_err *err) {
    if (!out) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "graft_plugin_load: out is NULL");
    *out = NULL;
    if (!path_or_name || !*path_or_name)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "plugin name is empty");
    if (strchr(path_or_name, '/') || ends_with(path_or_name, ".so")) {
        graft_err e;
        memset(&e, 0, sizeof e);
        graft_status st = load_file(path_or_name, want, out, &e);
        if (verbose()) graft_host_log(GRAFT_LOG_INFO, st ? "plugin %s" : "plugin %s: taken", st ? e.msg : path_or_name);
        if (st) graft_err_set(err, st, "%s", e.msg);
        return st;
    }
    if (!valid_name(path_or_name) || strlen(path_or_name) > 200)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "plugin name \"%s\": expected letters, digits, '_' or '-' (or a path to a .so)",
                             path_or_name);
    dir_list l;
    dirs_make(&l);
    graft_err first;
    memset(&first, 0, sizeof first);
    int refused = 0;
    graft_status st = GRAFT_STATUS_IO;
    for (int i = 0; i < l.n; i++) {
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/libgraft_%s.so", l.dirs[i], path_or_name);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            if (verbose()) graft_host_log(GRAFT_LOG_INFO, "plugin %s: not found", path);
            continue;
        }
        graft_err e;
        memset(&e, 0, sizeof e);
        st = load_file(path, want, out, &e);
        if (st == GRAFT_STATUS_OK) {
            if (verbose()) graft_host_log(GRAFT_LOG_INFO, "plugin %s: taken", path);
            break;
        }
        if (verbose()) graft_host_log(GRAFT_LOG_INFO, "plugin %s", e.msg);
        if (!refused++) first = e;
    }
    if (st != GRAFT_STATUS_OK) {
        if (refused) {
            graft_err_set(err, first.status, "%s", first.msg);
            if (refused > 1 && err) {
                char more[64];
                snprintf(more, sizeof more, " (and %d more refused)", refused - 1);
                size_t len = strlen(err->msg);
                snprintf(err->msg + len, sizeof err->msg - len, "%s", more);
            }
            st = first.status;
        } else {
            char searched[GRAFT_ERR_MSG_BYTES / 2] = "";
            size_t len = 0;
            for (int i = 0; i < l.n && len + 1 < sizeof searched; i++) {
                int w = snprintf(searched + len, sizeof searched - len, "%s%s", i ? ":" : "", l.dirs[i]);
                if (w < 0) break;
                len += (size_t)w;
            }
            st = graft_err_set(err, GRAFT_STATUS_IO,
                               "plugin \"%s\": no libgraft_%s.so in the search path %s (set GRAFT_PLUGIN_PATH)",
                               path_or_name, path_or_name, searched);
        }
    }
    dirs_free(&l);
    return st;
}

static int so_filter(const struct dirent *d) {
    return !strncmp(d->d_name, "libgraft_", 9) && ends_with(d->d_name, ".so");
}

int64_t graft_plugin_scan(graft_plugin_visit_fn visit, void *arg) {
    dir_list l;
    dirs_make(&l);
    int64_t count = 0;
    for (int i = 0; i < l.n; i++) {
        struct dirent **names = NULL;
        int n = scandir(l.dirs[i], &names, so_filter, alphasort);
        if (n < 0) {
            if (verbose()) graft_host_log(GRAFT_LOG_INFO, "plugin dir %s: cannot be read", l.dirs[i]);
            continue;
        }
        for (int j = 0; j < n; j++) {
            char path[PATH_MAX + 256];
            snprintf(path, sizeof path, "%s/%s", l.dirs[i], names[j]->d_name);
            free(names[j]);
            graft_loaded_plugin *p = NULL;
            graft_err e;
            memset(&e, 0, sizeof e);
            graft_status st = load_file(path, GRAFT_PLUGIN_KIND_ANY, &p, &e);
            if (verbose()) graft_host_log(GRAFT_LOG_INFO, st ? "plugin %s" : "plugin %s: taken", st ? e.msg : path);
            if (visit) visit(arg, path, st ? NULL : p, st ? &e : NULL);
            graft_plugin_unload(p);
            count++;
        }
        free(names);
    }
    dirs_free(&l);
    return count;
}
