#include "io/safetensors.h"

#include "core/error.h"
#include "core/file.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Dimensions and offsets arrive as JSON numbers, which cJSON holds as doubles:
 * integers up to 2^53 are exact, and no real file comes near that. */
#define SAFETENSORS_MAX_INTEGER 9007199254740992.0

/* Names in messages are cut so the file name at the front always fits. */
#define NAME_FMT "'%.200s'"

typedef struct {
    const char *key, *value;
} metadata_pair;

struct safetensors_file {
    char *path;
    file_mapping map; /* empty when opened from memory */
    void *owned;      /* the buffer of safetensors_open_memory_owned */
    const uint8_t *bytes;
    size_t size;
    cJSON *header; /* owns every name and metadata string */
    safetensors_tensor *tensors; /* by data offset */
    size_t count;
    const safetensors_tensor **by_name;
    int64_t *shapes; /* every tensor's shape, back to back */
    metadata_pair *metadata; /* sorted by key */
    size_t n_metadata;
};

static int utf8_valid(const uint8_t *s, size_t n)
{
    while (n > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t len = utf8proc_iterate(s, n > 4 ? 4 : (utf8proc_ssize_t)n, &cp);
        if (len <= 0)
            return 0;
        s += len;
        n -= (size_t)len;
    }
    return 1;
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* An integer in [0, 2^53] given as a JSON number. */
static int json_to_count(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return 0;
    double d = item->valuedouble;
    if (!(d >= 0 && d <= SAFETENSORS_MAX_INTEGER) || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

const char *safetensors_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    if (cap == 0)
        return buf;
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
    return buf;
}

static int compare_tensor_by_name(const void *a, const void *b)
{
    const safetensors_tensor *x = *(const safetensors_tensor *const *)a, *y = *(const safetensors_tensor *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x < y ? -1 : x > y);
}

/* By offset, then size, then header order (the tensors are still in header
 * order when this runs), so equal offsets sort deterministically. */
static int compare_tensor_by_offset(const void *a, const void *b)
{
    const safetensors_tensor *x = *(const safetensors_tensor *const *)a, *y = *(const safetensors_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int compare_metadata_by_key(const void *a, const void *b)
{
    const metadata_pair *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x < y ? -1 : x > y);
}

static int parse_metadata(safetensors_file *st, const cJSON *obj)
{
    if (cJSON_IsNull(obj))
        return ALBEF_OK;
    if (!cJSON_IsObject(obj))
        return albef_error(ALBEF_ERR_INVALID, "%s: __metadata__ is not an object", st->path);
    size_t n = 0;
    for (const cJSON *it = obj->child; it; it = it->next)
        n++;
    if (n == 0)
        return ALBEF_OK;
    st->metadata = calloc(n, sizeof *st->metadata);
    if (!st->metadata)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for %zu metadata entries", st->path, n);
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (!cJSON_IsString(it))
            return albef_error(ALBEF_ERR_INVALID, "%s: __metadata__ " NAME_FMT " is not a string", st->path,
                               it->string);
        st->metadata[st->n_metadata++] = (metadata_pair){it->string, it->valuestring};
    }
    qsort(st->metadata, st->n_metadata, sizeof *st->metadata, compare_metadata_by_key);
    for (size_t i = 1; i < st->n_metadata; i++)
        if (strcmp(st->metadata[i - 1].key, st->metadata[i].key) == 0)
            return albef_error(ALBEF_ERR_INVALID, "%s: __metadata__ key " NAME_FMT " appears twice", st->path,
                               st->metadata[i].key);
    return ALBEF_OK;
}

/* Fills t (name, dtype, shape, numel, nbytes, offset) from one header entry;
 * `shape` has room for its dims. The data range is checked later. */
static int parse_tensor_entry(const safetensors_file *st, const cJSON *entry, int64_t *shape,
                              safetensors_tensor *t)
{
    const char *path = st->path, *name = entry->string;
    t->name = name;
    if (!cJSON_IsObject(entry))
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": entry is not an object", path, name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!dtype)
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": no \"dtype\"", path, name);
    if (!cJSON_IsString(dtype))
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": \"dtype\" is not a string", path, name);
    int rc = dtype_from_name(dtype->valuestring, &t->dtype);
    if (rc)
        return albef_error_context(rc, "%s: tensor " NAME_FMT ": ", path, name);

    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!dims)
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": no \"shape\"", path, name);
    if (!cJSON_IsArray(dims))
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": \"shape\" is not an array", path, name);
    uint64_t numel = 1;
    int ndim = 0;
    for (const cJSON *d = dims->child; d; d = d->next, ndim++) {
        uint64_t dim;
        if (!json_to_count(d, &dim))
            return albef_error(ALBEF_ERR_INVALID,
                               "%s: tensor " NAME_FMT ": shape[%d] is not an integer in [0, 2^53]", path, name,
                               ndim);
        shape[ndim] = (int64_t)dim;
        if (__builtin_mul_overflow(numel, dim, &numel))
            return albef_error(ALBEF_ERR_INVALID,
                               "%s: tensor " NAME_FMT ": shape overflows 64 bits at shape[%d] = %" PRIu64, path,
                               name, ndim, dim);
    }
    t->ndim = ndim;
    t->shape = shape;
    t->numel = numel;
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, (uint64_t)dtype_size(t->dtype), &nbytes) || nbytes > SIZE_MAX)
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": %" PRIu64 " elements of %s overflow 64 bits",
                           path, name, numel, dtype_name(t->dtype));
    t->nbytes = (size_t)nbytes;

    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!offsets)
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": no \"data_offsets\"", path, name);
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 || !json_to_count(offsets->child, &begin) ||
        !json_to_count(offsets->child->next, &end))
        return albef_error(ALBEF_ERR_INVALID,
                           "%s: tensor " NAME_FMT ": \"data_offsets\" is not [begin, end] with integers >= 0", path,
                           name);
    if (begin > end)
        return albef_error(ALBEF_ERR_INVALID,
                           "%s: tensor " NAME_FMT ": data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin", path,
                           name, begin, end);
    if (end - begin != nbytes) {
        char s[256];
        return albef_error(ALBEF_ERR_INVALID,
                           "%s: tensor " NAME_FMT ": data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                           " bytes; shape %s of %s needs %" PRIu64,
                           path, name, begin, end, end - begin, safetensors_shape_str(s, sizeof s, ndim, shape),
                           dtype_name(t->dtype), nbytes);
    }
    t->offset = begin;
    return ALBEF_OK;
}

