#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERRMSG_CAP 1024

static _Thread_local char errmsg[ERRMSG_CAP];

int albef_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return code;
}

int albef_error_context(int code, const char *fmt, ...)
{
    char prefix[ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t np = strlen(prefix), nm = strlen(errmsg);
    if (np >= ERRMSG_CAP - 1)
        np = ERRMSG_CAP - 1;
    if (np + nm > ERRMSG_CAP - 1)
        nm = ERRMSG_CAP - 1 - np; /* keep the head of the message, drop its tail */
    memmove(errmsg + np, errmsg, nm);
    memcpy(errmsg, prefix, np);
    errmsg[np + nm] = '\0';
    return code;
}

const char *albef_errmsg(void) { return errmsg[0] ? errmsg : "no error"; }

void albef_error_clear(void) { errmsg[0] = '\0'; }
