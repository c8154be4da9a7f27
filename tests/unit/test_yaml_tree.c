/* test_yaml_tree.c: the safe YAML loader (yaml_tree.c): positions, caps and refusals, accessors. */
#include <stdlib.h>

#include "test_util.h"
#include "yaml_tree.h"

static graft_err err;

static graft_status parse(const char *text, graft_ydoc **doc) {
    err.msg[0] = 0;
    return graft_ydoc_parse("t.yaml", text, strlen(text), doc, &err);
}

static void expect_refusal(const char *text, const char *needle) {
    graft_ydoc *doc = NULL;
    graft_status st = parse(text, &doc);
    CHECK(st == GRAFT_STATUS_BAD_INPUT);
    CHECK(doc == NULL);
    CHECK_CONTAINS(err.msg, needle);
}

static void test_tree(void) {
    graft_ydoc *doc = NULL;
    const char *text = "a: 1\nb:\n  - x\n  - 'y'\nc: {d: 2.5, e: true}\n";
    CHECK(parse(text, &doc) == GRAFT_STATUS_OK);
    CHECK(doc && doc->root && doc->root->kind == GRAFT_YNODE_MAP && doc->root->n == 3);
    const graft_ynode *b = graft_ynode_get(doc->root, "b");
    CHECK(b && b->kind == GRAFT_YNODE_SEQ && b->n == 2);
    CHECK(b && b->items[0]->line == 3 && b->items[0]->col == 5 && !b->items[0]->quoted);
    CHECK(b && b->items[1]->quoted && !strcmp(b->items[1]->text, "y"));
    int64_t i = 0;
    double d = 0;
    int flag = 0;
    CHECK(graft_ynode_int64(doc, graft_ynode_get(doc->root, "a"), "a", &i, &err) == 0 && i == 1);
    const graft_ynode *c = graft_ynode_get(doc->root, "c");
    CHECK(graft_ynode_double(doc, graft_ynode_get(c, "d"), "c.d", &d, &err) == 0 && d == 2.5);
    CHECK(graft_ynode_bool(doc, graft_ynode_get(c, "e"), "c.e", &flag, &err) == 0 && flag == 1);
    CHECK(graft_ynode_int64(doc, graft_ynode_get(c, "d"), "c.d", &i, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "t.yaml:5:8: c.d: 2.5, expected an integer");
    CHECK(graft_ynode_bool(doc, graft_ynode_get(doc->root, "a"), "a", &flag, &err) != 0);
    CHECK_CONTAINS(err.msg, "t.yaml:1:4: a: 1, expected true or false");
    CHECK(graft_ynode_string(doc, b, "b", &(const char *){0}, &err) != 0);
    CHECK_CONTAINS(err.msg, "t.yaml:3:3: b: a list, expected a string");
    graft_ydoc_free(doc);
}

static void test_scalars(void) {
    int64_t i;
    double d;
    CHECK(graft_parse_int64("-9223372036854775808", &i) == 0 && i == INT64_MIN);
    CHECK(graft_parse_int64("9223372036854775807", &i) == 0 && i == INT64_MAX);
    CHECK(graft_parse_int64("9223372036854775808", &i) != 0);
    CHECK(graft_parse_int64("1e3", &i) != 0);
    CHECK(graft_parse_int64("0x10", &i) != 0);
    CHECK(graft_parse_int64("", &i) != 0);
    CHECK(graft_parse_double("5e-5", &d) == 0 && d == 5e-5);
    CHECK(graft_parse_double(".5", &d) == 0 && d == 0.5);
    CHECK(graft_parse_double("1e999", &d) != 0);
    CHECK(graft_parse_double("nan", &d) != 0);
    CHECK(graft_parse_double("inf", &d) != 0);
    CHECK(graft_parse_double("0x1p3", &d) != 0);
    CHECK(graft_parse_double("1.", &d) == 0 && d == 1.0);
    CHECK(graft_parse_double("e5", &d) != 0);
}

static void test_refusals(void) {
    expect_refusal("a: [1, 2\n", "t.yaml:2:1: invalid YAML:");
    expect_refusal("a: 1\na: 2\n", "t.yaml:2:1: a: duplicate key (first at 1:1)");
    expect_refusal("? [a, b]\n: 1\n", "a map or list used as a mapping key");
    expect_refusal("a: 1\n---\nb: 2\n", "t.yaml:2:1: a second document");
    expect_refusal("a: !!str 1\n", "tags are not allowed");
    expect_refusal("a: &x 1\nb: *x\n", "t.yaml:1:4: anchor &x: anchors are not allowed in recipes");
    expect_refusal("a: \"x\\0y\"\n", "NUL byte");
    /* billion laughs: refused at the first anchor, without expanding anything */
    const char *bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                       "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";
    expect_refusal(bomb, "t.yaml:1:4: anchor &a: anchors are not allowed in recipes");
    expect_refusal("- *unknown\n", "alias *unknown: aliases are not allowed in recipes");

    char deep[200];
    size_t k = 0;
    for (int i = 0; i < 40; i++) deep[k++] = '[';
    for (int i = 0; i < 40; i++) deep[k++] = ']';
    deep[k] = 0;
    expect_refusal(deep, "t.yaml:1:33: nesting deeper than 32 levels");
    k = 0;
    for (int i = 0; i < 32; i++) deep[k++] = '[';
    for (int i = 0; i < 32; i++) deep[k++] = ']';
    deep[k] = 0;
    graft_ydoc *doc = NULL;
    CHECK(parse(deep, &doc) == GRAFT_STATUS_OK);
    graft_ydoc_free(doc);

    size_t big = GRAFT_YAML_MAX_BYTES + 10;
    char *huge = malloc(big);
    memset(huge, '#', big);
    err.msg[0] = 0;
    CHECK(graft_ydoc_parse("h.yaml", huge, big, &doc, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "h.yaml: file of");
    free(huge);

    CHECK(parse("", &doc) == GRAFT_STATUS_OK && doc && doc->root == NULL);
    graft_ydoc_free(doc);
    CHECK(parse("# only a comment\n", &doc) == GRAFT_STATUS_OK && doc && doc->root == NULL);
    graft_ydoc_free(doc);
}

static void test_files(void) {
    graft_ydoc *doc = NULL;
    CHECK(graft_ydoc_load("/nonexistent/x.yaml", &doc, &err) == GRAFT_STATUS_IO);
    CHECK_CONTAINS(err.msg, "/nonexistent/x.yaml: cannot open");
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/recipes/bad-billion-laughs.yaml", GRAFT_SOURCE_DIR);
    CHECK(graft_ydoc_load(path, &doc, &err) == GRAFT_STATUS_BAD_INPUT);
    CHECK_CONTAINS(err.msg, "anchors are not allowed in recipes");
}

int main(void) {
    test_tree();
    test_scalars();
    test_refusals();
    test_files();
    return test_finish("test_yaml_tree");
}
