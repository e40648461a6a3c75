/* core/dtype: names, sizes, and exact f16/bf16 conversions (exhaustive over
 * every 16-bit pattern, and every rounding boundary between neighbours). */
#include "albef.h"
#include "core/dtype.h"
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int same_bits(float a, float b) { return dtype_f32_bits(a) == dtype_f32_bits(b); }

/* The value of a half from its definition, in double arithmetic. */
static double f16_reference(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double mag;
    if (exp == 31)
        mag = mant ? NAN : INFINITY;
    else if (exp == 0)
        mag = ldexp(mant, -24);
    else
        mag = ldexp(1024 + mant, exp - 25);
    return sign ? -mag : mag;
}

static void test_names_sizes_and_parsing(void **state)
{
    (void)state;
    static const struct {
        albef_dtype dtype;
        const char *name;
        size_t size;
    } table[] = {
        {DTYPE_F32, "F32", 4}, {DTYPE_F16, "F16", 2}, {DTYPE_BF16, "BF16", 2}, {DTYPE_F64, "F64", 8},
        {DTYPE_I64, "I64", 8}, {DTYPE_I32, "I32", 4}, {DTYPE_I16, "I16", 2},   {DTYPE_I8, "I8", 1},
        {DTYPE_U64, "U64", 8}, {DTYPE_U32, "U32", 4}, {DTYPE_U16, "U16", 2},   {DTYPE_U8, "U8", 1},
        {DTYPE_BOOL, "BOOL", 1},
    };
    assert_int_equal(sizeof table / sizeof *table, DTYPE_COUNT);
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        assert_string_equal(dtype_name(table[i].dtype), table[i].name);
        assert_int_equal(dtype_size(table[i].dtype), table[i].size);
        albef_dtype parsed = DTYPE_COUNT;
        assert_ok(dtype_from_name(table[i].name, &parsed));
        assert_int_equal(parsed, table[i].dtype);
    }
    assert_true(dtype_is_float(DTYPE_BF16) && dtype_is_float(DTYPE_F64) && !dtype_is_float(DTYPE_I64) &&
                !dtype_is_float(DTYPE_BOOL));
    assert_int_equal(dtype_size(DTYPE_COUNT), 0);
    assert_string_equal(dtype_name((albef_dtype)99), "?");
    albef_dtype d;
    assert_error(dtype_from_name("f32", &d), ALBEF_ERR_INVALID, "unknown dtype 'f32'");
    assert_error(dtype_from_name("", &d), ALBEF_ERR_INVALID, "unknown dtype ''");
    assert_error(dtype_from_name("F8_E4M3", &d), ALBEF_ERR_UNSUPPORTED, "F8_E4M3");
}

static void test_f16_every_value_converts_exactly_and_round_trips(void **state)
{
    (void)state;
    int bad_value = 0, bad_trip = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        double want = f16_reference((uint16_t)h);
        if (isnan(want) ? !isnan(f) || !signbit(f) != !signbit(want) : !same_bits(f, (float)want)) {
            if (!bad_value++)
                fprintf(stderr, "# f16 0x%04x -> %.9g, expected %.9g\n", h, f, want);
        }
        uint16_t back = f32_to_f16(f);
        if (back != h) {
            if (!bad_trip++)
                fprintf(stderr, "# f16 0x%04x -> %.9g -> 0x%04x\n", h, f, back);
        }
    }
    if (bad_value || bad_trip)
        fail_msg("f16: %d values wrong, %d round trips differ (of 65536)", bad_value, bad_trip);
}

/* Between every pair of neighbouring halves: the midpoint goes to the even
 * one, one float ulp either side goes to the nearer one. */
