/* test_tokenizer.c: the Qwen3 tokenizer against the spec's HF test vectors (spec 10), decode rules
 * (spec 8), round trips, the batch encoder, and refusals of malformed tokenizer files. The
 * exhaustive HF parity run lives in tests/tokenizer/ (it needs the npm `tokenizers` package). */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graft/rng.h"
#include "test_util.h"
#include "tokenizer.h"

#define QWEN_DIR GRAFT_SOURCE_DIR "/../shared/data/qwen3-tokenizer"

static char tmpdir[256];

static int ids_eq(const graft_ids *v, const uint32_t *want, size_t n) {
    if (v->n != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (v->data[i] != want[i]) return 0;
    return 1;
}

static void print_ids(const char *label, const graft_ids *v) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < v->n; i++) fprintf(stderr, " %u", v->data[i]);
    fprintf(stderr, "\n");
}

typedef struct vec {
    const char *text;
    size_t len; /* 0: strlen */
    uint32_t ids[8];
    size_t n;
} vec;

static void test_vectors(graft_tokenizer_t *t) {
    static const vec v[] = {
        {"Hello world", 0, {9707, 1879}, 2},
        {" Hello world", 0, {21927, 1879}, 2},
        {"Hello  world  ", 0, {9707, 220, 1879, 256}, 4},
        {"I'm HERE'S don't", 0, {40, 2776, 19249, 13272, 1513, 944}, 6},
        {"12345", 0, {16, 17, 18, 19, 20}, 5},
        {"a\r\n\r\nb", 0, {64, 871, 65}, 3},
        {"\n\n\n", 0, {1406}, 1},
        {"x   y", 0, {87, 256, 379}, 3},
        {"  \n  x", 0, {2303, 220, 856}, 3},
        {"<|im_start|>user\nHi<|im_end|>\n", 0, {151644, 872, 198, 13048, 151645, 198}, 6},
        {"<think>\n\n</think>\n\n", 0, {151667, 271, 151668, 271}, 4},
        {"\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c",
         0,
         {108386, 3837, 99489},
         3},
        {"\xf0\x9f\x99\x82 ok", 0, {145080, 5394}, 2},
        {"e\xcc\x81", 0, {963}, 1},
        {"cafe\xcc\x81", 0, {924, 58858}, 2},
        {"\xc2\xa0\xc2\xa0x", 0, {4102, 4102, 87}, 3},
        {"tab\there", 0, {6192, 197, 6739}, 3},
        {"<|im_end|>\xcc\xb8", 0, {151645, 136, 116}, 3},
        {"", 0, {0}, 0},
        {"a <think> b", 0, {64, 220, 151667, 293}, 4},
    };
    graft_tok_ws_t *ws = NULL;
    graft_err e;
    CHECK(graft_tok_ws_init(&ws, &e) == GRAFT_STATUS_OK);
    for (int pass = 0; pass < 2; pass++) /* second pass hits the piece cache */
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            graft_ids out = {0};
            size_t len = v[i].len ? v[i].len : strlen(v[i].text);
            CHECK(graft_tokenizer_encode(t, pass ? ws : NULL, v[i].text, len, 0, &out, &e) ==
                  GRAFT_STATUS_OK);
            int ok = ids_eq(&out, v[i].ids, v[i].n);
            CHECK(ok);
            if (!ok) {
                fprintf(stderr, "  vector %zu (pass %d)\n", i, pass);
                print_ids("got", &out);
            }
            graft_ids_free(&out);
        }
    graft_tok_ws_free(ws);
}

static void test_special_as_text(graft_tokenizer_t *t) {
    graft_ids out = {0};
    graft_err e;
    const char *s = "<|im_start|><think>";
    CHECK(graft_tokenizer_encode(t, NULL, s, strlen(s), GRAFT_TOK_SPECIAL_AS_TEXT, &out, &e) ==
          GRAFT_STATUS_OK);
    CHECK(out.n > 2 && out.data[out.n - 1] == 151667); /* <think> is not special: still extracted */
    for (size_t i = 0; i + 1 < out.n; i++) CHECK(out.data[i] < 151643);
    graft_ids_free(&out);
}

