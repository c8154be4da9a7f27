/* teacher_cache.c: the Stage 1 teacher top-k cache file (teacher_cache.h). */
#include "teacher_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

#define HEADER_BYTES 64
static const char MAGIC[8] = {'G', 'R', 'A', 'F', 'T', 'T', 'K', '1'};

struct graft_tkcache {
    FILE *f;
    char path[4096], tmp[4200];
    int writing;
    int64_t k, vocab, n_rows;
    uint64_t fingerprint;
    size_t row_bytes;
    unsigned char *buf;       /* one row */
};

static size_t row_bytes(int64_t k) { return 4 + 8 * (size_t)k + 4; }

static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static graft_tkcache_t *alloc_cache(const char *path, int64_t k, int64_t vocab, uint64_t fp) {
    graft_tkcache_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->tmp, sizeof c->tmp, "%s.tmp", path);
    c->k = k;
    c->vocab = vocab;
    c->fingerprint = fp;
    c->row_bytes = row_bytes(k);
    c->buf = malloc(c->row_bytes);
    if (!c->buf) {
        free(c);
        return NULL;
    }
    return c;
}

static void free_cache(graft_tkcache_t *c) {
    if (!c) return;
    if (c->f) fclose(c->f);
    free(c->buf);
    free(c);
}

graft_status graft_tkcache_create(const char *path, int64_t k, int64_t vocab, uint64_t fingerprint,
                                  graft_tkcache_t **out, graft_err *err) {
    *out = NULL;
    if (k < 1 || k > vocab)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: k %lld, expected 1..%lld", path, (long long)k, (long long)vocab);
    graft_tkcache_t *c = alloc_cache(path, k, vocab, fingerprint);
    if (!c) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    c->writing = 1;
    c->f = fopen(c->tmp, "wb");
    unsigned char zero[HEADER_BYTES] = {0};
    if (!c->f || fwrite(zero, 1, HEADER_BYTES, c->f) != HEADER_BYTES) {
        graft_status st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot create: %s", c->tmp, strerror(errno));
        graft_tkcache_abort(c);
        return st;
    }
    *out = c;
    return GRAFT_STATUS_OK;
}

