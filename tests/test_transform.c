/* vision/transform: ToTensor + Normalize, flips, RandomResizedCrop boxes
 * against torchvision's get_params, the test transform and two training
 * pipelines against PyTorch goldens, determinism, presets, bad inputs. */
#include "core/error.h"
#include "core/file.h"
#include "vision/transform.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *read_json(const char *path)
{
    char *text = NULL;
    size_t n = 0;
    if (file_read_all(path, &text, &n))
        fail_msg("%s", albef_errmsg());
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j)
        fail_msg("%s: not valid JSON", path);
    return j;
}

static const cJSON *item(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        fail_msg("golden: missing '%s'", key);
    return v;
}

static void fill_pattern(image_u8 *img)
{
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++)
            for (int c = 0; c < img->channels; c++)
                img->data[((size_t)y * img->width + x) * img->channels + c] = (uint8_t)(x * 7 + y * 3 + c * 50);
}

static void test_presets_and_clip_constants(void **state)
{
    (void)state;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    transform_params all[4] = {transform_params_pretrain(), transform_params_train(),
                               transform_params_grounding_train(), transform_params_test(256)};
    for (int k = 0; k < 4; k++) {
        assert_ok(transform_params_check(&all[k]));
        assert_memory_equal(all[k].mean, mean, sizeof mean);
        assert_memory_equal(all[k].std, std, sizeof std);
    }
    transform_params p = all[0];
    assert_int_equal(p.res, 256);
    assert_true(p.random_crop && p.scale_min == 0.2 && p.scale_max == 1.0);
    assert_true(p.ratio_min == 3.0 / 4.0 && p.ratio_max == 4.0 / 3.0);
    assert_true(p.flip_prob == 0.5 && p.augment && p.randaug.num_ops == 2 && p.randaug.magnitude == 7);
    assert_true(p.randaug.apply_prob == 0.5 && !p.randaug.autocontrast_pil);
    p = all[1];
    assert_true(p.res == 384 && p.random_crop && p.scale_min == 0.5 && p.augment && p.flip_prob == 0.5);
    p = all[2];
    assert_true(p.res == 384 && !p.random_crop && p.augment && p.flip_prob == 0.5);
    p = all[3];
    assert_true(p.res == 256 && !p.random_crop && !p.augment && p.flip_prob == 0);
}

/* (H, W, 3) bytes -> (3, H, W) floats, ((v / 255) - mean) / std in float32. */
static void test_normalize_values_and_chw_layout(void **state)
{
    (void)state;
    image_u8 img;
    assert_ok(image_alloc(&img, 3, 2, 3));
    for (int i = 0; i < 18; i++)
        img.data[i] = (uint8_t)(i * 15);
    transform_params p = transform_params_test(2);
    float out[18];
    assert_ok(transform_to_normalized_chw(&img, p.mean, p.std, out));
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 3; x++) {
                float v = img.data[(y * 3 + x) * 3 + c];
                float want = (v / 255.0f - p.mean[c]) / p.std[c];
                float got = out[c * 6 + y * 3 + x];
                if (got != want)
                    fail_msg("c %d y %d x %d: got %.9g, expected %.9g", c, y, x, got, want);
            }
    /* Spot values: 0 and 255 in the red channel. */
    img.data[0] = 0;
    img.data[3] = 255;
    assert_ok(transform_to_normalized_chw(&img, p.mean, p.std, out));
    assert_true(fabsf(out[0] - (-0.48145466f / 0.26862954f)) < 1e-6f);
    assert_true(fabsf(out[1] - ((1.0f - 0.48145466f) / 0.26862954f)) < 1e-6f);
    image_free(&img);
}

static void test_flip_horizontal(void **state)
{
    (void)state;
    image_u8 img;
    assert_ok(image_alloc(&img, 5, 3, 3));
    fill_pattern(&img);
    uint8_t before[45];
    memcpy(before, img.data, 45);
    image_flip_horizontal(&img);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++)
            for (int c = 0; c < 3; c++)
                if (img.data[(y * 5 + x) * 3 + c] != before[(y * 5 + (4 - x)) * 3 + c])
                    fail_msg("after flip, (y %d, x %d, c %d) is %d, expected source x %d's %d", y, x, c,
                             img.data[(y * 5 + x) * 3 + c], 4 - x, before[(y * 5 + (4 - x)) * 3 + c]);
    image_flip_horizontal(&img);
    assert_memory_equal(img.data, before, 45);
    image_free(&img);
}

