/*
 * The tokens file (auth.h): parsing, reload, lookup.
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "mem.h"

/* The file is small (one line per user); anything larger is a mistake. */
#define TOKENS_FILE_MAX (4u << 20)

static bool token_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           strchr("._~+/=-", ch) != NULL;
}

static bool user_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           strchr("._@+-", ch) != NULL;
}

static bool all_of(const char *s, bool (*ok)(char))
{
    for (; *s; s++)
        if (!ok(*s))
            return false;
    return true;
}

const char *ml_role_name(ml_role r)
{
    return r == ML_ROLE_ADMIN ? "admin" : r == ML_ROLE_WRITE ? "write" : "read";
}

static int parse_role(const char *s, ml_role *r)
{
    if (strcmp(s, "read") == 0)
        *r = ML_ROLE_READ;
    else if (strcmp(s, "write") == 0)
        *r = ML_ROLE_WRITE;
    else if (strcmp(s, "admin") == 0)
        *r = ML_ROLE_ADMIN;
    else
        return -EINVAL;
    return 0;
}

static void clear(ml_auth *a)
{
    for (size_t i = 0; i < a->nentries; i++)
        free(a->entries[i].token);
    free(a->entries);
    a->entries = NULL;
    a->nentries = 0;
    ml_map_dispose(&a->by_token);
    ml_map_init(&a->by_token);
}

/* Checks the four fields of one line and appends the entry. */
static int add_entry(ml_auth *a, size_t *cap, char **f, int nf, char *why, size_t whylen)
{
    ml_role role;
    size_t tl = nf > 0 ? strlen(f[0]) : 0;
    if (nf != 4)
        snprintf(why, whylen, "want 4 fields (token team user role), found %d", nf);
    else if (tl < ML_TOKEN_MIN || tl > ML_TOKEN_MAX || !all_of(f[0], token_char))
        snprintf(why, whylen, "bad token (want %d to %d of [A-Za-z0-9._~+/=-])", ML_TOKEN_MIN,
                 ML_TOKEN_MAX);
    else if (!ml_label_valid(f[1]))
        snprintf(why, whylen, "bad team \"%.100s\" (want [A-Za-z0-9._-]{1,100})", f[1]);
    else if (strlen(f[2]) > ML_USER_MAX || !all_of(f[2], user_char))
        snprintf(why, whylen, "bad user \"%.100s\" (want [A-Za-z0-9._@+-]{1,100})", f[2]);
    else if (parse_role(f[3], &role) != 0)
        snprintf(why, whylen, "bad role \"%.20s\" (want read, write or admin)", f[3]);
    else if (ml_map_get(&a->by_token, f[0]) != NULL)
        snprintf(why, whylen, "token listed twice");
    else {
        if (a->nentries == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            /* Entries move: rebuild the map (keys point into them) after. */
            a->entries = ml_xrealloc(a->entries, *cap * sizeof(*a->entries));
            ml_map_dispose(&a->by_token);
            ml_map_init(&a->by_token);
            for (size_t i = 0; i < a->nentries; i++)
                ml_map_put(&a->by_token, a->entries[i].token, &a->entries[i]);
        }
        ml_principal *p = &a->entries[a->nentries++];
        p->token = ml_xstrdup(f[0]);
        snprintf(p->team, sizeof(p->team), "%s", f[1]);
        snprintf(p->user, sizeof(p->user), "%s", f[2]);
        p->role = role;
        ml_map_put(&a->by_token, p->token, p);
        return 0;
    }
    return -EINVAL;
}

int ml_auth_parse(ml_auth *a, const char *text, char *err, size_t errlen)
{
    char *copy = ml_xstrdup(text), *save = NULL, *line;
    size_t cap = 0, lineno = 0;
    int rv = 0;
    clear(a);
    /* strtok_r on "\n" would merge blank lines and lose the numbering. */
    for (line = copy; line != NULL && rv == 0; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *f[5], *tok_save = NULL, *tok;
        int nf = 0;
        for (tok = strtok_r(line, " \t\r", &tok_save); tok && nf < 5;
             tok = strtok_r(NULL, " \t\r", &tok_save))
            f[nf++] = tok;
        if (nf == 0)
            continue;
        char why[200];
        if ((rv = add_entry(a, &cap, f, nf, why, sizeof(why))) != 0)
            snprintf(err, errlen, "line %zu: %s", lineno, why);
    }
    free(copy);
    if (rv != 0)
        clear(a);
    return rv;
}

static int load_into(ml_auth *a, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rv = ml_read_file(path, TOKENS_FILE_MAX, &text, &len);
    if (rv != 0) {
        snprintf(err, errlen, "cannot read the tokens file %s: %s", path, strerror(-rv));
        return rv;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "the tokens file %s is not text", path);
        free(text);
        return -EINVAL;
    }
    char why[300];
    rv = ml_auth_parse(a, text, why, sizeof(why));
    free(text);
    if (rv != 0)
        snprintf(err, errlen, "tokens file %s, %s", path, why);
    else if (a->nentries == 0) {
        snprintf(err, errlen, "the tokens file %s has no tokens", path);
        rv = -EINVAL;
    }
    return rv;
}

int ml_auth_load(ml_auth *a, const char *path, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    ml_map_init(&a->by_token);
    a->path = ml_xstrdup(path);
    int rv = load_into(a, path, err, errlen);
    if (rv == 0)
        a->generation = 1;
    return rv;
}

int ml_auth_reload(ml_auth *a, char *err, size_t errlen)
{
    ml_auth next;
    memset(&next, 0, sizeof(next));
    ml_map_init(&next.by_token);
    int rv = load_into(&next, a->path, err, errlen);
    if (rv != 0) {
        clear(&next);
        ml_map_dispose(&next.by_token);
        return rv;
    }
    clear(a);
    ml_map_dispose(&a->by_token);
    a->entries = next.entries;
    a->nentries = next.nentries;
    a->by_token = next.by_token;
    a->generation++;
    return 0;
}

void ml_auth_dispose(ml_auth *a)
{
    clear(a);
    ml_map_dispose(&a->by_token);
    free(a->path);
    a->path = NULL;
}

const ml_principal *ml_auth_find(const ml_auth *a, const char *token, size_t len)
{
    char key[ML_TOKEN_MAX + 1];
    if (a == NULL || len == 0 || len > ML_TOKEN_MAX || memchr(token, '\0', len) != NULL)
        return NULL;
    memcpy(key, token, len);
    key[len] = '\0';
    /* The hash lookup leaks at most which bucket a guess lands in; the
     * final comparison of the candidate is constant-time. */
    const ml_principal *p = ml_map_get(&a->by_token, key);
    if (p == NULL)
        return NULL;
    unsigned char diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(p->token[i] ^ key[i]);
    return diff == 0 ? p : NULL;
}

bool ml_principal_sees(const ml_principal *p, const char *team)
{
    return p->role == ML_ROLE_ADMIN || strcmp(p->team, team) == 0;
}
