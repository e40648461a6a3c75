/* Writes the synthetic data set: images per split and one manifest per ALBEF
 * annotation file. Every random choice comes from a stream of its own,
 * (seed, split, image, purpose), so an image and its texts do not depend on
 * the other images or on the order of the work. Every label is checked
 * against the evaluator before it is written. */
#include "data/synth.h"

#include "core/error.h"
#include "core/file.h"
#include "core/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST, N_SPLITS };
static const char *const split_names[N_SPLITS] = {"train", "val", "test"};

/* Purposes of the random streams of one image; 0 is the scene itself. */
enum { STREAM_SCENE, STREAM_PRETRAIN, STREAM_RETRIEVAL, STREAM_VQA, STREAM_VG, STREAM_NLVR, STREAM_VE };

#define SYNTH_MAX_IMAGES 1000000
#define SYNTH_MAX_PER_IMAGE 10
#define SYNTH_VE_PER_IMAGE 3

static uint64_t scene_id(int split, int i) { return ((uint64_t)(split + 1) << 40) | (uint64_t)i; }

static void text_stream(rng_state *r, const synth_params *p, int split, int i, int purpose)
{
    rng_seed_stream(r, p->seed, scene_id(split, i) | ((uint64_t)purpose << 56));
}

static void scene_of(const synth_params *p, int split, int i, synth_scene *s)
{
    synth_scene_generate(p->seed, scene_id(split, i), s);
}

/* VQA question ids: unique across splits, like VQA v2's image_id * 1000 + k. */
static int64_t question_id(int split, int i, int k) { return (int64_t)(split + 1) * 100000000 + (int64_t)i * 10 + k; }

void synth_params_default(synth_params *p)
{
    memset(p, 0, sizeof *p);
    p->out_dir = "synth";
    p->seed = 0;
    p->n_train = 1000;
    p->n_val = 100;
    p->n_test = 100;
    p->image_size = 64;
    p->format = SYNTH_PNG;
    p->jpeg_quality = 95;
    p->captions_per_image = 5;
    p->questions_per_image = 3;
}

int synth_params_check(const synth_params *p)
{
    if (!p->out_dir || !*p->out_dir)
        return albef_error(ALBEF_ERR_INVALID, "synth: out_dir is empty");
    if (p->n_train < 1 || p->n_train > SYNTH_MAX_IMAGES)
        return albef_error(ALBEF_ERR_INVALID, "synth: n_train %d: expected 1..%d", p->n_train, SYNTH_MAX_IMAGES);
    if (p->n_val < 0 || p->n_val > SYNTH_MAX_IMAGES)
        return albef_error(ALBEF_ERR_INVALID, "synth: n_val %d: expected 0..%d", p->n_val, SYNTH_MAX_IMAGES);
    if (p->n_test < 0 || p->n_test > SYNTH_MAX_IMAGES)
        return albef_error(ALBEF_ERR_INVALID, "synth: n_test %d: expected 0..%d", p->n_test, SYNTH_MAX_IMAGES);
    if (p->image_size < SYNTH_MIN_SIZE || p->image_size > SYNTH_MAX_SIZE)
        return albef_error(ALBEF_ERR_INVALID, "synth: image_size %d: expected %d..%d", p->image_size, SYNTH_MIN_SIZE,
                           SYNTH_MAX_SIZE);
    if (p->format != SYNTH_PNG && p->format != SYNTH_JPEG)
        return albef_error(ALBEF_ERR_INVALID, "synth: format %d: expected SYNTH_PNG or SYNTH_JPEG", p->format);
    if (p->jpeg_quality < 1 || p->jpeg_quality > 100)
        return albef_error(ALBEF_ERR_INVALID, "synth: jpeg_quality %d: expected 1..100", p->jpeg_quality);
    if (p->captions_per_image < 1 || p->captions_per_image > SYNTH_MAX_PER_IMAGE)
        return albef_error(ALBEF_ERR_INVALID, "synth: captions_per_image %d: expected 1..%d", p->captions_per_image,
                           SYNTH_MAX_PER_IMAGE);
    if (p->threads < 0 || p->threads > SYNTH_MAX_THREADS)
        return albef_error(ALBEF_ERR_INVALID, "synth: threads %d: expected 0 (default) or 1..%d", p->threads,
                           SYNTH_MAX_THREADS);
    if (p->questions_per_image < 1 || p->questions_per_image > SYNTH_MAX_PER_IMAGE)
        return albef_error(ALBEF_ERR_INVALID, "synth: questions_per_image %d: expected 1..%d",
                           p->questions_per_image, SYNTH_MAX_PER_IMAGE);
    return ALBEF_OK;
}

