/* yaml_tree.h: safe loading of small YAML files (recipes, hybrid specs) into a tree of nodes that
 * remember their 1-based line and column, plus typed scalar accessors whose errors name
 * file:line:col, the dotted key path and what was expected (STYLE.md error form).
 *
 * Not here: any schema (recipe.c, hybrid_spec.c own theirs) and YAML writing.
 *
 * Input is untrusted. Refused, each with file:line:col: files over GRAFT_YAML_MAX_BYTES, libyaml
 * syntax errors (with libyaml's problem text), anchors and aliases (so alias bombs cost nothing),
 * tags, more than one document, nesting deeper than GRAFT_YAML_MAX_DEPTH, non-scalar mapping
 * keys, duplicate keys in one mapping (both positions), NUL bytes inside scalars, and more than
 * GRAFT_YAML_MAX_NODES nodes. An empty file (or one holding only comments) loads with root NULL.
 *
 * Thread safety: a loaded document is immutable; any number of threads may read it.
 */
#ifndef GRAFT_YAML_TREE_H
#define GRAFT_YAML_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"

#define GRAFT_YAML_MAX_BYTES (1024 * 1024) /* larger files are refused before parsing         */
#define GRAFT_YAML_MAX_DEPTH 32            /* nested maps/lists deeper than this are refused    */
#define GRAFT_YAML_MAX_NODES 200000        /* total nodes (a 1 MiB file cannot need more)       */

typedef enum graft_ynode_kind {
    GRAFT_YNODE_SCALAR = 0,
    GRAFT_YNODE_SEQ = 1,
    GRAFT_YNODE_MAP = 2
} graft_ynode_kind;

typedef struct graft_ynode graft_ynode;
struct graft_ynode {
    graft_ynode_kind kind;
    int64_t line, col;        /* 1-based position of the node's first character              */
    /* SCALAR */
    char *text;               /* NUL-terminated (never contains NUL itself)                  */
    size_t len;               /* strlen(text)                                                */
    int quoted;               /* 1 for '...', "...", | and > styles; 0 for plain scalars     */
    /* SEQ: items[0..n); MAP: keys[0..n) (scalars, in file order) with values items[0..n) */
    int64_t n;
    graft_ynode **items;
    graft_ynode **keys;
};

/* A loaded file. `path` is a copy of the path given (used in every message). */
typedef struct graft_ydoc {
    char *path;
    graft_ynode *root;        /* NULL for an empty document                                  */
} graft_ydoc;

/* Reads and parses the file at `path`. On success *out is a new document (free it with
 * graft_ydoc_free); on failure *out is NULL, err holds the message and the status is
 * GRAFT_STATUS_IO (cannot read), GRAFT_STATUS_BAD_INPUT or GRAFT_STATUS_NO_MEMORY. */
graft_status graft_ydoc_load(const char *path, graft_ydoc **out, graft_err *err);

/* Parses `len` bytes of `text` (need not be NUL-terminated); `path` names it in messages. */
graft_status graft_ydoc_parse(const char *path, const char *text, size_t len, graft_ydoc **out,
                              graft_err *err);

/* Frees a document and all its nodes. NULL is a no-op. */
void graft_ydoc_free(graft_ydoc *doc);

/* The value of `key` in a MAP node, or NULL (also when map is NULL or not a map). */
const graft_ynode *graft_ynode_get(const graft_ynode *map, const char *key);

/* The key node of `key` in a MAP node (for positions), or NULL. */
const graft_ynode *graft_ynode_key(const graft_ynode *map, const char *key);

/* A plain scalar meaning null: empty, "~", "null", "Null", "NULL". */
int graft_ynode_is_null(const graft_ynode *n);

/* Describes a node for messages: the scalar's text (quoted if it was quoted, truncated to 60
 * bytes), or "a map" / "a list" / "nothing". Writes into buf (at least 80 bytes) and returns it. */
const char *graft_ynode_describe(const graft_ynode *n, char *buf, size_t size);

/* "file:line:col" of node n (or of the file alone when n is NULL) into buf; returns buf. */
const char *graft_ynode_where(const graft_ydoc *doc, const graft_ynode *n, char *buf, size_t size);

/* Typed accessors. `keypath` names the value in messages ("stages[2].lr"). Each fails with
 * GRAFT_STATUS_BAD_INPUT and "file:line:col: keypath: <found>, expected <what>" when the node
 * is missing, not a scalar or not of the type:
 *  - int64: plain decimal with optional sign; floats, hex and overflow are refused.
 *  - double: a plain finite number (decimal, optional exponent); inf and nan are refused.
 *  - bool: plain true or false only.
 *  - string: any non-null scalar (a plain "null", "~" or empty value is refused); *out points
 *    into the document (valid until graft_ydoc_free). */
graft_status graft_ynode_int64(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                               int64_t *out, graft_err *err);
graft_status graft_ynode_double(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                                double *out, graft_err *err);
graft_status graft_ynode_bool(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                              int *out, graft_err *err);
graft_status graft_ynode_string(const graft_ydoc *doc, const graft_ynode *n, const char *keypath,
                                const char **out, graft_err *err);

/* Parses text as a YAML-plain decimal integer / finite number; 0 on success, -1 otherwise. */
int graft_parse_int64(const char *text, int64_t *out);
int graft_parse_double(const char *text, double *out);

#endif
