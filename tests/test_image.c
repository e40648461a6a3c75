/* io/image: JPEG and PNG decoding to Pillow's RGB bytes; broken files give
 * clean errors that name the file. Fixtures and goldens come from
 * scripts/dev/make_image_goldens.py (Pillow 9.4). */
#include "core/error.h"
#include "core/file.h"
#include "io/image.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *manifest; /* testdata/images/decode_goldens.txt */

static int load_manifest(void **state)
{
    (void)state;
    if (file_read_all(testdata_path("images/decode_goldens.txt"), &manifest, NULL) != 0) {
        fprintf(stderr, "# %s\n", albef_errmsg());
        return -1;
    }
    return 0;
}

static int free_manifest(void **state)
{
    (void)state;
    free(manifest);
    manifest = NULL;
    return 0;
}

/* Finds "ok NAME W H" in the manifest. */
static int manifest_size(const char *name, int *w, int *h)
{
    char key[128];
    snprintf(key, sizeof key, "\nok %s ", name);
    const char *p = strstr(manifest, key);
    return p && sscanf(p + strlen(key), "%d %d", w, h) == 2;
}

static void read_fixture(const char *name, uint8_t **data, size_t *n)
{
    char rel[128];
    snprintf(rel, sizeof rel, "images/%s", name);
    assert_ok(file_read_all(testdata_path(rel), (char **)data, n));
}

/* Fails with the first differing pixel and the number of differing bytes. */
static void assert_pixels_equal(const uint8_t *got, const uint8_t *want, int w, int h, const char *what)
{
    size_t n = (size_t)w * h * 3, bad = 0, first = 0;
    int max_diff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs(got[i] - want[i]);
        if (d) {
            if (!bad)
                first = i;
            bad++;
            if (d > max_diff)
                max_diff = d;
        }
    }
    if (bad) {
        size_t px = first / 3;
        fail_msg("%s: %zu of %zu bytes differ (max %d); first at x %zu y %zu channel %zu: got %d, Pillow %d", what,
                 bad, n, max_diff, px % (size_t)w, px / (size_t)w, first % 3, got[first], want[first]);
    }
}

static void test_fixture_decodes_as_pillow(void **state)
{
    const char *name = *state;
    int w, h;
    if (!manifest_size(name, &w, &h))
        fail_msg("%s: no 'ok' line in decode_goldens.txt", name);
    char rel[128], golden[128];
    snprintf(rel, sizeof rel, "images/%s", name);
    snprintf(golden, sizeof golden, "%.*s.rgb", (int)(strrchr(name, '.') - name), name);
    uint8_t *want;
    size_t n;
    read_fixture(golden, &want, &n);
    assert_int_equal(n, (size_t)w * h * 3);

    image_u8 img;
    assert_ok(image_load(testdata_path(rel), &img));
    if (img.width != w || img.height != h || img.channels != 3)
        fail_msg("%s: decoded %dx%dx%d; Pillow %dx%dx3", name, img.width, img.height, img.channels, w, h);
    assert_pixels_equal(img.data, want, w, h, name);
    image_free(&img);
    free(want);
}

/* Fixtures Pillow decodes; each has NAME.rgb with Pillow's bytes. */
#define GOOD_FIXTURES(X)                                                                                           \
    X("png_gray1.png") X("png_gray2.png") X("png_gray4.png") X("png_gray8.png") X("png_gray16.png")                \
    X("png_gray16_adam7.png") X("png_gray_alpha8.png") X("png_gray_alpha16.png") X("png_gray8_trns.png")           \
    X("png_palette8.png") X("png_palette8_trns.png") X("png_palette4_short.png") X("png_palette1.png")             \
    X("png_palette2_adam7.png") X("png_rgb8.png") X("png_rgb8_trns.png") X("png_rgb8_adam7.png")                   \
    X("png_rgb8_adam7_tiny.png") X("png_rgba8.png") X("png_rgb16.png") X("png_rgba16.png") X("png_1x1.png")        \
    X("jpeg_420.jpg") X("jpeg_422.jpg") X("jpeg_444.jpg") X("jpeg_progressive.jpg") X("jpeg_restart.jpg")          \
    X("jpeg_gray.jpg") X("jpeg_cmyk.jpg") X("jpeg_ycck.jpg") X("jpeg_rgb_colourspace.jpg") X("jpeg_1x1.jpg")

