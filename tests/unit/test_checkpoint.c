/* test_checkpoint.c: the sharded writer (layout, index, stale shards) and every index check of
 * spec/formats.md §6.3 (rows 1-10), each asserting its message. Files are generated in mkdtemp. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "test_util.h"

static char dir[256];
static float vals[64];

static void put(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) { perror(path); exit(1); }
    fputs(text, fp);
    fclose(fp);
}

static int exists(const char *d, const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", d, name);
    return access(p, F_OK) == 0;
}

/* Four F32 tensors of 64 bytes each, written sharded at 128 bytes -> 2 shards. */
static void write_model(const char *d, uint64_t max_shard) {
    graft_st_entry e[4] = {
        {.name = "a", .dtype = GRAFT_DTYPE_F32, .ndim = 1, .shape = {16}, .f32 = vals},
        {.name = "b", .dtype = GRAFT_DTYPE_F32, .ndim = 2, .shape = {4, 4}, .f32 = vals + 16},
        {.name = "c", .dtype = GRAFT_DTYPE_F32, .ndim = 1, .shape = {16}, .f32 = vals + 32},
        {.name = "d", .dtype = GRAFT_DTYPE_F32, .ndim = 1, .shape = {16}, .f32 = vals + 48},
    };
    graft_err err;
    CHECK(graft_ckpt_write(d, e, 4, max_shard, NULL, &err) == GRAFT_STATUS_OK);
}

static void expect_bad_index(const char *sub, const char *index_text, const char *want) {
    char d[512], p[600];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    if (index_text) { /* NULL: the caller prepared the directory */
        write_model(d, 128);
        put(p, index_text);
    }
    graft_ckpt_t *c = NULL;
    graft_err err;
    CHECK(graft_ckpt_open(d, &c, &err) != GRAFT_STATUS_OK);
    if (c) { fprintf(stderr, "case %s accepted\n", sub); graft_ckpt_close(c); return; }
    CHECK_CONTAINS(err.msg, want);
}

#define S1 "model-00001-of-00002.safetensors"
#define S2 "model-00002-of-00002.safetensors"
#define WM(a, b, c_, d_) "{\"metadata\":{\"total_size\":256},\"weight_map\":{\"a\":\"" a "\",\"b\":\"" b \
    "\",\"c\":\"" c_ "\",\"d\":\"" d_ "\"}}"

