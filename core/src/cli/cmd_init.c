/* cli/cmd_init.c: `graft init --config FILE --random --seed N --out DIR`: a randomly initialized
 * Qwen3 checkpoint (qwen3_init.c). The model is written into DIR.tmp-XXXXXX next to DIR and
 * renamed to DIR at the end, so a failure never leaves a partial model under DIR; DIR must not
 * exist yet. Exit: 0 ok, 1 failed, 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "qwen3_init.h"

static void help(FILE *out) {
    fprintf(out,
            "usage: graft init --config FILE --random --out DIR [--seed N] [--dtype f32|bf16]\n"
            "                  [--max-shard-size BYTES]\n\n"
            "Writes a randomly initialized Qwen3 checkpoint (config.json + safetensors) into DIR,\n"
            "which must not exist. Weights ~ Normal(0, initializer_range), norms = 1.\n\n"
            "  --config FILE          a Qwen3 config.json\n"
            "  --random               random init (the only mode for now)\n"
            "  --seed N               seed (default 0); tensor k uses stream k of the seed\n"
            "  --dtype f32|bf16       weight dtype (default bf16)\n"
            "  --max-shard-size BYTES shard above this many data bytes (default: one file)\n"
            "  --out DIR              output directory\n");
}

static int parse_u64(const char *s, uint64_t *out) {
    if (!*s || *s == '-') return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            size_t n = strlen(dir) + strlen(de->d_name) + 2;
            char *p = malloc(n);
            if (p) {
                snprintf(p, n, "%s/%s", dir, de->d_name);
                unlink(p);
                free(p);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

int graft_cmd_init(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *dtype_s = "bf16";
    uint64_t seed = 0, max_shard = 0;
    int random = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--random")) {
            random = 1;
        } else if (!strcmp(a, "--config") && has_val) {
            config = argv[++i];
        } else if (!strcmp(a, "--out") && has_val) {
            out = argv[++i];
        } else if (!strcmp(a, "--dtype") && has_val) {
            dtype_s = argv[++i];
        } else if (!strcmp(a, "--seed") && has_val) {
            if (!parse_u64(argv[++i], &seed)) {
                fprintf(stderr, "graft init: --seed: \"%s\", expected a non-negative integer\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--max-shard-size") && has_val) {
            if (!parse_u64(argv[++i], &max_shard) || !max_shard) {
                fprintf(stderr, "graft init: --max-shard-size: \"%s\", expected a positive number "
                        "of bytes\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "graft init: %s \"%s\"\n", a[0] == '-' ? "unknown option or missing "
                    "value for" : "unexpected argument", a);
            help(stderr);
            return 2;
        }
    }
    if (!config || !out || !random) {
        fprintf(stderr, "graft init: missing %s\n", !config ? "--config FILE" : !out ? "--out DIR"
                : "--random (the only init mode)");
        help(stderr);
        return 2;
    }
    graft_dtype dtype;
    if (!strcmp(dtype_s, "f32")) dtype = GRAFT_DTYPE_F32;
    else if (!strcmp(dtype_s, "bf16")) dtype = GRAFT_DTYPE_BF16;
    else {
        fprintf(stderr, "graft init: --dtype: \"%s\", expected f32 or bf16\n", dtype_s);
        return 2;
    }
    graft_err err;
    graft_qwen3_config cfg;
    if (graft_config_load(config, &cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (cfg.head_dim_defaulted)
        fprintf(stderr, "warning: %s: head_dim missing, using %lld\n", config, (long long)cfg.head_dim);
    if (!access(out, F_OK)) {
        fprintf(stderr, "%s: exists, expected a new directory (graft init never overwrites)\n", out);
        return 1;
    }
    size_t n = strlen(out) + 16;
    char *tmp = malloc(n);
    if (!tmp) {
        fprintf(stderr, "graft init: out of memory\n");
        return 1;
    }
    snprintf(tmp, n, "%s.tmp-XXXXXX", out);
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "%s: cannot create: %s\n", tmp, strerror(errno));
        free(tmp);
        return 1;
    }
    chmod(tmp, 0755);
    int rc = 0;
    if (graft_qwen3_write_random(&cfg, seed, dtype, tmp, max_shard, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        rc = 1;
    } else if (rename(tmp, out)) {
        fprintf(stderr, "%s: cannot rename to %s: %s\n", tmp, out, strerror(errno));
        rc = 1;
    }
    if (rc) remove_tree(tmp);
    else printf("wrote %s (seed %" PRIu64 ", %s)\n", out, seed, dtype_s);
    free(tmp);
    return rc;
}
