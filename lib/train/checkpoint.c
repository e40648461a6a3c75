#include "train/checkpoint.h"

#include "core/error.h"
#include "core/log.h"
#include "io/pth.h"
#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPT_M "optimizer.exp_avg."
#define OPT_V "optimizer.exp_avg_sq."

static int set_meta_i64(safetensors_writer *w, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return safetensors_writer_set_metadata(w, key, buf);
}

static int get_meta_i64(const safetensors_file *st, const char *key, int64_t *v)
{
    const char *s = safetensors_metadata_get(st, key);
    char *end;
    if (!s)
        return albef_error(ALBEF_ERR_INVALID, "%s: no '%s' in the metadata (not a training checkpoint?)",
                           safetensors_path(st), key);
    long long x = strtoll(s, &end, 10);
    if (end == s || *end)
        return albef_error(ALBEF_ERR_INVALID, "%s: metadata '%s' is not an integer: \"%s\"", safetensors_path(st), key, s);
    *v = x;
    return ALBEF_OK;
}

static float *download(backend *be, const void *src, size_t n)
{
    float *h = malloc(sizeof(float) * (n ? n : 1));
    if (h)
        be->ops->download(be, h, src, sizeof(float) * n);
    return h;
}

int pretrain_checkpoint_save(const pretrainer *t, const char *path, const train_position *pos)
{
    backend *be = t->be;
    const param_set *ps = &t->online.params;
    int64_t E = t->cfg.embed_dim, Q = t->cfg.queue_size, ptr = 0;
    float *online = albef_model_download(&t->online), *mom = albef_model_download(&t->momentum);
    float *am = download(be, t->adam_m, ps->numel), *av = download(be, t->adam_v, ps->numel);
    float *iq = malloc(sizeof(float) * (size_t)(E * Q)), *tq = malloc(sizeof(float) * (size_t)(E * Q));
    char **names = calloc((size_t)ps->count * 2, sizeof(char *));
    safetensors_writer *w = NULL;
    char *config = config_to_json(&t->cfg);
    int rc = online && mom && am && av && iq && tq && names && config ? ALBEF_OK
                                                                    : albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
    rc = rc ? rc : pretrainer_get_queues(t, iq, tq, &ptr);
    rc = rc ? rc : safetensors_writer_init(&w);
    rc = rc ? rc : albef_model_add_tensors(&t->online, w, online);
    rc = rc ? rc : albef_model_add_tensors(&t->momentum, w, mom);
    rc = rc ? rc : safetensors_writer_add(w, "image_queue", DTYPE_F32, 2, TENSOR_SHAPE(E, Q), iq);
    rc = rc ? rc : safetensors_writer_add(w, "text_queue", DTYPE_F32, 2, TENSOR_SHAPE(E, Q), tq);
    rc = rc ? rc : safetensors_writer_add(w, "queue_ptr", DTYPE_I64, 1, TENSOR_SHAPE(1), &ptr);
    if (!rc && t->idx_queue)
        rc = safetensors_writer_add(w, "idx_queue", DTYPE_I64, 2, TENSOR_SHAPE(1, Q), t->idx_queue);
    for (int i = 0; i < ps->count && !rc; i++) {
        const param_info *p = &ps->items[i];
        if (p->alias_of >= 0)
            continue;
        size_t n = strlen(p->name) + 32;
        names[2 * i] = malloc(n);
        names[2 * i + 1] = malloc(n);
        if (!names[2 * i] || !names[2 * i + 1]) {
            rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        snprintf(names[2 * i], n, OPT_M "%s", p->name);
        snprintf(names[2 * i + 1], n, OPT_V "%s", p->name);
        rc = safetensors_writer_add(w, names[2 * i], DTYPE_F32, p->ndim, p->shape, am + p->offset);
        rc = rc ? rc : safetensors_writer_add(w, names[2 * i + 1], DTYPE_F32, p->ndim, p->shape, av + p->offset);
    }
    char rng_hex[80];
    snprintf(rng_hex, sizeof rng_hex, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, t->rng.s[0],
             t->rng.s[1], t->rng.s[2], t->rng.s[3]);
    rc = rc ? rc : safetensors_writer_set_metadata(w, "format", "albef");
    rc = rc ? rc : safetensors_writer_set_metadata(w, "config", config);
    rc = rc ? rc : set_meta_i64(w, "train.epoch", pos->epoch);
    rc = rc ? rc : set_meta_i64(w, "train.batch", pos->batch);
    rc = rc ? rc : set_meta_i64(w, "train.step", pos->step);
    rc = rc ? rc : set_meta_i64(w, "train.adam_step", t->adam_step);
    rc = rc ? rc : set_meta_i64(w, "train.forward_passes", (int64_t)t->step_count);
    rc = rc ? rc : set_meta_i64(w, "train.batch_size", t->opt.batch);
    rc = rc ? rc : set_meta_i64(w, "train.seed", (int64_t)t->opt.seed);
    rc = rc ? rc : safetensors_writer_set_metadata(w, "train.rng", rng_hex);
    if (!rc && t->vocab_text)
        rc = safetensors_writer_set_metadata(w, "vocab", t->vocab_text);
    rc = rc ? rc : safetensors_writer_write(w, path);
    safetensors_writer_free(w);
    for (int i = 0; names && i < 2 * ps->count; i++)
        free(names[i]);
    free(names), free(online), free(mom), free(am), free(av), free(iq), free(tq), free(config);
    return rc;
}

int checkpoint_read_config(const char *path, albef_config *cfg)
{
    safetensors_file *st;
    int rc = safetensors_open(path, &st);
    if (rc)
        return rc;
    const char *json = safetensors_metadata_get(st, "config");
    if (json)
        rc = config_parse(json, path, cfg);
    else
        rc = albef_error(ALBEF_ERR_INVALID, "%s: no 'config' in the metadata", path);
    safetensors_close(st);
    return rc;
}

static int load_queues(pretrainer *t, safetensors_file *st, int required)
{
    int64_t E = t->cfg.embed_dim, Q = t->cfg.queue_size, ptr = 0;
    const safetensors_tensor *a = safetensors_find(st, "image_queue"), *b = safetensors_find(st, "text_queue");
    if (!a || !b || !safetensors_find(st, "queue_ptr")) {
        if (required)
            return albef_error(ALBEF_ERR_INVALID, "%s: no image_queue/text_queue/queue_ptr", safetensors_path(st));
        return ALBEF_OK;
    }
    if (a->ndim != 2 || a->shape[0] != E || a->shape[1] != Q || b->ndim != 2 || b->shape[0] != E || b->shape[1] != Q) {
        if (required)
            return albef_error(ALBEF_ERR_INVALID, "%s: the queues are not (%lld, %lld) as the configuration says",
                               safetensors_path(st), (long long)E, (long long)Q);
        log_info("%s: queues of another size left out; starting from random queues", safetensors_path(st));
        return ALBEF_OK;
    }
    float *iq = malloc(sizeof(float) * (size_t)(E * Q)), *tq = malloc(sizeof(float) * (size_t)(E * Q));
    int rc = iq && tq ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "out of memory");
    rc = rc ? rc : safetensors_read_f32(st, "image_queue", iq, (size_t)(E * Q));
    rc = rc ? rc : safetensors_read_f32(st, "text_queue", tq, (size_t)(E * Q));
    rc = rc ? rc : safetensors_read_raw(st, "queue_ptr", DTYPE_I64, &ptr, 1);
    if (!rc && ptr % t->opt.batch) {
        if (required)
            rc = albef_error(ALBEF_ERR_INVALID, "%s: queue_ptr %lld is not a multiple of the batch %d",
                             safetensors_path(st), (long long)ptr, t->opt.batch);
        else
            ptr = 0; /* another batch size: restart the ring at 0 */
    }
    rc = rc ? rc : pretrainer_set_queues(t, iq, tq, ptr);
    free(iq), free(tq);
    /* the retrieval task's image indices of the queue entries */
    if (!rc && t->idx_queue) {
        const safetensors_tensor *iqt = safetensors_find(st, "idx_queue");
        if (iqt && iqt->numel == (uint64_t)Q)
            rc = safetensors_read_raw(st, "idx_queue", DTYPE_I64, t->idx_queue, (size_t)Q);
        else if (required)
            rc = albef_error(ALBEF_ERR_INVALID, "%s: no idx_queue of %lld entries", safetensors_path(st), (long long)Q);
        else
            for (int64_t q = 0; q < Q; q++)
                t->idx_queue[q] = -100;
    }
    return rc;
}

