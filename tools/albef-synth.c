/* albef-synth: writes the synthetic "shapes" data set (images and every
 * ALBEF manifest) and prints a one-line JSON summary on stdout. */
#include "albef.h"
#include "core/args.h"
#include "core/threads.h"
#include "data/synth.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "albef-synth"
#define EXIT_USAGE 2
/* Seeds are written to JSON as numbers; beyond 2^53 they would not survive. */
#define MAX_SEED 9007199254740991ULL

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " [OPTION]...\n"
            "Write the synthetic shapes data set: images of 1-4 coloured shapes and their\n"
            "pretraining, retrieval, VQA, NLVR2 and SNLI-VE manifests in ALBEF's formats.\n"
            "\n"
            "  -o, --out DIR        output folder (default: synth)\n"
            "  -s, --seed N         random seed, 0..2^53-1 (default: 0)\n"
            "  -n, --images N       training images (default: 1000)\n"
            "      --val N          validation images (default: 100)\n"
            "      --test N         test images (default: 100)\n"
            "      --size PX        image side in pixels, %d..%d (default: 64)\n"
            "  -f, --format FMT     png or jpeg (default: png)\n"
            "      --quality Q      JPEG quality, 1..100 (default: 95)\n"
            "      --captions K     retrieval captions per image, 1..10 (default: 5)\n"
            "      --questions K    VQA questions per image, 1..10 (default: 3)\n"
            "  -j, --threads N      image writer threads, 1..64 (default: 8); the output\n"
            "                       does not depend on it\n"
            "  -q, --quiet          no progress or log lines on stderr\n"
            "  -h, --help           show this help and exit\n"
            "  -V, --version        show the version and exit\n"
            "\n"
            "Exit status: 0 on success, 1 when writing fails, 2 on a usage error.\n"
            "See albef-synth(1) for the files written.\n",
            SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
}

#define usage_error(...) usage_fail(PROG, __VA_ARGS__)

