/* test_safetensors.c: every malformed case of spec/formats.md §4 (rows 1-23), each asserting its
 * message; the §1 worked example byte for byte; round trips; BF16 RNE and F16 subnormal cases.
 * Crafted files are generated into a mkdtemp directory (nothing binary is committed). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "test_util.h"

static char dir[256];

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) { perror(path); exit(1); }
    if (n) fwrite(p, 1, n, fp);
    fclose(fp);
}

/* A file of 8-byte length N, header text hdr (hn bytes) and `data` bytes of zeros. */
static void craft(const char *path, uint64_t N, const char *hdr, size_t hn, size_t data) {
    size_t total = 8 + hn + data;
    unsigned char *b = calloc(1, total);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(N >> (8 * i));
    memcpy(b + 8, hdr, hn);
    write_bytes(path, b, total);
    free(b);
}

/* Crafts a file with a header string (N = its length) and `data` zero bytes, opens it and
 * checks that the open fails with a message containing `want`. */
static void expect_bad_hdr(const char *label, const char *hdr, size_t hn, size_t data, const char *want) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, label);
    craft(path, hn, hdr, hn, data);
    graft_st_file_t *f = NULL;
    graft_err err;
    graft_status st = graft_st_open(path, &f, &err);
    CHECK(st == GRAFT_STATUS_BAD_INPUT);
    if (st == GRAFT_STATUS_OK) {
        fprintf(stderr, "case %s: accepted\n", label);
        graft_st_close(f);
        return;
    }
    CHECK_CONTAINS(err.msg, path);
    CHECK_CONTAINS(err.msg, want);
}
#define BAD(label, hdr, data, want) expect_bad_hdr(label, hdr, sizeof(hdr) - 1, data, want)

