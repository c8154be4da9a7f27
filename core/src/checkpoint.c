/* checkpoint.c: a model's weights as one name-sorted view over model.safetensors or
 * model.safetensors.index.json + shards (spec/formats.md §6), and the sharded writer (§6.4).
 *
 * Not here: the checks of one file (safetensors.c) and which tensors a model needs (model code,
 * cmd_inspect.c). Mirrors transformers' lookup: model.safetensors first, then the index; graft
 * refuses a directory with both instead of guessing.
 */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define MAX_INDEX_BYTES (64u << 20)

typedef struct { const char *name; const graft_st_tensor *t; int64_t file; } ckpt_item;

struct graft_ckpt {
    int64_t nf;
    graft_st_file_t **files;
    int64_t n;
    ckpt_item *items; /* name order */
    char *warnings;
};

static graft_status oom(graft_err *err, const char *path) {
    return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
}

void graft_ckpt_close(graft_ckpt_t *c) {
    if (!c) return;
    for (int64_t i = 0; i < c->nf; i++) graft_st_close(c->files[i]);
    free(c->files);
    free(c->items);
    free(c->warnings);
    free(c);
}

int64_t graft_ckpt_count(const graft_ckpt_t *c) { return c->n; }
int64_t graft_ckpt_n_files(const graft_ckpt_t *c) { return c->nf; }
const graft_st_file_t *graft_ckpt_file(const graft_ckpt_t *c, int64_t i) {
    return i >= 0 && i < c->nf ? c->files[i] : NULL;
}
const char *graft_ckpt_warnings(const graft_ckpt_t *c) { return c->warnings ? c->warnings : ""; }

const graft_st_tensor *graft_ckpt_get(const graft_ckpt_t *c, int64_t i, const graft_st_file_t **file) {
    if (i < 0 || i >= c->n) return NULL;
    if (file) *file = c->files[c->items[i].file];
    return c->items[i].t;
}