typedef struct {
    const cJSON *draws;
    int used;
} draw_list;

static double next_draw(void *ctx)
{
    draw_list *d = ctx;
    const cJSON *v = cJSON_GetArrayItem(d->draws, d->used);
    if (!cJSON_IsNumber(v))
        fail_msg("crop box asked for draw %d; the golden has %d", d->used, cJSON_GetArraySize(d->draws));
    d->used++;
    return v->valuedouble;
}

/* Same uniform draws as torchvision's get_params was fed: same box. */
static void test_crop_box_matches_torchvision(void **state)
{
    (void)state;
    cJSON *cases = read_json(testdata_path("augment/crop_params.json"));
    int n = 0, bad = 0, fallbacks = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        int w = item(c, "width")->valueint, h = item(c, "height")->valueint;
        const cJSON *scale = item(c, "scale"), *ratio = item(c, "ratio"), *expect = item(c, "expect_ijhw");
        draw_list d = {.draws = item(c, "draws"), .used = 0};
        crop_box box;
        assert_ok(random_resized_crop_box(w, h, cJSON_GetArrayItem(scale, 0)->valuedouble,
                                          cJSON_GetArrayItem(scale, 1)->valuedouble,
                                          cJSON_GetArrayItem(ratio, 0)->valuedouble,
                                          cJSON_GetArrayItem(ratio, 1)->valuedouble, next_draw, &d, &box));
        int want[4];
        for (int k = 0; k < 4; k++)
            want[k] = cJSON_GetArrayItem(expect, k)->valueint;
        int ndraws = cJSON_GetArraySize(d.draws);
        fallbacks += ndraws == 20;
        if (box.y != want[0] || box.x != want[1] || box.height != want[2] || box.width != want[3] || d.used != ndraws) {
            fprintf(stderr, "# case %d (%dx%d): got i %d j %d h %d w %d after %d draws; torchvision: %d %d %d %d after %d\n",
                    n, w, h, box.y, box.x, box.height, box.width, d.used, want[0], want[1], want[2], want[3], ndraws);
            bad++;
        }
        n++;
    }
    cJSON_Delete(cases);
    fprintf(stderr, "# %d crop cases, %d through the fallback, %d differ\n", n, fallbacks, bad);
    assert_true(n >= 80 && fallbacks >= 5);
    if (bad)
        fail_msg("%d of %d crop boxes differ from torchvision's", bad, n);
}

static double rng_draw(void *ctx) { return rng_uniform(ctx); }

static void test_crop_box_inside_and_in_range(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 77);
    const int sizes[][2] = {{451, 300}, {300, 451}, {64, 64}, {1411, 1411}, {3, 2}, {2000, 50}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int W = sizes[s][0], H = sizes[s][1];
        for (int i = 0; i < 5000; i++) {
            crop_box b;
            assert_ok(random_resized_crop_box(W, H, 0.2, 1.0, 3.0 / 4.0, 4.0 / 3.0, rng_draw, &r, &b));
            if (b.width < 1 || b.height < 1 || b.x < 0 || b.y < 0 || b.x + b.width > W || b.y + b.height > H)
                fail_msg("%dx%d: box x %d y %d %dx%d is outside", W, H, b.x, b.y, b.width, b.height);
            double frac = (double)b.width * b.height / ((double)W * H);
            if (W >= 64 && H >= 64 && (frac < 0.18 || frac > 1.0))
                fail_msg("%dx%d: box %dx%d covers %.3f of the image; scale is (0.2, 1)", W, H, b.width, b.height, frac);
        }
    }
}

/* Resize((64, 64), BICUBIC) + ToTensor + Normalize of chelsea.png, against
 * torchvision on PIL. Needs the resize to match Pillow. */
