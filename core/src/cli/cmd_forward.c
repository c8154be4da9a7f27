/* cli/cmd_forward.c: `graft forward`: one forward (and optionally backward) of a model on given
 * token ids, written to a safetensors file. It exists so that anyone can check graft's numbers
 * against an independent implementation (tests/model/check_qwen3.py does, against float64 torch).
 *
 *   graft forward --model DIR --inputs IN.safetensors --out OUT.safetensors [--grads all|PAT,...]
 *                 [--device cpu|cuda|cuda:N]
 *
 * DIR may be a hybrid directory (config.json with layer_types). --device cuda runs the forward on
 * the GPU (bf16 weights and activations, logits in fp32);
 * --grads is CPU-only so far and is refused there with a message.
 *
 * IN holds "ids" (I32 or I64, (B, T)) and, for --grads, "dlogits" (F32, (B, T, V)): the gradient
 * of the scalar being differentiated with respect to the logits. OUT gets "logits" (B, T, V) and
 * "grad.<parameter name>" for every parameter whose name contains one of the patterns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "hybrid.h"
#include "model.h"
#include "safetensors.h"

static int usage(FILE *o) {
    fprintf(o, "usage: graft forward --model DIR --inputs IN.safetensors --out OUT.safetensors [--grads all|PAT,...]\n"
               "                     [--device cpu|cuda|cuda:N]\n"
               "  IN: \"ids\" (I32/I64, (B, T)); with --grads also \"dlogits\" (F32, (B, T, V)).\n"
               "  OUT: \"logits\" and \"grad.<name>\" for parameters matching the patterns.\n");
    return o == stdout ? 0 : 2;
}

static int matches(const char *name, const char *pats) {
    if (!strcmp(pats, "all")) return 1;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", pats);
    for (char *s = strtok(buf, ","); s; s = strtok(NULL, ","))
        if (strstr(name, s)) return 1;
    return 0;
}

int graft_cmd_forward(int argc, char **argv) {
    const char *model_dir = NULL, *in = NULL, *out = NULL, *grads = NULL, *device = "cpu";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout);
        if (i + 1 >= argc) { fprintf(stderr, "graft forward: %s needs a value\n", argv[i]); return usage(stderr); }
        if (!strcmp(argv[i], "--model")) model_dir = argv[++i];
        else if (!strcmp(argv[i], "--inputs")) in = argv[++i];
        else if (!strcmp(argv[i], "--out")) out = argv[++i];
        else if (!strcmp(argv[i], "--grads")) grads = argv[++i];
        else if (!strcmp(argv[i], "--device")) device = argv[++i];
        else { fprintf(stderr, "graft forward: unknown option %s\n", argv[i]); return usage(stderr); }
    }
    if (!model_dir || !in || !out) return usage(stderr);
    graft_err err = {0};
    graft_model_t *m = NULL;
    graft_st_file_t *f = NULL;
    int32_t *ids = NULL;
    float *logits = NULL, *dlogits = NULL;
    graft_st_entry *ents = NULL;
    char **names = NULL;
    int64_t n_ents = 0;
    int rc = 1;
    const graft_backend *be = NULL;
    if (graft_backend_open(device, "--device", &be, &err)) goto fail;
    if (grads && be->device != GRAFT_DEVICE_CPU) {
        graft_err_set(&err, GRAFT_STATUS_UNSUPPORTED, "--grads with --device %s: the gradients here start from a host "
                      "(B, T, V) dlogits tensor, which the CUDA backward does not take (it trains through the fused "
                      "lm_head loss, graft run); use --device cpu", device);
        goto fail;
    }
    if (graft_hybrid_load(model_dir, &m, &err)) goto fail; /* a hybrid directory or plain Qwen3 */
    if (graft_model_set_backend(m, be, &err)) goto fail;
    const graft_qwen3_config *cfg = graft_model_config(m);
    if (graft_st_open(in, &f, &err)) goto fail;
    const graft_st_tensor *t_ids = graft_st_find(f, "ids");
    if (!t_ids || t_ids->ndim != 2 || (strcmp(t_ids->dtype_name, "I32") && strcmp(t_ids->dtype_name, "I64"))) {
        graft_err_set(&err, GRAFT_STATUS_BAD_INPUT, "%s: \"ids\": missing or not an I32/I64 tensor of shape (B, T)", in);
        goto fail;
    }
    int64_t B = t_ids->shape[0], T = t_ids->shape[1], V = cfg->vocab_size;
    ids = malloc((size_t)(B * T) * sizeof *ids);
    logits = malloc((size_t)(B * T * V) * sizeof *logits);
    if (!ids || !logits) { graft_err_set(&err, GRAFT_STATUS_NO_MEMORY, "out of memory"); goto fail; }
    const unsigned char *raw = graft_st_data(f, t_ids);
    for (int64_t i = 0; i < B * T; i++) {
        if (!strcmp(t_ids->dtype_name, "I32")) { int32_t v; memcpy(&v, raw + 4 * i, 4); ids[i] = v; }
        else {
            int64_t v;
            memcpy(&v, raw + 8 * i, 8);
            if (v < 0 || v > INT32_MAX) {
                graft_err_set(&err, GRAFT_STATUS_BAD_INPUT, "%s: \"ids\"[%lld] = %lld, expected 0..%lld", in,
                              (long long)i, (long long)v, (long long)(V - 1));
                goto fail;
            }
            ids[i] = (int32_t)v;
        }
    }
    if (graft_model_forward(m, ids, B, T, logits, NULL, grads != NULL, &err)) goto fail;
    if (grads) {
        const graft_st_tensor *t_d = graft_st_find(f, "dlogits");
        if (!t_d || t_d->ndim != 3 || t_d->shape[0] != B || t_d->shape[1] != T || t_d->shape[2] != V) {
            graft_err_set(&err, GRAFT_STATUS_BAD_INPUT, "%s: \"dlogits\": missing or not of shape (%lld, %lld, %lld)",
                          in, (long long)B, (long long)T, (long long)V);
            goto fail;
        }
        dlogits = malloc((size_t)(B * T * V) * sizeof *dlogits);
        if (!dlogits) { graft_err_set(&err, GRAFT_STATUS_NO_MEMORY, "out of memory"); goto fail; }
        if (graft_st_read_f32(f, t_d, dlogits, B * T * V, &err)) goto fail;
        graft_model_zero_grad(m);
        if (graft_model_backward(m, dlogits, &err)) goto fail;
    }
    int64_t np = graft_model_n_params(m);
    ents = calloc((size_t)np + 1, sizeof *ents);
    names = calloc((size_t)np + 1, sizeof *names);
    if (!ents || !names) { graft_err_set(&err, GRAFT_STATUS_NO_MEMORY, "out of memory"); goto fail; }
    ents[0] = (graft_st_entry){.name = "logits", .dtype = GRAFT_DTYPE_F32, .ndim = 3, .shape = {B, T, V}, .f32 = logits};
    n_ents = 1;
    for (int64_t i = 0; grads && i < np; i++) {
        graft_model_param *p = graft_model_param_at(m, i);
        if (!matches(p->name, grads)) continue;
        size_t len = strlen(p->name) + 6;
        names[n_ents] = malloc(len);
        if (!names[n_ents]) { graft_err_set(&err, GRAFT_STATUS_NO_MEMORY, "out of memory"); goto fail; }
        snprintf(names[n_ents], len, "grad.%s", p->name);
        graft_st_entry *e = &ents[n_ents++];
        e->name = names[n_ents - 1];
        e->dtype = GRAFT_DTYPE_F32;
        e->ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) e->shape[d] = p->shape[d];
        e->f32 = p->grad;
    }
    if (graft_st_write(out, ents, n_ents, NULL, &err)) goto fail;
    rc = 0;
fail:
    if (rc) fprintf(stderr, "graft forward: %s\n", err.msg);
    for (int64_t i = 0; names && i < n_ents; i++) free(names[i]);
    free(names);
    free(ents);
    free(ids);
    free(logits);
    free(dlogits);
    graft_st_close(f);
    graft_model_free(m);
    return rc;
}
