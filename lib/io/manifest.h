/* Manifests: the JSON annotation files ALBEF's datasets read (spec §6.1),
 * taken as they are. Loading keeps no JSON tree: every string is copied into
 * one arena and each item becomes a few integers in per-field columns, so a
 * 12M-item pretraining manifest costs its strings plus ~20 bytes an item.
 * The top-level list is walked one element at a time and only that element
 * is handed to cJSON, which keeps peak memory near the size of the result.
 *
 * Every kind may be loaded from several files at once, concatenated in order
 * (ALBEF passes a list of files); dense image indices run across all of them.
 * Strings are stored as given (non-UTF-8 bytes pass through); image paths are
 * not joined with a root here, see manifest_join_path.
 *
 * Errors name the file, the 0-based item index within that file and the field:
 *   coco_test.json: item 12: 'caption' must be a list of strings, got "a dog"
 *   nlvr_dev.json: item 3: 'label' must be "True" or "False", got "yes"
 *   vqa_train.json:1:5031: invalid JSON in item 17
 *
 * What each kind reads, and what the accessors give for it:
 *
 *   kind              fields read                      text(s)      other
 *   pretrain          image, caption: str | [str]      the captions  -
 *   retrieval-train   image, caption: str, image_id    the caption   image_idx
 *   retrieval-eval    image, caption: [str]            the captions  text ids
 *   vqa-train         question, answer, image,         the question  answers,
 *                     dataset, question_id (optional)                dataset
 *   vqa-test          question_id, question, image,    the question  question_id,
 *                     dataset (optional, "vqa")                      dataset
 *   answer-list       a list of strings                the answer    -
 *   nlvr              images: [l, r], sentence, label  the sentence  label, 2 images
 *   ve                image (no extension), sentence,  the sentence  label
 *                     label
 *   grounding-train   image, text                      the text      image_idx
 *   grounding-eval    image, text, ref_id              the text      ref_id
 *
 * Other fields are ignored. Accessors take an item index below
 * manifest_count(); out of range they return NULL, 0 or -1. */
#ifndef ALBEF_IO_MANIFEST_H
#define ALBEF_IO_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

enum manifest_kind {
    MANIFEST_PRETRAIN = 0,
    MANIFEST_RETRIEVAL_TRAIN, /* Karpathy train: one item per caption */
    MANIFEST_RETRIEVAL_EVAL,  /* Karpathy val/test: one item per image */
    MANIFEST_VQA_TRAIN,       /* vqa_train.json, vqa_val.json, vg_qa.json */
    MANIFEST_VQA_TEST,        /* vqa_test.json */
    MANIFEST_ANSWER_LIST,     /* answer_list.json */
    MANIFEST_NLVR,            /* nlvr_{train,dev,test}.json */
    MANIFEST_VE,              /* ve_{train,dev,test}.json (SNLI-VE) */
    MANIFEST_GROUNDING_TRAIN, /* refcoco+_train.json */
    MANIFEST_GROUNDING_EVAL,  /* refcoco+_{val,test}.json */
    MANIFEST_KIND_COUNT
};

/* Which image root a VQA item's path is relative to (ALBEF's vqa_root, vg_root). */
enum manifest_dataset { MANIFEST_DATASET_NONE = 0, MANIFEST_DATASET_VQA, MANIFEST_DATASET_VG };

typedef struct manifest manifest;

/* "pretrain", "retrieval-train", ... as in the table above; NULL when out of range. */
const char *manifest_kind_name(enum manifest_kind kind);
/* The inverse, for command-line flags; ALBEF_ERR_INVALID lists the names. */
int manifest_kind_from_name(const char *name, enum manifest_kind *kind);

/* Loads and concatenates n_paths files of one kind. *out is NULL on failure. */
int manifest_load(manifest **out, enum manifest_kind kind, const char *const *paths, size_t n_paths);

/* Same, from JSON text in memory (need not be NUL-terminated); `name` stands
 * for the file in error messages. */
int manifest_parse(manifest **out, enum manifest_kind kind, const char *json, size_t len, const char *name);

void manifest_free(manifest *m);

enum manifest_kind manifest_get_kind(const manifest *m);
size_t manifest_count(const manifest *m);
/* Bytes held by the arena and the columns. */
size_t manifest_bytes(const manifest *m);

/* The item's image path as written in the file; for ve with ".jpg" appended,
 * as ALBEF does; for nlvr images[0]. NULL for answer-list. */
const char *manifest_image(const manifest *m, size_t i);
/* nlvr: images[1]; NULL for every other kind. */
const char *manifest_second_image(const manifest *m, size_t i);

/* Texts: captions, questions, sentences, referring expressions or answers
 * (answer-list), see the table. Every item has at least one; only pretrain
 * and retrieval-eval items may have several. A data loader picks one of a
 * pretrain item's captions at random itself. */
size_t manifest_text_count(const manifest *m, size_t i);
const char *manifest_text(const manifest *m, size_t i, size_t j);

/* Texts numbered across the whole manifest in file order, as ALBEF's
 * retrieval evaluation numbers captions: item i owns the ids
 * manifest_text_first(m, i) .. + manifest_text_count(m, i) - 1 (img2txt),
 * and manifest_text_item(m, t) is the item that owns text t (txt2img). */
size_t manifest_text_total(const manifest *m);
size_t manifest_text_first(const manifest *m, size_t i);
const char *manifest_text_by_id(const manifest *m, size_t t);
size_t manifest_text_item(const manifest *m, size_t t); /* SIZE_MAX when t is out of range */

/* retrieval-train: dense index of image_id, 0.. in order of first appearance
 * (strings and numbers are different ids; 1 and 1.0 are the same, as in
 * Python). grounding-train: the same over the basenames of `image`.
 * -1 for other kinds. manifest_image_count is the number of such indices
 * (0 for other kinds). */
int64_t manifest_image_idx(const manifest *m, size_t i);
size_t manifest_image_count(const manifest *m);

/* nlvr: "True" -> 1, "False" -> 0. ve: entailment 2, neutral 1,
 * contradiction 0. -1 for other kinds. */
int manifest_label(const manifest *m, size_t i);

/* vqa-train and vqa-test: question_id (-1 when a vqa-train item has none).
 * grounding-eval: ref_id. -1 for other kinds. */
int64_t manifest_question_id(const manifest *m, size_t i);
int64_t manifest_ref_id(const manifest *m, size_t i);

/* vqa-train, vqa-test: the item's "dataset"; MANIFEST_DATASET_NONE otherwise. */
enum manifest_dataset manifest_dataset(const manifest *m, size_t i);

/* vqa-train: the unique answers in order of first appearance, each weighted
 * count / len(answer) for "vqa" items; a "vg" item's single answer weighs 0.5.
 * 0 answers for other kinds. */
size_t manifest_answer_count(const manifest *m, size_t i);
const char *manifest_answer(const manifest *m, size_t i, size_t j);
float manifest_answer_weight(const manifest *m, size_t i, size_t j);

/* Writes root + "/" + path into buf (cap bytes), as os.path.join does: an
 * absolute path, or an empty or NULL root, gives the path unchanged.
 * ALBEF_ERR_INVALID when the result does not fit. */
int manifest_join_path(char *buf, size_t cap, const char *root, const char *path);

#endif
