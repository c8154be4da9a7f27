/* recipe.h: the recipe (YAML) schema as typed structs, and its loader/validator.
 *
 * A recipe names the model, teacher, tokenizer, data, device and run log, then a list of stages
 * (pretrain, stage0, select, stage1, eval, bench) that `graft run` executes in order.
 * docs/recipes.md is the reference of every key (type, default, range, stage).
 *
 * graft_recipe_load parses and validates EVERYTHING that can be checked from the file alone
 * before anything runs: unknown keys (with a "did you mean"), wrong types, out-of-range values,
 * missing required keys, unknown stage kinds and unknown mixer names (against the caller's list
 * of plugins found at run time). Checks that need the model's layer count are done by
 * graft_recipe_check_layers, which the runner calls once it has read the model's config.
 * Every error reads "<recipe>:<line>:<col>: <key path>: <found>, expected <allowed>".
 *
 * Paths: every relative path in a recipe (model, teacher, tokenizer, data, run_log, out, spec,
 * from, cost, teacher_cache, eval/bench model paths) is resolved against the directory of the
 * recipe file; the structs hold the resolved (absolute) paths.
 *
 * Ownership: all memory of a graft_recipe (strings, arrays, graft_kv entries) belongs to it and
 * is released by graft_recipe_free. Nothing points into the YAML document after loading.
 * Not here: running stages, reading model configs, plugin loading.
 * Thread safety: a loaded recipe is immutable; any number of threads may read it.
 */
#ifndef GRAFT_RECIPE_H
#define GRAFT_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"
#include "graft/status.h"

/* Where a value was written, for errors raised after loading (graft_recipe_check_layers, the
 * runner): "file:line:col" and the key path ("stages[1].layers[2]"). */
typedef struct graft_recipe_pos {
    const char *where;   /* "recipes/demo.yaml:14:9"                                            */
    const char *field;   /* "stages[1].layers[2]"                                               */
} graft_recipe_pos;

/* `model` / `teacher`: an HF model directory, or a random init from a config.json and seed. */
typedef struct graft_model_ref {
    int random_init;     /* 0: `path` is an HF model dir; 1: build from `config` with `seed`    */
    const char *path;    /* resolved; NULL when random_init                                     */
    const char *config;  /* resolved config.json path; NULL unless random_init                  */
    int64_t seed;        /* random_init only; default: the recipe's `seed`                      */
    graft_recipe_pos pos;
} graft_model_ref;

/* A set of 0-based layer indices: "all", or ranges [lo, hi] (a single layer is lo == hi). */
typedef struct graft_layer_range {
    int64_t lo, hi;      /* inclusive, 0 <= lo <= hi                                            */
    const char *text;    /* as written ("3", "10-21"), for messages                             */
    graft_recipe_pos pos;
} graft_layer_range;

typedef struct graft_layer_set {
    int all;             /* 1: every layer of the model (ranges is then empty)                  */
    const graft_layer_range *ranges;
    int64_t n_ranges;
} graft_layer_set;

/* Expands a layer set for a model of n_layer layers into a sorted list without duplicates,
 * written to out (capacity n_layer). Returns the count; ranges beyond n_layer are clipped (call
 * graft_recipe_check_layers first to refuse them). */
int64_t graft_layer_set_expand(const graft_layer_set *set, int64_t n_layer, int64_t *out);

/* Optimisation and bookkeeping keys shared by pretrain, stage0 and stage1. */
typedef struct graft_train_params {
    int64_t steps;            /* >= 1; required (stage1: the sum of its phases)                 */
    int64_t batch;            /* >= 1; required (stage1: from the phases)                       */
    int64_t seq_len;          /* >= 1; required (stage1: from the phases)                       */
    int64_t accum;            /* gradient accumulation micro-steps, >= 1, default 1             */
    double lr;                /* peak learning rate, > 0, required                              */
    double lr_min;            /* cosine floor, 0 <= lr_min <= lr, default 0                     */
    int64_t warmup;           /* linear warmup steps, >= 0, default 0                           */
    double weight_decay;      /* AdamW, >= 0, default 0                                         */
    double grad_clip;         /* global norm, >= 0 (0 = off), default 1                         */
    double beta1, beta2;      /* AdamW, in [0, 1), default 0.9 / 0.95                           */
    double eps;               /* AdamW, > 0, default 1e-8                                       */
    int64_t eval_every;       /* steps between held-out evals, >= 0 (0 = only at the end)       */
    int64_t eval_batches;     /* held-out batches per eval, >= 1, default 8                     */
    int64_t checkpoint_every; /* steps between checkpoints, >= 0 (0 = only at the end)          */
    int64_t log_every;        /* steps between run-log rows, >= 1, default 1                    */
    const char *out;          /* output directory, resolved; default <run_log dir>/stage<i>-<kind> */
} graft_train_params;