static int split_size(const synth_params *p, int split)
{
    return split == SPLIT_TRAIN ? p->n_train : split == SPLIT_VAL ? p->n_val : p->n_test;
}

static const char *image_ext(int format) { return format == SYNTH_JPEG ? "jpg" : "png"; }

/* "train/000042.png", relative to the image root (out_dir/images). */
static void image_rel(char *buf, size_t cap, int split, int i, const char *ext)
{
    snprintf(buf, cap, "%s/%06d%s%s", split_names[split], i, ext ? "." : "", ext ? ext : "");
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return ALBEF_OK;
        return albef_error(ALBEF_ERR_IO, "%s: exists and is not a folder", path);
    }
    return albef_error(ALBEF_ERR_IO, "%s: cannot create folder: %s", path, strerror(errno));
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return albef_error(ALBEF_ERR_INVALID, "%s: path too long", path);
    for (char *c = buf + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        int rc = make_dir(buf);
        *c = '/';
        if (rc)
            return rc;
    }
    return make_dir(buf);
}

/* ---- JSON helpers: a failed allocation anywhere marks the whole build. ---- */

typedef struct {
    int failed;
} json_build;

static cJSON *add_object(json_build *b, cJSON *list)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(list, o)) {
        cJSON_Delete(o);
        b->failed = 1;
        return NULL;
    }
    return o;
}

static void add_string(json_build *b, cJSON *o, const char *key, const char *value)
{
    if (!o || !cJSON_AddStringToObject(o, key, value))
        b->failed = 1;
}

static void add_number(json_build *b, cJSON *o, const char *key, double value)
{
    if (!o || !cJSON_AddNumberToObject(o, key, value))
        b->failed = 1;
}

static void add_bool(json_build *b, cJSON *o, const char *key, int value)
{
    if (!o || !cJSON_AddBoolToObject(o, key, value))
        b->failed = 1;
}

static void add_strings(json_build *b, cJSON *o, const char *key, const char *const *values, int n)
{
    cJSON *list = o ? cJSON_AddArrayToObject(o, key) : NULL;
    if (!list) {
        b->failed = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateString(values[i]);
        if (!s || !cJSON_AddItemToArray(list, s)) {
            cJSON_Delete(s);
            b->failed = 1;
        }
    }
}

typedef struct {
    const synth_params *p;
    synth_summary *summary;
    char root_abs[PATH_MAX]; /* absolute out_dir/images */
} writer;

/* Writes json as out_dir/name and records its item count: the length of
 * the list, or `items` when json is not a list. */
static int write_manifest_counted(writer *w, const char *name, cJSON *json, json_build *b, int items)
{
    char path[PATH_MAX];
    if (cJSON_IsArray(json))
        items = cJSON_GetArraySize(json);
    if (b->failed) {
        cJSON_Delete(json);
        return albef_error(ALBEF_ERR_NOMEM, "%s/%s: out of memory building the manifest", w->p->out_dir, name);
    }
    if (snprintf(path, sizeof path, "%s/%s", w->p->out_dir, name) >= (int)sizeof path) {
        cJSON_Delete(json);
        return albef_error(ALBEF_ERR_INVALID, "%s/%s: path too long", w->p->out_dir, name);
    }
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (!text)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory printing the manifest", path);
    size_t len = strlen(text);
    char *with_newline = realloc(text, len + 2);
    if (!with_newline) {
        free(text);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
    }
    with_newline[len] = '\n';
    with_newline[len + 1] = '\0';
    int rc = file_write_all_atomic(path, with_newline, len + 1);
    free(with_newline);
    if (rc)
        return rc;
    synth_summary *s = w->summary;
    if (s->n_manifests < (int)(sizeof s->manifests / sizeof s->manifests[0])) {
        s->manifests[s->n_manifests].name = name;
        s->manifests[s->n_manifests].items = items;
        s->n_manifests++;
    }
    return ALBEF_OK;
}

