/*
 * Small file-system helpers used by the store and the journal. All return
 * 0 or a negative errno. Blocking; called from the loop thread (the
 * collector's files are small or appended in small records).
 */
#ifndef ML_COLLECTOR_FSUTIL_H
#define ML_COLLECTOR_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* mkdir -p path with mode 0755. Existing directories are fine. */
int ml_mkdirs(const char *path);

/* Writes len bytes to path atomically: path.tmp.<pid> is written, fsync'd,
 * renamed over path, and the directory is fsync'd. On error path is
 * unchanged and the temporary file is removed. */
int ml_write_file_atomic(const char *path, const void *data, size_t len);

/* ml_write_file_atomic() with the syncs optional: without them the rename
 * still never leaves a half-written file under path while the system runs,
 * but a crash of the machine may leave the old contents or none. */
int ml_write_file_replace(const char *path, const void *data, size_t len, bool sync);

/* Reads a whole file (at most max bytes, else -EFBIG) into a malloc'd,
 * NUL-terminated buffer owned by the caller. */
int ml_read_file(const char *path, size_t max, char **out, size_t *out_len);

/* rm -rf path (a directory tree or a file). Missing path is fine. Does not
 * follow symbolic links. */
int ml_remove_tree(const char *path);

/* fsync the directory dir (after entries were created, renamed or removed
 * in it). Returns 0 or -errno (-ENOENT: it does not exist). */
int ml_fsync_dir(const char *dir);

/* fsync the directory holding path (after a create or rename in it). */
int ml_fsync_parent(const char *path);

/* Writes all len bytes to fd (retrying short writes and EINTR). */
int ml_write_all(int fd, const void *data, size_t len);

/* 1 if path is an existing directory, else 0. */
int ml_is_dir(const char *path);

#endif