graft_status graft_tkcache_append(graft_tkcache_t *c, const int32_t *ids, const int32_t *tk_ids, const float *logp,
                                  const float *mass, int64_t N, graft_err *err) {
    for (int64_t r = 0; r < N; r++) {
        unsigned char *p = c->buf;
        memcpy(p, &ids[r], 4);
        memcpy(p + 4, tk_ids + r * c->k, 4 * (size_t)c->k);
        memcpy(p + 4 + 4 * c->k, logp + r * c->k, 4 * (size_t)c->k);
        memcpy(p + 4 + 8 * c->k, &mass[r], 4);
        if (fwrite(p, 1, c->row_bytes, c->f) != c->row_bytes)
            return graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", c->tmp, strerror(errno));
        c->n_rows++;
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_tkcache_finish(graft_tkcache_t *c, graft_err *err) {
    unsigned char h[HEADER_BYTES] = {0};
    memcpy(h, MAGIC, 8);
    put_u32(h + 8, 1);
    put_u32(h + 12, (uint32_t)c->k);
    put_u64(h + 16, (uint64_t)c->vocab);
    put_u64(h + 24, (uint64_t)c->n_rows);
    put_u64(h + 32, c->fingerprint);
    graft_status st = GRAFT_STATUS_OK;
    if (fseek(c->f, 0, SEEK_SET) || fwrite(h, 1, HEADER_BYTES, c->f) != HEADER_BYTES || fflush(c->f) ||
        fsync(fileno(c->f)))
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", c->tmp, strerror(errno));
    if (fclose(c->f) && !st) st = graft_err_set(err, GRAFT_STATUS_IO, "%s: close failed: %s", c->tmp, strerror(errno));
    c->f = NULL;
    if (!st && rename(c->tmp, c->path))
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot rename to %s: %s", c->tmp, c->path, strerror(errno));
    if (!st) st = graft_fs_fsync_parent(c->path, err);
    if (st) remove(c->tmp);
    free_cache(c);
    return st;
}

void graft_tkcache_abort(graft_tkcache_t *c) {
    if (!c) return;
    if (c->f) fclose(c->f);
    c->f = NULL;
    if (c->writing) remove(c->tmp);
    free_cache(c);
}

graft_status graft_tkcache_open(const char *path, int64_t k, int64_t vocab, uint64_t fingerprint,
                                graft_tkcache_t **out, graft_err *err) {
    *out = NULL;
    graft_tkcache_t *c = alloc_cache(path, k, vocab, fingerprint);
    if (!c) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    graft_status st = GRAFT_STATUS_OK;
    unsigned char h[HEADER_BYTES];
    c->f = fopen(path, "rb");
    if (!c->f) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (fread(h, 1, HEADER_BYTES, c->f) != HEADER_BYTES) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s @ byte 0: truncated header, expected %d bytes", path, HEADER_BYTES);
        goto fail;
    }
    if (memcmp(h, MAGIC, 8) || get_u32(h + 8) != 1) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s @ byte 0: not a graft teacher cache (magic \"GRAFTTK1\", version 1)", path);
        goto fail;
    }
    if ((int64_t)get_u32(h + 12) != k || (int64_t)get_u64(h + 16) != vocab) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s @ byte 12: k %u and vocabulary %llu, expected k %lld and %lld",
                           path, get_u32(h + 12), (unsigned long long)get_u64(h + 16), (long long)k, (long long)vocab);
        goto fail;
    }
    if (get_u64(h + 32) != fingerprint) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                           "%s @ byte 32: made for another data seed or phase schedule (fingerprint %016llx, expected %016llx); "
                           "delete it to recompute", path, (unsigned long long)get_u64(h + 32), (unsigned long long)fingerprint);
        goto fail;
    }
    c->n_rows = (int64_t)get_u64(h + 24);
    if (fseeko(c->f, 0, SEEK_END) || ftello(c->f) != HEADER_BYTES + (off_t)c->n_rows * (off_t)c->row_bytes) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %lld bytes, expected %lld for %lld rows of k = %lld", path,
                           (long long)ftello(c->f), (long long)(HEADER_BYTES + (off_t)c->n_rows * (off_t)c->row_bytes),
                           (long long)c->n_rows, (long long)k);
        goto fail;
    }
    *out = c;
    return GRAFT_STATUS_OK;
fail:
    free_cache(c);
    return st;
}

int64_t graft_tkcache_rows(const graft_tkcache_t *c) { return c->n_rows; }

graft_status graft_tkcache_read(graft_tkcache_t *c, int64_t row0, int64_t N, const int32_t *ids, int32_t *tk_ids,
                                float *logp, float *mass, graft_err *err) {
    if (row0 < 0 || row0 + N > c->n_rows)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: rows %lld..%lld asked, the cache has %lld (made for a shorter schedule?)",
                             c->path, (long long)row0, (long long)(row0 + N - 1), (long long)c->n_rows);
    if (fseeko(c->f, HEADER_BYTES + (off_t)row0 * (off_t)c->row_bytes, SEEK_SET))
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: seek failed: %s", c->path, strerror(errno));
    for (int64_t r = 0; r < N; r++) {
        unsigned char *p = c->buf;
        if (fread(p, 1, c->row_bytes, c->f) != c->row_bytes)
            return graft_err_set(err, GRAFT_STATUS_IO, "%s: read failed at row %lld", c->path, (long long)(row0 + r));
        int32_t id;
        memcpy(&id, p, 4);
        if (id != ids[r])
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s: row %lld holds token %d, the data gives %d: the cache was made for other data; "
                                 "delete it to recompute", c->path, (long long)(row0 + r), id, ids[r]);
        memcpy(tk_ids + r * c->k, p + 4, 4 * (size_t)c->k);
        memcpy(logp + r * c->k, p + 4 + 4 * c->k, 4 * (size_t)c->k);
        memcpy(&mass[r], p + 4 + 8 * c->k, 4);
        for (int64_t j = 0; j < c->k; j++)
            if (tk_ids[r * c->k + j] < 0 || tk_ids[r * c->k + j] >= c->vocab)
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: row %lld: top-k id %d outside 0..%lld", c->path,
                                     (long long)(row0 + r), tk_ids[r * c->k + j], (long long)(c->vocab - 1));
    }
    return GRAFT_STATUS_OK;
}

void graft_tkcache_close(graft_tkcache_t *c) { free_cache(c); }
