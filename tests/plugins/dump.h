/* dump.h: a tiny safetensors writer (F32 only, string metadata) for the conformance harness, so
 * tests/reference/check_mixer.py can read what the C code computed. Independent of the core's
 * safetensors module on purpose: the test must not trust the code it tests. */
#ifndef GRAFT_TEST_DUMP_H
#define GRAFT_TEST_DUMP_H

#include <stdint.h>

typedef struct dump dump;

dump *dump_new(void);
/* Metadata entry (key and value copied). */
int dump_meta(dump *d, const char *key, const char *value);
/* An F32 tensor (data copied). */
int dump_f32(dump *d, const char *name, const float *data, int32_t ndim, const int64_t *shape);
/* Writes path.tmp and renames it to path; returns 0 on success. Frees d either way. */
int dump_write(dump *d, const char *path);

#endif
