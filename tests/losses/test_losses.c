/* tests/losses/test_losses.c: the loss plugins from C, through the core's loader and host table:
 * descriptors, the plugin's own host refusal, io refusals (device, struct_size), N = 0, the
 * dstudent == NULL path, results independent of the thread count (bit for bit), nmse's ratio of
 * sums across micro-batches, and central finite differences along random directions for every
 * loss (the float64 autograd comparison lives in check_losses.py; this is the second, independent
 * check STYLE.md asks for).
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graft/plugin.h"
#include "host.h"
#include "plugin_loader.h"
#include "test_util.h"

static uint64_t rng_state;
static double urand(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

/* A host whose parallel_for runs everything on the calling thread in one range. */
static void serial_for(void *ctx, int64_t n, void (*fn)(void *, int64_t, int64_t), void *arg) {
    (void)ctx;
    if (n > 0) fn(arg, 0, n);
}

typedef struct inputs {
    int64_t N, W, k;
    float *student, *target, *input, *logp, *mass;
    int32_t *labels, *ids;
} inputs;

/* Random inputs with a consistent teacher top-k cache from the target logits. */
static inputs make_inputs(int64_t N, int64_t W, int64_t k) {
    inputs in = {N, W, k, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    in.student = malloc(sizeof(float) * (size_t)(N * W));
    in.target = malloc(sizeof(float) * (size_t)(N * W));
    in.input = malloc(sizeof(float) * (size_t)(N * W));
    in.labels = malloc(sizeof(int32_t) * (size_t)N);
    in.ids = malloc(sizeof(int32_t) * (size_t)(N * k));
    in.logp = malloc(sizeof(float) * (size_t)(N * k));
    in.mass = malloc(sizeof(float) * (size_t)N);
    for (int64_t r = 0; r < N; r++) {
        float *t = in.target + r * W;
        double m = -INFINITY, s = 0;
        for (int64_t i = 0; i < W; i++) {
            t[i] = (float)(2.0 * nrand());
            in.student[r * W + i] = (float)(t[i] + nrand());
            in.input[r * W + i] = (float)(t[i] + 1.5 * nrand());
            if (t[i] > m) m = t[i];
        }
        for (int64_t i = 0; i < W; i++) s += exp(t[i] - m);
        double lse = m + log(s), P = 0;
        /* top-k by repeated selection (tiny k and W here) */
        for (int64_t j = 0; j < k; j++) {
            int64_t best = -1;
            for (int64_t i = 0; i < W; i++) {
                int taken = 0;
                for (int64_t q = 0; q < j; q++) taken |= in.ids[r * k + q] == i;
                if (!taken && (best < 0 || t[i] > t[best])) best = i;
            }
            in.ids[r * k + j] = (int32_t)best;
            in.logp[r * k + j] = (float)(t[best] - lse);
            P += exp(t[best] - lse);
        }
        in.mass[r] = (float)(P > 1 ? 1 : P);
        in.labels[r] = (int32_t)(urand() * (double)W);
    }
    return in;
}

static void free_inputs(inputs *in) {
    free(in->student), free(in->target), free(in->input), free(in->labels), free(in->ids), free(in->logp),
        free(in->mass);
}

static graft_loss_io make_io(void *obj, const inputs *in, float *ds, double *sum, double *cnt, double *parts) {
    graft_loss_io io = {.struct_size = sizeof io, .loss = obj, .device = GRAFT_DEVICE_CPU, .N = in->N, .W = in->W,
                        .student = in->student, .target = in->target, .input = in->input, .labels = in->labels,
                        .k = in->k, .topk_ids = in->ids, .topk_logp = in->logp, .topk_mass = in->mass,
                        .grad_scale = 1.0f, .dstudent = ds, .loss_sum = sum, .count = cnt, .parts = parts};
    return io;
}

static const char *names[4] = {"nmse", "ce", "topk_kl", "kl"};

static void test_loss(const char *name) {
    graft_err err = {0};
    graft_loaded_plugin *p = NULL;
    if (graft_plugin_load(name, GRAFT_PLUGIN_LOSS, &p, &err)) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        CHECK(0);
        return;
    }
    const graft_loss *L = graft_plugin_loss(p);
    CHECK(L && !strcmp(L->name, name));
    CHECK(L->caps & GRAFT_MIXER_CAP_CPU);
    if (!strcmp(name, "topk_kl"))
        CHECK(L->n_parts == 2 && !strcmp(L->part_names[0], "bernoulli") && !strcmp(L->part_names[1], "topk"));

    /* The plugin refuses a host of another ABI version, and a short host table. */
    void *h = dlopen(graft_plugin_path(p), RTLD_NOW | RTLD_LOCAL);
    graft_plugin_init_fn init = h ? (graft_plugin_init_fn)(uintptr_t)dlsym(h, GRAFT_PLUGIN_ENTRY) : NULL;
    CHECK(init != NULL);
    if (init) {
        graft_host bad = *graft_plugin_host(p);
        graft_plugin info = {.struct_size = sizeof info, .abi_version = GRAFT_ABI_VERSION};
        bad.abi_version = 2;
        CHECK(init(&bad, &info, &err) == GRAFT_STATUS_PLUGIN);
        CHECK_CONTAINS(err.msg, "host abi_version 2, this plugin speaks 1");
        bad = *graft_plugin_host(p);
        bad.struct_size = (uint32_t)offsetof(graft_host, parallel_for);
        CHECK(init(&bad, &info, &err) == GRAFT_STATUS_PLUGIN);
        CHECK_CONTAINS(err.msg, "expected at least");
    }
    if (h) dlclose(h);

    const int64_t N = 37, W = 203, k = 5;
    graft_kv kv[2] = {{"k", "5", NULL}, {"temperature", "2.5", NULL}};
    int64_t n_kv = !strcmp(name, "topk_kl") ? 2 : (!strcmp(name, "kl") ? 1 : 0);
    if (!strcmp(name, "kl")) kv[0] = kv[1];
    void *obj = NULL, *obj_serial = NULL;
    CHECK(L->create(graft_plugin_host(p), kv, n_kv, "test", &obj, &err) == GRAFT_STATUS_OK);
    graft_host serial = *graft_plugin_host(p);
    serial.parallel_for = serial_for;
    CHECK(L->create(&serial, kv, n_kv, "test", &obj_serial, &err) == GRAFT_STATUS_OK);

    inputs in = make_inputs(N, W, k);
    in.labels[3] = -100;
    float *g1 = malloc(sizeof(float) * (size_t)(N * W)), *g2 = malloc(sizeof(float) * (size_t)(N * W));
    double s1, c1, s2, c2, p1[2] = {0}, p2[2] = {0};
    graft_loss_io io = make_io(obj, &in, g1, &s1, &c1, p1);
    CHECK(L->compute(&io, &err) == GRAFT_STATUS_OK);
    graft_loss_io io2 = make_io(obj_serial, &in, g2, &s2, &c2, p2);
    CHECK(L->compute(&io2, &err) == GRAFT_STATUS_OK);
    /* Same bits whatever the thread count (row values are summed in row order). */
    CHECK(s1 == s2 && c1 == c2 && p1[0] == p2[0] && p1[1] == p2[1]);
    CHECK(memcmp(g1, g2, sizeof(float) * (size_t)(N * W)) == 0);
    CHECK(isfinite(s1) && s1 > 0);
    if (!strcmp(name, "topk_kl")) CHECK(fabs(p1[0] + p1[1] - s1) <= 1e-12 * s1);

    /* accumulate (appended member): dstudent += the gradient, one float add per element (what a
     * caller summing two gradients itself would get), same loss; the ignored row adds zeros. */
    {
        float *acc = malloc(sizeof(float) * (size_t)(N * W)), *want = malloc(sizeof(float) * (size_t)(N * W));
        for (int64_t i = 0; i < N * W; i++) acc[i] = (float)(urand() - 0.5), want[i] = acc[i] + g1[i];
        double s4, c4, p4[2] = {0};
        graft_loss_io io4 = make_io(obj, &in, acc, &s4, &c4, p4);
        io4.accumulate = 1;
        CHECK(L->compute(&io4, &err) == GRAFT_STATUS_OK && s4 == s1 && c4 == c1);
        CHECK(memcmp(acc, want, sizeof(float) * (size_t)(N * W)) == 0);
        free(acc);
        free(want);
    }

    /* normalize (appended member): nmse divides its gradient by the count it computed, the same
     * floats as the caller scaling afterwards (stage0.c's old way); the others have no denominator
     * to divide by and refuse. */
    {
        float *gn = malloc(sizeof(float) * (size_t)(N * W));
        double s5, c5, p5[2] = {0};
        graft_loss_io io5 = make_io(obj, &in, gn, &s5, &c5, p5);
        io5.normalize = 1;
        if (!strcmp(name, "nmse")) {
            CHECK(L->compute(&io5, &err) == GRAFT_STATUS_OK && s5 == s1 && c5 == c1);
            float scale = (float)(1.0 / c1);
            int64_t bad = 0;
            for (int64_t i = 0; i < N * W; i++) bad += gn[i] != g1[i] * scale;
            CHECK(bad == 0);
        } else {
            CHECK(L->compute(&io5, &err) == GRAFT_STATUS_UNSUPPORTED);
            CHECK_CONTAINS(err.msg, "no denominator");
        }
        free(gn);
    }

    /* No gradient wanted: same loss, nothing written. */
    double s3, c3;
    graft_loss_io io3 = make_io(obj, &in, NULL, &s3, &c3, NULL);
    CHECK(L->compute(&io3, &err) == GRAFT_STATUS_OK && s3 == s1 && c3 == c1);

    /* Finite differences along a random direction v: <g, v> vs (f(z + hv) - f(z - hv)) / 2h, with
     * v_i = g_i (0.5 + u_i) / max|g| (u uniform in [0, 1)), so that <g, v> is a sum of positive terms:
     * a fully random v makes <g, v> a cancelling sum of thousands of terms, as small as the O(h^2)
     * truncation error. The perturbed inputs are rounded to fp32, so <g, v> uses the perturbation
     * actually applied; h = 1e-2 and the tolerance 1e-3 relative (the O(h^2) term is ~1e-5). */
    {
        float *zp = malloc(sizeof(float) * (size_t)(N * W)), *zm = malloc(sizeof(float) * (size_t)(N * W));
        double dot = 0, fp, fm, cc, gmax = 0;
        const double hh = 1e-2;
        for (int64_t i = 0; i < N * W; i++) gmax = fmax(gmax, fabs((double)g1[i]));
        for (int64_t i = 0; i < N * W; i++) {
            double v = (double)g1[i] * (0.5 + urand()) / gmax;
            zp[i] = (float)(in.student[i] + hh * v);
            zm[i] = (float)(in.student[i] - hh * v);
            dot += (double)g1[i] * (((double)zp[i] - (double)zm[i]) / (2 * hh));
        }
        inputs ip = in;
        ip.student = zp;
        graft_loss_io a = make_io(obj, &ip, NULL, &fp, &cc, NULL);
        CHECK(L->compute(&a, &err) == GRAFT_STATUS_OK);
        ip.student = zm;
        graft_loss_io b = make_io(obj, &ip, NULL, &fm, &cc, NULL);
        CHECK(L->compute(&b, &err) == GRAFT_STATUS_OK);
        double fd = (fp - fm) / (2 * hh);
        if (!(fabs(fd - dot) <= 1e-3 * fabs(fd) + 1e-9)) {
            fprintf(stderr, "%s: finite difference %.9g vs <grad, v> %.9g\n", name, fd, dot);
            CHECK(0);
        }
        free(zp);
        free(zm);
    }

    /* io refusals shared by every loss. */
    graft_loss_io bad = io;
    if (!(L->caps & GRAFT_MIXER_CAP_CUDA)) { /* a loss with a CUDA path (nmse in a CUDA build) serves it */
        bad.device = GRAFT_DEVICE_CUDA;
        CHECK(L->compute(&bad, &err) == GRAFT_STATUS_UNSUPPORTED);
        CHECK_CONTAINS(err.msg, "only the CPU");
    }
    bad = io;
    bad.device = (graft_device)7;
    CHECK(L->compute(&bad, &err) == GRAFT_STATUS_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "device 7");
    bad = io;
    bad.dtype = GRAFT_DTYPE_BF16; /* bf16 rows only on a device */
    CHECK(L->compute(&bad, &err) == GRAFT_STATUS_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "dtype 1 on device 0");
    bad = io;
    bad.struct_size = (uint32_t)offsetof(graft_loss_io, count);
    CHECK(L->compute(&bad, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "struct_size");
    bad = io;
    bad.W = 0;
    CHECK(L->compute(&bad, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "W: 0, expected >= 1");
    bad = io;
    bad.grad_scale = NAN;
    CHECK(L->compute(&bad, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "grad_scale");
    /* N = 0: nothing counted. */
    bad = io;
    bad.N = 0;
    s3 = c3 = -1;
    bad.loss_sum = &s3;
    bad.count = &c3;
    CHECK(L->compute(&bad, &err) == GRAFT_STATUS_OK && s3 == 0 && c3 == 0);

    free(g1);
    free(g2);
    free_inputs(&in);
    L->destroy(obj);
    L->destroy(obj_serial);
    L->destroy(NULL);
    graft_plugin_unload(p);
}

/* nmse: summing loss_sum and count over micro-batches and dividing once is the ratio of sums
 * over all rows (DESIGN "Normalized loss"), computed here in plain double loops. */
static void test_nmse_micro_batches(void) {
    graft_err err = {0};
    graft_loaded_plugin *p = NULL;
    if (graft_plugin_load("nmse", GRAFT_PLUGIN_LOSS, &p, &err)) {
        CHECK(0);
        return;
    }
    const graft_loss *L = graft_plugin_loss(p);
    void *obj = NULL;
    CHECK(L->create(graft_plugin_host(p), NULL, 0, "test", &obj, &err) == GRAFT_STATUS_OK);
    const int64_t N = 9, W = 31, split = 4;
    inputs in = make_inputs(N, W, 1);
    for (int64_t i = split * W; i < N * W; i++) in.input[i] = in.target[i] + 4.0f * (in.input[i] - in.target[i]);
    double num = 0, den = 0;
    for (int64_t i = 0; i < N * W; i++) {
        num += ((double)in.student[i] - in.target[i]) * ((double)in.student[i] - in.target[i]);
        den += ((double)in.input[i] - in.target[i]) * ((double)in.input[i] - in.target[i]);
    }
    double sa, ca, sb, cb;
    inputs a = in, b = in;
    a.N = split;
    b.N = N - split;
    b.student += split * W;
    b.target += split * W;
    b.input += split * W;
    graft_loss_io ia = make_io(obj, &a, NULL, &sa, &ca, NULL), ib = make_io(obj, &b, NULL, &sb, &cb, NULL);
    CHECK(L->compute(&ia, &err) == GRAFT_STATUS_OK && L->compute(&ib, &err) == GRAFT_STATUS_OK);
    double ratio = (sa + sb) / (ca + cb), want = num / den;
    CHECK(fabs(ratio - want) <= 1e-12 * want);
    CHECK(fabs(0.5 * (sa / ca + sb / cb) - want) > 1e-3 * want); /* not a mean of batch ratios */
    /* The gradient is 2 (s - t) * grad_scale. */
    float *g = malloc(sizeof(float) * (size_t)(N * W)), *gref = malloc(sizeof(float) * (size_t)(N * W));
    double s, c;
    graft_loss_io io = make_io(obj, &in, g, &s, &c, NULL);
    io.grad_scale = (float)(1.0 / den);
    CHECK(L->compute(&io, &err) == GRAFT_STATUS_OK);
    for (int64_t i = 0; i < N * W; i++) gref[i] = (float)(2.0 * ((double)in.student[i] - in.target[i]) * (double)io.grad_scale);
    check_close_f32("nmse dstudent", g, gref, N * W, 1e-12);
    free(g);
    free(gref);
    free_inputs(&in);
    L->destroy(obj);
    graft_plugin_unload(p);
}

int main(void) {
    const char *env = getenv("GRAFT_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&seed;
    rng_state = seed;
    printf("test_losses: seed %llu (GRAFT_TEST_SEED=%llu replays this run)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    for (int i = 0; i < 4; i++) test_loss(names[i]);
    test_nmse_micro_batches();
    return test_finish("test_losses");
}
