/* The timing statistics of the benchmarks that race us against PyTorch: the
 * times of one side of a row, when another run is due, and the best and
 * median of them. The best is what the tables show (noise only ever slows a
 * run down); the medians go to stderr. */
#ifndef ALBEF_BENCH_RUN_TIMES_H
#define ALBEF_BENCH_RUN_TIMES_H

#define RUN_TIMES_MAX 64

/* The run (or step) times of one side of a row. */
typedef struct {
    double times[RUN_TIMES_MAX];
    int n;
    double sum;
} run_times;

typedef struct {
    int batch, iters;
    double best, median; /* seconds per run */
    int ok;
} row_result;

/* How long each side of a row runs: until both min_iters runs and min_time
 * seconds are reached, and no more than max_iters (or RUN_TIMES_MAX) runs. */
typedef struct {
    int min_iters, max_iters;
    double min_time;
} run_budget;

/* Seconds on the monotonic clock. */
double now(void);

/* Whether the budget asks for another run. */
int run_times_wants_more(const run_times *t, const run_budget *b);
void run_times_add(run_times *t, double seconds);
/* Sorts the times; ok is 0 when there are none. */
row_result run_times_summarise(run_times *t, int batch);

#endif
