/* core/device: the CUDA probe answers clearly with or without a GPU. */
#include "albef.h"
#include "core/device.h"
#include "ops/ops.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static void test_cuda_probe(void **state)
{
    (void)state;
    char desc[512];
    int rc = device_cuda_probe(desc, sizeof desc);
    if (rc == ALBEF_OK) {
        printf("# %s\n", desc);
        assert_true(strstr(desc, "CUDA device") != NULL);
        return;
    }
    assert_int_equal(rc, ALBEF_ERR_NODEV);
    const char *msg = albef_errmsg();
    if (device_cuda_built())
        assert_true(strstr(msg, "CUDA device") != NULL);
    else
        assert_true(strstr(msg, "no CUDA back end") != NULL);
    printf("# %s\n", msg);
    skip();
}

/* --device cuda on a machine without a GPU (or a build without CUDA) fails
 * with a message, never a crash; --device cpu always works. */
static void test_backend_create(void **state)
{
    (void)state;
    backend *be;
    assert_ok(backend_create("cpu", &be));
    assert_string_equal(be->name, "cpu");
    assert_error(backend_create("tpu", &be), ALBEF_ERR_INVALID, "unknown device 'tpu'");
    int rc = backend_create("cuda", &be);
    if (rc == ALBEF_OK) {
        printf("# CUDA back end created\n");
        backend_destroy(be);
        return;
    }
    assert_true(rc == ALBEF_ERR_NODEV || rc == ALBEF_ERR_UNSUPPORTED);
    assert_non_null(strstr(albef_errmsg(), "--device cuda"));
    printf("# %s\n", albef_errmsg());
}

static void test_reference_back_ends_are_complete(void **state)
{
    (void)state;
    char missing[512];
    assert_int_equal(backend_missing_ops(backend_cpu(), missing, sizeof missing), 0);
    assert_int_equal(backend_missing_ops(backend_null(), missing, sizeof missing), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_probe),
        cmocka_unit_test(test_backend_create),
        cmocka_unit_test(test_reference_back_ends_are_complete),
    };
    return cmocka_run_group_tests_name("device", tests, NULL, NULL);
}
