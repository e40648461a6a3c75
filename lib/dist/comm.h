/* Data-parallel communication: the collectives the trainers need, behind a
 * small table that each transport fills (one process here; MPI for CPUs and
 * NCCL for GPUs plug in the same way). Rank and world size come from the
 * launcher's environment. Buffers are back-end memory. */
#ifndef ALBEF_DIST_COMM_H
#define ALBEF_DIST_COMM_H

#include "ops/ops.h"

#include <stddef.h>

typedef struct comm comm;

struct comm_ops {
    /* dst (world * n floats) receives every rank's src (n floats), in rank order. */
    int (*all_gather)(comm *c, backend *be, float *dst, const float *src, size_t n);
    /* data (n floats) becomes the sum over ranks. */
    int (*all_reduce_sum)(comm *c, backend *be, float *data, size_t n);
    /* data (n floats) becomes rank 0's. */
    int (*broadcast)(comm *c, backend *be, float *data, size_t n);
};

struct comm {
    const struct comm_ops *ops;
    int rank, world;
    void *impl;
};

/* One process: rank 0 of 1. */
comm *comm_single(void);

#endif