const graft_st_tensor *graft_ckpt_find(const graft_ckpt_t *c, const char *name,
                                       const graft_st_file_t **file) {
    int64_t lo = 0, hi = c->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->items[mid].name, name);
        if (!r) {
            if (file) *file = c->files[c->items[mid].file];
            return c->items[mid].t;
        }
        if (r < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

static int cmp_item(const void *a, const void *b) {
    return strcmp(((const ckpt_item *)a)->name, ((const ckpt_item *)b)->name);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Fills items from all files; tensor names must be unique across files (the index path checks
 * this with better messages before). */
static graft_status build_items(graft_ckpt_t *c, const char *path, graft_err *err) {
    int64_t total = 0;
    for (int64_t i = 0; i < c->nf; i++) total += graft_st_count(c->files[i]);
    c->items = malloc((size_t)(total ? total : 1) * sizeof *c->items);
    if (!c->items) return oom(err, path);
    for (int64_t i = 0; i < c->nf; i++)
        for (int64_t k = 0; k < graft_st_count(c->files[i]); k++) {
            const graft_st_tensor *t = graft_st_get(c->files[i], k);
            c->items[c->n++] = (ckpt_item){t->name, t, i};
        }
    qsort(c->items, (size_t)c->n, sizeof *c->items, cmp_item);
    for (int64_t i = 1; i < c->n; i++)
        if (!strcmp(c->items[i].name, c->items[i - 1].name))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": in both %s and %s, "
                                 "expected in one shard", path, c->items[i].name,
                                 graft_st_path(c->files[c->items[i - 1].file]),
                                 graft_st_path(c->files[c->items[i].file]));
    return GRAFT_STATUS_OK;
}

static int shard_name_ok(const char *s) {
    return *s && s[0] != '/' && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..") &&
           ends_with(s, ".safetensors") && strlen(s) > strlen(".safetensors");
}

/* The tensors weight_map assigns to `shard`, for the "missing shard" message. */
static void needed_by(json_t *wm, const char *shard, char *dst, size_t cap) {
    const char *k;
    json_t *v;
    size_t used = 0, count = 0;
    dst[0] = 0;
    json_object_foreach(wm, k, v) {
        if (strcmp(json_string_value(v), shard)) continue;
        if (count < 3) {
            int w = snprintf(dst + used, cap - used, "%s\"%s\"", count ? ", " : "", k);
            if (w > 0 && (size_t)w < cap - used) used += (size_t)w;
        }
        count++;
    }
    if (count > 3) snprintf(dst + used, cap - used, " and %zu more", count - 3);
}

static graft_status open_index(graft_ckpt_t *c, const char *path, graft_err *err) {
    json_error_t je;
    struct stat sb;
    if (stat(path, &sb))
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    if (sb.st_size > (off_t)MAX_INDEX_BYTES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %lld bytes, expected at most %u",
                             path, (long long)sb.st_size, MAX_INDEX_BYTES);
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%d:%d: %s, expected a UTF-8 JSON "
                             "object with unique keys", path, je.line, je.column, je.text);
    graft_status st = GRAFT_STATUS_OK;
    char *dir = NULL;
    const char **shards = NULL;
    size_t ns = 0;
    if (!json_is_object(root)) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: top level: not an object, expected "
                           "{\"metadata\": ..., \"weight_map\": ...}", path);
        goto out;
    }
    json_t *md = json_object_get(root, "metadata");
    int64_t total_size = -1;
    if (md && !json_is_null(md)) {
        if (!json_is_object(md)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: metadata: not an object, "
                               "expected an object", path);
            goto out;
        }
        json_t *ts = json_object_get(md, "total_size");
        if (ts && (!json_is_integer(ts) || json_integer_value(ts) < 0)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: metadata.total_size: not a "
                               "non-negative integer, expected the tensor data bytes", path);
            goto out;
        }
        if (ts) total_size = json_integer_value(ts);
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: weight_map: %s, expected an object "
                           "of tensor name -> shard file", path, wm ? "not an object" : "missing");
        goto out;
    }
    size_t nw = json_object_size(wm);
    shards = calloc(nw ? nw : 1, sizeof *shards);
    if (!shards) { st = oom(err, path); goto out; }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: weight_map[\"%s\"]: not a "
                               "string, expected a shard file name", path, key);
            goto out;
        }
        const char *s = json_string_value(val);
        if (!shard_name_ok(s) || strlen(s) != json_string_length(val)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: weight_map[\"%s\"]: shard name "
                               "\"%s\", expected a bare file name ending in .safetensors (no /, "
                               "\\ or ..)", path, key, s);
            goto out;
        }
        size_t k = 0;
        while (k < ns && strcmp(shards[k], s)) k++;
        if (k == ns) shards[ns++] = s;
    }
    const char *slash = strrchr(path, '/');
    dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    c->files = calloc(ns ? ns : 1, sizeof *c->files);
    if (!dir || !c->files) { st = oom(err, path); goto out; }
    for (size_t k = 0; k < ns; k++) {
        char *sp = join(dir, shards[k]);
        if (!sp) { st = oom(err, path); goto out; }
        graft_err e2;
        if (access(sp, R_OK)) {
            char needs[512];
            needed_by(wm, shards[k], needs, sizeof needs);
            st = graft_err_set(err, GRAFT_STATUS_IO, "%s: shard %s: %s, expected a readable file "
                               "(needed for %s)", path, sp, strerror(errno), needs);
            free(sp);
            goto out;
        }
        st = graft_st_open(sp, &c->files[c->nf], &e2);
        free(sp);
        if (st) {
            graft_err_set(err, st, "%.200s: %.800s", path, e2.msg);
            goto out;
        }
        c->nf++;
    }
    /* every listed tensor is where the index says (§6.3 row 6) */
    uint64_t sum = 0;
    json_object_foreach(wm, key, val) {
        size_t k = 0;
        while (strcmp(shards[k], json_string_value(val))) k++;
        if (!graft_st_find(c->files[k], key)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": not in %s, expected "
                               "there (weight_map)", path, key, graft_st_path(c->files[k]));
            goto out;
        }
    }
    /* every shard tensor is listed, for that shard (rows 7 and 8) */
    for (size_t k = 0; k < ns; k++) {
        for (int64_t i = 0; i < graft_st_count(c->files[k]); i++) {
            const graft_st_tensor *t = graft_st_get(c->files[k], i);
            sum += t->end - t->begin;
            json_t *w = json_object_get(wm, t->name);
            if (!w) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": in %s but not in "
                                   "weight_map, expected every shard tensor listed", path,
                                   t->name, graft_st_path(c->files[k]));
                goto out;
            }
            if (strcmp(json_string_value(w), shards[k])) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": in both %s and %s, "
                                   "expected in one shard (weight_map names %s)", path, t->name,
                                   shards[k], json_string_value(w), json_string_value(w));
                goto out;
            }
        }
    }
    if (total_size >= 0 && (uint64_t)total_size != sum) {
        char w[512];
        snprintf(w, sizeof w, "%s: metadata.total_size: %lld, expected %llu (sum of tensor data "
                 "bytes; ignored)\n", path, (long long)total_size, (unsigned long long)sum);
        c->warnings = strdup(w);
    }
    st = build_items(c, path, err);
