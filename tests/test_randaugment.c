/* vision/randaugment: each op against ALBEF's numpy/OpenCV code (goldens from
 * scripts/dev/make_augment_goldens.py), sampling, determinism, bad inputs. */
#include "core/error.h"
#include "core/file.h"
#include "vision/randaugment.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cJSON *manifest;
    char *images, *outputs;
    size_t images_size, outputs_size;
} goldens;

static int goldens_setup(void **state)
{
    goldens *g = calloc(1, sizeof *g);
    char *json = NULL;
    size_t n = 0;
    if (!g || file_read_all(testdata_path("augment/manifest.json"), &json, &n) ||
        file_read_all(testdata_path("augment/images.bin"), &g->images, &g->images_size) ||
        file_read_all(testdata_path("augment/ops.bin"), &g->outputs, &g->outputs_size)) {
        fprintf(stderr, "# cannot read testdata/augment: %s\n", albef_errmsg());
        return -1;
    }
    g->manifest = cJSON_Parse(json);
    free(json);
    if (!g->manifest)
        return -1;
    *state = g;
    return 0;
}

static int goldens_teardown(void **state)
{
    goldens *g = *state;
    if (g) {
        cJSON_Delete(g->manifest);
        free(g->images);
        free(g->outputs);
        free(g);
    }
    return 0;
}

static int json_int(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        fail_msg("manifest: '%s' is missing or not a number", key);
    return v->valueint;
}

/* A view of one input image by name (pixels are not owned). */
static image_u8 golden_image(const goldens *g, const char *name)
{
    const cJSON *img;
    cJSON_ArrayForEach(img, cJSON_GetObjectItemCaseSensitive(g->manifest, "images"))
    {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(img, "name")->valuestring, name) != 0)
            continue;
        image_u8 v = {.width = json_int(img, "width"), .height = json_int(img, "height"), .channels = 3};
        size_t off = (size_t)json_int(img, "offset");
        assert_true(off + (size_t)v.width * v.height * 3 <= g->images_size);
        v.data = (uint8_t *)g->images + off;
        return v;
    }
    fail_msg("manifest: no image '%s'", name);
    return (image_u8){0};
}

static image_u8 image_copy(const image_u8 *src)
{
    image_u8 out;
    assert_ok(image_alloc(&out, src->width, src->height, src->channels));
    memcpy(out.data, src->data, (size_t)src->width * src->height * src->channels);
    return out;
}

typedef struct {
    int cases, differing_cases;
    long pixels, differing;
    int max_diff;
} op_stats;

