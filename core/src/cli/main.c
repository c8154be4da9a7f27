/* cli/main.c: `graft <command> [options]`. Dispatches to the cmd_<name>.c files through the
 * table below; prints usage for unknown commands. The only place besides the cmd_ files that
 * prints, and the place that maps a run to an exit code: 0 ok, 1 failed, 2 bad usage. */
#include <stdio.h>
#include <string.h>

#include "graft/graft.h"
#include "commands.h"

const graft_command graft_commands[] = {
    /* one line per subcommand; keep them in the order `graft help` shows them */
    {"run", "run a recipe: pretrain, Stage 0, select, Stage 1, eval, bench (--check validates only)", graft_cmd_run},
    {"generate", "continue text prompts with a Qwen3 or hybrid model (batched, greedy or sampled)", graft_cmd_generate},
    {"bench", "time generation of a control and hybrids in one process: TTFT, decode tok/s, state bytes", graft_cmd_bench},
    {"inspect", "validate and summarize a model dir, safetensors, index or config.json", graft_cmd_inspect},
    {"init", "write a randomly initialized Qwen3 checkpoint from a config.json", graft_cmd_init},
    {"forward", "run a model forward (and backward) on ids from a file; write logits and gradients", graft_cmd_forward},
    {"tokenize", "text -> token ids or token shards (Qwen3 byte-level BPE, exact to HF)", graft_cmd_tokenize},
    {"plugins", "list the mixer and loss plugins found, and the refused ones", graft_cmd_plugins},
    {0, 0, 0},
};

static void usage(FILE *out) {
    fprintf(out, "graft %s: graft linear-attention mixers into pretrained Qwen3 models\n\n"
                 "usage: graft <command> [options]   (graft <command> --help for its options)\n\n"
                 "commands:\n", GRAFT_VERSION_STRING);
    for (const graft_command *c = graft_commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "  %-10s %s\n", "version", "print the version");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("graft %s (plugin ABI %u)\n", GRAFT_VERSION_STRING, GRAFT_ABI_VERSION);
        return 0;
    }
    for (const graft_command *c = graft_commands; c->name; c++)
        if (!strcmp(argv[1], c->name)) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "graft: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
