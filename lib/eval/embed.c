#include "eval/embed.h"

#include "io/image.h"
#include "io/pth.h"
#include "io/manifest.h"
#include "text/caption.h"
#include "text/tokenizer.h"
#include "vision/transform.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int has_image_suffix(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Paths for the ids, under root. */
static int join_paths(image_list *l, const char *root, const char *source)
{
    char path[4096];
    int rc = ALBEF_OK;
    l->paths = calloc((size_t)l->n + 1, sizeof(char *));
    if (!l->paths)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < l->n; i++) {
        rc = manifest_join_path(path, sizeof path, root, l->ids[i]);
        if (!rc && !(l->paths[i] = strdup(path)))
            rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
    }
    if (!rc && l->n == 0)
        rc = albef_error(ALBEF_ERR_INVALID, "%s: no images", source);
    return rc;
}

int image_list_dir(image_list *l, const char *dir)
{
    *l = (image_list){0};
    DIR *d = opendir(dir);
    if (!d)
        return albef_error(ALBEF_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    int cap = 0, rc = ALBEF_OK;
    struct dirent *e;
    while ((e = readdir(d)) && !rc) {
        if (e->d_name[0] == '.' || !has_image_suffix(e->d_name))
            continue;
        if (l->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **ni = realloc(l->ids, sizeof(char *) * (size_t)cap);
            if (!ni) {
                rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
                break;
            }
            l->ids = ni;
        }
        if (!(l->ids[l->n] = strdup(e->d_name)))
            rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
        else
            l->n++;
    }
    closedir(d);
    if (!rc)
        qsort(l->ids, (size_t)l->n, sizeof(char *), cmp_str);
    return rc ? rc : join_paths(l, dir, dir);
}

int image_list_manifest(image_list *l, const char *manifest_path, const char *image_root)
{
    *l = (image_list){0};
    manifest *m = NULL;
    enum manifest_kind kinds[] = {MANIFEST_RETRIEVAL_EVAL, MANIFEST_PRETRAIN, MANIFEST_RETRIEVAL_TRAIN};
    const char *mp[1] = {manifest_path};
    for (int k = 0; k < 3 && !m; k++)
        if (manifest_load(&m, kinds[k], mp, 1))
            m = NULL;
    if (!m)
        return manifest_load(&m, MANIFEST_RETRIEVAL_EVAL, mp, 1);
    /* distinct images, in the manifest's order (captions of one image are
     * listed together, so looking a few back suffices) */
    int rc = ALBEF_OK;
    l->ids = calloc(manifest_count(m) + 1, sizeof(char *));
    for (size_t i = 0; l->ids && !rc && i < manifest_count(m); i++) {
        const char *img = manifest_image(m, i);
        int seen = 0;
        for (int j = l->n - 1; j >= 0 && j >= l->n - 8 && !seen; j--)
            seen = !strcmp(l->ids[j], img);
        if (seen)
            continue;
        if (!(l->ids[l->n] = strdup(img)))
            rc = albef_error(ALBEF_ERR_NOMEM, "out of memory");
        else
            l->n++;
    }
    manifest_free(m);
    if (!l->ids)
        return albef_error(ALBEF_ERR_NOMEM, "out of memory");
    return rc ? rc : join_paths(l, image_root, manifest_path);
}

void image_list_free(image_list *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->ids[i]);
        if (l->paths)
            free(l->paths[i]);
    }
    free(l->ids);
    free(l->paths);
    *l = (image_list){0};
}