static void test_f16_rounding_to_nearest_even(void **state)
{
    (void)state;
    int bad = 0;
    for (uint16_t h = 0; h < 0x7c00; h++) {
        double lo = f16_reference(h), hi = h == 0x7bff ? 65536.0 : f16_reference((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2); /* exact: one bit more than a half carries */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
        struct {
            float x;
            uint16_t want;
        } cases[] = {{mid, even}, {nextafterf(mid, 0), h}, {nextafterf(mid, INFINITY), (uint16_t)(h + 1)}};
        for (int c = 0; c < 3; c++)
            for (int sign = 0; sign < 2; sign++) {
                float x = sign ? -cases[c].x : cases[c].x;
                uint16_t want = (uint16_t)(cases[c].want | (sign ? 0x8000 : 0));
                uint16_t got = f32_to_f16(x);
                if (got != want && !bad++)
                    fprintf(stderr, "# f32_to_f16(%.9g) = 0x%04x, expected 0x%04x\n", x, got, want);
            }
    }
    if (bad)
        fail_msg("f16 rounding: %d cases wrong", bad);
    /* the ends of the range */
    assert_int_equal(f32_to_f16(65519.996f), 0x7bff);
    assert_int_equal(f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(f32_to_f16(0x1p-25f), 0x0000);                  /* tie with 0 goes to 0 */
    assert_int_equal(f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001); /* just above: smallest subnormal */
    assert_int_equal(f32_to_f16(FLT_TRUE_MIN), 0x0000);
    assert_int_equal(f32_to_f16(-FLT_TRUE_MIN), 0x8000);
    assert_int_equal(f32_to_f16(-0.0f), 0x8000);
}

static void test_f16_inf_and_nan(void **state)
{
    (void)state;
    assert_int_equal(f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(f32_to_f16(-INFINITY), 0xfc00);
    /* a NaN whose payload sits below the bits a half keeps must stay NaN */
    uint16_t h = f32_to_f16(dtype_f32_from_bits(0x7f800001u));
    assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0 && !(h & 0x8000));
    h = f32_to_f16(dtype_f32_from_bits(0xffc00000u));
    assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0 && (h & 0x8000));
    assert_true(isinf(f16_to_f32(0x7c00)) && isnan(f16_to_f32(0x7e00)) && signbit(f16_to_f32(0xfe00)));
}

static void test_bf16_every_value_converts_exactly_and_round_trips(void **state)
{
    (void)state;
    int bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = bf16_to_f32((uint16_t)b);
        uint16_t back = f32_to_bf16(f);
        if (dtype_f32_bits(f) != b << 16 || back != b) {
            if (!bad++)
                fprintf(stderr, "# bf16 0x%04x -> %.9g (bits 0x%08x) -> 0x%04x\n", b, f, dtype_f32_bits(f), back);
        }
    }
    if (bad)
        fail_msg("bf16: %d of 65536 values do not convert exactly or round-trip", bad);
}

static void test_bf16_rounding_to_nearest_even(void **state)
{
    (void)state;
    int bad = 0;
    for (uint32_t b = 0; b < 0x7f80; b++) {
        uint32_t base = b << 16;
        uint16_t even = (uint16_t)((b & 1) ? b + 1 : b);
        struct {
            uint32_t bits;
            uint16_t want;
        } cases[] = {{base | 0x8000, even}, {base | 0x7fff, (uint16_t)b}, {base | 0x8001, (uint16_t)(b + 1)},
                     {base | 0x0001, (uint16_t)b}};
        for (int c = 0; c < 4; c++)
            for (int sign = 0; sign < 2; sign++) {
                uint32_t bits = cases[c].bits | (sign ? 0x80000000u : 0);
                uint16_t want = (uint16_t)(cases[c].want | (sign ? 0x8000 : 0));
                uint16_t got = f32_to_bf16(dtype_f32_from_bits(bits));
                if (got != want && !bad++)
                    fprintf(stderr, "# f32_to_bf16(bits 0x%08x) = 0x%04x, expected 0x%04x\n", bits, got, want);
            }
    }
    if (bad)
        fail_msg("bf16 rounding: %d cases wrong", bad);
    assert_int_equal(f32_to_bf16(FLT_MAX), 0x7f80); /* past the largest bf16's halfway point */
    assert_int_equal(f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(f32_to_bf16(-INFINITY), 0xff80);
    uint16_t n = f32_to_bf16(dtype_f32_from_bits(0x7f800001u)); /* payload only in the dropped half */
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f));
    n = f32_to_bf16(dtype_f32_from_bits(0xffffffffu));
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f) && (n & 0x8000));
}