out:
    free(shards);
    free(dir);
    json_decref(root);
    return st;
}

graft_status graft_ckpt_open(const char *path, graft_ckpt_t **out, graft_err *err) {
    *out = NULL;
    graft_ckpt_t *c = calloc(1, sizeof *c);
    if (!c) return oom(err, path);
    graft_status st;
    struct stat sb;
    if (stat(path, &sb)) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        char *single = join(path, SINGLE_NAME), *index = join(path, INDEX_NAME);
        if (!single || !index) {
            st = oom(err, path);
        } else {
            int hs = !access(single, F_OK), hi = !access(index, F_OK);
            if (hs && hi)
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: both %s and %s, expected "
                                   "one of them (ambiguous checkpoint)", path, SINGLE_NAME,
                                   INDEX_NAME);
            else if (!hs && !hi)
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: no %s or %s, expected a "
                                   "model directory", path, SINGLE_NAME, INDEX_NAME);
            else if (hi)
                st = open_index(c, index, err);
            else
                st = GRAFT_STATUS_OK;
            if (!st && hs) {
                c->files = calloc(1, sizeof *c->files);
                st = c->files ? graft_st_open(single, &c->files[0], err) : oom(err, path);
                if (!st) c->nf = 1, st = build_items(c, single, err);
            }
        }
        free(single);
        free(index);
    } else if (ends_with(path, ".json")) {
        st = open_index(c, path, err);
    } else {
        c->files = calloc(1, sizeof *c->files);
        st = c->files ? graft_st_open(path, &c->files[0], err) : oom(err, path);
        if (!st) c->nf = 1, st = build_items(c, path, err);
    }
    if (st) {
        graft_ckpt_close(c);
        return st;
    }
    *out = c;
    return GRAFT_STATUS_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

static graft_status fsync_dir(const char *dir, graft_err *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", dir, strerror(errno));
    fsync(fd);
    close(fd);
    return GRAFT_STATUS_OK;
}

static void json_escape(FILE *fp, const char *s) {
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(fp, "\\%c", ch);
        else if (ch < 0x20) fprintf(fp, "\\u%04x", ch);
        else fputc(ch, fp);
    }
    fputc('"', fp);
}

typedef struct { const char *name; int64_t shard; } wm_item;
static int cmp_wm(const void *a, const void *b) {
    return strcmp(((const wm_item *)a)->name, ((const wm_item *)b)->name);
}

