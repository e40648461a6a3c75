#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static albef_log_fn log_fn;
static void *log_user;
static int log_level = ALBEF_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name(int level)
{
    switch (level) {
    case ALBEF_LOG_DEBUG: return "debug";
    case ALBEF_LOG_INFO: return "info";
    case ALBEF_LOG_WARN: return "warning";
    default: return "error";
    }
}

void albef_log_set_callback(albef_log_fn fn, void *user)
{
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_user = user;
    pthread_mutex_unlock(&log_lock);
}

void albef_log_set_level(int level) { log_level = level; }

void albef_log(int level, const char *fmt, ...)
{
    if (level < log_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One lock around the sink keeps lines from worker threads whole. */
    pthread_mutex_lock(&log_lock);
    if (log_fn)
        log_fn(level, msg, log_user);
    else
        fprintf(stderr, "albef: %s: %s\n", level_name(level), msg);
    pthread_mutex_unlock(&log_lock);
}
