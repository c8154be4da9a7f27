/* runlog.c: the HDF5 run log writer (layout, SWMR and resume rules in runlog.h; schema in
 * docs/runlog.md). HDF5 C API 1.10+, latest file format (required for SWMR).
 *
 * Not here: what the stages compute, plotting (tools/plot_run.py).
 */
#include "runlog.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "graft/graft.h"

#define MAX_STAGES 1000

/* On-disk records: plain numbers and fixed-length NUL-padded strings only (MATLAB and pandas read
 * them as they are). The file types are these, packed (no padding between fields). */
typedef struct pair_rec {
    int64_t step;
    int32_t layer;
    char mixer[GRAFT_RUNLOG_MIXER_BYTES];
    double train_nloss, heldout_nloss;
} pair_rec;
typedef struct result_rec {
    int32_t layer;
    char mixer[GRAFT_RUNLOG_MIXER_BYTES];
    double heldout_nloss;
    int64_t n_tokens;
} result_rec;
typedef struct eval_rec {
    char model[GRAFT_RUNLOG_MODEL_BYTES];
    char metric[GRAFT_RUNLOG_METRIC_BYTES];
    double value;
    int64_t n_tokens;
    int64_t step;
} eval_rec;
typedef struct bench_rec {
    char model[GRAFT_RUNLOG_MODEL_BYTES];
    int64_t context, batch, prefill_chunk;
    double ttft_ms, decode_tok_s;
    int64_t state_bytes, peak_bytes;
} bench_rec;
typedef struct gen_rec {
    char model[GRAFT_RUNLOG_MODEL_BYTES];
    char prompt[GRAFT_RUNLOG_PROMPT_BYTES];
    char text[GRAFT_RUNLOG_TEXT_BYTES];
} gen_rec;

enum { T_TRAIN, T_PAIRS, T_RESULTS, T_EVAL, T_BENCH, T_GEN, N_TABLES };
static const char *const table_names[N_TABLES] = {"train",  "stage0_pairs", "stage0_results",
                                                  "eval",   "bench",        "generations"};
static const hsize_t table_chunk_rows[N_TABLES] = {256, 256, 64, 64, 64, 4};
static const int table_has_step[N_TABLES] = {1, 1, 0, 0, 0, 0};

struct graft_runlog {
    char *path;
    hid_t file;
    hid_t mem_type[N_TABLES], file_type[N_TABLES];
    char *stage_kind[MAX_STAGES]; /* NULL: stage not begun */
};

/* ---- errors ------------------------------------------------------------------------------- */

/* HDF5 reports a failure to the "automatic" error handler as the failing API call returns, with
 * its stack intact; ours prints nothing and keeps the innermost message for h5fail (the stack
 * itself is cleared by the next API call, e.g. the cleanup before h5fail). */
static _Thread_local char h5_last[256];

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0) snprintf((char *)data, 256, "%s (%s)", e->desc ? e->desc : "?", e->func_name ? e->func_name : "?");
    return 0;
}

static herr_t keep_message(hid_t stack, void *data) {
    (void)data;
    H5Ewalk2(stack, H5E_WALK_UPWARD, innermost_cb, h5_last);
    return 0;
}

/* "<path>: <what>: <HDF5's innermost message>". */
static graft_status h5fail(const char *path, graft_err *err, const char *what) {
    graft_status s = graft_err_set(err, GRAFT_STATUS_IO, "%s: %s: %s", path, what,
                                   h5_last[0] ? h5_last : "HDF5 call failed");
    h5_last[0] = 0;
    return s;
}

static void quiet_hdf5(void) {
    H5Eset_auto2(H5E_DEFAULT, keep_message, NULL);
    h5_last[0] = 0;
}

/* ---- types -------------------------------------------------------------------------------- */

static hid_t str_type(size_t n) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n ? n : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    return t;
}

static int add_str(hid_t t, const char *name, size_t off, size_t n) {
    hid_t s = str_type(n);
    herr_t rc = H5Tinsert(t, name, off, s);
    H5Tclose(s);
    return rc < 0;
}

#define ADD(t, S, f, ty) bad |= H5Tinsert(t, #f, HOFFSET(S, f), ty) < 0
#define ADDS(t, S, f) bad |= add_str(t, #f, HOFFSET(S, f), sizeof(((S *)0)->f))