static int momentum_complete(const pretrainer *t, const safetensors_file *st)
{
    const param_set *pm = &t->momentum.params;
    for (int i = 0; i < pm->count; i++) {
        if (pm->items[i].alias_of >= 0)
            continue;
        if (!albef_model_find_tensor(st, pm->items[i].name))
            return 0;
    }
    return 1;
}

int pretrain_checkpoint_init(pretrainer *t, const char *path)
{
    load_report rep;
    int rc = albef_model_load(&t->online, path, 1, &rep);
    if (rc)
        return rc;
    safetensors_file *st;
    rc = weights_open(path, &st);
    if (rc)
        return rc;
    if (momentum_complete(t, st)) {
        rc = albef_model_load(&t->momentum, path, 1, &rep);
        log_info("%s: momentum model loaded", path);
    } else {
        pretrainer_sync_momentum(t);
        log_info("%s: no momentum model; copied from the online weights", path);
    }
    rc = rc ? rc : load_queues(t, st, 0);
    safetensors_close(st);
    return rc;
}

int pretrain_checkpoint_resume(pretrainer *t, const char *path, train_position *pos)
{
    safetensors_file *st;
    int rc = safetensors_open(path, &st);
    if (rc)
        return rc;
    int64_t epoch = 0, batch = 0, step = 0, adam_step = 0, passes = 0, bs = 0;
    rc = get_meta_i64(st, "train.epoch", &epoch);
    rc = rc ? rc : get_meta_i64(st, "train.batch", &batch);
    rc = rc ? rc : get_meta_i64(st, "train.step", &step);
    rc = rc ? rc : get_meta_i64(st, "train.adam_step", &adam_step);
    rc = rc ? rc : get_meta_i64(st, "train.forward_passes", &passes);
    rc = rc ? rc : get_meta_i64(st, "train.batch_size", &bs);
    if (!rc && bs != t->opt.batch)
        rc = albef_error(ALBEF_ERR_INVALID, "%s: saved with batch size %lld; this run uses %d", path, (long long)bs,
                         t->opt.batch);
    const char *hex = safetensors_metadata_get(st, "train.rng");
    if (!rc && (!hex || strlen(hex) != 64))
        rc = albef_error(ALBEF_ERR_INVALID, "%s: 'train.rng' missing or malformed", path);
    load_report rep;
    rc = rc ? rc : albef_model_load(&t->online, path, 1, &rep);
    rc = rc ? rc : albef_model_load(&t->momentum, path, 1, &rep);
    rc = rc ? rc : load_queues(t, st, 1);
    /* optimizer moments */
    const param_set *ps = &t->online.params;
    float *am = NULL, *av = NULL;
    if (!rc) {
        am = calloc(ps->numel ? ps->numel : 1, sizeof(float));
        av = calloc(ps->numel ? ps->numel : 1, sizeof(float));
        if (!am || !av)
            rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < ps->count && !rc; i++) {
        const param_info *p = &ps->items[i];
        if (p->alias_of >= 0)
            continue;
        char name[320];
        snprintf(name, sizeof name, OPT_M "%s", p->name);
        rc = safetensors_read_f32_shape(st, name, am + p->offset, p->ndim, p->shape);
        snprintf(name, sizeof name, OPT_V "%s", p->name);
        rc = rc ? rc : safetensors_read_f32_shape(st, name, av + p->offset, p->ndim, p->shape);
    }
    if (!rc) {
        t->be->ops->upload(t->be, t->adam_m, am, ps->numel * sizeof(float));
        t->be->ops->upload(t->be, t->adam_v, av, ps->numel * sizeof(float));
        for (int k = 0; k < 4; k++) {
            char part[17];
            memcpy(part, hex + 16 * k, 16);
            part[16] = '\0';
            t->rng.s[k] = strtoull(part, NULL, 16);
        }
        t->adam_step = adam_step;
        t->step_count = (uint64_t)passes;
        pos->epoch = (int)epoch;
        pos->batch = batch;
        pos->step = step;
    }
    free(am), free(av);
    safetensors_close(st);
    return rc;
}
