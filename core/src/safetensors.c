/* safetensors.c: strict reader (mmap, every check of spec/formats.md §4 rows 1-23) and atomic
 * writer (HF layout of §5) of one .safetensors file, plus the BF16/F16 <-> F32 conversions.
 *
 * Not here: model directories, shards and the index (checkpoint.c); which tensors a model needs
 * (model code). Reference: huggingface/safetensors src/tensor.rs (read_metadata, validate) and
 * PyTorch c10/util/BFloat16.h for the RNE rounding.
 *
 * Messages: "<path> @ byte <n>: <what>: <found>, expected <allowed>", where <n> is the header
 * byte of the problem when known (8 for the header as a whole) or the tensor's file offset.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull
#define ST_MAX_DEPTH 3

struct graft_st_file {
    char *path;
    const uint8_t *map;
    uint64_t size;
    uint64_t n_header;
    int64_t n;
    graft_st_tensor *t;      /* data order */
    int64_t *by_name;        /* indices into t, sorted by name */
    int64_t n_meta;
    char **meta;             /* key, value, key, value ... */
};

/* ---- conversions ------------------------------------------------------------------------- */

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float graft_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t graft_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float graft_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return u2f(sign | 0x7F800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return u2f(sign);
        /* subnormal: m * 2^-24, exact in f32 */
        int sh = 0;
        while (!(m & 0x400u)) { m <<= 1; sh++; }
        m &= 0x3FFu;
        return u2f(sign | ((uint32_t)(113 - sh) << 23) | (m << 13));
    }
    return u2f(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t graft_f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7FFFFFFFu;
    if (x > 0x7F800000u) return sign | 0x7E00u;                 /* NaN */
    if (x >= 0x477FF000u) return sign | 0x7C00u;                /* >= 65520 rounds to Inf */
    if (x < 0x38800000u) {                                      /* below 2^-14: subnormal */
        if (x <= 0x33000000u) return sign;                      /* <= 2^-25: ties to even 0 */
        uint32_t e = x >> 23, m = (x & 0x7FFFFFu) | 0x800000u;
        uint32_t shift = 126 - e;                               /* 1..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = x + 0xFFFu + ((x >> 13) & 1u) - 0x38000000u;
    return (uint16_t)(sign | (r >> 13));
}

/* ---- dtype table ------------------------------------------------------------------------- */

typedef struct { const char *name; uint32_t bits; int known; graft_dtype dt; } st_dtype;

static const st_dtype DTYPES[] = {
    {"BOOL", 8, 0, GRAFT_DTYPE_U8}, {"U8", 8, 1, GRAFT_DTYPE_U8}, {"I8", 8, 0, GRAFT_DTYPE_U8},
    {"I16", 16, 0, GRAFT_DTYPE_U8}, {"U16", 16, 0, GRAFT_DTYPE_U8},
    {"F16", 16, 1, GRAFT_DTYPE_F16}, {"BF16", 16, 1, GRAFT_DTYPE_BF16},
    {"I32", 32, 1, GRAFT_DTYPE_I32}, {"U32", 32, 1, GRAFT_DTYPE_U32},
    {"F32", 32, 1, GRAFT_DTYPE_F32}, {"F64", 64, 1, GRAFT_DTYPE_F64},
    {"I64", 64, 1, GRAFT_DTYPE_I64}, {"U64", 64, 0, GRAFT_DTYPE_U8},
    {"C64", 64, 0, GRAFT_DTYPE_U8},
    {"F8_E5M2", 8, 0, GRAFT_DTYPE_U8}, {"F8_E4M3", 8, 0, GRAFT_DTYPE_U8},
    {"F8_E8M0", 8, 0, GRAFT_DTYPE_U8}, {"F8_E4M3FNUZ", 8, 0, GRAFT_DTYPE_U8},
    {"F8_E5M2FNUZ", 8, 0, GRAFT_DTYPE_U8}, {"F6_E2M3", 6, 0, GRAFT_DTYPE_U8},
    {"F6_E3M2", 6, 0, GRAFT_DTYPE_U8}, {"F4", 4, 0, GRAFT_DTYPE_U8},
};
#define N_DTYPES (sizeof DTYPES / sizeof DTYPES[0])

static const st_dtype *dtype_lookup(const char *s) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (!strcmp(DTYPES[i].name, s)) return &DTYPES[i];
    return NULL;
}

/* ---- errors ------------------------------------------------------------------------------ */

#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static graft_status fail(graft_err *err, const char *path, uint64_t byte, const char *what,
                         const char *fmt, ...) {
    char body[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s @ byte %llu: %s: %s", path,
                         (unsigned long long)byte, what, body);
}

