/* tokenizer.c: Qwen byte-level BPE, exact to Hugging Face `tokenizers` 0.23
 * (shared/spec/tokenizer.md).
 *
 * Holds: loading (tokenizer.json, or vocab.json + merges.txt + added tokens) with validation,
 * encode (added tokens split out on the raw text, NFC per segment with utf8proc, the hand-written
 * pre-tokenizer scanner of spec 5.4, byte-to-unicode, BPE with HF's (rank, position) priority
 * queue over a linked list), parallel batch encode, and decode (spec 8).
 * Does not hold: shards (shard.c), the CLI (cli/cmd_tokenize.c).
 * Mirrors: tokenizers/src/models/bpe/{model.rs, word.rs}, tokenizer/added_vocabulary.rs,
 * pre_tokenizers/{split.rs, byte_level.rs}, normalizers/unicode.rs.
 *
 * Unicode tables: utf8proc 2.8 (Unicode 15.0) for NFC and general categories. Known differences
 * from HF (spec 4.2, 5.5): HF does not compose U+11935 + U+11930, and neither does this file
 * (special case in nfc_segment); letters first assigned in Unicode 15.1-16.0 are "other" here.
 */
#include "tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#include "fsutil.h"

#define MAX_TOKEN_BYTES 4096 /* cap on one vocab / added-token string */

/* ---- small helpers ------------------------------------------------------------------------- */

void graft_ids_free(graft_ids *v) {
    if (!v) return;
    free(v->data);
    v->data = NULL;
    v->n = v->cap = 0;
}

static int ids_reserve(graft_ids *v, size_t extra) {
    if (v->n + extra <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < v->n + extra) cap *= 2;
    uint32_t *p = realloc(v->data, cap * sizeof *p);
    if (!p) return -1;
    v->data = p;
    v->cap = cap;
    return 0;
}

graft_status graft_ids_push(graft_ids *v, uint32_t id, graft_err *err) {
    if (ids_reserve(v, 1)) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "ids: out of memory");
    v->data[v->n++] = id;
    return GRAFT_STATUS_OK;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_OFFSET 0xcbf29ce484222325ull

/* GPT-2 byte <-> unicode table (spec 6). */
static void byte_table(uint32_t b2u[256]) {
    int k = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        b2u[b] = printable ? (uint32_t)b : 0x100u + (uint32_t)k++;
    }
}

/* Decodes one UTF-8 character at s[i] (i < n) strictly; returns its length or 0 if invalid. */
static int utf8_char(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned b = s[i];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        c = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        c = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else
        return 0;
    for (int k = 0; k < need; k++) {
        if (i + 1 + (size_t)k >= n) return 0;
        unsigned x = s[i + 1 + k];
        if (x < lo || x > hi) return 0;
        lo = 0x80;
        hi = 0xBF;
        c = (c << 6) | (x & 0x3F);
    }
    *cp = c;
    return need + 1;
}

static size_t utf8_put(char *o, uint32_t c) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- character classes for the pre-tokenizer (spec 5.3) ------------------------------------ */

enum { C_L = 1, C_N = 2, C_W = 4, C_CRLF = 8, C_O = 16 };

static uint8_t bmp_class[65536];
static pthread_once_t class_once = PTHREAD_ONCE_INIT;

static int is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static uint8_t class_slow(uint32_t c) {
    if (c == '\r' || c == '\n') return C_W | C_CRLF;
    if (is_white_space(c)) return C_W;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) return C_L;
    if (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) return C_N;
    return C_O;
}

static void class_init(void) {
    for (uint32_t c = 0; c < 65536; c++) bmp_class[c] = class_slow(c);
}

static inline uint8_t char_class(uint32_t c) { return c < 65536 ? bmp_class[c] : class_slow(c); }

/* ---- the tokenizer ------------------------------------------------------------------------- */

typedef struct merge_slot {
    uint64_t key; /* ((a + 1) << 32) | (b + 1); 0 = empty */
    uint32_t rank, id;
} merge_slot;

typedef struct added_tok {
    char *content;
    size_t len;
    uint32_t id;
    int special;
} added_tok;

struct graft_tokenizer {
    uint32_t n_bpe, n_vocab, eot;
    uint64_t hash;
    int nfc, split;
    uint32_t byte_id[256];
    char *bytes;   /* all id strings as raw bytes */
    uint64_t *off; /* (n_vocab + 1) offsets into bytes; known[i] says if id i exists */
    uint8_t *known, *special;
    merge_slot *merges;
    uint64_t merge_mask;
    added_tok *added;
    size_t n_added;
    uint8_t added_first[256];
    int single_first; /* the one first byte all added tokens share, or -1 */
};

uint32_t graft_tokenizer_n_vocab(const graft_tokenizer_t *t) { return t->n_vocab; }
uint32_t graft_tokenizer_n_bpe(const graft_tokenizer_t *t) { return t->n_bpe; }
uint32_t graft_tokenizer_eot_id(const graft_tokenizer_t *t) { return t->eot; }
uint64_t graft_tokenizer_hash(const graft_tokenizer_t *t) { return t->hash; }

uint32_t graft_tokenizer_added_id(const graft_tokenizer_t *t, const char *content) {
    size_t n = strlen(content);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, content, n)) return t->added[i].id;
    return UINT32_MAX;
}

const char *graft_tokenizer_id_bytes(const graft_tokenizer_t *t, uint32_t id, size_t *len) {
    if (id >= t->n_vocab || !t->known[id]) return NULL;
    *len = (size_t)(t->off[id + 1] - t->off[id]);
    return t->bytes + t->off[id];
}

void graft_tokenizer_free(graft_tokenizer_t *t) {
    if (!t) return;
    free(t->bytes);
    free(t->off);
    free(t->known);
    free(t->special);
    free(t->merges);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t);
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static inline const merge_slot *merge_find(const graft_tokenizer_t *t, uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)(a + 1) << 32) | (uint64_t)(b + 1);
    for (uint64_t i = mix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const merge_slot *s = &t->merges[i];
        if (s->key == key) return s;
        if (!s->key) return NULL;
    }
}

