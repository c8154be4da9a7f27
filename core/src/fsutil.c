/* fsutil.c: crash-safe file-system helpers (see fsutil.h). POSIX plus Linux renameat2 for the
 * atomic directory exchange. Not here: any file format. */
#define _GNU_SOURCE
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static int64_t fail_at_ = 0;
static int crashed_ = 0; /* the hook fired: leave everything as a crash would */

void graft_fs_test_fail_at(int64_t n) {
    fail_at_ = n;
    crashed_ = 0;
}

graft_status graft_fs_test_step(const char *what, graft_err *err) {
    if (fail_at_ > 0 && --fail_at_ == 0) {
        crashed_ = 1;
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: injected failure", what);
    }
    return GRAFT_STATUS_OK;
}

int graft_fs_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

graft_status graft_fs_mkdir_p(const char *path, graft_err *err) {
    size_t n = strlen(path);
    if (n == 0) return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "mkdir: empty path");
    char *buf = malloc(n + 1);
    if (!buf) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            graft_status s = graft_err_set(err, GRAFT_STATUS_IO, "%s: mkdir: %s", buf, strerror(errno));
            free(buf);
            return s;
        }
        buf[i] = c;
    }
    free(buf);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: exists and is not a directory", path);
    return GRAFT_STATUS_OK;
}

graft_status graft_fs_fsync_path(const char *path, graft_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return graft_err_set(err, GRAFT_STATUS_IO, "%s: open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* Some file systems refuse fsync on directories (EINVAL); that is not a data-loss error. */
    if (rc != 0 && e != EINVAL)
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: fsync: %s", path, strerror(e));
    return GRAFT_STATUS_OK;
}

graft_status graft_fs_fsync_parent(const char *path, graft_err *err) {
    size_t n = strlen(path);
    char *buf = malloc(n + 2);
    if (!buf) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    memcpy(buf, path, n + 1);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0; /* "a/b/" names b */
    char *slash = strrchr(buf, '/');
    if (!slash) strcpy(buf, ".");
    else if (slash == buf) buf[1] = 0;
    else *slash = 0;
    graft_status s = graft_fs_fsync_path(buf, err);
    free(buf);
    return s;
}

static graft_status write_fd_all(int fd, const char *path, const void *data, size_t n, graft_err *err) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return graft_err_set(err, GRAFT_STATUS_IO, "%s: write: %s", path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return GRAFT_STATUS_OK;
}

graft_status graft_fs_write_file(const char *path, const void *data, size_t n, graft_err *err) {
    graft_status s = graft_fs_test_step(path, err);
    if (s) return s;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return graft_err_set(err, GRAFT_STATUS_IO, "%s: create: %s", path, strerror(errno));
    s = write_fd_all(fd, path, data, n, err);
    if (!s && (s = graft_fs_test_step(path, err)) == GRAFT_STATUS_OK && fsync(fd) != 0)
        s = graft_err_set(err, GRAFT_STATUS_IO, "%s: fsync: %s", path, strerror(errno));
    if (close(fd) != 0 && !s)
        s = graft_err_set(err, GRAFT_STATUS_IO, "%s: close: %s", path, strerror(errno));
    return s;
}

graft_status graft_fs_write_atomic(const char *path, const void *data, size_t n, graft_err *err) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 5);
    if (!tmp) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    snprintf(tmp, len + 5, "%s.tmp", path);
    graft_status s = graft_fs_write_file(tmp, data, n, err);
    if (!s) s = graft_fs_test_step(path, err);
    if (!s && rename(tmp, path) != 0)
        s = graft_err_set(err, GRAFT_STATUS_IO, "%s: rename from %s: %s", path, tmp, strerror(errno));
    if (!s) s = graft_fs_fsync_parent(path, err);
    if (s && !crashed_) unlink(tmp);
    free(tmp);
    return s;
}

