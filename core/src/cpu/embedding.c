/* cpu/embedding.c: token embedding gather and its scatter-add backward (qwen3.md §3, §5). */
#include <string.h>

#include "cpu_ops.h"

void graft_cpu_embedding_fwd(float *out, const float *table, const int32_t *ids, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) memcpy(out + n * C, table + (int64_t)ids[n] * C, (size_t)C * sizeof(float));
}

/* Sequential on purpose: two positions with the same id add into the same row. */
void graft_cpu_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        float *row = dtable + (int64_t)ids[n] * C;
        const float *g = dout + n * C;
        for (int64_t c = 0; c < C; c++) row[c] += g[c];
    }
}
