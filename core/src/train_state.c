/* train_state.c: save and load of a training checkpoint directory (layout and crash rules in
 * train_state.h). safetensors.c does the tensor files, fsutil.c the atomic publication, jansson
 * the JSON (64-bit integers exact; uint64 RNG words as decimal strings since JSON integers are
 * signed 64-bit in jansson). */
#include "train_state.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"

#define PATH_BYTES 4096

static const char *const W_FILE = "weights.safetensors";
static const char *const O_FILE = "optimizer.safetensors";
static const char *const J_FILE = "state.json";

/* out (PATH_BYTES) = a/b; callers keep directory names 32 bytes shorter than PATH_BYTES. */
static void join(char *out, const char *a, const char *b) {
    if (snprintf(out, PATH_BYTES, "%s/%s", a, b) >= PATH_BYTES) out[PATH_BYTES - 1] = 0;
}

static graft_status check_tensor(const char *dir, const char *what, const graft_named_tensor *t, graft_err *err) {
    if (!t->name || !*t->name || (t->numel > 0 && !t->data) || t->ndim < 0 || t->ndim > GRAFT_ST_MAX_DIMS)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s \"%s\": missing name/data or ndim %d", dir, what,
                             t->name ? t->name : "(null)", (int)t->ndim);
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || (t->shape[i] > 0 && n > INT64_MAX / t->shape[i]))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s \"%s\": bad shape", dir, what, t->name);
        n *= t->shape[i];
    }
    if (n != t->numel)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s \"%s\": numel %lld, shape has %lld", dir, what,
                             t->name, (long long)t->numel, (long long)n);
    return GRAFT_STATUS_OK;
}

static const graft_named_tensor *find_weight(const graft_train_state *st, const char *name) {
    for (int64_t i = 0; i < st->n_weights; i++)
        if (!strcmp(st->weights[i].name, name)) return &st->weights[i];
    return NULL;
}

static graft_status validate(const char *dir, const graft_train_state *st, graft_err *err) {
    graft_status s;
    if (st->n_weights < 0 || st->n_opt < 0 || st->n_cursor < 0 || st->n_cursor > GRAFT_TRAIN_STATE_MAX_CURSOR ||
        st->n_rng < 0 || st->n_rng > GRAFT_TRAIN_STATE_MAX_RNG || (st->n_cursor && !st->data_cursor) ||
        (st->n_rng && !st->rng_state) || !memchr(st->recipe_hash, 0, sizeof st->recipe_hash))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: train state: bad counts or arrays", dir);
    for (int64_t i = 0; i < st->n_weights; i++) {
        if ((s = check_tensor(dir, "weight", &st->weights[i], err))) return s;
        for (int64_t j = 0; j < i; j++)
            if (!strcmp(st->weights[i].name, st->weights[j].name))
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: weight \"%s\": duplicate name", dir,
                                     st->weights[i].name);
    }
    for (int64_t i = 0; i < st->n_opt; i++) {
        if ((s = check_tensor(dir, "exp_avg", &st->m[i], err)) || (s = check_tensor(dir, "exp_avg_sq", &st->v[i], err)))
            return s;
        const graft_named_tensor *w = find_weight(st, st->m[i].name);
        if (!w || strcmp(st->m[i].name, st->v[i].name) || w->numel != st->m[i].numel || w->numel != st->v[i].numel)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s: optimizer state \"%s\": no weight of that name and size (or m/v names differ)",
                                 dir, st->m[i].name);
    }
    return GRAFT_STATUS_OK;
}

static graft_st_entry entry(const graft_named_tensor *t, const char *name) {
    graft_st_entry e;
    memset(&e, 0, sizeof e);
    e.name = name;
    e.dtype = GRAFT_DTYPE_F32;
    e.ndim = t->ndim;
    for (int32_t i = 0; i < t->ndim; i++) e.shape[i] = t->shape[i];
    e.f32 = t->data;
    return e;
}

