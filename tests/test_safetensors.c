/* io/safetensors: files written by the Python package read back exactly,
 * our files round-trip (and load in Python: see
 * scripts/dev/make_safetensors_fixtures.py --check), writes are atomic, and
 * every kind of broken file gives a clean error naming the file and tensor. */
#include "albef.h"
#include "core/file.h"
#include "io/safetensors.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const fixture_files[] = {"dtypes.safetensors", "unsigned.safetensors", "albef_like.safetensors"};
#define N_FIXTURES (sizeof fixture_files / sizeof *fixture_files)

static cJSON *load_manifest(void)
{
    char *text;
    assert_ok(file_read_all(testdata_path("safetensors/expected.json"), &text, NULL));
    cJSON *manifest = cJSON_Parse(text);
    free(text);
    if (!manifest)
        fail_msg("testdata/safetensors/expected.json is not valid JSON");
    return manifest;
}

/* One expected element, parsed from the manifest's string. */
static void check_element(const char *file, const safetensors_tensor *t, size_t i, const char *want,
                          const float *as_f32)
{
    const unsigned char *p = (const unsigned char *)t->data + i * dtype_size(t->dtype);
    float want_f32;
    if (dtype_is_float(t->dtype)) {
        double d = strtod(want, NULL);
        want_f32 = (float)d;
        if (t->dtype == DTYPE_F64) {
            double raw;
            memcpy(&raw, p, sizeof raw);
            if (memcmp(&raw, &d, sizeof d) != 0 && !(isnan(raw) && isnan(d)))
                fail_msg("%s: %s[%zu] raw %.17g, expected %s", file, t->name, i, raw, want);
        }
    } else {
        int is_signed = t->dtype == DTYPE_I64 || t->dtype == DTYPE_I32 || t->dtype == DTYPE_I16 || t->dtype == DTYPE_I8;
        int64_t s = 0;
        uint64_t u = 0;
        size_t size = dtype_size(t->dtype);
        memcpy(&u, p, size); /* little-endian: the low bytes */
        if (is_signed) {
            s = size == 8 ? (int64_t)u : size == 4 ? (int32_t)u : size == 2 ? (int16_t)u : (int8_t)u;
            if (s != strtoll(want, NULL, 10))
                fail_msg("%s: %s[%zu] = %" PRId64 ", expected %s", file, t->name, i, s, want);
            want_f32 = (float)s;
        } else {
            if (u != strtoull(want, NULL, 10))
                fail_msg("%s: %s[%zu] = %" PRIu64 ", expected %s", file, t->name, i, u, want);
            want_f32 = t->dtype == DTYPE_BOOL ? (u != 0) : (float)u;
        }
    }
    float got = as_f32[i];
    if (memcmp(&got, &want_f32, sizeof got) != 0 && !(isnan(got) && isnan(want_f32)))
        fail_msg("%s: %s[%zu] as f32 = %.9g, expected %.9g (%s)", file, t->name, i, got, want_f32, want);
}

static void check_against_manifest(const char *fname, const safetensors_file *st, const cJSON *expect)
{
    const cJSON *tensors = cJSON_GetObjectItem(expect, "tensors"), *meta = cJSON_GetObjectItem(expect, "metadata");
    assert_int_equal(safetensors_count(st), cJSON_GetArraySize(tensors));
    assert_int_equal(safetensors_metadata_count(st), cJSON_GetArraySize(meta));
    const cJSON *m;
    cJSON_ArrayForEach(m, meta)
    {
        const char *got = safetensors_metadata_get(st, m->string);
        if (!got || strcmp(got, m->valuestring) != 0)
            fail_msg("%s: metadata '%s' = '%s', expected '%s'", fname, m->string, got ? got : "(missing)",
                     m->valuestring);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, tensors)
    {
        const safetensors_tensor *t = safetensors_find(st, e->string);
        if (!t)
            fail_msg("%s: tensor '%s' not found", fname, e->string);
        assert_string_equal(t->name, e->string);
        assert_string_equal(dtype_name(t->dtype), cJSON_GetObjectItem(e, "dtype")->valuestring);
        const cJSON *shape = cJSON_GetObjectItem(e, "shape"), *values = cJSON_GetObjectItem(e, "values");
        assert_int_equal(t->ndim, cJSON_GetArraySize(shape));
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble);
        assert_int_equal(t->numel, cJSON_GetArraySize(values));
        assert_int_equal(t->nbytes, t->numel * dtype_size(t->dtype));
        float *f32 = malloc((t->numel + 1) * sizeof *f32);
        if (dtype_is_float(t->dtype))
            assert_ok(safetensors_read_f32(st, t->name, f32, t->numel));
        else
            assert_ok(dtype_convert_to_f32(f32, t->data, t->numel, t->dtype));
        for (size_t i = 0; i < t->numel; i++)
            check_element(fname, t, i, cJSON_GetArrayItem(values, (int)i)->valuestring, f32);
        free(f32);
    }
}