static void merge_put(graft_tokenizer_t *t, uint32_t a, uint32_t b, uint32_t rank, uint32_t id) {
    uint64_t key = ((uint64_t)(a + 1) << 32) | (uint64_t)(b + 1);
    for (uint64_t i = mix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        merge_slot *s = &t->merges[i];
        if (!s->key || s->key == key) { /* a later duplicate wins, as in HF's HashMap collect */
            s->key = key;
            s->rank = rank;
            s->id = id;
            return;
        }
    }
}

/* ---- loading ------------------------------------------------------------------------------- */

typedef struct load_ctx {
    graft_tokenizer_t *t;
    json_t *vocab;          /* object: mapped token string -> id */
    const char *vocab_file; /* for messages */
    const char *vocab_field;
    uint32_t b2u[256];
    char scratch[2 * MAX_TOKEN_BYTES + 8];
} load_ctx;

static graft_status load_json(const char *path, json_t **out, uint64_t *hash, graft_err *err) {
    char *data;
    size_t len;
    graft_status st = graft_fs_read_file(path, &data, &len, err);
    if (st) return st;
    if (hash) *hash = fnv1a(*hash, data, len);
    json_error_t je;
    *out = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    free(data);
    if (!*out)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%d:%d: invalid JSON: %s", path,
                             je.line, je.column, je.text);
    return GRAFT_STATUS_OK;
}

/* Converts a vocab string (byte-level characters) to raw bytes; a string with a character outside
 * the byte table decodes to its own UTF-8 (spec 8). Returns the length written to out. */
static size_t token_to_bytes(const load_ctx *c, const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_char((const unsigned char *)s, n, i, &cp);
        if (!l) break;
        int b = -1;
        if (cp < 0x144) {
            for (int j = 0; j < 256; j++)
                if (c->b2u[j] == cp) {
                    b = j;
                    break;
                }
        }
        if (b < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[k++] = (char)b;
        i += (size_t)l;
    }
    return k;
}

static graft_status load_vocab(load_ctx *c, graft_err *err) {
    graft_tokenizer_t *t = c->t;
    if (!json_is_object(c->vocab))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %s, expected an object",
                             c->vocab_file, c->vocab_field,
                             json_is_null(c->vocab) ? "null" : "not an object");
    size_t n = json_object_size(c->vocab);
    if (n < 256 || n > (1u << 30))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %zu entries, expected 256..2^30",
                             c->vocab_file, c->vocab_field, n);
    t->n_bpe = (uint32_t)n;
    uint32_t *len = calloc(n, sizeof *len);
    const char **key_of = calloc(n, sizeof *key_of);
    size_t total = 0;
    graft_status st = GRAFT_STATUS_OK;
    if (!len || !key_of) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "vocab: out of memory");
        goto done;
    }
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(c->vocab, key, klen, v) {
        if (!json_is_integer(v)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                               "%s: %s[\"%.64s\"]: not an integer, expected an id", c->vocab_file,
                               c->vocab_field, key);
            goto done;
        }
        json_int_t id = json_integer_value(v);
        if (id < 0 || (size_t)id >= n) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                               "%s: %s[\"%.64s\"]: id %lld, expected 0..%zu (ids must be dense)",
                               c->vocab_file, c->vocab_field, key, (long long)id, n - 1);
            goto done;
        }
        if (key_of[id]) {
            st = graft_err_set(
                err, GRAFT_STATUS_BAD_INPUT,
                "%s: %s[\"%.64s\"]: id %lld also used by \"%.64s\", expected unique ids",
                c->vocab_file, c->vocab_field, key, (long long)id, key_of[id]);
            goto done;
        }
        if (klen == 0 || klen > MAX_TOKEN_BYTES) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                               "%s: %s: id %lld: token of %zu bytes, expected 1..%d", c->vocab_file,
                               c->vocab_field, (long long)id, klen, MAX_TOKEN_BYTES);
            goto done;
        }
        key_of[id] = key;
        len[id] = (uint32_t)klen;
        total += klen;
    }
    t->bytes = malloc(total + 1);
    t->off = calloc((size_t)n + 2, sizeof *t->off);
    if (!t->bytes || !t->off) {
        st = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "vocab: out of memory");
        goto done;
    }
    uint64_t o = 0;
    for (size_t i = 0; i < n; i++) {
        t->off[i] = o;
        o += token_to_bytes(c, key_of[i], len[i], t->bytes + o);
    }
    t->off[n] = o;
    for (int b = 0; b < 256; b++) {
        char ch[4];
        size_t l = utf8_put(ch, c->b2u[b]);
        json_t *idv = json_object_getn(c->vocab, ch, l);
        if (!idv) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                               "%s: %s: byte token \"%.*s\" (byte 0x%02X) missing, expected all "
                               "256 byte-level tokens",
                               c->vocab_file, c->vocab_field, (int)l, ch, b);
            goto done;
        }
        t->byte_id[b] = (uint32_t)json_integer_value(idv);
    }
done:
    free(len);
    free(key_of);
    return st;
}

static graft_status merges_alloc(graft_tokenizer_t *t, size_t n_merges, graft_err *err) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n_merges + 16) cap *= 2;
    t->merges = calloc(cap, sizeof *t->merges);
    if (!t->merges) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "merges: out of memory");
    t->merge_mask = cap - 1;
    return GRAFT_STATUS_OK;
}

/* Adds merge `rank` = a + b; `where` names the file and field or line for messages. */
static graft_status add_merge(load_ctx *c, const char *a, size_t al, const char *b, size_t bl,
                              uint32_t rank, const char *where, graft_err *err) {
    json_t *ia = json_object_getn(c->vocab, a, al), *ib = json_object_getn(c->vocab, b, bl);
    if (!ia || !ib) {
        const char *m = ia ? b : a;
        int ml = (int)(ia ? bl : al);
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: merge part \"%.*s\" is not in the vocab", where,
                             ml > 64 ? 64 : ml, m);
    }
    if (al + bl > 2 * MAX_TOKEN_BYTES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: merge result too long", where);
    memcpy(c->scratch, a, al);
    memcpy(c->scratch + al, b, bl);
    json_t *ic = json_object_getn(c->vocab, c->scratch, al + bl);
    if (!ic)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: merge result \"%.*s\" is not in the vocab", where,
                             (int)(al + bl > 64 ? 64 : al + bl), c->scratch);
    merge_put(c->t, (uint32_t)json_integer_value(ia), (uint32_t)json_integer_value(ib), rank,
              (uint32_t)json_integer_value(ic));
    return GRAFT_STATUS_OK;
}