static void test_malformed(void) {
    char path[512];
    graft_st_file_t *f = NULL;
    graft_err err;
    /* 1: shorter than 8 bytes */
    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    write_bytes(path, "", 0);
    CHECK(graft_st_open(path, &f, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "@ byte 0: file: 0 bytes, expected at least 8");
    write_bytes(path, "abc", 3);
    CHECK(graft_st_open(path, &f, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "3 bytes, expected at least 8");
    /* 2: absurd N */
    snprintf(path, sizeof path, "%s/huge.safetensors", dir);
    craft(path, 0xFFFFFF0000000000ull, "{}", 2, 0);
    CHECK(graft_st_open(path, &f, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "header length: 18446742974197923840, expected at most 100000000");
    /* 3: N past EOF */
    craft(path, 1000, "{}", 2, 0);
    CHECK(graft_st_open(path, &f, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "1000 runs past the end of the file (10 bytes)");
    /* 4: N < 2 */
    craft(path, 0, "", 0, 0);
    CHECK(graft_st_open(path, &f, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "header length: 0, expected at least 2");
    /* 5: not UTF-8: 0xFF, an overlong, a surrogate, > U+10FFFF */
    BAD("utf8_ff", "{\"a\xff\":1}", 0, "@ byte 11: header: invalid UTF-8 (byte 0xFF)");
    BAD("utf8_overlong", "{\"\xc0\xaf\":1}", 0, "invalid UTF-8 (byte 0xC0)");
    BAD("utf8_overlong3", "{\"\xe0\x80\xaf\":1}", 0, "invalid UTF-8 (byte 0xE0)");
    BAD("utf8_surrogate", "{\"\xed\xa0\x80\":1}", 0, "invalid UTF-8 (byte 0xED)");
    BAD("utf8_big", "{\"\xf4\x90\x80\x80\":1}", 0, "invalid UTF-8 (byte 0xF4)");
    /* 6: leading garbage, BOM */
    BAD("bom", "\xef\xbb\xbf{}", 0, "@ byte 8: header: starts with byte 0xEF, expected '{'");
    BAD("leading", "  x{}", 0, "@ byte 10: header: starts with byte 0x78");
    /* leading and trailing whitespace is fine */
    {
        const char h[] = " \t\n{\"__metadata__\":{\"format\":\"pt\"}}\r\n ";
        snprintf(path, sizeof path, "%s/ws.safetensors", dir);
        craft(path, sizeof h - 1, h, sizeof h - 1, 0);
        CHECK(graft_st_open(path, &f, &err) == GRAFT_STATUS_OK);
        if (f) {
            CHECK(graft_st_count(f) == 0);
            CHECK(graft_st_metadata(f, "format") && !strcmp(graft_st_metadata(f, "format"), "pt"));
            graft_st_close(f);
        }
    }
    /* 7: not JSON, trailing garbage, NUL padding */
    BAD("notjson", "{\"a\":}", 0, "header: not JSON");
    BAD("trail_nul", "{}\0\0", 0, "@ byte 11: header: trailing byte 0x00 after the JSON object");
    BAD("trail_text", "{} x", 0, "trailing byte 0x78");
    BAD("two_objects", "{}{}", 0, "header: not JSON");
    /* 8: top level not an object */
    BAD("array", "[1,2]", 0, "starts with byte 0x5B");
    /* 9: duplicate keys, top level and nested */
    BAD("dup", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
        "duplicate object key");
    BAD("dup_meta", "{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "duplicate object key");
    BAD("dup_field", "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        1, "duplicate object key");
    /* 10: entry shape */
    BAD("entry_array", "{\"w\":[0,4]}", 0, "\"w\": entry is an array, expected an object");
    BAD("no_dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "\"w\": no \"dtype\"");
    BAD("extra", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1,
        "\"w\": extra field \"x\"");
    /* 11: unknown dtype, wrong case */
    BAD("bf16_lower", "{\"w\":{\"dtype\":\"bf16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
        "\"w\": unknown dtype \"bf16\", expected one of");
    BAD("f128", "{\"w\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
        "unknown dtype \"F128\"");
    /* 12: shape entries */
    BAD("shape_real", "{\"w\":{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2]}}", 2,
        "\"w\": shape[0] is a real number, expected a non-negative integer");
    BAD("shape_neg", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,2]}}", 2,
        "shape[0] is a negative integer");
    BAD("shape_str", "{\"w\":{\"dtype\":\"U8\",\"shape\":[\"2\"],\"data_offsets\":[0,2]}}", 2,
        "shape[0] is a string");
    BAD("shape_exp", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1e3],\"data_offsets\":[0,2]}}", 2,
        "shape[0] is a real number");
    BAD("shape_obj", "{\"w\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,2]}}", 2,
        "shape is an integer, expected an array");
    /* 13: overflow of count and bytes */
    BAD("ovf_count", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4,9223372036854775807],\"data_offsets\":[0,2]}}",
        2, "element count overflows 64 bits");
    BAD("ovf_bytes", "{\"w\":{\"dtype\":\"F64\",\"shape\":[2,4611686018427387903],\"data_offsets\":[0,2]}}",
        2, "overflows 64 bits");
    /* 14: sub-byte */
    BAD("f4_odd", "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
        "3 elements of F4 = 12 bits, expected a multiple of 8");
    /* 15: data_offsets shape */
    BAD("off_one", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1,
        "data_offsets is an array of the wrong length, expected exactly 2");
    BAD("off_three", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 1,
        "expected exactly 2 non-negative integers");
    BAD("off_neg", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 1,
        "data_offsets[0] is a negative integer");
    BAD("off_real", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", 1,
        "data_offsets[1] is a real number");
    /* 16: end < begin */
    BAD("end_before", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
        "@ byte 9: \"w\": data_offsets [8, 4]: end before begin");
    /* 17: size mismatch */
    BAD("size", "{\"w\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 4,
        "\"w\": data_offsets [0, 4] hold 4 bytes, expected 16 (4 elements of I32)");
    /* 18: gap, overlap, first not at 0 */
    BAD("gap", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}", 12,
        "\"b\": data_offsets [8, 12] begin at 8, expected 4 (a gap after the previous tensor)");
    BAD("overlap", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6,
        "\"b\": data_offsets [2, 6] begin at 2, expected 4 (overlaps the previous tensor)");
    BAD("first", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8,
        "begin at 4, expected 0 (the first tensor must start at 0)");
    /* 19: data shorter / longer */
    BAD("short", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3,
        "data buffer: 3 bytes after the header (file 64 bytes), expected 4 (the file is truncated)");
    BAD("long", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 5,
        "expected 4 (trailing bytes after the last tensor)");
    /* 20: metadata */
    BAD("meta_int", "{\"__metadata__\":{\"format\":1}}", 0,
        "__metadata__: value of \"format\" is an integer, expected a string");
    BAD("meta_arr", "{\"__metadata__\":[1]}", 0, "__metadata__: an array, expected an object");
    /* 21: names */
    BAD("name_nul", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
        "tensor name: contains U+0000");
    BAD("name_empty", "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
        "tensor name: empty");
    /* 22: numbers that do not fit */
    BAD("num_1e400", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1e400],\"data_offsets\":[0,1]}}", 1,
        "number does not fit");
    BAD("num_30", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,123456789012345678901234567890]}}",
        1, "number does not fit");
    /* 23: nesting */
    BAD("deep", "{\"w\":{\"dtype\":\"U8\",\"shape\":[[[[1]]]],\"data_offsets\":[0,1]}}", 1,
        "header: nesting deeper than 3 levels");
}

