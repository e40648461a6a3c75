/* io/manifest: ALBEF's JSON annotation files, their derived fields, and the
 * messages for every kind of malformed input. */
#include "albef.h"
#include "core/file.h"
#include "core/rng.h"
#include "io/manifest.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static manifest *load_fixture(enum manifest_kind kind, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s", testdata_path(name));
    const char *paths[] = {path};
    manifest *m = NULL;
    assert_ok(manifest_load(&m, kind, paths, 1));
    return m;
}

static manifest *parse_text(enum manifest_kind kind, const char *json)
{
    manifest *m = NULL;
    assert_ok(manifest_parse(&m, kind, json, strlen(json), "inline.json"));
    return m;
}

static void test_pretrain_captions_string_or_list(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_PRETRAIN, "manifests/pretrain_coco.json");
    assert_int_equal(manifest_get_kind(m), MANIFEST_PRETRAIN);
    assert_int_equal(manifest_count(m), 3);
    assert_string_equal(manifest_image(m, 0), "/data/coco/train2014/COCO_train2014_000000000009.jpg");
    assert_int_equal(manifest_text_count(m, 0), 1);
    assert_string_equal(manifest_text(m, 0, 0), "a plate of food with broccoli");
    assert_int_equal(manifest_text_count(m, 1), 2);
    assert_string_equal(manifest_text(m, 1, 1), "a tall giraffe near a tree");
    assert_null(manifest_text(m, 1, 2));
    /* escapes decoded: \u00e9, \", \n */
    assert_string_equal(manifest_text(m, 2, 0), "caf\xc3\xa9 sign on a \"brick\" wall\n");
    assert_int_equal(manifest_text_total(m), 4);
    assert_null(manifest_second_image(m, 0));
    assert_int_equal(manifest_label(m, 0), -1);
    assert_int_equal(manifest_image_idx(m, 0), -1);
    assert_int_equal(manifest_answer_count(m, 0), 0);
    manifest_free(m);
}

static void test_pretrain_files_concatenate(void **state)
{
    (void)state;
    char a[512], b[512];
    snprintf(a, sizeof a, "%s", testdata_path("manifests/pretrain_coco.json"));
    snprintf(b, sizeof b, "%s", testdata_path("manifests/pretrain_cc3m.json"));
    const char *paths[] = {a, b};
    manifest *m = NULL;
    assert_ok(manifest_load(&m, MANIFEST_PRETRAIN, paths, 2));
    assert_int_equal(manifest_count(m), 5);
    assert_string_equal(manifest_image(m, 3), "/data/cc3m/train/00000/000000000.jpg");
    assert_string_equal(manifest_text(m, 3, 0), "actor attends the premiere");
    assert_string_equal(manifest_text(m, 4, 0), "illustration of a cartoon cat");
    assert_int_equal(manifest_text_first(m, 4), 5);
    manifest_free(m);
}

static void test_retrieval_train_dense_idx_first_appearance(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_RETRIEVAL_TRAIN, "manifests/coco_train.json");
    const int64_t want[] = {0, 0, 1, 0, 2};
    assert_int_equal(manifest_count(m), 5);
    for (size_t i = 0; i < 5; i++)
        if (manifest_image_idx(m, i) != want[i])
            fail_msg("item %zu: image_idx %lld, expected %lld", i, (long long)manifest_image_idx(m, i),
                     (long long)want[i]);
    assert_int_equal(manifest_image_count(m), 3);
    assert_string_equal(manifest_text(m, 2, 0), "A man preparing desserts in a kitchen covered in frosting.");
    manifest_free(m);
}

/* Python dict keys: 0 and 0.0 are one image, "0" is another. */
static void test_retrieval_train_image_id_keys_as_python(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_RETRIEVAL_TRAIN, "manifests/flickr30k_train.json");
    const int64_t want[] = {0, 0, 1, 0, 2};
    for (size_t i = 0; i < 5; i++)
        if (manifest_image_idx(m, i) != want[i])
            fail_msg("item %zu: image_idx %lld, expected %lld", i, (long long)manifest_image_idx(m, i),
                     (long long)want[i]);
    assert_int_equal(manifest_image_count(m), 3);
    manifest_free(m);
}

static void test_retrieval_eval_img2txt_txt2img(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_RETRIEVAL_EVAL, "manifests/coco_test.json");
    assert_int_equal(manifest_count(m), 3);
    assert_int_equal(manifest_text_total(m), 13);
    const size_t first[] = {0, 5, 7}, count[] = {5, 2, 6};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(manifest_text_first(m, i), first[i]);
        assert_int_equal(manifest_text_count(m, i), count[i]);
        for (size_t j = 0; j < count[i]; j++) {
            size_t t = first[i] + j;
            if (manifest_text_item(m, t) != i)
                fail_msg("txt2img[%zu] = %zu, expected %zu", t, manifest_text_item(m, t), i);
            assert_ptr_equal(manifest_text_by_id(m, t), manifest_text(m, i, j));
        }
    }
    assert_string_equal(manifest_text_by_id(m, 6), "A woman cutting a large white sheet cake.");
    assert_int_equal(manifest_text_item(m, 13), SIZE_MAX);
    assert_null(manifest_text_by_id(m, 13));
    manifest_free(m);
}