static graft_status write_index(const char *path, const graft_st_entry *entries, int64_t n,
                                const int64_t *shard_of, int64_t n_shards, uint64_t total,
                                graft_err *err) {
    wm_item *w = malloc((size_t)(n ? n : 1) * sizeof *w);
    if (!w) return oom(err, path);
    for (int64_t i = 0; i < n; i++) w[i] = (wm_item){entries[i].name, shard_of[i]};
    qsort(w, (size_t)n, sizeof *w, cmp_wm);
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) { free(w); return oom(err, path); }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    graft_status st = GRAFT_STATUS_OK;
    FILE *fp = fopen(tmp, "w");
    if (!fp) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    fprintf(fp, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
            (unsigned long long)total);
    for (int64_t i = 0; i < n; i++) {
        fprintf(fp, "%s\n    ", i ? "," : "");
        json_escape(fp, w[i].name);
        fprintf(fp, ": \"model-%05lld-of-%05lld.safetensors\"", (long long)w[i].shard + 1,
                (long long)n_shards);
    }
    fprintf(fp, "\n  }\n}\n");
    int bad = ferror(fp) || fflush(fp) || fsync(fileno(fp));
    bad |= fclose(fp) != 0;
    if (bad || rename(tmp, path)) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", tmp, strerror(errno));
        unlink(tmp);
    }
out:
    free(tmp);
    free(w);
    return st;
}

/* Removes model-*-of-*.safetensors files (and a stale single file / index) that the new save
 * does not name. `keep_shards` = number of shards just written (0 for a single file). */
static void remove_stale(const char *dir, int64_t keep_shards) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char want[64];
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        int stale = 0;
        if (!strncmp(nm, "model-", 6) && ends_with(nm, ".safetensors") && strstr(nm, "-of-")) {
            stale = 1;
            for (int64_t k = 0; k < keep_shards && stale; k++) {
                snprintf(want, sizeof want, "model-%05lld-of-%05lld.safetensors", (long long)k + 1,
                         (long long)keep_shards);
                if (!strcmp(nm, want)) stale = 0;
            }
        } else if (keep_shards && !strcmp(nm, SINGLE_NAME)) {
            stale = 1;
        } else if (!keep_shards && !strcmp(nm, INDEX_NAME)) {
            stale = 1;
        }
        if (stale) {
            char *p = join(dir, nm);
            if (p) unlink(p);
            free(p);
        }
    }
    closedir(d);
}

graft_status graft_ckpt_write(const char *dir, const graft_st_entry *entries, int64_t n,
                              uint64_t max_shard_bytes, const char *const *meta, graft_err *err) {
    if (mkdir(dir, 0777) && errno != EEXIST)
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot create directory: %s", dir,
                             strerror(errno));
    uint64_t total = 0;
    int64_t *shard_of = malloc((size_t)(n ? n : 1) * sizeof *shard_of);
    if (!shard_of) return oom(err, dir);
    int64_t n_shards = 0;
    uint64_t cur = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t b = graft_st_entry_bytes(&entries[i]);
        if (n_shards == 0 || (max_shard_bytes && cur > 0 && cur + b > max_shard_bytes)) {
            n_shards++;
            cur = 0;
        }
        cur += b;
        total += b;
        shard_of[i] = n_shards - 1;
    }
    graft_status st = GRAFT_STATUS_OK;
    char name[64];
    if (n_shards <= 1) {
        char *p = join(dir, SINGLE_NAME);
        st = p ? graft_st_write(p, entries, n, meta, err) : oom(err, dir);
        free(p);
        if (!st) remove_stale(dir, 0);
    } else {
        int64_t start = 0;
        for (int64_t k = 0; k < n_shards && !st; k++) {
            int64_t end = start;
            while (end < n && shard_of[end] == k) end++;
            snprintf(name, sizeof name, "model-%05lld-of-%05lld.safetensors", (long long)k + 1,
                     (long long)n_shards);
            char *p = join(dir, name);
            st = p ? graft_st_write(p, entries + start, end - start, meta, err) : oom(err, dir);
            free(p);
            start = end;
        }
        if (!st) {
            char *p = join(dir, INDEX_NAME);
            st = p ? write_index(p, entries, n, shard_of, n_shards, total, err) : oom(err, dir);
            free(p);
        }
        if (!st) remove_stale(dir, n_shards);
    }
    if (!st) st = fsync_dir(dir, err);
    free(shard_of);
    return st;
}
