/* fsutil.h: crash-safe file-system helpers shared by every writer of outputs (run log, training
 * checkpoints, shards): mkdir -p, atomic whole-file writes (<path>.tmp, fsync, rename, fsync of the
 * directory), fsync of a path, recursive removal, and the atomic replacement of a directory.
 *
 * "Atomic" here means: after a crash at any instant, the path holds either the complete old
 * content or the complete new content, never a mix (POSIX rename(2) semantics plus fsyncs).
 *
 * Not here: the formats written (safetensors.c, train_state.c, runlog.c).
 *
 * Failure injection (tests only): graft_fs_test_fail_at(n) makes the n-th following "step"
 * (each write, fsync or rename inside these helpers counts one) fail with GRAFT_STATUS_IO and
 * the message "injected failure", WITHOUT cleaning up, which is what a crash at that instant
 * leaves behind. n = 0 disables it. Global state: do not use it in threaded code.
 */
#ifndef GRAFT_FSUTIL_H
#define GRAFT_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "graft/status.h"

/* Creates `path` and its missing parents (mode 0777 & ~umask). An existing directory is fine; an
 * existing non-directory is an error naming it. */
graft_status graft_fs_mkdir_p(const char *path, graft_err *err);

/* Writes `n` bytes to "<path>.tmp", fsyncs it, renames it over `path` and fsyncs the directory.
 * On failure the .tmp file is removed and `path` is untouched. */
graft_status graft_fs_write_atomic(const char *path, const void *data, size_t n, graft_err *err);

/* Writes `n` bytes to `path` (created or truncated) and fsyncs it; no rename. For files inside a
 * directory that is itself published atomically. */
graft_status graft_fs_write_file(const char *path, const void *data, size_t n, graft_err *err);

/* fsync(2) of a file or directory by path. */
graft_status graft_fs_fsync_path(const char *path, graft_err *err);

/* fsync of the directory that contains `path` (its parent; "." for a bare name). */
graft_status graft_fs_fsync_parent(const char *path, graft_err *err);

/* Removes `path` recursively (file or directory tree, symlinks not followed). A missing path is
 * success. */
graft_status graft_fs_remove_tree(const char *path, graft_err *err);

/* Publishes the complete directory `tmp_dir` as `dir`: atomically exchanges them when `dir`
 * exists (renameat2 RENAME_EXCHANGE, then removes the old tree now at tmp_dir), else renames;
 * fsyncs the parent. Where the exchange is unsupported it falls back to dir -> "<dir>.old",
 * tmp_dir -> dir, remove "<dir>.old"; a crash between those renames leaves "<dir>.old" complete,
 * which readers fall back to (graft_fs_dir_resolve). */
graft_status graft_fs_publish_dir(const char *tmp_dir, const char *dir, graft_err *err);

/* Where a published directory lives after a possible crash: writes `dir` into out when it exists,
 * else "<dir>.old" when that exists (the fallback path of graft_fs_publish_dir), else returns
 * GRAFT_STATUS_IO naming `dir`. */
graft_status graft_fs_dir_resolve(const char *dir, char *out, size_t out_bytes, graft_err *err);

/* Reads a whole regular file (at most 2 GiB) into *data (malloc'd, NUL-terminated; *len excludes
 * the NUL). Errors name the path. */
graft_status graft_fs_read_file(const char *path, char **data, size_t *len, graft_err *err);

/* 1 when path exists (any type), else 0. */
int graft_fs_exists(const char *path);

/* Test hook (see the file comment). */
void graft_fs_test_fail_at(int64_t n);
/* Internal: counts one step; returns GRAFT_STATUS_IO with "<what>: injected failure" when the
 * hook fires, else GRAFT_STATUS_OK. Used by writers built on these helpers. */
graft_status graft_fs_test_step(const char *what, graft_err *err);

#endif