static graft_status load_merges_json(load_ctx *c, json_t *merges, const char *file,
                                     graft_err *err) {
    if (!json_is_array(merges))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: model.merges: %s, expected an array",
                             file, merges ? "not an array" : "missing");
    size_t n = json_array_size(merges);
    graft_status st = merges_alloc(c->t, n, err);
    if (st) return st;
    char where[1200];
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        snprintf(where, sizeof where, "%s: model.merges[%zu]", file, i);
        if (json_is_array(m)) {
            json_t *x = json_array_get(m, 0), *y = json_array_get(m, 1);
            if (json_array_size(m) != 2 || !json_is_string(x) || !json_is_string(y))
                return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                     "%s: expected a pair of two strings", where);
            st = add_merge(c, json_string_value(x), json_string_length(x), json_string_value(y),
                           json_string_length(y), (uint32_t)i, where, err);
        } else if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t l = json_string_length(m);
            const char *sp = memchr(s, ' ', l);
            if (!sp || sp == s || sp == s + l - 1 || memchr(sp + 1, ' ', (size_t)(s + l - sp - 1)))
                return graft_err_set(
                    err, GRAFT_STATUS_BAD_INPUT,
                    "%s: \"%.64s\", expected two non-empty parts separated by one space", where, s);
            st = add_merge(c, s, (size_t)(sp - s), sp + 1, (size_t)(s + l - sp - 1), (uint32_t)i,
                           where, err);
        } else {
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s: expected a [\"a\", \"b\"] pair or an \"a b\" string", where);
        }
        if (st) return st;
    }
    return GRAFT_STATUS_OK;
}

static graft_status load_merges_txt(load_ctx *c, const char *path, graft_err *err) {
    char *data;
    size_t len;
    graft_status st = graft_fs_read_file(path, &data, &len, err);
    if (st) return st;
    c->t->hash = fnv1a(c->t->hash, data, len);
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += data[i] == '\n';
    st = merges_alloc(c->t, n_lines, err);
    uint32_t rank = 0;
    size_t line = 0;
    char where[4200];
    for (size_t i = 0; !st && i < len;) {
        char *nl = memchr(data + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - data) : len;
        const char *s = data + i;
        size_t l = e - i;
        line++;
        i = e + 1;
        if (!nl && l == 0) break;
        if (l >= 8 && !memcmp(s, "#version", 8)) continue;
        snprintf(where, sizeof where, "%s:%zu", path, line);
        const char *sp = memchr(s, ' ', l);
        if (!sp || sp == s || sp == s + l - 1 || memchr(sp + 1, ' ', (size_t)(s + l - sp - 1))) {
            st = graft_err_set(
                err, GRAFT_STATUS_BAD_INPUT,
                "%s: \"%.*s\", expected \"LEFT RIGHT\" (two non-empty parts, one space)", where,
                (int)(l > 64 ? 64 : l), s);
            break;
        }
        st =
            add_merge(c, s, (size_t)(sp - s), sp + 1, (size_t)(s + l - sp - 1), rank++, where, err);
    }
    free(data);
    return st;
}

static graft_status bool_field(json_t *o, const char *key, int dflt, int *out, const char *where,
                               graft_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = dflt;
        return GRAFT_STATUS_OK;
    }
    if (!json_is_boolean(v))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s.%s: not a boolean, expected true or false", where, key);
    *out = json_is_true(v);
    return GRAFT_STATUS_OK;
}

/* One added-token object (tokenizer.json added_tokens[i] or added_tokens_decoder[id]). */
static graft_status add_added(load_ctx *c, json_t *o, long long id, const char *where,
                              graft_err *err) {
    graft_tokenizer_t *t = c->t;
    if (!json_is_object(o))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: not an object, expected {id, content, ...}", where);
    json_t *ct = json_object_get(o, "content");
    if (!json_is_string(ct) || json_string_length(ct) == 0 ||
        json_string_length(ct) > MAX_TOKEN_BYTES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s.content: %s, expected a non-empty string", where,
                             ct ? "not a non-empty string" : "missing");
    if (id < 0 || id >= (1ll << 30))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s.id: %lld, expected 0..2^30", where,
                             id);
    int flag = 0;
    static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
    for (int k = 0; k < 3; k++) {
        graft_status st = bool_field(o, unsupported[k], 0, &flag, where, err);
        if (st) return st;
        if (flag)
            return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                                 "%s.%s: true, expected false (not supported)", where,
                                 unsupported[k]);
    }
    int special = 0;
    graft_status st = bool_field(o, "special", 0, &special, where, err);
    if (st) return st;
    st = bool_field(o, "normalized", 0, &flag, where, err);
    if (st) return st;
    const char *s = json_string_value(ct);
    size_t l = json_string_length(ct);
    if ((uint64_t)id < t->n_bpe) {
        json_t *vid = json_object_getn(c->vocab, s, l);
        if (!vid || json_integer_value(vid) != id)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s.id: %lld is a BPE id of another token, expected >= %u or the "
                                 "vocab id of \"%.64s\"",
                                 where, id, t->n_bpe, s);
    }
    for (size_t i = 0; i < t->n_added; i++) {
        if (t->added[i].id == (uint32_t)id)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "%s.id: %lld used twice, expected unique ids", where, id);
        if (t->added[i].len == l && !memcmp(t->added[i].content, s, l))
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s.content: \"%.64s\" appears twice",
                                 where, s);
    }
    added_tok *a = realloc(t->added, (t->n_added + 1) * sizeof *a);
    if (!a) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "added tokens: out of memory");
    t->added = a;
    a = &t->added[t->n_added];
    a->content = malloc(l + 1);
    if (!a->content)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "added tokens: out of memory");
    memcpy(a->content, s, l + 1);
    a->len = l;
    a->id = (uint32_t)id;
    a->special = special;
    t->n_added++;
    return GRAFT_STATUS_OK;
}

