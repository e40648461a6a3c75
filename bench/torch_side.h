/* The PyTorch side of a benchmark: a child process (scripts/dev/bench_*_torch.py
 * --serve) that answers one JSON line per command line. Its runs and ours
 * alternate (never overlap), so both see the same load when the machine is
 * shared. A side that fails is marked down with a note and the benchmark goes
 * on without it; nothing here exits. SIGPIPE should be ignored by the caller,
 * so that a side that dies does not take the benchmark with it. */
#ifndef ALBEF_BENCH_TORCH_SIDE_H
#define ALBEF_BENCH_TORCH_SIDE_H

#include "run_times.h"

#include <cjson/cJSON.h>
#include <sys/types.h>
#include <stdio.h>

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
 * "openblas_threads"}. On failure the side stays down, with a note. */
void torch_start(torch_side *t, char *const argv[]);
/* Sends one command line; its reply (the caller deletes it), or NULL with the
 * side marked down on EOF, bad JSON or an {"error"} reply. */
cJSON *torch_command(torch_side *t, const char *cmd);
/* `run NAME COUNT` (count 0: the side prepares NAME and warms it up); adds
 * the COUNT times it answers. 0, or -1 with the side marked down, also when
 * the reply's batch is not `batch`. */
int torch_run(torch_side *t, const char *name, int count, int batch, run_times *times);
/* `quit`, then waits for the child to end. */
void torch_stop(torch_side *t);

/* obj[key] if it is a number, else NaN (also for a NULL obj). */
double json_number(const cJSON *obj, const char *key);

#endif
