#include "data/loader.h"

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "text/caption.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_DELIVERED };

typedef struct {
    loader_batch b;
    enum slot_state state;
    int rc;
    char err[512];
} slot;

struct loader {
    loader_config cfg;
    int64_t n_items, per_epoch;
    int64_t *order;
    int epoch;
    int64_t next_claim, next_deliver, end;
    slot *slots;
    int filling;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready, cv_idle;
    pthread_t *threads;
    int n_threads;
    loader_stats stats;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t mix3(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t x = a ^ (b * 0x9e3779b97f4a7c15ull) ^ (c * 0xc2b2ae3d27d4eb4full);
    return splitmix64(&x);
}

/* One sample into slot position j: caption, pre_caption, image, transform.
 * The caption text is returned in *text (malloc'ed). */
static int fill_sample(loader *l, int epoch, int64_t pos, float *pixels, char **text, int64_t *item_out)
{
    const loader_config *c = &l->cfg;
    int64_t item = l->order[pos];
    char path[4096];
    for (int attempt = 0; attempt < 100; attempt++) {
        rng_state r;
        rng_seed_stream(&r, c->seed, mix3((uint64_t)epoch, (uint64_t)pos, (uint64_t)attempt));
        size_t n_caps = manifest_text_count(c->manifest, (size_t)item);
        const char *caption = manifest_text(c->manifest, (size_t)item, n_caps > 1 ? rng_below(&r, (uint32_t)n_caps) : 0);
        const char *image = manifest_image(c->manifest, (size_t)item);
        int rc = manifest_join_path(path, sizeof path, c->image_root, image);
        image_u8 img = {0};
        if (!rc)
            rc = image_load(path, &img);
        if (!rc)
            rc = transform_apply(&c->transform, &img, &r, pixels);
        image_free(&img);
        if (!rc) {
            rc = pre_caption_alloc(caption, strlen(caption), c->max_words, text, NULL);
            if (rc)
                return rc;
            *item_out = item;
            return ALBEF_OK;
        }
        log_warn("skipping item %lld: %s", (long long)item, albef_errmsg());
        pthread_mutex_lock(&l->mu);
        l->stats.skipped++;
        pthread_mutex_unlock(&l->mu);
        /* a replacement drawn from (seed, epoch, position, attempt) */
        item = (int64_t)(mix3(c->seed ^ 0x5bd1e995ull, (uint64_t)epoch * 1000003u + (uint64_t)pos, (uint64_t)attempt) %
                         (uint64_t)l->n_items);
    }
    return albef_error(ALBEF_ERR_IO, "100 images in a row could not be read (last: %s)", path);
}

static int fill_batch(loader *l, int epoch, int64_t k, loader_batch *b)
{
    const loader_config *c = &l->cfg;
    int B = c->batch, R = c->transform.res;
    char *texts[B];
    memset(texts, 0, sizeof texts);
    int rc = ALBEF_OK;
    for (int j = 0; j < B && !rc; j++)
        rc = fill_sample(l, epoch, k * B + j, b->images + (size_t)j * 3 * R * R, &texts[j], &b->items[j]);
    for (int j = 0; j < B && !rc; j++)
        b->idx[j] = manifest_get_kind(c->manifest) == MANIFEST_RETRIEVAL_TRAIN
                        ? manifest_image_idx(c->manifest, (size_t)b->items[j])
                        : b->items[j];
    if (!rc) {
        bert_encode_options opt = bert_encode_options_default();
        opt.padding = BERT_PADDING_LONGEST;
        opt.truncation = 1;
        opt.max_length = (size_t)c->max_tokens;
        int32_t lengths[B];
        size_t len = 0;
        rc = bert_tokenizer_encode_batch(c->tokenizer, (const char *const *)texts, NULL, (size_t)B, &opt,
                                         (size_t)c->max_tokens, b->ids, b->mask, lengths, &len);
        b->len = (int)len;
    }
    for (int j = 0; j < B; j++)
        free(texts[j]);
    b->index = k;
    return rc;
}

static void *worker_main(void *arg)
{
    loader *l = arg;
    int P = l->cfg.prefetch;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        int64_t k = l->next_claim;
        slot *s = k < l->end ? &l->slots[k % P] : NULL;
        if (!s || s->state != SLOT_FREE || k >= l->next_deliver + P) {
            pthread_cond_wait(&l->cv_work, &l->mu);
            continue;
        }
        l->next_claim++;
        s->state = SLOT_FILLING;
        l->filling++;
        int epoch = l->epoch;
        pthread_mutex_unlock(&l->mu);
        int rc = fill_batch(l, epoch, k, &s->b);
        char err[512] = "";
        if (rc)
            snprintf(err, sizeof err, "%s", albef_errmsg());
        pthread_mutex_lock(&l->mu);
        s->rc = rc;
        memcpy(s->err, err, sizeof err);
        s->state = SLOT_READY;
        l->filling--;
        pthread_cond_broadcast(&l->cv_ready);
        pthread_cond_broadcast(&l->cv_idle);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int loader_open(const loader_config *cfg, loader **out)
{
    *out = NULL;
    enum manifest_kind kind = manifest_get_kind(cfg->manifest);
    if (kind != MANIFEST_PRETRAIN && kind != MANIFEST_RETRIEVAL_TRAIN)
        return albef_error(ALBEF_ERR_INVALID, "the training loader needs a pre-training or retrieval-train manifest");
    if (cfg->batch < 1 || cfg->workers < 1 || cfg->prefetch < 1 || cfg->max_tokens < 2)
        return albef_error(ALBEF_ERR_INVALID, "loader: batch, workers, prefetch must be >= 1, max_tokens >= 2");
    int rc = transform_params_check(&cfg->transform);
    if (rc)
        return rc;
    loader *l = calloc(1, sizeof *l);
    if (!l)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    l->cfg = *cfg;
    l->n_items = (int64_t)manifest_count(cfg->manifest);
    l->per_epoch = l->n_items / cfg->batch;
    if (l->per_epoch == 0) {
        int64_t n = l->n_items;
        free(l);
        return albef_error(ALBEF_ERR_INVALID, "the manifest has %lld items, fewer than one batch of %d",
                           (long long)n, cfg->batch);
    }
    l->order = malloc(sizeof(int64_t) * (size_t)l->n_items);
    l->slots = calloc((size_t)cfg->prefetch, sizeof *l->slots);
    l->threads = calloc((size_t)cfg->workers, sizeof *l->threads);
    if (!l->order || !l->slots || !l->threads) {
        loader_close(l);
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    }
    size_t px = (size_t)cfg->batch * 3 * cfg->transform.res * cfg->transform.res;
    for (int i = 0; i < cfg->prefetch; i++) {
        loader_batch *b = &l->slots[i].b;
        b->batch = cfg->batch;
        b->res = cfg->transform.res;
        b->images = malloc(sizeof(float) * px);
        b->ids = malloc(sizeof(int32_t) * (size_t)cfg->batch * cfg->max_tokens);
        b->mask = malloc(sizeof(int32_t) * (size_t)cfg->batch * cfg->max_tokens);
        b->items = malloc(sizeof(int64_t) * (size_t)cfg->batch);
        b->idx = malloc(sizeof(int64_t) * (size_t)cfg->batch);
        if (!b->images || !b->ids || !b->mask || !b->items || !b->idx) {
            loader_close(l);
            return albef_error(ALBEF_ERR_NOMEM, "out of memory for %d prefetched batches", cfg->prefetch);
        }
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    pthread_cond_init(&l->cv_idle, NULL);
    l->end = 0; /* no epoch yet */
    for (int i = 0; i < cfg->workers; i++) {
        if (pthread_create(&l->threads[i], NULL, worker_main, l) != 0) {
            loader_close(l);
            return albef_error(ALBEF_ERR_NOMEM, "cannot start loader thread %d", i);
        }
        l->n_threads++;
    }
    *out = l;
    return ALBEF_OK;
}

void loader_close(loader *l)
{
    if (!l)
        return;
    if (l->n_threads) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv_work);
        pthread_mutex_unlock(&l->mu);
        for (int i = 0; i < l->n_threads; i++)
            pthread_join(l->threads[i], NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv_work);
        pthread_cond_destroy(&l->cv_ready);
        pthread_cond_destroy(&l->cv_idle);
    }
    for (int i = 0; l->slots && i < l->cfg.prefetch; i++) {
        free(l->slots[i].b.images);
        free(l->slots[i].b.ids);
        free(l->slots[i].b.mask);
        free(l->slots[i].b.items);
        free(l->slots[i].b.idx);
    }
    free(l->slots);
    free(l->threads);
    free(l->order);
    free(l);
}

int64_t loader_batches_per_epoch(const loader *l) { return l->per_epoch; }

int loader_start_epoch(loader *l, int epoch, int64_t first)
{
    if (first < 0 || first > l->per_epoch)
        return albef_error(ALBEF_ERR_INVALID, "batch %lld is outside the epoch's %lld batches", (long long)first,
                           (long long)l->per_epoch);
    pthread_mutex_lock(&l->mu);
    l->end = 0; /* nothing more to claim while the epoch changes */
    while (l->filling)
        pthread_cond_wait(&l->cv_idle, &l->mu);
    for (int i = 0; i < l->cfg.prefetch; i++)
        l->slots[i].state = SLOT_FREE;
    rng_state r;
    rng_seed_stream(&r, l->cfg.seed, 0x6f726465ull + (uint64_t)epoch);
    for (int64_t i = 0; i < l->n_items; i++)
        l->order[i] = i;
    for (int64_t i = l->n_items - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_u64(&r) % (uint64_t)(i + 1));
        int64_t t = l->order[i];
        l->order[i] = l->order[j];
        l->order[j] = t;
    }
    l->epoch = epoch;
    l->next_claim = l->next_deliver = first;
    l->end = l->per_epoch;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return ALBEF_OK;
}

int loader_next(loader *l, loader_batch **out)
{
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    int64_t k = l->next_deliver;
    if (k >= l->end) {
        pthread_mutex_unlock(&l->mu);
        return ALBEF_OK;
    }
    slot *s = &l->slots[k % l->cfg.prefetch];
    double t0 = now_seconds();
    while (!(s->state == SLOT_READY && s->b.index == k))
        pthread_cond_wait(&l->cv_ready, &l->mu);
    l->stats.wait_seconds += now_seconds() - t0;
    l->next_deliver++;
    s->state = SLOT_DELIVERED;
    int rc = s->rc;
    if (rc) {
        albef_error(rc, "%s", s->err);
    } else {
        l->stats.samples += s->b.batch;
        *out = &s->b;
    }
    if (rc)
        s->state = SLOT_FREE;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void loader_release(loader *l, loader_batch *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->cfg.prefetch; i++)
        if (&l->slots[i].b == b)
            l->slots[i].state = SLOT_FREE;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
}

loader_stats loader_get_stats(const loader *l) { return l->stats; }
