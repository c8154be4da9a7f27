/* bench_tokenizer.c: times graft's tokenizer in-process (load excluded) on the documents of a JSONL
 * file, with 1 thread and with N threads; prints one line per run: "graft THREADS TOKENS SECONDS".
 * Built and driven by bench/tokenizer/bench.js, which times HF tokenizers on the same documents.
 * usage: bench_tokenizer TOKENIZER DOCS.jsonl THREADS... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data.h"
#include "tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER DOCS.jsonl THREADS...\n");
        return 2;
    }
    graft_err e;
    graft_tokenizer_t *tok;
    if (graft_tokenizer_load(argv[1], &tok, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    size_t n = 0, cap = 1024;
    char **texts = malloc(cap * sizeof *texts), *line = NULL;
    size_t *lens = malloc(cap * sizeof *lens), lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        if (n == cap) {
            cap *= 2;
            texts = realloc(texts, cap * sizeof *texts);
            lens = realloc(lens, cap * sizeof *lens);
        }
        if (graft_jsonl_text(line, (size_t)got, &texts[n], &lens[n], &e)) {
            fprintf(stderr, "%s: line %zu: %s\n", argv[2], n + 1, e.msg);
            return 1;
        }
        n++;
    }
    fclose(f);
    free(line);
    graft_ids *outs = calloc(n, sizeof *outs);
    for (int a = 3; a < argc; a++) {
        int threads = atoi(argv[a]);
        double best = 1e30;
        size_t tokens = 0;
        for (int rep = 0; rep < 3; rep++) {
            for (size_t i = 0; i < n; i++) outs[i].n = 0;
            double t0 = now_s();
            if (graft_tokenizer_encode_batch(tok, (const char *const *)texts, lens, n, threads, 0,
                                             outs, NULL, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            double dt = now_s() - t0;
            if (dt < best) best = dt;
            tokens = 0;
            for (size_t i = 0; i < n; i++) tokens += outs[i].n;
        }
        printf("graft %d %zu %.6f\n", threads, tokens, best);
    }
    for (size_t i = 0; i < n; i++) {
        free(texts[i]);
        graft_ids_free(&outs[i]);
    }
    free(outs);
    free(texts);
    free(lens);
    graft_tokenizer_free(tok);
    return 0;
}