static int write_manifest(writer *w, const char *name, cJSON *json, json_build *b)
{
    return write_manifest_counted(w, name, json, b, 0);
}

/* ---- text with its label checked ---- */

static int internal_error(const char *what, int split, int i, const char *text)
{
    return albef_error(ALBEF_ERR_INVALID, "synth: %s image %d: generated %s \"%s\" whose label the evaluator rejects",
                       split_names[split], i, what, text);
}

static int caption_text(const synth_scene *s, rng_state *r, int split, int i, char *buf)
{
    synth_claim c;
    synth_caption_claim(s, r, &c);
    int rc = synth_claim_text(&c, 1, r, buf, SYNTH_TEXT_MAX);
    if (rc)
        return rc;
    return synth_claim_holds(s, &c) == 1 ? ALBEF_OK : internal_error("caption", split, i, buf);
}

/* k captions, distinct where the scene allows. */
static int captions(const synth_scene *s, rng_state *r, int split, int i, int k, char (*out)[SYNTH_TEXT_MAX])
{
    for (int n = 0, tries = 0; n < k; tries++) {
        int rc = caption_text(s, r, split, i, out[n]);
        if (rc)
            return rc;
        int dup = 0;
        for (int m = 0; m < n; m++)
            dup |= strcmp(out[m], out[n]) == 0;
        if (!dup || tries >= 16 * k)
            n++;
    }
    return ALBEF_OK;
}

static int question_text(const synth_scene *s, rng_state *r, int split, int i, char *buf, const char **answer)
{
    synth_question q;
    synth_question_generate(s, r, &q);
    int rc = synth_question_text(&q, r, buf, SYNTH_TEXT_MAX);
    if (rc)
        return rc;
    *answer = synth_question_answer(s, &q);
    return *answer ? ALBEF_OK : internal_error("question", split, i, buf);
}

/* k questions, distinct where the scene allows. */
static int questions(const synth_scene *s, rng_state *r, int split, int i, int k, char (*out)[SYNTH_TEXT_MAX],
                     const char **answers)
{
    for (int n = 0, tries = 0; n < k; tries++) {
        int rc = question_text(s, r, split, i, out[n], &answers[n]);
        if (rc)
            return rc;
        int dup = 0;
        for (int m = 0; m < n; m++)
            dup |= strcmp(out[m], out[n]) == 0;
        if (!dup || tries >= 16 * k)
            n++;
    }
    return ALBEF_OK;
}

/* ---- images ---- */

/* Image files are independent, and each atomic write waits on fsync, so
 * several threads write them; which thread writes an image never changes
 * its bytes. */
typedef struct {
    writer *w;
    pthread_mutex_t lock;
    int next, done, total;
    int rc;            /* first failure */
    char message[512]; /* its message: errors live in thread-local storage */
} image_jobs;

static int split_of_job(const synth_params *p, int job, int *i)
{
    for (int split = 0; split < N_SPLITS; split++) {
        if (job < split_size(p, split)) {
            *i = job;
            return split;
        }
        job -= split_size(p, split);
    }
    *i = -1;
    return -1;
}