/* "\"name\"" truncated for messages. */
static void quote_name(char *dst, size_t cap, const char *name) {
    snprintf(dst, cap, "\"%.200s\"", name);
}

static int checked_mul(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* ---- header text checks -------------------------------------------------------------------- */

/* Index of the first byte that is not valid UTF-8 (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF), or n when all is valid. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

static int is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Offset of the first bracket that opens nesting level > max_depth (outside strings), or n. */
static size_t depth_exceeded_at(const uint8_t *s, size_t n, int max_depth) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) return i;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return n;
}

/* Header byte (relative to the file) where "name" appears as a key, or 8 when not found (names
 * with escapes). */
static uint64_t name_byte(const uint8_t *hdr, size_t n, const char *name) {
    size_t ln = strlen(name);
    for (size_t i = 0; ln && i + ln + 2 <= n; i++) {
        if (hdr[i] == '"' && !memcmp(hdr + i + 1, name, ln) && hdr[i + 1 + ln] == '"') {
            size_t j = i + ln + 2;
            while (j < n && is_ws(hdr[j])) j++;
            if (j < n && hdr[j] == ':') return 8 + (uint64_t)i;
        }
    }
    return 8;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return json_integer_value(v) < 0 ? "a negative integer" : "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* ---- reader ------------------------------------------------------------------------------ */

void graft_st_close(graft_st_file_t *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->size);
    for (int64_t i = 0; i < f->n; i++) free((void *)f->t[i].name);
    for (int64_t i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->t);
    free(f->by_name);
    free(f->path);
    free(f);
}

static int cmp_offsets(const void *a, const void *b) {
    const graft_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}
typedef struct { const char *name; int64_t idx; } name_idx;
static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