static void test_decode(graft_tokenizer_t *t) {
    graft_err e;
    char *s;
    size_t n;
    uint32_t a[] = {151644, 872, 198, 13048, 151645};
    CHECK(graft_tokenizer_decode(t, a, 5, 0, &s, &n, &e) == GRAFT_STATUS_OK);
    CHECK(!strcmp(s, "<|im_start|>user\nHi<|im_end|>"));
    free(s);
    CHECK(graft_tokenizer_decode(t, a, 5, 1, &s, &n, &e) == GRAFT_STATUS_OK);
    CHECK(!strcmp(s, "user\nHi"));
    free(s);
    uint32_t b[] = {151667, 198, 151668};
    CHECK(graft_tokenizer_decode(t, b, 3, 1, &s, &n, &e) == GRAFT_STATUS_OK);
    CHECK(!strcmp(s, "<think>\n</think>"));
    free(s);
    uint32_t c[] = {160};
    CHECK(graft_tokenizer_decode(t, c, 1, 0, &s, &n, &e) == GRAFT_STATUS_OK);
    CHECK(!strcmp(s, "\xef\xbf\xbd"));
    free(s);
    uint32_t d[] = {151669};
    CHECK(graft_tokenizer_decode(t, d, 1, 0, &s, &n, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "151669");
    /* maximal subparts: E2 82 (truncated 3-byte) then 'A' -> one U+FFFD then A; F0 80: two */
    const char *bytes[] = {"\xe2\x82"
                           "A",
                           "\xf0\x80", "\xed\xa0\x80"};
    const char *want[] = {"\xef\xbf\xbd"
                          "A",
                          "\xef\xbf\xbd\xef\xbf\xbd", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"};
    uint32_t b2id[256];
    for (uint32_t id = 0; id < 256; id++) {
        size_t l;
        const char *p = graft_tokenizer_id_bytes(t, id, &l);
        CHECK(p && l == 1);
        if (p) b2id[(unsigned char)p[0]] = id;
    }
    for (int k = 0; k < 3; k++) {
        uint32_t ids[8];
        size_t m = strlen(bytes[k]);
        for (size_t i = 0; i < m; i++) ids[i] = b2id[(unsigned char)bytes[k][i]];
        CHECK(graft_tokenizer_decode(t, ids, m, 0, &s, &n, &e) == GRAFT_STATUS_OK);
        CHECK(!strcmp(s, want[k]));
        free(s);
    }
}

/* decode(encode(s)) == s for NFC-stable valid UTF-8, and a batch encode equals one-by-one. */
static void test_roundtrip(graft_tokenizer_t *t) {
    const char *texts[] = {
        "The quick brown fox jumps over the lazy dog.\n\n    int main(void) { return 0; }\n",
        "  \t\r\n mixed   whitespace \xe3\x80\x80\xe3\x80\x80 and \xc2\xa0 nbsp\n\n\n\n",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3"
        "\x83\x88 "
        "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "
        "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
        "<|endoftext|>numbers 3.14159 1,000,000 and 'quotes' WE'LL it's\n",
        "========================================================================================\n"
        "                                                                                          "
        "x",
    };
    size_t n = sizeof texts / sizeof texts[0];
    graft_ids one[8] = {{0}}, batch[8] = {{0}};
    size_t lens[8];
    graft_err e;
    for (size_t i = 0; i < n; i++) {
        lens[i] = strlen(texts[i]);
        CHECK(graft_tokenizer_encode(t, NULL, texts[i], lens[i], 0, &one[i], &e) ==
              GRAFT_STATUS_OK);
        char *s;
        size_t m;
        CHECK(graft_tokenizer_decode(t, one[i].data, one[i].n, 0, &s, &m, &e) == GRAFT_STATUS_OK);
        CHECK(m == lens[i] && !memcmp(s, texts[i], m));
        free(s);
    }
    CHECK(graft_tokenizer_encode_batch(t, texts, lens, n, 3, 0, batch, NULL, &e) ==
          GRAFT_STATUS_OK);
    for (size_t i = 0; i < n; i++) {
        CHECK(batch[i].n == one[i].n && !memcmp(batch[i].data, one[i].data, one[i].n * 4));
        graft_ids_free(&one[i]);
        graft_ids_free(&batch[i]);
    }
    graft_ids bad = {0};
    CHECK(graft_tokenizer_encode(t, NULL, "ab\xff", 3, 0, &bad, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "byte 2");
    graft_ids_free(&bad);
}

static size_t put_utf8(char *o, uint32_t c) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Random strings from NFC-stable ranges (no combining marks, no conjoining jamo, no singletons
 * such as U+2000 -> U+2002) round-trip exactly; random bytes never crash (OK or BAD_INPUT). */
static void test_fuzz(graft_tokenizer_t *t) {
    static const uint32_t ranges[][2] = {{0x20, 0x7E},       {0x09, 0x0D},     {0xA0, 0xFF},
                                         {0x400, 0x45F},     {0x4E00, 0x9FFF}, {0x3041, 0x3096},
                                         {0x1F600, 0x1F64F}, {0x2002, 0x200A}, {0x3000, 0x3000},
                                         {0x00, 0x08},       {0x30, 0x39}};
    static const char *const specials[] = {"<|endoftext|>", "<think>", "<|im_start|>", "'s",
                                           "'LL",           "\r\n"};
    graft_rng r = graft_rng_make(1234, 0);
    graft_tok_ws_t *ws = NULL;
    graft_err e;
    CHECK(graft_tok_ws_init(&ws, &e) == GRAFT_STATUS_OK);
    char buf[4096];
    int ok_all = 1, nocrash = 1;
    for (int it = 0; it < 400; it++) {
        size_t n = 0, m = graft_rng_next(&r) % 300;
        for (size_t k = 0; k < m && n + 16 < sizeof buf; k++) {
            uint64_t x = graft_rng_next(&r);
            if (x % 23 == 0) {
                const char *sp = specials[(x >> 8) % 6];
                memcpy(buf + n, sp, strlen(sp));
                n += strlen(sp);
                continue;
            }
            const uint32_t *rg = ranges[(x >> 8) % (sizeof ranges / sizeof ranges[0])];
            n += put_utf8(buf + n, rg[0] + (uint32_t)((x >> 20) % (rg[1] - rg[0] + 1)));
        }
        graft_ids ids = {0};
        char *s = NULL;
        size_t sl = 0;
        if (graft_tokenizer_encode(t, ws, buf, n, 0, &ids, &e) ||
            graft_tokenizer_decode(t, ids.data, ids.n, 0, &s, &sl, &e) || sl != n ||
            memcmp(s, buf, n)) {
            if (ok_all)
                fprintf(stderr, "  fuzz round trip failed at iteration %d (n %zu, sl %zu): %s\n",
                        it, n, sl, e.msg);
            if (ok_all && s)
                for (size_t q = 0; q < n && q < sl; q++)
                    if (s[q] != buf[q]) {
                        fprintf(stderr, "  first diff at byte %zu: %02x vs %02x\n", q,
                                (unsigned char)buf[q], (unsigned char)s[q]);
                        break;
                    }
            ok_all = 0;
        }
        free(s);
        /* random bytes */
        m = graft_rng_next(&r) % 64;
        for (size_t k = 0; k < m; k++) buf[k] = (char)(graft_rng_next(&r) & 0xFF);
        ids.n = 0;
        graft_status st = graft_tokenizer_encode(t, ws, buf, m, 0, &ids, &e);
        nocrash &= st == GRAFT_STATUS_OK || st == GRAFT_STATUS_BAD_INPUT;
        graft_ids_free(&ids);
    }
    CHECK(ok_all);
    CHECK(nocrash);
    graft_tok_ws_free(ws);
}

/* ---- malformed files ----------------------------------------------------------------------- */

static const char *write_tmp(const char *name, const char *content) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    fputs(content, f);
    fclose(f);
    return path;
}

/* A tiny valid tokenizer.json: 256 byte tokens, merges "a b" -> "ab", one added token. */
static char *tiny_json(const char *merges, const char *added, const char *extra_model) {
    size_t cap = 1 << 16;
    char *s = malloc(cap);
    size_t o = (size_t)snprintf(
        s, cap,
        "{\"version\":\"1.0\",\"added_tokens\":%s,\"normalizer\":{\"type\":\"NFC\"},"
        "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false},"
        "\"model\":{\"type\":\"BPE\"%s,\"vocab\":{",
        added, extra_model);
    int k = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : 0x100u + (uint32_t)k++;
        char u[8];
        if (cp < 0x80) {
            if (cp == '"' || cp == '\\')
                snprintf(u, sizeof u, "\\%c", (char)cp);
            else
                snprintf(u, sizeof u, "%c", (char)cp);
        } else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            u[2] = 0;
        }
        o += (size_t)snprintf(s + o, cap - o, "\"%s\":%d,", u, b);
    }
    o += (size_t)snprintf(s + o, cap - o, "\"ab\":256},\"merges\":%s}}", merges);
    return s;
}

