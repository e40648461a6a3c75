/* Element types of stored tensors, their sizes and safetensors names, and
 * exact conversions between them and float32.
 *
 * f16 and bf16 are carried as their raw 16-bit patterns (uint16_t). Every
 * conversion from f32 rounds to nearest, ties to even, as IEEE 754 and
 * PyTorch do; NaN stays NaN (sign kept) and infinities stay infinities.
 * Multi-byte values are little-endian, as safetensors stores them. */
#ifndef ALBEF_CORE_DTYPE_H
#define ALBEF_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "albef reads and writes little-endian tensor data in place: big-endian hosts are not supported"
#endif

typedef enum {
    DTYPE_F32,
    DTYPE_F16,
    DTYPE_BF16,
    DTYPE_F64,
    DTYPE_I64,
    DTYPE_I32,
    DTYPE_I16,
    DTYPE_I8,
    DTYPE_U64,
    DTYPE_U32,
    DTYPE_U16,
    DTYPE_U8,
    DTYPE_BOOL, /* one byte per element; nonzero is true */
    DTYPE_COUNT
} albef_dtype;

/* Bytes per element; 0 for a value outside the enum. */
size_t dtype_size(albef_dtype dtype);

/* The safetensors name ("F32", "BF16", "BOOL", ...); "?" outside the enum. */
const char *dtype_name(albef_dtype dtype);

/* Parses a safetensors name (exact, case-sensitive). Returns ALBEF_OK, or
 * ALBEF_ERR_UNSUPPORTED for a dtype of the safetensors format that albef does
 * not handle (F8_E4M3, ...), or ALBEF_ERR_INVALID for any other string. The
 * message names the string; callers add the file and tensor as context. */
int dtype_from_name(const char *name, albef_dtype *dtype);

/* 1 for F32, F16, BF16, F64. */
int dtype_is_float(albef_dtype dtype);

static inline uint32_t dtype_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float dtype_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Exact: every half (subnormals, infinities, NaN payloads) is a float. */
static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in float */
        float mag = (float)mant * 0x1p-24f;
        return dtype_f32_from_bits(sign | dtype_f32_bits(mag));
    }
    if (exp == 31)
        return dtype_f32_from_bits(sign | 0x7f800000u | (mant << 13));
    return dtype_f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Integer rounding, so the result does not depend on the FPU's rounding mode
 * or on flush-to-zero settings. */
static inline uint16_t f32_to_f16(float f)
{
    uint32_t x = dtype_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) { /* NaN: keep the top payload bits; if none are left it would read as inf */
        uint16_t payload = (uint16_t)((x >> 13) & 0x3ff);
        return (uint16_t)(sign | 0x7c00 | (payload ? payload : 0x200));
    }
    if (x >= 0x477ff000u) /* >= 65520, halfway past the largest half 65504: rounds to inf */
        return (uint16_t)(sign | 0x7c00);
    if (x >= 0x38800000u) { /* normal half range: >= 2^-14 */
        uint32_t h = (((x >> 23) - 112) << 10) | ((x >> 13) & 0x3ff);
        uint32_t rest = x & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
            h++; /* a carry into the exponent is the right answer */
        return (uint16_t)(sign | h);
    }
    /* subnormal half (or zero): round(value * 2^24) */
    uint32_t exp = x >> 23;
    if (exp < 102) /* below 2^-25, under half the smallest subnormal */
        return sign;
    uint32_t mant = (x & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - exp; /* 14..24 */
    uint32_t h = mant >> shift;
    uint32_t rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

static inline float bf16_to_f32(uint16_t b) { return dtype_f32_from_bits((uint32_t)b << 16); }

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t x = dtype_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) { /* NaN: truncating could clear every payload bit */
        uint16_t b = (uint16_t)(x >> 16);
        return (b & 0x7f) ? b : (uint16_t)(b | 0x40);
    }
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Converts n elements of `dtype` at src (any alignment) to float32. Integers
 * convert as C does (large 64-bit values round to the nearest float); BOOL
 * gives 0 or 1. Returns ALBEF_ERR_INVALID only for a dtype outside the enum. */
int dtype_convert_to_f32(float *dst, const void *src, size_t n, albef_dtype dtype);

/* Converts n floats to `dtype` at dst (any alignment): F32, F64, F16, BF16.
 * Returns ALBEF_ERR_UNSUPPORTED for integer and boolean dtypes. */
int dtype_convert_from_f32(void *dst, albef_dtype dtype, const float *src, size_t n);

void f32_to_f16_array(uint16_t *dst, const float *src, size_t n);
void f32_to_bf16_array(uint16_t *dst, const float *src, size_t n);
void f16_to_f32_array(float *dst, const uint16_t *src, size_t n);
void bf16_to_f32_array(float *dst, const uint16_t *src, size_t n);

#endif
