/* safetensors.h: strict reader and atomic writer of one .safetensors file (spec/formats.md).
 *
 * The reader validates everything in spec/formats.md §3-§4 at open (size, header, JSON via jansson
 * with duplicate rejection and 64-bit integers, dtypes, shapes, offsets tiling the data buffer,
 * exact EOF) and refuses with "<path> @ byte <n>: <tensor>: <found>, expected <allowed>". The file
 * is mmap'd read-only; tensor bytes are only ever copied out (alignment is not assumed).
 * The writer lays files out as HF does (§5: dtype-descending then name order, compact header,
 * {"format":"pt"} metadata, space padding to 8) under <path>.tmp, fsyncs and renames.
 *
 * Not here: sharded checkpoints and model directories (checkpoint.h), the Qwen3 tensor table
 * (model.c).
 */
#ifndef GRAFT_SAFETENSORS_H
#define GRAFT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"
#include "graft/tensor.h"

#define GRAFT_ST_MAX_DIMS 8

/* Every dtype spelling of the format; only F32/BF16/F16 (and the integer ones graft writes) map to
 * graft_dtype. */
typedef struct graft_st_tensor {
    const char *name;          /* owned by the file object                                 */
    char dtype_name[16];       /* "BF16", "F32", "I64", ... exactly as in the header        */
    int known_dtype;           /* 1 when dtype maps to a graft_dtype                       */
    graft_dtype dtype;
    int32_t ndim;
    int64_t shape[GRAFT_ST_MAX_DIMS];
    uint64_t begin, end;       /* data_offsets, relative to the data buffer                */
    uint64_t file_offset;      /* absolute byte offset of the first byte in the file       */
} graft_st_tensor;

typedef struct graft_st_file graft_st_file_t;

/* Opens and fully validates `path`. On success *out owns the mapping; close with
 * graft_st_close. Thread safety: a file object may be read from several threads at once. */
graft_status graft_st_open(const char *path, graft_st_file_t **out, graft_err *err);
void graft_st_close(graft_st_file_t *f);

const char *graft_st_path(const graft_st_file_t *f);
int64_t graft_st_count(const graft_st_file_t *f);
const graft_st_tensor *graft_st_get(const graft_st_file_t *f, int64_t i); /* data order */
const graft_st_tensor *graft_st_find(const graft_st_file_t *f, const char *name);
/* __metadata__ value for key, or NULL. */
const char *graft_st_metadata(const graft_st_file_t *f, const char *key);
uint64_t graft_st_header_bytes(const graft_st_file_t *f); /* N */
uint64_t graft_st_file_bytes(const graft_st_file_t *f);

/* Raw bytes of a tensor inside the mapping (not aligned in general). */
const void *graft_st_data(const graft_st_file_t *f, const graft_st_tensor *t);

/* Copies a BF16/F16/F32 tensor into dst as F32 (n = its element count; anything else is refused
 * naming the file and tensor). */
graft_status graft_st_read_f32(const graft_st_file_t *f, const graft_st_tensor *t, float *dst,
                               int64_t n, graft_err *err);

/* Pulls the next `n` F32 values of a tensor starting at element `offset` into dst. The writer
 * calls it in increasing offset order, each element exactly once, so a generator (graft init)
 * can stream a tensor without holding it. */
typedef graft_status (*graft_st_fill_fn)(void *ctx, int64_t offset, float *dst, int64_t n,
                                         graft_err *err);

/* One tensor to write. Exactly one of f32 (converted to `dtype`, BF16/F16 with round-to-nearest-
 * even), raw (already in `dtype`, byte-exact) or fill (F32 values pulled in chunks, converted like
 * f32) is set. */
typedef struct graft_st_entry {
    const char *name;
    graft_dtype dtype;
    int32_t ndim;
    int64_t shape[GRAFT_ST_MAX_DIMS];
    const float *f32;
    const void *raw;
    graft_st_fill_fn fill;     /* appended: streaming source (graft init)                      */
    void *fill_ctx;
} graft_st_entry;

/* Data bytes of one entry (product of shape x element size); the caller validated the shape. */
uint64_t graft_st_entry_bytes(const graft_st_entry *e);

/* Writes a complete file atomically (<path>.tmp, fsync, rename). `meta` is a NULL-terminated list
 * of key, value, key, value, ... added after "format": "pt" (may be NULL). Duplicate names are
 * refused. */
graft_status graft_st_write(const char *path, const graft_st_entry *entries, int64_t n,
                            const char *const *meta, graft_err *err);

/* Conversions used by the reader and the writer (and by the CUDA path's uploads). */
float graft_bf16_to_f32(uint16_t h);
uint16_t graft_f32_to_bf16(float f);  /* round to nearest even; NaN -> 0x7FC0 */
float graft_f16_to_f32(uint16_t h);
uint16_t graft_f32_to_f16(float f);   /* round to nearest even */

#endif