/* Puts the tensors in data order, checks each lies in the data area and
 * that no two share a byte. */
static int check_data_ranges(safetensors_file *st, const uint8_t *data_area, size_t data_size)
{
    size_t n = st->count ? st->count : 1;
    const safetensors_tensor **order = malloc(n * sizeof *order);
    safetensors_tensor *sorted = malloc(n * sizeof *sorted);
    if (!order || !sorted) {
        free(order);
        free(sorted);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for %zu tensors", st->path, st->count);
    }
    for (size_t i = 0; i < st->count; i++)
        order[i] = &st->tensors[i];
    qsort(order, st->count, sizeof *order, compare_tensor_by_offset);
    int rc = ALBEF_OK;
    const safetensors_tensor *last = NULL; /* the nonempty tensor ending furthest */
    for (size_t i = 0; i < st->count && rc == ALBEF_OK; i++) {
        const safetensors_tensor *t = order[i];
        uint64_t end = t->offset + t->nbytes;
        if (end > data_size)
            rc = albef_error(ALBEF_ERR_INVALID,
                             "%s: tensor " NAME_FMT ": data_offsets [%" PRIu64 ", %" PRIu64
                             "] go past the data area (%zu bytes)",
                             st->path, t->name, t->offset, end, data_size);
        else if (t->nbytes && last && t->offset < last->offset + last->nbytes)
            rc = albef_error(ALBEF_ERR_INVALID,
                             "%s: tensor " NAME_FMT " (bytes %" PRIu64 "..%" PRIu64 ") overlaps tensor " NAME_FMT
                             " (bytes %" PRIu64 "..%zu)",
                             st->path, t->name, t->offset, end, last->name, last->offset,
                             (size_t)last->offset + last->nbytes);
        if (t->nbytes && (!last || end > last->offset + last->nbytes))
            last = t;
        sorted[i] = *t;
        sorted[i].data = data_area + t->offset;
    }
    free(order);
    if (rc) {
        free(sorted);
        return rc;
    }
    free(st->tensors);
    st->tensors = sorted;
    return ALBEF_OK;
}