static int make_types(graft_runlog_t *log) {
    int bad = 0;
    hid_t t;
    t = log->mem_type[T_TRAIN] = H5Tcreate(H5T_COMPOUND, sizeof(graft_train_row));
    ADD(t, graft_train_row, step, H5T_NATIVE_INT64);
    ADD(t, graft_train_row, phase, H5T_NATIVE_INT32);
    ADD(t, graft_train_row, loss, H5T_NATIVE_DOUBLE);
    ADD(t, graft_train_row, ce, H5T_NATIVE_DOUBLE);
    ADD(t, graft_train_row, kl, H5T_NATIVE_DOUBLE);
    ADD(t, graft_train_row, lr, H5T_NATIVE_DOUBLE);
    ADD(t, graft_train_row, grad_norm, H5T_NATIVE_DOUBLE);
    ADD(t, graft_train_row, tokens, H5T_NATIVE_INT64);
    ADD(t, graft_train_row, tokens_per_s, H5T_NATIVE_DOUBLE);
    ADD(t, graft_train_row, wall_s, H5T_NATIVE_DOUBLE);
    t = log->mem_type[T_PAIRS] = H5Tcreate(H5T_COMPOUND, sizeof(pair_rec));
    ADD(t, pair_rec, step, H5T_NATIVE_INT64);
    ADD(t, pair_rec, layer, H5T_NATIVE_INT32);
    ADDS(t, pair_rec, mixer);
    ADD(t, pair_rec, train_nloss, H5T_NATIVE_DOUBLE);
    ADD(t, pair_rec, heldout_nloss, H5T_NATIVE_DOUBLE);
    t = log->mem_type[T_RESULTS] = H5Tcreate(H5T_COMPOUND, sizeof(result_rec));
    ADD(t, result_rec, layer, H5T_NATIVE_INT32);
    ADDS(t, result_rec, mixer);
    ADD(t, result_rec, heldout_nloss, H5T_NATIVE_DOUBLE);
    ADD(t, result_rec, n_tokens, H5T_NATIVE_INT64);
    t = log->mem_type[T_EVAL] = H5Tcreate(H5T_COMPOUND, sizeof(eval_rec));
    ADDS(t, eval_rec, model);
    ADDS(t, eval_rec, metric);
    ADD(t, eval_rec, value, H5T_NATIVE_DOUBLE);
    ADD(t, eval_rec, n_tokens, H5T_NATIVE_INT64);
    ADD(t, eval_rec, step, H5T_NATIVE_INT64);
    t = log->mem_type[T_BENCH] = H5Tcreate(H5T_COMPOUND, sizeof(bench_rec));
    ADDS(t, bench_rec, model);
    ADD(t, bench_rec, context, H5T_NATIVE_INT64);
    ADD(t, bench_rec, batch, H5T_NATIVE_INT64);
    ADD(t, bench_rec, prefill_chunk, H5T_NATIVE_INT64);
    ADD(t, bench_rec, ttft_ms, H5T_NATIVE_DOUBLE);
    ADD(t, bench_rec, decode_tok_s, H5T_NATIVE_DOUBLE);
    ADD(t, bench_rec, state_bytes, H5T_NATIVE_INT64);
    ADD(t, bench_rec, peak_bytes, H5T_NATIVE_INT64);
    t = log->mem_type[T_GEN] = H5Tcreate(H5T_COMPOUND, sizeof(gen_rec));
    ADDS(t, gen_rec, model);
    ADDS(t, gen_rec, prompt);
    ADDS(t, gen_rec, text);
    for (int i = 0; i < N_TABLES; i++) {
        log->file_type[i] = H5Tcopy(log->mem_type[i]);
        bad |= log->file_type[i] < 0 || H5Tpack(log->file_type[i]) < 0;
    }
    return bad;
}

/* ---- small helpers ------------------------------------------------------------------------ */