/* Builds the id -> bytes table over the full id range and the added-token lookup. */
static graft_status finish(graft_tokenizer_t *t, graft_err *err) {
    uint32_t n = t->n_bpe;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id + 1 > n) n = t->added[i].id + 1;
    size_t extra = 0;
    for (size_t i = 0; i < t->n_added; i++) extra += t->added[i].len;
    uint64_t *off = realloc(t->off, ((size_t)n + 2) * sizeof *off);
    if (off) t->off = off;
    char *bytes = off ? realloc(t->bytes, t->off[t->n_bpe] + extra + 1) : NULL;
    if (bytes) t->bytes = bytes;
    t->known = calloc(n + 1, 1);
    t->special = calloc(n + 1, 1);
    if (!off || !bytes || !t->known || !t->special)
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "tokenizer: out of memory");
    memset(t->known, 1, t->n_bpe);
    /* added ids above the BPE range: lay out in id order so off[] stays monotonic */
    uint64_t o = t->off[t->n_bpe];
    for (uint32_t id = t->n_bpe; id < n; id++) {
        t->off[id] = o;
        for (size_t i = 0; i < t->n_added; i++)
            if (t->added[i].id == id) {
                memcpy(t->bytes + o, t->added[i].content, t->added[i].len);
                o += t->added[i].len;
                t->known[id] = 1;
            }
    }
    t->off[n] = o;
    t->n_vocab = n;
    t->eot = UINT32_MAX;
    t->single_first = -1;
    memset(t->added_first, 0, sizeof t->added_first);
    for (size_t i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        if (a->special) t->special[a->id] = 1;
        unsigned char f = (unsigned char)a->content[0];
        if (i == 0)
            t->single_first = f;
        else if (t->single_first != f)
            t->single_first = -2;
        t->added_first[f] = 1;
        if (!strcmp(a->content, "<|endoftext|>")) t->eot = a->id;
    }
    if (t->single_first < 0) t->single_first = -1;
    return GRAFT_STATUS_OK;
}

#define QWEN2_PATTERN                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                          \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"                                                               \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static graft_status check_type(json_t *o, const char *want, const char *file, const char *field,
                               graft_err *err) {
    json_t *ty = json_object_get(o, "type");
    if (!json_is_string(ty))
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                             "%s: %s.type: missing or not a string, expected \"%s\"", file, field,
                             want);
    if (strcmp(json_string_value(ty), want))
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "%s: %s.type: \"%s\", expected \"%s\"",
                             file, field, json_string_value(ty), want);
    return GRAFT_STATUS_OK;
}

static graft_status check_bytelevel(json_t *bl, const char *file, const char *field,
                                    graft_err *err) {
    graft_status st = check_type(bl, "ByteLevel", file, field, err);
    if (st) return st;
    char where[600];
    snprintf(where, sizeof where, "%s: %s", file, field);
    int v = 0;
    if ((st = bool_field(bl, "use_regex", 1, &v, where, err))) return st;
    if (v)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "%s.use_regex: true (or missing), expected false", where);
    if ((st = bool_field(bl, "add_prefix_space", 1, &v, where, err))) return st;
    if (v)
        return graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                             "%s.add_prefix_space: true (or missing), expected false", where);
    return GRAFT_STATUS_OK;
}

static graft_status load_tokenizer_json(graft_tokenizer_t *t, load_ctx *c, const char *file,
                                        graft_err *err) {
    json_t *root = NULL;
    graft_status st = load_json(file, &root, &t->hash, err);
    if (st) return st;
    if (!json_is_object(root)) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: top level: not an object", file);
        goto out;
    }
    /* normalizer */
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        if ((st = check_type(norm, "NFC", file, "normalizer", err))) goto out;
        t->nfc = 1;
    }
    /* pre_tokenizer */
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *ty = json_object_get(pre, "type");
    if (!json_is_object(pre) || !json_is_string(ty)) {
        st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                           "%s: pre_tokenizer: missing or without a type, expected "
                           "Sequence[Split, ByteLevel] or ByteLevel",
                           file);
        goto out;
    }
    if (!strcmp(json_string_value(ty), "Sequence")) {
        json_t *list = json_object_get(pre, "pretokenizers");
        if (!json_is_array(list) || json_array_size(list) != 2) {
            st =
                graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                              "%s: pre_tokenizer.pretokenizers: expected [Split, ByteLevel]", file);
            goto out;
        }
        json_t *sp = json_array_get(list, 0);
        if ((st = check_type(sp, "Split", file, "pre_tokenizer.pretokenizers[0]", err))) goto out;
        json_t *re = json_object_get(json_object_get(sp, "pattern"), "Regex");
        if (!json_is_string(re) || strcmp(json_string_value(re), QWEN2_PATTERN)) {
            st = graft_err_set(
                err, GRAFT_STATUS_UNSUPPORTED,
                "%s: pre_tokenizer.pretokenizers[0].pattern.Regex: %s, expected the Qwen2 pattern "
                "(spec 5.1)",
                file, json_is_string(re) ? "another pattern" : "missing");
            goto out;
        }
        json_t *beh = json_object_get(sp, "behavior"), *inv = json_object_get(sp, "invert");
        if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") ||
            json_is_true(inv)) {
            st = graft_err_set(
                err, GRAFT_STATUS_UNSUPPORTED,
                "%s: pre_tokenizer.pretokenizers[0]: expected behavior \"Isolated\", invert false",
                file);
            goto out;
        }
        if ((st = check_bytelevel(json_array_get(list, 1), file, "pre_tokenizer.pretokenizers[1]",
                                  err)))
            goto out;
        t->split = 1;
    } else {
        if ((st = check_bytelevel(pre, file, "pre_tokenizer", err))) goto out;
    }
    /* model */
    json_t *model = json_object_get(root, "model");
    if ((st = check_type(model, "BPE", file, "model", err))) goto out;
    json_t *v;
    if ((v = json_object_get(model, "dropout")) && !json_is_null(v)) {
        st = graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "%s: model.dropout: set, expected null",
                           file);
        goto out;
    }
    static const char *const empty_str[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++)
        if ((v = json_object_get(model, empty_str[k])) && !json_is_null(v) &&
            !(json_is_string(v) && json_string_length(v) == 0)) {
            st = graft_err_set(err, GRAFT_STATUS_UNSUPPORTED,
                               "%s: model.%s: set, expected null or \"\"", file, empty_str[k]);
            goto out;
        }
    static const char *const false_flags[] = {"byte_fallback", "ignore_merges"};
    for (int k = 0; k < 2; k++) {
        int f;
        char where[600];
        snprintf(where, sizeof where, "%s: model", file);
        if ((st = bool_field(model, false_flags[k], 0, &f, where, err))) goto out;
        if (f) {
            st = graft_err_set(err, GRAFT_STATUS_UNSUPPORTED, "%s.%s: true, expected false", where,
                               false_flags[k]);
            goto out;
        }
    }
    c->vocab = json_object_get(model, "vocab");
    c->vocab_file = file;
    c->vocab_field = "model.vocab";
    if ((st = load_vocab(c, err))) goto out;
    if ((st = load_merges_json(c, json_object_get(model, "merges"), file, err))) goto out;
    /* added tokens */
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added)) {
        if (!json_is_array(added)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: added_tokens: not an array", file);
            goto out;
        }
        for (size_t i = 0; i < json_array_size(added); i++) {
            json_t *o = json_array_get(added, i);
            char where[600];
            snprintf(where, sizeof where, "%s: added_tokens[%zu]", file, i);
            json_t *idv = json_object_get(o, "id");
            if (!json_is_integer(idv)) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s.id: missing or not an integer",
                                   where);
                goto out;
            }
            if ((st = add_added(c, o, (long long)json_integer_value(idv), where, err))) goto out;
        }
    }
    st = finish(t, err);
