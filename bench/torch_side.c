#include "torch_side.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

double json_number(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Only the first reason is kept: what follows it is a consequence. */
static void torch_down(torch_side *t, const char *fmt, const char *detail)
{
    if (t->up)
        snprintf(t->note, sizeof t->note, fmt, detail);
    t->up = 0;
}

/* Reads one reply; NULL (and the side marked down) on EOF, bad JSON or an
 * "error" reply. */
static cJSON *torch_read(torch_side *t)
{
    char *line = NULL;
    size_t cap = 0;
    if (!t->up)
        return NULL;
    if (getline(&line, &cap, t->from) < 0) {
        free(line);
        torch_down(t, "%s ended early (see its messages above)", t->script);
        return NULL;
    }
    cJSON *j = cJSON_Parse(line);
    free(line);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (!cJSON_IsObject(j) || cJSON_IsString(err)) {
        torch_down(t, "PyTorch side: %s", cJSON_IsString(err) ? err->valuestring : "a reply that is not JSON");
        cJSON_Delete(j);
        return NULL;
    }
    double rss = json_number(j, "peak_rss_kb");
    if (!isnan(rss))
        t->rss_kb = (long)rss;
    return j;
}

cJSON *torch_command(torch_side *t, const char *cmd)
{
    if (!t->up)
        return NULL;
    if (fprintf(t->to, "%s\n", cmd) < 0 || fflush(t->to) != 0) {
        torch_down(t, "%s stopped reading its commands", t->script);
        return NULL;
    }
    return torch_read(t);
}

void torch_init(torch_side *t, const char *prog, const char *script)
{
    memset(t, 0, sizeof *t);
    t->prog = prog;
    t->script = script;
    t->pid = -1;
}

void torch_start(torch_side *t, char *const argv[])
{
    const char *python = argv[0];
    if (access(t->script, R_OK) != 0) {
        snprintf(t->note, sizeof t->note, "%s not found (run from the repository root)", t->script);
        return;
    }
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0) {
        snprintf(t->note, sizeof t->note, "pipe: %s", strerror(errno));
        return;
    }
    signal(SIGPIPE, SIG_IGN);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(t->note, sizeof t->note, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        dup2(down[0], STDIN_FILENO);
        dup2(up[1], STDOUT_FILENO);
        close(down[0]), close(down[1]), close(up[0]), close(up[1]);
        execv(python, argv);
        fprintf(stderr, "%s: cannot run %s: %s\n", t->prog, python, strerror(errno));
        _exit(127);
    }
    close(down[0]), close(up[1]);
    t->pid = pid;
    t->to = fdopen(down[1], "w");
    t->from = fdopen(up[0], "r");
    t->up = t->to && t->from;
    cJSON *ready = torch_read(t);
    if (!ready) {
        snprintf(t->note, sizeof t->note, "%s did not start %s (no torch? see the messages above)", python,
                 t->script);
        return;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(ready, "torch_version");
    snprintf(t->version, sizeof t->version, "%s", cJSON_IsString(ver) ? ver->valuestring : "?");
    t->threads = (int)json_number(ready, "threads");
    double bt = json_number(ready, "openblas_threads");
    t->blas_threads = isnan(bt) ? -1 : (int)bt;
    t->note[0] = '\0';
    cJSON_Delete(ready);
}

int torch_run(torch_side *t, const char *name, int count, int batch, run_times *times)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "run %s %d", name, count);
    cJSON *r = torch_command(t, cmd);
    if (!r)
        return -1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r, "times"), *v;
    int got = 0, rc = 0;
    cJSON_ArrayForEach(v, list) if (cJSON_IsNumber(v) && times->n < RUN_TIMES_MAX && got < count)
    {
        run_times_add(times, v->valuedouble);
        got++;
    }
    if ((int)json_number(r, "batch") != batch || got != count) {
        char what[96];
        snprintf(what, sizeof what, "%s: batch %d and %d times, expected batch %d and %d", name,
                 (int)json_number(r, "batch"), got, batch, count);
        torch_down(t, "PyTorch side: %s", what);
        rc = -1;
    }
    cJSON_Delete(r);
    return rc;
}

int torch_race(torch_side *t, const char *name, int batch, const run_budget *budget, int (*pass)(void *ctx),
               void *ctx, row_result *ours, row_result *theirs)
{
    run_times mine = {0}, their_times = {0};
    int rc = pass(ctx);
    if (rc)
        return rc;
    int torch_on = torch_run(t, name, 0, batch, &their_times) == 0;
    for (;;) {
        int more_mine = run_times_wants_more(&mine, budget);
        int more_theirs = torch_on && run_times_wants_more(&their_times, budget);
        if (!more_mine && !more_theirs)
            break;
        if (more_mine) {
            double t0 = now();
            rc = pass(ctx);
            run_times_add(&mine, now() - t0);
            if (rc)
                return rc;
        }
        if (more_theirs)
            torch_on = torch_run(t, name, 1, batch, &their_times) == 0;
    }
    *ours = run_times_summarise(&mine, batch);
    *theirs = torch_on ? run_times_summarise(&their_times, batch) : (row_result){0};
    return 0;
}

void torch_describe(const torch_side *t, char *buf, size_t cap)
{
    if (t->version[0])
        snprintf(buf, cap, "PyTorch %s, %d threads (OpenBLAS %d)", t->version, t->threads, t->blas_threads);
    else
        snprintf(buf, cap, "PyTorch n/a: %s", t->note[0] ? t->note : "not run");
}

void torch_stop(torch_side *t)
{
    cJSON_Delete(torch_command(t, "quit"));
    if (t->to)
        fclose(t->to);
    if (t->from)
        fclose(t->from);
    if (t->pid > 0)
        waitpid(t->pid, NULL, 0);
    t->to = t->from = NULL;
    t->pid = -1;
}