static void test_test_transform_matches_torchvision(void **state)
{
    (void)state;
    image_u8 img;
    assert_ok(image_load(shared_data_path("real-images/chelsea.png"), &img));
    float *want = NULL;
    size_t n = 0;
    assert_ok(file_read_all(testdata_path("augment/test_transform_64.f32"), (char **)&want, &n));
    assert_int_equal(n, 3 * 64 * 64 * sizeof(float));
    float *out = malloc(n);
    assert_non_null(out);
    transform_params p = transform_params_test(64);
    assert_ok(transform_apply(&p, &img, NULL, out));
    double max_abs = 0;
    for (size_t i = 0; i < 3 * 64 * 64; i++)
        max_abs = fmax(max_abs, fabs((double)out[i] - want[i]));
    fprintf(stderr, "# test transform, chelsea.png at 64: max abs diff %.3g\n", max_abs);
    assert_close_f32(out, want, 3 * 64 * 64, 1e-6, 0, "test transform (3, 64, 64)");
    free(out);
    free(want);
    image_free(&img);
}

/* Crop + resize + flip + two ops, with torchvision/PIL/ALBEF's ops given the
 * same choices; the golden holds the bytes before ToTensor. */
static void test_training_pipelines_match_goldens(void **state)
{
    (void)state;
    cJSON *manifest = read_json(testdata_path("augment/manifest.json"));
    const cJSON *pl;
    int count = 0;
    cJSON_ArrayForEach(pl, item(manifest, "pipelines"))
    {
        char rel[256], golden_rel[256];
        snprintf(rel, sizeof rel, "real-images/%s", item(pl, "photo")->valuestring);
        snprintf(golden_rel, sizeof golden_rel, "augment/%s.u8", item(pl, "name")->valuestring);
        image_u8 img;
        assert_ok(image_load(shared_data_path(rel), &img));
        transform_params p = transform_params_pretrain();
        p.res = item(pl, "res")->valueint;
        p.randaug.magnitude = item(pl, "magnitude")->valueint;
        const cJSON *ijhw = item(pl, "crop_ijhw"), *steps = item(pl, "steps");
        transform_sample s = {
            .crop = {.y = cJSON_GetArrayItem(ijhw, 0)->valueint, .x = cJSON_GetArrayItem(ijhw, 1)->valueint,
                     .height = cJSON_GetArrayItem(ijhw, 2)->valueint, .width = cJSON_GetArrayItem(ijhw, 3)->valueint},
            .flip = item(pl, "flip")->valueint,
            .augment = {.count = cJSON_GetArraySize(steps)},
        };
        for (int k = 0; k < s.augment.count; k++) {
            const cJSON *st = cJSON_GetArrayItem(steps, k);
            s.augment.ops[k] = (randaug_choice){
                .op = (enum randaug_op)randaug_op_from_name(cJSON_GetArrayItem(st, 0)->valuestring),
                .applied = 1,
                .negate = cJSON_GetArrayItem(st, 1)->valueint};
        }
        size_t plane = (size_t)p.res * p.res, n = 0;
        float *out = malloc(3 * plane * sizeof(float)), *want = malloc(3 * plane * sizeof(float));
        char *bytes = NULL;
        assert_true(out && want);
        assert_ok(transform_run(&p, &s, &img, out));
        assert_ok(file_read_all(testdata_path(golden_rel), &bytes, &n));
        assert_int_equal(n, 3 * plane);
        image_u8 golden = {.width = p.res, .height = p.res, .channels = 3, .data = (uint8_t *)bytes};
        assert_ok(transform_to_normalized_chw(&golden, p.mean, p.std, want));
        int differing = 0;
        for (size_t i = 0; i < 3 * plane; i++)
            differing += out[i] != want[i];
        fprintf(stderr, "# %s: %d of %zu values differ\n", item(pl, "name")->valuestring, differing, 3 * plane);
        assert_close_f32(out, want, 3 * plane, 0, 0, item(pl, "name")->valuestring);
        free(bytes);
        free(out);
        free(want);
        image_free(&img);
        count++;
    }
    cJSON_Delete(manifest);
    assert_int_equal(count, 2);
}

