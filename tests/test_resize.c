/* vision/resize: Pillow-exact BICUBIC resampling, checked against Pillow 9.4
 * on the real photos (goldens from scripts/dev/make_image_goldens.py). */
#include "core/error.h"
#include "core/file.h"
#include "io/image.h"
#include "vision/resize.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- SHA-256 (tests only) */

typedef struct {
    uint32_t h[8];
    uint8_t block[64];
    size_t fill;
    uint64_t bytes;
} sha256_state;

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return x >> n | x << (32 - n); }

static void sha256_block(sha256_state *s, const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6],
             h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_hex(const uint8_t *data, size_t n, char hex[65])
{
    sha256_state s = {{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                       0x5be0cd19},
                      {0},
                      0,
                      0};
    s.bytes = n;
    for (; n >= 64; n -= 64, data += 64)
        sha256_block(&s, data);
    uint8_t tail[128] = {0};
    memcpy(tail, data, n);
    tail[n] = 0x80;
    size_t len = n + 9 <= 64 ? 64 : 128;
    uint64_t bits = s.bytes * 8;
    for (int i = 0; i < 8; i++)
        tail[len - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha256_block(&s, tail);
    if (len == 128)
        sha256_block(&s, tail + 64);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 8 * i, 9, "%08x", s.h[i]);
}