static const char *fixture_path(size_t f)
{
    static char path[256];
    snprintf(path, sizeof path, "safetensors/%s", fixture_files[f]);
    return testdata_path(path);
}

static void test_python_fixtures_match_manifest(void **state)
{
    (void)state;
    cJSON *manifest = load_manifest();
    assert_int_equal(cJSON_GetArraySize(manifest), N_FIXTURES);
    for (size_t f = 0; f < N_FIXTURES; f++) {
        safetensors_file *st;
        assert_ok(safetensors_open(fixture_path(f), &st));
        check_against_manifest(fixture_files[f], st, cJSON_GetObjectItem(manifest, fixture_files[f]));
        /* file order is data order */
        for (size_t i = 1; i < safetensors_count(st); i++)
            assert_true(safetensors_tensor_at(st, i - 1)->offset <= safetensors_tensor_at(st, i)->offset);
        assert_null(safetensors_tensor_at(st, safetensors_count(st)));
        safetensors_close(st);
    }
    cJSON_Delete(manifest);
}

static void test_albef_names_scalar_and_shape_checks(void **state)
{
    (void)state;
    safetensors_file *st;
    const char *path = testdata_path("safetensors/albef_like.safetensors");
    assert_ok(safetensors_open(path, &st));
    assert_string_equal(safetensors_path(st), path);

    const safetensors_tensor *temp = safetensors_find(st, "temp");
    assert_non_null(temp);
    assert_int_equal(temp->ndim, 0);
    assert_int_equal(temp->numel, 1);
    float t = 0;
    assert_ok(safetensors_read_f32_shape(st, "temp", &t, 0, NULL));
    assert_true(t == 0.07f);
    assert_error(safetensors_read_f32_shape(st, "temp", &t, 1, (const int64_t[]){1}), ALBEF_ERR_INVALID,
                 "albef_like.safetensors: tensor 'temp': expected shape [1], found []");

    float qkv[24];
    assert_ok(safetensors_read_f32_shape(st, "visual_encoder.blocks.0.attn.qkv.weight", qkv, 2,
                                         (const int64_t[]){6, 4}));
    for (int i = 0; i < 24; i++)
        assert_true(qkv[i] == i * 0.25f - 3.0f);
    assert_error(safetensors_read_f32_shape(st, "visual_encoder.blocks.0.attn.qkv.weight", qkv, 2,
                                            (const int64_t[]){4, 6}),
                 ALBEF_ERR_INVALID, "expected shape [4, 6], found [6, 4]");
    assert_error(safetensors_read_f32(st, "visual_encoder.blocks.0.attn.qkv.weight", qkv, 23), ALBEF_ERR_INVALID,
                 "tensor 'visual_encoder.blocks.0.attn.qkv.weight': expected 23 elements, found shape [6, 4] (24");
    assert_error(safetensors_read_f32(st, "visual_encoder.blocks.1.attn.qkv.weight", qkv, 24), ALBEF_ERR_INVALID,
                 "albef_like.safetensors: tensor 'visual_encoder.blocks.1.attn.qkv.weight' not found");

    float bf[16];
    assert_ok(safetensors_read_f32(st, "text_encoder.bert.encoder.layer.6.crossattention.self.query.weight", bf, 16));
    for (int i = 0; i < 16; i++)
        assert_true(bf[i] == i * 0.0625f - 0.5f);

    int64_t ptr = -1;
    assert_ok(safetensors_read_raw(st, "queue_ptr", DTYPE_I64, &ptr, 1));
    assert_int_equal(ptr, 5);
    assert_error(safetensors_read_raw(st, "queue_ptr", DTYPE_I32, &ptr, 1), ALBEF_ERR_INVALID,
                 "tensor 'queue_ptr': expected dtype I32, found I64");
    assert_error(safetensors_read_f32(st, "queue_ptr", &t, 1), ALBEF_ERR_UNSUPPORTED,
                 "tensor 'queue_ptr' has dtype I64");

    const safetensors_tensor *empty = safetensors_find(st, "image_queue");
    assert_non_null(empty);
    assert_int_equal(empty->numel, 0);
    assert_int_equal(empty->nbytes, 0);
    assert_ok(safetensors_read_f32_shape(st, "image_queue", NULL, 2, (const int64_t[]){4, 0}));

    const char *config = safetensors_metadata_get(st, "config");
    assert_non_null(config);
    assert_non_null(strstr(config, "\"queue_size\":65536"));
    assert_null(safetensors_metadata_get(st, "missing"));
    const char *k, *v;
    safetensors_metadata_at(st, 0, &k, &v);
    assert_string_equal(k, "config"); /* sorted by key */
    safetensors_metadata_at(st, 1, &k, &v);
    assert_string_equal(k, "format");
    assert_string_equal(v, "pt");
    safetensors_close(st);
}

