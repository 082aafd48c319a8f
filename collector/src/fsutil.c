#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "mem.h"

int ml_mkdirs(const char *path)
{
    char *p = ml_xstrdup(path);
    int rv = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            rv = -errno;
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    if (rv == 0 && !ml_is_dir(path))
        rv = -ENOTDIR;
    return rv;
}

int ml_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ml_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rv = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rv;
}

int ml_fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir =
        slash ? ml_xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : ml_xstrdup(".");
    int rv = ml_fsync_dir(dir);
    free(dir);
    return rv;
}

int ml_write_file_replace(const char *path, const void *data, size_t len, bool sync)
{
    char *tmp = ml_xasprintf("%s.tmp.%ld", path, (long)getpid());
    int rv, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rv = -errno;
        free(tmp);
        return rv;
    }
    if ((rv = ml_write_all(fd, data, len)) == 0 && sync && fsync(fd) != 0)
        rv = -errno;
    if (close(fd) != 0 && rv == 0)
        rv = -errno;
    if (rv == 0 && rename(tmp, path) != 0)
        rv = -errno;
    if (rv != 0)
        unlink(tmp);
    else if (sync)
        rv = ml_fsync_parent(path);
    free(tmp);
    return rv;
}

int ml_write_file_atomic(const char *path, const void *data, size_t len)
{
    return ml_write_file_replace(path, data, len, true);
}

int ml_read_file(const char *path, size_t max, char **out, size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rv = 0;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        rv = -errno;
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rv = -EINVAL;
        goto done;
    }
    if ((size_t)st.st_size > max) {
        rv = -EFBIG;
        goto done;
    }
    size_t cap = (size_t)st.st_size, len = 0;
    buf = ml_xmalloc(cap + 1);
    /* The file may change size under us; read what is there up to cap. */
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rv = -errno;
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
done:
    free(buf);
    close(fd);
    return rv;
}

int ml_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ml_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
    DIR *d = opendir(path);
    if (d == NULL)
        return -errno;
    int rv = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *child = ml_xasprintf("%s/%s", path, e->d_name);
        int r = ml_remove_tree(child);
        free(child);
        if (r != 0 && rv == 0)
            rv = r;
    }
    closedir(d);
    if (rmdir(path) != 0 && errno != ENOENT && rv == 0)
        rv = -errno;
    return rv;
}