static void iso_now(char out[32]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int set_str_attr(hid_t obj, const char *name, const char *value) {
    if (!value) value = "";
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return 1;
    hid_t t = str_type(strlen(value)), sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int bad = a < 0 || H5Awrite(a, t, value[0] ? value : "") < 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return bad;
}

static int set_int_attr(hid_t obj, const char *name, hid_t type, const void *v) {
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return 1;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int bad = a < 0 || H5Awrite(a, type, v) < 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return bad;
}

/* Copies s into a fixed field of n bytes, NUL padded; refuses strings longer than n unless
 * `truncate`. */
static graft_status put_str(char *dst, size_t n, const char *s, const char *field, int truncate,
                            const char *path, graft_err *err) {
    if (!s) s = "";
    size_t len = strlen(s);
    if (len > n && !truncate)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: \"%s\" is %zu bytes, expected at most %zu",
                             path, field, s, len, n);
    memset(dst, 0, n);
    memcpy(dst, s, len < n ? len : n);
    return GRAFT_STATUS_OK;
}

static int valid_ident(const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
    return 1;
}

static void group_name(const graft_runlog_t *log, int32_t index, char out[64]) {
    snprintf(out, 64, "/stages/%d_%s", (int)index, log->stage_kind[index]);
}

static hid_t latest_fapl(int clear_flags) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    /* SWMR readers (h5py, MATLAB) keep a shared lock on the file while they read; no open of the
     * writer may fail on it: not the short plain-mode reopens at stage boundaries, and not the
     * first open right after the log appears (a reader polling for it can get there first: seen
     * as "unable to lock file, errno = 11" in tests/e2e/test_pipeline.py). The superblock status
     * flags, not the lock, are what mark a file as held by a writer. */
    H5Pset_file_locking(fapl, 0, 1);
    if (clear_flags) {
        /* The property h5clear uses to open a file whose writer was killed (superblock still
         * marked "open for SWMR write"); not present in every HDF5, hence best effort. */
        hbool_t on = 1;
        if (H5Pexist(fapl, "clear_status_flags") > 0) H5Pset(fapl, "clear_status_flags", &on);
    }
    return fapl;
}

/* Structural changes: leave SWMR (close), reopen for plain writing ... then start SWMR again. */
static graft_status plain_open(graft_runlog_t *log, int clear_flags, graft_err *err) {
    if (log->file >= 0) {
        H5Fclose(log->file);
        log->file = -1;
    }
    hid_t fapl = latest_fapl(clear_flags);
    log->file = H5Fopen(log->path, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (log->file < 0) return h5fail(log->path, err, "open for writing");
    return GRAFT_STATUS_OK;
}

static graft_status swmr_start(graft_runlog_t *log, graft_err *err) {
    if (H5Fstart_swmr_write(log->file) < 0) return h5fail(log->path, err, "start SWMR writing");
    return GRAFT_STATUS_OK;
}

static int create_tables(graft_runlog_t *log, hid_t g) {
    int bad = 0;
    for (int i = 0; i < N_TABLES && !bad; i++) {
        hsize_t dims = 0, maxdims = H5S_UNLIMITED, chunk = table_chunk_rows[i];
        hid_t sp = H5Screate_simple(1, &dims, &maxdims);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, 1, &chunk);
        if (i == T_GEN) H5Pset_deflate(dcpl, 4); /* mostly NUL padding */
        hid_t d = H5Dcreate2(g, table_names[i], log->file_type[i], sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        bad = d < 0;
        if (d >= 0) H5Dclose(d);
        H5Pclose(dcpl);
        H5Sclose(sp);
    }
    return bad;
}

/* ---- open / close ------------------------------------------------------------------------- */

graft_runlog_meta graft_runlog_default_meta(void) {
    graft_runlog_meta m;
    memset(&m, 0, sizeof m);
    m.resume_step = -1;
    return m;
}

void graft_runlog_close(graft_runlog_t *log) {
    if (!log) return;
    quiet_hdf5();
    if (log->file >= 0) {
        H5Fflush(log->file, H5F_SCOPE_GLOBAL);
        H5Fclose(log->file);
    }
    for (int i = 0; i < N_TABLES; i++) {
        if (log->mem_type[i] > 0) H5Tclose(log->mem_type[i]);
        if (log->file_type[i] > 0) H5Tclose(log->file_type[i]);
    }
    for (int i = 0; i < MAX_STAGES; i++) free(log->stage_kind[i]);
    free(log->path);
    free(log);
}

static graft_status create_new(graft_runlog_t *log, const graft_runlog_meta *meta, graft_err *err) {
    size_t n = strlen(log->path) + 5;
    char *tmp = malloc(n);
    if (!tmp) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", log->path);
    snprintf(tmp, n, "%s.tmp", log->path);
    unlink(tmp);
    hid_t fapl = latest_fapl(0);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        graft_status s = h5fail(tmp, err, "create");
        free(tmp);
        return s;
    }
    char now[32];
    iso_now(now);
    int32_t version = GRAFT_RUNLOG_VERSION, resumes = 0;
    int bad = set_str_attr(f, "graft_version", GRAFT_VERSION_STRING) ||
              set_int_attr(f, "runlog_version", H5T_NATIVE_INT32, &version) ||
              set_str_attr(f, "recipe", meta->recipe_text) || set_str_attr(f, "start_time", now) ||
              set_str_attr(f, "device", meta->device) || set_str_attr(f, "git_hash", meta->git_hash) ||
              set_str_attr(f, "command_line", meta->command_line) ||
              set_int_attr(f, "resume_count", H5T_NATIVE_INT32, &resumes);
    if (!bad) {
        hid_t g = H5Gcreate2(f, "stages", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        bad = g < 0;
        if (g >= 0) H5Gclose(g);
    }
    graft_status s = bad ? h5fail(tmp, err, "write root") : GRAFT_STATUS_OK;
    if (H5Fclose(f) < 0 && !s) s = h5fail(tmp, err, "close");
    if (!s && rename(tmp, log->path) != 0)
        s = graft_err_set(err, GRAFT_STATUS_IO, "%s: rename from %s: %s", log->path, tmp, strerror(errno));
    if (!s) s = graft_fs_fsync_parent(log->path, err);
    if (s) unlink(tmp);
    free(tmp);
    return s;
}

typedef struct scan_ctx {
    graft_runlog_t *log;
    char names[MAX_STAGES][64];
    int n;
} scan_ctx;

static herr_t scan_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    scan_ctx *c = data;
    if (c->n < MAX_STAGES) snprintf(c->names[c->n++], 64, "%s", name);
    return 0;
}