/* Every fixture tensor and all metadata through our writer: the file must
 * hold the same bytes, and the Python package must load it (the --check mode
 * of scripts/dev/make_safetensors_fixtures.py, given
 * ALBEF_SAFETENSORS_ROUNDTRIP=path). */
static void test_fixtures_copied_through_writer_read_back_identical(void **state)
{
    (void)state;
    safetensors_file *src[N_FIXTURES];
    safetensors_writer *w;
    assert_ok(safetensors_writer_init(&w));
    for (size_t f = 0; f < N_FIXTURES; f++) {
        assert_ok(safetensors_open(fixture_path(f), &src[f]));
        for (size_t i = 0; i < safetensors_count(src[f]); i++) {
            const safetensors_tensor *t = safetensors_tensor_at(src[f], i);
            assert_ok(safetensors_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data));
        }
        for (size_t i = 0; i < safetensors_metadata_count(src[f]); i++) {
            const char *k, *v;
            safetensors_metadata_at(src[f], i, &k, &v);
            assert_ok(safetensors_writer_set_metadata(w, k, v));
        }
    }
    const char *env = getenv("ALBEF_SAFETENSORS_ROUNDTRIP");
    char path[1024];
    snprintf(path, sizeof path, "%s", env && *env ? env : tmp_path("roundtrip.safetensors"));
    assert_ok(safetensors_writer_write(w, path));
    safetensors_writer_free(w);

    safetensors_file *st;
    assert_ok(safetensors_open(path, &st));
    size_t total = 0, prev_size = 8;
    for (size_t f = 0; f < N_FIXTURES; f++) {
        total += safetensors_count(src[f]);
        for (size_t i = 0; i < safetensors_metadata_count(src[f]); i++) {
            const char *k, *v;
            safetensors_metadata_at(src[f], i, &k, &v);
            assert_string_equal(safetensors_metadata_get(st, k), v);
        }
        for (size_t i = 0; i < safetensors_count(src[f]); i++) {
            const safetensors_tensor *a = safetensors_tensor_at(src[f], i), *b = safetensors_find(st, a->name);
            assert_non_null(b);
            assert_int_equal(a->dtype, b->dtype);
            assert_int_equal(a->ndim, b->ndim);
            if (a->ndim)
                assert_memory_equal(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape);
            assert_int_equal(a->nbytes, b->nbytes);
            if (a->nbytes)
                assert_memory_equal(a->data, b->data, a->nbytes);
        }
    }
    assert_int_equal(safetensors_count(st), total);
    /* stored largest element first, so each tensor is aligned to its element */
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const safetensors_tensor *t = safetensors_tensor_at(st, i);
        size_t size = dtype_size(t->dtype);
        assert_true(size <= prev_size);
        prev_size = size;
        assert_int_equal((uintptr_t)t->data % size, 0);
    }
    safetensors_close(st);
    for (size_t f = 0; f < N_FIXTURES; f++)
        safetensors_close(src[f]);
}

