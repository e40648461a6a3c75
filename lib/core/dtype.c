#include "core/dtype.h"

#include "core/error.h"

static const struct {
    const char *name;
    size_t size;
} dtype_table[DTYPE_COUNT] = {
    [DTYPE_F32] = {"F32", 4}, [DTYPE_F16] = {"F16", 2}, [DTYPE_BF16] = {"BF16", 2}, [DTYPE_F64] = {"F64", 8},
    [DTYPE_I64] = {"I64", 8}, [DTYPE_I32] = {"I32", 4}, [DTYPE_I16] = {"I16", 2},   [DTYPE_I8] = {"I8", 1},
    [DTYPE_U64] = {"U64", 8}, [DTYPE_U32] = {"U32", 4}, [DTYPE_U16] = {"U16", 2},   [DTYPE_U8] = {"U8", 1},
    [DTYPE_BOOL] = {"BOOL", 1},
};

/* Names the safetensors format defines that albef does not convert. */
static const char *const dtype_unsupported_names[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                                      "F6_E3M2", "F4",      "C64"};

static int dtype_valid(albef_dtype dtype) { return (unsigned)dtype < DTYPE_COUNT; }

size_t dtype_size(albef_dtype dtype) { return dtype_valid(dtype) ? dtype_table[dtype].size : 0; }

const char *dtype_name(albef_dtype dtype) { return dtype_valid(dtype) ? dtype_table[dtype].name : "?"; }

int dtype_is_float(albef_dtype dtype)
{
    return dtype == DTYPE_F32 || dtype == DTYPE_F16 || dtype == DTYPE_BF16 || dtype == DTYPE_F64;
}

int dtype_from_name(const char *name, albef_dtype *dtype)
{
    for (int i = 0; i < DTYPE_COUNT; i++)
        if (strcmp(name, dtype_table[i].name) == 0) {
            *dtype = (albef_dtype)i;
            return ALBEF_OK;
        }
    for (size_t i = 0; i < sizeof dtype_unsupported_names / sizeof *dtype_unsupported_names; i++)
        if (strcmp(name, dtype_unsupported_names[i]) == 0)
            return albef_error(ALBEF_ERR_UNSUPPORTED, "dtype '%s' is not supported", name);
    return albef_error(ALBEF_ERR_INVALID, "unknown dtype '%.64s'", name);
}

/* One loop per source type; memcpy of each element keeps unaligned sources
 * (tensors inside a mapped file) legal, and compiles to a plain load. */
#define CONVERT_LOOP(T, EXPR)                                                                                          \
    for (size_t i = 0; i < n; i++) {                                                                                   \
        T v;                                                                                                           \
        memcpy(&v, s + i * sizeof(T), sizeof(T));                                                                      \
        dst[i] = (EXPR);                                                                                               \
    }

int dtype_convert_to_f32(float *dst, const void *src, size_t n, albef_dtype dtype)
{
    const unsigned char *s = src;
    switch (dtype) {
    case DTYPE_F32:
        if (n)
            memcpy(dst, src, n * sizeof(float));
        break;
    case DTYPE_F16: CONVERT_LOOP(uint16_t, f16_to_f32(v)) break;
    case DTYPE_BF16: CONVERT_LOOP(uint16_t, bf16_to_f32(v)) break;
    case DTYPE_F64: CONVERT_LOOP(double, (float)v) break;
    case DTYPE_I64: CONVERT_LOOP(int64_t, (float)v) break;
    case DTYPE_I32: CONVERT_LOOP(int32_t, (float)v) break;
    case DTYPE_I16: CONVERT_LOOP(int16_t, (float)v) break;
    case DTYPE_I8: CONVERT_LOOP(int8_t, (float)v) break;
    case DTYPE_U64: CONVERT_LOOP(uint64_t, (float)v) break;
    case DTYPE_U32: CONVERT_LOOP(uint32_t, (float)v) break;
    case DTYPE_U16: CONVERT_LOOP(uint16_t, (float)v) break;
    case DTYPE_U8: CONVERT_LOOP(uint8_t, (float)v) break;
    case DTYPE_BOOL: CONVERT_LOOP(uint8_t, v ? 1.0f : 0.0f) break;
    default: return albef_error(ALBEF_ERR_INVALID, "dtype_convert_to_f32: invalid dtype %d", (int)dtype);
    }
    return ALBEF_OK;
}

#undef CONVERT_LOOP

int dtype_convert_from_f32(void *dst, albef_dtype dtype, const float *src, size_t n)
{
    unsigned char *d = dst;
    switch (dtype) {
    case DTYPE_F32:
        if (n)
            memcpy(dst, src, n * sizeof(float));
        return ALBEF_OK;
    case DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double v = src[i];
            memcpy(d + i * sizeof v, &v, sizeof v);
        }
        return ALBEF_OK;
    case DTYPE_F16:
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v = dtype == DTYPE_F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
            memcpy(d + i * sizeof v, &v, sizeof v);
        }
        return ALBEF_OK;
    default:
        return albef_error(ALBEF_ERR_UNSUPPORTED, "dtype_convert_from_f32: cannot convert to dtype %s",
                           dtype_name(dtype));
    }
}

void f32_to_f16_array(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = f32_to_f16(src[i]);
}

void f32_to_bf16_array(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = f32_to_bf16(src[i]);
}

void f16_to_f32_array(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = f16_to_f32(src[i]);
}

void bf16_to_f32_array(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_to_f32(src[i]);
}
