#include "dist/comm.h"

#include "core/error.h"

static int single_all_gather(comm *c, backend *be, float *dst, const float *src, size_t n)
{
    (void)c;
    if (dst != src)
        be->ops->copy(be, dst, src, n * sizeof(float));
    return ALBEF_OK;
}

static int single_all_reduce_sum(comm *c, backend *be, float *data, size_t n)
{
    (void)c, (void)be, (void)data, (void)n;
    return ALBEF_OK;
}

static int single_broadcast(comm *c, backend *be, float *data, size_t n)
{
    (void)c, (void)be, (void)data, (void)n;
    return ALBEF_OK;
}

static const struct comm_ops single_ops = {
    .all_gather = single_all_gather,
    .all_reduce_sum = single_all_reduce_sum,
    .broadcast = single_broadcast,
};

static comm single = {&single_ops, 0, 1, NULL};

comm *comm_single(void) { return &single; }