static void test_same_seed_same_output(void **state)
{
    (void)state;
    image_u8 img;
    assert_ok(image_alloc(&img, 120, 90, 3));
    fill_pattern(&img);
    transform_params p = transform_params_pretrain();
    p.res = 48;
    size_t n = 3 * 48 * 48;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    assert_true(a && b);
    int differ = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        rng_state ra, rb;
        rng_seed_stream(&ra, 1234, seed);
        rng_seed_stream(&rb, 1234, seed);
        assert_ok(transform_apply(&p, &img, &ra, a));
        assert_ok(transform_apply(&p, &img, &rb, b));
        assert_memory_equal(a, b, n * sizeof(float));
        assert_memory_equal(&ra, &rb, sizeof ra);
        rng_seed_stream(&rb, 1234, seed + 100);
        assert_ok(transform_apply(&p, &img, &rb, b));
        differ += memcmp(a, b, n * sizeof(float)) != 0;
    }
    assert_true(differ >= 19);
    free(a);
    free(b);
    image_free(&img);
}

/* Each preset writes exactly (3, res, res) floats. */
static void test_output_shape_per_preset(void **state)
{
    (void)state;
    image_u8 img;
    assert_ok(image_alloc(&img, 150, 100, 3));
    fill_pattern(&img);
    transform_params presets[4] = {transform_params_pretrain(), transform_params_train(),
                                   transform_params_grounding_train(), transform_params_test(224)};
    const int res[4] = {256, 384, 384, 224};
    rng_state r;
    rng_seed(&r, 5);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(presets[k].res, res[k]);
        size_t n = 3 * (size_t)res[k] * res[k];
        float *out = malloc((n + 16) * sizeof(float));
        assert_non_null(out);
        for (size_t i = 0; i < n + 16; i++)
            out[i] = NAN;
        assert_ok(transform_apply(&presets[k], &img, &r, out));
        for (size_t i = 0; i < n; i++)
            if (!isfinite(out[i]) || fabsf(out[i]) > 3.0f)
                fail_msg("preset %d: value %zu is %g", k, i, out[i]);
        for (size_t i = n; i < n + 16; i++)
            assert_true(isnan(out[i]));
        free(out);
    }
    image_free(&img);
}

