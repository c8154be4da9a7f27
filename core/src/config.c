/* config.c: Qwen3 config.json reader (every transformers spelling of spec/qwen3.md §1.2) with
 * validation, and the writer (4.51.0 spelling, sorted keys, 2-space indent, no trailing newline,
 * Python float repr: byte-identical to the release files for their values).
 *
 * Not here: hybrid layer_types (the hybrid module), generation_config.json.
 * Messages: "<path>: <field>: <found>, expected <allowed>".
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONFIG_BYTES (16u << 20)
#define MAX_POSITIONS (1ll << 26)

graft_qwen3_config graft_qwen3_config_default(void) {
    graft_qwen3_config c;
    memset(&c, 0, sizeof c);
    c.max_position_embeddings = 40960;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 1000000.0;
    c.initializer_range = 0.02;
    c.tie_word_embeddings = 0;
    c.bos_token_id = -1;
    c.n_eos = 0;
    return c;
}

static const char *kind(const json_t *v) {
    if (!v) return "missing";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "?";
}

static graft_status bad(graft_err *err, const char *path, const char *field, const char *found,
                        const char *expected) {
    return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %s: %s, expected %s", path, field,
                         found, expected);
}

/* An integer field in [lo, hi]; absent -> *out untouched unless required. */
static graft_status get_int(json_t *root, const char *path, const char *field, int required,
                            int64_t lo, int64_t hi, int64_t *out, graft_err *err) {
    json_t *v = json_object_get(root, field);
    char exp[96], found[64];
    snprintf(exp, sizeof exp, "an integer in %lld..%lld", (long long)lo, (long long)hi);
    if (!v) return required ? bad(err, path, field, "missing", exp) : GRAFT_STATUS_OK;
    if (!json_is_integer(v)) return bad(err, path, field, kind(v), exp);
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        snprintf(found, sizeof found, "%lld", (long long)x);
        return bad(err, path, field, found, exp);
    }
    *out = x;
    return GRAFT_STATUS_OK;
}

static graft_status get_num(json_t *v, const char *path, const char *field, int required,
                            double *out, graft_err *err) {
    if (!v) return required ? bad(err, path, field, "missing", "a number") : GRAFT_STATUS_OK;
    if (!json_is_number(v)) return bad(err, path, field, kind(v), "a number");
    *out = json_number_value(v);
    return GRAFT_STATUS_OK;
}

static graft_status get_bool(json_t *root, const char *path, const char *field, int *out,
                             graft_err *err) {
    json_t *v = json_object_get(root, field);
    if (!v || json_is_null(v)) return GRAFT_STATUS_OK;
    if (!json_is_boolean(v)) return bad(err, path, field, kind(v), "true or false");
    *out = json_is_true(v);
    return GRAFT_STATUS_OK;
}

/* A string field that must equal `want` when present. */
static graft_status want_str(json_t *root, const char *path, const char *field, const char *want,
                             graft_err *err) {
    json_t *v = json_object_get(root, field);
    if (!v) return GRAFT_STATUS_OK;
    char exp[96], found[160];
    snprintf(exp, sizeof exp, "\"%s\"", want);
    if (!json_is_string(v)) return bad(err, path, field, kind(v), exp);
    if (strcmp(json_string_value(v), want)) {
        snprintf(found, sizeof found, "\"%.120s\"", json_string_value(v));
        return bad(err, path, field, found, exp);
    }
    return GRAFT_STATUS_OK;
}

/* rope_scaling / rope_parameters.rope_type: only the default RoPE is implemented. */
static graft_status check_rope_type(json_t *v, const char *path, const char *field, graft_err *err) {
    if (!v || json_is_null(v)) return GRAFT_STATUS_OK;
    char found[160];
    if (!json_is_string(v)) return bad(err, path, field, kind(v), "\"default\"");
    if (strcmp(json_string_value(v), "default")) {
        snprintf(found, sizeof found, "\"%.120s\"", json_string_value(v));
        return bad(err, path, field, found, "\"default\" (no RoPE scaling is implemented)");
    }
    return GRAFT_STATUS_OK;
}

