/*
 * Hosted-mode HTTP authentication (auth.h for the tokens). Every path but
 * /healthz and the sign-in page needs a token, sent as
 * "Authorization: Bearer TOKEN" or as the microlog_token cookie that the
 * sign-in page (GET/POST /signin) sets: Secure, HttpOnly, SameSite=Strict.
 * Without a valid token: 401 (JSON for the API, the sign-in page for a
 * browser). A read-only token gets 403 for anything but GET/HEAD.
 * Runs of another team answer 404, exactly like runs that do not exist
 * (http_api.c filters with ml_http_principal()). Loop thread only.
 */
#ifndef ML_COLLECTOR_AUTH_HTTP_H
#define ML_COLLECTOR_AUTH_HTTP_H

#include <stdbool.h>

#include <h2o.h>

#include "auth.h"

struct ml_http;
struct ml_collector;

#define ML_AUTH_COOKIE "microlog_token"
/* Bounds on what a client may send (h2o itself caps the header block). */
#define ML_HTTP_MAX_BODY (64u << 10)

/* Puts the guard in front of the handlers of pc: register it before them.
 * In standalone mode (no tokens) the guard lets everything through. */
void ml_http_auth_guard(struct ml_http *h, h2o_pathconf_t *pc);

/* Registers /signin and /signout on host and bounds request bodies. Call
 * before the other paths. */
void ml_http_auth_configure(struct ml_http *h, h2o_globalconf_t *config, h2o_hostconf_t *host);

/* The principal behind req, or NULL (no tokens configured, or no valid
 * token: the guard has already refused the latter). Borrowed until the
 * next tokens reload. */
const ml_principal *ml_http_principal(struct ml_collector *c, h2o_req_t *req);

/* True when req may see runs of team (always in standalone mode). */
bool ml_http_sees(struct ml_collector *c, h2o_req_t *req, const char *team);

#endif
