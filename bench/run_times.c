#include "run_times.h"

#include <stdlib.h>
#include <time.h>

double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int run_times_wants_more(const run_times *t, const run_budget *b)
{
    return t->n < b->max_iters && t->n < RUN_TIMES_MAX && (t->n < b->min_iters || t->sum < b->min_time);
}

void run_times_add(run_times *t, double seconds)
{
    t->times[t->n++] = seconds;
    t->sum += seconds;
}

row_result run_times_summarise(run_times *t, int batch)
{
    row_result r = {.batch = batch, .iters = t->n, .ok = t->n > 0};
    if (!t->n)
        return r;
    qsort(t->times, (size_t)t->n, sizeof *t->times, compare_double);
    r.best = t->times[0];
    r.median = t->n % 2 ? t->times[t->n / 2] : 0.5 * (t->times[t->n / 2 - 1] + t->times[t->n / 2]);
    return r;
}
