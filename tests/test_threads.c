/* threads_prefer_passive_wait: a program started without OMP_WAIT_POLICY
 * restarts itself with "passive"; a value the user set is kept. The test
 * notes the value it was started with in an environment variable, which the
 * restarted process inherits. */
#include "core/threads.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void test_policy(void **state)
{
    (void)state;
    const char *started = getenv("ALBEF_TEST_STARTED_POLICY");
    const char *now = getenv("OMP_WAIT_POLICY");
    assert_non_null(started);
    assert_non_null(now);
    assert_string_equal(now, *started ? started : "passive");
}

int main(int argc, char **argv)
{
    (void)argc;
    if (!getenv("ALBEF_TEST_STARTED_POLICY")) {
        const char *p = getenv("OMP_WAIT_POLICY");
        setenv("ALBEF_TEST_STARTED_POLICY", p ? p : "", 1);
    }
    threads_prefer_passive_wait(argv);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_policy)};
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