/* Fixtures Pillow refuses: the status and a piece of the message we give. */
#define BAD_FIXTURES(X)                                                                                            \
    X("jpeg_no_eoi.jpg", ALBEF_ERR_INVALID, "truncated JPEG")                                                      \
    X("jpeg_truncated.jpg", ALBEF_ERR_INVALID, "truncated JPEG")                                                   \
    X("jpeg_progressive_truncated.jpg", ALBEF_ERR_INVALID, "truncated JPEG")                                       \
    X("jpeg_header_only.jpg", ALBEF_ERR_INVALID, "truncated JPEG")                                                 \
    X("jpeg_huge.jpg", ALBEF_ERR_INVALID, "65000x65000 exceeds the limit")                                         \
    X("png_bad_crc.png", ALBEF_ERR_INVALID, "corrupt PNG: IHDR: CRC error")                                        \
    X("png_corrupt_data.png", ALBEF_ERR_INVALID, "corrupt PNG")                                                    \
    X("png_truncated.png", ALBEF_ERR_INVALID, "truncated PNG")                                                     \
    X("png_huge.png", ALBEF_ERR_INVALID, "100000x100000 exceeds the limit")                                        \
    X("empty.jpg", ALBEF_ERR_INVALID, "empty file")                                                                \
    X("text.jpg", ALBEF_ERR_INVALID, "not a JPEG or PNG")

typedef struct {
    const char *file;
    int code;
    const char *needle;
} bad_fixture;

#define AS_BAD_FIXTURE(file, code, needle) {file, code, needle},
static const bad_fixture bad_fixtures[] = {BAD_FIXTURES(AS_BAD_FIXTURE)};
#define AS_ONE(file) +1
#define N_GOOD ((size_t)(0 GOOD_FIXTURES(AS_ONE)))
#define N_BAD (sizeof bad_fixtures / sizeof bad_fixtures[0])

static void test_bad_fixture_is_refused(void **state)
{
    const bad_fixture *bad = NULL;
    for (size_t i = 0; i < N_BAD; i++)
        if (strcmp(bad_fixtures[i].file, *state) == 0)
            bad = &bad_fixtures[i];
    assert_non_null(bad);
    char rel[128], key[128];
    snprintf(rel, sizeof rel, "images/%s", bad->file);
    snprintf(key, sizeof key, "\nerror %s\n", bad->file);
    if (!strstr(manifest, key))
        fail_msg("%s: decode_goldens.txt does not say Pillow refuses it", bad->file);
    image_u8 img;
    const char *path = testdata_path(rel);
    assert_error(image_load(path, &img), bad->code, bad->needle);
    if (!strstr(albef_errmsg(), path))
        fail_msg("message '%s' does not name the file %s", albef_errmsg(), path);
    assert_null(img.data);
    assert_int_equal(img.width, 0);
}

static void test_every_manifest_entry_is_tested(void **state)
{
    (void)state;
    size_t ok = 0, err = 0;
    for (const char *p = manifest; (p = strchr(p, '\n')); p++) {
        ok += strncmp(p + 1, "ok ", 3) == 0;
        err += strncmp(p + 1, "error ", 6) == 0;
    }
    if (ok != N_GOOD || err != N_BAD)
        fail_msg("decode_goldens.txt has %zu ok and %zu error fixtures; this test lists %zu and %zu", ok, err,
                 N_GOOD, N_BAD);
}

/* ---------------------------------------------------------------- more errors */

static void test_format_is_found_by_signature_not_name(void **state)
{
    (void)state;
    uint8_t *png;
    size_t n;
    read_fixture("png_rgb8.png", &png, &n);
    const char *path = write_tmp_file("photo.jpg", png, n);
    image_u8 img;
    assert_ok(image_load(path, &img));
    assert_int_equal(img.width, 22);
    image_free(&img);
    free(png);
    uint8_t *jpg;
    read_fixture("jpeg_420.jpg", &jpg, &n);
    assert_ok(image_decode(jpg, n, "no-extension", &img));
    assert_int_equal(img.width, 37);
    image_free(&img);
    free(jpg);
}

static void test_other_formats_are_unsupported(void **state)
{
    (void)state;
    image_u8 img;
    const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00";
    assert_error(image_decode(gif, sizeof gif, "anim.gif", &img), ALBEF_ERR_UNSUPPORTED, "anim.gif: GIF image");
    const uint8_t webp[] = "RIFF\x10\x00\x00\x00WEBPVP8 ";
    assert_error(image_decode(webp, sizeof webp, "x.webp", &img), ALBEF_ERR_UNSUPPORTED, "WebP");
    const uint8_t one[] = {0xFF};
    assert_error(image_decode(one, 1, "one.jpg", &img), ALBEF_ERR_INVALID, "one.jpg: not a JPEG or PNG");
    assert_error(image_decode(NULL, 0, NULL, &img), ALBEF_ERR_INVALID, "empty");
    assert_null(img.data);
}

