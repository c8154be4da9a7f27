/* shard.h: token shards (DESIGN.md "Token shards"; byte layout in docs/data.md).
 *
 * A shard is a 64-byte little-endian header followed by uint32 little-endian token ids:
 *   0  char[8] magic "GRAFTTOK"      32 u64 tokenizer_hash (FNV-1a 64 of the tokenizer files)
 *   8  u32 version (1)               40 u64 checksum (FNV-1a 64 of the token bytes)
 *   12 u32 header_bytes (64)         48 u32 eot_id (end-of-text id, 0xFFFFFFFF if none)
 *   16 u64 vocab_size                52 u32 reserved (0)
 *   24 u64 n_tokens                  56 u64 reserved (0)
 * Documents are separated by (each followed by) eot_id.
 *
 * Writers write <path>.tmp and rename it to <path> on close. Readers validate everything at open
 * (magic, version, sizes against the file size, checksum, every id < vocab size) and then map the
 * tokens read-only. Thread safety: an open graft_shard_t is read-only and may be shared.
 */
#ifndef GRAFT_SHARD_H
#define GRAFT_SHARD_H

#include <stdint.h>
#include <stdio.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GRAFT_SHARD_MAGIC "GRAFTTOK"
#define GRAFT_SHARD_VERSION 1u
#define GRAFT_SHARD_HEADER_BYTES 64u

typedef struct graft_shard_header {
    uint32_t version;
    uint32_t header_bytes;
    uint64_t vocab_size;
    uint64_t n_tokens;
    uint64_t tokenizer_hash;
    uint64_t checksum;
    uint32_t eot_id;
} graft_shard_header;

/* FNV-1a 64 continued from h over n bytes (start with GRAFT_SHARD_CHECKSUM_INIT). */
#define GRAFT_SHARD_CHECKSUM_INIT 0xcbf29ce484222325ull
uint64_t graft_shard_checksum(uint64_t h, const void *p, size_t n);

/* ---- writing ---- */
typedef struct graft_shard_writer graft_shard_writer_t;

/* Creates <path>.tmp. vocab_size bounds every appended id. */
graft_status graft_shard_writer_open(const char *path, uint64_t vocab_size, uint64_t tokenizer_hash,
                                     uint32_t eot_id, graft_shard_writer_t **out, graft_err *err);
/* Appends n ids; an id >= vocab_size is GRAFT_STATUS_BAD_INPUT (nothing of this call is written).
 */
graft_status graft_shard_writer_append(graft_shard_writer_t *w, const uint32_t *ids, size_t n,
                                       graft_err *err);
uint64_t graft_shard_writer_count(const graft_shard_writer_t *w);
uint64_t graft_shard_writer_checksum(const graft_shard_writer_t *w);
/* Writes the header, flushes, renames <path>.tmp to <path> and frees w (also on failure). */
graft_status graft_shard_writer_close(graft_shard_writer_t *w, graft_err *err);
/* Removes <path>.tmp and frees w. Accepts NULL. */
void graft_shard_writer_abort(graft_shard_writer_t *w);

/* ---- reading ---- */
typedef struct graft_shard graft_shard_t;

/* Opens and validates a shard. max_vocab > 0 (the model's vocabulary size) tightens the id bound
 * to min(header vocab_size, max_vocab). Errors name the file and the byte offset (e.g. of the
 * first out-of-range id). *out is freed with graft_shard_close. */
graft_status graft_shard_open(const char *path, uint64_t max_vocab, graft_shard_t **out,
                              graft_err *err);
void graft_shard_close(graft_shard_t *s);
const graft_shard_header *graft_shard_get_header(const graft_shard_t *s);
/* The tokens, valid until graft_shard_close; *n receives the count. */
const uint32_t *graft_shard_tokens(const graft_shard_t *s, uint64_t *n);
const char *graft_shard_path(const graft_shard_t *s);

/* Validates `path` like graft_shard_open (no model bound) and prints a human summary (header
 * fields, document count, first ids) to out. For `graft inspect SHARD`. */
graft_status graft_shard_inspect_print(const char *path, FILE *out, graft_err *err);

/* 1 when the first 8 bytes of `path` are the shard magic (cheap file-type sniffing). */
int graft_shard_is_shard(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_SHARD_H */
