/* The PyTorch side of a benchmark: a child process (scripts/dev/bench_*_torch.py
 * --serve) that answers one JSON line per command line. Its runs and ours
 * alternate (never overlap), so both see the same load when the machine is
 * shared. A side that fails is marked down with a note and the benchmark goes
 * on without it; nothing here exits. */
#ifndef ALBEF_BENCH_TORCH_SIDE_H
#define ALBEF_BENCH_TORCH_SIDE_H

#include "run_times.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct {
    const char *prog;   /* the benchmark, for messages */
    const char *script; /* the PyTorch script, for messages */
    pid_t pid;
    FILE *to, *from;
    int up;
    char version[64];
    int threads, blas_threads;
    long rss_kb;    /* peak RSS in the last reply that reported one, 0 before */
    char note[256]; /* why the side is down or was not started */
} torch_side;

/* A side not started (yet): torch_run and torch_command answer nothing. */
void torch_init(torch_side *t, const char *prog, const char *script);
/* Runs argv (argv[0] the interpreter, argv[1] t->script, NULL-terminated)
 * and reads its ready line: {"ready", "torch_version", "threads",
 * "openblas_threads"}. On failure the side stays down, with a note. Ignores
 * SIGPIPE from then on, so that a side that dies does not take the benchmark
 * with it. */
void torch_start(torch_side *t, char *const argv[]);
/* Sends one command line; its reply (the caller deletes it), or NULL with the
 * side marked down on EOF, bad JSON or an {"error"} reply. */
cJSON *torch_command(torch_side *t, const char *cmd);
/* `run NAME COUNT` (count 0: the side prepares NAME and warms it up); adds
 * the COUNT times it answers. 0, or -1 with the side marked down, also when
 * the reply's batch is not `batch`. */
int torch_run(torch_side *t, const char *name, int count, int batch, run_times *times);
/* Row `name` on both sides: `pass` (ours, 0 = ok) once on each side to warm
 * up, then alternately (never overlapping) until each side has used its
 * budget. Returns the status of the first of our passes that fails. theirs
 * is all 0 when the PyTorch side is, or goes, down (t->up then reads 0). */
int torch_race(torch_side *t, const char *name, int batch, const run_budget *budget, int (*pass)(void *ctx),
               void *ctx, row_result *ours, row_result *theirs);
/* `quit`, then waits for the child to end. */
void torch_stop(torch_side *t);

/* For a table's heading: "PyTorch VERSION, N threads (OpenBLAS M)", or
 * "PyTorch n/a: " and why. */
void torch_describe(const torch_side *t, char *buf, size_t cap);

/* obj[key] if it is a number, else NaN (also for a NULL obj). */
double json_number(const cJSON *obj, const char *key);

#endif
