/* cli/cmd_tokenize.c: `graft tokenize`: text -> ids on stdout (--ids) or -> token shards +
 * manifest (--out DIR). Parsing of options and all printing live here; the work is tokenizer.c and
 * shard.c. Documents for --out: each input file is one document, or with --jsonl each line's
 * "text" field; every document is followed by the tokenizer's end-of-text id. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "data.h"
#include "host.h"
#include "shard.h"
#include "tokenizer.h"

static void tokenize_usage(FILE *o) {
    fprintf(
        o,
        "usage: graft tokenize --tokenizer DIR|FILE [options] [FILES...]\n"
        "Encodes UTF-8 text with a Hugging Face byte-level BPE tokenizer (Qwen3's), exactly as HF\n"
        "tokenizers does. Reads stdin when no FILES are given.\n\n"
        "  --tokenizer P      tokenizer.json, or a directory with tokenizer.json or vocab.json +\n"
        "                     merges.txt (+ tokenizer_config.json / added_tokens.json)\n"
        "  --ids              print the ids of each input line, space-separated, one output line "
        "per\n"
        "                     input line (the line's newline is not part of the text) [default]\n"
        "  --out DIR          write token shards DIR/shard-NNNNN.tok and DIR/manifest.json; each "
        "file\n"
        "                     is one document (with --jsonl: each line), followed by "
        "<|endoftext|>\n"
        "  --jsonl            inputs are JSON Lines; the \"text\" field of each line is the text\n"
        "  --threads N        encoding threads (default: all CPUs)\n"
        "  --vocab-size V     vocab_size written to shard headers (default: the tokenizer's; use "
        "the\n"
        "                     model's embedding rows, e.g. 151936, to bind shards to a model)\n"
        "  --shard-tokens N   start a new shard after N tokens (default 134217728)\n"
        "  --special-as-text  do not extract special added tokens (<|im_start|>, ...) from the "
        "text\n"
        "  --decode           the inverse: each input line is space-separated ids; prints each\n"
        "                     decoded text as one JSON string per line\n"
        "  --skip-special     with --decode: drop special added tokens\n"
        "  --help             this text\n");
}

typedef struct opts {
    const char *tok_path, *out_dir;
    int ids, jsonl, threads, special_as_text, decode, skip_special;
    uint64_t vocab_size, shard_tokens;
    char **files;
    int n_files;
} opts;

/* A chunk of documents in memory. */
typedef struct docs {
    char **text;
    size_t *len, n, cap, bytes;
    char **src; /* per document: source file name (not owned) */
    size_t *line;
} docs;

static int docs_push(docs *d, char *text, size_t len, char *src, size_t line) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 1024;
        char **t = realloc(d->text, cap * sizeof *t);
        if (t) d->text = t;
        size_t *l = realloc(d->len, cap * sizeof *l);
        if (l) d->len = l;
        char **s = realloc(d->src, cap * sizeof *s);
        if (s) d->src = s;
        size_t *ln = realloc(d->line, cap * sizeof *ln);
        if (ln) d->line = ln;
        if (!t || !l || !s || !ln) return -1;
        d->cap = cap;
    }
    d->text[d->n] = text;
    d->len[d->n] = len;
    d->src[d->n] = src;
    d->line[d->n] = line;
    d->n++;
    d->bytes += len;
    return 0;
}

static void docs_clear(docs *d) {
    for (size_t i = 0; i < d->n; i++) free(d->text[i]);
    d->n = 0;
    d->bytes = 0;
}

static void docs_free(docs *d) {
    docs_clear(d);
    free(d->text);
    free(d->len);
    free(d->src);
    free(d->line);
}

/* The text of a JSONL line: a malloc'd copy of its "text" string, or NULL with a message. */
static char *jsonl_text(const char *line, size_t n, const char *src, size_t lineno,
                        size_t *out_len) {
    char *text;
    graft_err e;
    if (graft_jsonl_text(line, n, &text, out_len, &e)) {
        fprintf(stderr, "graft tokenize: %s:%zu: %s\n", src, lineno, e.msg);
        return NULL;
    }
    return text;
}