out:
    json_decref(root);
    return st;
}

static int file_exists(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int special_in_map(json_t *map, const char *content) {
    const char *k;
    json_t *v;
    json_object_foreach(map, k, v) {
        if (json_is_string(v) && !strcmp(json_string_value(v), content)) return 1;
        if (json_is_object(v)) {
            json_t *ct = json_object_get(v, "content");
            if (json_is_string(ct) && !strcmp(json_string_value(ct), content)) return 1;
        }
        if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                if (json_is_string(e) && !strcmp(json_string_value(e), content)) return 1;
                json_t *ct = json_object_get(e, "content");
                if (json_is_string(ct) && !strcmp(json_string_value(ct), content)) return 1;
            }
        }
    }
    return 0;
}

static graft_status load_dir_pair(graft_tokenizer_t *t, load_ctx *c, const char *dir,
                                  graft_err *err) {
    char vp[4096], mp[4096], cp[4096], ap[4096], sp[4096];
    snprintf(vp, sizeof vp, "%s/vocab.json", dir);
    snprintf(mp, sizeof mp, "%s/merges.txt", dir);
    snprintf(cp, sizeof cp, "%s/tokenizer_config.json", dir);
    snprintf(ap, sizeof ap, "%s/added_tokens.json", dir);
    snprintf(sp, sizeof sp, "%s/special_tokens_map.json", dir);
    json_t *vocab = NULL, *cfg = NULL, *addj = NULL, *smap = NULL;
    graft_status st = load_json(vp, &vocab, &t->hash, err);
    if (st) return st;
    c->vocab = vocab;
    c->vocab_file = vp;
    c->vocab_field = "top level";
    t->nfc = 1;
    t->split = 1;
    if ((st = load_vocab(c, err))) goto out;
    if ((st = load_merges_txt(c, mp, err))) goto out;
    json_t *dec = NULL;
    if (file_exists(cp)) {
        if ((st = load_json(cp, &cfg, &t->hash, err))) goto out;
        dec = json_object_get(cfg, "added_tokens_decoder");
        if (dec && !json_is_object(dec)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                               "%s: added_tokens_decoder: not an object", cp);
            goto out;
        }
    }
    if (dec) {
        const char *k;
        json_t *o;
        json_object_foreach(dec, k, o) {
            char where[4200], *end;
            snprintf(where, sizeof where, "%s: added_tokens_decoder[\"%.32s\"]", cp, k);
            errno = 0;
            long long id = strtoll(k, &end, 10);
            if (!*k || *end || errno) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: key is not a decimal id",
                                   where);
                goto out;
            }
            if ((st = add_added(c, o, id, where, err))) goto out;
        }
    } else if (file_exists(ap)) {
        if ((st = load_json(ap, &addj, &t->hash, err))) goto out;
        if (file_exists(sp) && (st = load_json(sp, &smap, &t->hash, err))) goto out;
        if (!json_is_object(addj)) {
            st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: top level: not an object", ap);
            goto out;
        }
        const char *k;
        json_t *idv;
        json_object_foreach(addj, k, idv) {
            char where[4200];
            snprintf(where, sizeof where, "%s: [\"%.64s\"]", ap, k);
            if (!json_is_integer(idv)) {
                st = graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                   "%s: not an integer, expected an id", where);
                goto out;
            }
            json_t *o = json_pack("{s:s, s:b}", "content", k, "special",
                                  smap ? special_in_map(smap, k) : 0);
            st = o ? add_added(c, o, (long long)json_integer_value(idv), where, err)
                   : graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "out of memory");
            json_decref(o);
            if (st) goto out;
        }
    }
    st = finish(t, err);
out:
    json_decref(vocab);
    json_decref(cfg);
    json_decref(addj);
    json_decref(smap);
    return st;
}

graft_status graft_tokenizer_load(const char *path, graft_tokenizer_t **out, graft_err *err) {
    *out = NULL;
    pthread_once(&class_once, class_init);
    struct stat sb;
    if (stat(path, &sb))
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    graft_tokenizer_t *t = calloc(1, sizeof *t);
    load_ctx *c = calloc(1, sizeof *c);
    if (!t || !c) {
        free(t);
        free(c);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "tokenizer: out of memory");
    }
    c->t = t;
    byte_table(c->b2u);
    t->hash = FNV_OFFSET;
    graft_status st;
    if (S_ISDIR(sb.st_mode)) {
        char tj[4096];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", path);
        st = file_exists(tj) ? load_tokenizer_json(t, c, tj, err) : load_dir_pair(t, c, path, err);
    } else {
        st = load_tokenizer_json(t, c, path, err);
    }
    free(c);
    if (st) {
        graft_tokenizer_free(t);
        return st;
    }
    *out = t;
    return GRAFT_STATUS_OK;
}