/* Checks one tensor entry (rows 10-17 of §4) and fills *t. */
static graft_status parse_entry(const char *path, const uint8_t *hdr, size_t hn, const char *name,
                                json_t *v, graft_st_tensor *t, graft_err *err) {
    char q[216];
    /* the header byte of the name, searched only on failure (it is a scan of the header) */
#define AT name_byte(hdr, hn, name)
    quote_name(q, sizeof q, name);
    if (!json_is_object(v))
        return fail(err, path, AT, q, "entry is %s, expected an object with dtype, shape, "
                    "data_offsets", json_kind(v));
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    for (int k = 0; k < 3; k++)
        if (!json_object_get(v, fields[k]))
            return fail(err, path, AT, q, "no \"%s\", expected dtype, shape and data_offsets",
                        fields[k]);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return fail(err, path, AT, q, "extra field \"%.100s\", expected only dtype, shape, "
                        "data_offsets", key);
    }
    json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return fail(err, path, AT, q, "dtype is %s, expected a dtype string", json_kind(dt));
    const st_dtype *d = dtype_lookup(json_string_value(dt));
    if (!d)
        return fail(err, path, AT, q, "unknown dtype \"%.40s\", expected one of BOOL U8 I8 I16 "
                    "U16 F16 BF16 I32 U32 F32 F64 I64 U64 C64 F8_E5M2 F8_E4M3 F8_E8M0 "
                    "F8_E4M3FNUZ F8_E5M2FNUZ F6_E2M3 F6_E3M2 F4 (case-sensitive)",
                    json_string_value(dt));
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", d->name);
    t->known_dtype = d->known;
    t->dtype = d->dt;

    json_t *sh = json_object_get(v, "shape");
    if (!json_is_array(sh))
        return fail(err, path, AT, q, "shape is %s, expected an array of non-negative integers",
                    json_kind(sh));
    size_t nd = json_array_size(sh);
    if (nd > GRAFT_ST_MAX_DIMS)
        return fail(err, path, AT, q, "shape has %zu dimensions, expected at most %d", nd,
                    GRAFT_ST_MAX_DIMS);
    t->ndim = (int32_t)nd;
    uint64_t count = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *e = json_array_get(sh, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return fail(err, path, AT, q, "shape[%zu] is %s, expected a non-negative integer", i,
                        json_kind(e));
        t->shape[i] = json_integer_value(e);
        if (!checked_mul(count, (uint64_t)t->shape[i], &count)) overflow = 1;
    }
    if (overflow || count > (uint64_t)INT64_MAX)
        return fail(err, path, AT, q, "shape element count overflows 64 bits, expected a "
                    "product below 2^63");
    uint64_t bits;
    if (!checked_mul(count, d->bits, &bits))
        return fail(err, path, AT, q, "byte count of %llu %s elements overflows 64 bits, "
                    "expected a size that fits", (unsigned long long)count, d->name);
    if (bits % 8)
        return fail(err, path, AT, q, "%llu elements of %s = %llu bits, expected a multiple "
                    "of 8 (whole bytes)", (unsigned long long)count, d->name,
                    (unsigned long long)bits);
    uint64_t bytes = bits / 8;

    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2)
        return fail(err, path, AT, q, "data_offsets is %s%s, expected exactly 2 non-negative "
                    "integers", json_kind(off), json_is_array(off) ? " of the wrong length" : "");
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(off, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return fail(err, path, AT, q, "data_offsets[%zu] is %s, expected exactly 2 "
                        "non-negative integers", i, json_kind(e));
    }
    t->begin = (uint64_t)json_integer_value(json_array_get(off, 0));
    t->end = (uint64_t)json_integer_value(json_array_get(off, 1));
    if (t->end < t->begin)
        return fail(err, path, AT, q, "data_offsets [%llu, %llu]: end before begin, expected "
                    "begin <= end", (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != bytes)
        return fail(err, path, AT, q, "data_offsets [%llu, %llu] hold %llu bytes, expected "
                    "%llu (%llu elements of %s)", (unsigned long long)t->begin,
                    (unsigned long long)t->end, (unsigned long long)(t->end - t->begin),
                    (unsigned long long)bytes, (unsigned long long)count, d->name);
    return GRAFT_STATUS_OK;
}
#undef AT

static graft_status parse_metadata(graft_st_file_t *f, const uint8_t *hdr, size_t hn, json_t *m,
                                   graft_err *err) {
    uint64_t at = name_byte(hdr, hn, "__metadata__");
    if (json_is_null(m)) return GRAFT_STATUS_OK;
    if (!json_is_object(m))
        return fail(err, f->path, at, "__metadata__", "%s, expected an object of string -> "
                    "string", json_kind(m));
    size_t n = json_object_size(m);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", f->path);
    const char *key;
    json_t *val;
    json_object_foreach(m, key, val) {
        if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val))
            return fail(err, f->path, at, "__metadata__", "value of \"%.100s\" is %s, expected "
                        "a string", key, json_kind(val));
        char *k = strdup(key), *v = strdup(json_string_value(val));
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++;
        if (!k || !v) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", f->path);
    }
    return GRAFT_STATUS_OK;
}

