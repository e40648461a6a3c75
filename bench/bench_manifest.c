/* Manifest loading speed and memory: writes a pretraining manifest (default
 * 1,000,000 items, a third with caption lists, ~60-character captions,
 * absolute paths) and a retrieval test manifest (default 100,000 images x 5
 * captions) to a temporary folder, loads each in a child process and prints
 * wall time, items/s, MB/s and the child's peak RSS. A last row parses the
 * pretraining file into one cJSON tree, the way json.load would, to show what
 * the element-by-element reading saves.
 *
 *   bench_manifest [PRETRAIN_ITEMS [EVAL_ITEMS]] */
#include "core/error.h"
#include "core/file.h"
#include "core/rng.h"
#include "io/manifest.h"
#include "run_times.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const words[] = {
    "a",       "the",    "man",    "woman", "dog",    "cat",     "riding", "on",      "of",     "with",
    "in",      "street", "red",    "blue",  "small",  "large",   "sitting", "standing", "next",  "to",
    "table",   "plate",  "food",   "young", "people", "walking", "beach",  "city",    "bus",    "train",
    "holding", "umbrella", "green", "field", "playing", "frisbee", "kitchen", "white",  "old",    "building",
};

static void write_caption(FILE *f, rng_state *rng)
{
    /* ~60 characters: words until the length is reached */
    int len = 0, target = 45 + (int)rng_below(rng, 30);
    fputc('"', f);
    while (len < target) {
        const char *w = words[rng_below(rng, sizeof words / sizeof *words)];
        len += fprintf(f, "%s%s", len ? " " : "", w);
    }
    fputc('"', f);
}

static int write_pretrain(const char *path, size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    rng_state rng;
    rng_seed(&rng, 1);
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s{\"image\": \"/datasets/cc3m/training/%05zu/%09zu.jpg\", \"caption\": ", i ? ", " : "",
                i / 10000, i);
        if (i % 3 == 2) {
            int k = 2 + (int)rng_below(&rng, 4);
            fputc('[', f);
            for (int j = 0; j < k; j++) {
                if (j)
                    fputs(", ", f);
                write_caption(f, &rng);
            }
            fputc(']', f);
        } else
            write_caption(f, &rng);
        fputc('}', f);
    }
    fputs("]\n", f);
    return fclose(f);
}

static int write_retrieval_eval(const char *path, size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    rng_state rng;
    rng_seed(&rng, 2);
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s{\"image\": \"val2014/COCO_val2014_%012zu.jpg\", \"caption\": [", i ? ", " : "", i);
        for (int j = 0; j < 5; j++) {
            if (j)
                fputs(", ", f);
            write_caption(f, &rng);
        }
        fputs("]}", f);
    }
    fputs("]\n", f);
    return fclose(f);
}

struct result {
    double seconds;
    size_t items, texts, held;
    int ok;
    char error[256];
};

/* Runs one load in a child so each row gets its own peak RSS. */
static int run_child(int tree, enum manifest_kind kind, const char *path, struct result *r, long *peak_kb)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        struct result c = {0};
        double t0 = now();
        if (tree) {
            char *text;
            size_t len;
            c.ok = file_read_all(path, &text, &len) == 0;
            cJSON *root = c.ok ? cJSON_ParseWithLength(text, len) : NULL;
            c.seconds = now() - t0;
            c.ok = root != NULL;
            c.items = root ? (size_t)cJSON_GetArraySize(root) : 0;
            cJSON_Delete(root);
            free(text);
        } else {
            manifest *m;
            const char *paths[] = {path};
            c.ok = manifest_load(&m, kind, paths, 1) == 0;
            c.seconds = now() - t0;
            if (c.ok) {
                c.items = manifest_count(m);
                c.texts = manifest_text_total(m);
                c.held = manifest_bytes(m);
                manifest_free(m);
            } else
                snprintf(c.error, sizeof c.error, "%s", albef_errmsg());
        }
        ssize_t w = write(fds[1], &c, sizeof c);
        _exit(w == (ssize_t)sizeof c ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], r, sizeof *r);
    close(fds[0]);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || got != (ssize_t)sizeof *r || !WIFEXITED(status))
        return -1;
    *peak_kb = ru.ru_maxrss;
    return 0;
}

static void row(const char *name, int tree, enum manifest_kind kind, const char *path)
{
    struct stat st;
    stat(path, &st);
    double mb = (double)st.st_size / 1e6;
    struct result r;
    long peak_kb = 0;
    if (run_child(tree, kind, path, &r, &peak_kb) != 0 || !r.ok) {
        printf("%-24s failed: %s\n", name, r.error);
        return;
    }
    printf("%-24s %9zu %9zu %8.1f %8.2f %10.0f %8.1f %9.0f %8.0f\n", name, r.items, r.texts, mb, r.seconds,
           (double)r.items / r.seconds, mb / r.seconds, (double)peak_kb / 1024.0, (double)r.held / 1048576.0);
}

int main(int argc, char **argv)
{
    size_t n_pretrain = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    size_t n_eval = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
    char dir[] = "/tmp/bench_manifest.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_manifest: mkdtemp");
        return 1;
    }
    char pretrain[64], eval[64];
    snprintf(pretrain, sizeof pretrain, "%s/pretrain.json", dir);
    snprintf(eval, sizeof eval, "%s/coco_test.json", dir);
    fprintf(stderr, "bench_manifest: writing %zu pretraining and %zu retrieval items under %s\n", n_pretrain, n_eval,
            dir);
    int rc = 0;
    if (write_pretrain(pretrain, n_pretrain) != 0 || write_retrieval_eval(eval, n_eval) != 0) {
        perror("bench_manifest: writing the manifests");
        rc = 1;
    } else {
        printf("%-24s %9s %9s %8s %8s %10s %8s %9s %8s\n", "manifest", "items", "texts", "MB", "seconds", "items/s",
               "MB/s", "peakRSS", "heldMB");
        row("pretrain", 0, MANIFEST_PRETRAIN, pretrain);
        row("retrieval-eval", 0, MANIFEST_RETRIEVAL_EVAL, eval);
        row("pretrain, cJSON tree", 1, MANIFEST_PRETRAIN, pretrain);
    }
    unlink(pretrain);
    unlink(eval);
    rmdir(dir);
    return rc;
}