/* One mixer of a stage0: its plugin name and settings (values as text; where = file:line:col). */
typedef struct graft_recipe_mixer {
    const char *name;
    const graft_kv *kv;
    int64_t n_kv;
    graft_recipe_pos pos;
} graft_recipe_mixer;

typedef enum graft_stage0_init {
    GRAFT_STAGE0_INIT_TEACHER = 0,  /* from the teacher's attention where the plugin can map it */
    GRAFT_STAGE0_INIT_RANDOM = 1    /* the plugin's own init                                    */
} graft_stage0_init;

typedef struct graft_stage0_params {
    graft_layer_set layers;         /* required                                                 */
    const graft_recipe_mixer *mixers; /* required, >= 1                                         */
    int64_t n_mixers;
    graft_stage0_init init;         /* default teacher                                          */
    int train_mixer, train_mlp;     /* `train` list; default [mixer]                            */
    const char *loss;               /* loss plugin name, default "nmse"                         */
} graft_stage0_params;

typedef enum graft_select_policy {
    GRAFT_SELECT_PERCENTILE = 0,    /* per mixer, best max(1, floor(n * p / 100)) of n candidates */
    GRAFT_SELECT_COUNT = 1,         /* per mixer, the best `count`                              */
    GRAFT_SELECT_LIST = 2,          /* explicit layers per mixer                                */
    GRAFT_SELECT_BUDGET = 3         /* lowest-loss pairs until the saved time reaches `budget`  */
} graft_select_policy;

/* Layers per mixer (`ranges` and `list` of a select stage). */
typedef struct graft_mixer_layers {
    const char *mixer;
    graft_layer_set layers;
    graft_recipe_pos pos;
} graft_mixer_layers;

typedef struct graft_select_params {
    graft_select_policy policy;      /* required                                                */
    const double *percentiles;       /* percentile policy: >= 1 values in (0, 100]              */
    int64_t n_percentiles;
    int64_t count;                   /* count policy: >= 1                                      */
    const graft_mixer_layers *ranges; /* allowed layers per mixer; n_ranges == 0: all layers of
                                        every mixer in the table                                */
    int64_t n_ranges;
    const graft_mixer_layers *list;  /* list policy                                             */
    int64_t n_list;
    const char *cost;                /* budget policy: CSV mixer,layer,saved_ms (resolved)      */
    double budget;                   /* budget policy: total saved ms to reach, > 0             */
    const char *from;                /* Stage 0 table CSV; NULL = the run log's stage0 table    */
    const char *out;                 /* spec path; contains "{p}" when n_percentiles > 1        */
} graft_select_params;

/* The output path of a select stage for percentile p ("{p}" replaced by p, e.g. 10 or 12.5). */
void graft_select_out_path(const graft_select_params *s, double p, char *buf, size_t size);

typedef struct graft_stage1_phase {
    int64_t steps, batch, seq_len;   /* each >= 1                                               */
    graft_recipe_pos pos;
} graft_stage1_phase;

typedef struct graft_stage1_params {
    const char *spec;                /* hybrid spec; default: the single output of the latest
                                        earlier select stage                                    */
    double alpha;                    /* CE weight in [0, 1], default 0.5                        */
    int64_t k;                       /* top-k of the KL, >= 1, default 32                       */
    double temperature;              /* > 0, default 4                                          */
    const graft_stage1_phase *phases; /* >= 1                                                   */
    int64_t n_phases;
    const char *teacher_cache;       /* optional, resolved                                      */
} graft_stage1_params;

typedef enum graft_model_choice_kind {
    GRAFT_MODEL_CHOICE_TEACHER = 0,
    GRAFT_MODEL_CHOICE_CONTROL = 1,  /* the recipe's `model`                                    */
    GRAFT_MODEL_CHOICE_HYBRID = 2,   /* the output of the latest earlier stage1                 */
    GRAFT_MODEL_CHOICE_PATH = 3
} graft_model_choice_kind;

typedef struct graft_model_choice {
    graft_model_choice_kind kind;
    const char *path;                /* PATH: resolved; HYBRID: that stage1's out; else NULL    */
    graft_recipe_pos pos;
} graft_model_choice;

typedef struct graft_generate_params {
    const char *const *prompts;      /* >= 1                                                    */
    int64_t n_prompts;
    int64_t max_new_tokens;          /* >= 1, required                                          */
    double temperature;              /* > 0, default 1                                          */
    int64_t top_k;                   /* >= 0 (0 = off), default 0                               */
    double top_p;                    /* in (0, 1], default 1                                    */
    int greedy;                      /* default false                                           */
} graft_generate_params;

typedef struct graft_eval_params {
    const graft_model_choice *models; /* default [control] (+ hybrid after a stage1)            */
    int64_t n_models;
    int64_t heldout_batches;         /* >= 1, default 16                                        */
    int64_t batch;                   /* >= 1, default 8                                         */
    int64_t seq_len;                 /* >= 1, default 512                                       */
    int has_generate;
    graft_generate_params generate;
} graft_eval_params;