static int index_names(safetensors_file *st)
{
    st->by_name = malloc((st->count ? st->count : 1) * sizeof *st->by_name);
    if (!st->by_name)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for %zu tensors", st->path, st->count);
    for (size_t i = 0; i < st->count; i++)
        st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, st->count, sizeof *st->by_name, compare_tensor_by_name);
    for (size_t i = 1; i < st->count; i++)
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
            return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT " appears twice in the header", st->path,
                               st->by_name[i]->name);
    return ALBEF_OK;
}

static int parse_header(safetensors_file *st)
{
    const char *path = st->path;
    if (st->size < 8)
        return albef_error(ALBEF_ERR_INVALID, "%s: file is %zu bytes, too short for the 8-byte header length",
                           path, st->size);
    uint64_t header_len = read_le64(st->bytes);
    if (header_len > SAFETENSORS_MAX_HEADER)
        return albef_error(ALBEF_ERR_INVALID, "%s: header length %" PRIu64 " is over the limit of %u bytes", path,
                           header_len, SAFETENSORS_MAX_HEADER);
    if (header_len > st->size - 8)
        return albef_error(ALBEF_ERR_INVALID,
                           "%s: header length %" PRIu64 " goes past the end of the file (%zu bytes): truncated?",
                           path, header_len, st->size);
    const char *text = (const char *)st->bytes + 8;
    size_t n = (size_t)header_len;
    if (memchr(text, '\0', n))
        return albef_error(ALBEF_ERR_INVALID, "%s: header contains a NUL byte", path);
    if (!utf8_valid((const uint8_t *)text, n))
        return albef_error(ALBEF_ERR_INVALID, "%s: header is not valid UTF-8", path);

    /* cJSON gets its own NUL-terminated copy: the mapped header is followed by
     * tensor bytes, not a terminator. */
    char *copy = malloc(n + 1);
    if (!copy)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for a %zu-byte header", path, n);
    memcpy(copy, text, n);
    copy[n] = '\0';
    const char *parse_end = NULL;
    st->header = cJSON_ParseWithLengthOpts(copy, n, &parse_end, 0);
    size_t stop = parse_end ? (size_t)(parse_end - copy) : 0;
    free(copy);
    if (!st->header)
        return albef_error(ALBEF_ERR_INVALID, "%s: header is not valid JSON (error near byte %zu of %zu)", path,
                           stop, n);
    for (size_t i = stop; i < n; i++)
        if (!is_json_space(text[i]))
            return albef_error(ALBEF_ERR_INVALID, "%s: header has bytes after the JSON object (at byte %zu of %zu)",
                               path, i, n);
    if (!cJSON_IsObject(st->header))
        return albef_error(ALBEF_ERR_INVALID, "%s: header is not a JSON object", path);

    /* First pass: sizes; the second fills and checks every entry. */
    size_t total_dims = 0;
    const cJSON *metadata = NULL;
    for (const cJSON *e = st->header->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (metadata)
                return albef_error(ALBEF_ERR_INVALID, "%s: __metadata__ appears twice in the header", path);
            metadata = e;
            continue;
        }
        st->count++;
        const cJSON *dims = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "shape") : NULL;
        if (cJSON_IsArray(dims))
            for (const cJSON *d = dims->child; d; d = d->next)
                total_dims++;
    }
    int rc = metadata ? parse_metadata(st, metadata) : ALBEF_OK;
    if (rc)
        return rc;
    st->tensors = calloc(st->count ? st->count : 1, sizeof *st->tensors);
    st->shapes = malloc((total_dims ? total_dims : 1) * sizeof *st->shapes);
    if (!st->tensors || !st->shapes)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for %zu tensors", path, st->count);
    size_t i = 0, dims_used = 0;
    for (const cJSON *e = st->header->child; e; e = e->next) {
        if (e == metadata)
            continue;
        safetensors_tensor *t = &st->tensors[i++];
        rc = parse_tensor_entry(st, e, st->shapes + dims_used, t);
        if (rc)
            return rc;
        dims_used += (size_t)t->ndim;
    }
    size_t data_start = 8 + n;
    rc = check_data_ranges(st, st->bytes + data_start, st->size - data_start);
    if (rc)
        return rc;
    return index_names(st);
}