static void test_twelve_bit_jpeg_is_unsupported(void **state)
{
    (void)state;
    uint8_t *jpg;
    size_t n;
    read_fixture("jpeg_420.jpg", &jpg, &n);
    size_t sof = 2;
    while (sof + 4 < n && !(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0))
        sof++;
    assert_true(sof + 4 < n);
    jpg[sof + 4] = 12; /* sample precision */
    image_u8 img;
    assert_error(image_decode(jpg, n, "deep.jpg", &img), ALBEF_ERR_UNSUPPORTED, "deep.jpg: unsupported JPEG");
    assert_null(img.data);
    free(jpg);
}

/* Pillow skips IDAT CRCs and would decode this; we keep libpng's check. */
static void test_png_image_data_crc_is_checked(void **state)
{
    (void)state;
    uint8_t *png;
    size_t n;
    read_fixture("png_rgb8.png", &png, &n);
    assert_true(n > 20 && memcmp(png + n - 8, "IEND", 4) == 0);
    png[n - 16] ^= 0xFF; /* first byte of the CRC of the IDAT chunk before IEND */
    image_u8 img;
    assert_error(image_decode(png, n, "rot.png", &img), ALBEF_ERR_INVALID, "rot.png: corrupt PNG: IDAT: CRC error");
    free(png);
}

static void test_missing_file_is_an_io_error(void **state)
{
    (void)state;
    image_u8 img;
    assert_error(image_load("/nonexistent/cat.jpg", &img), ALBEF_ERR_IO, "/nonexistent/cat.jpg");
    int scale = 0;
    assert_error(image_load_reduced("/nonexistent/dog.jpg", 64, &img, &scale), ALBEF_ERR_IO, "dog.jpg");
}

static uint32_t png_crc(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c >> 1 ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A PNG signature and IHDR claiming w x h, followed by nothing: the size
 * check must come before any allocation or read of image data. */
static size_t forge_png_header(uint8_t *buf, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    put_be32(buf + 8, 13);
    memcpy(buf + 12, "IHDR", 4);
    put_be32(buf + 16, w);
    put_be32(buf + 20, h);
    buf[24] = 8, buf[25] = 2, buf[26] = 0, buf[27] = 0, buf[28] = 0;
    put_be32(buf + 29, png_crc(buf + 12, 17));
    return 33;
}

static void test_huge_dimensions_are_refused_before_allocation(void **state)
{
    (void)state;
    uint8_t buf[64];
    image_u8 img;
    size_t n = forge_png_header(buf, 30001, 1);
    assert_error(image_decode(buf, n, "wide.png", &img), ALBEF_ERR_INVALID, "wide.png: image size 30001x1 exceeds");
    n = forge_png_header(buf, 20000, 20000);
    assert_error(image_decode(buf, n, "big.png", &img), ALBEF_ERR_INVALID, "400000000 pixels");
    n = forge_png_header(buf, 30000, 10);
    assert_error(image_decode(buf, n, "ok-size.png", &img), ALBEF_ERR_INVALID, "truncated PNG");
    assert_error(image_alloc(&img, 30001, 2, 3), ALBEF_ERR_INVALID, "exceeds");
    assert_error(image_alloc(&img, 0, 2, 3), ALBEF_ERR_INVALID, "at least 1");
    assert_error(image_alloc(&img, 2, 2, 4), ALBEF_ERR_INVALID, "channels is 4");
    assert_null(img.data);
    image_free(&img); /* a zeroed image is fine to free */
    image_free(NULL);
}

/* Every prefix of a file either fails cleanly or, where the missing tail
 * carries no pixels (PNG chunks after the image data), gives Pillow's image. */
static void check_every_prefix(const char *name, int w, int h)
{
    uint8_t *data, *want;
    size_t n, nw;
    read_fixture(name, &data, &n);
    char golden[128];
    snprintf(golden, sizeof golden, "%.*s.rgb", (int)(strrchr(name, '.') - name), name);
    read_fixture(golden, &want, &nw);
    int accepted = 0;
    for (size_t len = 0; len < n; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size so ASan sees any over-read */
        assert_non_null(copy);
        memcpy(copy, data, len);
        image_u8 img;
        int rc = image_decode(copy, len, name, &img);
        if (rc == 0) {
            accepted++;
            if (img.width != w || img.height != h)
                fail_msg("%s cut to %zu bytes: decoded %dx%d", name, len, img.width, img.height);
            assert_pixels_equal(img.data, want, w, h, name);
            image_free(&img);
        } else if (!strstr(albef_errmsg(), name)) {
            fail_msg("%s cut to %zu bytes: message '%s' does not name the file", name, len, albef_errmsg());
        }
        free(copy);
    }
    fprintf(stderr, "# %s: %d of %zu prefixes decode (to Pillow's pixels), the rest fail cleanly\n", name, accepted,
            n);
    free(data);
    free(want);
}

static void test_every_truncation_fails_cleanly(void **state)
{
    (void)state;
    check_every_prefix("jpeg_420.jpg", 37, 23);
    check_every_prefix("jpeg_progressive.jpg", 37, 23);
    check_every_prefix("png_rgb8_adam7.png", 23, 17);
    check_every_prefix("png_palette4_short.png", 14, 9);
}

/* Flipped bytes must never crash or read out of bounds (ASan run). */
static void test_corrupted_bytes_never_crash(void **state)
{
    (void)state;
    const char *names[] = {"jpeg_420.jpg", "jpeg_progressive.jpg", "jpeg_cmyk.jpg", "png_rgb16.png",
                           "png_palette2_adam7.png"};
    uint32_t x = 12345;
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        uint8_t *data;
        size_t n;
        read_fixture(names[f], &data, &n);
        uint8_t *copy = malloc(n);
        assert_non_null(copy);
        for (int trial = 0; trial < 200; trial++) {
            memcpy(copy, data, n);
            for (int k = 0; k < 1 + trial % 4; k++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                copy[x % n] ^= (uint8_t)(1u << (x >> 29));
            }
            image_u8 img;
            if (image_decode(copy, n, names[f], &img) == 0) {
                assert_true(img.width >= 1 && img.height >= 1 && img.channels == 3);
                image_free(&img);
            } else {
                assert_non_null(strstr(albef_errmsg(), names[f]));
                assert_null(img.data);
            }
        }
        free(copy);
        free(data);
    }
}

