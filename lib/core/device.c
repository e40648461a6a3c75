#include "core/device.h"

#include "core/error.h"

#include <stdio.h>

#ifdef ALBEF_HAVE_CUDA
int cuda_device_probe(char *msg, size_t cap, int *count);

int device_cuda_built(void) { return 1; }

int device_cuda_probe(char *desc, size_t cap)
{
    char msg[512];
    int count = 0;
    if (cuda_device_probe(msg, sizeof msg, &count) != 0)
        return albef_error(ALBEF_ERR_NODEV, "%s", msg);
    snprintf(desc, cap, "%s", msg);
    return ALBEF_OK;
}
#else
int device_cuda_built(void) { return 0; }

int device_cuda_probe(char *desc, size_t cap)
{
    if (cap)
        desc[0] = '\0';
    return albef_error(ALBEF_ERR_NODEV, "this build has no CUDA back end (rebuild with nvcc on PATH, or CUDA=1)");
}
#endif