/* ---- encoding ------------------------------------------------------------------------------ */

#define CACHE_SLOTS 16384
#define CACHE_KEY 22

typedef struct cache_entry {
    uint8_t len, n_ids;
    char key[CACHE_KEY];
    uint32_t ids[CACHE_KEY];
} cache_entry;

typedef struct heap_item {
    uint32_t rank, pos, id;
} heap_item;

struct graft_tok_ws {
    const graft_tokenizer_t *owner; /* the tokenizer the cache was filled for */
    cache_entry *cache;
    uint32_t *cps; /* code points of the current segment */
    uint32_t *off; /* byte offset of each code point (+1 sentinel) */
    uint8_t *cls;
    size_t cap_cp;
    uint32_t *sym_id; /* BPE symbols: id, prev, next; len 0 = removed */
    int32_t *sym_prev, *sym_next;
    uint8_t *sym_alive;
    heap_item *heap;
    size_t cap_sym, cap_heap;
};

graft_status graft_tok_ws_init(graft_tok_ws_t **out, graft_err *err) {
    graft_tok_ws_t *w = calloc(1, sizeof *w);
    if (w) w->cache = calloc(CACHE_SLOTS, sizeof *w->cache);
    if (!w || !w->cache) {
        free(w);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "tokenizer workspace: out of memory");
    }
    *out = w;
    return GRAFT_STATUS_OK;
}

void graft_tok_ws_free(graft_tok_ws_t *w) {
    if (!w) return;
    free(w->cache);
    free(w->cps);
    free(w->off);
    free(w->cls);
    free(w->sym_id);
    free(w->sym_prev);
    free(w->sym_next);
    free(w->sym_alive);
    free(w->heap);
    free(w);
}

static int ws_cp_reserve(graft_tok_ws_t *w, size_t n) {
    if (n + 1 <= w->cap_cp) return 0;
    size_t cap = w->cap_cp ? w->cap_cp : 1024;
    while (cap < n + 1) cap *= 2;
    uint32_t *a = realloc(w->cps, cap * sizeof *a);
    if (a) w->cps = a;
    uint32_t *b = realloc(w->off, cap * sizeof *b);
    if (b) w->off = b;
    uint8_t *c = realloc(w->cls, cap);
    if (c) w->cls = c;
    if (!a || !b || !c) return -1;
    w->cap_cp = cap;
    return 0;
}

static int ws_sym_reserve(graft_tok_ws_t *w, size_t n) {
    if (n <= w->cap_sym) return 0;
    size_t cap = w->cap_sym ? w->cap_sym : 256;
    while (cap < n) cap *= 2;
    uint32_t *a = realloc(w->sym_id, cap * sizeof *a);
    if (a) w->sym_id = a;
    int32_t *b = realloc(w->sym_prev, cap * sizeof *b);
    if (b) w->sym_prev = b;
    int32_t *c = realloc(w->sym_next, cap * sizeof *c);
    if (c) w->sym_next = c;
    uint8_t *d = realloc(w->sym_alive, cap);
    if (d) w->sym_alive = d;
    if (!a || !b || !c || !d) return -1;
    w->cap_sym = cap;
    return 0;
}

static inline int heap_less(const heap_item *x, const heap_item *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static int heap_push(graft_tok_ws_t *w, size_t *n, heap_item it) {
    if (*n >= w->cap_heap) {
        size_t cap = w->cap_heap ? 2 * w->cap_heap : 256;
        heap_item *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->cap_heap = cap;
    }
    heap_item *h = w->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
    return 0;
}

static heap_item heap_pop(graft_tok_ws_t *w, size_t *n) {
    heap_item *h = w->heap, top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const heap_item *best = &last;
        if (l < *n && heap_less(&h[l], best)) {
            m = l;
            best = &h[l];
        }
        if (r < *n && heap_less(&h[r], best)) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

/* BPE of one piece's bytes (spec 7), HF word.rs merge_all without dropout. */
static graft_status bpe_piece(const graft_tokenizer_t *t, graft_tok_ws_t *w, const unsigned char *p,
                              size_t n, graft_ids *out, graft_err *err) {
    if (n == 1) return graft_ids_push(out, t->byte_id[p[0]], err);
    cache_entry *ce = NULL;
    if (n <= CACHE_KEY) {
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
        ce = &w->cache[h & (CACHE_SLOTS - 1)];
        if (ce->len == n && !memcmp(ce->key, p, n)) {
            if (ids_reserve(out, ce->n_ids))
                return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "out of memory");
            memcpy(out->data + out->n, ce->ids, ce->n_ids * sizeof(uint32_t));
            out->n += ce->n_ids;
            return GRAFT_STATUS_OK;
        }
    }
    if (n > INT32_MAX / 2 || ws_sym_reserve(w, n))
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "bpe: out of memory");
    uint32_t *id = w->sym_id;
    int32_t *prev = w->sym_prev, *next = w->sym_next;
    uint8_t *alive = w->sym_alive;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        id[i] = t->byte_id[p[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        alive[i] = 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const merge_slot *m = merge_find(t, id[i], id[i + 1]);
        if (m && heap_push(w, &hn, (heap_item){m->rank, (uint32_t)i, m->id}))
            return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "bpe: out of memory");
    }
    while (hn) {
        heap_item top = heap_pop(w, &hn);
        uint32_t pos = top.pos;
        if (!alive[pos] || next[pos] < 0) continue;
        int32_t np = next[pos];
        const merge_slot *m = merge_find(t, id[pos], id[np]);
        if (!m || m->id != top.id) continue;
        id[pos] = top.id;
        alive[np] = 0;
        next[pos] = next[np];
        if (next[np] >= 0) prev[next[np]] = (int32_t)pos;
        if (prev[pos] >= 0) {
            int32_t pp = prev[pos];
            const merge_slot *m2 = merge_find(t, id[pp], id[pos]);
            if (m2 && heap_push(w, &hn, (heap_item){m2->rank, (uint32_t)pp, m2->id}))
                return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "bpe: out of memory");
        }
        if (next[pos] >= 0) {
            const merge_slot *m2 = merge_find(t, id[pos], id[next[pos]]);
            if (m2 && heap_push(w, &hn, (heap_item){m2->rank, pos, m2->id}))
                return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "bpe: out of memory");
        }
    }
    size_t start = out->n;
    if (ids_reserve(out, n)) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "out of memory");
    for (int32_t i = 0; i >= 0; i = next[i]) out->data[out->n++] = id[i];
    if (ce) {
        ce->len = (uint8_t)n;
        ce->n_ids = (uint8_t)(out->n - start);
        memcpy(ce->key, p, n);
        memcpy(ce->ids, out->data + start, ce->n_ids * sizeof(uint32_t));
    }
    return GRAFT_STATUS_OK;
}