static void test_worked_example(void) {
    static const unsigned char want[100] = {
        0x58, 0, 0, 0, 0, 0, 0, 0, '{', '"', '_', '_', 'm', 'e', 't', 'a', 'd', 'a', 't', 'a',
        '_', '_', '"', ':', '{', '"', 'f', 'o', 'r', 'm', 'a', 't', '"', ':', '"', 'p', 't', '"',
        '}', ',', '"', 'w', '"', ':', '{', '"', 'd', 't', 'y', 'p', 'e', '"', ':', '"', 'B', 'F',
        '1', '6', '"', ',', '"', 's', 'h', 'a', 'p', 'e', '"', ':', '[', '2', ']', ',', '"', 'd',
        'a', 't', 'a', '_', 'o', 'f', 'f', 's', 'e', 't', 's', '"', ':', '[', '0', ',', '4', ']',
        '}', '}', ' ', ' ', 0x80, 0x3f, 0x00, 0xc0};
    char path[512];
    snprintf(path, sizeof path, "%s/example.safetensors", dir);
    float w[2] = {1.0f, -2.0f};
    graft_st_entry e = {.name = "w", .dtype = GRAFT_DTYPE_BF16, .ndim = 1, .shape = {2}, .f32 = w};
    graft_err err;
    CHECK(graft_st_write(path, &e, 1, NULL, &err) == GRAFT_STATUS_OK);
    unsigned char got[128];
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(got, 1, sizeof got, fp) : 0;
    if (fp) fclose(fp);
    CHECK(n == 100);
    CHECK(n == 100 && !memcmp(got, want, 100));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
}