#define TRY(x) do { graft_status s_ = (x); if (s_) return s_; } while (0)

static graft_status parse(json_t *root, const char *path, graft_qwen3_config *c, graft_err *err) {
    if (!json_is_object(root)) return bad(err, path, "top level", kind(root), "an object");
    TRY(get_int(root, path, "hidden_size", 1, 1, GRAFT_CFG_MAX_WIDTH, &c->hidden_size, err));
    TRY(get_int(root, path, "intermediate_size", 1, 1, 4ll * GRAFT_CFG_MAX_WIDTH,
                &c->intermediate_size, err));
    TRY(get_int(root, path, "num_hidden_layers", 1, 1, GRAFT_CFG_MAX_LAYERS, &c->n_layer, err));
    TRY(get_int(root, path, "num_attention_heads", 1, 1, GRAFT_CFG_MAX_HEADS, &c->n_head, err));
    TRY(get_int(root, path, "num_key_value_heads", 1, 1, GRAFT_CFG_MAX_HEADS, &c->n_kv_head, err));
    TRY(get_int(root, path, "vocab_size", 1, 1, GRAFT_CFG_MAX_VOCAB, &c->vocab_size, err));
    TRY(get_num(json_object_get(root, "rms_norm_eps"), path, "rms_norm_eps", 1, &c->rms_norm_eps,
                err));
    c->head_dim = 0;
    TRY(get_int(root, path, "head_dim", 0, 1, GRAFT_CFG_MAX_WIDTH, &c->head_dim, err));
    if (!c->head_dim) {
        c->head_dim_defaulted = 1;
        if (c->hidden_size % c->n_head) {
            char found[96];
            snprintf(found, sizeof found, "missing and hidden_size %lld is not a multiple of "
                     "num_attention_heads %lld", (long long)c->hidden_size, (long long)c->n_head);
            return bad(err, path, "head_dim", found, "an explicit head_dim");
        }
        c->head_dim = c->hidden_size / c->n_head;
    }
    TRY(get_int(root, path, "max_position_embeddings", 0, 1, MAX_POSITIONS,
                &c->max_position_embeddings, err));
    TRY(get_num(json_object_get(root, "initializer_range"), path, "initializer_range", 0,
                &c->initializer_range, err));

    /* RoPE: rope_theta (4.x) or rope_parameters (5.x) */
    json_t *rt = json_object_get(root, "rope_theta"), *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp)) return bad(err, path, "rope_parameters", kind(rp), "an object");
        TRY(check_rope_type(json_object_get(rp, "rope_type"), path, "rope_parameters.rope_type", err));
        json_t *rpt = json_object_get(rp, "rope_theta");
        if (rpt || !rt)
            TRY(get_num(rpt, path, "rope_parameters.rope_theta", 1, &c->rope_theta, err));
    }
    if (rt) TRY(get_num(rt, path, "rope_theta", 1, &c->rope_theta, err));
    if (!rt && !(rp && !json_is_null(rp)))
        return bad(err, path, "rope_theta", "missing", "a number (or rope_parameters.rope_theta)");
    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs)) return bad(err, path, "rope_scaling", kind(rs), "null");
        json_t *ty = json_object_get(rs, "rope_type");
        if (!ty) ty = json_object_get(rs, "type");
        if (!ty) return bad(err, path, "rope_scaling", "an object without rope_type", "null");
        TRY(check_rope_type(ty, path, "rope_scaling.rope_type", err));
    }

    int flag = 0;
    TRY(get_bool(root, path, "use_sliding_window", &flag, err));
    if (flag) return bad(err, path, "use_sliding_window", "true", "false (only full attention)");
    flag = 0;
    TRY(get_bool(root, path, "attention_bias", &flag, err));
    if (flag) return bad(err, path, "attention_bias", "true", "false (Qwen3 has no biases)");
    TRY(get_bool(root, path, "tie_word_embeddings", &c->tie_word_embeddings, err));
    TRY(want_str(root, path, "hidden_act", "silu", err));
    TRY(want_str(root, path, "model_type", "qwen3", err));
    json_t *ar = json_object_get(root, "architectures");
    if (ar && !json_is_null(ar)) {
        if (!json_is_array(ar) || json_array_size(ar) != 1 ||
            !json_is_string(json_array_get(ar, 0)) ||
            strcmp(json_string_value(json_array_get(ar, 0)), "Qwen3ForCausalLM")) {
            char found[160] = "a different value";
            if (json_is_array(ar) && json_array_size(ar) >= 1 && json_is_string(json_array_get(ar, 0)))
                snprintf(found, sizeof found, "[\"%.100s\"%s]",
                         json_string_value(json_array_get(ar, 0)), json_array_size(ar) > 1 ? ", ..." : "");
            else if (!json_is_array(ar))
                snprintf(found, sizeof found, "%s", kind(ar));
            return bad(err, path, "architectures", found, "[\"Qwen3ForCausalLM\"]");
        }
    }
    json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        char found[160], exp[64];
        if (!json_is_array(lt)) return bad(err, path, "layer_types", kind(lt), "an array");
        if ((int64_t)json_array_size(lt) != c->n_layer) {
            snprintf(found, sizeof found, "%zu entries", json_array_size(lt));
            snprintf(exp, sizeof exp, "%lld (num_hidden_layers)", (long long)c->n_layer);
            return bad(err, path, "layer_types", found, exp);
        }
        for (size_t i = 0; i < json_array_size(lt); i++) {
            json_t *e = json_array_get(lt, i);
            if (!json_is_string(e) || strcmp(json_string_value(e), "full_attention")) {
                char field[48];
                snprintf(field, sizeof field, "layer_types[%zu]", i);
                snprintf(found, sizeof found, json_is_string(e) ? "\"%.100s\"" : "%s",
                         json_is_string(e) ? json_string_value(e) : kind(e));
                return bad(err, path, field, found, "\"full_attention\"");
            }
        }
    }
    json_t *pad = json_object_get(root, "pad_token_id");
    if (pad && !json_is_null(pad) && !json_is_integer(pad))
        return bad(err, path, "pad_token_id", kind(pad), "an integer or null");
    json_t *bos = json_object_get(root, "bos_token_id");
    if (bos && !json_is_null(bos)) TRY(get_int(root, path, "bos_token_id", 0, 0, INT32_MAX,
                                               &c->bos_token_id, err));
    json_t *eos = json_object_get(root, "eos_token_id");
    if (eos && !json_is_null(eos)) {
        if (json_is_integer(eos)) {
            TRY(get_int(root, path, "eos_token_id", 0, 0, INT32_MAX, &c->eos_token_ids[0], err));
            c->n_eos = 1;
        } else if (json_is_array(eos) && json_array_size(eos) >= 1 &&
                   json_array_size(eos) <= GRAFT_MAX_EOS) {
            for (size_t i = 0; i < json_array_size(eos); i++) {
                json_t *e = json_array_get(eos, i);
                if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                    json_integer_value(e) > INT32_MAX)
                    return bad(err, path, "eos_token_id", "a list with a non-id entry",
                               "an id or a list of ids");
                c->eos_token_ids[c->n_eos++] = json_integer_value(e);
            }
        } else {
            return bad(err, path, "eos_token_id", kind(eos), "an id or a list of 1..8 ids");
        }
    }
    json_t *dt = json_object_get(root, "torch_dtype");
    if (!dt || json_is_null(dt)) dt = json_object_get(root, "dtype");
    if (dt && !json_is_null(dt)) {
        if (!json_is_string(dt) || json_string_length(dt) >= sizeof c->dtype)
            return bad(err, path, "dtype", kind(dt), "a torch dtype name such as \"bfloat16\"");
        snprintf(c->dtype, sizeof c->dtype, "%s", json_string_value(dt));
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_config_validate(const graft_qwen3_config *c, const char *origin, graft_err *err) {
    char found[128], exp[128];
#define RANGE(field, v, lo, hi)                                                                 \
    do {                                                                                        \
        if ((v) < (lo) || (v) > (hi)) {                                                         \
            snprintf(found, sizeof found, "%lld", (long long)(v));                              \
            snprintf(exp, sizeof exp, "an integer in %lld..%lld", (long long)(lo), (long long)(hi)); \
            return bad(err, origin, field, found, exp);                                         \
        }                                                                                       \
    } while (0)
    RANGE("hidden_size", c->hidden_size, 1, GRAFT_CFG_MAX_WIDTH);
    RANGE("intermediate_size", c->intermediate_size, 1, 4ll * GRAFT_CFG_MAX_WIDTH);
    RANGE("num_hidden_layers", c->n_layer, 1, GRAFT_CFG_MAX_LAYERS);
    RANGE("num_attention_heads", c->n_head, 1, GRAFT_CFG_MAX_HEADS);
    RANGE("num_key_value_heads", c->n_kv_head, 1, GRAFT_CFG_MAX_HEADS);
    RANGE("head_dim", c->head_dim, 1, GRAFT_CFG_MAX_WIDTH);
    RANGE("vocab_size", c->vocab_size, 1, GRAFT_CFG_MAX_VOCAB);
    RANGE("max_position_embeddings", c->max_position_embeddings, 1, MAX_POSITIONS);
#undef RANGE
    if (c->n_head % c->n_kv_head) {
        snprintf(found, sizeof found, "%lld", (long long)c->n_kv_head);
        snprintf(exp, sizeof exp, "a divisor of num_attention_heads (%lld)", (long long)c->n_head);
        return bad(err, origin, "num_key_value_heads", found, exp);
    }
    if (c->head_dim % 2) {
        snprintf(found, sizeof found, "%lld", (long long)c->head_dim);
        return bad(err, origin, "head_dim", found, "an even number (RoPE rotates pairs)");
    }
    if (c->n_head * c->head_dim > 4ll * GRAFT_CFG_MAX_WIDTH) {
        snprintf(found, sizeof found, "%lld x %lld", (long long)c->n_head, (long long)c->head_dim);
        return bad(err, origin, "num_attention_heads x head_dim", found, "at most 4 x 131072");
    }
    if (!(c->rms_norm_eps > 0 && c->rms_norm_eps < 1)) {
        snprintf(found, sizeof found, "%g", c->rms_norm_eps);
        return bad(err, origin, "rms_norm_eps", found, "a number in (0, 1)");
    }
    if (!(c->rope_theta > 0 && isfinite(c->rope_theta))) {
        snprintf(found, sizeof found, "%g", c->rope_theta);
        return bad(err, origin, "rope_theta", found, "a positive number");
    }
    if (!(c->initializer_range >= 0 && c->initializer_range < 10)) {
        snprintf(found, sizeof found, "%g", c->initializer_range);
        return bad(err, origin, "initializer_range", found, "a number in [0, 10)");
    }
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] < 0) return bad(err, origin, "eos_token_id", "negative", "an id");
    return GRAFT_STATUS_OK;
}

