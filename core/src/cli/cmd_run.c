/* cli/cmd_run.c: `graft run RECIPE [--check] [--resume] [--stage N]`: runs a recipe (run.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../run.h"
#include "commands.h"

static void run_usage(FILE *f) {
    fprintf(f, "usage: graft run RECIPE.yaml [--check] [--resume] [--stage N]\n"
               "  runs the recipe's stages in order (pretrain, stage0, select, stage1, eval, bench), writing the run log\n"
               "  --check     validate the recipe and every file it names, run nothing\n"
               "  --resume    continue a killed run: skip finished stages, resume training from its last checkpoint\n"
               "  --stage N   run only stages[N] (0-based), taking earlier stages' outputs from disk\n");
}

int graft_cmd_run(int argc, char **argv) {
    graft_run_opts o = graft_run_default_opts();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            run_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--check")) {
            o.check_only = 1;
        } else if (!strcmp(argv[i], "--resume")) {
            o.resume = 1;
        } else if (!strcmp(argv[i], "--stage") && i + 1 < argc) {
            char *end = NULL;
            long long v = strtoll(argv[++i], &end, 10);
            if (!end || *end || v < 0) {
                fprintf(stderr, "graft run: --stage \"%s\": expected a stage index >= 0\n", argv[i]);
                return 2;
            }
            o.only_stage = v;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "graft run: unknown option \"%s\"\n", argv[i]);
            run_usage(stderr);
            return 2;
        } else if (!o.recipe) {
            o.recipe = argv[i];
        } else {
            fprintf(stderr, "graft run: one recipe only (got \"%s\" and \"%s\")\n", o.recipe, argv[i]);
            return 2;
        }
    }
    if (!o.recipe) {
        run_usage(stderr);
        return 2;
    }
    if (o.resume && o.only_stage >= 0) {
        fprintf(stderr, "graft run: --resume and --stage exclude each other\n");
        return 2;
    }
    char cmd[4096];
    size_t n = (size_t)snprintf(cmd, sizeof cmd, "graft");
    for (int i = 0; i < argc && n + 2 < sizeof cmd; i++) n += (size_t)snprintf(cmd + n, sizeof cmd - n, " %s", argv[i]);
    o.command_line = cmd;
    graft_err err;
    graft_status st = graft_run(&o, &err);
    if (st) {
        fprintf(stderr, "graft run: %s\n", err.msg);
        return 1;
    }
    return 0;
}