static graft_status validate(graft_st_file_t *f, graft_err *err) {
    const char *path = f->path;
    uint64_t size = f->size;
    if (size < 8)
        return fail(err, path, 0, "file", "%llu bytes, expected at least 8 (the header length)",
                    (unsigned long long)size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
    f->n_header = n;
    if (n > ST_MAX_HEADER)
        return fail(err, path, 0, "header length", "%llu, expected at most %llu",
                    (unsigned long long)n, ST_MAX_HEADER);
    if (n > size - 8)
        return fail(err, path, 0, "header length", "%llu runs past the end of the file (%llu "
                    "bytes), expected at most %llu", (unsigned long long)n,
                    (unsigned long long)size, (unsigned long long)(size - 8));
    if (n < 2)
        return fail(err, path, 0, "header length", "%llu, expected at least 2 (\"{}\")",
                    (unsigned long long)n);
    const uint8_t *hdr = f->map + 8;
    size_t hn = (size_t)n;
    size_t bad = utf8_invalid_at(hdr, hn);
    if (bad < hn)
        return fail(err, path, 8 + bad, "header", "invalid UTF-8 (byte 0x%02X), expected valid "
                    "UTF-8 text", hdr[bad]);
    size_t i0 = 0;
    while (i0 < hn && is_ws(hdr[i0])) i0++;
    if (i0 == hn || hdr[i0] != '{')
        return fail(err, path, 8 + i0, "header", "%s 0x%02X, expected '{' after optional "
                    "whitespace (20 09 0A 0D; a BOM is not allowed)",
                    i0 == hn ? "only whitespace, last byte" : "starts with byte",
                    hdr[i0 == hn ? hn - 1 : i0]);
    size_t last = hn;
    while (last > 0 && is_ws(hdr[last - 1])) last--;
    if (hdr[last - 1] != '}')
        return fail(err, path, 8 + last - 1, "header", "trailing byte 0x%02X after the JSON "
                    "object, expected only whitespace (20 09 0A 0D)", hdr[last - 1]);
    size_t deep = depth_exceeded_at(hdr, hn, ST_MAX_DEPTH);
    if (deep < hn)
        return fail(err, path, 8 + deep, "header", "nesting deeper than %d levels, expected "
                    "object -> tensor entry -> array", ST_MAX_DEPTH);

    json_error_t je;
    json_t *root = json_loadb((const char *)hdr, hn, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        uint64_t at = 8 + (uint64_t)(je.position > 0 ? je.position - 1 : 0);
        if (strstr(je.text, "duplicate"))
            return fail(err, path, at, "header", "%s, expected unique keys", je.text);
        if (strstr(je.text, "NUL") || strstr(je.text, "u0000"))
            return fail(err, path, at, "tensor name", "contains U+0000 (%s), expected a name "
                        "without NUL", je.text);
        if (strstr(je.text, "too big") || strstr(je.text, "overflow"))
            return fail(err, path, at, "header", "number does not fit (%s), expected an "
                        "integer below 2^63", je.text);
        return fail(err, path, at, "header", "not JSON (%s), expected one JSON object", je.text);
    }
    graft_status st = GRAFT_STATUS_OK;
    if (!json_is_object(root)) {
        st = fail(err, path, 8 + i0, "header", "top level is %s, expected an object",
                  json_kind(root));
        goto out;
    }
    size_t cap = json_object_size(root);
    f->t = calloc(cap ? cap : 1, sizeof *f->t);
    f->by_name = calloc(cap ? cap : 1, sizeof *f->by_name);
    if (!f->t || !f->by_name) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
        if (!strcmp(key, "__metadata__")) {
            if ((st = parse_metadata(f, hdr, hn, val, err))) goto out;
            continue;
        }
        if (klen == 0) {
            st = fail(err, path, 8, "tensor name", "empty, expected a non-empty name");
            goto out;
        }
        if (strlen(key) != klen) {
            st = fail(err, path, 8, "tensor name", "contains U+0000, expected a name without NUL");
            goto out;
        }
        graft_st_tensor *t = &f->t[f->n];
        if ((st = parse_entry(path, hdr, hn, key, val, t, err))) goto out;
        t->name = strdup(key);
        if (!t->name) {
            st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
            goto out;
        }
        f->n++;
    }
    qsort(f->t, (size_t)f->n, sizeof *f->t, cmp_offsets);
    uint64_t expected = 0, data_bytes = size - 8 - n;
    for (int64_t i = 0; i < f->n; i++) {
        graft_st_tensor *t = &f->t[i];
        char q[216];
        quote_name(q, sizeof q, t->name);
        if (t->begin != expected) {
            st = fail(err, path, 8 + n + (t->begin < data_bytes ? t->begin : data_bytes), q,
                      "data_offsets [%llu, %llu] begin at %llu, expected %llu (%s)",
                      (unsigned long long)t->begin, (unsigned long long)t->end,
                      (unsigned long long)t->begin, (unsigned long long)expected,
                      t->begin > expected ? (i ? "a gap after the previous tensor"
                                                : "the first tensor must start at 0")
                                          : "overlaps the previous tensor");
            goto out;
        }
        expected = t->end;
        if (expected > data_bytes) break; /* reported below as a short file */
        t->file_offset = 8 + n + t->begin;
    }
    if (expected != data_bytes) {
        st = fail(err, path, 8 + n, "data buffer", "%llu bytes after the header (file %llu "
                  "bytes), expected %llu (%s)", (unsigned long long)data_bytes,
                  (unsigned long long)size, (unsigned long long)expected,
                  expected > data_bytes ? "the file is truncated" : "trailing bytes after the "
                  "last tensor");
        goto out;
    }
    name_idx *ni = malloc((size_t)(f->n ? f->n : 1) * sizeof *ni);
    if (!ni) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    for (int64_t i = 0; i < f->n; i++) ni[i] = (name_idx){f->t[i].name, i};
    qsort(ni, (size_t)f->n, sizeof *ni, cmp_by_name);
    for (int64_t i = 0; i < f->n; i++) f->by_name[i] = ni[i].idx;
    free(ni);
out:
    json_decref(root);
    return st;
}

