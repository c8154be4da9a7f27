/* mixer_apply.c: runs one mixer plugin's CPU forward and backward on GIVEN parameters and inputs,
 * so that an independent implementation (flash-linear-attention, tests/reference/fla_parity.py)
 * can be compared with graft's plugin on the same weights.
 *
 *   mixer_apply --plugin NAME --case 'key=value ...' --in IN.safetensors --out OUT.safetensors
 *
 * Case keys as graft_conformance's (n_embd n_head n_kv_head head_dim layer_index n_layer
 * rope_theta norm_eps carry_role=none|producer|consumer); any other key is a mixer setting.
 * IN: every parameter under its declared name, "x" (B, T, C), "dy" (B, T, C), and for a consumer
 * "carry" (B, T, W). OUT: "y", "dx", "grad.<name>", and "carry_out" (producer) / "dcarry"
 * (consumer). Exit status 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graft/plugin.h"
#include "host.h"
#include "plugin_loader.h"
#include "safetensors.h"

#define MAX_KV 64

static int fail(const char *what, const graft_err *e) {
    fprintf(stderr, "mixer_apply: %s: %s\n", what, e ? e->msg : "");
    return 1;
}

static float *read_named(graft_st_file_t *f, const char *name, int64_t want, graft_err *err) {
    const graft_st_tensor *t = graft_st_find(f, name);
    if (!t) {
        graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "\"%s\": missing from the input file", name);
        return NULL;
    }
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    if (n != want) {
        graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "\"%s\": %lld elements, expected %lld", name, (long long)n, (long long)want);
        return NULL;
    }
    float *p = malloc((size_t)n * sizeof(float) + 4);
    if (!p || graft_st_read_f32(f, t, p, n, err)) {
        free(p);
        return NULL;
    }
    return p;
}

int main(int argc, char **argv) {
    const char *plugin = NULL, *case_text = "", *in = NULL, *out = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--plugin")) plugin = argv[i + 1];
        else if (!strcmp(argv[i], "--case")) case_text = argv[i + 1];
        else if (!strcmp(argv[i], "--in")) in = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
    }
    if (!plugin || !in || !out) {
        fprintf(stderr, "usage: mixer_apply --plugin NAME --case '...' --in IN.safetensors --out OUT.safetensors\n");
        return 2;
    }
    graft_mixer_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    cfg.n_layer = 1;
    cfg.rope_theta = 1e6;
    cfg.norm_eps = 1e-6;
    graft_kv kv[MAX_KV];
    int n_kv = 0;
    char *text = strdup(case_text);
    for (char *tok = strtok(text, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        if (!eq) continue;
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        if (!strcmp(k, "n_embd")) cfg.n_embd = atoll(v);
        else if (!strcmp(k, "n_head")) cfg.n_head = atoll(v);
        else if (!strcmp(k, "n_kv_head")) cfg.n_kv_head = atoll(v);
        else if (!strcmp(k, "head_dim")) cfg.head_dim = atoll(v);
        else if (!strcmp(k, "layer_index")) cfg.layer_index = atoll(v);
        else if (!strcmp(k, "n_layer")) cfg.n_layer = atoll(v);
        else if (!strcmp(k, "rope_theta")) cfg.rope_theta = atof(v);
        else if (!strcmp(k, "norm_eps")) cfg.norm_eps = atof(v);
        else if (!strcmp(k, "carry_role"))
            cfg.carry_role = !strcmp(v, "producer") ? GRAFT_CARRY_PRODUCER : !strcmp(v, "consumer") ? GRAFT_CARRY_CONSUMER : GRAFT_CARRY_NONE;
        else if (n_kv < MAX_KV) kv[n_kv++] = (graft_kv){k, v, "--case"};
    }
    cfg.kv = kv;
    cfg.n_kv = n_kv;
    graft_err err = {0};
    graft_loaded_plugin *lp = NULL;
    if (graft_plugin_load(plugin, GRAFT_PLUGIN_MIXER, &lp, &err)) return fail("load", &err);
    const graft_mixer *mx = graft_plugin_mixer(lp);
    void *layer = NULL;
    if (mx->create(graft_host_get(), &cfg, &layer, &err)) return fail("create", &err);
    graft_st_file_t *f = NULL;
    if (graft_st_open(in, &f, &err)) return fail("input", &err);
    const graft_st_tensor *tx = graft_st_find(f, "x");
    if (!tx || tx->ndim != 3) return fail("input \"x\" (B, T, C) missing", NULL);
    int64_t B = tx->shape[0], T = tx->shape[1], C = cfg.n_embd, N = B * T * C;
    int64_t np = mx->n_params(layer), W = mx->carry_width ? mx->carry_width(layer) : 0;
    graft_tensor *P = calloc((size_t)np + 1, sizeof *P), *G = calloc((size_t)np + 1, sizeof *G);
    graft_param_spec *S = calloc((size_t)np + 1, sizeof *S);
    for (int64_t i = 0; i < np; i++) {
        S[i].struct_size = sizeof S[i];
        if (mx->param(layer, i, &S[i], &err)) return fail("param", &err);
        int64_t n = 1;
        for (int d = 0; d < S[i].ndim; d++) n *= S[i].shape[d];
        float *p = read_named(f, S[i].name, n, &err);
        if (!p) return fail("input", &err);
        P[i] = graft_tensor_make(p, GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, S[i].ndim, S[i].shape);
        G[i] = graft_tensor_make(calloc((size_t)n + 1, sizeof(float)), GRAFT_DTYPE_F32, GRAFT_DEVICE_CPU, S[i].ndim, S[i].shape);
    }
    float *x = read_named(f, "x", N, &err), *dy = read_named(f, "dy", N, &err);
    if (!x || !dy) return fail("input", &err);
    float *carry = NULL, *dcarry = W ? calloc((size_t)(B * T * W) + 1, sizeof(float)) : NULL;
    if (W && cfg.carry_role == GRAFT_CARRY_CONSUMER) {
        if (!(carry = read_named(f, "carry", B * T * W, &err))) return fail("input", &err);
    } else if (W) {
        carry = calloc((size_t)(B * T * W) + 1, sizeof(float));
    }
    size_t saved_b = 0, scratch_b = 0;
    if (mx->workspace(layer, GRAFT_DEVICE_CPU, B, T, &saved_b, &scratch_b, &err)) return fail("workspace", &err);
    void *saved = calloc(saved_b + 64, 1), *scratch = calloc(scratch_b + 64, 1);
    float *y = calloc((size_t)N, sizeof(float)), *dx = calloc((size_t)N, sizeof(float));
    graft_mixer_io io;
    memset(&io, 0, sizeof io);
    io.struct_size = sizeof io;
    io.layer = layer;
    io.device = GRAFT_DEVICE_CPU;
    io.B = B;
    io.T = T;
    io.params = P;
    io.x = x;
    io.y = y;
    io.saved = saved;
    io.scratch = scratch;
    io.carry = carry;
    io.dcarry = dcarry;
    if (mx->forward(&io, &err)) return fail("forward", &err);
    io.grads = G;
    io.dy = dy;
    io.dx = dx;
    if (mx->backward(&io, &err)) return fail("backward", &err);
    graft_st_entry *e = calloc((size_t)np + 5, sizeof *e);
    char **names = calloc((size_t)np + 1, sizeof *names);
    int64_t k = 0;
    e[k++] = (graft_st_entry){.name = "y", .dtype = GRAFT_DTYPE_F32, .ndim = 3, .shape = {B, T, C}, .f32 = y};
    e[k++] = (graft_st_entry){.name = "dx", .dtype = GRAFT_DTYPE_F32, .ndim = 3, .shape = {B, T, C}, .f32 = dx};
    if (W && cfg.carry_role == GRAFT_CARRY_PRODUCER)
        e[k++] = (graft_st_entry){.name = "carry_out", .dtype = GRAFT_DTYPE_F32, .ndim = 3, .shape = {B, T, W}, .f32 = carry};
    if (W && cfg.carry_role == GRAFT_CARRY_CONSUMER)
        e[k++] = (graft_st_entry){.name = "dcarry", .dtype = GRAFT_DTYPE_F32, .ndim = 3, .shape = {B, T, W}, .f32 = dcarry};
    for (int64_t i = 0; i < np; i++) {
        size_t len = strlen(S[i].name) + 8;
        names[i] = malloc(len);
        snprintf(names[i], len, "grad.%s", S[i].name);
        e[k] = (graft_st_entry){.name = names[i], .dtype = GRAFT_DTYPE_F32, .ndim = S[i].ndim, .f32 = G[i].data};
        for (int d = 0; d < S[i].ndim; d++) e[k].shape[d] = S[i].shape[d];
        k++;
    }
    if (graft_st_write(out, e, k, NULL, &err)) return fail("output", &err);
    mx->destroy(layer);
    graft_st_close(f);
    graft_plugin_unload(lp);
    return 0; /* the process ends here: the remaining buffers go with it */
}