static void test_writer_round_trips_every_dtype_scalar_and_empty(void **state)
{
    (void)state;
    unsigned char pattern[8 * 15];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (unsigned char)(i * 37 + 11);
    safetensors_writer *w;
    assert_ok(safetensors_writer_init(&w));
    char name[64];
    for (int d = 0; d < DTYPE_COUNT; d++) {
        snprintf(name, sizeof name, "m.%s.matrix", dtype_name((albef_dtype)d));
        assert_ok(safetensors_writer_add(w, name, (albef_dtype)d, 2, (const int64_t[]){3, 5}, pattern));
        snprintf(name, sizeof name, "m.%s.scalar", dtype_name((albef_dtype)d));
        assert_ok(safetensors_writer_add(w, name, (albef_dtype)d, 0, NULL, pattern + 8));
        snprintf(name, sizeof name, "m.%s.empty", dtype_name((albef_dtype)d));
        assert_ok(safetensors_writer_add(w, name, (albef_dtype)d, 3, (const int64_t[]){2, 0, 4}, NULL));
    }
    assert_ok(safetensors_writer_set_metadata(w, "config", "{\"a\": 1}"));
    assert_ok(safetensors_writer_set_metadata(w, "step", "10"));
    assert_ok(safetensors_writer_set_metadata(w, "step", "11")); /* replaces */
    const char *path = tmp_path("every_dtype.safetensors");
    assert_ok(safetensors_writer_write(w, path));
    safetensors_writer_free(w);

    char *bytes;
    size_t size;
    assert_ok(file_read_all(path, &bytes, &size));
    uint64_t header_len;
    memcpy(&header_len, bytes, 8);
    assert_int_equal(header_len % 8, 0);
    assert_true(bytes[8] == '{');
    assert_non_null(strstr(bytes + 8, "{\"__metadata__\":{\"config\":"));
    free(bytes);

    safetensors_file *st;
    assert_ok(safetensors_open(path, &st));
    assert_int_equal(safetensors_count(st), 3 * DTYPE_COUNT);
    assert_int_equal(safetensors_metadata_count(st), 2);
    assert_string_equal(safetensors_metadata_get(st, "step"), "11");
    assert_string_equal(safetensors_metadata_get(st, "config"), "{\"a\": 1}");
    for (int d = 0; d < DTYPE_COUNT; d++) {
        size_t es = dtype_size((albef_dtype)d);
        snprintf(name, sizeof name, "m.%s.matrix", dtype_name((albef_dtype)d));
        const safetensors_tensor *t = safetensors_find(st, name);
        assert_non_null(t);
        assert_int_equal(t->dtype, d);
        assert_int_equal(t->ndim, 2);
        assert_true(t->shape[0] == 3 && t->shape[1] == 5);
        assert_int_equal(t->nbytes, 15 * es);
        assert_memory_equal(t->data, pattern, 15 * es);
        snprintf(name, sizeof name, "m.%s.scalar", dtype_name((albef_dtype)d));
        t = safetensors_find(st, name);
        assert_non_null(t);
        assert_int_equal(t->ndim, 0);
        assert_int_equal(t->numel, 1);
        assert_memory_equal(t->data, pattern + 8, es);
        snprintf(name, sizeof name, "m.%s.empty", dtype_name((albef_dtype)d));
        t = safetensors_find(st, name);
        assert_non_null(t);
        assert_int_equal(t->ndim, 3);
        assert_int_equal(t->numel, 0);
        assert_int_equal(t->nbytes, 0);
    }
    /* within one element size, the order of adding */
    const safetensors_tensor *first = safetensors_tensor_at(st, 0);
    assert_string_equal(first->name, "m.F64.matrix");
    safetensors_close(st);
}

static void test_writer_with_no_tensors(void **state)
{
    (void)state;
    safetensors_writer *w;
    assert_ok(safetensors_writer_init(&w));
    const char *path = tmp_path("nothing.safetensors");
    assert_ok(safetensors_writer_write(w, path));
    safetensors_writer_free(w);
    safetensors_file *st;
    assert_ok(safetensors_open(path, &st));
    assert_int_equal(safetensors_count(st), 0);
    assert_int_equal(safetensors_metadata_count(st), 0);
    assert_null(safetensors_find(st, "x"));
    assert_null(safetensors_metadata_get(st, "x"));
    safetensors_close(st);
}