static int write_one_image(const synth_params *p, int split, int i, image_u8 *img, int *files)
{
    synth_scene s;
    scene_of(p, split, i, &s);
    int rc = synth_render(&s, img);
    /* SNLI-VE names images without extension and reads "<name>.jpg", so PNG
     * data sets carry a JPEG copy of each image too. */
    for (int pass = 0; pass < (p->format == SYNTH_PNG ? 2 : 1) && !rc; pass++) {
        int format = pass == 0 ? p->format : SYNTH_JPEG;
        char rel[64], path[PATH_MAX];
        image_rel(rel, sizeof rel, split, i, image_ext(format));
        if (snprintf(path, sizeof path, "%s/images/%s", p->out_dir, rel) >= (int)sizeof path)
            return albef_error(ALBEF_ERR_INVALID, "%s/images/%s: path too long", p->out_dir, rel);
        rc = format == SYNTH_PNG ? image_write_png(path, img) : image_write_jpeg(path, img, p->jpeg_quality);
        *files += !rc;
    }
    return rc;
}

static void *image_worker(void *arg)
{
    image_jobs *jobs = arg;
    const synth_params *p = jobs->w->p;
    image_u8 img;
    int rc = image_alloc(&img, p->image_size, p->image_size, 3);
    for (;;) {
        pthread_mutex_lock(&jobs->lock);
        if (rc && !jobs->rc) {
            jobs->rc = rc;
            snprintf(jobs->message, sizeof jobs->message, "%s", albef_errmsg());
        }
        int job = jobs->rc ? jobs->total : jobs->next++;
        pthread_mutex_unlock(&jobs->lock);
        if (job >= jobs->total)
            break;
        int i, split = split_of_job(p, job, &i), files = 0;
        rc = write_one_image(p, split, i, &img, &files);
        pthread_mutex_lock(&jobs->lock);
        jobs->w->summary->n_files += files;
        if (!rc) {
            jobs->done++;
            if (p->progress)
                p->progress(jobs->done, jobs->total, p->progress_user);
        }
        pthread_mutex_unlock(&jobs->lock);
    }
    image_free(&img);
    return NULL;
}

static int write_images(writer *w)
{
    const synth_params *p = w->p;
    image_jobs jobs = {.w = w, .total = p->n_train + p->n_val + p->n_test};
    pthread_mutex_init(&jobs.lock, NULL);
    int n_threads = p->threads > 0 ? p->threads : SYNTH_DEFAULT_THREADS;
    if (n_threads > jobs.total)
        n_threads = jobs.total;
    pthread_t threads[SYNTH_MAX_THREADS];
    int started = 0;
    for (; started < n_threads; started++)
        if (pthread_create(&threads[started], NULL, image_worker, &jobs) != 0)
            break;
    if (started == 0)
        image_worker(&jobs); /* no threads to be had: do it here */
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    pthread_mutex_destroy(&jobs.lock);
    for (int split = 0; split < N_SPLITS; split++)
        w->summary->n_images[split] = split_size(p, split);
    if (jobs.rc)
        return albef_error(jobs.rc, "%s", jobs.message);
    return ALBEF_OK;
}

/* ---- manifests ---- */

static int write_pretrain(writer *w)
{
    const synth_params *p = w->p;
    json_build b = {0};
    cJSON *list = cJSON_CreateArray();
    if (!list)
        return albef_error(ALBEF_ERR_NOMEM, "pretrain.json: out of memory");
    char rel[64], path[PATH_MAX + 64], texts[3][SYNTH_TEXT_MAX];
    int rc = ALBEF_OK;
    for (int i = 0; i < p->n_train && !rc && !b.failed; i++) {
        synth_scene s;
        scene_of(p, SPLIT_TRAIN, i, &s);
        rng_state r;
        text_stream(&r, p, SPLIT_TRAIN, i, STREAM_PRETRAIN);
        /* A third of the items carry a list, as ALBEF's pretraining files may. */
        int k = rng_bernoulli(&r, 1.0 / 3) ? 2 + (int)rng_below(&r, 2) : 1;
        rc = captions(&s, &r, SPLIT_TRAIN, i, k, texts);
        image_rel(rel, sizeof rel, SPLIT_TRAIN, i, image_ext(p->format));
        snprintf(path, sizeof path, "%s/%s", w->root_abs, rel);
        cJSON *o = add_object(&b, list);
        add_string(&b, o, "image", path);
        if (k == 1) {
            add_string(&b, o, "caption", texts[0]);
        } else {
            const char *v[3] = {texts[0], texts[1], texts[2]};
            add_strings(&b, o, "caption", v, k);
        }
    }
    if (rc) {
        cJSON_Delete(list);
        return rc;
    }
    return write_manifest(w, "pretrain.json", list, &b);
}