static inline size_t end_of_run(const uint8_t *cls, size_t i, size_t n, uint8_t mask) {
    while (i < n && (cls[i] & mask)) i++;
    return i;
}

/* Spec 5.4: end (exclusive) of the piece that starts at code point i. */
static size_t match_at(const uint32_t *s, const uint8_t *cls, size_t i, size_t n) {
    uint32_t c = s[i];
    if (c == '\'') {
        static const char *const lits[] = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (int k = 0; k < 7; k++) {
            size_t L = strlen(lits[k]), j = 0;
            for (; j < L; j++) {
                if (i + 1 + j >= n) break;
                uint32_t c2 = s[i + 1 + j], x = (uint32_t)lits[k][j];
                if (!(c2 == x || c2 == x - 32 || (x == 's' && c2 == 0x17F))) break;
            }
            if (j == L) return i + 1 + L;
        }
    }
    uint8_t k = cls[i];
    if (k & C_L) return end_of_run(cls, i, n, C_L);
    if (!(k & (C_CRLF | C_N)) && i + 1 < n && (cls[i + 1] & C_L))
        return end_of_run(cls, i + 1, n, C_L);
    if (k & C_N) return i + 1;
    size_t j = i;
    if (c == ' ' && i + 1 < n && (cls[i + 1] & C_O)) j = i + 1;
    if (j < n && (cls[j] & C_O)) {
        j = end_of_run(cls, j, n, C_O);
        return end_of_run(cls, j, n, C_CRLF);
    }
    j = end_of_run(cls, i, n, C_W);
    for (size_t q = j; q > i; q--)
        if (cls[q - 1] & C_CRLF) return q;
    if (j == n) return j;
    if (j - i >= 2) return j - 1;
    return j;
}

/* NFC of a segment (spec 4); *out is s itself when nothing can change, else a malloc'd buffer. */
static graft_status nfc_segment(const char *s, size_t n, char **out, size_t *out_n, char **owned,
                                graft_err *err) {
    *owned = NULL;
    *out = (char *)s;
    *out_n = n;
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0xCC) i++;
    if (i == n) return GRAFT_STATUS_OK; /* all code points < U+0300: NFC is the identity */
    /* HF's tables do not compose U+11935 + U+11930 (spec 4.2): normalize the text before each
     * U+11930 (a starter that composes with nothing else) separately. */
    char *res = NULL;
    size_t rn = 0;
    static const char U11930[] = "\xF0\x91\xA4\xB0";
    for (size_t start = 0; start < n;) {
        size_t end = n;
        for (size_t q = start + 1; q + 4 <= n; q++)
            if (s[q] == U11930[0] && !memcmp(s + q, U11930, 4)) {
                end = q;
                break;
            }
        utf8proc_uint8_t *buf = NULL;
        utf8proc_ssize_t r =
            utf8proc_map((const utf8proc_uint8_t *)s + start, (utf8proc_ssize_t)(end - start), &buf,
                         UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (r < 0) {
            free(res);
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "NFC: %s", utf8proc_errmsg(r));
        }
        char *nr = realloc(res, rn + (size_t)r + 1);
        if (!nr) {
            free(buf);
            free(res);
            return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "out of memory");
        }
        res = nr;
        memcpy(res + rn, buf, (size_t)r);
        rn += (size_t)r;
        free(buf);
        start = end;
    }
    *owned = res;
    *out = res;
    *out_n = rn;
    return GRAFT_STATUS_OK;
}

static graft_status encode_segment(const graft_tokenizer_t *t, graft_tok_ws_t *w, const char *seg,
                                   size_t n, graft_ids *out, graft_err *err) {
    if (!n) return GRAFT_STATUS_OK;
    char *s = (char *)seg, *owned = NULL;
    graft_status st;
    if (t->nfc && (st = nfc_segment(seg, n, &s, &n, &owned, err))) return st;
    const unsigned char *u = (const unsigned char *)s;
    if (!t->split) {
        st = bpe_piece(t, w, u, n, out, err);
        free(owned);
        return st;
    }
    if (ws_cp_reserve(w, n)) {
        free(owned);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "out of memory");
    }
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l;
        if (u[i] < 0x80) {
            cp = u[i];
            l = 1;
        } else
            l = utf8_char(u, n, i, &cp);
        w->cps[m] = cp;
        w->off[m] = (uint32_t)i;
        w->cls[m] = char_class(cp);
        m++;
        i += (size_t)(l ? l : 1);
    }
    w->off[m] = (uint32_t)n;
    st = GRAFT_STATUS_OK;
    for (size_t i = 0; i < m && !st;) {
        size_t j = match_at(w->cps, w->cls, i, m);
        st = bpe_piece(t, w, u + w->off[i], w->off[j] - w->off[i], out, err);
        i = j;
    }
    free(owned);
    return st;
}