graft_status graft_st_open(const char *path, graft_st_file_t **out, graft_err *err) {
    *out = NULL;
    graft_st_file_t *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
        graft_st_close(f);
        return GRAFT_STATUS_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        graft_err_set(err, GRAFT_STATUS_IO, "%s: not a regular file", path);
        close(fd);
        graft_st_close(f);
        return GRAFT_STATUS_IO;
    }
    f->size = (uint64_t)sb.st_size;
    if (f->size >= 8) {
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot mmap %llu bytes: %s", path,
                          (unsigned long long)f->size, strerror(errno));
            close(fd);
            graft_st_close(f);
            return GRAFT_STATUS_IO;
        }
        f->map = m;
    }
    close(fd);
    graft_status st = validate(f, err);
    if (st) {
        graft_st_close(f);
        return st;
    }
    *out = f;
    return GRAFT_STATUS_OK;
}

const char *graft_st_path(const graft_st_file_t *f) { return f->path; }
int64_t graft_st_count(const graft_st_file_t *f) { return f->n; }
const graft_st_tensor *graft_st_get(const graft_st_file_t *f, int64_t i) {
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}
const graft_st_tensor *graft_st_find(const graft_st_file_t *f, const char *name) {
    int64_t lo = 0, hi = f->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[f->by_name[mid]].name, name);
        if (!c) return &f->t[f->by_name[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}
const char *graft_st_metadata(const graft_st_file_t *f, const char *key) {
    for (int64_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}
uint64_t graft_st_header_bytes(const graft_st_file_t *f) { return f->n_header; }
uint64_t graft_st_file_bytes(const graft_st_file_t *f) { return f->size; }
const void *graft_st_data(const graft_st_file_t *f, const graft_st_tensor *t) {
    return f->map + t->file_offset;
}

graft_status graft_st_read_f32(const graft_st_file_t *f, const graft_st_tensor *t, float *dst,
                               int64_t n, graft_err *err) {
    int64_t count = 1;
    for (int32_t i = 0; i < t->ndim; i++) count *= t->shape[i];
    if (!t->known_dtype || (t->dtype != GRAFT_DTYPE_F32 && t->dtype != GRAFT_DTYPE_BF16 &&
                            t->dtype != GRAFT_DTYPE_F16))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "%s: unsupported dtype %s for "
                             "tensor %s, expected BF16, F16 or F32", f->path, t->dtype_name,
                             t->name);
    if (n != count)
        return graft_err_set(err, GRAFT_STATUS_INTERNAL, "%s: \"%s\": %lld elements, caller "
                             "expected %lld", f->path, t->name, (long long)count, (long long)n);
    const uint8_t *p = f->map + t->file_offset;
    if (t->dtype == GRAFT_DTYPE_F32) {
        memcpy(dst, p, (size_t)n * 4);
        return GRAFT_STATUS_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
        dst[i] = t->dtype == GRAFT_DTYPE_BF16 ? graft_bf16_to_f32(h) : graft_f16_to_f32(h);
    }
    return GRAFT_STATUS_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct { char *p; size_t n, cap; int oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_fmt(sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)k);
}
/* A JSON string literal: quotes, backslashes and control characters escaped, UTF-8 kept. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { sb_put(b, "\\", 1); sb_put(b, s, 1); }
        else if (c < 0x20) sb_fmt(b, "\\u%04x", c);
        else sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

static int dtype_rank(graft_dtype d) { /* §5: descending alignment order of the crate */
    switch (d) {
    case GRAFT_DTYPE_I64: return 0;
    case GRAFT_DTYPE_F64: return 1;
    case GRAFT_DTYPE_F32: return 2;
    case GRAFT_DTYPE_U32: return 3;
    case GRAFT_DTYPE_I32: return 4;
    case GRAFT_DTYPE_BF16: return 5;
    case GRAFT_DTYPE_F16: return 6;
    case GRAFT_DTYPE_U8: return 7;
    }
    return 8;
}