graft_status graft_config_load(const char *path, graft_qwen3_config *out, graft_err *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fclose(fp);
    if (sz < 0 || sz > (long)MAX_CONFIG_BYTES)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %ld bytes, expected at most %u",
                             path, sz, MAX_CONFIG_BYTES);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s:%d:%d: %s, expected a JSON object "
                             "with unique keys", path, je.line, je.column, je.text);
    graft_qwen3_config c = graft_qwen3_config_default();
    graft_status st = parse(root, path, &c, err);
    json_decref(root);
    if (!st) st = graft_config_validate(&c, path, err);
    if (!st) *out = c;
    return st;
}

/* Python's repr() of a float: shortest round-trip digits, exponent form outside 1e-4 .. 1e16. */
static void py_float(char *dst, size_t cap, double v) {
    char buf[64];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* buf = [-]d[.ddd]e[+-]XX */
    char digits[32];
    size_t nd = 0;
    const char *s = buf;
    int neg = 0;
    if (*s == '-') neg = 1, s++;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    digits[nd] = 0;
    int exp = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (exp >= -5 && exp < 16) {
        if (exp < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp - 1; i++) out[o++] = '0';
            for (size_t i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp; i++) out[o++] = (size_t)i < nd ? digits[i] : '0';
            out[o++] = '.';
            if ((size_t)exp + 1 < nd)
                for (size_t i = (size_t)exp + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = 0;
        if (exp < -4) { /* Python switches to exponent form below 1e-4 */
            o = neg;
            out[o++] = digits[0];
            if (nd > 1) {
                out[o++] = '.';
                for (size_t i = 1; i < nd; i++) out[o++] = digits[i];
            }
            o += (size_t)snprintf(out + o, sizeof out - o, "e-%02d", -exp);
        }
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++) out[o++] = digits[i];
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    }
    out[o] = 0;
    snprintf(dst, cap, "%s", out);
}

