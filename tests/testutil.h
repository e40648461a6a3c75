/* Helpers shared by the cmocka test programs. Include after <cmocka.h>'s
 * prerequisites; each test program links tests/testutil.c. */
#ifndef ALBEF_TESTUTIL_H
#define ALBEF_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* Fails with the library's error message when rc != 0. */
#define assert_ok(expr)                                                                                    \
    do {                                                                                                   \
        int rc_ = (expr);                                                                                  \
        if (rc_ != 0)                                                                                      \
            fail_msg("%s returned %d: %s", #expr, rc_, albef_errmsg());                                    \
    } while (0)

/* Expects failure with `code` and an error message containing `needle`. */
#define assert_error(expr, code, needle) testutil_assert_error((expr), (code), (needle), #expr, __FILE__, __LINE__)
void testutil_assert_error(int rc, int code, const char *needle, const char *what, const char *file, int line);

/* Compares two float arrays; on failure prints max abs/rel error and the first
 * differing values. Passes when |a-b| <= atol + rtol*|b| elementwise. */
#define assert_close_f32(a, b, n, atol, rtol, name)                                                        \
    testutil_assert_close_f32((a), (b), (n), (atol), (rtol), (name), __FILE__, __LINE__)
void testutil_assert_close_f32(const float *a, const float *b, size_t n, double atol, double rtol,
                               const char *name, const char *file, int line);

/* Paths: testdata/ of this repository, ../shared/data (ALBEF_SHARED_DATA),
 * and a fresh temporary folder removed at exit. Returned strings are static
 * per call site buffer: copy them if you need several at once. */
const char *testdata_path(const char *rel);
const char *shared_data_path(const char *rel);
const char *test_tmpdir(void);
const char *tmp_path(const char *name);

/* Writes bytes to a file under test_tmpdir() and returns its path. */
const char *write_tmp_file(const char *name, const void *data, size_t n);

#endif