static void test_writer_and_reader(void) {
    char d[512], p[600];
    graft_err err;
    graft_ckpt_t *c = NULL;
    snprintf(d, sizeof d, "%s/sharded", dir);
    write_model(d, 128);
    CHECK(exists(d, S1) && exists(d, S2) && exists(d, "model.safetensors.index.json"));
    CHECK(!exists(d, "model.safetensors"));
    /* exact index text: sorted keys, 2-space indent, trailing newline */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    FILE *fp = fopen(p, "r");
    char buf[1024] = {0};
    if (fp) { size_t n = fread(buf, 1, sizeof buf - 1, fp); buf[n] = 0; fclose(fp); }
    CHECK(!strcmp(buf, "{\n  \"metadata\": {\n    \"total_size\": 256\n  },\n  \"weight_map\": {\n"
                       "    \"a\": \"" S1 "\",\n    \"b\": \"" S1 "\",\n    \"c\": \"" S2 "\",\n"
                       "    \"d\": \"" S2 "\"\n  }\n}\n"));
    CHECK(graft_ckpt_open(d, &c, &err) == GRAFT_STATUS_OK);
    if (c) {
        CHECK(graft_ckpt_count(c) == 4 && graft_ckpt_n_files(c) == 2);
        CHECK(!strcmp(graft_ckpt_warnings(c), ""));
        const graft_st_file_t *f;
        const graft_st_tensor *t = graft_ckpt_find(c, "c", &f);
        float out[16];
        CHECK(t && graft_st_read_f32(f, t, out, 16, &err) == GRAFT_STATUS_OK);
        CHECK(t && !memcmp(out, vals + 32, sizeof out));
        CHECK(!strcmp(graft_ckpt_get(c, 3, NULL)->name, "d"));
        graft_ckpt_close(c);
    }
    /* open through the index path too */
    CHECK(graft_ckpt_open(p, &c, &err) == GRAFT_STATUS_OK);
    graft_ckpt_close(c);
    /* re-save as one file: shards and index removed */
    write_model(d, 0);
    CHECK(exists(d, "model.safetensors") && !exists(d, S1) && !exists(d, S2) &&
          !exists(d, "model.safetensors.index.json"));
    CHECK(graft_ckpt_open(d, &c, &err) == GRAFT_STATUS_OK);
    if (c) CHECK(graft_ckpt_count(c) == 4 && graft_ckpt_n_files(c) == 1);
    graft_ckpt_close(c);
    /* re-save in 4 shards: old single file removed, old 2-shard names gone */
    write_model(d, 64);
    CHECK(exists(d, "model-00004-of-00004.safetensors") && !exists(d, "model.safetensors"));
    write_model(d, 128);
    CHECK(!exists(d, "model-00004-of-00004.safetensors") && exists(d, S2));
    /* a tensor larger than the limit gets its own shard */
    snprintf(d, sizeof d, "%s/small_limit", dir);
    write_model(d, 10);
    CHECK(exists(d, "model-00004-of-00004.safetensors"));
    /* ambiguous directory, empty directory */
    snprintf(d, sizeof d, "%s/ambiguous", dir);
    write_model(d, 128);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    put(p, "x");
    CHECK(graft_ckpt_open(d, &c, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "both model.safetensors and model.safetensors.index.json");
    snprintf(d, sizeof d, "%s/emptydir", dir);
    mkdir(d, 0777);
    CHECK(graft_ckpt_open(d, &c, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "no model.safetensors or model.safetensors.index.json");
}

static void test_index_checks(void) {
    /* 1: not JSON, not an object, duplicate keys, not UTF-8 */
    expect_bad_index("i1a", "{\"weight_map\": ", "model.safetensors.index.json:1:");
    expect_bad_index("i1b", "[1]", "top level: not an object");
    expect_bad_index("i1c", "{\"weight_map\":{\"a\":\"" S1 "\",\"a\":\"" S1 "\"}}", "duplicate");
    expect_bad_index("i1d", "{\"weight_map\":{\"a\xff\":\"" S1 "\"}}", "model.safetensors.index.json:1:");
    /* 2: weight_map missing or not string -> string */
    expect_bad_index("i2a", "{\"metadata\":{}}", "weight_map: missing, expected an object");
    expect_bad_index("i2b", "{\"weight_map\":[]}", "weight_map: not an object");
    expect_bad_index("i2c", "{\"weight_map\":{\"a\":1}}", "weight_map[\"a\"]: not a string");
    /* 3: shard names */
    expect_bad_index("i3a", "{\"weight_map\":{\"a\":\"\"}}", "shard name \"\", expected a bare file name");
    expect_bad_index("i3b", "{\"weight_map\":{\"a\":\"/etc/x.safetensors\"}}", "shard name \"/etc/x.safetensors\"");
    expect_bad_index("i3c", "{\"weight_map\":{\"a\":\"../x.safetensors\"}}", "shard name \"../x.safetensors\"");
    expect_bad_index("i3d", "{\"weight_map\":{\"a\":\"a\\\\b.safetensors\"}}", "shard name");
    expect_bad_index("i3e", "{\"weight_map\":{\"a\":\"x.bin\"}}", "shard name \"x.bin\"");
    /* 4: missing shard, naming the tensors that needed it */
    expect_bad_index("i4", WM(S1, S1, "model-00009-of-00009.safetensors", "model-00009-of-00009.safetensors"),
                     "model-00009-of-00009.safetensors: No such file or directory, expected a "
                     "readable file (needed for \"c\", \"d\")");
    /* 5: a shard fails a §4 check */
    {
        char p[600];
        snprintf(p, sizeof p, "%s/i5", dir);
        write_model(p, 128);
        snprintf(p, sizeof p, "%s/i5/" S2, dir);
        put(p, "short");
        expect_bad_index("i5", NULL, "file: 5 bytes, expected at least 8");
    }
    /* 6: listed tensor not in the shard it names */
    expect_bad_index("i6", WM(S1, S2, S2, S2), "\"b\": not in");
    /* 7: shard tensor not listed */
    expect_bad_index("i7", "{\"weight_map\":{\"a\":\"" S1 "\",\"c\":\"" S2 "\",\"d\":\"" S2 "\"}}",
                     "\"b\": in ");
    expect_bad_index("i7b", "{\"weight_map\":{\"a\":\"" S1 "\",\"c\":\"" S2 "\",\"d\":\"" S2 "\"}}",
                     "but not in weight_map");
    /* 8: same tensor in two shards */
    {
        char d[512];
        snprintf(d, sizeof d, "%s/i8", dir);
        write_model(d, 128);
        /* rewrite shard 2 so that it also holds "a" */
        char p[600];
        snprintf(p, sizeof p, "%s/" S2, d);
        graft_st_entry e[3] = {
            {.name = "a", .dtype = GRAFT_DTYPE_F32, .ndim = 1, .shape = {16}, .f32 = vals},
            {.name = "c", .dtype = GRAFT_DTYPE_F32, .ndim = 1, .shape = {16}, .f32 = vals},
            {.name = "d", .dtype = GRAFT_DTYPE_F32, .ndim = 1, .shape = {16}, .f32 = vals},
        };
        graft_err err;
        CHECK(graft_st_write(p, e, 3, NULL, &err) == GRAFT_STATUS_OK);
        expect_bad_index("i8", NULL, "\"a\": in both " S2 " and " S1);
    }
    /* 9: metadata / total_size types */
    expect_bad_index("i9a", "{\"metadata\":[],\"weight_map\":{}}", "metadata: not an object");
    expect_bad_index("i9b", "{\"metadata\":{\"total_size\":-1},\"weight_map\":{}}",
                     "metadata.total_size: not a non-negative integer");
    expect_bad_index("i9c", "{\"metadata\":{\"total_size\":1.5},\"weight_map\":{}}",
                     "metadata.total_size: not a non-negative integer");
    /* 10: total_size mismatch is a warning */
    {
        char d[512], p[600];
        snprintf(d, sizeof d, "%s/i10", dir);
        write_model(d, 128);
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
        put(p, "{\"metadata\":{\"total_size\":999},\"weight_map\":{\"a\":\"" S1 "\",\"b\":\"" S1
               "\",\"c\":\"" S2 "\",\"d\":\"" S2 "\"}}");
        graft_ckpt_t *c = NULL;
        graft_err err;
        CHECK(graft_ckpt_open(d, &c, &err) == GRAFT_STATUS_OK);
        if (c) CHECK_CONTAINS(graft_ckpt_warnings(c), "metadata.total_size: 999, expected 256");
        graft_ckpt_close(c);
    }
}

int main(void) {
    for (int i = 0; i < 64; i++) vals[i] = (float)i * 0.25f - 3.0f;
    snprintf(dir, sizeof dir, "/tmp/graft_test_ckpt_XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_writer_and_reader();
    test_index_checks();
    if (!test_failures_) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "cleanup of %s failed\n", dir);
    }
    return test_finish("test_checkpoint");
}
