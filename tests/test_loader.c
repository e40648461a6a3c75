/* The pre-training loader on a small synthetic data set: batches do not
 * depend on the number of workers, a resumed epoch gives the same batches,
 * unreadable images are skipped and counted, captions are tokenised as
 * ALBEF's pre-training does. */
#include "albef.h"
#include "data/loader.h"
#include "data/synth.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char data_dir[600];
static manifest *pretrain;
static bert_tokenizer *tok;

static int setup(void **state)
{
    (void)state;
    albef_log_set_level(ALBEF_LOG_ERROR);
    snprintf(data_dir, sizeof data_dir, "%s/synth", test_tmpdir());
    synth_params p;
    synth_params_default(&p);
    p.out_dir = data_dir;
    p.n_train = 24, p.n_val = 2, p.n_test = 2;
    p.image_size = 48;
    p.threads = 2;
    synth_summary sum;
    if (synth_write_dataset(&p, &sum))
        return -1;
    char path[700];
    snprintf(path, sizeof path, "%s/pretrain.json", data_dir);
    const char *paths[1] = {path};
    if (manifest_load(&pretrain, MANIFEST_PRETRAIN, paths, 1))
        return -1;
    snprintf(path, sizeof path, "%s/vocab.txt", data_dir);
    return bert_tokenizer_load(path, &tok) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    manifest_free(pretrain);
    bert_tokenizer_free(tok);
    return 0;
}

static loader_config config(int workers)
{
    loader_config c = {
        .manifest = pretrain,
        .image_root = NULL,
        .tokenizer = tok,
        .transform = transform_params_pretrain(),
        .batch = 4,
        .max_words = 30,
        .max_tokens = 25,
        .seed = 7,
        .workers = workers,
        .prefetch = 3,
    };
    c.transform.res = 32;
    return c;
}

typedef struct {
    int n, len[16];
    float *images[16];
    int32_t *ids[16];
    int64_t items[16][4];
} epoch_dump;

static void run_epoch(loader *l, int epoch, int64_t first, epoch_dump *d)
{
    memset(d, 0, sizeof *d);
    assert_ok(loader_start_epoch(l, epoch, first));
    loader_batch *b;
    size_t px = 4 * 3 * 32 * 32;
    for (;;) {
        assert_ok(loader_next(l, &b));
        if (!b)
            break;
        assert_int_equal(b->index, first + d->n);
        d->len[d->n] = b->len;
        d->images[d->n] = malloc(sizeof(float) * px);
        memcpy(d->images[d->n], b->images, sizeof(float) * px);
        d->ids[d->n] = malloc(sizeof(int32_t) * 4 * (size_t)b->len);
        memcpy(d->ids[d->n], b->ids, sizeof(int32_t) * 4 * (size_t)b->len);
        memcpy(d->items[d->n], b->items, sizeof d->items[0]);
        d->n++;
        loader_release(l, b);
    }
}

static void free_dump(epoch_dump *d)
{
    for (int i = 0; i < d->n; i++)
        free(d->images[i]), free(d->ids[i]);
}

static void assert_same_batch(const epoch_dump *a, int i, const epoch_dump *b, int j)
{
    assert_int_equal(a->len[i], b->len[j]);
    assert_memory_equal(a->items[i], b->items[j], sizeof a->items[0]);
    assert_memory_equal(a->ids[i], b->ids[j], sizeof(int32_t) * 4 * (size_t)a->len[i]);
    assert_memory_equal(a->images[i], b->images[j], sizeof(float) * 4 * 3 * 32 * 32);
}