static int cmp_write(const void *a, const void *b) {
    const graft_st_entry *x = *(const graft_st_entry *const *)a;
    const graft_st_entry *y = *(const graft_st_entry *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return rx - ry;
    return strcmp(x->name, y->name);
}

uint64_t graft_st_entry_bytes(const graft_st_entry *e) {
    uint64_t n = graft_dtype_size(e->dtype);
    for (int32_t i = 0; i < e->ndim; i++) n *= (uint64_t)e->shape[i];
    return n;
}

static int fwrite_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n; }

/* Writes the tensor's bytes, converting from f32 (or pulling from fill) in chunks. */
static graft_status write_data(FILE *fp, const char *tmp, const graft_st_entry *e, graft_err *err) {
    uint64_t count = 1;
    for (int32_t i = 0; i < e->ndim; i++) count *= (uint64_t)e->shape[i];
    size_t es = graft_dtype_size(e->dtype);
    if (e->raw) {
        if (!fwrite_all(fp, e->raw, (size_t)(count * es)))
            return graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", tmp, strerror(errno));
        return GRAFT_STATUS_OK;
    }
    enum { CH = 65536 };
    float *fb = e->fill ? malloc(CH * sizeof *fb) : NULL;
    uint8_t *ob = malloc(CH * 4);
    graft_status st = GRAFT_STATUS_OK;
    if (!ob || (e->fill && !fb)) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", tmp);
        goto out;
    }
    for (uint64_t off = 0; off < count; off += CH) {
        size_t k = (size_t)(count - off < CH ? count - off : CH);
        const float *src;
        if (e->fill) {
            if ((st = e->fill(e->fill_ctx, (int64_t)off, fb, (int64_t)k, err))) goto out;
            src = fb;
        } else {
            src = e->f32 + off;
        }
        for (size_t i = 0; i < k; i++) {
            if (e->dtype == GRAFT_DTYPE_F32) {
                uint32_t u = f2u(src[i]);
                for (int b = 0; b < 4; b++) ob[4 * i + b] = (uint8_t)(u >> (8 * b));
            } else {
                uint16_t h = e->dtype == GRAFT_DTYPE_BF16 ? graft_f32_to_bf16(src[i])
                                                          : graft_f32_to_f16(src[i]);
                ob[2 * i] = (uint8_t)h;
                ob[2 * i + 1] = (uint8_t)(h >> 8);
            }
        }
        if (!fwrite_all(fp, ob, k * es)) {
            st = graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", tmp, strerror(errno));
            goto out;
        }
    }
out:
    free(fb);
    free(ob);
    return st;
}