static void test_ops_match_albef_goldens(void **state)
{
    goldens *g = *state;
    op_stats stats[RANDAUG_NUM_OPS + 1] = {{0}}; /* the last slot: AutoContrast in PIL mode */
    op_stats chains = {0};
    int total_bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(g->manifest, "cases"))
    {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "image")->valuestring;
        int magnitude = json_int(c, "magnitude");
        image_u8 src = golden_image(g, name);
        image_u8 img = image_copy(&src);
        const cJSON *steps = cJSON_GetObjectItemCaseSensitive(c, "steps");
        int nsteps = cJSON_GetArraySize(steps), slot = -1;
        randaug_params p = randaug_params_albef();
        p.magnitude = magnitude;
        randaug_plan plan = {.count = nsteps};
        char label[128];
        int len = snprintf(label, sizeof label, "%s M=%d", name, magnitude);
        for (int k = 0; k < nsteps; k++) {
            const cJSON *step = cJSON_GetArrayItem(steps, k);
            const char *opname = cJSON_GetArrayItem(step, 0)->valuestring;
            int negate = cJSON_GetArrayItem(step, 1)->valueint;
            int op = randaug_op_from_name(opname);
            if (strcmp(opname, "AutoContrastPIL") == 0) {
                op = RANDAUG_AUTOCONTRAST;
                p.autocontrast_pil = 1;
                slot = RANDAUG_NUM_OPS;
            } else {
                slot = op;
            }
            assert_true(op >= 0);
            plan.ops[k] = (randaug_choice){.op = (enum randaug_op)op, .applied = 1, .negate = negate};
            len += snprintf(label + len, sizeof label - len, " %s%s", opname, negate ? "-" : "+");
        }
        if (nsteps == 1) {
            image_u8 dst;
            assert_ok(image_alloc(&dst, img.width, img.height, 3));
            assert_ok(randaug_op_apply(plan.ops[0].op, magnitude, plan.ops[0].negate, p.autocontrast_pil, &img, &dst));
            image_free(&img);
            img = dst;
        } else {
            assert_ok(randaug_apply_plan(&p, &plan, &img, NULL));
        }
        size_t n = (size_t)img.width * img.height * 3, off = (size_t)json_int(c, "offset");
        assert_true(off + n <= g->outputs_size);
        const uint8_t *want = (const uint8_t *)g->outputs + off;
        int max_diff = 0, differing = 0, first = -1;
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)img.data[i] - (int)want[i]);
            if (d) {
                differing++;
                if (first < 0)
                    first = (int)i;
            }
            max_diff = d > max_diff ? d : max_diff;
        }
        op_stats *s = nsteps == 1 ? &stats[slot] : &chains;
        s->cases++;
        s->pixels += (long)n;
        s->differing += differing;
        s->differing_cases += differing > 0;
        s->max_diff = max_diff > s->max_diff ? max_diff : s->max_diff;
        if (differing) {
            fprintf(stderr, "# %s: %d of %zu bytes differ, max %d; first at byte %d: got %d, want %d\n", label,
                    differing, n, max_diff, first, img.data[first], want[first]);
            total_bad++;
        }
        image_free(&img);
    }
    for (int k = 0; k <= RANDAUG_NUM_OPS; k++) {
        op_stats *s = &stats[k];
        fprintf(stderr, "# %-15s %3d cases, %2d differ; %ld of %ld bytes differ, max diff %d\n",
                k < RANDAUG_NUM_OPS ? randaug_op_name((enum randaug_op)k) : "AutoContrastPIL", s->cases,
                s->differing_cases, s->differing, s->pixels, s->max_diff);
        assert_true(s->cases > 0);
    }
    fprintf(stderr, "# %-15s %3d cases, %2d differ; %ld of %ld bytes differ, max diff %d\n", "two-op chains",
            chains.cases, chains.differing_cases, chains.differing, chains.pixels, chains.max_diff);
    if (total_bad)
        fail_msg("%d golden cases differ from ALBEF's ops", total_bad);
}

/* Every op works per channel: a one-channel image gives the golden's red plane. */
static void test_single_channel_matches_rgb_plane(void **state)
{
    goldens *g = *state;
    image_u8 rgb = golden_image(g, "photo"), gray, out_gray, out_rgb;
    assert_ok(image_alloc(&gray, rgb.width, rgb.height, 1));
    assert_ok(image_alloc(&out_gray, rgb.width, rgb.height, 1));
    assert_ok(image_alloc(&out_rgb, rgb.width, rgb.height, 3));
    size_t pixels = (size_t)rgb.width * rgb.height;
    for (size_t i = 0; i < pixels; i++)
        gray.data[i] = rgb.data[3 * i];
    for (int op = 0; op < RANDAUG_NUM_OPS; op++)
        for (int neg = 0; neg < 2; neg++) {
            assert_ok(randaug_op_apply((enum randaug_op)op, 7, neg, 0, &rgb, &out_rgb));
            assert_ok(randaug_op_apply((enum randaug_op)op, 7, neg, 0, &gray, &out_gray));
            for (size_t i = 0; i < pixels; i++)
                if (out_gray.data[i] != out_rgb.data[3 * i])
                    fail_msg("%s%s: pixel %zu is %d in one channel, %d in RGB", randaug_op_name((enum randaug_op)op),
                             neg ? "-" : "+", i, out_gray.data[i], out_rgb.data[3 * i]);
        }
    image_free(&gray);
    image_free(&out_gray);
    image_free(&out_rgb);
}

/* ALBEF's AutoContrast negates the channel minimum as a uint8: a channel
 * that does not reach 0 turns white; one that does is stretched. */