/* Drops rows with step > last_step (rows are appended in step order, so a prefix is kept). */
static graft_status truncate_steps(graft_runlog_t *log, hid_t d, const char *what, int64_t last_step,
                                   graft_err *err) {
    hid_t sp = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    H5Sclose(sp);
    hsize_t keep = n;
    if (n > 0) {
        int64_t *steps = malloc(n * sizeof *steps);
        if (!steps) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", log->path);
        hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(int64_t));
        H5Tinsert(t, "step", 0, H5T_NATIVE_INT64);
        herr_t rc = H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, steps);
        H5Tclose(t);
        if (rc < 0) {
            free(steps);
            return h5fail(log->path, err, what);
        }
        for (keep = 0; keep < n && steps[keep] <= last_step; keep++) {}
        free(steps);
    }
    if (keep != n && H5Dset_extent(d, &keep) < 0) return h5fail(log->path, err, what);
    return GRAFT_STATUS_OK;
}

static graft_status resume_existing(graft_runlog_t *log, const graft_runlog_meta *meta, graft_err *err) {
    graft_status s = plain_open(log, 0, err);
    if (s) {
        s = plain_open(log, 1, err); /* a killed writer left the "open for writing" marks */
        if (s) return s;
        /* ... and an end-of-allocation mark older than what it flushed since (h5clear -i) */
        if (H5Fincrement_filesize(log->file, 0) < 0) return h5fail(log->path, err, "repair end of file");
    }
    scan_ctx *c = calloc(1, sizeof *c);
    if (!c) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", log->path);
    hid_t g = H5Gopen2(log->file, "stages", H5P_DEFAULT);
    if (g < 0 || H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, scan_cb, c) < 0) {
        if (g >= 0) H5Gclose(g);
        free(c);
        return h5fail(log->path, err, "/stages");
    }
    for (int i = 0; i < c->n && !s; i++) {
        int idx = -1, used = 0;
        if (sscanf(c->names[i], "%d_%n", &idx, &used) != 1 || idx < 0 || idx >= MAX_STAGES || !used ||
            !valid_ident(c->names[i] + used, GRAFT_RUNLOG_KIND_BYTES)) {
            s = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: /stages/%s: not <index>_<kind>", log->path,
                              c->names[i]);
            break;
        }
        if (idx > meta->resume_stage) {
            if (H5Ldelete(g, c->names[i], H5P_DEFAULT) < 0) s = h5fail(log->path, err, c->names[i]);
            continue;
        }
        free(log->stage_kind[idx]);
        log->stage_kind[idx] = strdup(c->names[i] + used);
        if (!log->stage_kind[idx]) s = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", log->path);
        if (s || idx < meta->resume_stage) continue;
        hid_t sg = H5Gopen2(g, c->names[i], H5P_DEFAULT);
        if (sg < 0) {
            s = h5fail(log->path, err, c->names[i]);
            break;
        }
        for (int t = 0; t < N_TABLES && !s; t++) {
            char what[128];
            snprintf(what, sizeof what, "/stages/%s/%s: truncate for resume", c->names[i], table_names[t]);
            hid_t d = H5Dopen2(sg, table_names[t], H5P_DEFAULT);
            if (d < 0) {
                s = h5fail(log->path, err, what);
                break;
            }
            hsize_t zero = 0;
            if (table_has_step[t]) s = truncate_steps(log, d, what, meta->resume_step, err);
            else if (H5Dset_extent(d, &zero) < 0) s = h5fail(log->path, err, what);
            H5Dclose(d);
        }
        if (!s && (set_str_attr(sg, "status", "running") || set_str_attr(sg, "end_time", "")))
            s = h5fail(log->path, err, c->names[i]);
        H5Gclose(sg);
    }
    H5Gclose(g);
    free(c);
    if (s) return s;
    int32_t resumes = 0;
    hid_t a = H5Aopen(log->file, "resume_count", H5P_DEFAULT);
    if (a >= 0) {
        H5Aread(a, H5T_NATIVE_INT32, &resumes);
        H5Aclose(a);
    }
    h5_last[0] = 0;
    resumes++;
    char now[32];
    iso_now(now);
    if (set_int_attr(log->file, "resume_count", H5T_NATIVE_INT32, &resumes) ||
        set_str_attr(log->file, "last_resume_time", now))
        return h5fail(log->path, err, "root attributes");
    return GRAFT_STATUS_OK;
}

