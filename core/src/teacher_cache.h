/* teacher_cache.h: the teacher's top-k for Stage 1, precomputed once and read back in training
 * order (DESIGN "Decoupled top-k KL": the loss needs only the teacher's top-k ids, log-probs and
 * top-k mass per token, so a cache of those replaces running the teacher, e.g. a second GPU).
 *
 * File (little-endian; docs/formats.md "Teacher top-k cache"):
 *   header, 64 bytes: magic "GRAFTTK1", u32 version 1, u32 k, u64 vocab, u64 n_rows,
 *                     u64 fingerprint (the caller's: data seed and schedule), 24 zero bytes
 *   n_rows rows in training order, each: i32 input id, i32 ids[k], f32 logp[k], f32 mass
 * The input id of each row lets a reader prove the cache belongs to the data it trains on.
 * Written as <path>.tmp and renamed when complete, so a killed precompute leaves no cache.
 * Thread safety: one object per thread.
 */
#ifndef GRAFT_TEACHER_CACHE_H
#define GRAFT_TEACHER_CACHE_H

#include <stdint.h>

#include "graft/status.h"

typedef struct graft_tkcache graft_tkcache_t;

/* Starts writing <path>.tmp. */
graft_status graft_tkcache_create(const char *path, int64_t k, int64_t vocab, uint64_t fingerprint,
                                  graft_tkcache_t **out, graft_err *err);
/* Appends N rows. */
graft_status graft_tkcache_append(graft_tkcache_t *c, const int32_t *ids, const int32_t *tk_ids,
                                  const float *logp, const float *mass, int64_t N, graft_err *err);
/* Writes the header, fsyncs, renames to <path>; frees c (also on failure, removing the .tmp). */
graft_status graft_tkcache_finish(graft_tkcache_t *c, graft_err *err);
/* Removes <path>.tmp and frees c; NULL is fine. */
void graft_tkcache_abort(graft_tkcache_t *c);

/* Opens a complete cache, refusing a wrong magic/version, another k or vocabulary or fingerprint,
 * or a size that does not match n_rows, naming the file and byte offset. */
graft_status graft_tkcache_open(const char *path, int64_t k, int64_t vocab, uint64_t fingerprint,
                                graft_tkcache_t **out, graft_err *err);
int64_t graft_tkcache_rows(const graft_tkcache_t *c);
/* Reads rows [row0, row0 + N); each row's input id must equal ids[i] (else the cache was made for
 * other data: refused naming the row). */
graft_status graft_tkcache_read(graft_tkcache_t *c, int64_t row0, int64_t N, const int32_t *ids,
                                int32_t *tk_ids, float *logp, float *mass, graft_err *err);
void graft_tkcache_close(graft_tkcache_t *c);

#endif
