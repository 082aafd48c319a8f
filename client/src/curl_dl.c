/*
 * libcurl, loaded when first needed. Only discovery (GET <server>/api/v1/ingest)
 * and the autostart probe use it, on the sender thread; linking it would load
 * libcurl and its dependencies (TLS, HTTP/2, LDAP, Kerberos, ...) into every
 * process that imports the client, at the cost of milliseconds of start-up
 * even when discovery never runs (MICROLOG_INGEST set, spool-only children).
 * The headers give the types and constants; the functions come from dlsym.
 *
 * Loaded once per process (pthread_once), with curl_global_init; never
 * unloaded. MICROLOG_LIBCURL names another file than libcurl.so.4.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "curl_dl.h"

#define LIBCURL_DEFAULT "libcurl.so.4"

static pthread_once_t name_once = PTHREAD_ONCE_INIT;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char lib_name[256] = LIBCURL_DEFAULT;
static ml__curl_api api;
static bool loaded;
static char load_error[300];

/* Looks up each symbol; false (with load_error set) if one is missing. */
static bool bind_all(void *lib, const char *name)
{
    static const struct {
        const char *name;
        size_t offset;
    } syms[] = {
#define SYM(field, name) {name, offsetof(ml__curl_api, field)}
        SYM(global_init, "curl_global_init"),
        SYM(easy_init, "curl_easy_init"),
        SYM(easy_setopt, "curl_easy_setopt"),
        SYM(easy_getinfo, "curl_easy_getinfo"),
        SYM(easy_cleanup, "curl_easy_cleanup"),
        SYM(multi_init, "curl_multi_init"),
        SYM(multi_add_handle, "curl_multi_add_handle"),
        SYM(multi_remove_handle, "curl_multi_remove_handle"),
        SYM(multi_perform, "curl_multi_perform"),
        SYM(multi_poll, "curl_multi_poll"),
        SYM(multi_info_read, "curl_multi_info_read"),
        SYM(multi_cleanup, "curl_multi_cleanup"),
        SYM(slist_append, "curl_slist_append"),
        SYM(slist_free_all, "curl_slist_free_all"),
        SYM(url, "curl_url"),
        SYM(url_set, "curl_url_set"),
        SYM(url_get, "curl_url_get"),
        SYM(url_cleanup, "curl_url_cleanup"),
        SYM(free, "curl_free"),
#undef SYM
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        void *f = dlsym(lib, syms[i].name);
        if (f == NULL) {
            snprintf(load_error, sizeof(load_error), "%s has no %s (libcurl 7.66 or later needed)",
                     name, syms[i].name);
            return false;
        }
        /* a data pointer to a function pointer: what dlsym is for (POSIX) */
        *(void **)((char *)&api + syms[i].offset) = f;
    }
    return true;
}

static void read_name(void)
{
    const char *name = getenv("MICROLOG_LIBCURL");
    if (name != NULL && *name != '\0')
        snprintf(lib_name, sizeof(lib_name), "%s", name);
}

void ml__curl_prepare(void)
{
    pthread_once(&name_once, read_name);
}

static void load(void)
{
    const char *name = lib_name;
    ml__curl_prepare(); /* normally done already, on the thread that made the client */
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        const char *why = dlerror();
        snprintf(load_error, sizeof(load_error), "cannot load libcurl: %s",
                 why ? why : "unknown error");
        return;
    }
    if (!bind_all(lib, name)) {
        dlclose(lib);
        return;
    }
    if (api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(load_error, sizeof(load_error), "cannot initialize libcurl");
        return; /* stays loaded: curl may have started threads or handlers */
    }
    loaded = true;
}

const ml__curl_api *ml__curl(const char **why)
{
    pthread_once(&load_once, load);
    if (!loaded && why != NULL)
        *why = load_error;
    return loaded ? &api : NULL;
}