graft_status graft_runlog_open(const char *path, const graft_runlog_meta *meta, int resume,
                               graft_runlog_t **out, graft_err *err) {
    *out = NULL;
    quiet_hdf5();
    graft_runlog_meta dm = graft_runlog_default_meta();
    if (!meta) meta = &dm;
    if (resume && (meta->resume_stage < 0 || meta->resume_stage >= MAX_STAGES))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: resume_stage %d, expected 0..%d", path,
                             (int)meta->resume_stage, MAX_STAGES - 1);
    graft_runlog_t *log = calloc(1, sizeof *log);
    if (!log || !(log->path = strdup(path))) {
        free(log);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    log->file = -1;
    graft_status s = GRAFT_STATUS_OK;
    if (make_types(log)) s = h5fail(path, err, "build compound types");
    if (!s) s = resume ? resume_existing(log, meta, err) : create_new(log, meta, err);
    if (!s && !resume) s = plain_open(log, 0, err);
    if (!s) s = swmr_start(log, err);
    if (s) {
        graft_runlog_close(log);
        return s;
    }
    *out = log;
    return GRAFT_STATUS_OK;
}

/* ---- stages ------------------------------------------------------------------------------- */

static graft_status check_stage(graft_runlog_t *log, int32_t index, graft_err *err) {
    if (index < 0 || index >= MAX_STAGES || !log->stage_kind[index])
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: stage %d: not begun", log->path, (int)index);
    return GRAFT_STATUS_OK;
}

graft_status graft_runlog_stage_begin(graft_runlog_t *log, int32_t index, const char *kind, graft_err *err) {
    quiet_hdf5();
    if (index < 0 || index >= MAX_STAGES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: stage index %d, expected 0..%d", log->path,
                             (int)index, MAX_STAGES - 1);
    if (!valid_ident(kind, GRAFT_RUNLOG_KIND_BYTES))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: stage %d: kind \"%s\", expected 1..16 characters of [a-z0-9_]", log->path,
                             (int)index, kind ? kind : "(null)");
    int exists = log->stage_kind[index] != NULL;
    if (exists && strcmp(log->stage_kind[index], kind) != 0)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: stage %d: kind \"%s\", the log has \"%s\"",
                             log->path, (int)index, kind, log->stage_kind[index]);
    if (!exists && !(log->stage_kind[index] = strdup(kind)))
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", log->path);
    char gname[64], now[32];
    group_name(log, index, gname);
    iso_now(now);
    graft_status s = plain_open(log, 0, err);
    if (s) return s;
    hid_t g = exists ? H5Gopen2(log->file, gname, H5P_DEFAULT)
                     : H5Gcreate2(log->file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = g < 0;
    if (!bad && !exists) bad = create_tables(log, g) || set_str_attr(g, "kind", kind) ||
                               set_int_attr(g, "index", H5T_NATIVE_INT32, &index) ||
                               set_str_attr(g, "start_time", now);
    if (!bad) bad = set_str_attr(g, "status", "running") || set_str_attr(g, "end_time", "");
    if (g >= 0) H5Gclose(g);
    if (bad) {
        s = h5fail(log->path, err, gname);
        if (!exists) {
            free(log->stage_kind[index]);
            log->stage_kind[index] = NULL;
        }
    }
    graft_status s2 = swmr_start(log, err);
    return s ? s : s2;
}