static int64_t file_bytes(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static graft_status write_tensors(const char *tmp, const graft_train_state *st, graft_err *err) {
    char path[PATH_BYTES];
    graft_status s = GRAFT_STATUS_OK;
    int64_t n = st->n_weights > 2 * st->n_opt ? st->n_weights : 2 * st->n_opt;
    graft_st_entry *e = calloc((size_t)(n ? n : 1), sizeof *e);
    char **names = calloc((size_t)(2 * st->n_opt + 1), sizeof *names);
    if (!e || !names) s = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", tmp);
    join(path, tmp, W_FILE);
    for (int64_t i = 0; !s && i < st->n_weights; i++) e[i] = entry(&st->weights[i], st->weights[i].name);
    if (!s) s = graft_fs_test_step(path, err);
    if (!s) s = graft_st_write(path, e, st->n_weights, NULL, err);
    for (int64_t i = 0; !s && i < st->n_opt; i++) {
        size_t len = strlen(st->m[i].name) + 16;
        names[2 * i] = malloc(len);
        names[2 * i + 1] = malloc(len);
        if (!names[2 * i] || !names[2 * i + 1]) {
            s = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", tmp);
            break;
        }
        snprintf(names[2 * i], len, "exp_avg.%s", st->m[i].name);
        snprintf(names[2 * i + 1], len, "exp_avg_sq.%s", st->v[i].name);
        e[2 * i] = entry(&st->m[i], names[2 * i]);
        e[2 * i + 1] = entry(&st->v[i], names[2 * i + 1]);
    }
    join(path, tmp, O_FILE);
    if (!s) s = graft_fs_test_step(path, err);
    if (!s) s = graft_st_write(path, e, 2 * st->n_opt, NULL, err);
    if (names)
        for (int64_t i = 0; i < 2 * st->n_opt; i++) free(names[i]);
    free(names);
    free(e);
    return s;
}

static graft_status write_json(const char *tmp, const graft_train_state *st, graft_err *err) {
    char path[PATH_BYTES], wpath[PATH_BYTES], opath[PATH_BYTES];
    join(path, tmp, J_FILE);
    join(wpath, tmp, W_FILE);
    join(opath, tmp, O_FILE);
    json_t *j = json_object(), *cur = json_array(), *rng = json_array(), *files = json_object();
    for (int64_t i = 0; i < st->n_cursor; i++) json_array_append_new(cur, json_integer(st->data_cursor[i]));
    for (int64_t i = 0; i < st->n_rng; i++) {
        char b[24];
        snprintf(b, sizeof b, "%" PRIu64, st->rng_state[i]);
        json_array_append_new(rng, json_string(b));
    }
    json_object_set_new(files, W_FILE, json_integer(file_bytes(wpath)));
    json_object_set_new(files, O_FILE, json_integer(file_bytes(opath)));
    json_object_set_new(j, "format_version", json_integer(GRAFT_TRAIN_STATE_FORMAT));
    json_object_set_new(j, "step", json_integer(st->step));
    json_object_set_new(j, "phase", json_integer(st->phase));
    json_object_set_new(j, "stage", json_integer(st->stage));
    json_object_set_new(j, "lr_step", json_integer(st->lr_step));
    json_object_set_new(j, "recipe_hash", json_string(st->recipe_hash));
    json_object_set_new(j, "n_weights", json_integer(st->n_weights));
    json_object_set_new(j, "n_opt", json_integer(st->n_opt));
    json_object_set_new(j, "data_cursor", cur);
    json_object_set_new(j, "rng_state", rng);
    json_object_set_new(j, "files", files);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!text) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: cannot format JSON", path);
    graft_status s = graft_fs_write_file(path, text, strlen(text), err);
    free(text);
    return s;
}

graft_status graft_train_state_save(const char *dir, const graft_train_state *st, graft_err *err) {
    graft_status s = validate(dir, st, err);
    if (s) return s;
    char tmp[PATH_BYTES];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= sizeof tmp - 32)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: path too long", dir);
    if ((s = graft_fs_remove_tree(tmp, err))) return s; /* a crashed save's leftovers */
    if ((s = graft_fs_mkdir_p(tmp, err))) return s;
    if (!s) s = write_tensors(tmp, st, err);
    if (!s) s = write_json(tmp, st, err);
    if (!s) s = graft_fs_fsync_path(tmp, err);
    if (!s) s = graft_fs_publish_dir(tmp, dir, err);
    if (s && !strstr(err ? err->msg : "", "injected failure")) {
        graft_err ignored;
        graft_fs_remove_tree(tmp, &ignored);
    }
    return s;
}

/* ---- load --------------------------------------------------------------------------------- */

void graft_train_state_free(graft_train_state *st) {
    if (!st) return;
    graft_named_tensor *lists[3] = {st->weights, st->m, st->v};
    int64_t counts[3] = {st->n_weights, st->n_opt, st->n_opt};
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; lists[k] && i < counts[k]; i++) {
            free(lists[k][i].name);
            free(lists[k][i].data);
        }
        free(lists[k]);
    }
    free(st->data_cursor);
    free(st->rng_state);
    memset(st, 0, sizeof *st);
}

