/* test_plugin_loader.c: every refusal of the plugin loader has a fixture .so (tests/fixtures) and
 * an asserted message; good plugins load by path and by name (GRAFT_PLUGIN_PATH); nothing leaks
 * (run under ASan in CI). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_loader.h"
#include "test_util.h"

#define FIXTURES GRAFT_BUILD_DIR "/tests/fixtures/"

/* Loads `file` from the fixtures; expects a refusal whose message contains every needle. */
static void refused(const char *file, graft_plugin_kind want, const char *n1, const char *n2) {
    graft_loaded_plugin *p = (graft_loaded_plugin *)1;
    graft_err err;
    memset(&err, 0, sizeof err);
    graft_status st = graft_plugin_load(file, want, &p, &err);
    CHECK(st != GRAFT_STATUS_OK);
    CHECK(p == NULL);
    CHECK_CONTAINS(err.msg, "refused");
    if (n1) CHECK_CONTAINS(err.msg, n1);
    if (n2) CHECK_CONTAINS(err.msg, n2);
    printf("  %s\n", err.msg);
    graft_plugin_unload(st ? NULL : p);
}

static int seen_softmax = 0, seen_total = 0;
static void visit(void *arg, const char *path, const graft_loaded_plugin *p, const graft_err *why) {
    (void)arg;
    seen_total++;
    if (p && !strcmp(graft_plugin_info(p)->name, "softmax")) seen_softmax = 1;
    CHECK((p != NULL) != (why != NULL));
    CHECK(path != NULL);
}