static int open_common(safetensors_file *st, safetensors_file **out)
{
    int rc = parse_header(st);
    if (rc) {
        safetensors_close(st);
        return rc;
    }
    *out = st;
    return ALBEF_OK;
}

int safetensors_open(const char *path, safetensors_file **out)
{
    *out = NULL;
    safetensors_file *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
    }
    int rc = file_map(path, &st->map);
    if (rc) {
        safetensors_close(st);
        return rc;
    }
    st->bytes = st->map.data;
    st->size = st->map.size;
    return open_common(st, out);
}

int safetensors_open_memory(const void *buf, size_t len, const char *name, safetensors_file **out)
{
    *out = NULL;
    safetensors_file *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(name))) {
        free(st);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", name);
    }
    st->bytes = buf;
    st->size = buf ? len : 0;
    return open_common(st, out);
}

int safetensors_open_memory_owned(void *buf, size_t len, const char *name, safetensors_file **out)
{
    int rc = safetensors_open_memory(buf, len, name, out);
    if (rc)
        free(buf);
    else
        (*out)->owned = buf;
    return rc;
}

void safetensors_close(safetensors_file *st)
{
    if (!st)
        return;
    file_unmap(&st->map);
    free(st->owned);
    cJSON_Delete(st->header);
    free(st->tensors);
    free(st->by_name);
    free(st->shapes);
    free(st->metadata);
    free(st->path);
    free(st);
}

const char *safetensors_path(const safetensors_file *st) { return st->path; }

size_t safetensors_count(const safetensors_file *st) { return st->count; }

const safetensors_tensor *safetensors_tensor_at(const safetensors_file *st, size_t i)
{
    return i < st->count ? &st->tensors[i] : NULL;
}

static int compare_name_to_tensor(const void *key, const void *elem)
{
    return strcmp(key, (*(const safetensors_tensor *const *)elem)->name);
}

const safetensors_tensor *safetensors_find(const safetensors_file *st, const char *name)
{
    const safetensors_tensor *const *hit =
        st->count ? bsearch(name, st->by_name, st->count, sizeof *st->by_name, compare_name_to_tensor) : NULL;
    return hit ? *hit : NULL;
}

static int compare_key_to_metadata(const void *key, const void *elem)
{
    return strcmp(key, ((const metadata_pair *)elem)->key);
}

const char *safetensors_metadata_get(const safetensors_file *st, const char *key)
{
    const metadata_pair *hit = st->n_metadata ? bsearch(key, st->metadata, st->n_metadata, sizeof *st->metadata,
                                                        compare_key_to_metadata)
                                              : NULL;
    return hit ? hit->value : NULL;
}

size_t safetensors_metadata_count(const safetensors_file *st) { return st->n_metadata; }

void safetensors_metadata_at(const safetensors_file *st, size_t i, const char **key, const char **value)
{
    *key = i < st->n_metadata ? st->metadata[i].key : NULL;
    *value = i < st->n_metadata ? st->metadata[i].value : NULL;
}

static int find_required(const safetensors_file *st, const char *name, const safetensors_tensor **t)
{
    *t = safetensors_find(st, name);
    if (!*t)
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT " not found", st->path, name);
    return ALBEF_OK;
}

