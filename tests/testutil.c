#include "testutil.h"

#include "albef.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void testutil_assert_error(int rc, int code, const char *needle, const char *what, const char *file, int line)
{
    if (rc == 0)
        fail_msg("%s:%d: %s succeeded; expected error %d containing '%s'", file, line, what, code, needle);
    if (rc != code)
        fail_msg("%s:%d: %s returned %d (%s); expected %d", file, line, what, rc, albef_errmsg(), code);
    if (needle && !strstr(albef_errmsg(), needle))
        fail_msg("%s:%d: %s: message '%s' does not contain '%s'", file, line, what, albef_errmsg(), needle);
}

void testutil_assert_close_f32(const float *a, const float *b, size_t n, double atol, double rtol,
                               const char *name, const char *file, int line)
{
    double max_abs = 0, max_rel = 0;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double r = d / (fabs((double)b[i]) + 1e-30);
        if (d > max_abs)
            max_abs = d;
        if (r > max_rel && fabs((double)b[i]) > atol)
            max_rel = r;
        if (!(d <= atol + rtol * fabs((double)b[i]))) {
            if (!bad)
                first = i;
            bad++;
        }
    }
    if (bad) {
        fprintf(stderr, "# %s:%d: %s: %zu of %zu values differ; max abs %.3g, max rel %.3g\n", file, line, name, bad,
                n, max_abs, max_rel);
        for (size_t i = first, shown = 0; i < n && shown < 5; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            if (!(d <= atol + rtol * fabs((double)b[i]))) {
                fprintf(stderr, "#   [%zu] got %.9g expected %.9g\n", i, a[i], b[i]);
                shown++;
            }
        }
        fail_msg("%s: %zu values differ (max abs %.3g)", name, bad, max_abs);
    }
}

static char tmpdir[256];

static void remove_tmpdir(void)
{
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "# could not remove %s\n", tmpdir);
    }
}

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/albef-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

#define NBUF 8
static char bufs[NBUF][1024];
static int next_buf;

static char *next_path_buf(void)
{
    char *b = bufs[next_buf];
    next_buf = (next_buf + 1) % NBUF;
    return b;
}

const char *testdata_path(const char *rel)
{
    char *b = next_path_buf();
    snprintf(b, 1024, "testdata/%s", rel);
    return b;
}

const char *shared_data_path(const char *rel)
{
    const char *base = getenv("ALBEF_SHARED_DATA");
    char *b = next_path_buf();
    snprintf(b, 1024, "%s/%s", base && *base ? base : "../shared/data", rel);
    return b;
}

const char *tmp_path(const char *name)
{
    char *b = next_path_buf();
    snprintf(b, 1024, "%s/%s", test_tmpdir(), name);
    return b;
}

const char *write_tmp_file(const char *name, const void *data, size_t n)
{
    const char *p = tmp_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n)) {
        perror(p);
        abort();
    }
    fclose(f);
    return p;
}