static void test_conversions(void) {
    /* BF16 RNE: ties to even, rounding up, NaN, Inf */
    CHECK(graft_f32_to_bf16(1.0f) == 0x3F80);
    uint32_t u;
    float f;
    u = 0x3F808000u; memcpy(&f, &u, 4); CHECK(graft_f32_to_bf16(f) == 0x3F80); /* tie -> even */
    u = 0x3F818000u; memcpy(&f, &u, 4); CHECK(graft_f32_to_bf16(f) == 0x3F82); /* tie -> even up */
    u = 0x3F808001u; memcpy(&f, &u, 4); CHECK(graft_f32_to_bf16(f) == 0x3F81); /* above tie */
    u = 0x3F807FFFu; memcpy(&f, &u, 4); CHECK(graft_f32_to_bf16(f) == 0x3F80); /* below tie */
    u = 0x7FFFFFFFu; memcpy(&f, &u, 4); CHECK(graft_f32_to_bf16(f) == 0x7FC0); /* NaN */
    u = 0xFF800001u; memcpy(&f, &u, 4); CHECK(graft_f32_to_bf16(f) == 0x7FC0);
    CHECK(graft_f32_to_bf16(INFINITY) == 0x7F80);
    u = 0x7F7FFFFFu; memcpy(&f, &u, 4); CHECK(graft_f32_to_bf16(f) == 0x7F80); /* max -> Inf */
    CHECK(graft_f32_to_bf16(-2.0f) == 0xC000);
    CHECK(graft_bf16_to_f32(0xC000) == -2.0f);
    /* F16: normals, subnormals, rounding, overflow */
    CHECK(graft_f32_to_f16(1.0f) == 0x3C00);
    CHECK(graft_f32_to_f16(-2.0f) == 0xC000);
    CHECK(graft_f32_to_f16(65504.0f) == 0x7BFF);
    CHECK(graft_f32_to_f16(65519.0f) == 0x7BFF);
    CHECK(graft_f32_to_f16(65520.0f) == 0x7C00);
    CHECK(graft_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001);          /* smallest subnormal */
    CHECK(graft_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000);          /* tie -> even 0 */
    CHECK(graft_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);
    CHECK(graft_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002);          /* 1.5 ulp tie -> even 2 */
    CHECK(graft_f32_to_f16(ldexpf(1.0f, -14)) == 0x0400);          /* smallest normal */
    CHECK(graft_f32_to_f16(ldexpf(1023.0f, -24)) == 0x03FF);       /* largest subnormal */
    CHECK(graft_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3C00);   /* tie -> even */
    CHECK(graft_f32_to_f16(1.0f + ldexpf(3.0f, -11)) == 0x3C02);
    CHECK(graft_f32_to_f16(NAN) == 0x7E00);
    CHECK(graft_f32_to_f16(-INFINITY) == 0xFC00);
    CHECK(graft_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(graft_f16_to_f32(0x03FF) == ldexpf(1023.0f, -24));
    CHECK(graft_f16_to_f32(0x8400) == -ldexpf(1.0f, -14));
    CHECK(isinf(graft_f16_to_f32(0x7C00)));
    CHECK(isnan(graft_f16_to_f32(0x7E00)));
    /* exhaustive: every finite f16 round-trips */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        if (graft_f32_to_f16(graft_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0);
}

static void test_round_trip(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    float a[6] = {0.1f, -0.2f, 3.0f, 1e-7f, -65504.0f, 0.0f};
    int64_t ids[3] = {1, -2, 1ll << 40};
    graft_st_entry e[4] = {
        {.name = "b.bf16", .dtype = GRAFT_DTYPE_BF16, .ndim = 2, .shape = {2, 3}, .f32 = a},
        {.name = "a.f32", .dtype = GRAFT_DTYPE_F32, .ndim = 1, .shape = {6}, .f32 = a},
        {.name = "c.f16", .dtype = GRAFT_DTYPE_F16, .ndim = 3, .shape = {1, 2, 3}, .f32 = a},
        {.name = "ids", .dtype = GRAFT_DTYPE_I64, .ndim = 1, .shape = {3}, .raw = ids},
    };
    static const char *const meta[] = {"graft_version", "test", NULL, NULL};
    graft_err err;
    CHECK(graft_st_write(path, e, 4, meta, &err) == GRAFT_STATUS_OK);
    graft_st_file_t *f = NULL;
    CHECK(graft_st_open(path, &f, &err) == GRAFT_STATUS_OK);
    if (!f) { fprintf(stderr, "%s\n", err.msg); return; }
    CHECK(graft_st_count(f) == 4);
    CHECK((8 + graft_st_header_bytes(f)) % 8 == 0);
    /* HF order: I64 first, then F32, BF16, F16 */
    CHECK(!strcmp(graft_st_get(f, 0)->name, "ids"));
    CHECK(!strcmp(graft_st_get(f, 1)->name, "a.f32"));
    CHECK(!strcmp(graft_st_get(f, 2)->name, "b.bf16"));
    CHECK(!strcmp(graft_st_get(f, 3)->name, "c.f16"));
    CHECK(!strcmp(graft_st_metadata(f, "format"), "pt"));
    CHECK(!strcmp(graft_st_metadata(f, "graft_version"), "test"));
    float out[6], ref[6];
    const graft_st_tensor *t = graft_st_find(f, "a.f32");
    CHECK(t && graft_st_read_f32(f, t, out, 6, &err) == GRAFT_STATUS_OK);
    CHECK(!memcmp(out, a, sizeof a));
    t = graft_st_find(f, "b.bf16");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && graft_st_read_f32(f, t, out, 6, &err) == GRAFT_STATUS_OK);
    for (int i = 0; i < 6; i++) ref[i] = graft_bf16_to_f32(graft_f32_to_bf16(a[i]));
    CHECK(!memcmp(out, ref, sizeof ref));
    t = graft_st_find(f, "c.f16");
    CHECK(t && graft_st_read_f32(f, t, out, 6, &err) == GRAFT_STATUS_OK);
    for (int i = 0; i < 6; i++) ref[i] = graft_f16_to_f32(graft_f32_to_f16(a[i]));
    CHECK(!memcmp(out, ref, sizeof ref));
    t = graft_st_find(f, "ids");
    CHECK(t && !memcmp(graft_st_data(f, t), ids, sizeof ids));
    CHECK(t && !strcmp(t->dtype_name, "I64"));
    /* row 24: integer tensors are readable raw but not as weights */
    CHECK(t && graft_st_read_f32(f, t, out, 3, &err) == GRAFT_STATUS_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "unsupported dtype I64 for tensor ids");
    CHECK(graft_st_find(f, "nope") == NULL);
    graft_st_close(f);

    /* valid-but-unsupported dtypes open fine; empty tensors share offsets */
    const char h[] = "{\"e1\":{\"dtype\":\"F8_E4M3\",\"shape\":[0],\"data_offsets\":[0,0]},"
                     "\"x\":{\"dtype\":\"U16\",\"shape\":[],\"data_offsets\":[0,2]},"
                     "\"e2\":{\"dtype\":\"BOOL\",\"shape\":[3,0],\"data_offsets\":[2,2]}}";
    snprintf(path, sizeof path, "%s/odd.safetensors", dir);
    craft(path, sizeof h - 1, h, sizeof h - 1, 2);
    CHECK(graft_st_open(path, &f, &err) == GRAFT_STATUS_OK);
    if (f) {
        CHECK(graft_st_count(f) == 3);
        t = graft_st_find(f, "x");
        CHECK(t && t->ndim == 0 && !t->known_dtype);
        CHECK(t && graft_st_read_f32(f, t, out, 1, &err) == GRAFT_STATUS_UNSUPPORTED);
        CHECK_CONTAINS(err.msg, "unsupported dtype U16 for tensor x");
        graft_st_close(f);
    }

    /* writer refusals: duplicate names, leaving no .tmp behind */
    graft_st_entry d[2] = {
        {.name = "w", .dtype = GRAFT_DTYPE_F32, .ndim = 1, .shape = {1}, .f32 = a},
        {.name = "w", .dtype = GRAFT_DTYPE_BF16, .ndim = 1, .shape = {1}, .f32 = a},
    };
    snprintf(path, sizeof path, "%s/dup_write.safetensors", dir);
    CHECK(graft_st_write(path, d, 2, NULL, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "tensor \"w\": given twice");
    CHECK(access(path, F_OK) != 0);
    /* write into a missing directory fails with the path */
    snprintf(path, sizeof path, "%s/no/such/dir.safetensors", dir);
    CHECK(graft_st_write(path, d, 1, NULL, &err) == GRAFT_STATUS_IO);
    CHECK_CONTAINS(err.msg, "cannot create");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/graft_test_st_XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_malformed();
    test_worked_example();
    test_conversions();
    test_round_trip();
    if (!test_failures_) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "cleanup of %s failed\n", dir);
    }
    return test_finish("test_safetensors");
}