static void expect_refusal(const char *json, const char *field) {
    const char *p = write_tmp("tokenizer.json", json);
    graft_tokenizer_t *t = NULL;
    graft_err e;
    graft_status st = graft_tokenizer_load(p, &t, &e);
    CHECK(st != GRAFT_STATUS_OK);
    CHECK(t == NULL);
    if (st != GRAFT_STATUS_OK) {
        CHECK_CONTAINS(e.msg, "tokenizer.json");
        CHECK_CONTAINS(e.msg, field);
    }
    graft_tokenizer_free(t);
}

static void test_malformed(void) {
    char *ok = tiny_json("[[\"a\",\"b\"]]",
                         "[{\"id\":257,\"content\":\"<|endoftext|>\",\"special\":true}]", "");
    const char *p = write_tmp("tokenizer.json", ok);
    graft_tokenizer_t *t = NULL;
    graft_err e;
    CHECK(graft_tokenizer_load(p, &t, &e) == GRAFT_STATUS_OK);
    if (t) {
        CHECK(graft_tokenizer_n_vocab(t) == 258);
        CHECK(graft_tokenizer_eot_id(t) == 257);
        graft_ids v = {0};
        CHECK(graft_tokenizer_encode(t, NULL, "xab<|endoftext|>", 16, 0, &v, &e) ==
              GRAFT_STATUS_OK);
        CHECK(v.n == 3 && v.data[1] == 256 && v.data[2] == 257);
        graft_ids_free(&v);
    }
    graft_tokenizer_free(t);
    free(ok);
    /* legacy string-form merges load too */
    ok = tiny_json("[\"a b\"]", "[]", "");
    p = write_tmp("tokenizer.json", ok);
    CHECK(graft_tokenizer_load(p, &t, &e) == GRAFT_STATUS_OK);
    graft_tokenizer_free(t);
    free(ok);

    struct {
        char *json;
        const char *field;
    } bad[] = {
        {tiny_json("[[\"a\",\"q\"]]", "[]", ""), "model.merges[0]"}, /* result "aq" not in vocab */
        {tiny_json("[[\"a\",\"zz\"]]", "[]", ""), "\"zz\" is not in the vocab"},
        {tiny_json("[\"ab\"]", "[]", ""), "model.merges[0]"}, /* string form without space */
        {tiny_json("[[\"a\"]]", "[]", ""), "model.merges[0]"},
        {tiny_json("{}", "[]", ""), "model.merges"},
        {tiny_json("[]", "[{\"id\":\"x\",\"content\":\"<s>\"}]", ""), "added_tokens[0].id"},
        {tiny_json("[]", "[{\"id\":300,\"content\":7}]", ""), "added_tokens[0].content"},
        {tiny_json("[]", "[{\"id\":300,\"content\":\"<s>\",\"special\":1}]", ""),
         "added_tokens[0].special"},
        {tiny_json("[]", "[{\"id\":5,\"content\":\"<s>\"}]", ""), "added_tokens[0].id"},
        {tiny_json("[]", "[]", ",\"dropout\":0.1"), "model.dropout"},
        {tiny_json("[]", "[]", ",\"byte_fallback\":true"), "model.byte_fallback"},
        {strdup("{\"model\": [1,2,"), "tokenizer.json:1:"},
        {strdup("{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":false,\"add_prefix_"
                "space\":false},"
                "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]}}"),
         "model.vocab"},
        {strdup("{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\"}}"),
         "pre_tokenizer.use_regex"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_refusal(bad[i].json, bad[i].field);
        free(bad[i].json);
    }
    /* non-dense ids and missing byte tokens */
    char *j = tiny_json("[]", "[]", "");
    char *q = strstr(j, "\"ab\":256");
    memcpy(q, "\"ab\":999", 8);
    expect_refusal(j, "ids must be dense");
    q = strstr(j, "\"ab\":999");
    memcpy(q, "\"ab\":000", 8);
    expect_refusal(j, "invalid JSON"); /* 000 is not JSON */
    q = strstr(j, "\"ab\":000");
    memcpy(q, "\"ab\":  0", 8);
    expect_refusal(j, "also used by");
    free(j);

    /* vocab.json + merges.txt: a bad line is named with its line number */
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/pair", tmpdir);
    mkdir(dir, 0755);
    char *full = tiny_json("[]", "[]", "");
    char *vs = strstr(full, "\"vocab\":") + 8;
    char *ve = strstr(vs, "},\"merges\"");
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    FILE *f = fopen(path, "wb");
    fwrite(vs, 1, (size_t)(ve - vs + 1), f);
    fclose(f);
    free(full);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    f = fopen(path, "wb");
    fputs("#version: 0.2\na b\n\na b\n", f);
    fclose(f);
    CHECK(graft_tokenizer_load(dir, &t, &e) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(e.msg, "merges.txt:3");
    f = fopen(path, "wb");
    fputs("#version: 0.2\na b\n", f);
    fclose(f);
    CHECK(graft_tokenizer_load(dir, &t, &e) == GRAFT_STATUS_OK);
    graft_tokenizer_free(t);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/test_tokenizer.XXXXXX", GRAFT_BUILD_DIR);
    CHECK(mkdtemp(tmpdir) != NULL);
    graft_tokenizer_t *t = NULL;
    graft_err e;
    graft_status st = graft_tokenizer_load(QWEN_DIR, &t, &e);
    CHECK(st == GRAFT_STATUS_OK);
    if (st) fprintf(stderr, "%s\n", e.msg);
    if (t) {
        CHECK(graft_tokenizer_n_vocab(t) == 151669);
        CHECK(graft_tokenizer_n_bpe(t) == 151643);
        CHECK(graft_tokenizer_eot_id(t) == 151643);
        CHECK(graft_tokenizer_added_id(t, "<think>") == 151667);
        test_vectors(t);
        test_special_as_text(t);
        test_decode(t);
        test_roundtrip(t);
        test_fuzz(t);
    }
    graft_tokenizer_free(t);
    test_malformed();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_finish("test_tokenizer");
}