static void test_vqa_train_answer_weights(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_VQA_TRAIN, "manifests/vqa_train.json");
    assert_int_equal(manifest_count(m), 4);
    /* ["down" x7, "at table", "skateboard", "table"], in order of first appearance */
    const char *answers[] = {"down", "at table", "skateboard", "table"};
    const float weights[] = {0.7f, 0.1f, 0.1f, 0.1f};
    assert_int_equal(manifest_answer_count(m, 0), 4);
    for (size_t j = 0; j < 4; j++) {
        assert_string_equal(manifest_answer(m, 0, j), answers[j]);
        if (manifest_answer_weight(m, 0, j) != weights[j])
            fail_msg("answer %zu ('%s'): weight %.9g, expected %.9g", j, answers[j], manifest_answer_weight(m, 0, j),
                     weights[j]);
    }
    assert_int_equal(manifest_answer_count(m, 1), 1);
    assert_true(manifest_answer_weight(m, 1, 0) == 1.0f);
    assert_string_equal(manifest_text(m, 0, 0), "Where is he looking?");
    assert_int_equal(manifest_question_id(m, 0), 262148000);
    assert_int_equal(manifest_dataset(m, 0), MANIFEST_DATASET_VQA);
    /* a Visual Genome item: one answer of weight 0.5, its own image root, no question_id */
    assert_int_equal(manifest_dataset(m, 2), MANIFEST_DATASET_VG);
    assert_int_equal(manifest_answer_count(m, 2), 1);
    assert_string_equal(manifest_answer(m, 2, 0), "green");
    assert_true(manifest_answer_weight(m, 2, 0) == 0.5f);
    assert_int_equal(manifest_question_id(m, 2), -1);
    assert_string_equal(manifest_image(m, 2), "image/2.jpg");
    assert_string_equal(manifest_answer(m, 3, 0), "no");
    assert_true(manifest_answer_weight(m, 3, 1) == 0.4f);
    assert_null(manifest_answer(m, 3, 2));
    manifest_free(m);
}

static void test_vqa_test_and_answer_list(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_VQA_TEST, "manifests/vqa_test.json");
    assert_int_equal(manifest_count(m), 2);
    assert_int_equal(manifest_question_id(m, 1), 262144001);
    assert_string_equal(manifest_text(m, 1, 0), "What sport is being played?");
    assert_int_equal(manifest_dataset(m, 1), MANIFEST_DATASET_VQA); /* absent: "vqa" */
    assert_int_equal(manifest_answer_count(m, 0), 0);
    manifest_free(m);

    m = load_fixture(MANIFEST_ANSWER_LIST, "manifests/answer_list.json");
    assert_int_equal(manifest_count(m), 10);
    assert_string_equal(manifest_text(m, 8, 0), "brushing teeth");
    assert_null(manifest_image(m, 0));
    manifest_free(m);
}

static void test_nlvr_two_images_and_label(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_NLVR, "manifests/nlvr_dev.json");
    assert_int_equal(manifest_count(m), 2);
    assert_string_equal(manifest_image(m, 1), "dev/dev-850-1-img0.png");
    assert_string_equal(manifest_second_image(m, 1), "dev/dev-850-1-img1.png");
    assert_int_equal(manifest_label(m, 0), 0);
    assert_int_equal(manifest_label(m, 1), 1);
    assert_string_equal(manifest_text(m, 1, 0), "There are two dogs in total.");
    manifest_free(m);
}

static void test_ve_adds_jpg_and_maps_labels(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_VE, "manifests/ve_dev.json");
    assert_string_equal(manifest_image(m, 0), "2248275918.jpg");
    assert_int_equal(manifest_label(m, 0), 2);
    assert_int_equal(manifest_label(m, 1), 0);
    assert_int_equal(manifest_label(m, 2), 1);
    manifest_free(m);
}

static void test_grounding_train_idx_by_basename_eval_ref_id(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_GROUNDING_TRAIN, "manifests/refcoco+_train.json");
    const int64_t want[] = {0, 0, 1, 0}; /* item 3 has another folder but the same basename */
    for (size_t i = 0; i < 4; i++)
        if (manifest_image_idx(m, i) != want[i])
            fail_msg("item %zu: image_idx %lld, expected %lld", i, (long long)manifest_image_idx(m, i),
                     (long long)want[i]);
    assert_int_equal(manifest_image_count(m), 2);
    assert_string_equal(manifest_text(m, 1, 0), "lady with back to us");
    manifest_free(m);

    m = load_fixture(MANIFEST_GROUNDING_EVAL, "manifests/refcoco+_val.json");
    assert_int_equal(manifest_ref_id(m, 0), 2);
    assert_int_equal(manifest_ref_id(m, 1), 3);
    assert_int_equal(manifest_image_idx(m, 0), -1);
    manifest_free(m);
}

static int64_t golden_int(const cJSON *item, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, key);
    return v ? (int64_t)v->valuedouble : -1;
}

