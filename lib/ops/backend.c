#include "core/device.h"
#include "core/error.h"
#include "ops/ops.h"

#include <string.h>

#ifdef ALBEF_HAVE_CUDA
int cuda_backend_create(backend **out, char *msg, size_t cap);
void cuda_backend_destroy(backend *be);
#endif

int backend_create(const char *name, backend **out)
{
    *out = NULL;
    if (!strcmp(name, "cpu")) {
        *out = backend_cpu();
        return ALBEF_OK;
    }
    if (!strcmp(name, "cuda")) {
        char desc[512];
        int rc = device_cuda_probe(desc, sizeof desc);
        if (rc)
            return albef_error_context(rc, "--device cuda: ");
#ifdef ALBEF_HAVE_CUDA
        char msg[512];
        if (cuda_backend_create(out, msg, sizeof msg) != 0)
            return albef_error(ALBEF_ERR_NODEV, "--device cuda: %s", msg);
        return ALBEF_OK;
#endif
    }
    return albef_error(ALBEF_ERR_INVALID, "unknown device '%s' (expected cpu or cuda)", name);
}

void backend_destroy(backend *be)
{
#ifdef ALBEF_HAVE_CUDA
    if (be && be->kind == BACKEND_CUDA)
        cuda_backend_destroy(be);
#else
    (void)be;
#endif
}