static graft_status remove_rec(const char *path, graft_err *err) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return GRAFT_STATUS_OK;
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: stat: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return graft_err_set(err, GRAFT_STATUS_IO, "%s: opendir: %s", path, strerror(errno));
        struct dirent *e;
        graft_status s = GRAFT_STATUS_OK;
        while (!s && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *child = malloc(n);
            if (!child) {
                s = graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
                break;
            }
            snprintf(child, n, "%s/%s", path, e->d_name);
            s = remove_rec(child, err);
            free(child);
        }
        closedir(d);
        if (s) return s;
        if (rmdir(path) != 0)
            return graft_err_set(err, GRAFT_STATUS_IO, "%s: rmdir: %s", path, strerror(errno));
        return GRAFT_STATUS_OK;
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: unlink: %s", path, strerror(errno));
    return GRAFT_STATUS_OK;
}

graft_status graft_fs_remove_tree(const char *path, graft_err *err) { return remove_rec(path, err); }

graft_status graft_fs_publish_dir(const char *tmp_dir, const char *dir, graft_err *err) {
    graft_status s = graft_fs_test_step(dir, err);
    if (s) return s;
    if (!graft_fs_exists(dir)) {
        if (rename(tmp_dir, dir) != 0)
            return graft_err_set(err, GRAFT_STATUS_IO, "%s: rename from %s: %s", dir, tmp_dir,
                                 strerror(errno));
        return graft_fs_fsync_parent(dir, err);
    }
    if (syscall(SYS_renameat2, AT_FDCWD, tmp_dir, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        /* dir is now the new tree, tmp_dir the old one: a crash from here on leaves the new one. */
        if ((s = graft_fs_fsync_parent(dir, err))) return s;
        if ((s = graft_fs_test_step(dir, err))) return s;
        return graft_fs_remove_tree(tmp_dir, err);
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: exchange with %s: %s", dir, tmp_dir,
                             strerror(errno));
    size_t n = strlen(dir) + 5;
    char *old = malloc(n);
    if (!old) return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", dir);
    snprintf(old, n, "%s.old", dir);
    s = graft_fs_remove_tree(old, err);
    if (!s && rename(dir, old) != 0)
        s = graft_err_set(err, GRAFT_STATUS_IO, "%s: rename to %s: %s", dir, old, strerror(errno));
    if (!s && rename(tmp_dir, dir) != 0)
        s = graft_err_set(err, GRAFT_STATUS_IO, "%s: rename from %s: %s", dir, tmp_dir, strerror(errno));
    if (!s) s = graft_fs_fsync_parent(dir, err);
    if (!s) s = graft_fs_remove_tree(old, err);
    free(old);
    return s;
}

graft_status graft_fs_dir_resolve(const char *dir, char *out, size_t out_bytes, graft_err *err) {
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        if ((size_t)snprintf(out, out_bytes, "%s", dir) >= out_bytes)
            return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: path too long", dir);
        return GRAFT_STATUS_OK;
    }
    if ((size_t)snprintf(out, out_bytes, "%s.old", dir) >= out_bytes)
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: path too long", dir);
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) return GRAFT_STATUS_OK;
    return graft_err_set(err, GRAFT_STATUS_IO, "%s: no such checkpoint directory", dir);
}

graft_status graft_fs_read_file(const char *path, char **data, size_t *len, graft_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: not a regular file", path);
    }
    if (st.st_size > (off_t)1 << 31) {
        fclose(f);
        return graft_err_set(err, GRAFT_STATUS_BAD_INPUT, "%s: %lld bytes, expected at most 2 GiB",
                             path, (long long)st.st_size);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return graft_err_set(err, GRAFT_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    if (got != (size_t)st.st_size) {
        free(buf);
        return graft_err_set(err, GRAFT_STATUS_IO, "%s: short read", path);
    }
    buf[got] = 0;
    *data = buf;
    *len = got;
    return GRAFT_STATUS_OK;
}