graft_status graft_runlog_stage_end(graft_runlog_t *log, int32_t index, const char *status, graft_err *err) {
    quiet_hdf5();
    graft_status s = check_stage(log, index, err);
    if (s) return s;
    if (!status || !*status || strlen(status) > 16)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: stage %d: status \"%s\", expected 1..16 bytes",
                             log->path, (int)index, status ? status : "(null)");
    char gname[64], now[32];
    group_name(log, index, gname);
    iso_now(now);
    if ((s = plain_open(log, 0, err))) return s;
    hid_t g = H5Gopen2(log->file, gname, H5P_DEFAULT);
    int bad = g < 0 || set_str_attr(g, "status", status) || set_str_attr(g, "end_time", now);
    if (g >= 0) H5Gclose(g);
    if (bad) s = h5fail(log->path, err, gname);
    graft_status s2 = swmr_start(log, err);
    return s ? s : s2;
}

graft_status graft_runlog_set_text(graft_runlog_t *log, int32_t stage, const char *name, const char *text,
                                   graft_err *err) {
    quiet_hdf5();
    graft_status s = check_stage(log, stage, err);
    if (s) return s;
    int clash = 0;
    for (int i = 0; i < N_TABLES; i++) clash |= name && !strcmp(name, table_names[i]);
    if (!valid_ident(name, 64) || clash)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: text name \"%s\", expected 1..64 characters of [a-z0-9_], not a table name",
                             log->path, name ? name : "(null)");
    if (!text) text = "";
    char gname[64];
    group_name(log, stage, gname);
    if ((s = plain_open(log, 0, err))) return s;
    hid_t g = H5Gopen2(log->file, gname, H5P_DEFAULT);
    int bad = g < 0;
    if (!bad && H5Lexists(g, name, H5P_DEFAULT) > 0) bad = H5Ldelete(g, name, H5P_DEFAULT) < 0;
    if (!bad) {
        hid_t t = str_type(strlen(text)), sp = H5Screate(H5S_SCALAR);
        hid_t d = H5Dcreate2(g, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        bad = d < 0 || H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, text[0] ? text : "") < 0;
        if (d >= 0) H5Dclose(d);
        H5Sclose(sp);
        H5Tclose(t);
    }
    if (g >= 0) H5Gclose(g);
    if (bad) {
        char what[160];
        snprintf(what, sizeof what, "%s/%s", gname, name);
        s = h5fail(log->path, err, what);
    }
    graft_status s2 = swmr_start(log, err);
    return s ? s : s2;
}

/* ---- appends ------------------------------------------------------------------------------ */

static graft_status append(graft_runlog_t *log, int32_t stage, int table, const void *rec, graft_err *err) {
    quiet_hdf5();
    graft_status s = check_stage(log, stage, err);
    if (s) return s;
    char gname[64], dname[96];
    group_name(log, stage, gname);
    snprintf(dname, sizeof dname, "%s/%s", gname, table_names[table]);
    hid_t d = H5Dopen2(log->file, dname, H5P_DEFAULT);
    if (d < 0) return h5fail(log->path, err, dname);
    hsize_t n = 0, one = 1;
    hid_t fs = H5Dget_space(d);
    H5Sget_simple_extent_dims(fs, &n, NULL);
    H5Sclose(fs);
    hsize_t n1 = n + 1;
    int bad = H5Dset_extent(d, &n1) < 0;
    if (!bad) {
        fs = H5Dget_space(d);
        hid_t ms = H5Screate_simple(1, &one, NULL);
        bad = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &n, NULL, &one, NULL) < 0 ||
              H5Dwrite(d, log->mem_type[table], ms, fs, H5P_DEFAULT, rec) < 0 || H5Dflush(d) < 0;
        H5Sclose(ms);
        H5Sclose(fs);
    }
    H5Dclose(d);
    if (bad) return h5fail(log->path, err, dname);
    return GRAFT_STATUS_OK;
}

