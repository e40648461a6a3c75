/* Errors: every library function returns a status (0 = ok) and, on failure,
 * leaves a message naming the file, tensor or field and what was expected.
 * The message lives in thread-local storage, so worker threads never clobber
 * each other's errors. The library never prints and never exits. */
#ifndef ALBEF_CORE_ERROR_H
#define ALBEF_CORE_ERROR_H

enum albef_status {
    ALBEF_OK = 0,
    ALBEF_ERR_INVALID = 1,     /* bad input: malformed file, wrong field, bad shape */
    ALBEF_ERR_IO = 2,          /* open/read/write/rename failed */
    ALBEF_ERR_NOMEM = 3,       /* allocation failed */
    ALBEF_ERR_UNSUPPORTED = 4, /* valid but not handled (dtype, image format, ...) */
    ALBEF_ERR_NODEV = 5,       /* requested device not available */
};

/* Sets the message (printf-style) and returns `code`, so a failing path reads
 *   return albef_error(ALBEF_ERR_INVALID, "%s: tensor '%s': ...", path, name); */
int albef_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context ("coco_test.json: ") to the current message; returns `code`. */
int albef_error_context(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *albef_errmsg(void);
void albef_error_clear(void);

#endif