static int write_retrieval(writer *w, int split)
{
    static const char *const names[N_SPLITS] = {"retrieval_train.json", "retrieval_val.json", "retrieval_test.json"};
    const synth_params *p = w->p;
    json_build b = {0};
    cJSON *list = cJSON_CreateArray();
    if (!list)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", names[split]);
    char rel[64], id[64], texts[SYNTH_MAX_PER_IMAGE][SYNTH_TEXT_MAX];
    const char *v[SYNTH_MAX_PER_IMAGE];
    int k = p->captions_per_image, rc = ALBEF_OK;
    for (int i = 0; i < split_size(p, split) && !rc && !b.failed; i++) {
        synth_scene s;
        scene_of(p, split, i, &s);
        rng_state r;
        text_stream(&r, p, split, i, STREAM_RETRIEVAL);
        rc = captions(&s, &r, split, i, k, texts);
        image_rel(rel, sizeof rel, split, i, image_ext(p->format));
        if (split == SPLIT_TRAIN) {
            /* Karpathy train: one item per caption, image_id shared. */
            snprintf(id, sizeof id, "%s_%06d", split_names[split], i);
            for (int c = 0; c < k; c++) {
                cJSON *o = add_object(&b, list);
                add_string(&b, o, "image", rel);
                add_string(&b, o, "caption", texts[c]);
                add_string(&b, o, "image_id", id);
            }
        } else {
            cJSON *o = add_object(&b, list);
            add_string(&b, o, "image", rel);
            for (int c = 0; c < k; c++)
                v[c] = texts[c];
            add_strings(&b, o, "caption", v, k);
        }
    }
    if (rc) {
        cJSON_Delete(list);
        return rc;
    }
    return write_manifest(w, names[split], list, &b);
}

/* vqa_train.json / vqa_val.json (answers given), vqa_test.json plus
 * vqa_test_answers.json (questions only; answers apart, for local scoring). */
static int write_vqa(writer *w, int split)
{
    static const char *const names[N_SPLITS] = {"vqa_train.json", "vqa_val.json", "vqa_test.json"};
    const synth_params *p = w->p;
    json_build b = {0};
    cJSON *list = cJSON_CreateArray(), *answers = split == SPLIT_TEST ? cJSON_CreateArray() : NULL;
    if (!list || (split == SPLIT_TEST && !answers)) {
        cJSON_Delete(list);
        cJSON_Delete(answers);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", names[split]);
    }
    char rel[64], texts[SYNTH_MAX_PER_IMAGE][SYNTH_TEXT_MAX];
    const char *truth[SYNTH_MAX_PER_IMAGE], *annotators[10];
    int rc = ALBEF_OK;
    for (int i = 0; i < split_size(p, split) && !rc && !b.failed; i++) {
        synth_scene s;
        scene_of(p, split, i, &s);
        rng_state r;
        text_stream(&r, p, split, i, STREAM_VQA);
        rc = questions(&s, &r, split, i, p->questions_per_image, texts, truth);
        image_rel(rel, sizeof rel, split, i, image_ext(p->format));
        for (int k = 0; k < p->questions_per_image && !rc; k++) {
            synth_annotator_answers(truth[k], &r, annotators);
            cJSON *o = add_object(&b, list);
            add_number(&b, o, "question_id", (double)question_id(split, i, k));
            add_string(&b, o, "question", texts[k]);
            if (split != SPLIT_TEST)
                add_strings(&b, o, "answer", annotators, 10);
            add_string(&b, o, "image", rel);
            add_string(&b, o, "dataset", "vqa");
            if (split == SPLIT_TEST) {
                cJSON *a = add_object(&b, answers);
                add_number(&b, a, "question_id", (double)question_id(split, i, k));
                add_string(&b, a, "answer", truth[k]);
                add_strings(&b, a, "answers", annotators, 10);
            }
        }
    }
    if (rc) {
        cJSON_Delete(list);
        cJSON_Delete(answers);
        return rc;
    }
    if (answers) {
        rc = write_manifest(w, "vqa_test_answers.json", answers, &b);
        if (rc) {
            cJSON_Delete(list);
            return rc;
        }
    }
    return write_manifest(w, names[split], list, &b);
}