graft_status graft_config_write(const char *path, const graft_qwen3_config *c, graft_err *err) {
    TRY(graft_config_validate(c, path, err));
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *fp = fopen(tmp, "w");
    if (!fp) {
        graft_status st = graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot create: %s", tmp,
                                        strerror(errno));
        free(tmp);
        return st;
    }
    char eps[64], init[64], theta[64];
    py_float(eps, sizeof eps, c->rms_norm_eps);
    py_float(init, sizeof init, c->initializer_range);
    if (c->rope_theta == floor(c->rope_theta) && c->rope_theta < 9e15)
        snprintf(theta, sizeof theta, "%lld", (long long)c->rope_theta);
    else
        py_float(theta, sizeof theta, c->rope_theta);
    fprintf(fp, "{\n  \"architectures\": [\n    \"Qwen3ForCausalLM\"\n  ],\n"
                "  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n");
    if (c->bos_token_id >= 0) fprintf(fp, "  \"bos_token_id\": %lld,\n", (long long)c->bos_token_id);
    else fprintf(fp, "  \"bos_token_id\": null,\n");
    if (c->n_eos == 1) {
        fprintf(fp, "  \"eos_token_id\": %lld,\n", (long long)c->eos_token_ids[0]);
    } else if (c->n_eos > 1) {
        fprintf(fp, "  \"eos_token_id\": [\n");
        for (int i = 0; i < c->n_eos; i++)
            fprintf(fp, "    %lld%s\n", (long long)c->eos_token_ids[i], i + 1 < c->n_eos ? "," : "");
        fprintf(fp, "  ],\n");
    } else {
        fprintf(fp, "  \"eos_token_id\": null,\n");
    }
    fprintf(fp, "  \"head_dim\": %lld,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %lld,\n"
                "  \"initializer_range\": %s,\n  \"intermediate_size\": %lld,\n"
                "  \"max_position_embeddings\": %lld,\n  \"max_window_layers\": %lld,\n"
                "  \"model_type\": \"qwen3\",\n  \"num_attention_heads\": %lld,\n"
                "  \"num_hidden_layers\": %lld,\n  \"num_key_value_heads\": %lld,\n"
                "  \"rms_norm_eps\": %s,\n  \"rope_scaling\": null,\n  \"rope_theta\": %s,\n"
                "  \"sliding_window\": null,\n  \"tie_word_embeddings\": %s,\n",
            (long long)c->head_dim, (long long)c->hidden_size, init,
            (long long)c->intermediate_size, (long long)c->max_position_embeddings,
            (long long)c->n_layer, (long long)c->n_head, (long long)c->n_layer,
            (long long)c->n_kv_head, eps, theta, c->tie_word_embeddings ? "true" : "false");
    if (c->dtype[0]) fprintf(fp, "  \"torch_dtype\": \"%s\",\n", c->dtype);
    fprintf(fp, "  \"transformers_version\": \"4.51.0\",\n  \"use_cache\": true,\n"
                "  \"use_sliding_window\": false,\n  \"vocab_size\": %lld\n}",
            (long long)c->vocab_size);
    int badw = ferror(fp) || fflush(fp) || fsync(fileno(fp));
    badw |= fclose(fp) != 0;
    graft_status st = GRAFT_STATUS_OK;
    if (badw || rename(tmp, path)) {
        st = graft_err_set(err, GRAFT_STATUS_IO, "%s: write failed: %s", tmp, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return st;
}