static void test_autocontrast_copies_albef_uint8_wrap(void **state)
{
    (void)state;
    image_u8 src, dst;
    assert_ok(image_alloc(&src, 4, 1, 3));
    assert_ok(image_alloc(&dst, 4, 1, 3));
    const uint8_t px[12] = {10, 0, 7, 60, 50, 7, 110, 100, 7, 210, 200, 7};
    memcpy(src.data, px, sizeof px);
    assert_ok(randaug_op_apply(RANDAUG_AUTOCONTRAST, 7, 0, 0, &src, &dst));
    /* 200 * (255 / 200.) is 254.99999999999997 in double: truncated to 254. */
    const uint8_t albef[12] = {255, 0, 7, 255, 63, 7, 255, 127, 7, 255, 254, 7};
    for (int i = 0; i < 12; i++)
        if (dst.data[i] != albef[i])
            fail_msg("ALBEF mode: byte %d is %d, expected %d", i, dst.data[i], albef[i]);
    assert_ok(randaug_op_apply(RANDAUG_AUTOCONTRAST, 7, 0, 1, &src, &dst));
    const uint8_t pil[12] = {0, 0, 7, 63, 63, 7, 127, 127, 7, 255, 254, 7}; /* PIL gives the same */
    for (int i = 0; i < 12; i++)
        if (dst.data[i] != pil[i])
            fail_msg("PIL mode: byte %d is %d, expected %d", i, dst.data[i], pil[i]);
    image_free(&src);
    image_free(&dst);
}

/* The draws come in ALBEF's order: N op indices, then per op the
 * probability draw and, if it runs and has a sign, the sign draw. */
static void test_sample_draw_order(void **state)
{
    (void)state;
    randaug_params p = randaug_params_albef();
    for (uint64_t seed = 0; seed < 200; seed++) {
        rng_state a, b;
        rng_seed(&a, seed);
        rng_seed(&b, seed);
        randaug_plan plan;
        assert_ok(randaug_sample(&p, &a, &plan));
        assert_int_equal(plan.count, 2);
        int ops[2] = {(int)rng_below(&b, RANDAUG_NUM_OPS), (int)rng_below(&b, RANDAUG_NUM_OPS)};
        for (int k = 0; k < 2; k++) {
            assert_int_equal(plan.ops[k].op, ops[k]);
            int applied = !(rng_uniform(&b) > 0.5);
            assert_int_equal(plan.ops[k].applied, applied);
            if (applied && ops[k] >= RANDAUG_SHEAR_X) {
                double u = rng_uniform(&b);
                assert_int_equal(plan.ops[k].negate, ops[k] == RANDAUG_ROTATE ? u < 0.5 : u > 0.5);
            } else {
                assert_int_equal(plan.ops[k].negate, 0);
            }
        }
        assert_true(memcmp(&a, &b, sizeof a) == 0);
    }
}

/* N = 2 with replacement, p = 0.5, signs fair. */
static void test_sample_statistics(void **state)
{
    (void)state;
    enum { DRAWS = 200000 };
    randaug_params p = randaug_params_albef();
    rng_state rng;
    rng_seed(&rng, 2021);
    long op_count[RANDAUG_NUM_OPS] = {0}, applied = 0, same = 0, signed_ops = 0, negated = 0;
    for (int i = 0; i < DRAWS; i++) {
        randaug_plan plan;
        assert_ok(randaug_sample(&p, &rng, &plan));
        same += plan.ops[0].op == plan.ops[1].op;
        for (int k = 0; k < 2; k++) {
            op_count[plan.ops[k].op]++;
            applied += plan.ops[k].applied;
            if (plan.ops[k].applied && plan.ops[k].op >= RANDAUG_SHEAR_X) {
                signed_ops++;
                negated += plan.ops[k].negate;
            }
        }
    }
    for (int k = 0; k < RANDAUG_NUM_OPS; k++) {
        double f = op_count[k] / (2.0 * DRAWS);
        if (fabs(f - 0.1) > 0.003)
            fail_msg("op %s drawn with frequency %.4f, expected 0.1", randaug_op_name((enum randaug_op)k), f);
    }
    double fa = applied / (2.0 * DRAWS), fs = same / (double)DRAWS, fn = negated / (double)signed_ops;
    fprintf(stderr, "# applied %.4f, both ops equal %.4f, negated %.4f\n", fa, fs, fn);
    if (fabs(fa - 0.5) > 0.004)
        fail_msg("ops applied with frequency %.4f, expected 0.5", fa);
    if (fabs(fs - 0.1) > 0.004)
        fail_msg("the two ops are the same with frequency %.4f, expected 0.1 (drawn with replacement)", fs);
    if (fabs(fn - 0.5) > 0.006)
        fail_msg("signs negated with frequency %.4f, expected 0.5", fn);
}