/* ---- --ids --------------------------------------------------------------------------------- */

static int flush_ids(const graft_tokenizer_t *tok, docs *d, const opts *o, graft_ids *outs) {
    graft_err e;
    unsigned flags = o->special_as_text ? GRAFT_TOK_SPECIAL_AS_TEXT : 0;
    size_t bad = 0;
    graft_status st = graft_tokenizer_encode_batch(tok, (const char *const *)d->text, d->len, d->n,
                                                   o->threads, flags, outs, &bad, &e);
    if (st) {
        fprintf(stderr, "graft tokenize: %s:%zu: %s\n", d->src[bad], d->line[bad], e.msg);
        return 1;
    }
    char buf[16];
    for (size_t i = 0; i < d->n; i++) {
        for (size_t k = 0; k < outs[i].n; k++) {
            int l = snprintf(buf, sizeof buf, k ? " %u" : "%u", outs[i].data[k]);
            fwrite(buf, 1, (size_t)l, stdout);
        }
        fputc('\n', stdout);
        outs[i].n = 0;
    }
    docs_clear(d);
    return 0;
}

#define CHUNK_DOCS 4096
#define CHUNK_BYTES (32u << 20)

static int run_ids(const graft_tokenizer_t *tok, const opts *o) {
    docs d = {0};
    graft_ids *outs = calloc(CHUNK_DOCS, sizeof *outs);
    int rc = outs ? 0 : 1;
    int n_in = o->n_files ? o->n_files : 1;
    char *line = NULL;
    size_t cap = 0;
    for (int f = 0; f < n_in && !rc; f++) {
        char *name = o->n_files ? o->files[f] : "<stdin>";
        FILE *in = o->n_files ? fopen(name, "rb") : stdin;
        if (!in) {
            fprintf(stderr, "graft tokenize: %s: cannot open: %s\n", name, strerror(errno));
            rc = 1;
            break;
        }
        ssize_t n;
        size_t lineno = 0;
        while (!rc && (n = getline(&line, &cap, in)) >= 0) {
            lineno++;
            size_t l = (size_t)n;
            if (l && line[l - 1] == '\n') l--;
            char *text;
            if (o->jsonl) {
                text = jsonl_text(line, l, name, lineno, &l);
                if (!text) {
                    rc = 1;
                    break;
                }
            } else {
                text = malloc(l + 1);
                if (text) memcpy(text, line, l);
            }
            if (!text || docs_push(&d, text, l, name, lineno)) {
                free(text);
                fprintf(stderr, "graft tokenize: out of memory\n");
                rc = 1;
                break;
            }
            if (d.n == CHUNK_DOCS || d.bytes >= CHUNK_BYTES) rc = flush_ids(tok, &d, o, outs);
        }
        if (o->n_files) fclose(in);
    }
    if (!rc && d.n) rc = flush_ids(tok, &d, o, outs);
    if (fflush(stdout)) rc = 1;
    free(line);
    for (size_t i = 0; outs && i < CHUNK_DOCS; i++) graft_ids_free(&outs[i]);
    free(outs);
    docs_free(&d);
    return rc;
}

/* ---- --out --------------------------------------------------------------------------------- */

typedef struct shard_state {
    const opts *o;
    const graft_tokenizer_t *tok;
    graft_shard_writer_t *w;
    graft_manifest m;
    uint64_t shard_docs, total_tokens, total_docs, total_bytes;
    int index;
    char path[4096];
    double t0;
} shard_state;

static int shard_finish(shard_state *s) {
    if (!s->w) return 0;
    graft_err e;
    uint64_t n = graft_shard_writer_count(s->w), sum = graft_shard_writer_checksum(s->w);
    if (graft_shard_writer_close(s->w, &e)) {
        s->w = NULL;
        fprintf(stderr, "\ngraft tokenize: %s\n", e.msg);
        return 1;
    }
    s->w = NULL;
    char name[64];
    snprintf(name, sizeof name, "shard-%05d.tok", s->index - 1);
    if (graft_manifest_add_shard(&s->m, name, n, s->shard_docs, sum, &e)) {
        fprintf(stderr, "\ngraft tokenize: %s\n", e.msg);
        return 1;
    }
    return 0;
}