/* Parses a decimal integer in [lo, hi]; 0 on success. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    uint64_t v;
    if (parse_u64(s, (uint64_t)lo, (uint64_t)hi, &v))
        return -1;
    *out = (int)v;
    return 0;
}

typedef struct {
    int on_terminal;
    int last_percent;
} progress_state;

static void show_progress(int done, int total, void *user)
{
    progress_state *p = user;
    int percent = (int)(100LL * done / total);
    if (percent == p->last_percent && done != total)
        return;
    p->last_percent = percent;
    fprintf(stderr, "\r" PROG ": images %d/%d (%d%%)%s", done, total, percent, done == total ? "\n" : "");
}

static int print_summary(const synth_params *p, const synth_summary *s)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *images = cJSON_CreateObject(), *manifests = cJSON_CreateObject();
    char image_root[4096];
    snprintf(image_root, sizeof image_root, "%s/images", p->out_dir);
    int ok = root && images && manifests && cJSON_AddStringToObject(root, "out", p->out_dir) &&
             cJSON_AddStringToObject(root, "image_root", image_root) &&
             cJSON_AddNumberToObject(root, "seed", (double)p->seed) &&
             cJSON_AddNumberToObject(root, "size", p->image_size) &&
             cJSON_AddStringToObject(root, "format", p->format == SYNTH_JPEG ? "jpeg" : "png") &&
             cJSON_AddNumberToObject(images, "train", s->n_images[0]) &&
             cJSON_AddNumberToObject(images, "val", s->n_images[1]) &&
             cJSON_AddNumberToObject(images, "test", s->n_images[2]);
    if (ok) {
        cJSON_AddItemToObject(root, "images", images);
        images = NULL;
        ok = cJSON_AddNumberToObject(root, "image_files", s->n_files) != NULL;
    }
    for (int i = 0; ok && i < s->n_manifests; i++)
        ok = cJSON_AddNumberToObject(manifests, s->manifests[i].name, s->manifests[i].items) != NULL;
    if (ok) {
        cJSON_AddItemToObject(root, "manifests", manifests);
        manifests = NULL;
        ok = cJSON_AddNumberToObject(root, "vocab_size", s->vocab_size) &&
             cJSON_AddNumberToObject(root, "answer_list_size", s->answer_list_size);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    cJSON_Delete(images);
    cJSON_Delete(manifests);
    if (!text) {
        fprintf(stderr, PROG ": out of memory printing the summary\n");
        return 1;
    }
    int rc = printf("%s\n", text) < 0 || fflush(stdout) != 0;
    free(text);
    if (rc)
        fprintf(stderr, PROG ": cannot write the summary to stdout: %s\n", strerror(errno));
    return rc;
}

int main(int argc, char **argv)
{
    threads_prefer_passive_wait(argv);
    enum { OPT_VAL = 256, OPT_TEST, OPT_SIZE, OPT_QUALITY, OPT_CAPTIONS, OPT_QUESTIONS };
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},      {"seed", required_argument, NULL, 's'},
        {"images", required_argument, NULL, 'n'},   {"val", required_argument, NULL, OPT_VAL},
        {"test", required_argument, NULL, OPT_TEST}, {"size", required_argument, NULL, OPT_SIZE},
        {"format", required_argument, NULL, 'f'},   {"quality", required_argument, NULL, OPT_QUALITY},
        {"captions", required_argument, NULL, OPT_CAPTIONS},
        {"questions", required_argument, NULL, OPT_QUESTIONS},
        {"threads", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},          {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0},
    };
    synth_params p;
    synth_params_default(&p);
    int quiet = 0;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":o:s:n:f:j:qhV", options, NULL);
        if (c == -1)
            break;
        /* The option as typed, for messages: "-x" for an unknown short one. */
        char name[64];
        if (c == '?' && optopt > 0 && optopt < 128)
            snprintf(name, sizeof name, "-%c", optopt);
        else
            snprintf(name, sizeof name, "%s", optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        switch (c) {
        case 'o':
            if (!*optarg)
                return usage_error("--out: expected a folder, got an empty string");
            p.out_dir = optarg;
            break;
        case 's':
            if (parse_u64(optarg, 0, MAX_SEED, &p.seed))
                return usage_error("--seed: expected an integer in 0..9007199254740991, got '%s'", optarg);
            break;
        case 'n':
            if (parse_int(optarg, 1, 1000000, &p.n_train))
                return usage_error("--images: expected an integer in 1..1000000, got '%s'", optarg);
            break;
        case OPT_VAL:
            if (parse_int(optarg, 0, 1000000, &p.n_val))
                return usage_error("--val: expected an integer in 0..1000000, got '%s'", optarg);
            break;
        case OPT_TEST:
            if (parse_int(optarg, 0, 1000000, &p.n_test))
                return usage_error("--test: expected an integer in 0..1000000, got '%s'", optarg);
            break;
        case OPT_SIZE:
            if (parse_int(optarg, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE, &p.image_size))
                return usage_error("--size: expected an integer in 32..512, got '%s'", optarg);
            break;
        case 'f':
            if (strcmp(optarg, "png") == 0)
                p.format = SYNTH_PNG;
            else if (strcmp(optarg, "jpeg") == 0 || strcmp(optarg, "jpg") == 0)
                p.format = SYNTH_JPEG;
            else
                return usage_error("--format: expected png or jpeg, got '%s'", optarg);
            break;
        case OPT_QUALITY:
            if (parse_int(optarg, 1, 100, &p.jpeg_quality))
                return usage_error("--quality: expected an integer in 1..100, got '%s'", optarg);
            break;
        case OPT_CAPTIONS:
            if (parse_int(optarg, 1, 10, &p.captions_per_image))
                return usage_error("--captions: expected an integer in 1..10, got '%s'", optarg);
            break;
        case OPT_QUESTIONS:
            if (parse_int(optarg, 1, 10, &p.questions_per_image))
                return usage_error("--questions: expected an integer in 1..10, got '%s'", optarg);
            break;
        case 'j':
            if (parse_int(optarg, 1, SYNTH_MAX_THREADS, &p.threads))
                return usage_error("--threads: expected an integer in 1..%d, got '%s'", SYNTH_MAX_THREADS, optarg);
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf(PROG " %s\n", albef_version());
            return 0;
        case ':':
            return usage_error("%s: missing argument", name);
        default:
            return usage_error("%s: unknown option", name);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);

    progress_state progress = {.on_terminal = isatty(STDERR_FILENO), .last_percent = -1};
    if (quiet)
        albef_log_set_level(ALBEF_LOG_WARN);
    else if (progress.on_terminal) {
        p.progress = show_progress;
        p.progress_user = &progress;
    }
    synth_summary summary;
    if (synth_write_dataset(&p, &summary) != ALBEF_OK) {
        if (p.progress && progress.last_percent >= 0)
            fputc('\n', stderr);
        fprintf(stderr, PROG ": %s\n", albef_errmsg());
        return 1;
    }
    return print_summary(&p, &summary);
}
