#include "ops/arena.h"

#include "core/error.h"

#include <string.h>

int arena_init(arena *a, backend *be, size_t bytes)
{
    memset(a, 0, sizeof *a);
    a->be = be;
    a->capacity = bytes;
    if (bytes) {
        a->base = be->ops->alloc(be, bytes);
        if (!a->base)
            return albef_error(ALBEF_ERR_NOMEM, "cannot allocate %.1f MiB of %s memory", bytes / 1048576.0,
                               be->name);
    }
    return ALBEF_OK;
}

void arena_init_measuring(arena *a)
{
    memset(a, 0, sizeof *a);
    a->capacity = (size_t)-1;
}

void arena_free(arena *a)
{
    if (a->base && a->be)
        a->be->ops->free(a->be, a->base);
    memset(a, 0, sizeof *a);
}

tensor arena_tensor(arena *a, albef_dtype dtype, int ndim, const int64_t *shape)
{
    tensor t = tensor_make(NULL, dtype, ndim, shape);
    size_t bytes = (tensor_nbytes(t) + 63) & ~(size_t)63;
    if (bytes > a->capacity - a->used) {
        a->overflow = 1;
        return t;
    }
    if (a->base)
        t.data = a->base + a->used;
    a->used += bytes;
    if (a->used > a->peak)
        a->peak = a->used;
    return t;
}
