/*
 * Autostart: with the default MICROLOG_SERVER (http://localhost:7777) and
 * nothing listening there, the client starts `micrologd --standalone`
 * detached, as compiler caches start their servers, unless
 * MICROLOG_AUTOSTART=0. MICROLOG_AUTOSTART=1 extends it to any
 * http://localhost:PORT or http://127.0.0.1:PORT server (--http that port).
 *
 * micrologd is found through MICROLOGD, then beside the library (this
 * shared object or the Python extension: <dir>/micrologd, <dir>/bin/...,
 * <dir>/../bin/...), then on PATH. It is started by /bin/sh through
 * `setsid -f` so that it outlives the profiled program in a session of its
 * own, and the shell is reaped at once by pid: the program never sees a
 * child of ours. Once per process; sender thread.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

static atomic_bool tried;

/* host:port of server when it is an http URL of this machine. */
static bool local_http(const char *server, char *hostport, size_t len)
{
    uint16_t port;
    const char *path;
    size_t path_len;
    bool localhost;
    return ml__loopback_url(server, &port, &path, &path_len, &localhost) &&
           snprintf(hostport, len, "127.0.0.1:%u", (unsigned)port) < (int)len;
}

static bool executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/* Looks for micrologd; writes its path to out. */
static bool find_micrologd(char *out, size_t len)
{
    const char *env = getenv("MICROLOGD");
    if (env && *env && executable(env))
        return snprintf(out, len, "%s", env) < (int)len;
    Dl_info info;
    if (dladdr((void *)find_micrologd, &info) != 0 && info.dli_fname != NULL) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash != NULL) {
            *slash = '\0';
            static const char *const rel[] = {"micrologd", "bin/micrologd", "../bin/micrologd",
                                              "../collector/micrologd"};
            for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++)
                if (snprintf(out, len, "%s/%s", dir, rel[i]) < (int)len && executable(out))
                    return true;
        }
    }
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        if (n > 0 && snprintf(out, len, "%.*s/micrologd", (int)n, path) < (int)len &&
            executable(out))
            return true;
        path = end ? end + 1 : NULL;
    }
    return false;
}

bool ml__autostart(ml_client *c)
{
    const char *flag = getenv("MICROLOG_AUTOSTART");
    char hostport[64], exe[PATH_MAX];
    bool expected = false;
    if (flag != NULL && strcmp(flag, "0") == 0)
        return false;
    /* unset: only for the default server; "1": for any server on this machine */
    if ((flag == NULL || strcmp(flag, "1") != 0) && strcmp(c->server, ML_DEFAULT_SERVER) != 0)
        return false;
    if (!local_http(c->server, hostport, sizeof(hostport)) ||
        !atomic_compare_exchange_strong(&tried, &expected, true) ||
        !find_micrologd(exe, sizeof(exe)))
        return false;
    /* $0 is micrologd, $1 the HTTP address; setsid -f forks it into a new
     * session, the plain & is the fallback without util-linux */
    char *argv[] = {"sh",
                    "-c",
                    "if command -v setsid >/dev/null 2>&1; then "
                    "setsid -f \"$0\" --standalone --http \"$1\" </dev/null >/dev/null 2>&1; "
                    "else \"$0\" --standalone --http \"$1\" </dev/null >/dev/null 2>&1 & fi",
                    exe,
                    hostport,
                    NULL};
    pid_t pid;
    if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) != 0)
        return false;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return true;
}