/* ---------------------------------------------------------------- reduced decoding */

static void test_reduced_jpeg_keeps_min_side(void **state)
{
    (void)state;
    const char *path = shared_data_path("real-images/retina.jpg"); /* 1411 x 1411 */
    FILE *f = fopen(path, "rb");
    if (!f)
        skip();
    fclose(f);
    image_u8 img;
    int scale = 0;
    /* 1411/4 rounds up to 353 >= 256; 1411/8 = 177 would be too small. */
    assert_ok(image_load_reduced(path, 256, &img, &scale));
    assert_int_equal(scale, 4);
    assert_int_equal(img.width, 353);
    assert_int_equal(img.height, 353);
    image_free(&img);
    assert_ok(image_load_reduced(path, 100, &img, &scale));
    assert_int_equal(scale, 8);
    assert_int_equal(img.width, 177);
    image_free(&img);
    assert_ok(image_load_reduced(path, 1000, &img, &scale));
    assert_int_equal(scale, 1);
    assert_int_equal(img.width, 1411);
    image_free(&img);
    assert_error(image_load_reduced(path, 0, &img, &scale), ALBEF_ERR_INVALID, "min_side");
}

static void test_reduced_small_images_and_png_stay_full(void **state)
{
    (void)state;
    image_u8 img;
    int scale = 0;
    assert_ok(image_load_reduced(testdata_path("images/jpeg_420.jpg"), 8, &img, &scale));
    assert_int_equal(scale, 2); /* 37x23 -> 19x12 */
    assert_int_equal(img.width, 19);
    assert_int_equal(img.height, 12);
    image_free(&img);
    assert_ok(image_load_reduced(testdata_path("images/png_rgb8.png"), 2, &img, &scale));
    assert_int_equal(scale, 1);
    assert_int_equal(img.width, 22);
    image_free(&img);
}

#define AS_GOOD_TEST(name) {"decode " name, test_fixture_decodes_as_pillow, NULL, NULL, name},
#define AS_BAD_TEST(name, code, needle) {"refuse " name, test_bad_fixture_is_refused, NULL, NULL, name},

int main(void)
{
    const struct CMUnitTest tests[] = {
        GOOD_FIXTURES(AS_GOOD_TEST)
        BAD_FIXTURES(AS_BAD_TEST)
        cmocka_unit_test(test_every_manifest_entry_is_tested),
        cmocka_unit_test(test_format_is_found_by_signature_not_name),
        cmocka_unit_test(test_other_formats_are_unsupported),
        cmocka_unit_test(test_twelve_bit_jpeg_is_unsupported),
        cmocka_unit_test(test_png_image_data_crc_is_checked),
        cmocka_unit_test(test_missing_file_is_an_io_error),
        cmocka_unit_test(test_huge_dimensions_are_refused_before_allocation),
        cmocka_unit_test(test_every_truncation_fails_cleanly),
        cmocka_unit_test(test_corrupted_bytes_never_crash),
        cmocka_unit_test(test_reduced_jpeg_keeps_min_side),
        cmocka_unit_test(test_reduced_small_images_and_png_stay_full),
    };
    return cmocka_run_group_tests_name("image", tests, load_manifest, free_manifest);
}
