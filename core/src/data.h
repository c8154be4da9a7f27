/* data.h: training data from token shards (docs/data.md): the shard manifest, JSONL text
 * extraction for `graft tokenize`, and the batch loader.
 *
 * Loader model. Each shard of n tokens holds floor((n - 1) / T) windows of T + 1 tokens; window w
 * covers tokens [w*T, w*T + T] (consecutive windows share one token, so every token is a target
 * exactly once). Windows never cross shard boundaries. Windows are numbered in shard order; the
 * held-out split is the LAST ceil(holdout_fraction * N) of them (the tail of the data, never mixed
 * with training windows), the rest are training windows. Training batches take B windows at a
 * time in order (shuffle = 0) or in a per-epoch permutation (Fisher-Yates with
 * graft_rng_make(seed, epoch)); batches wrap into the next epoch. The cursor is two integers
 * (epoch, position) plus the seed and window count it belongs to: restoring it in a new loader
 * over the same shards continues on exactly the same tokens.
 *
 * Thread safety: one graft_data_t per thread (next() moves the cursor); eval batches are pure.
 */
#ifndef GRAFT_DATA_H
#define GRAFT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- manifest (DIR/manifest.json written by `graft tokenize --out DIR`) ---- */
typedef struct graft_manifest_shard {
    char *path; /* as written: relative to the manifest's directory */
    uint64_t tokens, documents, checksum;
} graft_manifest_shard;

typedef struct graft_manifest {
    char *tokenizer;
    uint64_t tokenizer_hash, vocab_size, n_tokens, n_documents;
    uint32_t eot_id;
    graft_manifest_shard *shards;
    size_t n_shards;
    char **sources;
    size_t n_sources;
} graft_manifest;

/* Writes m as JSON to path (via path.tmp + rename). */
graft_status graft_manifest_write(const char *path, const graft_manifest *m, graft_err *err);
/* Reads and validates a manifest; *m is owned by the caller (graft_manifest_free). */
graft_status graft_manifest_read(const char *path, graft_manifest *m, graft_err *err);
/* Frees what graft_manifest_read / the caller allocated in m (all strings are malloc'd). */
void graft_manifest_free(graft_manifest *m);
/* Appends a shard record / a source name (copies the strings). */
graft_status graft_manifest_add_shard(graft_manifest *m, const char *path, uint64_t tokens,
                                      uint64_t documents, uint64_t checksum, graft_err *err);
graft_status graft_manifest_add_source(graft_manifest *m, const char *source, graft_err *err);

/* The "text" string of one JSON Lines record, malloc'd (may contain NUL bytes; *len is its length).
 * Errors: GRAFT_STATUS_BAD_INPUT with the JSON error or the missing field. */
graft_status graft_jsonl_text(const char *line, size_t n, char **text, size_t *len, graft_err *err);

/* ---- loader ---- */
typedef struct graft_data_params {
    int64_t B;   /* windows per batch */
    int64_t T;   /* tokens per window minus one (inputs and targets are T long) */
    int shuffle; /* 0: in order; 1: a new permutation every epoch */
    uint64_t seed;
    double holdout_fraction; /* share of windows held out (0 .. 0.5) */
    uint64_t max_vocab; /* the model's vocabulary size: ids must be below it (0: shard's own) */
    /* Separate held-out data (shards, manifests or directories, like paths): when given, every
     * window of these is held out, none of `paths` is, and holdout_fraction must be 0. They are
     * placed after the training shards, so the held-out windows are still the tail. */
    const char *const *heldout_paths;
    size_t n_heldout;
} graft_data_params;

graft_data_params graft_data_default_params(void); /* B 8, T 256, shuffle 1, seed 0, holdout 0.01 */

typedef struct graft_data_cursor {
    uint64_t epoch;    /* completed passes over the training windows */
    uint64_t position; /* windows of this epoch already handed out */
    uint64_t seed;     /* must match the loader's seed on restore */
    uint64_t n_train;  /* must match the loader's training window count on restore */
} graft_data_cursor;

typedef struct graft_data graft_data_t;

/* Opens a dataset. Each path is a shard file, a manifest.json, or a directory holding one. All
 * shards are validated at open (graft_shard_open with max_vocab) and must share tokenizer_hash. */
graft_status graft_data_open(const char *const *paths, size_t n_paths, const graft_data_params *p,
                             graft_data_t **out, graft_err *err);
void graft_data_close(graft_data_t *d);

uint64_t graft_data_n_train(const graft_data_t *d); /* training windows */
uint64_t graft_data_n_eval(const graft_data_t *d);  /* held-out windows */

/* Fills windows (B, T + 1) with the next training batch and advances the cursor. inputs are
 * windows[:, :T], targets windows[:, 1:]. */
graft_status graft_data_next(graft_data_t *d, uint32_t *windows, graft_err *err);
/* Held-out batch `index` (0-based, ceil(n_eval / B) of them): fills *n_rows <= B rows. */
graft_status graft_data_eval_batch(const graft_data_t *d, uint64_t index, uint32_t *windows,
                                   int64_t *n_rows, graft_err *err);

/* Splits `rows` windows (rows, T + 1) into model inputs ids (rows, T) = windows[:, :T] and, when
 * labels is not NULL, targets labels (rows, T) = windows[:, 1:]. */
void graft_data_window_ids(const uint32_t *windows, int64_t rows, int64_t T, int32_t *ids, int32_t *labels);

graft_data_cursor graft_data_get_cursor(const graft_data_t *d);
/* Restores a cursor saved by graft_data_get_cursor; refuses one from another seed or dataset. */
graft_status graft_data_set_cursor(graft_data_t *d, const graft_data_cursor *c, graft_err *err);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_DATA_H */