/* vg_qa.json: Visual-Genome-style items, one plain-string answer each. */
static int write_vg(writer *w)
{
    const synth_params *p = w->p;
    json_build b = {0};
    cJSON *list = cJSON_CreateArray();
    if (!list)
        return albef_error(ALBEF_ERR_NOMEM, "vg_qa.json: out of memory");
    char rel[64], text[1][SYNTH_TEXT_MAX];
    const char *truth[1];
    int rc = ALBEF_OK;
    for (int i = 0; i < p->n_train && !rc && !b.failed; i++) {
        synth_scene s;
        scene_of(p, SPLIT_TRAIN, i, &s);
        rng_state r;
        text_stream(&r, p, SPLIT_TRAIN, i, STREAM_VG);
        rc = questions(&s, &r, SPLIT_TRAIN, i, 1, text, truth);
        image_rel(rel, sizeof rel, SPLIT_TRAIN, i, image_ext(p->format));
        cJSON *o = add_object(&b, list);
        add_string(&b, o, "question", text[0]);
        add_string(&b, o, "answer", truth[0]);
        add_string(&b, o, "image", rel);
        add_string(&b, o, "dataset", "vg");
    }
    if (rc) {
        cJSON_Delete(list);
        return rc;
    }
    return write_manifest(w, "vg_qa.json", list, &b);
}

static int write_answer_list(writer *w)
{
    json_build b = {0};
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; list && i < synth_answer_count(); i++) {
        cJSON *s = cJSON_CreateString(synth_answer(i));
        if (!s || !cJSON_AddItemToArray(list, s)) {
            cJSON_Delete(s);
            b.failed = 1;
        }
    }
    if (!list)
        return albef_error(ALBEF_ERR_NOMEM, "answer_list.json: out of memory");
    return write_manifest(w, "answer_list.json", list, &b);
}

/* One statement per image about (image, a random partner), alternately true
 * and false, so the labels are balanced exactly (up to one). */
static int write_nlvr(writer *w, int split)
{
    static const char *const names[N_SPLITS] = {"nlvr_train.json", "nlvr_dev.json", "nlvr_test.json"};
    const synth_params *p = w->p;
    json_build b = {0};
    cJSON *list = cJSON_CreateArray();
    if (!list)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", names[split]);
    int n = split_size(p, split), rc = ALBEF_OK;
    char rel[2][64], text[SYNTH_TEXT_MAX];
    for (int i = 0; n >= 2 && i < n && !rc && !b.failed; i++) {
        rng_state r;
        text_stream(&r, p, split, i, STREAM_NLVR);
        int j = (i + 1 + (int)rng_below(&r, (uint32_t)n - 1)) % n;
        synth_scene left, right;
        scene_of(p, split, i, &left);
        scene_of(p, split, j, &right);
        int want = i % 2 == 0;
        synth_pair_claim c;
        synth_pair_claim_generate(&left, &right, want, &r, &c);
        rc = synth_pair_claim_text(&c, &r, text, sizeof text);
        if (!rc && synth_pair_claim_holds(&left, &right, &c) != want)
            rc = internal_error("NLVR statement", split, i, text);
        image_rel(rel[0], sizeof rel[0], split, i, image_ext(p->format));
        image_rel(rel[1], sizeof rel[1], split, j, image_ext(p->format));
        cJSON *o = add_object(&b, list);
        const char *images[2] = {rel[0], rel[1]};
        add_strings(&b, o, "images", images, 2);
        add_string(&b, o, "sentence", text);
        add_string(&b, o, "label", want ? "True" : "False");
    }
    if (rc) {
        cJSON_Delete(list);
        return rc;
    }
    return write_manifest(w, names[split], list, &b);
}