static int flush_shards(shard_state *s, docs *d, graft_ids *outs) {
    graft_err e;
    const opts *o = s->o;
    unsigned flags = o->special_as_text ? GRAFT_TOK_SPECIAL_AS_TEXT : 0;
    size_t bad = 0;
    graft_status st = graft_tokenizer_encode_batch(s->tok, (const char *const *)d->text, d->len,
                                                   d->n, o->threads, flags, outs, &bad, &e);
    if (st) {
        if (d->line[bad])
            fprintf(stderr, "\ngraft tokenize: %s:%zu: %s\n", d->src[bad], d->line[bad], e.msg);
        else
            fprintf(stderr, "\ngraft tokenize: %s: %s\n", d->src[bad], e.msg);
        return 1;
    }
    uint32_t eot = graft_tokenizer_eot_id(s->tok);
    for (size_t i = 0; i < d->n; i++) {
        if (s->w && graft_shard_writer_count(s->w) >= o->shard_tokens && shard_finish(s)) return 1;
        if (!s->w) {
            snprintf(s->path, sizeof s->path, "%s/shard-%05d.tok", o->out_dir, s->index++);
            if (graft_shard_writer_open(s->path, o->vocab_size, graft_tokenizer_hash(s->tok), eot,
                                        &s->w, &e)) {
                fprintf(stderr, "\ngraft tokenize: %s\n", e.msg);
                return 1;
            }
            s->shard_docs = 0;
        }
        if (graft_ids_push(&outs[i], eot, &e) ||
            graft_shard_writer_append(s->w, outs[i].data, outs[i].n, &e)) {
            fprintf(stderr, "\ngraft tokenize: %s:%zu: %s\n", d->src[i], d->line[i], e.msg);
            return 1;
        }
        s->total_tokens += outs[i].n;
        s->shard_docs++;
        s->total_docs++;
        outs[i].n = 0;
    }
    s->total_bytes += d->bytes;
    double dt = graft_host_now_s() - s->t0;
    fprintf(stderr, "\rgraft tokenize: %llu documents, %.1f MB, %llu tokens, %.2f M tokens/s   ",
            (unsigned long long)s->total_docs, (double)s->total_bytes / 1e6,
            (unsigned long long)s->total_tokens, dt > 0 ? (double)s->total_tokens / dt / 1e6 : 0.0);
    docs_clear(d);
    return 0;
}

static int read_whole(FILE *in, const char *name, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
        }
        size_t got = fread(b + n, 1, cap - n, in);
        n += got;
        if (got == 0) break;
    }
    if (!b || ferror(in)) {
        free(b);
        fprintf(stderr, "graft tokenize: %s: read failed\n", name);
        return 1;
    }
    *out = b;
    *len = n;
    return 0;
}

