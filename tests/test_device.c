/* core/device: the CUDA probe answers clearly with or without a GPU. */
#include "albef.h"
#include "core/device.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_probe),
    };
    return cmocka_run_group_tests_name("device", tests, NULL, NULL);
}