graft_status graft_runlog_append_train(graft_runlog_t *log, int32_t stage, const graft_train_row *row,
                                       graft_err *err) {
    return append(log, stage, T_TRAIN, row, err);
}

graft_status graft_runlog_append_stage0_pair(graft_runlog_t *log, int32_t stage,
                                             const graft_stage0_pair_row *row, graft_err *err) {
    pair_rec r = {row->step, row->layer, {0}, row->train_nloss, row->heldout_nloss};
    graft_status s = put_str(r.mixer, sizeof r.mixer, row->mixer, "stage0_pairs.mixer", 0, log->path, err);
    return s ? s : append(log, stage, T_PAIRS, &r, err);
}

graft_status graft_runlog_append_stage0_result(graft_runlog_t *log, int32_t stage,
                                               const graft_stage0_result_row *row, graft_err *err) {
    result_rec r = {row->layer, {0}, row->heldout_nloss, row->n_tokens};
    graft_status s = put_str(r.mixer, sizeof r.mixer, row->mixer, "stage0_results.mixer", 0, log->path, err);
    return s ? s : append(log, stage, T_RESULTS, &r, err);
}

graft_status graft_runlog_append_eval(graft_runlog_t *log, int32_t stage, const graft_eval_row *row,
                                      graft_err *err) {
    eval_rec r;
    memset(&r, 0, sizeof r);
    r.value = row->value;
    r.n_tokens = row->n_tokens;
    r.step = row->step;
    graft_status s = put_str(r.model, sizeof r.model, row->model, "eval.model", 0, log->path, err);
    if (!s) s = put_str(r.metric, sizeof r.metric, row->metric, "eval.metric", 0, log->path, err);
    return s ? s : append(log, stage, T_EVAL, &r, err);
}

graft_status graft_runlog_append_bench(graft_runlog_t *log, int32_t stage, const graft_bench_row *row,
                                       graft_err *err) {
    bench_rec r;
    memset(&r, 0, sizeof r);
    r.context = row->context;
    r.batch = row->batch;
    r.prefill_chunk = row->prefill_chunk;
    r.ttft_ms = row->ttft_ms;
    r.decode_tok_s = row->decode_tok_s;
    r.state_bytes = row->state_bytes;
    r.peak_bytes = row->peak_bytes;
    graft_status s = put_str(r.model, sizeof r.model, row->model, "bench.model", 0, log->path, err);
    return s ? s : append(log, stage, T_BENCH, &r, err);
}

graft_status graft_runlog_append_generation(graft_runlog_t *log, int32_t stage,
                                            const graft_generation_row *row, graft_err *err) {
    gen_rec *r = calloc(1, sizeof *r);
    if (!r) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", log->path);
    graft_status s = put_str(r->model, sizeof r->model, row->model, "generations.model", 0, log->path, err);
    if (!s) s = put_str(r->prompt, sizeof r->prompt, row->prompt, "generations.prompt", 1, log->path, err);
    if (!s) s = put_str(r->text, sizeof r->text, row->text, "generations.text", 1, log->path, err);
    if (!s) s = append(log, stage, T_GEN, r, err);
    free(r);
    return s;
}

int64_t graft_runlog_rows(graft_runlog_t *log, int32_t stage, const char *table, graft_err *err) {
    quiet_hdf5();
    if (check_stage(log, stage, err)) return -1;
    char gname[64], dname[128];
    group_name(log, stage, gname);
    snprintf(dname, sizeof dname, "%s/%s", gname, table ? table : "");
    hid_t d = H5Dopen2(log->file, dname, H5P_DEFAULT);
    if (d < 0) {
        h5fail(log->path, err, dname);
        return -1;
    }
    hsize_t n = 0;
    hid_t fs = H5Dget_space(d);
    H5Sget_simple_extent_dims(fs, &n, NULL);
    H5Sclose(fs);
    H5Dclose(d);
    return (int64_t)n;
}