int main(void) {
    graft_err err;
    memset(&err, 0, sizeof err);

    /* ---- a mixer on a device its caps do not name is refused by name (model, stage0, graft run) ---- */
    {
        graft_mixer cpu_only = {.struct_size = sizeof cpu_only, .name = "cpu_only", .caps = GRAFT_MIXER_CAP_CPU};
        CHECK(graft_mixer_check_device(&cpu_only, GRAFT_DEVICE_CPU, &err) == GRAFT_STATUS_OK);
        CHECK(graft_mixer_check_device(&cpu_only, GRAFT_DEVICE_CUDA, &err) == GRAFT_STATUS_UNSUPPORTED);
        CHECK_CONTAINS(err.msg, "mixer \"cpu_only\" has no CUDA implementation (caps 0x1): run it on the CPU");
        graft_mixer both = cpu_only;
        both.caps |= GRAFT_MIXER_CAP_CUDA;
        CHECK(graft_mixer_check_device(&both, GRAFT_DEVICE_CUDA, &err) == GRAFT_STATUS_OK);
    }

    /* ---- refusals ---- */
    refused(FIXTURES "libgraft_fx_noentry.so", GRAFT_PLUGIN_MIXER, "no exported symbol graft_plugin_init",
            "libgraft_fx_noentry.so");
    refused(FIXTURES "libgraft_fx_badabi.so", GRAFT_PLUGIN_MIXER, "plugin abi_version 2, this graft speaks 1",
            "libgraft_fx_badabi.so: refused");
    refused(FIXTURES "libgraft_fx_badabi_mixer.so", GRAFT_PLUGIN_MIXER, "graft_mixer abi_version 2", NULL);
    {
        char want[128];
        snprintf(want, sizeof want, "graft_mixer struct_size %zu too short, wanted at least %zu",
                 offsetof(graft_mixer, forward), offsetof(graft_mixer, state_bytes_on)); /* later members are optional */
        refused(FIXTURES "libgraft_fx_short.so", GRAFT_PLUGIN_MIXER, want, NULL);
    }
    refused(FIXTURES "libgraft_fx_shortplugin.so", GRAFT_PLUGIN_MIXER, "graft_plugin struct_size", "wanted at least");
    refused(FIXTURES "libgraft_fx_initfail.so", GRAFT_PLUGIN_MIXER, "graft_plugin_init failed (unsupported)",
            "needs a GPU with 1 TB");
    refused(FIXTURES "libgraft_fx_nullfwd.so", GRAFT_PLUGIN_MIXER, "graft_mixer.forward is NULL", NULL);
    refused(FIXTURES "libgraft_fx_loss.so", GRAFT_PLUGIN_MIXER, "it is a loss plugin, expected a mixer", NULL);
    refused(FIXTURES "libgraft_fx_misnamed.so", GRAFT_PLUGIN_MIXER, "named for \"fx_misnamed\"",
            "calls itself \"someone_else\"");
    refused(FIXTURES "libgraft_fx_undefined.so", GRAFT_PLUGIN_MIXER, "dlopen failed",
            "graft_fixture_symbol_nobody_defines");
    refused(FIXTURES "libgraft_does_not_exist.so", GRAFT_PLUGIN_MIXER, "dlopen failed", "does_not_exist");
    refused("softmax", GRAFT_PLUGIN_LOSS, "it is a mixer plugin, expected a loss", "libgraft_softmax.so");

    /* ---- bad names, missing names ---- */
    graft_loaded_plugin *p = NULL;
    CHECK(graft_plugin_load("no such", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "plugin name \"no such\"");
    CHECK(graft_plugin_load("", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK(graft_plugin_load("nosuchmixer", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_IO);
    CHECK_CONTAINS(err.msg, "no libgraft_nosuchmixer.so in the search path");
    CHECK(p == NULL);
    CHECK(graft_plugin_load("x", GRAFT_PLUGIN_MIXER, &p, NULL) != GRAFT_STATUS_OK); /* err may be NULL */

    /* ---- good plugins ---- */
    CHECK(graft_plugin_load(FIXTURES "libgraft_fx_good.so", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_OK);
    if (p) {
        CHECK(graft_plugin_mixer(p) != NULL);
        CHECK(graft_plugin_loss(p) == NULL);
        CHECK(!strcmp(graft_plugin_info(p)->name, "fx_good"));
        CHECK(graft_plugin_host(p) && graft_plugin_host(p)->abi_version == GRAFT_ABI_VERSION);
        graft_plugin_unload(p);
    }
    p = NULL;
    graft_plugin_set_verbose(1);
    CHECK(graft_plugin_load("softmax", GRAFT_PLUGIN_MIXER, &p, &err) == GRAFT_STATUS_OK);
    graft_plugin_set_verbose(0);
    if (p) {
        const graft_mixer *m = graft_plugin_mixer(p);
        CHECK(m && !strcmp(m->name, "softmax"));
        CHECK_CONTAINS(graft_plugin_path(p), "libgraft_softmax.so");
        CHECK(m && (m->caps & GRAFT_MIXER_CAP_CPU));
        /* a layer round trip through the loaded descriptor */
        graft_mixer_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.struct_size = sizeof cfg;
        cfg.n_embd = 32; cfg.n_head = 4; cfg.n_kv_head = 3; cfg.head_dim = 8; cfg.rope_theta = 1e4;
        cfg.norm_eps = 1e-6; cfg.origin = "test.yaml";
        void *layer = NULL;
        CHECK(m->create(graft_plugin_host(p), &cfg, &layer, &err) == GRAFT_STATUS_BAD_INPUT);
        CHECK_CONTAINS(err.msg, "n_head 4 is not a multiple of n_kv_head 3");
        cfg.n_kv_head = 2; cfg.head_dim = 7;
        CHECK(m->create(graft_plugin_host(p), &cfg, &layer, &err) == GRAFT_STATUS_BAD_INPUT);
        CHECK_CONTAINS(err.msg, "head_dim 7 is odd");
        cfg.head_dim = 8;
        graft_kv kv = {"num_heads", "4", "test.yaml:7:3"};
        cfg.kv = &kv; cfg.n_kv = 1;
        CHECK(m->create(graft_plugin_host(p), &cfg, &layer, &err) == GRAFT_STATUS_BAD_INPUT);
        CHECK_CONTAINS(err.msg, "test.yaml:7:3: num_heads: unknown key");
        cfg.n_kv = 0;
        CHECK(m->create(graft_plugin_host(p), &cfg, &layer, &err) == GRAFT_STATUS_OK);
        CHECK(m->n_params(layer) == 6);
        CHECK(m->state_bytes(layer, 10) == (size_t)(2 * 2 * 8 * 10 * 4));
        m->destroy(layer);
        graft_plugin_unload(p);
    }
    graft_plugin_unload(NULL);

    /* ---- scan ---- */
    char sp[2048];
    graft_plugin_search_path(sp, sizeof sp);
    printf("search path: %s\n", sp);
    int64_t n = graft_plugin_scan(visit, NULL);
    CHECK(n >= 1 && n == seen_total);
    CHECK(seen_softmax);
    return test_finish("test_plugin_loader");
}