static int run_out(const graft_tokenizer_t *tok, const opts *o, const char *tok_path) {
    if (graft_tokenizer_eot_id(tok) == UINT32_MAX) {
        fprintf(stderr,
                "graft tokenize: %s: no <|endoftext|> added token, expected one to separate "
                "documents\n",
                tok_path);
        return 1;
    }
    if (mkdir(o->out_dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "graft tokenize: %s: cannot create: %s\n", o->out_dir, strerror(errno));
        return 1;
    }
    shard_state s = {.o = o, .tok = tok, .t0 = graft_host_now_s()};
    graft_err e;
    docs d = {0};
    graft_ids *outs = calloc(CHUNK_DOCS, sizeof *outs);
    int rc = outs ? 0 : 1;
    int n_in = o->n_files ? o->n_files : 1;
    char *line = NULL;
    size_t cap = 0;
    for (int f = 0; f < n_in && !rc; f++) {
        char *name = o->n_files ? o->files[f] : "<stdin>";
        FILE *in = o->n_files ? fopen(name, "rb") : stdin;
        if (!in) {
            fprintf(stderr, "graft tokenize: %s: cannot open: %s\n", name, strerror(errno));
            rc = 1;
            break;
        }
        if (graft_manifest_add_source(&s.m, name, &e)) {
            fprintf(stderr, "graft tokenize: %s\n", e.msg);
            rc = 1;
        }
        if (o->jsonl) {
            ssize_t n;
            size_t lineno = 0;
            while (!rc && (n = getline(&line, &cap, in)) >= 0) {
                lineno++;
                size_t l = (size_t)n;
                while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) l--;
                if (!l) continue;
                char *text = jsonl_text(line, l, name, lineno, &l);
                if (!text) {
                    rc = 1;
                    break;
                }
                if (docs_push(&d, text, l, name, lineno)) {
                    free(text);
                    rc = 1;
                    break;
                }
                if (d.n == CHUNK_DOCS || d.bytes >= CHUNK_BYTES) rc = flush_shards(&s, &d, outs);
            }
        } else {
            char *text;
            size_t l;
            rc = read_whole(in, name, &text, &l);
            if (!rc && docs_push(&d, text, l, name, 0)) {
                free(text);
                rc = 1;
            }
            if (!rc && (d.n == CHUNK_DOCS || d.bytes >= CHUNK_BYTES))
                rc = flush_shards(&s, &d, outs);
        }
        if (o->n_files) fclose(in);
    }
    if (!rc && d.n) rc = flush_shards(&s, &d, outs);
    if (!rc) rc = shard_finish(&s);
    graft_shard_writer_abort(s.w);
    fprintf(stderr, "\n");
    if (!rc) {
        char mpath[4200];
        snprintf(mpath, sizeof mpath, "%s/manifest.json", o->out_dir);
        s.m.tokenizer = strdup(tok_path);
        s.m.tokenizer_hash = graft_tokenizer_hash(tok);
        s.m.vocab_size = o->vocab_size;
        s.m.eot_id = graft_tokenizer_eot_id(tok);
        s.m.n_tokens = s.total_tokens;
        s.m.n_documents = s.total_docs;
        if (graft_manifest_write(mpath, &s.m, &e)) {
            fprintf(stderr, "graft tokenize: %s\n", e.msg);
            rc = 1;
        } else {
            fprintf(stderr,
                    "graft tokenize: wrote %d shard(s), %llu tokens, %llu documents to %s\n",
                    s.index, (unsigned long long)s.total_tokens, (unsigned long long)s.total_docs,
                    o->out_dir);
        }
    }
    graft_manifest_free(&s.m);
    free(line);
    for (size_t i = 0; outs && i < CHUNK_DOCS; i++) graft_ids_free(&outs[i]);
    free(outs);
    docs_free(&d);
    return rc;
}

/* ---- --decode ------------------------------------------------------------------------------ */

static void put_json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            putchar('\\');
            putchar(c);
        } else if (c == '\n')
            fputs("\\n", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
    putchar('\n');
}

static int run_decode(const graft_tokenizer_t *tok, const opts *o) {
    int rc = 0, n_in = o->n_files ? o->n_files : 1;
    char *line = NULL;
    size_t cap = 0;
    graft_ids ids = {0};
    for (int f = 0; f < n_in && !rc; f++) {
        const char *name = o->n_files ? o->files[f] : "<stdin>";
        FILE *in = o->n_files ? fopen(name, "rb") : stdin;
        if (!in) {
            fprintf(stderr, "graft tokenize: %s: cannot open: %s\n", name, strerror(errno));
            return 1;
        }
        size_t lineno = 0;
        while (!rc && getline(&line, &cap, in) >= 0) {
            lineno++;
            ids.n = 0;
            graft_err e;
            for (char *p = line, *end; *p && *p != '\n';) {
                if (*p == ' ') {
                    p++;
                    continue;
                }
                errno = 0;
                unsigned long long v = strtoull(p, &end, 10);
                if (end == p || errno || v > UINT32_MAX || *p == '-') {
                    fprintf(stderr, "graft tokenize: %s:%zu: \"%.20s\": expected a token id\n",
                            name, lineno, p);
                    rc = 1;
                    break;
                }
                if (graft_ids_push(&ids, (uint32_t)v, &e)) {
                    rc = 1;
                    break;
                }
                p = end;
            }
            char *text;
            size_t n;
            if (!rc &&
                graft_tokenizer_decode(tok, ids.data, ids.n, o->skip_special, &text, &n, &e)) {
                fprintf(stderr, "graft tokenize: %s:%zu: %s\n", name, lineno, e.msg);
                rc = 1;
            }
            if (!rc) {
                put_json_string(text, n);
                free(text);
            }
        }
        if (o->n_files) fclose(in);
    }
    graft_ids_free(&ids);
    free(line);
    if (fflush(stdout)) rc = 1;
    return rc;
}