static void fill_pattern(image_u8 *img, uint64_t seed)
{
    rng_state r;
    rng_seed(&r, seed);
    size_t n = (size_t)img->width * img->height * img->channels;
    for (size_t i = 0; i < n; i++)
        img->data[i] = (uint8_t)(((i / 3) % 97) * 2 + rng_below(&r, 40));
}

static void test_apply_is_deterministic(void **state)
{
    (void)state;
    randaug_params p = randaug_params_albef();
    p.apply_prob = 1.0;
    image_u8 a, b;
    assert_ok(image_alloc(&a, 40, 30, 3));
    assert_ok(image_alloc(&b, 40, 30, 3));
    int changed = 0;
    for (uint64_t seed = 0; seed < 50; seed++) {
        fill_pattern(&a, 5);
        fill_pattern(&b, 5);
        rng_state ra, rb;
        rng_seed(&ra, seed);
        rng_seed(&rb, seed);
        uint8_t scratch[40 * 30 * 3];
        randaug_plan pa, pb;
        assert_ok(randaug_apply(&p, &ra, &a, scratch, &pa));
        assert_ok(randaug_apply(&p, &rb, &b, NULL, &pb));
        assert_memory_equal(&pa, &pb, sizeof pa);
        assert_memory_equal(a.data, b.data, 40 * 30 * 3);
        fill_pattern(&b, 5);
        changed += memcmp(a.data, b.data, 40 * 30 * 3) != 0;
    }
    /* Only Identity twice leaves the image as it was. */
    assert_true(changed >= 45);
    image_free(&a);
    image_free(&b);
}

static void test_probability_zero_leaves_image(void **state)
{
    (void)state;
    randaug_params p = randaug_params_albef();
    p.apply_prob = 0.0;
    image_u8 a;
    assert_ok(image_alloc(&a, 9, 7, 3));
    fill_pattern(&a, 1);
    uint8_t before[9 * 7 * 3];
    memcpy(before, a.data, sizeof before);
    rng_state r;
    rng_seed(&r, 3);
    for (int i = 0; i < 100; i++)
        assert_ok(randaug_apply(&p, &r, &a, NULL, NULL));
    assert_memory_equal(a.data, before, sizeof before);
    image_free(&a);
}

