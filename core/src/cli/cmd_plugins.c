/* cli/cmd_plugins.c: `graft plugins [--verbose]`: lists the plugins on the search path (kind, name,
 * version, caps) and the files that were refused with the loader's reason. --verbose also logs every
 * file the loader considered. Exit 0 when at least one plugin loaded, 1 otherwise, 2 bad usage. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "plugin_loader.h"

typedef struct listing {
    int ok, refused;
} listing;

static void caps_text(uint32_t caps, char *buf, size_t size) {
    buf[0] = 0;
    static const struct { uint32_t bit; const char *name; } names[] = {
        {GRAFT_MIXER_CAP_CPU, "cpu"}, {GRAFT_MIXER_CAP_CUDA, "cuda"},
        {GRAFT_MIXER_CAP_TEACHER_INIT, "teacher-init"}, {GRAFT_MIXER_CAP_STATE_GRAD, "state-grad"}};
    size_t len = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (caps & names[i].bit) {
            int w = snprintf(buf + len, size - len, "%s%s", len ? "," : "", names[i].name);
            if (w < 0 || (size_t)w >= size - len) break;
            len += (size_t)w;
        }
    if (!len) snprintf(buf, size, "-");
}

static void show(void *arg, const char *path, const graft_loaded_plugin *p, const graft_err *refusal) {
    listing *l = arg;
    if (!p) {
        l->refused++;
        fprintf(stdout, "  refused  %s\n", refusal ? refusal->msg : path);
        return;
    }
    l->ok++;
    const graft_plugin *info = graft_plugin_info(p);
    char caps[128];
    uint32_t c = info->kind == GRAFT_PLUGIN_MIXER ? graft_plugin_mixer(p)->caps : graft_plugin_loss(p)->caps;
    caps_text(c, caps, sizeof caps);
    const graft_mixer *m = graft_plugin_mixer(p);
    fprintf(stdout, "  %-6s %-12s %-10s caps %-28s%s%s  %s\n", graft_plugin_kind_name(info->kind), info->name,
            info->version, caps, m && m->carry_name ? " carry " : "", m && m->carry_name ? m->carry_name : "",
            path);
}

int graft_cmd_plugins(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
            graft_plugin_set_verbose(1);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: graft plugins [--verbose]\n\n"
                   "Lists the mixer and loss plugins found on the search path (GRAFT_PLUGIN_PATH, then the\n"
                   "directories next to libgraft and the graft binary, then the build and install dirs),\n"
                   "and every libgraft_*.so that was refused, with the reason.\n");
            return 0;
        } else {
            fprintf(stderr, "graft plugins: unknown option \"%s\" (try --help)\n", argv[i]);
            return 2;
        }
    }
    char sp[4096];
    graft_plugin_search_path(sp, sizeof sp);
    printf("plugin search path: %s\n", sp);
    listing l = {0, 0};
    graft_plugin_scan(show, &l);
    printf("%d plugin%s loaded, %d refused\n", l.ok, l.ok == 1 ? "" : "s", l.refused);
    return l.ok > 0 ? 0 : 1;
}