static void check_against_golden_case(const cJSON *c)
{
    const char *kind_name = cJSON_GetObjectItemCaseSensitive(c, "kind")->valuestring;
    enum manifest_kind kind;
    assert_ok(manifest_kind_from_name(kind_name, &kind));
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(c, "files");
    char paths[4][512];
    const char *p[4];
    int nf = 0;
    for (const cJSON *f = files->child; f && nf < 4; f = f->next, nf++) {
        char rel[256];
        snprintf(rel, sizeof rel, "manifests/%s", f->valuestring);
        snprintf(paths[nf], sizeof paths[nf], "%s", testdata_path(rel));
        p[nf] = paths[nf];
    }
    manifest *m = NULL;
    assert_ok(manifest_load(&m, kind, p, (size_t)nf));
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(c, "items");
    if (manifest_count(m) != (size_t)cJSON_GetArraySize(items))
        fail_msg("%s: %zu items, golden has %d", p[0], manifest_count(m), cJSON_GetArraySize(items));
    assert_int_equal(manifest_image_count(m), golden_int(c, "image_count"));
    size_t i = 0;
    for (const cJSON *it = items->child; it; it = it->next, i++) {
#define EXPECT_STR(got, want)                                                                                     \
    if (!(got) || strcmp((got), (want)) != 0)                                                                     \
        fail_msg("%s item %zu: " #got " = '%s', golden '%s'", p[0], i, (got) ? (got) : "(null)", (want));
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(it, "image");
        if (image)
            EXPECT_STR(manifest_image(m, i), image->valuestring)
        const cJSON *image2 = cJSON_GetObjectItemCaseSensitive(it, "image2");
        if (image2)
            EXPECT_STR(manifest_second_image(m, i), image2->valuestring)
        const cJSON *texts = cJSON_GetObjectItemCaseSensitive(it, "texts");
        assert_int_equal(manifest_text_count(m, i), cJSON_GetArraySize(texts));
        size_t j = 0;
        for (const cJSON *t = texts->child; t; t = t->next, j++)
            EXPECT_STR(manifest_text(m, i, j), t->valuestring)
        const cJSON *img2txt = cJSON_GetObjectItemCaseSensitive(it, "img2txt");
        if (img2txt)
            assert_int_equal(manifest_text_first(m, i), (size_t)img2txt->child->valuedouble);
        assert_int_equal(manifest_image_idx(m, i), golden_int(it, "image_idx"));
        assert_int_equal(manifest_label(m, i), golden_int(it, "label"));
        assert_int_equal(manifest_question_id(m, i), golden_int(it, "question_id"));
        assert_int_equal(manifest_ref_id(m, i), golden_int(it, "ref_id"));
        const cJSON *dataset = cJSON_GetObjectItemCaseSensitive(it, "dataset");
        if (dataset)
            assert_int_equal(manifest_dataset(m, i),
                             strcmp(dataset->valuestring, "vg") == 0 ? MANIFEST_DATASET_VG : MANIFEST_DATASET_VQA);
        const cJSON *answers = cJSON_GetObjectItemCaseSensitive(it, "answers");
        const cJSON *weights = cJSON_GetObjectItemCaseSensitive(it, "weights");
        assert_int_equal(manifest_answer_count(m, i), answers ? cJSON_GetArraySize(answers) : 0);
        j = 0;
        for (const cJSON *a = answers ? answers->child : NULL, *w = weights ? weights->child : NULL; a && w;
             a = a->next, w = w->next, j++) {
            EXPECT_STR(manifest_answer(m, i, j), a->valuestring)
            float got = manifest_answer_weight(m, i, j);
            if (fabs(got - w->valuedouble) > 1e-6)
                fail_msg("%s item %zu: answer %zu weight %.9g, golden %.17g", p[0], i, j, got, w->valuedouble);
        }
#undef EXPECT_STR
    }
    manifest_free(m);
}

/* Every fixture against what ALBEF's Python dataset classes derive from it
 * (scripts/dev/manifest_golden.py). */
static void test_fixtures_match_python_golden(void **state)
{
    (void)state;
    char *text;
    size_t n;
    assert_ok(file_read_all(testdata_path("manifests/golden.json"), &text, &n));
    cJSON *golden = cJSON_ParseWithLength(text, n);
    free(text);
    assert_non_null(golden);
    int cases = 0;
    for (const cJSON *c = golden->child; c; c = c->next, cases++)
        check_against_golden_case(c);
    assert_int_equal(cases, 11);
    cJSON_Delete(golden);
}

struct bad_case {
    enum manifest_kind kind;
    const char *name;
    const char *json;
    const char *message; /* expected substring */
};

static const struct bad_case bad_items[] = {
    {MANIFEST_NLVR, "nlvr_dev.json",
     "[{\"images\":[\"a\",\"b\"],\"sentence\":\"s\",\"label\":\"True\"},"
     "{\"images\":[\"a\",\"b\"],\"sentence\":\"s\",\"label\":\"False\"},"
     "{\"images\":[\"a\",\"b\"],\"sentence\":\"s\",\"label\":\"True\"},"
     "{\"images\":[\"a\",\"b\"],\"sentence\":\"s\",\"label\":\"yes\"}]",
     "nlvr_dev.json: item 3: 'label' must be \"True\" or \"False\", got \"yes\""},
    {MANIFEST_NLVR, "nlvr_dev.json", "[{\"images\":[\"a\",\"b\"],\"sentence\":\"s\",\"label\":true}]",
     "nlvr_dev.json: item 0: 'label' must be \"True\" or \"False\", got true"},
    {MANIFEST_NLVR, "nlvr_dev.json", "[{\"images\":[\"a\",\"b\",\"c\"],\"sentence\":\"s\",\"label\":\"True\"}]",
     "nlvr_dev.json: item 0: 'images' must be a list of 2 image paths, got a list of 3"},
    {MANIFEST_NLVR, "nlvr_dev.json", "[{\"images\":[1,\"b\"],\"sentence\":\"s\",\"label\":\"True\"}]",
     "nlvr_dev.json: item 0: 'images'[0] must be a string, got 1"},
    {MANIFEST_NLVR, "nlvr_dev.json", "[{\"images\":[\"a\",\"b\"],\"label\":\"True\"}]",
     "nlvr_dev.json: item 0: missing 'sentence'"},
    {MANIFEST_VE, "ve_dev.json", "[{\"image\":\"1\",\"sentence\":\"s\",\"label\":\"maybe\"}]",
     "ve_dev.json: item 0: 'label' must be \"entailment\", \"neutral\" or \"contradiction\", got \"maybe\""},
    {MANIFEST_VE, "ve_dev.json", "[{\"image\":1,\"sentence\":\"s\",\"label\":\"neutral\"}]",
     "ve_dev.json: item 0: 'image' must be a string, got 1"},
    {MANIFEST_PRETRAIN, "coco.json", "[{\"caption\":\"a\"}]", "coco.json: item 0: missing 'image'"},
    {MANIFEST_PRETRAIN, "coco.json", "[{\"image\":\"a\"}]", "coco.json: item 0: missing 'caption'"},
    {MANIFEST_PRETRAIN, "coco.json", "[{\"image\":\"a\",\"caption\":[]}]",
     "coco.json: item 0: 'caption' must be a string or a non-empty list of strings, got an empty list"},
    {MANIFEST_PRETRAIN, "coco.json", "[{\"image\":\"a\",\"caption\":\"c\"},{\"image\":\"a\",\"caption\":[\"x\",null]}]",
     "coco.json: item 1: 'caption'[1] must be a string, got null"},
    {MANIFEST_PRETRAIN, "coco.json", "[{\"image\":\"a\",\"caption\":{\"en\":\"x\"}}]",
     "coco.json: item 0: 'caption' must be a string or a list of strings, got an object"},
    {MANIFEST_PRETRAIN, "coco.json", "[{\"image\":\"a\",\"caption\":\"c\"},\"x\"]",
     "coco.json: item 1: must be an object, got \"x\""},
    {MANIFEST_PRETRAIN, "coco.json", "[[\"a\",\"c\"]]", "coco.json: item 0: must be an object, got a list of 2"},
    {MANIFEST_RETRIEVAL_TRAIN, "coco_train.json", "[{\"image\":\"a\",\"caption\":[\"x\",\"y\"],\"image_id\":1}]",
     "coco_train.json: item 0: 'caption' must be a string, got a list of 2"},
    {MANIFEST_RETRIEVAL_TRAIN, "coco_train.json", "[{\"image\":\"a\",\"caption\":\"x\"}]",
     "coco_train.json: item 0: missing 'image_id'"},
    {MANIFEST_RETRIEVAL_TRAIN, "coco_train.json", "[{\"image\":\"a\",\"caption\":\"x\",\"image_id\":[1]}]",
     "coco_train.json: item 0: 'image_id' must be a string or a number, got a list of 1"},
    {MANIFEST_RETRIEVAL_EVAL, "coco_test.json", "[{\"image\":\"a\",\"caption\":[]}]",
     "coco_test.json: item 0: 'caption' must be a list of strings (one item per image), got an empty list"},
    {MANIFEST_VQA_TRAIN, "vqa_train.json", "[{\"question\":\"q\",\"answer\":[\"a\"],\"image\":\"i\"}]",
     "vqa_train.json: item 0: missing 'dataset' (\"vqa\" or \"vg\")"},
    {MANIFEST_VQA_TRAIN, "vqa_train.json",
     "[{\"question\":\"q\",\"answer\":[\"a\"],\"image\":\"i\",\"dataset\":\"coco\"}]",
     "vqa_train.json: item 0: 'dataset' must be \"vqa\" or \"vg\", got \"coco\""},
    {MANIFEST_VQA_TRAIN, "vqa_train.json",
     "[{\"question\":\"q\",\"answer\":\"yes\",\"image\":\"i\",\"dataset\":\"vqa\"}]",
     "vqa_train.json: item 0: 'answer' must be a non-empty list of strings for a \"vqa\" item, got \"yes\""},
    {MANIFEST_VQA_TRAIN, "vqa_train.json", "[{\"question\":\"q\",\"answer\":[],\"image\":\"i\",\"dataset\":\"vqa\"}]",
     "vqa_train.json: item 0: 'answer' must be a non-empty list of strings for a \"vqa\" item, got an empty list"},
    {MANIFEST_VQA_TRAIN, "vg_qa.json", "[{\"question\":\"q\",\"answer\":[\"a\"],\"image\":\"i\",\"dataset\":\"vg\"}]",
     "vg_qa.json: item 0: 'answer' must be a string for a \"vg\" item, got a list of 1"},
    {MANIFEST_VQA_TRAIN, "vqa_train.json",
     "[{\"question_id\":\"7\",\"question\":\"q\",\"answer\":[\"a\"],\"image\":\"i\",\"dataset\":\"vqa\"}]",
     "vqa_train.json: item 0: 'question_id' must be a non-negative integer, got \"7\""},
    {MANIFEST_VQA_TEST, "vqa_test.json", "[{\"question_id\":1.5,\"question\":\"q\",\"image\":\"i\"}]",
     "vqa_test.json: item 0: 'question_id' must be a non-negative integer, got 1.5"},
    {MANIFEST_VQA_TEST, "vqa_test.json", "[{\"question_id\":-3,\"question\":\"q\",\"image\":\"i\"}]",
     "vqa_test.json: item 0: 'question_id' must be a non-negative integer, got -3"},
    {MANIFEST_VQA_TEST, "vqa_test.json", "[{\"question_id\":1e400,\"question\":\"q\",\"image\":\"i\"}]",
     "vqa_test.json: item 0: 'question_id' must be a non-negative integer, got inf"},
    {MANIFEST_VQA_TEST, "vqa_test.json", "[{\"question\":\"q\",\"image\":\"i\"}]",
     "vqa_test.json: item 0: missing 'question_id'"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[\"net\",\"pitcher\",3]",
     "answer_list.json: item 2: must be a string (an answer), got 3"},
    {MANIFEST_GROUNDING_EVAL, "refcoco+_val.json", "[{\"image\":\"i\",\"text\":\"t\"}]",
     "refcoco+_val.json: item 0: missing 'ref_id'"},
    {MANIFEST_GROUNDING_TRAIN, "refcoco+_train.json", "[{\"image\":\"i\",\"text\":null}]",
     "refcoco+_train.json: item 0: 'text' must be a string, got null"},
    {MANIFEST_PRETRAIN, "coco.json", "{\"image\":\"a\",\"caption\":\"c\"}",
     "coco.json: top level must be a list of items, got an object"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "\"yes\"",
     "answer_list.json: top level must be a list of items, got a string"},
    {MANIFEST_PRETRAIN, "coco.json", "", "coco.json: empty file, expected a JSON list"},
    {MANIFEST_PRETRAIN, "coco.json", " \n\t ", "coco.json: empty file, expected a JSON list"},
};

static void test_bad_items_name_file_item_and_field(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof bad_items / sizeof *bad_items; k++) {
        const struct bad_case *c = &bad_items[k];
        manifest *m = (manifest *)1;
        int rc = manifest_parse(&m, c->kind, c->json, strlen(c->json), c->name);
        if (rc != ALBEF_ERR_INVALID || !strstr(albef_errmsg(), c->message))
            fail_msg("case %zu (%s): rc %d, message\n  '%s'\nexpected it to contain\n  '%s'", k, c->json, rc,
                     albef_errmsg(), c->message);
        assert_null(m);
    }
}

/* ALBEF#72: a string caption in a test file would be iterated letter by letter. */
static void test_retrieval_eval_string_caption_is_an_error(void **state)
{
    (void)state;
    char json[4096] = "[";
    for (int i = 0; i < 12; i++)
        strcat(json, "{\"image\":\"val2014/x.jpg\",\"caption\":[\"c1\",\"c2\"]},");
    strcat(json, "{\"image\":\"val2014/y.jpg\",\"caption\":\"a man riding a moped\"}]");
    manifest *m;
    assert_error(manifest_parse(&m, MANIFEST_RETRIEVAL_EVAL, json, strlen(json), "coco_test.json"),
                 ALBEF_ERR_INVALID, "coco_test.json: item 12: 'caption' must be a list of strings");
    assert_non_null(strstr(albef_errmsg(), "got \"a man riding a moped\""));
}

static const struct bad_case bad_syntax[] = {
    {MANIFEST_PRETRAIN, "coco.json",
     "[\n {\"image\": \"a\", \"caption\": \"b\"},\n {\"image\": \"a\" \"caption\": \"b\"}\n]",
     "coco.json:3:16: invalid JSON: in item 1"},
    {MANIFEST_PRETRAIN, "coco.json", "[{\"image\":\"a\",\"caption\":\"b\"} {\"image\":\"a\",\"caption\":\"b\"}]",
     "coco.json:1:30: invalid JSON: expected ',' or ']' after item 0"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[\"a\",]", "answer_list.json:1:6: invalid JSON: expected item 1"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[,\"a\"]", "answer_list.json:1:2: invalid JSON: expected item 0"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[\"a\", \"b\"",
     "answer_list.json:1:10: invalid JSON: the list is not closed"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[", "answer_list.json:1:2: invalid JSON: the list is not closed"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[\"a\", \"b",
     "answer_list.json:1:7: invalid JSON: item 1 is not closed before the end of the file"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[\"a\"] x",
     "answer_list.json:1:7: invalid JSON: unexpected text after the list"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[\"a\"][]",
     "answer_list.json:1:6: invalid JSON: unexpected text after the list"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[tru]", "answer_list.json:1:2: invalid JSON: in item 0"},
    {MANIFEST_ANSWER_LIST, "answer_list.json", "[\"a\",1x]", "answer_list.json:1:7: invalid JSON: in item 1"},
    {MANIFEST_PRETRAIN, "coco.json", "[{\"image\":\"a\",\"caption\":\"b\"]]",
     "coco.json:1:28: invalid JSON: in item 0"},
    {MANIFEST_PRETRAIN, "coco.json", "x[]", "coco.json:1:1: invalid JSON: expected a list"},
};

static void test_bad_json_gives_line_and_column(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof bad_syntax / sizeof *bad_syntax; k++) {
        const struct bad_case *c = &bad_syntax[k];
        manifest *m;
        int rc = manifest_parse(&m, c->kind, c->json, strlen(c->json), c->name);
        if (rc != ALBEF_ERR_INVALID || !strstr(albef_errmsg(), c->message))
            fail_msg("case %zu (%s): rc %d, message\n  '%s'\nexpected it to contain\n  '%s'", k, c->json, rc,
                     albef_errmsg(), c->message);
    }
}

static void test_file_errors(void **state)
{
    (void)state;
    manifest *m;
    const char *missing[] = {tmp_path("no_such.json")};
    assert_error(manifest_load(&m, MANIFEST_PRETRAIN, missing, 1), ALBEF_ERR_IO, "no_such.json: cannot open");
    assert_null(m);
    const char *dir[] = {test_tmpdir()};
    assert_error(manifest_load(&m, MANIFEST_PRETRAIN, dir, 1), ALBEF_ERR_IO, "not a regular file");
    assert_error(manifest_load(&m, MANIFEST_PRETRAIN, NULL, 0), ALBEF_ERR_INVALID, "no files given");
    assert_error(manifest_parse(&m, (enum manifest_kind)42, "[]", 2, "x.json"), ALBEF_ERR_INVALID,
                 "kind 42 is out of range");

    /* the second file's error names that file and its own item index */
    char good[512];
    snprintf(good, sizeof good, "%s", testdata_path("manifests/pretrain_cc3m.json"));
    const char *bad_text = "[{\"image\":\"/x.jpg\",\"caption\":\"c\"},{\"image\":\"/y.jpg\",\"caption\":7}]";
    const char *bad = write_tmp_file("sbu.json", bad_text, strlen(bad_text));
    const char *both[] = {good, bad};
    assert_error(manifest_load(&m, MANIFEST_PRETRAIN, both, 2), ALBEF_ERR_INVALID,
                 "sbu.json: item 1: 'caption' must be a string or a list of strings, got 7");
    const char *empty = write_tmp_file("empty.json", "", 0);
    const char *empties[] = {empty};
    assert_error(manifest_load(&m, MANIFEST_PRETRAIN, empties, 1), ALBEF_ERR_INVALID, "empty.json: empty file");
}

static void test_empty_list_bom_duplicates_and_raw_bytes(void **state)
{
    (void)state;
    manifest *m = parse_text(MANIFEST_PRETRAIN, " [ ] \n");
    assert_int_equal(manifest_count(m), 0);
    assert_int_equal(manifest_text_total(m), 0);
    assert_int_equal(manifest_text_item(m, 0), SIZE_MAX);
    manifest_free(m);

    /* a UTF-8 byte-order mark is skipped; the last duplicate key wins, as in
     * Python; bytes that are not UTF-8 pass through untouched */
    m = parse_text(MANIFEST_PRETRAIN,
                   "\xEF\xBB\xBF[{\"image\":\"first\",\"caption\":\"\xff\xfe raw\",\"image\":\"last\"}]");
    assert_string_equal(manifest_image(m, 0), "last");
    assert_string_equal(manifest_text(m, 0, 0), "\xff\xfe raw");
    manifest_free(m);

    /* a 1 MB caption and an item nested deeper than cJSON allows */
    size_t n = 1 << 20;
    char *big = malloc(n + 64);
    strcpy(big, "[{\"image\":\"a\",\"caption\":\"");
    size_t at = strlen(big);
    memset(big + at, 'x', n);
    strcpy(big + at + n, "\"}]");
    m = parse_text(MANIFEST_PRETRAIN, big);
    assert_int_equal(strlen(manifest_text(m, 0, 0)), n);
    manifest_free(m);
    memset(big, '[', 5000);
    memset(big + 5000, ']', 5000);
    assert_error(manifest_parse(&m, MANIFEST_PRETRAIN, big, 10000, "deep.json"), ALBEF_ERR_INVALID,
                 "deep.json:1:");
    free(big);
}

static void test_truncated_fixtures_fail_cleanly(void **state)
{
    (void)state;
    const char *names[] = {"manifests/pretrain_coco.json", "manifests/coco_test.json", "manifests/vqa_train.json",
                           "manifests/nlvr_dev.json"};
    const enum manifest_kind kinds[] = {MANIFEST_PRETRAIN, MANIFEST_RETRIEVAL_EVAL, MANIFEST_VQA_TRAIN,
                                        MANIFEST_NLVR};
    for (int f = 0; f < 4; f++) {
        char *text;
        size_t len;
        assert_ok(file_read_all(testdata_path(names[f]), &text, &len));
        size_t close = (size_t)(strrchr(text, ']') - text);
        for (size_t n = 0; n <= close; n++) {
            /* a private copy of exactly n bytes, so ASan catches any overread */
            char *cut = malloc(n ? n : 1);
            memcpy(cut, text, n);
            manifest *m;
            int rc = manifest_parse(&m, kinds[f], cut, n, names[f]);
            free(cut);
            if (rc != ALBEF_ERR_INVALID)
                fail_msg("%s cut to %zu of %zu bytes: rc %d (%s)", names[f], n, len, rc, albef_errmsg());
        }
        free(text);
    }
}

static void test_corrupted_bytes_never_crash(void **state)
{
    (void)state;
    char *text;
    size_t len;
    assert_ok(file_read_all(testdata_path("manifests/vqa_train.json"), &text, &len));
    rng_state rng;
    rng_seed(&rng, 1234);
    static const char noise[] = "[]{}\",:\\0 e-x";
    int ok = 0, failed = 0;
    for (int trial = 0; trial < 2000; trial++) {
        char *copy = malloc(len);
        memcpy(copy, text, len);
        for (int k = 0; k < 3; k++)
            copy[rng_below(&rng, (uint32_t)len)] = noise[rng_below(&rng, sizeof noise - 1)];
        manifest *m;
        int rc = manifest_parse(&m, (enum manifest_kind)rng_below(&rng, MANIFEST_KIND_COUNT), copy, len, "noisy.json");
        if (rc == ALBEF_OK) {
            ok++;
            for (size_t i = 0; i < manifest_count(m); i++)
                for (size_t j = 0; j < manifest_text_count(m, i); j++)
                    assert_non_null(manifest_text(m, i, j));
            manifest_free(m);
        } else {
            assert_int_equal(rc, ALBEF_ERR_INVALID);
            assert_non_null(strstr(albef_errmsg(), "noisy.json"));
            failed++;
        }
        free(copy);
    }
    free(text);
    assert_true(failed > 0);
    (void)ok;
}

static void test_join_path_like_os_path_join(void **state)
{
    (void)state;
    char buf[64];
    assert_ok(manifest_join_path(buf, sizeof buf, "/data/coco", "val2014/a.jpg"));
    assert_string_equal(buf, "/data/coco/val2014/a.jpg");
    assert_ok(manifest_join_path(buf, sizeof buf, "/data/coco/", "val2014/a.jpg"));
    assert_string_equal(buf, "/data/coco/val2014/a.jpg");
    assert_ok(manifest_join_path(buf, sizeof buf, "/data/coco", "/abs/b.jpg"));
    assert_string_equal(buf, "/abs/b.jpg");
    assert_ok(manifest_join_path(buf, sizeof buf, NULL, "rel.jpg"));
    assert_string_equal(buf, "rel.jpg");
    assert_ok(manifest_join_path(buf, sizeof buf, "", "rel.jpg"));
    assert_string_equal(buf, "rel.jpg");
    assert_ok(manifest_join_path(buf, 9, "ab", "c.jpg")); /* exactly fits: 8 bytes + NUL */
    assert_string_equal(buf, "ab/c.jpg");
    assert_error(manifest_join_path(buf, 8, "ab", "c.jpg"), ALBEF_ERR_INVALID,
                 "image path 'ab/c.jpg' is 8 bytes, more than the 7 allowed");
}

static void test_kind_names_round_trip(void **state)
{
    (void)state;
    for (int k = 0; k < MANIFEST_KIND_COUNT; k++) {
        enum manifest_kind back;
        assert_ok(manifest_kind_from_name(manifest_kind_name((enum manifest_kind)k), &back));
        assert_int_equal(back, k);
    }
    enum manifest_kind kind;
    assert_error(manifest_kind_from_name("coco", &kind), ALBEF_ERR_INVALID, "unknown manifest kind 'coco'");
    assert_null(manifest_kind_name(MANIFEST_KIND_COUNT));
}

/* Past the initial capacities: columns, texts and the image-id table grow. */
static void test_growth_keeps_every_item(void **state)
{
    (void)state;
    enum { N = 5000, IDS = 3000 };
    size_t cap = (size_t)N * 80 + 16, len = 0;
    char *json = malloc(cap);
    len += (size_t)snprintf(json + len, cap - len, "[");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(json + len, cap - len,
                                "%s{\"image\":\"i%d.jpg\",\"caption\":\"c%d\",\"image_id\":%s%d%s}",
                                i ? "," : "", i % IDS, i, i % 2 ? "\"" : "", i % IDS, i % 2 ? "\"" : "");
    len += (size_t)snprintf(json + len, cap - len, "]");
    manifest *m;
    assert_ok(manifest_parse(&m, MANIFEST_RETRIEVAL_TRAIN, json, len, "big_train.json"));
    free(json);
    assert_int_equal(manifest_count(m), N);
    /* ids i and i + 3000 share a key only when both are strings or both numbers */
    size_t next = 0;
    int64_t first_of[IDS][2];
    memset(first_of, 0xff, sizeof first_of);
    for (int i = 0; i < N; i++) {
        int64_t *want = &first_of[i % IDS][i % 2];
        if (*want < 0)
            *want = (int64_t)next++;
        if (manifest_image_idx(m, (size_t)i) != *want)
            fail_msg("item %d: image_idx %lld, expected %lld", i, (long long)manifest_image_idx(m, (size_t)i),
                     (long long)*want);
    }
    assert_int_equal(manifest_image_count(m), next);
    char want_caption[16];
    snprintf(want_caption, sizeof want_caption, "c%d", N - 1);
    assert_string_equal(manifest_text(m, N - 1, 0), want_caption);
    manifest_free(m);

    /* one question with 3000 answers over 7 distinct strings */
    cap = 3000 * 8 + 128;
    json = malloc(cap);
    len = (size_t)snprintf(json, cap, "[{\"question\":\"q\",\"image\":\"i\",\"dataset\":\"vqa\",\"answer\":[");
    for (int i = 0; i < 3000; i++)
        len += (size_t)snprintf(json + len, cap - len, "%s\"a%d\"", i ? "," : "", (i * i) % 7);
    len += (size_t)snprintf(json + len, cap - len, "]}]");
    assert_ok(manifest_parse(&m, MANIFEST_VQA_TRAIN, json, len, "many_answers.json"));
    free(json);
    /* squares mod 7 take the values 0, 1, 2, 4, first seen in the order 0, 1, 4, 2 */
    const char *order[] = {"a0", "a1", "a4", "a2"};
    int counts[7] = {0};
    for (int i = 0; i < 3000; i++)
        counts[(i * i) % 7]++;
    assert_int_equal(manifest_answer_count(m, 0), 4);
    for (size_t j = 0; j < 4; j++) {
        assert_string_equal(manifest_answer(m, 0, j), order[j]);
        float want = (float)(counts[order[j][1] - '0'] / 3000.0);
        if (manifest_answer_weight(m, 0, j) != want)
            fail_msg("answer %s: weight %.9g, expected %.9g", order[j], manifest_answer_weight(m, 0, j), want);
    }
    manifest_free(m);
}

static void test_out_of_range_accessors(void **state)
{
    (void)state;
    manifest *m = load_fixture(MANIFEST_VQA_TRAIN, "manifests/vqa_train.json");
    size_t n = manifest_count(m);
    assert_null(manifest_image(m, n));
    assert_null(manifest_text(m, n, 0));
    assert_int_equal(manifest_text_count(m, n), 0);
    assert_int_equal(manifest_answer_count(m, n), 0);
    assert_null(manifest_answer(m, n, 0));
    assert_true(manifest_answer_weight(m, n, 0) == 0.0f);
    assert_int_equal(manifest_question_id(m, n), -1);
    assert_int_equal(manifest_dataset(m, n), MANIFEST_DATASET_NONE);
    assert_true(manifest_bytes(m) > 0);
    manifest_free(m);
    manifest_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pretrain_captions_string_or_list),
        cmocka_unit_test(test_pretrain_files_concatenate),
        cmocka_unit_test(test_retrieval_train_dense_idx_first_appearance),
        cmocka_unit_test(test_retrieval_train_image_id_keys_as_python),
        cmocka_unit_test(test_retrieval_eval_img2txt_txt2img),
        cmocka_unit_test(test_vqa_train_answer_weights),
        cmocka_unit_test(test_vqa_test_and_answer_list),
        cmocka_unit_test(test_nlvr_two_images_and_label),
        cmocka_unit_test(test_ve_adds_jpg_and_maps_labels),
        cmocka_unit_test(test_grounding_train_idx_by_basename_eval_ref_id),
        cmocka_unit_test(test_fixtures_match_python_golden),
        cmocka_unit_test(test_bad_items_name_file_item_and_field),
        cmocka_unit_test(test_retrieval_eval_string_caption_is_an_error),
        cmocka_unit_test(test_bad_json_gives_line_and_column),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_empty_list_bom_duplicates_and_raw_bytes),
        cmocka_unit_test(test_truncated_fixtures_fail_cleanly),
        cmocka_unit_test(test_corrupted_bytes_never_crash),
        cmocka_unit_test(test_join_path_like_os_path_join),
        cmocka_unit_test(test_kind_names_round_trip),
        cmocka_unit_test(test_growth_keeps_every_item),
        cmocka_unit_test(test_out_of_range_accessors),
    };
    return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}
