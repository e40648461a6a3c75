/* Logging: the library reports progress and warnings through one callback.
 * The default writes "albef: LEVEL: message" lines to stderr; tools replace
 * it or change the level. Nothing in the library writes to stdout. */
#ifndef ALBEF_CORE_LOG_H
#define ALBEF_CORE_LOG_H

enum albef_log_level { ALBEF_LOG_DEBUG = 0, ALBEF_LOG_INFO = 1, ALBEF_LOG_WARN = 2, ALBEF_LOG_ERROR = 3 };

typedef void (*albef_log_fn)(int level, const char *msg, void *user);

void albef_log_set_callback(albef_log_fn fn, void *user); /* NULL restores the default */
void albef_log_set_level(int level);                      /* messages below it are dropped */
void albef_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) albef_log(ALBEF_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) albef_log(ALBEF_LOG_INFO, __VA_ARGS__)
#define log_warn(...) albef_log(ALBEF_LOG_WARN, __VA_ARGS__)

#endif
