/* cli/commands.h: the `graft` subcommands. Each cmd_<name>.c defines one and owns its option
 * parsing; main.c dispatches by name. Only the CLI prints to the terminal and picks the exit code
 * (0 ok, 1 the work failed, 2 bad usage). */
#ifndef GRAFT_CLI_COMMANDS_H
#define GRAFT_CLI_COMMANDS_H

typedef struct graft_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} graft_command;

/* The table, terminated by a zero entry (main.c). */
extern const graft_command graft_commands[];

int graft_cmd_inspect(int argc, char **argv);
int graft_cmd_init(int argc, char **argv);
int graft_cmd_tokenize(int argc, char **argv);
int graft_cmd_plugins(int argc, char **argv);
int graft_cmd_forward(int argc, char **argv);
int graft_cmd_run(int argc, char **argv);
int graft_cmd_generate(int argc, char **argv);
int graft_cmd_bench(int argc, char **argv);

#endif