static void test_lookup_among_thousands_of_tensors(void **state)
{
    (void)state;
    enum { N = 3000 };
    static float values[N];
    safetensors_writer *w;
    assert_ok(safetensors_writer_init(&w));
    char name[96];
    for (int i = 0; i < N; i++) {
        values[i] = (float)i;
        snprintf(name, sizeof name, "text_encoder_m.bert.encoder.layer.%d.attention.self.query.weight", i);
        assert_ok(safetensors_writer_add(w, name, DTYPE_F32, 1, (const int64_t[]){1}, &values[i]));
    }
    const char *path = tmp_path("many.safetensors");
    assert_ok(safetensors_writer_write(w, path));
    safetensors_writer_free(w);
    safetensors_file *st;
    assert_ok(safetensors_open(path, &st));
    assert_int_equal(safetensors_count(st), N);
    for (int i = N - 1; i >= 0; i--) {
        snprintf(name, sizeof name, "text_encoder_m.bert.encoder.layer.%d.attention.self.query.weight", i);
        float v = -1;
        assert_ok(safetensors_read_f32(st, name, &v, 1));
        if (v != (float)i)
            fail_msg("%s: read %g", name, v);
        assert_int_equal(safetensors_tensor_at(st, (size_t)i)->offset, 4 * (uint64_t)i);
    }
    assert_null(safetensors_find(st, "text_encoder_m.bert.encoder.layer.3000.attention.self.query.weight"));
    safetensors_close(st);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_write_is_atomic_and_failure_keeps_old_file(void **state)
{
    (void)state;
    char dir[512], path[600], blocked[600];
    snprintf(dir, sizeof dir, "%s/atomic", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    float a[4] = {1, 2, 3, 4};
    safetensors_writer *w;
    assert_ok(safetensors_writer_init(&w));
    assert_ok(safetensors_writer_add(w, "a", DTYPE_F32, 1, (const int64_t[]){4}, a));
    assert_ok(safetensors_writer_write(w, path));
    assert_int_equal(count_entries(dir), 1);
    char *before;
    size_t before_size;
    assert_ok(file_read_all(path, &before, &before_size));

    /* a bad writer fails before touching anything */
    assert_ok(safetensors_writer_add(w, "a", DTYPE_F32, 1, (const int64_t[]){2}, a));
    assert_error(safetensors_writer_write(w, path), ALBEF_ERR_INVALID, "ckpt.safetensors: tensor 'a' was added twice");
    safetensors_writer_free(w);
    char *after;
    size_t after_size;
    assert_ok(file_read_all(path, &after, &after_size));
    assert_int_equal(after_size, before_size);
    assert_memory_equal(after, before, before_size);
    free(after);
    free(before);
    assert_int_equal(count_entries(dir), 1);

    /* a failure after the data went out (rename onto a folder) leaves no temporary file */
    snprintf(blocked, sizeof blocked, "%s/folder.safetensors", dir);
    mkdir(blocked, 0755);
    assert_ok(safetensors_writer_init(&w));
    assert_ok(safetensors_writer_add(w, "a", DTYPE_F32, 1, (const int64_t[]){4}, a));
    assert_error(safetensors_writer_write(w, blocked), ALBEF_ERR_IO, "folder.safetensors");
    assert_int_equal(count_entries(dir), 2);
    assert_error(safetensors_writer_write(w, "/nonexistent/dir/x.safetensors"), ALBEF_ERR_IO, "x.safetensors");
    safetensors_writer_free(w);
}

static void test_writer_rejects_bad_tensors(void **state)
{
    (void)state;
    safetensors_writer *w;
    assert_ok(safetensors_writer_init(&w));
    float x = 0;
    assert_error(safetensors_writer_add(w, "__metadata__", DTYPE_F32, 0, NULL, &x), ALBEF_ERR_INVALID, "__metadata__");
    assert_error(safetensors_writer_add(w, "neg", DTYPE_F32, 2, (const int64_t[]){2, -1}, &x), ALBEF_ERR_INVALID,
                 "tensor 'neg': shape[1] = -1 is negative");
    assert_error(safetensors_writer_add(w, "huge", DTYPE_F32, 2, (const int64_t[]){1LL << 40, 1LL << 40}, &x),
                 ALBEF_ERR_INVALID, "tensor 'huge': shape overflows");
    assert_error(safetensors_writer_add(w, "big", DTYPE_F64, 1, (const int64_t[]){1LL << 62}, &x), ALBEF_ERR_INVALID,
                 "tensor 'big': size overflows");
    assert_error(safetensors_writer_add(w, "nodata", DTYPE_F32, 1, (const int64_t[]){3}, NULL), ALBEF_ERR_INVALID,
                 "tensor 'nodata': no data for 12 bytes");
    assert_error(safetensors_writer_add(w, "baddtype", DTYPE_COUNT, 0, NULL, &x), ALBEF_ERR_INVALID,
                 "tensor 'baddtype': invalid dtype");
    assert_error(safetensors_writer_add(w, "ndim", DTYPE_F32, -1, NULL, &x), ALBEF_ERR_INVALID, "bad ndim -1");
    assert_error(safetensors_writer_add(w, "bad\xff", DTYPE_F32, 0, NULL, &x), ALBEF_ERR_INVALID, "not UTF-8");
    assert_error(safetensors_writer_set_metadata(w, "k", "\xc3"), ALBEF_ERR_INVALID, "not UTF-8");
    safetensors_writer_free(w);
}

/* ---- broken files ---- */

/* Writes [u64 len][header][data_len bytes] as `name` in the temporary folder. */
static const char *make_file(const char *name, const char *header, size_t data_len)
{
    size_t n = strlen(header);
    unsigned char *buf = malloc(8 + n + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + n + i] = (unsigned char)i;
    const char *path = write_tmp_file(name, buf, 8 + n + data_len);
    free(buf);
    return path;
}

typedef struct {
    const char *what;
    const char *header;
    size_t data_len;
    int code;
    const char *needle; /* besides the file name */
} bad_header_case;

static void check_bad_headers(const bad_header_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        const char *path = make_file(name, cases[i].header, cases[i].data_len);
        safetensors_file *st = (safetensors_file *)1;
        int rc = safetensors_open(path, &st);
        if (rc != cases[i].code || !strstr(albef_errmsg(), name) || !strstr(albef_errmsg(), cases[i].needle))
            fail_msg("%s: returned %d '%s'; expected %d with '%s' and '%s'", cases[i].what, rc, albef_errmsg(),
                     cases[i].code, name, cases[i].needle);
        assert_null(st);
    }
}

static void test_truncated_and_oversized_headers(void **state)
{
    (void)state;
    const char *p = write_tmp_file("short.safetensors", "\x10\0\0", 3);
    safetensors_file *st;
    assert_error(safetensors_open(p, &st), ALBEF_ERR_INVALID, "short.safetensors: file is 3 bytes");
    p = write_tmp_file("empty.safetensors", "", 0);
    assert_error(safetensors_open(p, &st), ALBEF_ERR_INVALID, "empty.safetensors: file is 0 bytes");
    unsigned char beyond[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    p = write_tmp_file("beyond.safetensors", beyond, sizeof beyond);
    assert_error(safetensors_open(p, &st), ALBEF_ERR_INVALID,
                 "beyond.safetensors: header length 100 goes past the end of the file (16 bytes)");
    unsigned char absurd[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    p = write_tmp_file("absurd.safetensors", absurd, sizeof absurd);
    assert_error(safetensors_open(p, &st), ALBEF_ERR_INVALID,
                 "absurd.safetensors: header length 9223372036854775808 is over the limit");
    assert_error(safetensors_open("/nonexistent/model.safetensors", &st), ALBEF_ERR_IO,
                 "/nonexistent/model.safetensors");
    assert_null(st);
}

/* Every proper prefix of a valid file is refused cleanly. */
static void test_every_truncation_of_a_valid_file_fails(void **state)
{
    (void)state;
    char *bytes;
    size_t size;
    assert_ok(file_read_all(testdata_path("safetensors/albef_like.safetensors"), &bytes, &size));
    for (size_t n = 0; n < size; n++) {
        safetensors_file *st;
        int rc = safetensors_open_memory(bytes, n, "cut.safetensors", &st);
        if (rc != ALBEF_ERR_INVALID || !strstr(albef_errmsg(), "cut.safetensors"))
            fail_msg("prefix of %zu of %zu bytes: returned %d '%s'", n, size, rc, albef_errmsg());
    }
    safetensors_file *st;
    assert_ok(safetensors_open_memory(bytes, size, "whole.safetensors", &st));
    safetensors_close(st);
    free(bytes);
}

static void test_malformed_json(void **state)
{
    (void)state;
    static const bad_header_case cases[] = {
        {"not JSON", "{\"a\": {\"dtype\": ", 0, ALBEF_ERR_INVALID, "header is not valid JSON"},
        {"empty header", "", 0, ALBEF_ERR_INVALID, "header is not valid JSON"},
        {"array", "[1, 2]   ", 0, ALBEF_ERR_INVALID, "header is not a JSON object"},
        {"trailing bytes", "{} x", 0, ALBEF_ERR_INVALID, "bytes after the JSON object"},
        {"invalid UTF-8", "{\"\xc3\x28\": 1}", 0, ALBEF_ERR_INVALID, "not valid UTF-8"},
    };
    check_bad_headers(cases, sizeof cases / sizeof *cases);
    /* a NUL inside the header proper */
    unsigned char nul[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' ', ' ', ' ', ' ', ' '};
    safetensors_file *st;
    assert_error(safetensors_open_memory(nul, sizeof nul, "nul.safetensors", &st), ALBEF_ERR_INVALID,
                 "nul.safetensors: header contains a NUL byte");
    /* padding with spaces (as the Python package writes) is fine */
    const char *p = make_file("padded.safetensors", "{}      ", 0);
    assert_ok(safetensors_open(p, &st));
    safetensors_close(st);
}

static void test_malformed_entries(void **state)
{
    (void)state;
    static const bad_header_case cases[] = {
        {"entry not object", "{\"w\": 3}", 0, ALBEF_ERR_INVALID, "tensor 'w': entry is not an object"},
        {"no dtype", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, ALBEF_ERR_INVALID,
         "tensor 'w': no \"dtype\""},
        {"dtype not string", "{\"w\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, ALBEF_ERR_INVALID,
         "tensor 'w': \"dtype\" is not a string"},
        {"unknown dtype", "{\"w\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': unknown dtype 'F33'"},
        {"unsupported dtype", "{\"w\": {\"dtype\": \"F8_E5M2\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
         ALBEF_ERR_UNSUPPORTED, "tensor 'w': dtype 'F8_E5M2' is not supported"},
        {"no shape", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, ALBEF_ERR_INVALID,
         "tensor 'w': no \"shape\""},
        {"shape not array", "{\"w\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': \"shape\" is not an array"},
        {"negative dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': shape[1] is not an integer"},
        {"fractional dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': shape[0] is not an integer"},
        {"string dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': shape[0] is not an integer"},
        {"dim beyond 2^53", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 4]}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': shape[0] is not an integer"},
        {"no offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, ALBEF_ERR_INVALID,
         "tensor 'w': no \"data_offsets\""},
        {"offsets not array", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": 0}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': \"data_offsets\" is not [begin, end]"},
        {"one offset", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, ALBEF_ERR_INVALID,
         "tensor 'w': \"data_offsets\" is not [begin, end]"},
        {"three offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
         ALBEF_ERR_INVALID, "tensor 'w': \"data_offsets\" is not [begin, end]"},
        {"negative offset", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': \"data_offsets\" is not [begin, end]"},
        {"metadata not object", "{\"__metadata__\": [\"a\"]}", 0, ALBEF_ERR_INVALID, "__metadata__ is not an object"},
        {"metadata value number", "{\"__metadata__\": {\"step\": 10}}", 0, ALBEF_ERR_INVALID,
         "__metadata__ 'step' is not a string"},
        {"metadata value object", "{\"__metadata__\": {\"config\": {\"a\": 1}}}", 0, ALBEF_ERR_INVALID,
         "__metadata__ 'config' is not a string"},
    };
    check_bad_headers(cases, sizeof cases / sizeof *cases);
}

static void test_bad_data_ranges(void **state)
{
    (void)state;
    static const bad_header_case cases[] = {
        {"begin after end", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
         ALBEF_ERR_INVALID, "tensor 'w': data_offsets [8, 4] end before begin"},
        {"past data area", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 6,
         ALBEF_ERR_INVALID, "tensor 'w': data_offsets [0, 8] go past the data area (6 bytes)"},
        {"size mismatch", "{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8,
         ALBEF_ERR_INVALID, "tensor 'w': data_offsets [0, 8] hold 8 bytes; shape [3] of F32 needs 12"},
        {"huge shape",
         "{\"w\": {\"dtype\": \"F32\", \"shape\": [1099511627776, 1099511627776], \"data_offsets\": [0, 4]}}", 4,
         ALBEF_ERR_INVALID, "tensor 'w': shape overflows 64 bits"},
        {"huge bytes", "{\"w\": {\"dtype\": \"F64\", \"shape\": [4294967296, 1073741824], \"data_offsets\": [0, 4]}}",
         4, ALBEF_ERR_INVALID, "tensor 'w': 4611686018427387904 elements of F64 overflow 64 bits"},
        {"overlap",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         12, ALBEF_ERR_INVALID, "tensor 'b' (bytes 4..12) overlaps tensor 'a' (bytes 0..8)"},
        {"same range",
         "{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
         " \"b\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
         4, ALBEF_ERR_INVALID, "tensor 'b' (bytes 0..4) overlaps tensor 'a'"},
        {"inside a long one",
         "{\"big\": {\"dtype\": \"U8\", \"shape\": [16], \"data_offsets\": [0, 16]},"
         " \"x\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [10, 12]},"
         " \"y\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [2, 4]}}",
         16, ALBEF_ERR_INVALID, "overlaps tensor 'big'"},
        {"duplicate name",
         "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
         " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
         8, ALBEF_ERR_INVALID, "tensor 'w' appears twice in the header"},
        {"duplicate metadata", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0, ALBEF_ERR_INVALID,
         "__metadata__ appears twice"},
        {"duplicate metadata key", "{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}", 0, ALBEF_ERR_INVALID,
         "__metadata__ key 'k' appears twice"},
    };
    check_bad_headers(cases, sizeof cases / sizeof *cases);
}

/* Other writers may leave gaps, trailing bytes, zero-sized tensors anywhere
 * and a null __metadata__; none of that does harm. */
static void test_tolerated_layouts(void **state)
{
    (void)state;
    const char *p = make_file("gaps.safetensors",
                              "{\"__metadata__\": null,"
                              " \"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]},"
                              " \"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [5, 5]},"
                              " \"b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
                              16);
    safetensors_file *st;
    assert_ok(safetensors_open(p, &st));
    assert_int_equal(safetensors_count(st), 3);
    assert_int_equal(safetensors_metadata_count(st), 0);
    assert_string_equal(safetensors_tensor_at(st, 0)->name, "b");
    assert_string_equal(safetensors_tensor_at(st, 1)->name, "a");
    assert_string_equal(safetensors_tensor_at(st, 2)->name, "e");
    unsigned char a[2];
    assert_ok(safetensors_read_raw(st, "a", DTYPE_U8, a, 2));
    assert_true(a[0] == 4 && a[1] == 5);
    safetensors_close(st);
}

/* Tensors at odd offsets, as files from other writers may place them. */
static void test_unaligned_tensors_read_correctly(void **state)
{
    (void)state;
    const char *header = "{\"pad\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
                         " \"f32\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [1, 9]},"
                         " \"f16\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [9, 13]},"
                         " \"f64\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [13, 21]}}";
    size_t n = strlen(header);
    unsigned char buf[512];
    assert_true(8 + n + 21 <= sizeof buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    unsigned char *data = buf + 8 + n;
    data[0] = 0xaa;
    memcpy(data + 1, (const float[]){1.25f, -8.0f}, 8);
    memcpy(data + 9, (const uint16_t[]){0x3c00, 0xc000}, 4);
    memcpy(data + 13, (const double[]){0.1}, 8);
    safetensors_file *st;
    assert_ok(safetensors_open_memory(buf, 8 + n + 21, "odd.safetensors", &st));
    float f[2];
    assert_ok(safetensors_read_f32(st, "f32", f, 2));
    assert_close_f32(f, ((const float[]){1.25f, -8.0f}), 2, 0, 0, "f32 at odd offset");
    assert_ok(safetensors_read_f32(st, "f16", f, 2));
    assert_close_f32(f, ((const float[]){1.0f, -2.0f}), 2, 0, 0, "f16 at odd offset");
    assert_ok(safetensors_read_f32(st, "f64", f, 1));
    assert_true(f[0] == 0.1f);
    double d;
    assert_ok(safetensors_read_raw(st, "f64", DTYPE_F64, &d, 1));
    assert_true(d == 0.1);
    safetensors_close(st);
}

static void test_shape_str(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(safetensors_shape_str(buf, sizeof buf, 0, NULL), "[]");
    assert_string_equal(safetensors_shape_str(buf, sizeof buf, 3, (const int64_t[]){1, 257, 768}), "[1, 257, 768]");
    char tiny[6];
    safetensors_shape_str(tiny, sizeof tiny, 3, (const int64_t[]){1, 257, 768});
    assert_int_equal(strlen(tiny), 5); /* cut, still terminated */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_fixtures_match_manifest),
        cmocka_unit_test(test_albef_names_scalar_and_shape_checks),
        cmocka_unit_test(test_fixtures_copied_through_writer_read_back_identical),
        cmocka_unit_test(test_writer_round_trips_every_dtype_scalar_and_empty),
        cmocka_unit_test(test_writer_with_no_tensors),
        cmocka_unit_test(test_lookup_among_thousands_of_tensors),
        cmocka_unit_test(test_write_is_atomic_and_failure_keeps_old_file),
        cmocka_unit_test(test_writer_rejects_bad_tensors),
        cmocka_unit_test(test_truncated_and_oversized_headers),
        cmocka_unit_test(test_every_truncation_of_a_valid_file_fails),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_malformed_entries),
        cmocka_unit_test(test_bad_data_ranges),
        cmocka_unit_test(test_tolerated_layouts),
        cmocka_unit_test(test_unaligned_tensors_read_correctly),
        cmocka_unit_test(test_shape_str),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