static int check_numel(const safetensors_file *st, const safetensors_tensor *t, size_t n_expected)
{
    if (t->numel != n_expected) {
        char s[256];
        return albef_error(ALBEF_ERR_INVALID,
                           "%s: tensor " NAME_FMT ": expected %zu elements, found shape %s (%" PRIu64 " elements)",
                           st->path, t->name, n_expected, safetensors_shape_str(s, sizeof s, t->ndim, t->shape),
                           t->numel);
    }
    return ALBEF_OK;
}

int safetensors_tensor_to_f32(const safetensors_file *st, const safetensors_tensor *t, float *dst)
{
    if (!dtype_is_float(t->dtype))
        return albef_error(ALBEF_ERR_UNSUPPORTED,
                           "%s: tensor " NAME_FMT " has dtype %s; expected F32, F16, BF16 or F64", st->path, t->name,
                           dtype_name(t->dtype));
    return dtype_convert_to_f32(dst, t->data, (size_t)t->numel, t->dtype);
}

int safetensors_read_f32(const safetensors_file *st, const char *name, float *dst, size_t n_expected)
{
    const safetensors_tensor *t;
    int rc = find_required(st, name, &t);
    if (!rc)
        rc = check_numel(st, t, n_expected);
    return rc ? rc : safetensors_tensor_to_f32(st, t, dst);
}

int safetensors_read_f32_shape(const safetensors_file *st, const char *name, float *dst, int ndim,
                               const int64_t *shape)
{
    const safetensors_tensor *t;
    int rc = find_required(st, name, &t);
    if (rc)
        return rc;
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[256], got[256];
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": expected shape %s, found %s", st->path,
                           name, safetensors_shape_str(want, sizeof want, ndim, shape),
                           safetensors_shape_str(got, sizeof got, t->ndim, t->shape));
    }
    return safetensors_tensor_to_f32(st, t, dst);
}

int safetensors_read_raw(const safetensors_file *st, const char *name, albef_dtype dtype, void *dst,
                         size_t n_expected)
{
    const safetensors_tensor *t;
    int rc = find_required(st, name, &t);
    if (rc)
        return rc;
    if (t->dtype != dtype)
        return albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT ": expected dtype %s, found %s", st->path,
                           name, dtype_name(dtype), dtype_name(t->dtype));
    rc = check_numel(st, t, n_expected);
    if (rc)
        return rc;
    if (t->nbytes)
        memcpy(dst, t->data, t->nbytes);
    return ALBEF_OK;
}

/* ---- writer ---- */

typedef struct {
    char *name;
    albef_dtype dtype;
    int ndim;
    int64_t *shape;
    const void *data;
    size_t nbytes;
    size_t added; /* position in the order of adding, to keep the sort stable */
} writer_tensor;

typedef struct {
    char *key, *value;
} writer_metadata;

struct safetensors_writer {
    writer_tensor *tensors;
    size_t count, cap;
    writer_metadata *metadata;
    size_t n_metadata, metadata_cap;
};

int safetensors_writer_init(safetensors_writer **w)
{
    *w = calloc(1, sizeof **w);
    return *w ? ALBEF_OK : albef_error(ALBEF_ERR_NOMEM, "safetensors writer: out of memory");
}

void safetensors_writer_free(safetensors_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->count; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].shape);
    }
    for (size_t i = 0; i < w->n_metadata; i++) {
        free(w->metadata[i].key);
        free(w->metadata[i].value);
    }
    free(w->tensors);
    free(w->metadata);
    free(w);
}

/* `items` (of `size` bytes each) with room for at least one more than
 * `count`, or NULL (items untouched) when out of memory. */
static void *grow(void *items, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return items;
    size_t ncap = *cap ? *cap * 2 : 64;
    void *p = realloc(items, ncap * size);
    if (p)
        *cap = ncap;
    return p;
}