typedef struct graft_bench_params {
    const int64_t *contexts;         /* prompt lengths, >= 1 each, required                     */
    int64_t n_contexts;
    const int64_t *batches;          /* default [1]                                             */
    int64_t n_batches;
    int64_t gen_tokens;              /* >= 1, default 128                                       */
    int64_t prefill_chunk;           /* >= -1, default 0 = automatic (graft_bench_prefill_chunk) */
    int64_t repeat;                  /* timed runs per measurement (median), >= 1, default 1    */
    const graft_model_choice *models; /* as eval                                                */
    int64_t n_models;
} graft_bench_params;

typedef enum graft_stage_kind {
    GRAFT_STAGE_PRETRAIN = 0,
    GRAFT_STAGE_STAGE0 = 1,
    GRAFT_STAGE_SELECT = 2,
    GRAFT_STAGE_STAGE1 = 3,
    GRAFT_STAGE_EVAL = 4,
    GRAFT_STAGE_BENCH = 5
} graft_stage_kind;

/* "pretrain", "stage0", ... */
const char *graft_stage_kind_name(graft_stage_kind kind);

typedef struct graft_stage {
    graft_stage_kind kind;
    int64_t index;                   /* position in `stages` (0-based)                          */
    graft_recipe_pos pos;            /* the stage's map                                         */
    graft_train_params train;        /* pretrain, stage0, stage1 only (zero otherwise)          */
    union {
        graft_stage0_params stage0;
        graft_select_params select;
        graft_stage1_params stage1;
        graft_eval_params eval;
        graft_bench_params bench;
    } as;                            /* the member named by `kind` (pretrain has none)          */
} graft_stage;

typedef struct graft_recipe_data {
    const char *const *train;        /* token shards or manifest .json files, resolved, >= 1    */
    int64_t n_train;
    double heldout_fraction;         /* in (0, 0.5), default 0.05; 0 when heldout paths given   */
    const char *const *heldout;      /* held-out shards/manifests, resolved; NULL when fraction */
    int64_t n_heldout;
    int64_t seed;                    /* window shuffling/splitting; default: the recipe's seed  */
} graft_recipe_data;

typedef struct graft_recipe_pool graft_recipe_pool;

typedef struct graft_recipe {
    const char *path;                /* as given to graft_recipe_load                           */
    const char *dir;                 /* absolute directory relative paths are resolved against  */
    graft_model_ref model;           /* required                                                */
    graft_model_ref teacher;         /* default: a copy of model                                */
    int teacher_is_model;            /* 1 when `teacher` was absent                             */
    const char *tokenizer;           /* resolved; NULL: the model directory's tokenizer         */
    int has_data;
    graft_recipe_data data;           /* required when a stage trains or evaluates               */
    const char *device;              /* "cpu" (default), "cuda", "cuda:N"                       */
    int device_cuda;                 /* 1 for cuda                                              */
    int64_t device_index;            /* N of cuda:N, else 0                                     */
    const char *run_log;             /* resolved HDF5 path, required                            */
    int64_t seed;                    /* >= 0, default 0                                         */
    int64_t threads;                 /* >= 0 (0 = all cores), default 0                         */
    const graft_stage *stages;       /* >= 1                                                    */
    int64_t n_stages;
    graft_recipe_pool *pool_;        /* owns every allocation above                             */
} graft_recipe;

/* Loads and validates the recipe at `path`. known_mixers is the NULL-terminated list of mixer
 * plugin names found at run time; stage0 `mixers` and select `ranges`/`list` keys must be in it
 * (NULL skips that check, e.g. for a docs linter). On success *out is a new recipe (free with
 * graft_recipe_free); on failure *out is NULL and err holds one message (the first problem).
 * Returns GRAFT_STATUS_BAD_INPUT, GRAFT_STATUS_IO or GRAFT_STATUS_NO_MEMORY on failure. */
graft_status graft_recipe_load(const char *path, const char *const *known_mixers,
                               graft_recipe **out, graft_err *err);

/* Frees a recipe. NULL is a no-op. */
void graft_recipe_free(graft_recipe *recipe);

/* Checks every layer index of the recipe (stage0 `layers`, select `ranges` and `list`) against a
 * model of n_layer layers; fails with "<where>: <field>: <found>, expected 0..<n_layer-1>
 * (0-based)" naming the offending entry. */
graft_status graft_recipe_check_layers(const graft_recipe *recipe, int64_t n_layer,
                                       graft_err *err);

/* Typed access: the stage's parameters when it is of that kind, else NULL. */
const graft_stage0_params *graft_stage_stage0(const graft_stage *s);
const graft_select_params *graft_stage_select(const graft_stage *s);
const graft_stage1_params *graft_stage_stage1(const graft_stage *s);
const graft_eval_params *graft_stage_eval(const graft_stage *s);
const graft_bench_params *graft_stage_bench(const graft_stage *s);
const graft_train_params *graft_stage_train(const graft_stage *s); /* pretrain/stage0/stage1 */

#endif
