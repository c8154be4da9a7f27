/* tokenizer.h: the Qwen byte-level BPE tokenizer, exact to Hugging Face `tokenizers`
 * (shared/spec/tokenizer.md). Loads a tokenizer.json or a directory holding vocab.json +
 * merges.txt + tokenizer_config.json (or added_tokens.json); encodes UTF-8 text to ids and
 * decodes ids back to text.
 *
 * Supported tokenizer.json shapes (anything else is refused with the field named):
 *   normalizer    null or {"type":"NFC"}
 *   pre_tokenizer Sequence[Split(Regex = the Qwen2 pattern, Isolated), ByteLevel(use_regex false)]
 *                 or ByteLevel(use_regex false) alone (bytes only, no splitting)
 *   model         BPE, no dropout, no prefixes/suffixes, no byte_fallback, ignore_merges false,
 *                 merges in pair form or legacy string form
 *   added_tokens  lstrip/rstrip/single_word false (matched on the raw text, leftmost-longest)
 *
 * Thread safety: a loaded graft_tokenizer_t is read-only; any number of threads may encode and
 * decode with it at once, each with its own graft_tok_ws_t (or NULL).
 */
#ifndef GRAFT_TOKENIZER_H
#define GRAFT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct graft_tokenizer graft_tokenizer_t;
typedef struct graft_tok_ws graft_tok_ws_t;

/* A growable id vector. Zero-initialize it; graft_ids_free releases it. Encode appends. */
typedef struct graft_ids {
    uint32_t *data;
    size_t n, cap;
} graft_ids;

void graft_ids_free(graft_ids *v);
graft_status graft_ids_push(graft_ids *v, uint32_t id, graft_err *err);

/* Loads `path`: a tokenizer.json file, or a directory containing tokenizer.json or
 * vocab.json + merges.txt (+ tokenizer_config.json's added_tokens_decoder, or added_tokens.json
 * + special_tokens_map.json). *out is owned by the caller (graft_tokenizer_free). Malformed
 * files: GRAFT_STATUS_BAD_INPUT naming the file and field (or line for merges.txt). */
graft_status graft_tokenizer_load(const char *path, graft_tokenizer_t **out, graft_err *err);
void graft_tokenizer_free(graft_tokenizer_t *tok);

/* Number of ids the tokenizer knows: BPE vocab + added tokens (151,669 for Qwen3). */
uint32_t graft_tokenizer_n_vocab(const graft_tokenizer_t *tok);
/* Number of BPE ids (151,643 for Qwen3). */
uint32_t graft_tokenizer_n_bpe(const graft_tokenizer_t *tok);
/* Id of <|endoftext|> (151,643 for Qwen3), or UINT32_MAX when there is none. */
uint32_t graft_tokenizer_eot_id(const graft_tokenizer_t *tok);
/* FNV-1a 64 over the bytes of the files the tokenizer was loaded from, in load order. */
uint64_t graft_tokenizer_hash(const graft_tokenizer_t *tok);
/* Id of an added token by content, or UINT32_MAX. */
uint32_t graft_tokenizer_added_id(const graft_tokenizer_t *tok, const char *content);

/* Per-thread scratch and piece cache. NULL everywhere means "allocate per call" (slower). */
graft_status graft_tok_ws_init(graft_tok_ws_t **out, graft_err *err);
void graft_tok_ws_free(graft_tok_ws_t *ws);

enum {
    /* Treat special (special=true) added tokens as plain text, as HF's encode_special_tokens:
     * non-special added tokens (<think>, FIM tokens, ...) are still extracted. */
    GRAFT_TOK_SPECIAL_AS_TEXT = 1u << 0
};

/* Encodes `len` bytes of UTF-8 `text` and appends the ids to *out. Nothing is added (no BOS, no
 * EOS). Invalid UTF-8: GRAFT_STATUS_BAD_INPUT with the byte offset. */
graft_status graft_tokenizer_encode(const graft_tokenizer_t *tok, graft_tok_ws_t *ws,
                                    const char *text, size_t len, unsigned flags, graft_ids *out,
                                    graft_err *err);

/* Encodes n documents on n_threads threads (<= 0: all online CPUs); outs[i] receives the ids of
 * texts[i] (appended). On failure the error of the lowest failing document seen is returned and
 * its index stored in *err_index (may be NULL). */
graft_status graft_tokenizer_encode_batch(const graft_tokenizer_t *tok, const char *const *texts,
                                          const size_t *lens, size_t n, int n_threads,
                                          unsigned flags, graft_ids *outs, size_t *err_index,
                                          graft_err *err);

/* Decodes ids (spec section 8): byte concatenation of all tokens, then lossy UTF-8 (one U+FFFD
 * per maximal invalid subpart). skip_special drops special=true added tokens. An id >= n_vocab,
 * or inside a gap of the id range, is GRAFT_STATUS_BAD_INPUT naming its position. *out is
 * malloc'd, NUL-terminated, owned by the caller; *out_len excludes the NUL. */
graft_status graft_tokenizer_decode(const graft_tokenizer_t *tok, const uint32_t *ids, size_t n,
                                    int skip_special, char **out, size_t *out_len, graft_err *err);

/* The raw bytes a single id stands for (not lossy-decoded); NULL for an unknown id. */
const char *graft_tokenizer_id_bytes(const graft_tokenizer_t *tok, uint32_t id, size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_TOKENIZER_H */