int safetensors_writer_add(safetensors_writer *w, const char *name, albef_dtype dtype, int ndim, const int64_t *shape,
                           const void *data)
{
    if (!name || !utf8_valid((const uint8_t *)name, strlen(name)))
        return albef_error(ALBEF_ERR_INVALID, "safetensors writer: tensor name is missing or not UTF-8");
    if (strcmp(name, "__metadata__") == 0)
        return albef_error(ALBEF_ERR_INVALID, "safetensors writer: '__metadata__' cannot name a tensor");
    if (dtype_size(dtype) == 0)
        return albef_error(ALBEF_ERR_INVALID, "safetensors writer: tensor " NAME_FMT ": invalid dtype %d", name,
                           (int)dtype);
    if (ndim < 0 || (ndim > 0 && !shape))
        return albef_error(ALBEF_ERR_INVALID, "safetensors writer: tensor " NAME_FMT ": bad ndim %d", name, ndim);
    uint64_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return albef_error(ALBEF_ERR_INVALID, "safetensors writer: tensor " NAME_FMT ": shape[%d] = %" PRId64
                               " is negative", name, i, shape[i]);
        if (__builtin_mul_overflow(numel, (uint64_t)shape[i], &numel))
            return albef_error(ALBEF_ERR_INVALID, "safetensors writer: tensor " NAME_FMT ": shape overflows", name);
    }
    if (__builtin_mul_overflow(numel, (uint64_t)dtype_size(dtype), &nbytes) || nbytes > SIZE_MAX)
        return albef_error(ALBEF_ERR_INVALID, "safetensors writer: tensor " NAME_FMT ": size overflows", name);
    if (nbytes && !data)
        return albef_error(ALBEF_ERR_INVALID, "safetensors writer: tensor " NAME_FMT ": no data for %" PRIu64
                           " bytes", name, nbytes);
    writer_tensor *grown = grow(w->tensors, &w->cap, w->count, sizeof *w->tensors);
    if (!grown)
        return albef_error(ALBEF_ERR_NOMEM, "safetensors writer: out of memory adding " NAME_FMT, name);
    w->tensors = grown;
    writer_tensor *t = &w->tensors[w->count];
    *t = (writer_tensor){.dtype = dtype, .ndim = ndim, .data = data, .nbytes = (size_t)nbytes, .added = w->count};
    t->name = strdup(name);
    t->shape = malloc((ndim ? (size_t)ndim : 1) * sizeof *t->shape);
    if (!t->name || !t->shape) {
        free(t->name);
        free(t->shape);
        return albef_error(ALBEF_ERR_NOMEM, "safetensors writer: out of memory adding " NAME_FMT, name);
    }
    if (ndim)
        memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    w->count++;
    return ALBEF_OK;
}

int safetensors_writer_set_metadata(safetensors_writer *w, const char *key, const char *value)
{
    if (!key || !value || !utf8_valid((const uint8_t *)key, strlen(key)) ||
        !utf8_valid((const uint8_t *)value, strlen(value)))
        return albef_error(ALBEF_ERR_INVALID, "safetensors writer: metadata key or value is missing or not UTF-8");
    char *v = strdup(value);
    if (!v)
        return albef_error(ALBEF_ERR_NOMEM, "safetensors writer: out of memory for metadata " NAME_FMT, key);
    for (size_t i = 0; i < w->n_metadata; i++)
        if (strcmp(w->metadata[i].key, key) == 0) {
            free(w->metadata[i].value);
            w->metadata[i].value = v;
            return ALBEF_OK;
        }
    char *k = strdup(key);
    writer_metadata *grown = k ? grow(w->metadata, &w->metadata_cap, w->n_metadata, sizeof *w->metadata) : NULL;
    if (!grown) {
        free(k);
        free(v);
        return albef_error(ALBEF_ERR_NOMEM, "safetensors writer: out of memory for metadata " NAME_FMT, key);
    }
    w->metadata = grown;
    w->metadata[w->n_metadata++] = (writer_metadata){k, v};
    return ALBEF_OK;
}