/* Sources at an odd address, as tensors inside a mapped file can be. */
static void test_convert_to_f32_every_dtype_unaligned(void **state)
{
    (void)state;
    unsigned char buf[1 + 4 * 8];
    float out[4];
#define CHECK_CONVERT(T, DTYPE, ...)                                                                                   \
    do {                                                                                                               \
        T src[4] = {__VA_ARGS__};                                                                                      \
        const float want[4] = {__VA_ARGS__};                                                                           \
        memcpy(buf + 1, src, sizeof src);                                                                              \
        assert_ok(dtype_convert_to_f32(out, buf + 1, 4, DTYPE));                                                       \
        assert_close_f32(out, want, 4, 0, 0, #DTYPE);                                                                  \
    } while (0)
    CHECK_CONVERT(float, DTYPE_F32, 1.5f, -0.0f, 3e38f, 1e-40f);
    CHECK_CONVERT(double, DTYPE_F64, 0.5, -2.0, 1e30, -7.25);
    CHECK_CONVERT(int64_t, DTYPE_I64, -5, 0, 1099511627776, 7);
    CHECK_CONVERT(int32_t, DTYPE_I32, -2147483520, 0, 65536, 3);
    CHECK_CONVERT(int16_t, DTYPE_I16, -32768, 1, 32767, -3);
    CHECK_CONVERT(int8_t, DTYPE_I8, -128, -1, 127, 0);
    CHECK_CONVERT(uint64_t, DTYPE_U64, 0, 1, 4294967296, 9);
    CHECK_CONVERT(uint32_t, DTYPE_U32, 0, 4294967040u, 2, 9);
    CHECK_CONVERT(uint16_t, DTYPE_U16, 0, 65535, 2, 9);
    CHECK_CONVERT(uint8_t, DTYPE_U8, 0, 255, 128, 1);
#undef CHECK_CONVERT
    const uint8_t bools[4] = {0, 1, 2, 255};
    memcpy(buf + 1, bools, 4);
    assert_ok(dtype_convert_to_f32(out, buf + 1, 4, DTYPE_BOOL));
    assert_close_f32(out, ((const float[]){0, 1, 1, 1}), 4, 0, 0, "BOOL");

    const uint16_t halves[4] = {0x3c00, 0xc100, 0x0001, 0x7bff}; /* 1, -2.5, 2^-24, 65504 */
    memcpy(buf + 1, halves, sizeof halves);
    assert_ok(dtype_convert_to_f32(out, buf + 1, 4, DTYPE_F16));
    assert_close_f32(out, ((const float[]){1.0f, -2.5f, 0x1p-24f, 65504.0f}), 4, 0, 0, "F16");
    const uint16_t brains[4] = {0x3f80, 0xbfc0, 0x0001, 0x7f7f};
    memcpy(buf + 1, brains, sizeof brains);
    assert_ok(dtype_convert_to_f32(out, buf + 1, 4, DTYPE_BF16));
    assert_close_f32(out, ((const float[]){1.0f, -1.5f, 0x1p-133f, 0x1.fep127f}), 4, 0, 0, "BF16");
    assert_error(dtype_convert_to_f32(out, buf, 1, DTYPE_COUNT), ALBEF_ERR_INVALID, "invalid dtype");
}

static void test_convert_from_f32_matches_scalar_conversions(void **state)
{
    (void)state;
    enum { N = 4096 };
    static float src[N];
    static uint16_t h[N], b[N];
    static unsigned char out[1 + 8 * N];
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) { /* spread over every exponent, both signs */
        x = x * 1664525u + 1013904223u;
        src[i] = dtype_f32_from_bits(x);
    }
    f32_to_f16_array(h, src, N);
    f32_to_bf16_array(b, src, N);
    assert_ok(dtype_convert_from_f32(out + 1, DTYPE_F16, src, N));
    for (int i = 0; i < N; i++) {
        uint16_t v;
        memcpy(&v, out + 1 + 2 * i, 2);
        if (v != h[i] || h[i] != f32_to_f16(src[i]))
            fail_msg("F16 [%d] of %.9g: array 0x%04x, convert 0x%04x", i, src[i], h[i], v);
    }
    assert_ok(dtype_convert_from_f32(out + 1, DTYPE_BF16, src, N));
    for (int i = 0; i < N; i++) {
        uint16_t v;
        memcpy(&v, out + 1 + 2 * i, 2);
        if (v != b[i] || b[i] != f32_to_bf16(src[i]))
            fail_msg("BF16 [%d] of %.9g: array 0x%04x, convert 0x%04x", i, src[i], b[i], v);
    }
    assert_ok(dtype_convert_from_f32(out + 1, DTYPE_F64, src, N));
    static float back[N];
    assert_ok(dtype_convert_to_f32(back, out + 1, N, DTYPE_F64));
    for (int i = 0; i < N; i++) /* float -> double -> float is the identity (a NaN may come back quieted) */
        if (!same_bits(back[i], src[i]) && !(isnan(back[i]) && isnan(src[i])))
            fail_msg("F64 [%d]: %.9g came back as %.9g", i, src[i], back[i]);
    static float fh[N];
    f16_to_f32_array(fh, h, N);
    for (int i = 0; i < N; i++)
        assert_true(same_bits(fh[i], f16_to_f32(h[i])));
    bf16_to_f32_array(fh, b, N);
    for (int i = 0; i < N; i++)
        assert_true(same_bits(fh[i], bf16_to_f32(b[i])));
    assert_error(dtype_convert_from_f32(out, DTYPE_I32, src, 1), ALBEF_ERR_UNSUPPORTED, "I32");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_sizes_and_parsing),
        cmocka_unit_test(test_f16_every_value_converts_exactly_and_round_trips),
        cmocka_unit_test(test_f16_rounding_to_nearest_even),
        cmocka_unit_test(test_f16_inf_and_nan),
        cmocka_unit_test(test_bf16_every_value_converts_exactly_and_round_trips),
        cmocka_unit_test(test_bf16_rounding_to_nearest_even),
        cmocka_unit_test(test_convert_to_f32_every_dtype_unaligned),
        cmocka_unit_test(test_convert_from_f32_matches_scalar_conversions),
    };
    return cmocka_run_group_tests_name("dtype", tests, NULL, NULL);
}