static graft_status json_int(const char *path, json_t *j, const char *key, int64_t lo, int64_t hi, int64_t *out,
                             graft_err *err) {
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: missing or out of range, expected an integer %lld..%lld",
                             path, key, (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return GRAFT_STATUS_OK;
}

static graft_status read_tensor(const graft_st_file_t *f, const graft_st_tensor *t, const char *name,
                                graft_named_tensor *out, graft_err *err) {
    int64_t n = 1;
    for (int32_t d = 0; d < t->ndim; d++) n *= t->shape[d]; /* validated by graft_st_open */
    out->name = strdup(name);
    out->data = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!out->name || !out->data)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: \"%s\": out of memory", graft_st_path(f), name);
    out->numel = n;
    out->ndim = t->ndim;
    for (int32_t d = 0; d < t->ndim; d++) out->shape[d] = t->shape[d];
    if (strcmp(t->dtype_name, "F32"))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": dtype %s, expected F32", graft_st_path(f),
                             name, t->dtype_name);
    return graft_st_read_f32(f, t, out->data, n, err);
}

static graft_status load_files(const char *d, json_t *j, const char *jpath, graft_train_state *st, graft_err *err) {
    char path[PATH_BYTES];
    graft_status s;
    json_t *files = json_object_get(j, "files");
    const char *names[2] = {W_FILE, O_FILE};
    for (int k = 0; k < 2; k++) {
        join(path, d, names[k]);
        json_t *b = json_object_get(files, names[k]);
        if (!json_is_integer(b) || json_integer_value(b) != file_bytes(path))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %lld bytes, %s records %lld (truncated or replaced)",
                                 path, (long long)file_bytes(path), jpath, (long long)json_integer_value(b));
    }
    graft_st_file_t *wf = NULL, *of = NULL;
    join(path, d, W_FILE);
    if ((s = graft_st_open(path, &wf, err))) return s;
    if (graft_st_count(wf) != st->n_weights) {
        s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %lld tensors, %s says n_weights %lld", path,
                          (long long)graft_st_count(wf), jpath, (long long)st->n_weights);
        graft_st_close(wf);
        return s;
    }
    st->weights = calloc((size_t)(st->n_weights + 1), sizeof *st->weights);
    st->m = calloc((size_t)(st->n_opt + 1), sizeof *st->m);
    st->v = calloc((size_t)(st->n_opt + 1), sizeof *st->v);
    if (!st->weights || !st->m || !st->v) s = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", d);
    for (int64_t i = 0; !s && i < st->n_weights; i++) {
        const graft_st_tensor *t = graft_st_get(wf, i);
        s = read_tensor(wf, t, t->name, &st->weights[i], err);
    }
    join(path, d, O_FILE);
    if (!s) s = graft_st_open(path, &of, err);
    if (!s && graft_st_count(of) != 2 * st->n_opt)
        s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %lld tensors, %s says n_opt %lld (x2)", path,
                          (long long)graft_st_count(of), jpath, (long long)st->n_opt);
    int64_t k = 0;
    for (int64_t i = 0; !s && i < 2 * st->n_opt; i++) {
        const graft_st_tensor *t = graft_st_get(of, i);
        if (strncmp(t->name, "exp_avg.", 8)) continue;
        const char *name = t->name + 8;
        char vname[PATH_BYTES];
        snprintf(vname, sizeof vname, "exp_avg_sq.%s", name);
        const graft_st_tensor *tv = graft_st_find(of, vname);
        const graft_named_tensor *w = find_weight(st, name);
        if (!tv || !w || k >= st->n_opt) {
            s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": %s", path, t->name,
                              !tv ? "no matching exp_avg_sq" : !w ? "no weight of that name" : "too many");
            break;
        }
        s = read_tensor(of, t, name, &st->m[k], err);
        if (!s) s = read_tensor(of, tv, name, &st->v[k], err);
        if (!s && (st->m[k].numel != w->numel || st->v[k].numel != w->numel))
            s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": %lld elements, the weight has %lld", path,
                              t->name, (long long)st->m[k].numel, (long long)w->numel);
        k++;
    }
    if (!s && k != st->n_opt)
        s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %lld exp_avg tensors, expected %lld", path, (long long)k,
                          (long long)st->n_opt);
    graft_st_close(wf);
    graft_st_close(of);
    return s;
}

