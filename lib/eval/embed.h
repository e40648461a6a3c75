/* Embedding image files and captions in batches through the public API:
 * what indexing (albef-retrieve index) and exporting embeddings
 * (albef-export embed) share. */
#ifndef ALBEF_EVAL_EMBED_H
#define ALBEF_EVAL_EMBED_H

#include "albef.h"

#include <stddef.h>

/* Images to embed, as (id, path) pairs: ids are what the manifest or the
 * folder calls them, paths where they are read from. */
typedef struct {
    char **ids, **paths;
    int n;
} image_list;

/* The .jpg/.jpeg/.png files of a folder, sorted by name. */
int image_list_dir(image_list *l, const char *dir);
/* The distinct images of a manifest (any ALBEF kind with "image"), in its
 * order; relative paths are under image_root (NULL: as written). */
int image_list_manifest(image_list *l, const char *manifest_path, const char *image_root);
void image_list_free(image_list *l);

typedef void (*embed_progress_fn)(size_t done, size_t total, void *user);

/* Decodes, resizes (the test transform) and embeds n image files, `batch`
 * at a time: feat (n, E) and tokens (n, T, Cv) and cls (n, Cv), the
 * unprojected [CLS] features; each may be NULL. */
int embed_image_paths(albef_ctx *ctx, char *const *paths, int n, int batch, float *feat, float *tokens, float *cls,
                      embed_progress_fn progress, void *user);

/* Captions through pre_caption (max_words) and the tokenizer (padded and
 * truncated to len tokens), embedded `batch` at a time: feat (n, E) and
 * cls (n, H), the unprojected [CLS] features; either may be NULL. */
struct bert_tokenizer;
int embed_captions(albef_ctx *ctx, const struct bert_tokenizer *tok, const char *const *texts, int n, int max_words,
                   int len, int batch, float *feat, float *cls);

/* The tokenizer of `vocab` (a vocab.txt), else the vocabulary stored in the
 * checkpoint's metadata ("vocab"). */
int embed_load_tokenizer(const char *vocab, const char *checkpoint, struct bert_tokenizer **tok);

#endif
