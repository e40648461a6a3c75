#include "core/threads.h"

#include <stdlib.h>
#include <unistd.h>

void threads_prefer_passive_wait(char **argv)
{
    if (getenv("OMP_WAIT_POLICY"))
        return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* no /proc: carry on; OpenMP already read its (unset) policy */
}
