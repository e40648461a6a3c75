/* Text throughput on one core: ALBEF's pre_caption and the BERT tokenizer on
 * a realistic caption mix (template captions in COCO's style, one in ten
 * with accents, CJK, emoji or odd punctuation), vocabulary from
 * ../shared/data/bert-base-uncased-vocab.txt (ALBEF_SHARED_DATA). Rows:
 * pre_caption alone, encode alone (no truncation), pre_caption + encode
 * truncated to 25 as in pretraining, and batches of 64 padded to the
 * longest. Each rate is the best of three trials.
 *
 *   bench_tokenizer [SECONDS_PER_ROW]   (default 1) */
#include "core/error.h"
#include "core/rng.h"
#include "text/caption.h"
#include "text/tokenizer.h"
#include "run_times.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N_CAPTIONS = 20000, BATCH = 64, MAX_IDS = 512 };

static const char *const subjects[] = {"A man", "a woman", "Two dogs", "the cat", "A young boy", "an elderly couple",
                                       "Three people", "a brown horse", "A group of children", "the chef",
                                       "A skateboarder", "a surfer", "An elephant", "a giraffe", "The red bus"};
static const char *const verbs[] = {"is standing", "sitting", "is riding", "holding", "eating", "walks",
                                    "are playing with", "looking at", "jumping over", "parked next to"};
static const char *const objects[] = {"a frisbee", "a surfboard", "the ball", "an umbrella", "a sandwich",
                                      "a cell phone", "a skateboard", "a wooden bench", "the water", "a fence",
                                      "some broccoli", "a hot dog", "a bicycle", "a clock tower", "a stop sign"};
static const char *const places[] = {"on the beach.", "in a park", "on a busy city street.", "in the kitchen",
                                     "at the airport!", "in a grassy field", "near the ocean", "on a snowy hill.",
                                     "in the living room", "under a cloudy sky", "at night", "by the river."};
static const char *const extras[] = {" at the café in Zürich", " (photo: 東京タワー)", " 😀👍🏽",
                                     " -- \"wow!!!\"", " near São Paulo's beach", " with a piñata",
                                     " #summer #fun", " ¿qué?"};

#define PICK(r, a) a[rng_below(r, sizeof a / sizeof a[0])]

static char **make_captions(void)
{
    rng_state r;
    rng_seed(&r, 2021);
    char **caps = malloc(N_CAPTIONS * sizeof *caps);
    for (int i = 0; caps && i < N_CAPTIONS; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s %s %s %s%s", PICK(&r, subjects), PICK(&r, verbs), PICK(&r, objects),
                 PICK(&r, places), rng_below(&r, 10) == 0 ? PICK(&r, extras) : "");
        caps[i] = strdup(buf);
    }
    return caps;
}

enum row { PRE_CAPTION, ENCODE, PRE_CAPTION_ENCODE_25, BATCH_64 };
static const char *const row_names[] = {"pre_caption(30)", "encode (no truncation)", "pre_caption + encode(25)",
                                        "batch 64, longest, trunc 25"};

/* Runs passes over the captions for `seconds`; captions/s and tokens/s. */
static int run_trial(const bert_tokenizer *t, char **caps, enum row row, double seconds, double *cps, double *tps)
{
    static char clean[3 * 512 + 1];
    static int32_t ids[BATCH * MAX_IDS], mask[BATCH * MAX_IDS];
    static const char *batch[BATCH];
    bert_encode_options opt = {.padding = BERT_PADDING_LONGEST, .truncation = 1, .max_length = 25};
    long captions = 0, tokens = 0;
    double t0 = now(), t1 = t0;
    while (t1 - t0 < seconds) {
        for (int i = 0; i < N_CAPTIONS; i += BATCH) {
            if (row == BATCH_64) {
                for (int k = 0; k < BATCH; k++)
                    batch[k] = caps[(i + k) % N_CAPTIONS];
                size_t L;
                int32_t lengths[BATCH];
                int rc = bert_tokenizer_encode_batch(t, batch, NULL, BATCH, &opt, MAX_IDS, ids, mask, lengths, &L);
                if (rc)
                    return rc;
                for (int k = 0; k < BATCH; k++)
                    tokens += lengths[k];
                captions += BATCH;
                continue;
            }
            for (int k = i; k < i + BATCH && k < N_CAPTIONS; k++) {
                const char *text = caps[k];
                size_t len = strlen(text), n = 0;
                int rc = ALBEF_OK;
                if (row == PRE_CAPTION || row == PRE_CAPTION_ENCODE_25) {
                    rc = pre_caption(text, len, 30, clean, sizeof clean, &len);
                    text = clean;
                    n = len;
                }
                if (!rc && row == ENCODE)
                    rc = bert_tokenizer_encode(t, text, len, 0, ids, MAX_IDS, &n);
                if (!rc && row == PRE_CAPTION_ENCODE_25)
                    rc = bert_tokenizer_encode(t, text, len, 25, ids, MAX_IDS, &n);
                if (rc)
                    return rc;
                tokens += (long)n;
                captions++;
            }
        }
        t1 = now();
    }
    *cps = captions / (t1 - t0);
    *tps = tokens / (t1 - t0);
    return ALBEF_OK;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (seconds <= 0) {
        fprintf(stderr, "usage: bench_tokenizer [SECONDS_PER_ROW]\n");
        return 2;
    }
    const char *root = getenv("ALBEF_SHARED_DATA") ? getenv("ALBEF_SHARED_DATA") : "../shared/data";
    char path[1024];
    snprintf(path, sizeof path, "%s/bert-base-uncased-vocab.txt", root);
    double t0 = now();
    bert_tokenizer *t;
    if (bert_tokenizer_load(path, &t) != ALBEF_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", albef_errmsg());
        return 1;
    }
    double load_ms = (now() - t0) * 1e3;
    char **caps = make_captions();
    if (!caps) {
        fprintf(stderr, "bench_tokenizer: out of memory\n");
        return 1;
    }
    size_t bytes = 0;
    for (int i = 0; i < N_CAPTIONS; i++)
        bytes += strlen(caps[i]);
    printf("tokenizer, one thread: %d captions (mean %.1f bytes), vocabulary loaded in %.1f ms\n", N_CAPTIONS,
           (double)bytes / N_CAPTIONS, load_ms);
    printf("%-30s %14s %14s %12s\n", "row", "captions/s", "tokens/s", "us/caption");
    for (int row = 0; row < 4; row++) {
        double best_c = 0, best_t = 0;
        for (int trial = 0; trial < 3; trial++) {
            double c, tk;
            if (run_trial(t, caps, (enum row)row, seconds, &c, &tk) != ALBEF_OK) {
                fprintf(stderr, "bench_tokenizer: %s\n", albef_errmsg());
                return 1;
            }
            if (c > best_c) {
                best_c = c;
                best_t = tk;
            }
        }
        if (row == PRE_CAPTION)
            printf("%-30s %14.0f %14s %12.2f\n", row_names[row], best_c, "-", 1e6 / best_c);
        else
            printf("%-30s %14.0f %14.0f %12.2f\n", row_names[row], best_c, best_t, 1e6 / best_c);
    }
    for (int i = 0; i < N_CAPTIONS; i++)
        free(caps[i]);
    free(caps);
    bert_tokenizer_free(t);
    return 0;
}