static void test_batches_independent_of_workers_and_resumable(void **state)
{
    (void)state;
    loader_config c1 = config(1), c3 = config(3);
    loader *l1, *l3;
    assert_ok(loader_open(&c1, &l1));
    assert_ok(loader_open(&c3, &l3));
    assert_int_equal(loader_batches_per_epoch(l1), (int64_t)manifest_count(pretrain) / 4);
    epoch_dump a, b, r, e1;
    run_epoch(l1, 0, 0, &a);
    run_epoch(l3, 0, 0, &b);
    assert_int_equal(a.n, loader_batches_per_epoch(l1));
    for (int i = 0; i < a.n; i++)
        assert_same_batch(&a, i, &b, i);
    /* resuming at batch 2 gives batches 2.. of the same epoch */
    run_epoch(l3, 0, 2, &r);
    assert_int_equal(r.n, a.n - 2);
    for (int i = 0; i < r.n; i++)
        assert_same_batch(&a, i + 2, &r, i);
    /* another epoch: another order */
    run_epoch(l1, 1, 0, &e1);
    int differs = 0;
    for (int i = 0; i < a.n; i++)
        differs |= memcmp(a.items[i], e1.items[i], sizeof a.items[0]) != 0;
    assert_true(differs);
    /* every text starts with [CLS], is at most 25 tokens, is padded to the longest */
    bert_special_ids sp = bert_tokenizer_special_ids(tok);
    for (int i = 0; i < a.n; i++) {
        assert_true(a.len[i] >= 2 && a.len[i] <= 25);
        for (int s = 0; s < 4; s++) {
            assert_int_equal(a.ids[i][s * a.len[i]], sp.cls);
            for (int t = 0; t < a.len[i]; t++)
                assert_int_not_equal(a.ids[i][s * a.len[i] + t], sp.sep);
        }
    }
    loader_stats st = loader_get_stats(l1);
    assert_int_equal(st.skipped, 0);
    free_dump(&a), free_dump(&b), free_dump(&r), free_dump(&e1);
    loader_close(l1);
    loader_close(l3);
}

static void test_unreadable_images_are_skipped(void **state)
{
    (void)state;
    /* a manifest whose second item points at a missing file and third at a corrupt one */
    char json[4096], path[700], bad[700];
    snprintf(path, sizeof path, "%s/images/train/000000.png", data_dir);
    snprintf(bad, sizeof bad, "%s/not-an-image.png", test_tmpdir());
    FILE *f = fopen(bad, "w");
    fputs("definitely not a png", f);
    fclose(f);
    snprintf(json, sizeof json,
             "[{\"image\": \"%s\", \"caption\": \"a red circle\"},"
             " {\"image\": \"/nonexistent/x.png\", \"caption\": \"a blue square\"},"
             " {\"image\": \"%s\", \"caption\": [\"a green star\", \"a star\"]},"
             " {\"image\": \"%s\", \"caption\": \"a circle\"}]",
             path, bad, path);
    manifest *m;
    assert_ok(manifest_parse(&m, MANIFEST_PRETRAIN, json, strlen(json), "bad.json"));
    loader_config c = config(2);
    c.manifest = m;
    loader *l;
    assert_ok(loader_open(&c, &l));
    assert_ok(loader_start_epoch(l, 0, 0));
    loader_batch *b;
    assert_ok(loader_next(l, &b));
    assert_non_null(b);
    for (int i = 0; i < 4; i++) /* only readable items made it into the batch */
        assert_true(b->items[i] == 0 || b->items[i] == 3);
    loader_release(l, b);
    assert_ok(loader_next(l, &b));
    assert_null(b);
    loader_stats st = loader_get_stats(l);
    assert_true(st.skipped >= 2);
    assert_int_equal(st.samples, 4);
    loader_close(l);
    manifest_free(m);
}

static void test_bad_configuration(void **state)
{
    (void)state;
    loader_config c = config(1);
    c.batch = 1000;
    loader *l;
    assert_error(loader_open(&c, &l), ALBEF_ERR_INVALID, "fewer than one batch");
    c = config(0);
    assert_error(loader_open(&c, &l), ALBEF_ERR_INVALID, "workers");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_independent_of_workers_and_resumable),
        cmocka_unit_test(test_unreadable_images_are_skipped),
        cmocka_unit_test(test_bad_configuration),
    };
    return cmocka_run_group_tests_name("loader", tests, setup, teardown);
}