graft_status graft_tokenizer_encode(const graft_tokenizer_t *t, graft_tok_ws_t *ws,
                                    const char *text, size_t len, unsigned flags, graft_ids *out,
                                    graft_err *err) {
    const unsigned char *u = (const unsigned char *)text;
    if (len > UINT32_MAX - 1)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "text: %zu bytes, expected < 4 GiB", len);
    for (size_t i = 0; i < len;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int l = utf8_char(u, len, i, &cp);
        if (!l)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "text @ byte %zu: invalid UTF-8 (byte 0x%02X)", i, u[i]);
        i += (size_t)l;
    }
    graft_tok_ws_t *own = NULL;
    if (!ws) {
        graft_status st = graft_tok_ws_init(&own, err);
        if (st) return st;
        ws = own;
    }
    if (ws->owner != t) {
        memset(ws->cache, 0, CACHE_SLOTS * sizeof *ws->cache);
        ws->owner = t;
    }
    graft_status st = GRAFT_STATUS_OK;
    size_t seg = 0, i = 0;
    while (i < len && !st) {
        if (t->n_added == 0) {
            i = len;
            break;
        }
        if (t->single_first >= 0) {
            const char *p = memchr(text + i, t->single_first, len - i);
            if (!p) {
                i = len;
                break;
            }
            i = (size_t)(p - text);
        } else if (!t->added_first[u[i]]) {
            i++;
            continue;
        }
        const added_tok *best = NULL;
        for (size_t k = 0; k < t->n_added; k++) {
            const added_tok *a = &t->added[k];
            if (a->len <= len - i && (!best || a->len > best->len) &&
                !memcmp(text + i, a->content, a->len) &&
                !(a->special && (flags & GRAFT_TOK_SPECIAL_AS_TEXT)))
                best = a;
        }
        if (!best) {
            i++;
            continue;
        }
        st = encode_segment(t, ws, text + seg, i - seg, out, err);
        if (!st) st = graft_ids_push(out, best->id, err);
        i += best->len;
        seg = i;
    }
    if (!st) st = encode_segment(t, ws, text + seg, len - seg, out, err);
    graft_tok_ws_free(own);
    return st;
}

/* ---- parallel batch ------------------------------------------------------------------------ */

typedef struct batch_job {
    const graft_tokenizer_t *t;
    const char *const *texts;
    const size_t *lens;
    graft_ids *outs;
    size_t n;
    unsigned flags;
    atomic_size_t next;
    atomic_int failed;
    pthread_mutex_t mu;
    graft_err err;
    size_t err_doc;
    graft_status st;
} batch_job;

static void *batch_worker(void *arg) {
    batch_job *j = arg;
    graft_tok_ws_t *ws = NULL;
    graft_err e;
    graft_status st = graft_tok_ws_init(&ws, &e);
    for (size_t i; !st && !atomic_load(&j->failed) && (i = atomic_fetch_add(&j->next, 1)) < j->n;) {
        st = graft_tokenizer_encode(j->t, ws, j->texts[i], j->lens[i], j->flags, &j->outs[i], &e);
        if (st) {
            pthread_mutex_lock(&j->mu);
            if (!j->st || i < j->err_doc) {
                j->st = st;
                j->err = e;
                j->err_doc = i;
            }
            pthread_mutex_unlock(&j->mu);
            atomic_store(&j->failed, 1);
        }
    }
    if (st && !j->st) {
        pthread_mutex_lock(&j->mu);
        j->st = st;
        j->err = e;
        pthread_mutex_unlock(&j->mu);
    }
    graft_tok_ws_free(ws);
    return NULL;
}

graft_status graft_tokenizer_encode_batch(const graft_tokenizer_t *t, const char *const *texts,
                                          const size_t *lens, size_t n, int n_threads,
                                          unsigned flags, graft_ids *outs, size_t *err_index,
                                          graft_err *err) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if ((size_t)n_threads > n) n_threads = n ? (int)n : 1;
    if (n_threads > 256) n_threads = 256;
    batch_job *j = calloc(1, sizeof *j);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    if (!j || !th) {
        free(j);
        free(th);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "encode: out of memory");
    }
    j->t = t;
    j->texts = texts;
    j->lens = lens;
    j->outs = outs;
    j->n = n;
    j->flags = flags;
    atomic_init(&j->next, 0);
    atomic_init(&j->failed, 0);
    pthread_mutex_init(&j->mu, NULL);
    int started = 0;
    for (int k = 1; k < n_threads; k++)
        if (!pthread_create(&th[started], NULL, batch_worker, j)) started++;
    batch_worker(j);
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    graft_status st = j->st;
    if (st) {
        graft_err_set(err, st, "%s", j->err.msg);
        if (err_index) *err_index = j->err_doc;
    }
    pthread_mutex_destroy(&j->mu);
    free(j);
    free(th);
    return st;
}

/* ---- decoding ------------------------------------------------------------------------------ */

graft_status graft_tokenizer_decode(const graft_tokenizer_t *t, const uint32_t *ids, size_t n,
                                    int skip_special, char **out, size_t *out_len, graft_err *err) {
    *out = NULL;
    *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = ids[i];
        if (id >= t->n_vocab || !t->known[id])
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT,
                                 "ids[%zu]: id %u unknown, expected < %u", i, id, t->n_vocab);
        if (skip_special && t->special[id]) continue;
        total += (size_t)(t->off[id + 1] - t->off[id]);
    }
    unsigned char *raw = malloc(total + 1);
    /* worst case: every byte becomes U+FFFD (3 bytes) */
    char *res = malloc(3 * total + 1);
    if (!raw || !res) {
        free(raw);
        free(res);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "decode: out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = ids[i];
        if (skip_special && t->special[id]) continue;
        size_t l = (size_t)(t->off[id + 1] - t->off[id]);
        memcpy(raw + k, t->bytes + t->off[id], l);
        k += l;
    }
    size_t o = 0;
    for (size_t i = 0; i < k;) {
        if (raw[i] < 0x80) {
            res[o++] = (char)raw[i++];
            continue;
        }
        uint32_t cp;
        int l = utf8_char(raw, k, i, &cp);
        if (l) {
            memcpy(res + o, raw + i, (size_t)l);
            o += (size_t)l;
            i += (size_t)l;
            continue;
        }
        /* maximal subpart: the lead byte plus every continuation byte that keeps it a valid prefix
         */
        unsigned b = raw[i];
        size_t j = i + 1;
        int need = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF)
            need = 1;
        else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        }
        for (int q = 0; q < need && j < k && raw[j] >= lo && raw[j] <= hi; q++) {
            j++;
            lo = 0x80;
            hi = 0xBF;
        }
        o += utf8_put(res + o, 0xFFFD);
        i = j;
    }
    res[o] = 0;
    free(raw);
    *out = res;
    *out_len = o;
    return GRAFT_STATUS_OK;
}