graft_status graft_train_state_load(const char *dir, graft_train_state *st, graft_err *err) {
    memset(st, 0, sizeof *st);
    char d[PATH_BYTES], jpath[PATH_BYTES];
    graft_status s = graft_fs_dir_resolve(dir, d, sizeof d - 32, err);
    if (s) return s;
    join(jpath, d, J_FILE);
    json_error_t je;
    json_t *j = json_load_file(jpath, JSON_REJECT_DUPLICATES, &je);
    if (!j) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%d:%d: %s", jpath, je.line, je.column, je.text);
    int64_t v = 0;
    if (!json_is_object(j)) s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: expected a JSON object", jpath);
    if (!s && !(s = json_int(jpath, j, "format_version", GRAFT_TRAIN_STATE_FORMAT, GRAFT_TRAIN_STATE_FORMAT, &v, err)))
        st->format_version = (int32_t)v;
    if (!s) s = json_int(jpath, j, "step", 0, INT64_MAX, &st->step, err);
    if (!s && !(s = json_int(jpath, j, "phase", 0, INT32_MAX, &v, err))) st->phase = (int32_t)v;
    if (!s && !(s = json_int(jpath, j, "stage", 0, INT32_MAX, &v, err))) st->stage = (int32_t)v;
    if (!s) s = json_int(jpath, j, "lr_step", 0, INT64_MAX, &st->lr_step, err);
    if (!s) s = json_int(jpath, j, "n_weights", 0, 1 << 24, &st->n_weights, err);
    if (!s) s = json_int(jpath, j, "n_opt", 0, st->n_weights, &st->n_opt, err);
    json_t *h = json_object_get(j, "recipe_hash");
    if (!s && (!json_is_string(h) || strlen(json_string_value(h)) >= sizeof st->recipe_hash))
        s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: recipe_hash: expected a string of < 72 bytes", jpath);
    if (!s) snprintf(st->recipe_hash, sizeof st->recipe_hash, "%s", json_string_value(h));
    json_t *cur = json_object_get(j, "data_cursor"), *rng = json_object_get(j, "rng_state");
    if (!s && (!json_is_array(cur) || json_array_size(cur) > GRAFT_TRAIN_STATE_MAX_CURSOR || !json_is_array(rng) ||
               json_array_size(rng) > GRAFT_TRAIN_STATE_MAX_RNG))
        s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: data_cursor/rng_state: expected arrays of at most %d",
                          jpath, GRAFT_TRAIN_STATE_MAX_CURSOR);
    if (!s) {
        st->n_cursor = (int64_t)json_array_size(cur);
        st->n_rng = (int64_t)json_array_size(rng);
        st->data_cursor = calloc((size_t)st->n_cursor + 1, sizeof *st->data_cursor);
        st->rng_state = calloc((size_t)st->n_rng + 1, sizeof *st->rng_state);
        if (!st->data_cursor || !st->rng_state) s = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", jpath);
    }
    for (int64_t i = 0; !s && i < st->n_cursor; i++) {
        json_t *x = json_array_get(cur, (size_t)i);
        if (!json_is_integer(x)) s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: data_cursor[%lld]: expected an integer", jpath, (long long)i);
        else st->data_cursor[i] = json_integer_value(x);
    }
    for (int64_t i = 0; !s && i < st->n_rng; i++) {
        json_t *x = json_array_get(rng, (size_t)i);
        const char *t = json_is_string(x) ? json_string_value(x) : NULL;
        char *end = NULL;
        unsigned long long u = t && *t >= '0' && *t <= '9' ? strtoull(t, &end, 10) : 0;
        if (!t || !end || *end || strlen(t) > 20)
            s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: rng_state[%lld]: expected a decimal uint64 string", jpath, (long long)i);
        else st->rng_state[i] = (uint64_t)u;
    }
    if (!s) s = load_files(d, j, jpath, st, err);
    json_decref(j);
    if (s) graft_train_state_free(st);
    return s;
}

int64_t graft_train_state_step(const char *dir) {
    char d[PATH_BYTES], path[PATH_BYTES];
    graft_err e;
    if (graft_fs_dir_resolve(dir, d, sizeof d - 32, &e)) return -1;
    join(path, d, J_FILE);
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) return -1;
    json_t *v = json_object_get(j, "step");
    int64_t step = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
    json_decref(j);
    return step;
}