/* A warp at magnitude 0 is the identity matrix: an exact copy. */
static void test_zero_magnitude_warps_copy(void **state)
{
    (void)state;
    image_u8 a, b;
    assert_ok(image_alloc(&a, 13, 11, 3));
    assert_ok(image_alloc(&b, 13, 11, 3));
    fill_pattern(&a, 9);
    for (int op = RANDAUG_SHEAR_X; op <= RANDAUG_ROTATE; op++) {
        assert_ok(randaug_op_apply((enum randaug_op)op, 0, 1, 0, &a, &b));
        assert_memory_equal(a.data, b.data, 13 * 11 * 3);
    }
    image_free(&a);
    image_free(&b);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    image_u8 a, b, small;
    assert_ok(image_alloc(&a, 8, 6, 3));
    assert_ok(image_alloc(&b, 8, 6, 3));
    assert_ok(image_alloc(&small, 7, 6, 3));
    fill_pattern(&a, 2);
    image_u8 none = {0};
    assert_error(randaug_op_apply(RANDAUG_ROTATE, 7, 0, 0, &none, &b), ALBEF_ERR_INVALID, "source image has no pixels");
    assert_error(randaug_op_apply(RANDAUG_ROTATE, 7, 0, 0, NULL, &b), ALBEF_ERR_INVALID, "source");
    assert_error(randaug_op_apply(RANDAUG_ROTATE, 7, 0, 0, &a, &small), ALBEF_ERR_INVALID, "destination is 7x6x3");
    assert_error(randaug_op_apply(RANDAUG_ROTATE, 7, 0, 0, &a, &a), ALBEF_ERR_INVALID, "must not be the source");
    assert_error(randaug_op_apply(RANDAUG_SHEAR_X, 11, 0, 0, &a, &b), ALBEF_ERR_INVALID, "magnitude");
    assert_error(randaug_op_apply(RANDAUG_NUM_OPS, 7, 0, 0, &a, &b), ALBEF_ERR_INVALID, "not one of");
    assert_error(randaug_op_apply((enum randaug_op)-1, 7, 0, 0, &a, &b), ALBEF_ERR_INVALID, "not one of");
    image_u8 five = a;
    five.channels = 5;
    assert_error(randaug_op_apply(RANDAUG_EQUALIZE, 7, 0, 0, &five, &b), ALBEF_ERR_INVALID, "1-4 channels");
    image_u8 flat = a;
    flat.height = 0;
    assert_error(randaug_op_apply(RANDAUG_EQUALIZE, 7, 0, 0, &flat, &b), ALBEF_ERR_INVALID, "8x0x3");
    /* A huge side is refused before any pixel is read. */
    image_u8 huge = a;
    huge.width = 1 << 30;
    huge.height = 1;
    assert_error(randaug_op_apply(RANDAUG_ROTATE, 7, 0, 0, &huge, &b), ALBEF_ERR_INVALID, "sides are limited");
    assert_error(randaug_apply(&(randaug_params){.num_ops = 2, .magnitude = 7, .apply_prob = 1}, &(rng_state){{1, 2, 3, 4}},
                               &huge, NULL, NULL),
                 ALBEF_ERR_INVALID, "sides are limited");
    /* Point ops may work in place. */
    assert_ok(randaug_op_apply(RANDAUG_EQUALIZE, 7, 0, 0, &a, &a));

    rng_state r;
    rng_seed(&r, 1);
    randaug_params p = randaug_params_albef();
    p.num_ops = RANDAUG_MAX_OPS + 1;
    assert_error(randaug_apply(&p, &r, &a, NULL, NULL), ALBEF_ERR_INVALID, "num_ops must be in [0, 8], got 9");
    p = randaug_params_albef();
    p.magnitude = -1;
    assert_error(randaug_apply(&p, &r, &a, NULL, NULL), ALBEF_ERR_INVALID, "magnitude must be in [0, 10], got -1");
    p = randaug_params_albef();
    p.apply_prob = NAN;
    assert_error(randaug_apply(&p, &r, &a, NULL, NULL), ALBEF_ERR_INVALID, "apply_prob");
    p = randaug_params_albef();
    assert_error(randaug_apply(&p, NULL, &a, NULL, NULL), ALBEF_ERR_INVALID, "rng");
    randaug_plan plan = {.count = 1, .ops = {{.op = (enum randaug_op)42, .applied = 1}}};
    assert_error(randaug_apply_plan(&p, &plan, &a, NULL), ALBEF_ERR_INVALID, "plan op 0 is 42");
    plan.count = -3;
    assert_error(randaug_apply_plan(&p, &plan, &a, NULL), ALBEF_ERR_INVALID, "plan has -3 ops");

    assert_string_equal(randaug_op_name(RANDAUG_TRANSLATE_Y), "TranslateY");
    assert_null(randaug_op_name(RANDAUG_NUM_OPS));
    assert_int_equal(randaug_op_from_name("Rotate"), RANDAUG_ROTATE);
    assert_int_equal(randaug_op_from_name("Solarize"), -1);
    assert_int_equal(randaug_op_from_name(NULL), -1);
    image_free(&a);
    image_free(&b);
    image_free(&small);
}

/* One-pixel and one-row images go through every op without reading outside. */
static void test_degenerate_sizes(void **state)
{
    (void)state;
    const int sizes[][2] = {{1, 1}, {1, 5}, {5, 1}, {2, 2}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        image_u8 a, b;
        assert_ok(image_alloc(&a, sizes[s][0], sizes[s][1], 3));
        assert_ok(image_alloc(&b, sizes[s][0], sizes[s][1], 3));
        fill_pattern(&a, 4);
        for (int op = 0; op < RANDAUG_NUM_OPS; op++)
            for (int neg = 0; neg < 2; neg++)
                assert_ok(randaug_op_apply((enum randaug_op)op, 10, neg, 0, &a, &b));
        image_free(&a);
        image_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_match_albef_goldens),
        cmocka_unit_test(test_single_channel_matches_rgb_plane),
        cmocka_unit_test(test_autocontrast_copies_albef_uint8_wrap),
        cmocka_unit_test(test_sample_draw_order),
        cmocka_unit_test(test_sample_statistics),
        cmocka_unit_test(test_apply_is_deterministic),
        cmocka_unit_test(test_probability_zero_leaves_image),
        cmocka_unit_test(test_zero_magnitude_warps_copy),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_degenerate_sizes),
    };
    return cmocka_run_group_tests_name("randaugment", tests, goldens_setup, goldens_teardown);
}