/* Three hypotheses per image, one of each label, in a random order. */
static int write_ve(writer *w, int split)
{
    static const char *const names[N_SPLITS] = {"ve_train.json", "ve_dev.json", "ve_test.json"};
    static const char *const labels[SYNTH_VE_PER_IMAGE] = {"entailment", "neutral", "contradiction"};
    const synth_params *p = w->p;
    json_build b = {0};
    cJSON *list = cJSON_CreateArray();
    if (!list)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", names[split]);
    char rel[64], text[SYNTH_TEXT_MAX];
    int rc = ALBEF_OK;
    for (int i = 0; i < split_size(p, split) && !rc && !b.failed; i++) {
        synth_scene s;
        scene_of(p, split, i, &s);
        rng_state r;
        text_stream(&r, p, split, i, STREAM_VE);
        int order[SYNTH_VE_PER_IMAGE] = {0, 1, 2};
        for (int k = SYNTH_VE_PER_IMAGE - 1; k > 0; k--) {
            int m = (int)rng_below(&r, (uint32_t)k + 1), t = order[k];
            order[k] = order[m];
            order[m] = t;
        }
        image_rel(rel, sizeof rel, split, i, NULL);
        for (int k = 0; k < SYNTH_VE_PER_IMAGE && !rc; k++) {
            int label = order[k], expect;
            synth_claim c;
            if (label == 1) {
                synth_neutral_claim(&s, &r, &c);
                expect = -1;
            } else {
                expect = label == 0;
                synth_statement_claim(&s, expect, &r, &c);
            }
            rc = synth_claim_text(&c, 0, &r, text, sizeof text);
            if (!rc && synth_claim_holds(&s, &c) != expect)
                rc = internal_error("VE hypothesis", split, i, text);
            cJSON *o = add_object(&b, list);
            add_string(&b, o, "image", rel);
            add_string(&b, o, "sentence", text);
            add_string(&b, o, "label", labels[label]);
        }
    }
    if (rc) {
        cJSON_Delete(list);
        return rc;
    }
    return write_manifest(w, names[split], list, &b);
}

/* scenes.json (this project's own format): what each image shows. */
static int write_scenes(writer *w)
{
    const synth_params *p = w->p;
    json_build b = {0};
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return albef_error(ALBEF_ERR_NOMEM, "scenes.json: out of memory");
    add_number(&b, root, "seed", (double)p->seed);
    add_number(&b, root, "image_size", p->image_size);
    add_string(&b, root, "format", p->format == SYNTH_JPEG ? "jpeg" : "png");
    add_number(&b, root, "grid", SYNTH_GRID);
    cJSON *splits = cJSON_AddObjectToObject(root, "splits");
    if (!splits)
        b.failed = 1;
    char rel[64];
    for (int split = 0; split < N_SPLITS && !b.failed; split++) {
        cJSON *list = cJSON_AddArrayToObject(splits, split_names[split]);
        if (!list) {
            b.failed = 1;
            break;
        }
        for (int i = 0; i < split_size(p, split) && !b.failed; i++) {
            synth_scene s;
            scene_of(p, split, i, &s);
            cJSON *o = add_object(&b, list);
            image_rel(rel, sizeof rel, split, i, image_ext(p->format));
            add_string(&b, o, "image", rel);
            add_string(&b, o, "background", synth_background_name(s.background));
            add_bool(&b, o, "textured", s.textured);
            cJSON *objects = o ? cJSON_AddArrayToObject(o, "objects") : NULL;
            if (!objects)
                b.failed = 1;
            for (int k = 0; k < s.n_objects && objects; k++) {
                const synth_object *ob = &s.objects[k];
                double cx, cy, radius;
                synth_object_geometry(ob, p->image_size, &cx, &cy, &radius);
                cJSON *jo = add_object(&b, objects);
                add_string(&b, jo, "shape", synth_shape_name(ob->shape));
                add_string(&b, jo, "color", synth_color_name(ob->color));
                add_string(&b, jo, "size", synth_size_name(ob->size));
                add_string(&b, jo, "cell", synth_cell_name(ob->cell));
                add_number(&b, jo, "row", ob->cell / SYNTH_GRID);
                add_number(&b, jo, "col", ob->cell % SYNTH_GRID);
                /* Two decimals: enough to find a pixel, and short. */
                add_number(&b, jo, "x", (double)(int64_t)(cx * 100 + 0.5) / 100);
                add_number(&b, jo, "y", (double)(int64_t)(cy * 100 + 0.5) / 100);
                add_number(&b, jo, "radius", (double)(int64_t)(radius * 100 + 0.5) / 100);
            }
        }
    }
    return write_manifest_counted(w, "scenes.json", root, &b, p->n_train + p->n_val + p->n_test);
}

