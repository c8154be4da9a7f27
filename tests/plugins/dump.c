/* dump.c: see dump.h. Header layout per spec/formats.md: u64 little-endian header length, JSON,
 * space padding to a multiple of 8, then the data in the order of the entries. */
#include "dump.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *name;
    float *data;
    int32_t ndim;
    int64_t shape[8];
    int64_t numel;
} entry;

struct dump {
    char *meta_k[64], *meta_v[64];
    int n_meta;
    entry e[256];
    int n;
};

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

dump *dump_new(void) { return calloc(1, sizeof(dump)); }

int dump_meta(dump *d, const char *key, const char *value) {
    if (!d || d->n_meta >= 64) return -1;
    d->meta_k[d->n_meta] = dupstr(key);
    d->meta_v[d->n_meta] = dupstr(value);
    d->n_meta++;
    return 0;
}

int dump_f32(dump *d, const char *name, const float *data, int32_t ndim, const int64_t *shape) {
    if (!d || d->n >= 256 || ndim > 8) return -1;
    entry *e = &d->e[d->n];
    e->numel = 1;
    for (int32_t i = 0; i < ndim; i++) e->numel *= (e->shape[i] = shape[i]);
    e->ndim = ndim;
    e->name = dupstr(name);
    e->data = malloc((size_t)e->numel * sizeof(float) + 1);
    if (!e->name || !e->data) return -1;
    memcpy(e->data, data, (size_t)e->numel * sizeof(float));
    d->n++;
    return 0;
}

/* Appends s to the growing buffer as a JSON string. */
static void put_json_str(char **buf, size_t *len, size_t *cap, const char *s) {
    for (int pass = 0; pass < 1; pass++) {
        size_t need = *len + 2 * strlen(s) + 8;
        if (need > *cap) {
            *cap = need * 2;
            *buf = realloc(*buf, *cap);
        }
        char *o = *buf + *len;
        *o++ = '"';
        for (const char *p = s; *p; p++) {
            if (*p == '"' || *p == '\\') *o++ = '\\';
            *o++ = (unsigned char)*p < 0x20 ? ' ' : *p;
        }
        *o++ = '"';
        *len = (size_t)(o - *buf);
    }
}

static void put_raw(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
}

static void dump_free(dump *d) {
    for (int i = 0; i < d->n_meta; i++) {
        free(d->meta_k[i]);
        free(d->meta_v[i]);
    }
    for (int i = 0; i < d->n; i++) {
        free(d->e[i].name);
        free(d->e[i].data);
    }
    free(d);
}

int dump_write(dump *d, const char *path) {
    if (!d) return -1;
    size_t cap = 4096, len = 0;
    char *h = malloc(cap);
    put_raw(&h, &len, &cap, "{\"__metadata__\":{");
    for (int i = 0; i < d->n_meta; i++) {
        if (i) put_raw(&h, &len, &cap, ",");
        put_json_str(&h, &len, &cap, d->meta_k[i]);
        put_raw(&h, &len, &cap, ":");
        put_json_str(&h, &len, &cap, d->meta_v[i]);
    }
    put_raw(&h, &len, &cap, "}");
    uint64_t off = 0;
    for (int i = 0; i < d->n; i++) {
        entry *e = &d->e[i];
        char tmp[512];
        put_raw(&h, &len, &cap, ",");
        put_json_str(&h, &len, &cap, e->name);
        put_raw(&h, &len, &cap, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int32_t k = 0; k < e->ndim; k++) {
            snprintf(tmp, sizeof tmp, "%s%lld", k ? "," : "", (long long)e->shape[k]);
            put_raw(&h, &len, &cap, tmp);
        }
        uint64_t bytes = (uint64_t)e->numel * 4;
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + bytes));
        put_raw(&h, &len, &cap, tmp);
        off += bytes;
    }
    put_raw(&h, &len, &cap, "}");
    while ((8 + len) % 8) put_raw(&h, &len, &cap, " ");

    char tmp_path[4096];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
    FILE *f = fopen(tmp_path, "wb");
    int rc = -1;
    if (f) {
        unsigned char n8[8];
        for (int i = 0; i < 8; i++) n8[i] = (unsigned char)((uint64_t)len >> (8 * i));
        int ok = fwrite(n8, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
        for (int i = 0; ok && i < d->n; i++) /* little-endian host assumed (x86-64, aarch64) */
            ok = fwrite(d->e[i].data, 4, (size_t)d->e[i].numel, f) == (size_t)d->e[i].numel;
        ok = (fclose(f) == 0) && ok;
        if (ok && rename(tmp_path, path) == 0) rc = 0;
    }
    free(h);
    dump_free(d);
    return rc;
}