static void test_sha256_known_answers(void **state)
{
    (void)state;
    char hex[65];
    sha256_hex((const uint8_t *)"abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex((const uint8_t *)two_blocks, strlen(two_blocks), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* ---------------------------------------------------------------- goldens */

static int base64_value(int ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Decodes NUL-terminated base64 into out; returns the byte count. */
static size_t base64_decode(const char *in, uint8_t *out)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *in && *in != '='; in++) {
        int v = base64_value(*in);
        assert_true(v >= 0);
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

static char *goldens; /* testdata/images/real_goldens.txt, loaded by the group setup */

static int load_goldens(void **state)
{
    (void)state;
    if (file_read_all(testdata_path("images/real_goldens.txt"), &goldens, NULL) != 0) {
        fprintf(stderr, "# %s\n", albef_errmsg());
        return -1;
    }
    return 0;
}

static int free_goldens(void **state)
{
    (void)state;
    free(goldens);
    goldens = NULL;
    return 0;
}

/* Returns a malloc'ed copy of the next line starting with `prefix` and
 * naming `image`, starting the search at *pos, or NULL. */
static char *next_golden_line(const char **pos, const char *prefix, const char *image)
{
    size_t np = strlen(prefix), ni = strlen(image);
    while (**pos) {
        const char *line = *pos, *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        *pos = *end ? end + 1 : end;
        if ((size_t)(end - line) > np + ni + 1 && memcmp(line, prefix, np) == 0 && line[np] == ' ' &&
            memcmp(line + np + 1, image, ni) == 0 && line[np + 1 + ni] == ' ') {
            char *copy = strndup(line, (size_t)(end - line));
            assert_non_null(copy);
            return copy;
        }
    }
    return NULL;
}

static int load_real_image(const char *name, image_u8 *img)
{
    char rel[128];
    snprintf(rel, sizeof rel, "real-images/%s", name);
    const char *path = shared_data_path(rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fclose(f);
    assert_ok(image_load(path, img));
    return 0;
}

static void test_real_photo_decodes_as_pillow(void **state)
{
    const char *name = *state;
    image_u8 img;
    if (load_real_image(name, &img) != 0)
        skip();
    const char *pos = goldens;
    char *line = next_golden_line(&pos, "decode", name);
    assert_non_null(line);
    int w, h;
    char sha[65];
    assert_int_equal(sscanf(line, "decode %*s %d %d %64s", &w, &h, sha), 3);
    if (img.width != w || img.height != h)
        fail_msg("%s: decoded %dx%d; Pillow %dx%d", name, img.width, img.height, w, h);
    char got[65];
    sha256_hex(img.data, (size_t)w * h * 3, got);
    if (strcmp(got, sha) != 0)
        fail_msg("%s: decoded RGB sha256 %s; Pillow's %s", name, got, sha);
    free(line);
    image_free(&img);
}

/* Each golden case: img.crop(box).resize(size, BICUBIC) in Pillow. Equal
 * SHA-256 means bit-exact; otherwise the stored rows must agree within 1. */
static void test_real_photo_resizes_as_pillow(void **state)
{
    const char *name = *state;
    image_u8 img;
    if (load_real_image(name, &img) != 0)
        skip();
    const char *pos = goldens;
    char *line;
    int cases = 0, exact = 0;
    while ((line = next_golden_line(&pos, "resize", name))) {
        int x0, y0, w, h, ow, oh, off = 0;
        char sha[65];
        assert_int_equal(sscanf(line, "resize %*s %d %d %d %d %d %d %64s %n", &x0, &y0, &w, &h, &ow, &oh, sha, &off),
                         7);
        image_u8 out;
        assert_ok(resize_bicubic_crop(&img, x0, y0, w, h, ow, oh, &out));
        assert_int_equal(out.width, ow);
        assert_int_equal(out.height, oh);
        char got[65];
        sha256_hex(out.data, (size_t)ow * oh * 3, got);
        cases++;
        if (strcmp(got, sha) == 0) {
            exact++;
        } else {
            uint8_t *want = malloc((size_t)ow * 3 + 4);
            assert_non_null(want);
            char *save = NULL, *tok = strtok_r(line + off, " ", &save);
            const int rows[3] = {0, oh / 2, oh - 1};
            for (int r = 0; r < 3; r++, tok = strtok_r(NULL, " ", &save)) {
                assert_non_null(tok);
                assert_int_equal(base64_decode(tok, want), (size_t)ow * 3);
                const uint8_t *have = out.data + (size_t)rows[r] * ow * 3;
                for (int i = 0; i < ow * 3; i++) {
                    int d = abs(have[i] - want[i]);
                    if (d > 1)
                        fail_msg("%s crop (%d,%d %dx%d) -> %dx%d: row %d pixel %d channel %d is %d, Pillow %d", name,
                                 x0, y0, w, h, ow, oh, rows[r], i / 3, i % 3, have[i], want[i]);
                }
            }
            fprintf(stderr, "# %s crop (%d,%d %dx%d) -> %dx%d: not bit-exact, stored rows within 1\n", name, x0, y0,
                    w, h, ow, oh);
            free(want);
        }
        image_free(&out);
        free(line);
    }
    assert_true(cases >= 10);
    fprintf(stderr, "# %s: %d of %d resize cases bit-exact with Pillow\n", name, exact, cases);
    image_free(&img);
}

/* ---------------------------------------------------------------- properties */

static void fill_pattern(image_u8 *img, unsigned seed)
{
    size_t n = (size_t)img->width * img->height * img->channels;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        img->data[i] = (uint8_t)(x >> 24);
    }
}

static void test_same_size_returns_same_pixels(void **state)
{
    (void)state;
    image_u8 src, out;
    assert_ok(image_alloc(&src, 31, 17, 3));
    fill_pattern(&src, 1);
    assert_ok(resize_bicubic(&src, 31, 17, &out));
    assert_true(out.data != src.data);
    assert_memory_equal(out.data, src.data, 31 * 17 * 3);
    image_free(&out);
    image_free(&src);
}

static void test_single_pixel_stretches_to_constant(void **state)
{
    (void)state;
    image_u8 src, out;
    assert_ok(image_alloc(&src, 1, 1, 3));
    src.data[0] = 7, src.data[1] = 128, src.data[2] = 255;
    const int sizes[][2] = {{1, 1}, {2, 1}, {1, 5}, {9, 4}, {384, 384}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        assert_ok(resize_bicubic(&src, sizes[s][0], sizes[s][1], &out));
        for (int i = 0; i < sizes[s][0] * sizes[s][1]; i++)
            if (memcmp(out.data + 3 * i, src.data, 3) != 0)
                fail_msg("1x1 -> %dx%d: pixel %d is (%d,%d,%d), expected (7,128,255)", sizes[s][0], sizes[s][1], i,
                         out.data[3 * i], out.data[3 * i + 1], out.data[3 * i + 2]);
        image_free(&out);
    }
    image_free(&src);
}

static void test_thin_images_resize_both_ways(void **state)
{
    (void)state;
    image_u8 col, row, out;
    assert_ok(image_alloc(&col, 1, 50, 3));
    assert_ok(image_alloc(&row, 50, 1, 3));
    fill_pattern(&col, 2);
    for (int i = 0; i < 50; i++)
        memcpy(row.data + 3 * i, col.data + 3 * i, 3);
    /* A 1-pixel column is a 1-pixel row transposed: same weights either way. */
    image_u8 col_out, row_out;
    assert_ok(resize_bicubic(&col, 1, 13, &col_out));
    assert_ok(resize_bicubic(&row, 13, 1, &row_out));
    assert_memory_equal(col_out.data, row_out.data, 13 * 3);
    image_free(&col_out);
    image_free(&row_out);
    /* Widening a column copies it across: every output row is constant. */
    assert_ok(resize_bicubic(&col, 6, 20, &out));
    for (int y = 0; y < 20; y++)
        for (int x = 1; x < 6; x++)
            if (memcmp(out.data + (y * 6 + x) * 3, out.data + y * 6 * 3, 3) != 0)
                fail_msg("1x50 -> 6x20: row %d differs between column 0 and column %d", y, x);
    image_free(&out);
    image_free(&col);
    image_free(&row);
}

static void test_crop_equals_resize_of_copied_crop(void **state)
{
    (void)state;
    image_u8 src, copy, a, b;
    assert_ok(image_alloc(&src, 97, 61, 3));
    fill_pattern(&src, 3);
    const int boxes[][4] = {{0, 0, 97, 61}, {10, 5, 40, 30}, {96, 60, 1, 1}, {3, 0, 90, 61}, {0, 20, 97, 7}};
    const int sizes[][2] = {{32, 32}, {120, 80}, {5, 5}, {90, 20}, {40, 7}};
    for (size_t i = 0; i < sizeof boxes / sizeof boxes[0]; i++) {
        const int *bx = boxes[i];
        assert_ok(image_alloc(&copy, bx[2], bx[3], 3));
        for (int y = 0; y < bx[3]; y++)
            memcpy(copy.data + (size_t)y * bx[2] * 3, src.data + ((size_t)(bx[1] + y) * 97 + bx[0]) * 3,
                   (size_t)bx[2] * 3);
        assert_ok(resize_bicubic_crop(&src, bx[0], bx[1], bx[2], bx[3], sizes[i][0], sizes[i][1], &a));
        assert_ok(resize_bicubic(&copy, sizes[i][0], sizes[i][1], &b));
        if (memcmp(a.data, b.data, (size_t)sizes[i][0] * sizes[i][1] * 3) != 0)
            fail_msg("crop (%d,%d %dx%d) -> %dx%d differs from resizing a copy of the crop", bx[0], bx[1], bx[2],
                     bx[3], sizes[i][0], sizes[i][1]);
        image_free(&a);
        image_free(&b);
        image_free(&copy);
    }
    image_free(&src);
}

static void test_gray_matches_each_rgb_channel(void **state)
{
    (void)state;
    image_u8 gray, rgb, g_out, c_out;
    assert_ok(image_alloc(&gray, 45, 33, 1));
    assert_ok(image_alloc(&rgb, 45, 33, 3));
    fill_pattern(&gray, 4);
    for (int i = 0; i < 45 * 33; i++)
        rgb.data[3 * i] = rgb.data[3 * i + 1] = rgb.data[3 * i + 2] = gray.data[i];
    assert_ok(resize_bicubic(&gray, 20, 50, &g_out));
    assert_ok(resize_bicubic(&rgb, 20, 50, &c_out));
    assert_int_equal(g_out.channels, 1);
    for (int i = 0; i < 20 * 50; i++)
        if (g_out.data[i] != c_out.data[3 * i] || g_out.data[i] != c_out.data[3 * i + 2])
            fail_msg("pixel %d: gray %d, rgb (%d,%d,%d)", i, g_out.data[i], c_out.data[3 * i],
                     c_out.data[3 * i + 1], c_out.data[3 * i + 2]);
    image_free(&g_out);
    image_free(&c_out);
    image_free(&gray);
    image_free(&rgb);
}

static void test_bad_arguments_are_refused(void **state)
{
    (void)state;
    image_u8 src, out;
    assert_ok(image_alloc(&src, 20, 10, 3));
    fill_pattern(&src, 5);
    assert_error(resize_bicubic(&src, 0, 5, &out), ALBEF_ERR_INVALID, "0x5");
    assert_null(out.data);
    assert_error(resize_bicubic(&src, 5, -1, &out), ALBEF_ERR_INVALID, "5x-1");
    assert_error(resize_bicubic(&src, 40000, 10, &out), ALBEF_ERR_INVALID, "exceeds");
    assert_error(resize_bicubic_crop(&src, 15, 0, 6, 10, 8, 8, &out), ALBEF_ERR_INVALID, "not inside the 20x10");
    assert_error(resize_bicubic_crop(&src, -1, 0, 5, 5, 8, 8, &out), ALBEF_ERR_INVALID, "crop box");
    assert_error(resize_bicubic_crop(&src, 0, 0, 0, 5, 8, 8, &out), ALBEF_ERR_INVALID, "crop box");
    assert_error(resize_bicubic_crop(&src, 0, 2147483000, 5, 2000, 8, 8, &out), ALBEF_ERR_INVALID, "crop box");
    assert_null(out.data);
    image_u8 empty = {0};
    assert_error(resize_bicubic(&empty, 8, 8, &out), ALBEF_ERR_INVALID, "empty");
    src.channels = 4;
    assert_error(resize_bicubic(&src, 8, 8, &out), ALBEF_ERR_INVALID, "4 channels");
    src.channels = 3;
    image_free(&src);
}

#define REAL(name)                                                                                                 \
    {"decode " name, test_real_photo_decodes_as_pillow, NULL, NULL, name},                                         \
    {                                                                                                              \
        "resize " name, test_real_photo_resizes_as_pillow, NULL, NULL, name                                        \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known_answers),
        REAL("astronaut.png"),
        REAL("camera.png"),
        REAL("chelsea.png"),
        REAL("coffee.png"),
        REAL("hubble_deep_field.jpg"),
        REAL("retina.jpg"),
        REAL("rocket.jpg"),
        cmocka_unit_test(test_same_size_returns_same_pixels),
        cmocka_unit_test(test_single_pixel_stretches_to_constant),
        cmocka_unit_test(test_thin_images_resize_both_ways),
        cmocka_unit_test(test_crop_equals_resize_of_copied_crop),
        cmocka_unit_test(test_gray_matches_each_rgb_channel),
        cmocka_unit_test(test_bad_arguments_are_refused),
    };
    return cmocka_run_group_tests_name("resize", tests, load_goldens, free_goldens);
}
