/* test_shard.c: token shards: write/read round trip, atomic write, and refusal of corrupt files
 * (truncated, wrong magic, wrong version, bad checksum, id >= vocab size), each named by file and
 * byte offset. */
#include <stdlib.h>
#include <unistd.h>

#include "graft/rng.h"
#include "shard.h"
#include "test_util.h"

static char dir[256];

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void write_shard(const char *path, const uint32_t *ids, size_t n, uint64_t vocab) {
    graft_shard_writer_t *w;
    graft_err e;
    CHECK(graft_shard_writer_open(path, vocab, 0x1234, 9, &w, &e) == GRAFT_STATUS_OK);
    CHECK(graft_shard_writer_append(w, ids, n / 2, &e) == GRAFT_STATUS_OK);
    CHECK(graft_shard_writer_append(w, ids + n / 2, n - n / 2, &e) == GRAFT_STATUS_OK);
    CHECK(graft_shard_writer_close(w, &e) == GRAFT_STATUS_OK);
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    CHECK(fread(b, 1, *n, f) == *n);
    fclose(f);
    return b;
}

static void spill(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static void expect_bad(const char *name, const unsigned char *b, size_t n, uint64_t max_vocab,
                       const char *want1, const char *want2) {
    char p[512];
    path_of(p, sizeof p, name);
    spill(p, b, n);
    graft_shard_t *s = NULL;
    graft_err e;
    CHECK(graft_shard_open(p, max_vocab, &s, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK(s == NULL);
    CHECK_CONTAINS(e.msg, name);
    CHECK_CONTAINS(e.msg, want1);
    if (want2) CHECK_CONTAINS(e.msg, want2);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/test_shard.XXXXXX", GRAFT_BUILD_DIR);
    CHECK(mkdtemp(dir) != NULL);
    char p[512], tmp[520];
    path_of(p, sizeof p, "a.tok");
    uint32_t ids[1000];
    for (int i = 0; i < 1000; i++) ids[i] = (uint32_t)(i * 7919 % 1000);
    ids[500] = 9;
    write_shard(p, ids, 1000, 1000);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECK(access(tmp, F_OK) != 0); /* renamed */

    graft_shard_t *s = NULL;
    graft_err e;
    CHECK(graft_shard_open(p, 0, &s, &e) == GRAFT_STATUS_OK);
    if (s) {
        uint64_t n;
        const uint32_t *t = graft_shard_tokens(s, &n);
        CHECK(n == 1000 && !memcmp(t, ids, sizeof ids));
        const graft_shard_header *h = graft_shard_get_header(s);
        CHECK(h->vocab_size == 1000 && h->tokenizer_hash == 0x1234 && h->eot_id == 9 &&
              h->version == 1);
        CHECK(h->checksum == graft_shard_checksum(GRAFT_SHARD_CHECKSUM_INIT, ids, sizeof ids));
    }
    graft_shard_close(s);
    CHECK(graft_shard_is_shard(p));

    /* the model's vocabulary bound is applied on top of the header's */
    CHECK(graft_shard_open(p, 500, &s, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "model's vocabulary size");

    /* inspect */
    char ip[512];
    path_of(ip, sizeof ip, "inspect.txt");
    FILE *f = fopen(ip, "w+");
    CHECK(graft_shard_inspect_print(p, f, &e) == GRAFT_STATUS_OK);
    rewind(f);
    char buf[2048] = {0};
    CHECK(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    CHECK_CONTAINS(buf, "n_tokens        1000");
    CHECK_CONTAINS(buf, "checksum");

    /* writer refuses out-of-range ids and aborts cleanly */
    graft_shard_writer_t *w;
    path_of(p, sizeof p, "b.tok");
    CHECK(graft_shard_writer_open(p, 10, 0, 0, &w, &e) == GRAFT_STATUS_OK);
    uint32_t big = 10;
    CHECK(graft_shard_writer_append(w, &big, 1, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "id 10");
    graft_shard_writer_abort(w);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECK(access(tmp, F_OK) != 0 && access(p, F_OK) != 0);

    /* empty shard is valid */
    write_shard(p, ids, 0, 10);
    CHECK(graft_shard_open(p, 0, &s, &e) == GRAFT_STATUS_OK);
    graft_shard_close(s);

    /* corruptions */
    path_of(p, sizeof p, "a.tok");
    size_t n;
    unsigned char *good = slurp(p, &n);
    unsigned char *b = malloc(n);
    expect_bad("truncated_header.tok", good, 40, 0, "@ byte 0", "header");
    expect_bad("truncated.tok", good, n - 6, 0, "@ byte 24", "truncated");
    memcpy(b, good, n);
    b[0] = 'X';
    expect_bad("magic.tok", b, n, 0, "@ byte 0", "magic");
    memcpy(b, good, n);
    b[8] = 2;
    expect_bad("version.tok", b, n, 0, "@ byte 8", "version: 2");
    memcpy(b, good, n);
    b[64 + 4 * 17] ^= 1;
    expect_bad("checksum.tok", b, n, 0, "@ byte 40", "checksum");
    /* id >= vocab with a consistent checksum: named by byte offset */
    memcpy(b, good, n);
    uint32_t bad_id = 1000;
    memcpy(b + 64 + 4 * 123, &bad_id, 4);
    uint64_t sum = graft_shard_checksum(GRAFT_SHARD_CHECKSUM_INIT, b + 64, n - 64);
    for (int i = 0; i < 8; i++) b[40 + i] = (unsigned char)(sum >> (8 * i));
    expect_bad("id.tok", b, n, 0, "@ byte 556", "id 1000, expected < 1000");
    expect_bad("empty.tok", good, 0, 0, "@ byte 0", "0 bytes");
    memcpy(b, good, n);
    b[60] = 1;
    expect_bad("reserved.tok", b, n, 0, "@ byte 52", "reserved");

    /* fuzz: random byte flips and truncations never crash; a shard that still opens has the
     * original tokens (only the unprotected header fields hash/eot may differ) */
    graft_rng r = graft_rng_make(7, 0);
    char fp[512];
    path_of(fp, sizeof fp, "fuzz.tok");
    int opened = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(b, good, n);
        size_t len = n;
        int flips = 1 + (int)(graft_rng_next(&r) % 3);
        for (int k = 0; k < flips; k++) {
            size_t at = graft_rng_next(&r) % (it % 2 ? 64 : n);
            b[at] ^= (unsigned char)(1 + graft_rng_next(&r) % 255);
        }
        if (it % 7 == 0) len = graft_rng_next(&r) % n;
        spill(fp, b, len);
        graft_status st = graft_shard_open(fp, 0, &s, &e);
        CHECK(st == GRAFT_STATUS_OK || st == GRAFT_STATUS_BAD_INPUT);
        if (st == GRAFT_STATUS_OK) {
            uint64_t cnt;
            const uint32_t *t = graft_shard_tokens(s, &cnt);
            CHECK(cnt == 1000 && !memcmp(t, good + 64, 4000));
            opened++;
        } else {
            CHECK_CONTAINS(e.msg, "fuzz.tok");
        }
        graft_shard_close(s);
        s = NULL;
    }
    CHECK(opened < 150);
    free(b);
    free(good);
    CHECK(graft_shard_open("/nonexistent/x.tok", 0, &s, &e) == GRAFT_STATUS_IO);
    CHECK_CONTAINS(e.msg, "/nonexistent/x.tok");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish("test_shard");
}