static void test_flip_probability(void **state)
{
    (void)state;
    transform_params p = transform_params_grounding_train();
    rng_state r;
    rng_seed(&r, 8);
    int flips = 0, N = 20000;
    for (int i = 0; i < N; i++) {
        transform_sample s;
        assert_ok(transform_draw(&p, 640, 480, &r, &s));
        flips += s.flip;
        assert_true(s.crop.x == 0 && s.crop.y == 0 && s.crop.width == 640 && s.crop.height == 480);
        assert_int_equal(s.augment.count, 2);
    }
    double f = flips / (double)N;
    if (fabs(f - 0.5) > 0.015)
        fail_msg("flip frequency %.4f, expected 0.5", f);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    image_u8 img, gray;
    assert_ok(image_alloc(&img, 20, 10, 3));
    assert_ok(image_alloc(&gray, 20, 10, 1));
    fill_pattern(&img);
    fill_pattern(&gray);
    float out[3 * 8 * 8];
    rng_state r;
    rng_seed(&r, 1);
    transform_params p = transform_params_pretrain();
    p.res = 8;
    assert_ok(transform_apply(&p, &img, &r, out));
    assert_error(transform_apply(&p, &img, NULL, out), ALBEF_ERR_INVALID, "rng is NULL");
    assert_error(transform_apply(&p, &gray, &r, out), ALBEF_ERR_INVALID, "1 channels; expected 3");
    assert_error(transform_apply(&p, NULL, &r, out), ALBEF_ERR_INVALID, "image is NULL");
    transform_params q = p;
    q.res = 0;
    assert_error(transform_apply(&q, &img, &r, out), ALBEF_ERR_INVALID, "res must be");
    q = p;
    q.scale_min = 0.9;
    q.scale_max = 0.5;
    assert_error(transform_apply(&q, &img, &r, out), ALBEF_ERR_INVALID, "crop scale (0.9, 0.5)");
    q = p;
    q.ratio_min = -1;
    assert_error(transform_apply(&q, &img, &r, out), ALBEF_ERR_INVALID, "crop ratio");
    q = p;
    q.flip_prob = 1.5;
    assert_error(transform_apply(&q, &img, &r, out), ALBEF_ERR_INVALID, "flip_prob");
    q = p;
    q.std[1] = 0;
    assert_error(transform_apply(&q, &img, &r, out), ALBEF_ERR_INVALID, "channel 1");
    /* RandomAugment with no ops draws nothing: no rng needed. */
    q = transform_params_test(8);
    q.augment = 1;
    q.randaug.num_ops = 0;
    assert_ok(transform_apply(&q, &img, NULL, out));
    q = p;
    q.randaug.magnitude = 12;
    assert_error(transform_apply(&q, &img, &r, out), ALBEF_ERR_INVALID, "transform: randaugment: magnitude");

    transform_sample s;
    assert_ok(transform_draw(&p, 20, 10, &r, &s));
    s.crop.x = 15;
    s.crop.width = 6;
    assert_error(transform_run(&p, &s, &img, out), ALBEF_ERR_INVALID, "does not lie inside the 20x10 image");
    s.crop = (crop_box){.x = 0, .y = 0, .width = 0, .height = 5};
    assert_error(transform_run(&p, &s, &img, out), ALBEF_ERR_INVALID, "does not lie inside");

    crop_box b;
    assert_error(random_resized_crop_box(0, 10, 0.2, 1, 0.75, 1.33, rng_draw, &r, &b), ALBEF_ERR_INVALID, "0x10");
    assert_error(random_resized_crop_box(10, 10, NAN, 1, 0.75, 1.33, rng_draw, &r, &b), ALBEF_ERR_INVALID, "scale");
    assert_error(random_resized_crop_box(10, 10, 0.2, 1, 0.75, INFINITY, rng_draw, &r, &b), ALBEF_ERR_INVALID, "ratio");
    assert_error(random_resized_crop_box(10, 10, 0.2, 1, 0.75, 1.33, NULL, &r, &b), ALBEF_ERR_INVALID, "NULL");
    /* Huge sizes: the box still lies inside; a huge crop is refused by the run. */
    for (int i = 0; i < 100; i++) {
        assert_ok(random_resized_crop_box(INT_MAX, INT_MAX, 0.08, 1, 0.75, 1.33, rng_draw, &r, &b));
        assert_true(b.x >= 0 && b.y >= 0 && b.width >= 1 && b.height >= 1);
        assert_true(b.x <= INT_MAX - b.width && b.y <= INT_MAX - b.height);
    }
    s.crop = (crop_box){.x = 1, .y = 0, .width = INT_MAX, .height = 5};
    assert_error(transform_run(&p, &s, &img, out), ALBEF_ERR_INVALID, "does not lie inside");
    q = p;
    q.res = 1 << 20;
    assert_error(transform_run(&q, &s, &img, out), ALBEF_ERR_INVALID, "res must be in [1, 30000]");
    assert_error(transform_to_normalized_chw(&gray, p.mean, p.std, out), ALBEF_ERR_INVALID, "expected 3 channels");
    image_free(&img);
    image_free(&gray);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_and_clip_constants),
        cmocka_unit_test(test_normalize_values_and_chw_layout),
        cmocka_unit_test(test_flip_horizontal),
        cmocka_unit_test(test_crop_box_matches_torchvision),
        cmocka_unit_test(test_crop_box_inside_and_in_range),
        cmocka_unit_test(test_test_transform_matches_torchvision),
        cmocka_unit_test(test_training_pipelines_match_goldens),
        cmocka_unit_test(test_same_seed_same_output),
        cmocka_unit_test(test_output_shape_per_preset),
        cmocka_unit_test(test_flip_probability),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests_name("transform", tests, NULL, NULL);
}
