/* shard.c: writing, validating and mapping token shards (format in shard.h and docs/data.md).
 * Does not hold: tokenization (tokenizer.c) or batching (data.c). Shards are untrusted input:
 * every size is checked against the file size with overflow-checked arithmetic before use. */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard.c maps uint32 tokens directly and needs a little-endian host"
#endif

uint64_t graft_shard_checksum(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- writer -------------------------------------------------------------------------------- */

struct graft_shard_writer {
    FILE *f;
    char *path, *tmp;
    graft_shard_header h;
};

graft_status graft_shard_writer_open(const char *path, uint64_t vocab_size, uint64_t tokenizer_hash,
                                     uint32_t eot_id, graft_shard_writer_t **out, graft_err *err) {
    *out = NULL;
    if (vocab_size == 0 || vocab_size > (uint64_t)UINT32_MAX + 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: vocab_size %llu, expected 1..2^32",
                             path, (unsigned long long)vocab_size);
    graft_shard_writer_t *w = calloc(1, sizeof *w);
    size_t l = strlen(path);
    if (w) w->path = strdup(path);
    if (w) w->tmp = malloc(l + 5);
    if (!w || !w->path || !w->tmp) {
        if (w) {
            free(w->path);
            free(w->tmp);
        }
        free(w);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    memcpy(w->tmp, path, l);
    memcpy(w->tmp + l, ".tmp", 5);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        graft_status st =
            graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        free(w->path);
        free(w->tmp);
        free(w);
        return st;
    }
    w->h.version = GRAFT_SHARD_VERSION;
    w->h.header_bytes = GRAFT_SHARD_HEADER_BYTES;
    w->h.vocab_size = vocab_size;
    w->h.tokenizer_hash = tokenizer_hash;
    w->h.checksum = GRAFT_SHARD_CHECKSUM_INIT;
    w->h.eot_id = eot_id;
    unsigned char zero[GRAFT_SHARD_HEADER_BYTES] = {0};
    if (fwrite(zero, 1, sizeof zero, w->f) != sizeof zero) {
        graft_shard_writer_abort(w);
        return graft_err_set(err, GRAFT_STATUS_IO, "%s.tmp: write failed", path);
    }
    *out = w;
    return GRAFT_STATUS_OK;
}

graft_status graft_shard_writer_append(graft_shard_writer_t *w, const uint32_t *ids, size_t n,
                                       graft_err *err) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= w->h.vocab_size)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s: token %zu of this append: id %u, expected < %llu", w->path, i,
                                 ids[i], (unsigned long long)w->h.vocab_size);
    if (n && fwrite(ids, sizeof *ids, n, w->f) != n)
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", w->tmp, strerror(errno));
    w->h.checksum = graft_shard_checksum(w->h.checksum, ids, n * sizeof *ids);
    w->h.n_tokens += n;
    return GRAFT_STATUS_OK;
}

uint64_t graft_shard_writer_count(const graft_shard_writer_t *w) { return w->h.n_tokens; }
uint64_t graft_shard_writer_checksum(const graft_shard_writer_t *w) { return w->h.checksum; }

static void encode_header(const graft_shard_header *h, unsigned char *b) {
    memset(b, 0, GRAFT_SHARD_HEADER_BYTES);
    memcpy(b, GRAFT_SHARD_MAGIC, 8);
    put32(b + 8, h->version);
    put32(b + 12, h->header_bytes);
    put64(b + 16, h->vocab_size);
    put64(b + 24, h->n_tokens);
    put64(b + 32, h->tokenizer_hash);
    put64(b + 40, h->checksum);
    put32(b + 48, h->eot_id);
}

