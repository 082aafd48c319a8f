#include "xml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "mem.h"

#define XML_DEPTH_MAX 32
/* Text kept per element; S3 keys are at most 1024 bytes. */
#define XML_TEXT_MAX 4096

typedef struct xml_state {
    XML_Parser p;
    ml_xml_cb cb;
    void *arg;
    int depth;
    char *names[XML_DEPTH_MAX];
    char text[XML_TEXT_MAX + 1];
    size_t text_len;
} xml_state;

static const char *local_name(const char *n)
{
    const char *sep = strrchr(n, '\x01');
    return sep ? sep + 1 : n;
}

static void on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    xml_state *s = arg;
    if (s->depth >= XML_DEPTH_MAX) {
        XML_StopParser(s->p, XML_FALSE);
        return;
    }
    s->names[s->depth++] = ml_xstrdup(local_name(name));
    s->text_len = 0;
    s->text[0] = '\0';
}

static void on_end(void *arg, const XML_Char *name)
{
    (void)name;
    xml_state *s = arg;
    if (s->depth == 0)
        return;
    s->depth--;
    s->cb(s->arg, s->depth ? s->names[s->depth - 1] : "", s->names[s->depth], s->text);
    free(s->names[s->depth]);
    s->text_len = 0;
    s->text[0] = '\0';
}

static void on_text(void *arg, const XML_Char *t, int len)
{
    xml_state *s = arg;
    size_t n = (size_t)len;
    if (n > XML_TEXT_MAX - s->text_len)
        n = XML_TEXT_MAX - s->text_len;
    memcpy(s->text + s->text_len, t, n);
    s->text_len += n;
    s->text[s->text_len] = '\0';
}

int ml_xml_parse(const char *data, size_t len, ml_xml_cb cb, void *arg)
{
    xml_state *s = ml_xcalloc(1, sizeof(*s));
    /* Namespace processing with separator \1 so names arrive as
     * "uri\1local"; entity expansion stays expat's (no external DTDs). */
    s->p = XML_ParserCreateNS(NULL, '\x01');
    if (s->p == NULL)
        ml_oom(0);
    s->cb = cb;
    s->arg = arg;
    XML_SetUserData(s->p, s);
    XML_SetElementHandler(s->p, on_start, on_end);
    XML_SetCharacterDataHandler(s->p, on_text);
    int ok = XML_Parse(s->p, data, (int)len, XML_TRUE) == XML_STATUS_OK;
    while (s->depth > 0)
        free(s->names[--s->depth]);
    XML_ParserFree(s->p);
    free(s);
    return ok ? 0 : -EBADMSG;
}
