/* bench/cupti_trace.c: libgraft_cupti_trace.so, a kernel timeline for any CUDA program, by LD_PRELOAD.
 *
 *   GRAFT_TRACE_OUT=trace.csv LD_PRELOAD=libgraft_cupti_trace.so graft bench --device cuda ...
 *   python3 bench/trace_summary.py trace.csv [--window KERNEL_REGEX]
 *
 * Why: ncu times each kernel alone (serialized, by default at base clocks with flushed caches), so
 * it cannot show what a run loses between kernels (launch gaps, host syncs, a graph's node-to-node
 * latency) or to sustained-load clocks; the device machines have no nsys. CUPTI's activity API
 * records every kernel's start and end on the GPU's clock as it really ran, with the graph node it
 * came from, at ~1 us cost per kernel only when the buffers are handed over.
 *
 * Output: one CSV row per kernel or memcpy, in completion-buffer order (sort by start):
 *   kind,start_ns,end_ns,graph_id,stream,name          (kind: K kernel, M memcpy, S memset)
 * Written when the program exits (atexit flushes CUPTI). Without GRAFT_TRACE_OUT nothing is traced.
 * Needs libcupti.so from the CUDA toolkit next to libcudart at run time.
 */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_BUF (8u << 20)

static FILE *trace_out;

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = (uint8_t *)aligned_alloc(8, TRACE_BUF);
    *size = *buffer ? TRACE_BUF : 0;
    *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
    (void)ctx;
    (void)stream;
    (void)size;
    CUpti_Activity *rec = NULL;
    while (trace_out && cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || rec->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
            const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
            fprintf(trace_out, "K,%llu,%llu,%u,%u,%s\n", (unsigned long long)k->start, (unsigned long long)k->end,
                    k->graphId, k->streamId, k->name ? k->name : "?");
        } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
            const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
            fprintf(trace_out, "M,%llu,%llu,%u,%u,memcpy kind %u %llu bytes\n", (unsigned long long)m->start,
                    (unsigned long long)m->end, m->graphId, m->streamId, (unsigned)m->copyKind,
                    (unsigned long long)m->bytes);
        } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
            const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
            fprintf(trace_out, "S,%llu,%llu,%u,%u,memset %llu bytes\n", (unsigned long long)m->start,
                    (unsigned long long)m->end, m->graphId, m->streamId, (unsigned long long)m->bytes);
        }
    }
    free(buffer);
}

static void trace_finish(void) {
    if (!trace_out) return;
    cuptiActivityFlushAll(1);
    fclose(trace_out);
    trace_out = NULL;
}

__attribute__((constructor)) static void trace_start(void) {
    const char *path = getenv("GRAFT_TRACE_OUT");
    if (!path || !*path) return;
    trace_out = fopen(path, "w");
    if (!trace_out) {
        fprintf(stderr, "cupti_trace: cannot open GRAFT_TRACE_OUT=%s for writing\n", path);
        return;
    }
    fprintf(trace_out, "kind,start_ns,end_ns,graph_id,stream,name\n");
    CUptiResult r = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
    if (r == CUPTI_SUCCESS) r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    if (r == CUPTI_SUCCESS) r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
    if (r == CUPTI_SUCCESS) r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
    if (r != CUPTI_SUCCESS) {
        const char *msg = NULL;
        cuptiGetResultString(r, &msg);
        fprintf(stderr, "cupti_trace: CUPTI refused activity tracing: %s\n", msg ? msg : "?");
        fclose(trace_out);
        trace_out = NULL;
        return;
    }
    atexit(trace_finish);
}
