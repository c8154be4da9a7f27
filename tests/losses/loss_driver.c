/* tests/losses/loss_driver.c: runs one loss .so on inputs read from a safetensors file and writes
 * what it returned, for tests/losses/check_losses.py to compare with the float64 PyTorch
 * references (tests/reference/losses_ref.py).
 *
 *   loss_driver <loss> <in.safetensors> <out.safetensors> [--grad-scale X] [key=value ...]
 *
 * Inputs (absent ones are passed as NULL): student, target, input (F32, (N, W)), labels (I32, (N)),
 * topk_ids (I32, (N, k)), topk_logp (F32, (N, k)), topk_mass (F32, (N)).
 * Outputs: loss_sum, count (F64, (1)), parts (F64, (n_parts)) when the loss has parts, dstudent
 * (F32, (N, W)), and row_loss, row_count (F64, (N)): the loss called again on each row alone and
 * without a gradient, so the check sees every row's value and the dstudent == NULL path.
 * dstudent is prefilled with NaN (every element must be written) and followed by guard floats.
 * A refusal prints "loss_driver: <message>" on stderr and exits 2; other failures exit 1.
 *
 * Not here: a general safetensors reader (this one reads F32/I32/F64 test files; the core's lives
 * in core/src/safetensors.c).
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graft/plugin.h"
#include "host.h"
#include "plugin_loader.h"

#define MAX_T 16
#define GUARD 64

typedef struct tens {
    char name[64];
    char dtype[8];
    int ndim;
    int64_t shape[4];
    void *data;
} tens;

static tens tensors[MAX_T];
static int n_tensors;

static void die(const char *fmt, const char *a) {
    fprintf(stderr, "loss_driver: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    exit(1);
}

static void read_st(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *raw = malloc((size_t)size);
    if (!raw || fread(raw, 1, (size_t)size, f) != (size_t)size) die("%s: cannot read", path);
    fclose(f);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    if (size < 8 || hlen > (uint64_t)size - 8) die("%s: header length past the end", path);
    json_error_t je;
    json_t *h = json_loadb((const char *)raw + 8, (size_t)hlen, 0, &je);
    if (!h || !json_is_object(h)) die("%s: header is not a JSON object", path);
    const unsigned char *base = raw + 8 + hlen;
    uint64_t avail = (uint64_t)size - 8 - hlen;
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        if (n_tensors == MAX_T) die("%s: too many tensors", path);
        tens *t = &tensors[n_tensors++];
        snprintf(t->name, sizeof t->name, "%s", key);
        snprintf(t->dtype, sizeof t->dtype, "%s", json_string_value(json_object_get(v, "dtype")));
        json_t *shape = json_object_get(v, "shape"), *offs = json_object_get(v, "data_offsets");
        t->ndim = (int)json_array_size(shape);
        if (t->ndim > 4) die("%s: tensor rank above 4", key);
        int64_t numel = 1;
        for (int i = 0; i < t->ndim; i++) numel *= (t->shape[i] = json_integer_value(json_array_get(shape, (size_t)i)));
        uint64_t b = (uint64_t)json_integer_value(json_array_get(offs, 0));
        uint64_t e = (uint64_t)json_integer_value(json_array_get(offs, 1));
        size_t es = !strcmp(t->dtype, "F64") ? 8 : 4;
        if (e < b || e > avail || e - b != (uint64_t)numel * es) die("%s: bad data_offsets", key);
        t->data = malloc(e - b + 1);
        memcpy(t->data, base + b, e - b);
    }
    json_decref(h);
    free(raw);
}

static tens *find(const char *name, const char *dtype) {
    for (int i = 0; i < n_tensors; i++)
        if (!strcmp(tensors[i].name, name)) {
            if (strcmp(tensors[i].dtype, dtype)) die("%s: wrong dtype", name);
            return &tensors[i];
        }
    return NULL;
}

typedef struct out_t {
    const char *name, *dtype;
    int ndim;
    int64_t shape[2];
    const void *data;
    size_t bytes;
} out_t;

static void write_st(const char *path, const out_t *o, int n) {
    char header[4096];
    size_t len = (size_t)snprintf(header, sizeof header, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(header + len, sizeof header - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", o[i].name,
                                o[i].dtype);
        for (int d = 0; d < o[i].ndim; d++)
            len += (size_t)snprintf(header + len, sizeof header - len, "%s%lld", d ? "," : "", (long long)o[i].shape[d]);
        len += (size_t)snprintf(header + len, sizeof header - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + o[i].bytes);
        off += o[i].bytes;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    while ((8 + len) % 8) header[len++] = ' ';
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) die("%s: cannot write", tmp);
    uint64_t hl = len;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(hl >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(header, 1, len, f);
    for (int i = 0; i < n; i++) fwrite(o[i].data, 1, o[i].bytes, f);
    if (fclose(f) || rename(tmp, path)) die("%s: cannot write", path);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: loss_driver <loss> <in.safetensors> <out.safetensors> [--grad-scale X] [key=value ...]\n");
        return 1;
    }
    float grad_scale = 1.0f;
    graft_kv kv[16];
    char *kvbuf[16];
    int n_kv = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--grad-scale") && i + 1 < argc) {
            grad_scale = strtof(argv[++i], NULL);
            continue;
        }
        char *eq = strchr(argv[i], '=');
        if (!eq || n_kv == 16) die("bad argument %s", argv[i]);
        kvbuf[n_kv] = strdup(argv[i]);
        kvbuf[n_kv][eq - argv[i]] = 0;
        kv[n_kv] = (graft_kv){kvbuf[n_kv], kvbuf[n_kv] + (eq - argv[i]) + 1, "driver args"};
        n_kv++;
    }
    read_st(argv[2]);
    tens *student = find("student", "F32"), *target = find("target", "F32"), *input = find("input", "F32");
    tens *labels = find("labels", "I32"), *ids = find("topk_ids", "I32"), *logp = find("topk_logp", "F32");
    tens *mass = find("topk_mass", "F32");
    if (!student || student->ndim != 2) die("%s: needs a 2-d F32 tensor \"student\"", argv[2]);
    const int64_t N = student->shape[0], W = student->shape[1];
    const int64_t k = ids ? ids->shape[1] : 0;

    graft_err err = {0};
    graft_loaded_plugin *p = NULL;
    if (graft_plugin_load(argv[1], GRAFT_PLUGIN_LOSS, &p, &err)) {
        fprintf(stderr, "loss_driver: %s\n", err.msg);
        return 2;
    }
    const graft_loss *loss = graft_plugin_loss(p);
    void *obj = NULL;
    if (loss->create(graft_plugin_host(p), kv, n_kv, "driver args", &obj, &err)) {
        fprintf(stderr, "loss_driver: %s\n", err.msg);
        graft_plugin_unload(p);
        for (int i = 0; i < n_tensors; i++) free(tensors[i].data);
        for (int i = 0; i < n_kv; i++) free(kvbuf[i]);
        return 2;
    }
    float *dstudent = malloc(((size_t)(N * W) + GUARD) * sizeof(float));
    for (int64_t i = 0; i < N * W + GUARD; i++) dstudent[i] = NAN;
    for (int64_t i = 0; i < GUARD; i++) dstudent[N * W + i] = 12345.0f;
    double loss_sum = NAN, count = NAN, parts[8] = {0};
    graft_loss_io io = {
        .struct_size = sizeof io, .loss = obj, .device = GRAFT_DEVICE_CPU, .N = N, .W = W,
        .student = student->data, .target = target ? target->data : NULL, .input = input ? input->data : NULL,
        .labels = labels ? labels->data : NULL, .k = k, .topk_ids = ids ? ids->data : NULL,
        .topk_logp = logp ? logp->data : NULL, .topk_mass = mass ? mass->data : NULL,
        .grad_scale = grad_scale, .dstudent = dstudent, .loss_sum = &loss_sum, .count = &count, .parts = parts};
    int rc = 0;
    if (loss->compute(&io, &err)) {
        fprintf(stderr, "loss_driver: %s\n", err.msg);
        rc = 2;
        goto done;
    }
    for (int64_t i = 0; i < GUARD; i++)
        if (dstudent[N * W + i] != 12345.0f) {
            fprintf(stderr, "loss_driver: dstudent guard float %lld overwritten\n", (long long)i);
            rc = 1;
        }
    double *row_loss = malloc((size_t)(N + 1) * sizeof(double)), *row_count = malloc((size_t)(N + 1) * sizeof(double));
    for (int64_t r = 0; r < N; r++) {
        graft_loss_io one = io;
        one.N = 1;
        one.student = student->data ? (const float *)student->data + r * W : NULL;
        if (target) one.target = (const float *)target->data + r * W;
        if (input) one.input = (const float *)input->data + r * W;
        if (labels) one.labels = (const int32_t *)labels->data + r;
        if (ids) {
            one.topk_ids = (const int32_t *)ids->data + r * k;
            one.topk_logp = (const float *)logp->data + r * k;
            one.topk_mass = (const float *)mass->data + r;
        }
        one.dstudent = NULL;
        one.loss_sum = &row_loss[r];
        one.count = &row_count[r];
        one.parts = NULL;
        if (loss->compute(&one, &err)) {
            fprintf(stderr, "loss_driver: row %lld alone: %s\n", (long long)r, err.msg);
            rc = 1;
        }
    }
    out_t o[6] = {
        {"loss_sum", "F64", 1, {1, 0}, &loss_sum, 8},
        {"count", "F64", 1, {1, 0}, &count, 8},
        {"dstudent", "F32", 2, {N, W}, dstudent, (size_t)(N * W) * 4},
        {"row_loss", "F64", 1, {N, 0}, row_loss, (size_t)N * 8},
        {"row_count", "F64", 1, {N, 0}, row_count, (size_t)N * 8},
        {"parts", "F64", 1, {loss->n_parts, 0}, parts, (size_t)loss->n_parts * 8},
    };
    write_st(argv[3], o, loss->n_parts > 0 ? 6 : 5);
    free(row_loss);
    free(row_count);
done:
    loss->destroy(obj);
    graft_plugin_unload(p);
    free(dstudent);
    for (int i = 0; i < n_tensors; i++) free(tensors[i].data);
    for (int i = 0; i < n_kv; i++) free(kvbuf[i]);
    return rc;
}