graft_status graft_shard_writer_close(graft_shard_writer_t *w, graft_err *err) {
    if (!w) return GRAFT_STATUS_OK;
    unsigned char b[GRAFT_SHARD_HEADER_BYTES];
    encode_header(&w->h, b);
    graft_status st = GRAFT_STATUS_OK;
    if (fseek(w->f, 0, SEEK_SET) || fwrite(b, 1, sizeof b, w->f) != sizeof b || fflush(w->f) ||
        fsync(fileno(w->f)))
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", w->tmp, strerror(errno));
    if (fclose(w->f) && !st)
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: close failed: %s", w->tmp, strerror(errno));
    w->f = NULL;
    if (!st && rename(w->tmp, w->path))
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: rename to %s failed: %s", w->tmp, w->path,
                           strerror(errno));
    if (st) remove(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w);
    return st;
}

void graft_shard_writer_abort(graft_shard_writer_t *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w);
}

/* ---- reader -------------------------------------------------------------------------------- */

struct graft_shard {
    char *path;
    graft_shard_header h;
    void *map;
    size_t map_bytes;
    const uint32_t *tokens;
};

static graft_status parse_header(const char *path, const unsigned char *b, uint64_t file_bytes,
                                 graft_shard_header *h, graft_err *err) {
    if (file_bytes < GRAFT_SHARD_HEADER_BYTES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s @ byte 0: file of %llu bytes, expected a %u-byte header", path,
                             (unsigned long long)file_bytes, GRAFT_SHARD_HEADER_BYTES);
    if (memcmp(b, GRAFT_SHARD_MAGIC, 8))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s @ byte 0: magic: not \"GRAFTTOK\", expected a graft token shard",
                             path);
    h->version = get32(b + 8);
    h->header_bytes = get32(b + 12);
    h->vocab_size = get64(b + 16);
    h->n_tokens = get64(b + 24);
    h->tokenizer_hash = get64(b + 32);
    h->checksum = get64(b + 40);
    h->eot_id = get32(b + 48);
    if (h->version != GRAFT_SHARD_VERSION)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s @ byte 8: version: %u, expected %u",
                             path, h->version, GRAFT_SHARD_VERSION);
    if (h->header_bytes != GRAFT_SHARD_HEADER_BYTES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s @ byte 12: header_bytes: %u, expected %u", path, h->header_bytes,
                             GRAFT_SHARD_HEADER_BYTES);
    if (h->vocab_size == 0 || h->vocab_size > (uint64_t)UINT32_MAX + 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s @ byte 16: vocab_size: %llu, expected 1..2^32", path,
                             (unsigned long long)h->vocab_size);
    if (get32(b + 52) || get64(b + 56))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s @ byte 52: reserved: not zero, expected zero", path);
    uint64_t data = file_bytes - GRAFT_SHARD_HEADER_BYTES;
    if (h->n_tokens > data / 4 || h->n_tokens * 4 != data)
        return graft_err_set(
            err, GRAFT_STATUS_BAD_INPUT,
            "%s @ byte 24: n_tokens: %llu (%s), but the file holds %llu bytes of tokens", path,
            (unsigned long long)h->n_tokens,
            h->n_tokens > data / 4 ? "truncated file" : "size mismatch", (unsigned long long)data);
    return GRAFT_STATUS_OK;
}

void graft_shard_close(graft_shard_t *s) {
    if (!s) return;
    if (s->map) munmap(s->map, s->map_bytes);
    free(s->path);
    free(s);
}

