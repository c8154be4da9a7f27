/* checkpoint.h: a model's weights as one name -> tensor view over a model.safetensors file or a
 * model.safetensors.index.json with its shards (spec/formats.md §6), and the sharded writer.
 *
 * graft_ckpt_open accepts a directory (model.safetensors, else model.safetensors.index.json; both
 * present is refused as ambiguous), a .safetensors file or an index .json. Every index rule of
 * §6.3 is checked; a total_size mismatch is a warning (graft_ckpt_warnings), not an error.
 */
#ifndef GRAFT_CHECKPOINT_H
#define GRAFT_CHECKPOINT_H

#include "safetensors.h"

typedef struct graft_ckpt graft_ckpt_t;

graft_status graft_ckpt_open(const char *path, graft_ckpt_t **out, graft_err *err);
void graft_ckpt_close(graft_ckpt_t *c);

int64_t graft_ckpt_count(const graft_ckpt_t *c);
/* The i-th tensor in name order, and the file that holds it. */
const graft_st_tensor *graft_ckpt_get(const graft_ckpt_t *c, int64_t i, const graft_st_file_t **file);
const graft_st_tensor *graft_ckpt_find(const graft_ckpt_t *c, const char *name,
                                       const graft_st_file_t **file);
int64_t graft_ckpt_n_files(const graft_ckpt_t *c);
const graft_st_file_t *graft_ckpt_file(const graft_ckpt_t *c, int64_t i);
/* Newline-separated warnings found while opening (e.g. total_size mismatch), or "". */
const char *graft_ckpt_warnings(const graft_ckpt_t *c);

/* Writes `entries` into directory `dir` (created if missing): one model.safetensors when the data
 * fits in max_shard_bytes, else model-XXXXX-of-YYYYY.safetensors shards plus
 * model.safetensors.index.json (sorted keys, exact total_size), every file via .tmp + rename, the
 * index (or model.safetensors) last, stale shards of an older save removed. */
graft_status graft_ckpt_write(const char *dir, const graft_st_entry *entries, int64_t n,
                              uint64_t max_shard_bytes, const char *const *meta, graft_err *err);

#endif
