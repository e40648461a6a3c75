/* Training-image throughput on one core: decode + ALBEF's pretrain transform
 * (RandomResizedCrop 256, flip, RandomAugment(2, 7), ToTensor, Normalize) on
 * the 7 photos of ../shared/data/real-images (ALBEF_SHARED_DATA), files read
 * into memory first. Rows: decode only, transform only, both, and the test
 * transform (square resize to 256). Then, when /usr/bin/python3 has Pillow and
 * torchvision, scripts/dev/bench_pillow_pipeline.py measures the PyTorch
 * pipeline the same way (one thread) and the last table compares the two. Each rate is the best of three trials.
 *
 *   bench_image_pipeline [SECONDS_PER_ROW]   (default 2) */
#include "core/error.h"
#include "core/file.h"
#include "core/rng.h"
#include "io/image.h"
#include "vision/transform.h"
#include "run_times.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const photos[] = {"astronaut.png", "camera.png", "chelsea.png", "coffee.png",
                                     "hubble_deep_field.jpg", "retina.jpg", "rocket.jpg"};
enum { NPHOTOS = sizeof photos / sizeof photos[0] };

typedef struct {
    char *bytes[NPHOTOS];
    size_t size[NPHOTOS];
    image_u8 decoded[NPHOTOS];
    float *out;
} bench_data;

enum stage { DECODE = 1, TRANSFORM = 2, TEST_TRANSFORM = 4 };

/* Runs whole passes over the photos until `seconds` have gone; images/s. */
static int run_trial(bench_data *d, int stages, double seconds, double *rate)
{
    transform_params train = transform_params_pretrain(), test = transform_params_test(256);
    long images = 0;
    double t0 = now(), t = t0;
    for (uint64_t pass = 0; t - t0 < seconds; pass++) {
        for (int k = 0; k < NPHOTOS; k++) {
            image_u8 img = d->decoded[k], fresh = {0};
            if (stages & DECODE) {
                int rc = image_decode((const uint8_t *)d->bytes[k], d->size[k], photos[k], &fresh);
                if (rc)
                    return rc;
                img = fresh;
            }
            rng_state rng;
            rng_seed_stream(&rng, 42, pass * NPHOTOS + k);
            int rc = ALBEF_OK;
            if (stages & TRANSFORM)
                rc = transform_apply(&train, &img, &rng, d->out);
            if (stages & TEST_TRANSFORM)
                rc = transform_apply(&test, &img, NULL, d->out);
            image_free(&fresh);
            if (rc)
                return rc;
            images++;
        }
        t = now();
    }
    *rate = images / (t - t0);
    return ALBEF_OK;
}

/* The best of three trials: other work on a shared machine only slows a trial down. */
static int run_row(bench_data *d, int stages, double seconds, double *rate)
{
    *rate = 0;
    for (int trial = 0; trial < 3; trial++) {
        double r;
        int rc = run_trial(d, stages, seconds / 3, &r);
        if (rc)
            return rc;
        *rate = r > *rate ? r : *rate;
    }
    return ALBEF_OK;
}

/* Reads the Python pipeline's "name rate" lines; 0 when it could not run. */
static int run_python(double seconds, double *decode, double *transform, double *both, char *note, size_t note_len)
{
    if (system("/usr/bin/python3 -c 'import PIL, torchvision' >/dev/null 2>&1") != 0) {
        snprintf(note, note_len, "/usr/bin/python3 lacks Pillow or torchvision");
        return 0;
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 scripts/dev/bench_pillow_pipeline.py %g", seconds);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(note, note_len, "could not start %.200s", cmd);
        return 0;
    }
    char line[512];
    int found = 0;
    note[0] = 0;
    while (fgets(line, sizeof line, p)) {
        double v;
        if (sscanf(line, "decode %lf", &v) == 1)
            *decode = v, found |= 1;
        else if (sscanf(line, "transform %lf", &v) == 1)
            *transform = v, found |= 2;
        else if (sscanf(line, "decode+transform %lf", &v) == 1)
            *both = v, found |= 4;
        else if (strncmp(line, "note ", 5) == 0)
            snprintf(note, note_len, "%.200s", line + 5), note[strcspn(note, "\n")] = 0;
    }
    int status = pclose(p);
    if (status != 0 || found != 7) {
        snprintf(note, note_len, "scripts/dev/bench_pillow_pipeline.py failed (status %d)", status);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: bench_image_pipeline [SECONDS_PER_ROW]\n");
        return 2;
    }
    const char *base = getenv("ALBEF_SHARED_DATA");
    base = base && *base ? base : "../shared/data";
    bench_data d = {0};
    long pixels = 0;
    for (int k = 0; k < NPHOTOS; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/real-images/%s", base, photos[k]);
        if (file_read_all(path, &d.bytes[k], &d.size[k]) ||
            image_decode((const uint8_t *)d.bytes[k], d.size[k], path, &d.decoded[k])) {
            fprintf(stderr, "bench_image_pipeline: %s\n", albef_errmsg());
            return 1;
        }
        pixels += (long)d.decoded[k].width * d.decoded[k].height;
    }
    d.out = malloc(3 * 256 * 256 * sizeof(float));
    if (!d.out)
        return 1;

    printf("image pipeline, one thread, %d photos (%.2f Mpixel in all), %.1f s per row\n", NPHOTOS, pixels / 1e6,
           seconds);
    const struct {
        const char *name;
        int stages;
    } rows[] = {
        {"decode", DECODE},
        {"transform", TRANSFORM},
        {"decode+transform", DECODE | TRANSFORM},
        {"test transform 256", TEST_TRANSFORM},
    };
    double c_rate[4] = {0};
    printf("%-20s %12s %12s\n", "albef (C)", "images/s", "ms/image");
    for (int r = 0; r < 4; r++) {
        if (run_row(&d, rows[r].stages, seconds, &c_rate[r])) {
            fprintf(stderr, "bench_image_pipeline: %s\n", albef_errmsg());
            return 1;
        }
        printf("%-20s %12.1f %12.2f\n", rows[r].name, c_rate[r], 1e3 / c_rate[r]);
    }

    double py_decode = 0, py_transform = 0, py_both = 0;
    char note[256];
    if (!run_python(seconds, &py_decode, &py_transform, &py_both, note, sizeof note)) {
        printf("no PyTorch comparison: %s\n", note);
    } else {
        printf("\n%-20s %12s %12s %8s\n", "one core", "albef img/s", "PyTorch img/s", "ratio");
        const double py[3] = {py_decode, py_transform, py_both};
        for (int r = 0; r < 3; r++)
            printf("%-20s %12.1f %12.1f %7.2fx\n", rows[r].name, c_rate[r], py[r], c_rate[r] / py[r]);
        if (note[0])
            printf("(%s)\n", note);
    }
    for (int k = 0; k < NPHOTOS; k++) {
        free(d.bytes[k]);
        image_free(&d.decoded[k]);
    }
    free(d.out);
    return 0;
}