int embed_image_paths(albef_ctx *ctx, char *const *paths, int n, int batch, float *feat, float *tokens, float *cls,
                      embed_progress_fn progress, void *user)
{
    int R = albef_image_res(ctx), T = albef_image_tokens(ctx), Cv = albef_vision_width(ctx), E = albef_embed_dim(ctx);
    float *pixels = malloc(sizeof(float) * (size_t)batch * 3 * R * R);
    float *feat_b = malloc(sizeof(float) * (size_t)batch * E);
    /* the [CLS] rows come out of the batch's tokens when all tokens are not kept */
    float *tok_b = cls && !tokens ? malloc(sizeof(float) * (size_t)batch * T * Cv) : NULL;
    transform_params tp = transform_params_test(R);
    int rc = pixels && feat_b && (!cls || tokens || tok_b) ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i += batch) {
        int b = n - i < batch ? n - i : batch;
        for (int j = 0; j < b && !rc; j++) {
            image_u8 img = {0};
            rc = image_load(paths[i + j], &img);
            rc = rc ? rc : transform_apply(&tp, &img, NULL, pixels + (size_t)j * 3 * R * R);
            image_free(&img);
        }
        float *tok = tokens ? tokens + (size_t)i * T * Cv : tok_b;
        rc = rc ? rc : albef_embed_images(ctx, pixels, b, feat ? feat + (size_t)i * E : feat_b, tok);
        for (int j = 0; !rc && cls && j < b; j++)
            memcpy(cls + (size_t)(i + j) * Cv, tok + (size_t)j * T * Cv, sizeof(float) * (size_t)Cv);
        if (!rc && progress)
            progress((size_t)(i + b), (size_t)n, user);
    }
    free(pixels), free(feat_b), free(tok_b);
    return rc;
}

int embed_captions(albef_ctx *ctx, const bert_tokenizer *tok, const char *const *texts, int n, int max_words, int len,
                   int batch, float *feat, float *cls)
{
    int E = albef_embed_dim(ctx), H = albef_text_width(ctx);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)batch * len), *mask = malloc(sizeof(int32_t) * (size_t)batch * len);
    int32_t *lengths = malloc(sizeof(int32_t) * (size_t)batch);
    float *feat_b = malloc(sizeof(float) * (size_t)batch * E);
    float *tok_b = cls ? malloc(sizeof(float) * (size_t)batch * len * H) : NULL;
    char **clean = calloc((size_t)batch, sizeof(char *));
    int rc = ids && mask && lengths && feat_b && (!cls || tok_b) && clean
                 ? ALBEF_OK
                 : albef_error(ALBEF_ERR_NOMEM, "out of memory");
    bert_encode_options eo = bert_encode_options_default();
    eo.padding = BERT_PADDING_MAX_LENGTH;
    eo.truncation = 1;
    eo.max_length = (size_t)len;
    for (int i = 0; i < n && !rc; i += batch) {
        int b = n - i < batch ? n - i : batch;
        for (int j = 0; j < b && !rc; j++) {
            free(clean[j]);
            clean[j] = NULL;
            rc = pre_caption_alloc(texts[i + j], strlen(texts[i + j]), max_words, &clean[j], NULL);
        }
        size_t got = 0;
        rc = rc ? rc
                : bert_tokenizer_encode_batch(tok, (const char *const *)clean, NULL, (size_t)b, &eo, (size_t)len, ids,
                                              mask, lengths, &got);
        for (int k = 0; !rc && k < b * len; k++)
            if (ids[k] >= albef_vocab_size(ctx))
                rc = albef_error(ALBEF_ERR_INVALID, "the vocabulary has more tokens than the model (%d)",
                                 albef_vocab_size(ctx));
        rc = rc ? rc : albef_embed_texts(ctx, ids, mask, b, len, feat ? feat + (size_t)i * E : feat_b, tok_b);
        for (int j = 0; !rc && cls && j < b; j++)
            memcpy(cls + (size_t)(i + j) * H, tok_b + (size_t)j * len * H, sizeof(float) * (size_t)H);
    }
    for (int j = 0; clean && j < batch; j++)
        free(clean[j]);
    free(clean), free(ids), free(mask), free(lengths), free(feat_b), free(tok_b);
    return rc;
}

int embed_load_tokenizer(const char *vocab, const char *checkpoint, bert_tokenizer **tok)
{
    if (vocab)
        return bert_tokenizer_load(vocab, tok);
    safetensors_file *st;
    int rc = weights_open(checkpoint, &st);
    if (rc)
        return rc;
    const char *v = safetensors_metadata_get(st, "vocab");
    if (v)
        rc = bert_tokenizer_load_buffer(v, strlen(v), checkpoint, tok);
    else
        rc = albef_error(ALBEF_ERR_INVALID, "%s: no vocabulary stored in the checkpoint; give --vocab", checkpoint);
    safetensors_close(st);
    return rc;
}
