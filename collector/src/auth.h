/*
 * Hosted mode: who may do what. A tokens file maps each secret token to a
 * team, a user and a role; the collector reloads it on SIGHUP, so a token
 * removed from the file stops working at once (revocation).
 *
 * Tokens file: one entry per line, fields separated by blanks,
 *
 *     # token                           team      user    role
 *     3c1f0a7e9b2d4c6e8f0a1b2c3d4e5f60  payments  alice   write
 *
 *   token  [A-Za-z0-9._~+/=-]{16,256} (an opaque secret; use 32+ random chars)
 *   team   a team name: [A-Za-z0-9._-]{1,100}, not "." nor ".." (runid.h)
 *   user   [A-Za-z0-9._@+-]{1,100}
 *   role   read   query the team's runs over HTTP
 *          write  read, plus send runs (ingest) and delete the team's runs
 *          admin  everything, on every team's runs
 * Blank lines and lines starting with '#' are ignored. A file with any bad
 * line is refused as a whole (the previous table stays in force on reload).
 *
 * The table and its lookups are used on the loop thread only.
 */
#ifndef ML_COLLECTOR_AUTH_H
#define ML_COLLECTOR_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "map.h"
#include "runid.h"

#define ML_TOKEN_MIN 16
#define ML_TOKEN_MAX 256
#define ML_USER_MAX 100

typedef enum ml_role { ML_ROLE_READ = 1, ML_ROLE_WRITE = 2, ML_ROLE_ADMIN = 3 } ml_role;

/* One tokens-file entry: the identity behind a request. */
typedef struct ml_principal {
    char *token;
    char team[ML_LABEL_MAX + 1];
    char user[ML_USER_MAX + 1];
    ml_role role;
} ml_principal;

typedef struct ml_auth {
    char *path;            /* the tokens file (owned) */
    ml_principal *entries; /* nentries, owned */
    size_t nentries;
    ml_map by_token;     /* token -> entry */
    uint64_t generation; /* bumped by every successful (re)load */
} ml_auth;

/* Loads path into a. Returns 0, or -EINVAL/-errno with a one-line reason
 * in err (errlen bytes); on error a is left empty but valid for
 * ml_auth_dispose(). Loop thread. */
int ml_auth_load(ml_auth *a, const char *path, char *err, size_t errlen);

/* Reads the file again; on success the new table replaces the old one
 * (principals returned before are invalid afterwards), on failure the old
 * table stays and the reason is in err. Returns 0 or -errno. Loop thread. */
int ml_auth_reload(ml_auth *a, char *err, size_t errlen);

/* Frees the table. */
void ml_auth_dispose(ml_auth *a);

/* The principal of token (len bytes, need not be NUL-terminated), or NULL
 * for an unknown, empty or oversized token. Borrowed until the next
 * reload. */
const ml_principal *ml_auth_find(const ml_auth *a, const char *token, size_t len);

/* True when p may act on runs of team (admins: every team). */
bool ml_principal_sees(const ml_principal *p, const char *team);

/* "read", "write", "admin". */
const char *ml_role_name(ml_role r);

/* Parses one tokens-file text (for tests and the loader): fills a's
 * entries from text. Returns 0 or -EINVAL with "line N: reason" in err. */
int ml_auth_parse(ml_auth *a, const char *text, char *err, size_t errlen);

#endif
