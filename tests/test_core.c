/* core/: errors, RNG streams, atomic files. */
#include "albef.h"
#include "core/file.h"
#include "core/rng.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

static void test_error_message_and_context(void **state)
{
    (void)state;
    int rc = albef_error(ALBEF_ERR_INVALID, "item %d: 'caption' must be a string", 12);
    assert_int_equal(rc, ALBEF_ERR_INVALID);
    albef_error_context(rc, "%s: ", "coco.json");
    assert_string_equal(albef_errmsg(), "coco.json: item 12: 'caption' must be a string");
    albef_error_clear();
    assert_string_equal(albef_errmsg(), "no error");
}

static void test_rng_deterministic_and_streams_differ(void **state)
{
    (void)state;
    rng_state a, b, c;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    rng_seed_stream(&c, 42, 1);
    int same_as_stream = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_u64(&a), y = rng_u64(&b), z = rng_u64(&c);
        assert_true(x == y);
        same_as_stream += (x == z);
    }
    assert_true(same_as_stream < 2);
}

static void test_rng_distributions(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 7);
    enum { N = 200000 };
    double sum = 0, sumsq = 0, usum = 0;
    int counts[7] = {0}, bern = 0;
    for (int i = 0; i < N; i++) {
        double g = rng_normal(&r);
        sum += g;
        sumsq += g * g;
        double u = rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        usum += u;
        uint32_t k = rng_below(&r, 7);
        assert_true(k < 7);
        counts[k]++;
        bern += rng_bernoulli(&r, 0.15);
    }
    double mean = sum / N, var = sumsq / N - mean * mean;
    if (fabs(mean) > 0.01 || fabs(var - 1) > 0.02)
        fail_msg("normal: mean %.4f var %.4f", mean, var);
    if (fabs(usum / N - 0.5) > 0.005)
        fail_msg("uniform mean %.4f", usum / N);
    for (int k = 0; k < 7; k++)
        if (fabs(counts[k] / (double)N - 1.0 / 7) > 0.005)
            fail_msg("rng_below(7): bucket %d has frequency %.4f", k, counts[k] / (double)N);
    if (fabs(bern / (double)N - 0.15) > 0.005)
        fail_msg("bernoulli(0.15) frequency %.4f", bern / (double)N);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_atomic_write_replaces_and_abort_keeps_old(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/atomic", test_tmpdir());
    mkdir(dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    assert_ok(file_write_all_atomic(path, "first", 5));
    char *data;
    size_t n;
    assert_ok(file_read_all(path, &data, &n));
    assert_int_equal(n, 5);
    assert_string_equal(data, "first");
    free(data);

    atomic_file af;
    assert_ok(atomic_file_open(&af, path));
    assert_ok(atomic_file_write(&af, "second!", 7));
    atomic_file_abort(&af);
    assert_ok(file_read_all(path, &data, &n));
    assert_string_equal(data, "first");
    free(data);
    assert_int_equal(count_entries(dir), 1); /* no temporary file left behind */

    assert_ok(file_write_all_atomic(path, "second!", 7));
    assert_ok(file_read_all(path, &data, &n));
    assert_string_equal(data, "second!");
    free(data);
    assert_int_equal(count_entries(dir), 1);
}

static void test_file_errors_name_the_path(void **state)
{
    (void)state;
    char *data;
    file_mapping m;
    assert_error(file_read_all("/nonexistent/x.json", &data, NULL), ALBEF_ERR_IO, "/nonexistent/x.json");
    assert_error(file_map("/nonexistent/y.safetensors", &m), ALBEF_ERR_IO, "y.safetensors");
    assert_error(file_write_all_atomic("/nonexistent/dir/z", "a", 1), ALBEF_ERR_IO, "/nonexistent/dir/z");
}

static void test_file_map_reads_contents(void **state)
{
    (void)state;
    const char *p = write_tmp_file("map.bin", "hello", 5);
    file_mapping m;
    assert_ok(file_map(p, &m));
    assert_int_equal(m.size, 5);
    assert_memory_equal(m.data, "hello", 5);
    file_unmap(&m);
    p = write_tmp_file("empty.bin", "", 0);
    assert_ok(file_map(p, &m));
    assert_int_equal(m.size, 0);
    file_unmap(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_message_and_context),
        cmocka_unit_test(test_rng_deterministic_and_streams_differ),
        cmocka_unit_test(test_rng_distributions),
        cmocka_unit_test(test_atomic_write_replaces_and_abort_keeps_old),
        cmocka_unit_test(test_file_errors_name_the_path),
        cmocka_unit_test(test_file_map_reads_contents),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