graft_status graft_shard_open(const char *path, uint64_t max_vocab, graft_shard_t **out,
                              graft_err *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: not a regular file", path);
    }
    graft_shard_t *s = calloc(1, sizeof *s);
    if (s) s->path = strdup(path);
    if (!s || !s->path) {
        close(fd);
        free(s);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    uint64_t file_bytes = (uint64_t)st.st_size;
    unsigned char hb[GRAFT_SHARD_HEADER_BYTES] = {0};
    ssize_t got = pread(fd, hb, sizeof hb, 0);
    graft_status rc = GRAFT_STATUS_OK;
    if (got < 0)
        rc = graft_err_set(err, GRAFT_STATUS_IO, "%s: read failed: %s", path, strerror(errno));
    if (!rc) rc = parse_header(path, hb, file_bytes, &s->h, err);
    if (!rc && file_bytes > SIZE_MAX)
        rc = graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "%s: too large to map", path);
    if (!rc) {
        s->map_bytes = (size_t)file_bytes;
        s->map = mmap(NULL, s->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        if (s->map == MAP_FAILED) {
            s->map = NULL;
            rc = graft_err_set(err, GRAFT_STATUS_IO, "%s: mmap failed: %s", path, strerror(errno));
        }
    }
    close(fd);
    if (!rc) {
        s->tokens = (const uint32_t *)((const unsigned char *)s->map + GRAFT_SHARD_HEADER_BYTES);
        uint64_t sum =
            graft_shard_checksum(GRAFT_SHARD_CHECKSUM_INIT, s->tokens, (size_t)s->h.n_tokens * 4);
        if (sum != s->h.checksum)
            rc = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                               "%s @ byte 40: checksum: header says 0x%016llx, tokens hash to "
                               "0x%016llx (corrupt file)",
                               path, (unsigned long long)s->h.checksum, (unsigned long long)sum);
    }
    if (!rc) {
        uint64_t lim = s->h.vocab_size;
        if (max_vocab && max_vocab < lim) lim = max_vocab;
        for (uint64_t i = 0; i < s->h.n_tokens; i++)
            if (s->tokens[i] >= lim) {
                rc = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                   "%s @ byte %llu: token %llu: id %u, expected < %llu%s", path,
                                   (unsigned long long)(GRAFT_SHARD_HEADER_BYTES + 4 * i),
                                   (unsigned long long)i, s->tokens[i], (unsigned long long)lim,
                                   lim < s->h.vocab_size ? " (the model's vocabulary size)"
                                                         : " (the shard's vocab_size)");
                break;
            }
    }
    if (rc) {
        graft_shard_close(s);
        return rc;
    }
    *out = s;
    return GRAFT_STATUS_OK;
}

const graft_shard_header *graft_shard_get_header(const graft_shard_t *s) { return &s->h; }
const char *graft_shard_path(const graft_shard_t *s) { return s->path; }

const uint32_t *graft_shard_tokens(const graft_shard_t *s, uint64_t *n) {
    *n = s->h.n_tokens;
    return s->tokens;
}

int graft_shard_is_shard(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[8];
    int ok = fread(m, 1, 8, f) == 8 && !memcmp(m, GRAFT_SHARD_MAGIC, 8);
    fclose(f);
    return ok;
}

graft_status graft_shard_inspect_print(const char *path, FILE *out, graft_err *err) {
    graft_shard_t *s;
    graft_status st = graft_shard_open(path, 0, &s, err);
    if (st) return st;
    const graft_shard_header *h = &s->h;
    uint64_t docs = 0;
    for (uint64_t i = 0; i < h->n_tokens; i++) docs += s->tokens[i] == h->eot_id;
    fprintf(out, "%s: graft token shard, version %u\n", path, h->version);
    fprintf(out, "  vocab_size      %llu\n", (unsigned long long)h->vocab_size);
    fprintf(out, "  n_tokens        %llu\n", (unsigned long long)h->n_tokens);
    if (h->eot_id == UINT32_MAX)
        fprintf(out, "  eot_id          none\n");
    else
        fprintf(out, "  eot_id          %u (%llu documents)\n", h->eot_id,
                (unsigned long long)docs);
    fprintf(out, "  tokenizer_hash  0x%016llx\n", (unsigned long long)h->tokenizer_hash);
    fprintf(out, "  checksum        0x%016llx (ok)\n", (unsigned long long)h->checksum);
    fprintf(out, "  first ids      ");
    for (uint64_t i = 0; i < h->n_tokens && i < 16; i++) fprintf(out, " %u", s->tokens[i]);
    fprintf(out, "%s\n", h->n_tokens > 16 ? " ..." : "");
    graft_shard_close(s);
    return GRAFT_STATUS_OK;
}
