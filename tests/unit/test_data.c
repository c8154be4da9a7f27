/* test_data.c: the batch loader: windows and targets, held-out split, shuffling determinism, and
 * cursor save/restore (a resumed loader yields exactly the batches the original would have);
 * manifest round trip and refusals. */
#include <stdlib.h>

#include "data.h"
#include "shard.h"
#include "test_util.h"

static char dir[256];

/* shard k holds tokens (k << 16) + i for i in 0..n-1, so every token says where it came from */
static void make_shard(const char *path, uint32_t k, size_t n, uint64_t hash) {
    graft_shard_writer_t *w;
    graft_err e;
    CHECK(graft_shard_writer_open(path, 1u << 20, hash, 0, &w, &e) == GRAFT_STATUS_OK);
    for (size_t i = 0; i < n; i++) {
        uint32_t t = (k << 16) + (uint32_t)i;
        CHECK(graft_shard_writer_append(w, &t, 1, &e) == GRAFT_STATUS_OK);
    }
    CHECK(graft_shard_writer_close(w, &e) == GRAFT_STATUS_OK);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/test_data.XXXXXX", GRAFT_BUILD_DIR);
    CHECK(mkdtemp(dir) != NULL);
    char p0[512], p1[512], mp[512];
    snprintf(p0, sizeof p0, "%s/shard-00000.tok", dir);
    snprintf(p1, sizeof p1, "%s/shard-00001.tok", dir);
    make_shard(p0, 1, 1001, 77); /* (1001-1)/10 = 100 windows */
    make_shard(p1, 2, 505, 77);  /* 50 windows */

    graft_manifest m = {0};
    graft_err e;
    m.tokenizer = strdup("tok");
    m.tokenizer_hash = 77;
    m.vocab_size = 1u << 20;
    m.n_tokens = 1506;
    m.n_documents = 2;
    graft_shard_t *s;
    const char *paths[2] = {p0, p1};
    for (int i = 0; i < 2; i++) {
        CHECK(graft_shard_open(paths[i], 0, &s, &e) == GRAFT_STATUS_OK);
        const graft_shard_header *h = graft_shard_get_header(s);
        CHECK(graft_manifest_add_shard(&m, i ? "shard-00001.tok" : "shard-00000.tok", h->n_tokens,
                                       1, h->checksum, &e) == GRAFT_STATUS_OK);
        graft_shard_close(s);
    }
    CHECK(graft_manifest_add_source(&m, "x.txt", &e) == GRAFT_STATUS_OK);
    snprintf(mp, sizeof mp, "%s/manifest.json", dir);
    CHECK(graft_manifest_write(mp, &m, &e) == GRAFT_STATUS_OK);
    graft_manifest_free(&m);
    graft_manifest m2;
    CHECK(graft_manifest_read(mp, &m2, &e) == GRAFT_STATUS_OK);
    CHECK(m2.n_shards == 2 && m2.shards[1].tokens == 505 && m2.tokenizer_hash == 77 &&
          m2.n_sources == 1);
    graft_manifest_free(&m2);

    graft_data_params prm = graft_data_default_params();
    prm.B = 4;
    prm.T = 10;
    prm.seed = 42;
    prm.holdout_fraction = 0.1;
    graft_data_t *d = NULL;
    const char *src[1] = {dir}; /* a directory with manifest.json */
    CHECK(graft_data_open(src, 1, &prm, &d, &e) == GRAFT_STATUS_OK);
    if (!d) {
        fprintf(stderr, "%s\n", e.msg);
        return test_finish("test_data");
    }
    CHECK(graft_data_n_train(d) == 135 && graft_data_n_eval(d) == 15);

    /* windows: T+1 consecutive tokens of one shard, starting at a multiple of T */
    uint32_t win[4 * 11], a[20][44], b[20][44];
    int seen_train[150] = {0};
    for (int k = 0; k < 20; k++) {
        CHECK(graft_data_next(d, a[k], &e) == GRAFT_STATUS_OK);
        for (int r = 0; r < 4; r++) {
            uint32_t *w = a[k] + r * 11;
            for (int j = 1; j < 11; j++) CHECK(w[j] == w[j - 1] + 1);
            CHECK((w[0] & 0xFFFF) % 10 == 0);
            uint32_t g = (w[0] >> 16) == 1 ? (w[0] & 0xFFFF) / 10 : 100 + (w[0] & 0xFFFF) / 10;
            CHECK(g < 135); /* never a held-out window */
            if (g < 150) seen_train[g]++;
        }
    }
    /* shuffled: the first batch is not simply windows 0..3 */
    CHECK(!(a[0][0] == (1u << 16) && a[0][11] == (1u << 16) + 10));

    /* held-out batches: the last 15 windows (all in shard 2), ceil(15/4) = 4 batches */
    int64_t rows;
    CHECK(graft_data_eval_batch(d, 3, win, &rows, &e) == GRAFT_STATUS_OK && rows == 3);
    CHECK(win[2 * 11] == (2u << 16) + 490);
    CHECK(graft_data_eval_batch(d, 4, win, &rows, &e) == GRAFT_STATUS_BAD_INPUT);

    /* one epoch covers every training window exactly once */
    graft_data_t *d2;
    int count[135] = {0};
    prm.B = 5; /* 135 = 27 * 5 */
    CHECK(graft_data_open(src, 1, &prm, &d2, &e) == GRAFT_STATUS_OK);
    uint32_t w5[5 * 11];
    for (int k = 0; k < 27; k++) {
        graft_data_next(d2, w5, &e);
        for (int r = 0; r < 5; r++) {
            uint32_t t0 = w5[r * 11];
            uint32_t g = (t0 >> 16) == 1 ? (t0 & 0xFFFF) / 10 : 100 + (t0 & 0xFFFF) / 10;
            if (g < 135) count[g]++;
        }
    }
    int all_once = 1;
    for (int g = 0; g < 135; g++) all_once &= count[g] == 1;
    CHECK(all_once);
    CHECK(graft_data_get_cursor(d2).epoch == 0 && graft_data_get_cursor(d2).position == 135);
    graft_data_close(d2);
    prm.B = 4;

    /* cursor: read 7 batches, save, continue 13 more; a fresh loader restored from the cursor
     * yields the same 13 (crossing an epoch boundary at 135 / 4) */
    graft_data_close(d);
    CHECK(graft_data_open(src, 1, &prm, &d, &e) == GRAFT_STATUS_OK);
    graft_data_cursor c = {0};
    for (int k = 0; k < 40; k++) {
        graft_data_next(d, a[k % 20], &e);
        if (k == 26) c = graft_data_get_cursor(d);
        if (k > 26 && k - 27 < 13) memcpy(b[k - 27], a[k % 20], sizeof a[0]);
    }
    CHECK(graft_data_get_cursor(d).epoch == 1);
    graft_data_t *r;
    CHECK(graft_data_open(src, 1, &prm, &r, &e) == GRAFT_STATUS_OK);
    CHECK(graft_data_set_cursor(r, &c, &e) == GRAFT_STATUS_OK);
    int same = 1;
    for (int k = 0; k < 13; k++) {
        uint32_t x[44];
        graft_data_next(r, x, &e);
        same &= !memcmp(x, b[k], sizeof x);
    }
    CHECK(same);
    /* restoring across an epoch: a cursor from epoch 1 into a fresh loader */
    graft_data_cursor c1 = graft_data_get_cursor(d);
    graft_data_t *r2;
    CHECK(graft_data_open(src, 1, &prm, &r2, &e) == GRAFT_STATUS_OK);
    CHECK(graft_data_set_cursor(r2, &c1, &e) == GRAFT_STATUS_OK);
    uint32_t x1[44], x2[44];
    graft_data_next(d, x1, &e);
    graft_data_next(r2, x2, &e);
    CHECK(!memcmp(x1, x2, sizeof x1));
    /* a cursor of another seed is refused */
    graft_data_cursor bad = c;
    bad.seed = 43;
    CHECK(graft_data_set_cursor(r2, &bad, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "seed 43");
    graft_data_close(r2);
    graft_data_close(r);
    graft_data_close(d);

    /* in order (no shuffle): windows 0, 1, 2, ... */
    prm.shuffle = 0;
    CHECK(graft_data_open(paths, 2, &prm, &d, &e) == GRAFT_STATUS_OK);
    graft_data_next(d, win, &e);
    CHECK(win[0] == (1u << 16) && win[11] == (1u << 16) + 10 && win[43] == (1u << 16) + 40);
    graft_data_close(d);

    /* refusals: shards of different tokenizers; too short for one window; bad params */
    char p2[512];
    snprintf(p2, sizeof p2, "%s/other.tok", dir);
    make_shard(p2, 3, 100, 78);
    const char *mixed[2] = {p0, p2};
    CHECK(graft_data_open(mixed, 2, &prm, &d, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "tokenizer_hash");
    make_shard(p2, 3, 5, 78);
    const char *tiny[1] = {p2};
    CHECK(graft_data_open(tiny, 1, &prm, &d, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "training window");
    prm.T = 0;
    CHECK(graft_data_open(paths, 2, &prm, &d, &e) == GRAFT_STATUS_BAD_INPUT);
    FILE *f = fopen(mp, "w");
    fputs("{\"format\": \"graft-token-shards\", \"shards\": []}", f);
    fclose(f);
    prm.T = 10;
    CHECK(graft_data_open(src, 1, &prm, &d, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "manifest.json");

    /* separate held-out shards: every window of p1 is held out, none of p0 */
    {
        graft_data_params hp = graft_data_default_params();
        hp.B = 4;
        hp.T = 10;
        hp.holdout_fraction = 0;
        const char *tr[1] = {p0}, *ho[1] = {p1};
        hp.heldout_paths = ho;
        hp.n_heldout = 1;
        graft_data_t *hd = NULL;
        CHECK(graft_data_open(tr, 1, &hp, &hd, &e) == GRAFT_STATUS_OK);
        CHECK(graft_data_n_train(hd) == 100 && graft_data_n_eval(hd) == 50);
        uint32_t hwin[4 * 11];
        int64_t hrows = 0;
        CHECK(graft_data_eval_batch(hd, 0, hwin, &hrows, &e) == GRAFT_STATUS_OK && hrows == 4);
        CHECK(hwin[0] >> 16 == 2); /* from the held-out shard */
        for (int bb = 0; bb < 30; bb++) {
            CHECK(graft_data_next(hd, hwin, &e) == GRAFT_STATUS_OK);
            for (int i = 0; i < 4 * 11; i++) CHECK(hwin[i] >> 16 == 1); /* training never sees it */
        }
        graft_data_close(hd);
        hp.holdout_fraction = 0.1;
        CHECK(graft_data_open(tr, 1, &hp, &hd, &e) == GRAFT_STATUS_BAD_INPUT);
        CHECK_CONTAINS(e.msg, "expected one of the two");
        hp.holdout_fraction = 0;
        hp.T = 600; /* p1 (505 tokens) has no window */
        CHECK(graft_data_open(tr, 1, &hp, &hd, &e) == GRAFT_STATUS_BAD_INPUT);
        CHECK_CONTAINS(e.msg, "held-out shards hold no window");
    }

    size_t tl;
    char *txt;
    CHECK(graft_jsonl_text("{\"text\": \"a\\nb\"}", 16, &txt, &tl, &e) == GRAFT_STATUS_OK &&
          tl == 3);
    free(txt);
    CHECK(graft_jsonl_text("{\"txt\": 1}", 10, &txt, &tl, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "\"text\"");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish("test_data");
}