/* Largest element first, then the order of adding. */
static int compare_writer_storage_order(const void *a, const void *b)
{
    const writer_tensor *x = *(const writer_tensor *const *)a, *y = *(const writer_tensor *const *)b;
    size_t sx = dtype_size(x->dtype), sy = dtype_size(y->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return x->added < y->added ? -1 : x->added > y->added;
}

static int compare_writer_by_name(const void *a, const void *b)
{
    return strcmp((*(const writer_tensor *const *)a)->name, (*(const writer_tensor *const *)b)->name);
}

/* Integers go in as raw text: cJSON would print large doubles in exponent
 * form, which readers expecting u64 refuse. */
static cJSON *json_integer(uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

static int add_item(cJSON *parent, const char *key, cJSON *item)
{
    if (!item)
        return 0;
    if (key)
        return cJSON_AddItemToObject(parent, key, item) ? 1 : (cJSON_Delete(item), 0);
    return cJSON_AddItemToArray(parent, item) ? 1 : (cJSON_Delete(item), 0);
}

/* The header text for tensors in `order`, padded with spaces to a multiple
 * of 8 bytes. */
static char *build_header(const safetensors_writer *w, const writer_tensor **order, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && w->n_metadata) {
        cJSON *meta = cJSON_CreateObject();
        ok = add_item(root, "__metadata__", meta);
        for (size_t i = 0; ok && i < w->n_metadata; i++)
            ok = add_item(meta, w->metadata[i].key, cJSON_CreateString(w->metadata[i].value));
    }
    uint64_t offset = 0;
    for (size_t i = 0; ok && i < w->count; i++) {
        const writer_tensor *t = order[i];
        cJSON *entry = cJSON_CreateObject(), *shape = NULL, *offsets = NULL;
        ok = entry != NULL;
        ok = ok && add_item(entry, "dtype", cJSON_CreateString(dtype_name(t->dtype)));
        ok = ok && add_item(entry, "shape", shape = cJSON_CreateArray());
        for (int d = 0; ok && d < t->ndim; d++)
            ok = add_item(shape, NULL, json_integer((uint64_t)t->shape[d]));
        ok = ok && add_item(entry, "data_offsets", offsets = cJSON_CreateArray());
        ok = ok && add_item(offsets, NULL, json_integer(offset));
        offset += t->nbytes;
        ok = ok && add_item(offsets, NULL, json_integer(offset));
        if (ok)
            ok = add_item(root, t->name, entry); /* on failure add_item frees entry */
        else
            cJSON_Delete(entry);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return NULL;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = '\0';
    *len = padded;
    return out;
}

int safetensors_writer_write(const safetensors_writer *w, const char *path)
{
    const writer_tensor **order = malloc((w->count ? w->count : 1) * sizeof *order);
    if (!order)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < w->count; i++)
        order[i] = &w->tensors[i];
    qsort(order, w->count, sizeof *order, compare_writer_by_name);
    for (size_t i = 1; i < w->count; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            int rc = albef_error(ALBEF_ERR_INVALID, "%s: tensor " NAME_FMT " was added twice", path, order[i]->name);
            free(order);
            return rc;
        }
    qsort(order, w->count, sizeof *order, compare_writer_storage_order);

    size_t header_len = 0;
    char *header = build_header(w, order, &header_len);
    if (!header) {
        free(order);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    if (header_len > SAFETENSORS_MAX_HEADER) {
        free(header);
        free(order);
        return albef_error(ALBEF_ERR_INVALID, "%s: header of %zu bytes would be over the limit of %u", path,
                           header_len, SAFETENSORS_MAX_HEADER);
    }
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)header_len >> (8 * i));

    atomic_file af;
    int rc = atomic_file_open(&af, path);
    if (!rc)
        rc = atomic_file_write(&af, prefix, sizeof prefix);
    if (!rc)
        rc = atomic_file_write(&af, header, header_len);
    for (size_t i = 0; !rc && i < w->count; i++)
        rc = atomic_file_write(&af, order[i]->data, order[i]->nbytes);
    if (!rc)
        rc = atomic_file_commit(&af);
    else if (af.f)
        atomic_file_abort(&af);
    free(header);
    free(order);
    return rc;
}