graft_status graft_st_write(const char *path, const graft_st_entry *entries, int64_t n,
                            const char *const *meta, graft_err *err) {
    if (n < 0) return graft_err_set(err, GRAFT_STATUS_INTERNAL, "%s: negative tensor count", path);
    const graft_st_entry **ord = malloc((size_t)(n ? n : 1) * sizeof *ord);
    sbuf h = {0};
    char *tmp = NULL;
    FILE *fp = NULL;
    graft_status st = GRAFT_STATUS_OK;
    if (!ord) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    for (int64_t i = 0; i < n; i++) {
        const graft_st_entry *e = &entries[i];
        int srcs = (e->f32 != NULL) + (e->raw != NULL) + (e->fill != NULL);
        size_t nl = e->name ? strlen(e->name) : 0;
        if (!nl || utf8_invalid_at((const uint8_t *)e->name, nl) < nl ||
            !strcmp(e->name, "__metadata__")) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: tensor name \"%s\": empty, "
                               "reserved or not UTF-8, expected a valid name", path,
                               e->name ? e->name : "");
            goto out;
        }
        if (srcs != 1 || e->ndim < 0 || e->ndim > GRAFT_ST_MAX_DIMS || !graft_dtype_size(e->dtype) ||
            (!e->raw && e->dtype != GRAFT_DTYPE_F32 && e->dtype != GRAFT_DTYPE_BF16 &&
             e->dtype != GRAFT_DTYPE_F16)) {
            st = graft_err_set(err, GRAFT_STATUS_INTERNAL, "%s: \"%s\": bad entry (sources %d, "
                               "ndim %d, dtype %s)", path, e->name, srcs, e->ndim,
                               graft_dtype_name(e->dtype));
            goto out;
        }
        for (int32_t d = 0; d < e->ndim; d++)
            if (e->shape[d] < 0) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": shape[%d] = %lld, "
                                   "expected >= 0", path, e->name, d, (long long)e->shape[d]);
                goto out;
            }
        ord[i] = e;
    }
    {
        name_idx *ni = malloc((size_t)(n ? n : 1) * sizeof *ni);
        if (!ni) {
            st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
            goto out;
        }
        for (int64_t i = 0; i < n; i++) ni[i] = (name_idx){entries[i].name, i};
        qsort(ni, (size_t)n, sizeof *ni, cmp_by_name);
        for (int64_t i = 1; i < n; i++)
            if (!strcmp(ni[i].name, ni[i - 1].name)) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: tensor \"%s\": given twice, "
                                   "expected unique names", path, ni[i].name);
                free(ni);
                goto out;
            }
        free(ni);
    }
    qsort(ord, (size_t)n, sizeof *ord, cmp_write);
    sb_str(&h, "{\"__metadata__\":{\"format\":\"pt\"");
    for (const char *const *m = meta; m && m[0] && m[1]; m += 2) {
        sb_str(&h, ",");
        sb_json_str(&h, m[0]);
        sb_str(&h, ":");
        sb_json_str(&h, m[1]);
    }
    sb_str(&h, "}");
    uint64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        const graft_st_entry *e = ord[i];
        uint64_t bytes = 1, el = graft_dtype_size(e->dtype);
        int ovf = 0;
        for (int32_t d = 0; d < e->ndim; d++)
            if (!checked_mul(bytes, (uint64_t)e->shape[d], &bytes)) ovf = 1;
        if (ovf || !checked_mul(bytes, el, &bytes) || off + bytes < off) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: \"%s\": size overflows 64 bits",
                               path, e->name);
            goto out;
        }
        sb_str(&h, ",");
        sb_json_str(&h, e->name);
        sb_fmt(&h, ":{\"dtype\":\"%s\",\"shape\":[", graft_dtype_name(e->dtype));
        for (int32_t d = 0; d < e->ndim; d++) sb_fmt(&h, d ? ",%lld" : "%lld", (long long)e->shape[d]);
        sb_fmt(&h, "],\"data_offsets\":[%llu,", (unsigned long long)off);
        off += bytes;
        sb_fmt(&h, "%llu]}", (unsigned long long)off);
    }
    sb_str(&h, "}");
    while ((8 + h.n) % 8) sb_str(&h, " ");
    if (h.oom) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    if (h.n > ST_MAX_HEADER) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: header of %zu bytes, expected at "
                           "most %llu", path, h.n, ST_MAX_HEADER);
        goto out;
    }
    size_t pl = strlen(path);
    tmp = malloc(pl + 5);
    if (!tmp) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    fp = fopen(tmp, "wb");
    if (!fp) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    uint8_t len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (uint8_t)((uint64_t)h.n >> (8 * b));
    if (!fwrite_all(fp, len8, 8) || !fwrite_all(fp, h.p, h.n)) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        if ((st = write_data(fp, tmp, ord[i], err))) goto out;
    if (fflush(fp) || fsync(fileno(fp))) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: flush failed: %s", tmp, strerror(errno));
        goto out;
    }
    int rc = fclose(fp);
    fp = NULL;
    if (rc) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path)) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot rename to %s: %s", tmp, path,
                           strerror(errno));
        goto out;
    }
out:
    if (fp) fclose(fp);
    if (st && tmp) unlink(tmp);
    free(tmp);
    free(h.p);
    free(ord);
    return st;
}