static int write_vocab(writer *w)
{
    char *text, path[PATH_MAX];
    size_t len;
    int rc = synth_vocab_text(&text, &len);
    if (rc)
        return rc;
    if (snprintf(path, sizeof path, "%s/vocab.txt", w->p->out_dir) >= (int)sizeof path) {
        free(text);
        return albef_error(ALBEF_ERR_INVALID, "%s/vocab.txt: path too long", w->p->out_dir);
    }
    rc = file_write_all_atomic(path, text, len);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    free(text);
    w->summary->vocab_size = lines;
    return rc;
}

int synth_write_dataset(const synth_params *p, synth_summary *summary)
{
    memset(summary, 0, sizeof *summary);
    int rc = synth_params_check(p);
    if (rc)
        return rc;
    writer w = {.p = p, .summary = summary};
    char dir[PATH_MAX];
    rc = make_dirs(p->out_dir);
    for (int split = 0; split < N_SPLITS && !rc; split++) {
        if (snprintf(dir, sizeof dir, "%s/images/%s", p->out_dir, split_names[split]) >= (int)sizeof dir)
            return albef_error(ALBEF_ERR_INVALID, "%s: path too long", p->out_dir);
        rc = make_dirs(dir);
    }
    if (rc)
        return rc;
    char abs[PATH_MAX];
    if (!realpath(p->out_dir, abs))
        return albef_error(ALBEF_ERR_IO, "%s: cannot resolve the absolute path: %s", p->out_dir, strerror(errno));
    if (snprintf(w.root_abs, sizeof w.root_abs, "%s/images", abs) >= (int)sizeof w.root_abs)
        return albef_error(ALBEF_ERR_INVALID, "%s: path too long", abs);

    rc = write_images(&w);
    if (!rc)
        rc = write_pretrain(&w);
    for (int split = 0; split < N_SPLITS && !rc; split++)
        rc = write_retrieval(&w, split);
    for (int split = 0; split < N_SPLITS && !rc; split++)
        rc = write_vqa(&w, split);
    if (!rc)
        rc = write_vg(&w);
    if (!rc)
        rc = write_answer_list(&w);
    for (int split = 0; split < N_SPLITS && !rc; split++)
        rc = write_nlvr(&w, split);
    for (int split = 0; split < N_SPLITS && !rc; split++)
        rc = write_ve(&w, split);
    if (!rc)
        rc = write_vocab(&w);
    if (!rc)
        rc = write_scenes(&w);
    summary->answer_list_size = (int)synth_answer_count();
    if (!rc)
        log_info("synth: wrote %d images and %d manifests under %s", summary->n_files, summary->n_manifests,
                 p->out_dir);
    return rc;
}
