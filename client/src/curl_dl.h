/*
 * libcurl loaded at run time (curl_dl.c): the functions discovery and
 * autostart call, looked up with dlsym. Include this instead of calling
 * curl_* directly: the client library does not link libcurl.
 */
#ifndef ML_CLIENT_CURL_DL_H
#define ML_CLIENT_CURL_DL_H

#include <curl/curl.h>

typedef struct ml__curl_api {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *h);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_perform)(CURLM *m, int *running);
    CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd extra[], unsigned n, int timeout_ms,
                            int *numfds);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_cleanup)(CURLM *m);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    void (*slist_free_all)(struct curl_slist *list);
    CURLU *(*url)(void);
    CURLUcode (*url_set)(CURLU *u, CURLUPart part, const char *content, unsigned flags);
    CURLUcode (*url_get)(CURLU *u, CURLUPart part, char **out, unsigned flags);
    void (*url_cleanup)(CURLU *u);
    void (*free)(void *p);
} ml__curl_api;

/* Reads MICROLOG_LIBCURL (once per process). Called by ml_client_new on the
 * caller's thread: the sender thread calls no getenv() of its own for it,
 * since getenv() races with a setenv() of the program's. Any thread. */
void ml__curl_prepare(void);

/* libcurl's functions, loading libcurl.so.4 (or MICROLOG_LIBCURL) and
 * running curl_global_init on the first call. NULL when it cannot be
 * loaded; then *why (if why is not NULL) points to a one-line reason that
 * stays valid for the life of the process. Once loaded, never unloaded.
 * Any thread (the client calls it on the sender thread only). */
const ml__curl_api *ml__curl(const char **why);

#endif