static int parse_u64(const char *flag, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long x = v ? strtoull(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x == 0 || v[0] == '-') {
        fprintf(stderr, "graft tokenize: %s: \"%s\", expected a positive integer\n", flag,
                v ? v : "");
        return 2;
    }
    *out = x;
    return 0;
}

int graft_cmd_tokenize(int argc, char **argv) {
    opts o = {.threads = 0, .shard_tokens = 134217728};
    char **files = calloc((size_t)argc + 1, sizeof *files);
    if (!files) return 1;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        uint64_t v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            tokenize_usage(stdout);
            free(files);
            return 0;
        } else if (!strcmp(a, "--tokenizer") && i + 1 < argc)
            o.tok_path = argv[++i];
        else if (!strcmp(a, "--out") && i + 1 < argc)
            o.out_dir = argv[++i];
        else if (!strcmp(a, "--ids"))
            o.ids = 1;
        else if (!strcmp(a, "--jsonl"))
            o.jsonl = 1;
        else if (!strcmp(a, "--special-as-text"))
            o.special_as_text = 1;
        else if (!strcmp(a, "--decode"))
            o.decode = 1;
        else if (!strcmp(a, "--skip-special"))
            o.skip_special = 1;
        else if (!strcmp(a, "--threads")) {
            if (!(rc = parse_u64(a, i + 1 < argc ? argv[++i] : NULL, &v)))
                o.threads = v > 1024 ? 1024 : (int)v;
        } else if (!strcmp(a, "--vocab-size")) {
            rc = parse_u64(a, i + 1 < argc ? argv[++i] : NULL, &o.vocab_size);
        } else if (!strcmp(a, "--shard-tokens")) {
            rc = parse_u64(a, i + 1 < argc ? argv[++i] : NULL, &o.shard_tokens);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "graft tokenize: unknown or incomplete option \"%s\"\n", a);
            rc = 2;
        } else
            files[o.n_files++] = argv[i];
    }
    if (!rc && !o.tok_path) {
        fprintf(stderr, "graft tokenize: --tokenizer is required\n");
        rc = 2;
    }
    if (!rc && o.ids && o.out_dir) {
        fprintf(stderr, "graft tokenize: --ids and --out exclude each other\n");
        rc = 2;
    }
    if (rc) {
        tokenize_usage(stderr);
        free(files);
        return rc;
    }
    o.files = files;
    graft_tokenizer_t *tok = NULL;
    graft_err e;
    if (graft_tokenizer_load(o.tok_path, &tok, &e)) {
        fprintf(stderr, "graft tokenize: %s\n", e.msg);
        free(files);
        return 1;
    }
    if (!o.vocab_size) o.vocab_size = graft_tokenizer_n_vocab(tok);
    if (o.vocab_size < graft_tokenizer_n_vocab(tok) || o.vocab_size > (uint64_t)UINT32_MAX + 1) {
        fprintf(
            stderr,
            "graft tokenize: --vocab-size %llu, expected %u..2^32 (the tokenizer knows %u ids)\n",
            (unsigned long long)o.vocab_size, graft_tokenizer_n_vocab(tok),
            graft_tokenizer_n_vocab(tok));
        rc = 2;
    } else {
        rc = o.decode    ? run_decode(tok, &o)
             : o.out_dir ? run_out(tok, &o, o.tok_path)
                         : run_ids(tok, &o);
    }
    graft_tokenizer_free(tok);
    free(files);
    return rc;
}
