#include "io/pth.h"

#include "core/error.h"
#include "core/file.h"
#include "io/pth_pickle.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

/* A small file may describe far more tensor bytes than it holds (one storage
 * viewed by many tensors, a deflated entry); the output may be at most this
 * many times the input, plus a constant. Real checkpoints come to about 1x
 * (2x with tied weights). */
#define PTH_MAX_GROWTH 16
#ifdef ALBEF_FUZZING
#define PTH_MAX_EXTRA ((uint64_t)16 << 20)
#else
#define PTH_MAX_EXTRA ((uint64_t)64 << 20)
#endif

/* Names in messages are cut so the file name at the front always fits. */
#define NAME_FMT "'%.200s'"

typedef struct {
    const char *name; /* file name for messages */
    zip_t *za;        /* NULL for the legacy format */
    char prefix[256]; /* "archive" */
    uint64_t limit;   /* bytes we agree to read or produce */
    /* legacy format: each storage's bytes inside the file, by storage index */
    const uint8_t **legacy_data;
    uint64_t *legacy_size;
} archive;

typedef struct {
    const char *key;         /* the state-dict name */
    const pickle_tensor *t;
    uint64_t nbytes, offset; /* in the output's data area */
} entry;

static int zip_fail(const archive *a, zip_error_t *ze, const char *what)
{
    int rc = albef_error(ALBEF_ERR_INVALID, "%s: %s: %s", a->name, what, zip_error_strerror(ze));
    zip_error_fini(ze);
    return rc;
}

/* Locates `<prefix>/<rest>` and checks its sizes. *index is -1 when absent. */
static int find_entry(const archive *a, const char *rest, zip_int64_t *index, uint64_t *size)
{
    char full[512];
    snprintf(full, sizeof full, "%s/%s", a->prefix, rest);
    *index = zip_name_locate(a->za, full, 0);
    if (*index < 0)
        return ALBEF_OK;
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(a->za, (zip_uint64_t)*index, 0, &zs) || !(zs.valid & ZIP_STAT_SIZE) ||
        !(zs.valid & ZIP_STAT_COMP_SIZE))
        return albef_error(ALBEF_ERR_INVALID, "%s: archive entry " NAME_FMT ": no size", a->name, full);
    /* A deflated entry expands at most ~1032 times; a larger claim is corrupt,
     * and a stored entry holds exactly what it says. */
    uint64_t most = zs.comp_size * 1100 + 1024;
    if (zs.size > most || zs.size > a->limit)
        return albef_error(ALBEF_ERR_INVALID, "%s: archive entry " NAME_FMT " claims %" PRIu64 " bytes from %" PRIu64,
                           a->name, full, (uint64_t)zs.size, (uint64_t)zs.comp_size);
    *size = zs.size;
    return ALBEF_OK;
}

/* Reads n bytes from the start of entry `index` into dst. */
static int read_entry(const archive *a, zip_int64_t index, const char *what, void *dst, uint64_t n)
{
    zip_file_t *f = zip_fopen_index(a->za, (zip_uint64_t)index, 0);
    if (!f)
        return albef_error(ALBEF_ERR_INVALID, "%s: archive entry %s: %s", a->name, what, zip_strerror(a->za));
    uint64_t got = 0;
    while (got < n) {
        zip_int64_t k = zip_fread(f, (char *)dst + got, n - got);
        if (k <= 0)
            break;
        got += (uint64_t)k;
    }
    int rc = ALBEF_OK;
    if (got < n)
        rc = albef_error(ALBEF_ERR_INVALID, "%s: archive entry %s: %" PRIu64 " of %" PRIu64 " bytes read (%s)",
                         a->name, what, got, n, zip_file_strerror(f));
    zip_fclose(f);
    return rc;
}

/* torch.save names every entry "<prefix>/...", the prefix being "archive" or
 * (older versions) the file's stem; data.pkl sits right under it. */
static int find_prefix(archive *a)
{
    zip_int64_t n = zip_get_num_entries(a->za, 0);
    int found = 0;
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(a->za, (zip_uint64_t)i, 0);
        const char *slash = name ? strchr(name, '/') : NULL;
        if (!slash || strcmp(slash, "/data.pkl") || (size_t)(slash - name) >= sizeof a->prefix || slash == name)
            continue;
        if (found++)
            return albef_error(ALBEF_ERR_INVALID, "%s: the archive holds more than one data.pkl", a->name);
        snprintf(a->prefix, sizeof a->prefix, "%.*s", (int)(slash - name), name);
    }
    if (!found)
        return albef_error(ALBEF_ERR_INVALID,
                           "%s: a zip archive without <name>/data.pkl: not a checkpoint written by torch.save", a->name);
    return ALBEF_OK;
}

static int check_byteorder(const archive *a)
{
    zip_int64_t index;
    uint64_t size;
    int rc = find_entry(a, "byteorder", &index, &size);
    if (rc || index < 0)
        return rc; /* absent before PyTorch 1.10: little-endian */
    char text[16] = {0};
    if (size >= sizeof text)
        return albef_error(ALBEF_ERR_INVALID, "%s: byteorder entry of %" PRIu64 " bytes", a->name, size);
    rc = read_entry(a, index, "byteorder", text, size);
    if (!rc && strcmp(text, "little"))
        rc = albef_error(ALBEF_ERR_UNSUPPORTED, "%s: tensors stored big-endian (byteorder '%.15s')", a->name, text);
    return rc;
}

/* ---- the state dict ------------------------------------------------------- */

static int compare_entry_key(const void *x, const void *y)
{
    const entry *a = x, *b = y;
    int c = strcmp(a->key, b->key);
    return c ? c : (a->offset > b->offset) - (a->offset < b->offset); /* offset holds the position here */
}

static int compare_entry_position(const void *x, const void *y)
{
    const entry *a = x, *b = y;
    return (a->offset > b->offset) - (a->offset < b->offset);
}

/* The tensors of the state dict in order, a later duplicate key replacing an
 * earlier one as in Python. */
static int collect_entries(const archive *a, const pickle_result *pr, const pickle_value *sd, entry **out,
                           size_t *count, int *skipped)
{
    size_t n = sd->n / 2;
    entry *e = malloc((n ? n : 1) * sizeof *e);
    if (!e)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", a->name);
    size_t k = 0;
    *skipped = 0;
    for (size_t i = 0; i + 1 < sd->n; i += 2) {
        const pickle_value *key = sd->items[i], *value = sd->items[i + 1];
        if (value->kind != PK_TENSOR) {
            (*skipped)++;
            continue;
        }
        if (key->kind != PK_STR) {
            free(e);
            return albef_error(ALBEF_ERR_INVALID, "%s: a state-dict tensor under a key that is not a string",
                               a->name);
        }
        if (!strcmp(key->s, "__metadata__") || strlen(key->s) != key->len || key->len == 0) {
            free(e);
            return albef_error(ALBEF_ERR_INVALID, "%s: tensor name " NAME_FMT " cannot be kept", a->name, key->s);
        }
        e[k++] = (entry){.key = key->s, .t = &pr->tensors[value->i], .offset = i};
    }
    qsort(e, k, sizeof *e, compare_entry_key);
    size_t kept = 0;
    for (size_t i = 0; i < k; i++)
        if (i + 1 == k || strcmp(e[i].key, e[i + 1].key))
            e[kept++] = e[i];
    qsort(e, kept, sizeof *e, compare_entry_position);
    *out = e;
    *count = kept;
    return ALBEF_OK;
}

/* "model,optimizer,epoch": the string keys of a dict, for the metadata. */
static void list_keys(const pickle_value *dict, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i + 1 < dict->n && used + 1 < cap; i += 2) {
        const pickle_value *key = dict->items[i];
        if (key->kind != PK_STR)
            continue;
        int w = snprintf(buf + used, cap - used, "%s%.*s", used ? "," : "", (int)(key->len > 100 ? 100 : key->len),
                         key->s);
        if (w < 0 || (size_t)w >= cap - used) {
            buf[used] = '\0';
            break;
        }
        used += (size_t)w;
    }
}

static cJSON *json_u64(uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

static int add(cJSON *parent, const char *key, cJSON *item)
{
    if (!item)
        return 0;
    if (key)
        return cJSON_AddItemToObject(parent, key, item) ? 1 : (cJSON_Delete(item), 0);
    return cJSON_AddItemToArray(parent, item) ? 1 : (cJSON_Delete(item), 0);
}

/* The safetensors header for the entries (offsets assigned in order), padded
 * with spaces to a multiple of 8 bytes. */
static char *build_header(entry *e, size_t n, const char *keys, int skipped, size_t *len, uint64_t *data_bytes)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    char count[24];
    snprintf(count, sizeof count, "%d", skipped);
    int ok = root && add(root, "__metadata__", meta);
    if (!ok && meta && !root)
        cJSON_Delete(meta);
    ok = ok && add(meta, "format", cJSON_CreateString("pt"));
    ok = ok && add(meta, "pth.keys", cJSON_CreateString(keys));
    ok = ok && add(meta, "pth.skipped", cJSON_CreateString(count));
    uint64_t offset = 0;
    for (size_t i = 0; ok && i < n; i++) {
        const pickle_tensor *t = e[i].t;
        e[i].offset = offset;
        e[i].nbytes = t->numel * dtype_size(t->dtype); /* bounded by the storage, so no overflow */
        cJSON *item = cJSON_CreateObject(), *shape = NULL, *offsets = NULL;
        ok = add(root, e[i].key, item);
        ok = ok && add(item, "dtype", cJSON_CreateString(dtype_name(t->dtype)));
        ok = ok && add(item, "shape", shape = cJSON_CreateArray());
        for (int d = 0; ok && d < t->ndim; d++)
            ok = add(shape, NULL, json_u64((uint64_t)t->shape[d]));
        ok = ok && add(item, "data_offsets", offsets = cJSON_CreateArray());
        ok = ok && add(offsets, NULL, json_u64(offset));
        offset += e[i].nbytes;
        ok = ok && add(offsets, NULL, json_u64(offset));
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return NULL;
    size_t l = strlen(text), padded = (l + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + l, ' ', padded - l);
    out[padded] = '\0';
    *len = padded;
    *data_bytes = offset;
    return out;
}

static int is_contiguous(const pickle_tensor *t)
{
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            return 0;
        expect *= t->shape[d];
    }
    return 1;
}

/* Copies tensor t out of its storage (`src`, elements of its dtype) into dst
 * in C order, following its strides. */
static void gather(const pickle_tensor *t, const uint8_t *src, uint8_t *dst)
{
    size_t elem = dtype_size(t->dtype);
    if (!t->numel)
        return;
    if (is_contiguous(t)) {
        memcpy(dst, src + t->offset * elem, t->numel * elem);
        return;
    }
    int64_t idx[PICKLE_MAX_DIMS] = {0};
    int last = t->ndim - 1; /* ndim >= 1: a scalar is contiguous */
    size_t row = (size_t)t->shape[last];
    for (uint64_t done = 0; done < t->numel; done += row) {
        uint64_t at = t->offset;
        for (int d = 0; d < last; d++)
            at += (uint64_t)idx[d] * (uint64_t)t->stride[d];
        if (t->stride[last] == 1) {
            memcpy(dst, src + at * elem, row * elem);
            dst += row * elem;
        } else {
            for (size_t k = 0; k < row; k++, dst += elem)
                memcpy(dst, src + (at + k * (uint64_t)t->stride[last]) * elem, elem);
        }
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
}

/* The elements storage index s must hold for tensor t: one past the last it views. */
static uint64_t extent(const pickle_tensor *t)
{
    if (!t->numel)
        return t->offset;
    uint64_t last = t->offset;
    for (int d = 0; d < t->ndim; d++)
        last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->stride[d];
    return last + 1;
}

/* Fills the data area: each storage read once, or read straight into place
 * when one contiguous tensor from its start is all that uses it. */
static int copy_tensors(const archive *a, const pickle_result *pr, const entry *e, size_t n, uint8_t *data)
{
    int rc = ALBEF_OK;
    for (size_t s = 0; s < pr->n_storages && !rc; s++) {
        size_t users = 0, only = 0;
        uint64_t need = 0; /* bytes of the storage the tensors view */
        for (size_t i = 0; i < n; i++) {
            if (e[i].t->storage != (int)s)
                continue;
            users++;
            only = i;
            uint64_t bytes = extent(e[i].t) * dtype_size(e[i].t->dtype);
            if (bytes > need)
                need = bytes;
        }
        if (!users)
            continue;
        if (a->legacy_data) {
            if (a->legacy_size[s] < need) {
                rc = albef_error(ALBEF_ERR_INVALID, "%s: storage '%s' holds %" PRIu64 " bytes, its tensors view %" PRIu64,
                                 a->name, pr->storages[s].key, a->legacy_size[s], need);
                break;
            }
            for (size_t i = 0; i < n; i++)
                if (e[i].t->storage == (int)s)
                    gather(e[i].t, a->legacy_data[s], data + e[i].offset);
            continue;
        }
        char rest[96], what[400];
        snprintf(rest, sizeof rest, "data/%s", pr->storages[s].key);
        snprintf(what, sizeof what, "'%s/%s'", a->prefix, rest);
        zip_int64_t index;
        uint64_t size;
        rc = find_entry(a, rest, &index, &size);
        if (rc)
            break;
        if (index < 0) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: storage %s is missing from the archive", a->name, what);
            break;
        }
        if (size < need) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: storage %s holds %" PRIu64 " bytes, its tensors view %" PRIu64,
                             a->name, what, size, need);
            break;
        }
        const pickle_tensor *t = e[only].t;
        if (users == 1 && t->offset == 0 && is_contiguous(t)) {
            rc = read_entry(a, index, what, data + e[only].offset, e[only].nbytes);
            continue;
        }
        uint8_t *buf = malloc(need ? need : 1);
        if (!buf) {
            rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for storage %s (%" PRIu64 " bytes)", a->name, what,
                             need);
            break;
        }
        rc = read_entry(a, index, what, buf, need);
        for (size_t i = 0; i < n && !rc; i++)
            if (e[i].t->storage == (int)s)
                gather(e[i].t, buf, data + e[i].offset);
        free(buf);
    }
    return rc;
}

static int state_dict_to_safetensors(archive *a, const pickle_result *pr, safetensors_file **st);

static int read_archive(archive *a, safetensors_file **st)
{
    int rc = find_prefix(a);
    rc = rc ? rc : check_byteorder(a);
    zip_int64_t index = -1;
    uint64_t size = 0;
    if (!rc)
        rc = find_entry(a, "data.pkl", &index, &size);
    if (rc)
        return rc;
    uint8_t *pkl = malloc(size ? size : 1);
    if (!pkl)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", a->name);
    char what[300];
    snprintf(what, sizeof what, "'%s/data.pkl'", a->prefix);
    rc = read_entry(a, index, what, pkl, size);
    pickle_result pr;
    char stream[600];
    snprintf(stream, sizeof stream, "%s: %s/data.pkl", a->name, a->prefix);
    if (!rc)
        rc = pickle_load(pkl, size, stream, &pr);
    free(pkl);
    if (rc)
        return rc;
    rc = state_dict_to_safetensors(a, &pr, st);
    pickle_free(&pr);
    return rc;
}

/* The state dict of an unpickled checkpoint as safetensors in memory. */
static int state_dict_to_safetensors(archive *a, const pickle_result *pr, safetensors_file **st)
{
    int rc = ALBEF_OK;
    const pickle_value *root = pr->root, *sd = root;
    const pickle_value *model = pickle_dict_get(root, "model");
    if (!model || model->kind != PK_DICT)
        model = pickle_dict_get(root, "state_dict");
    if (model && model->kind == PK_DICT)
        sd = model;
    char keys[1024] = "";
    entry *e = NULL;
    size_t n = 0;
    int skipped = 0;
    if (root->kind != PK_DICT) {
        rc = albef_error(ALBEF_ERR_INVALID, "%s: the pickled object is not a dict (a state dict, or one under 'model')",
                         a->name);
    } else {
        if (sd != root)
            list_keys(root, keys, sizeof keys);
        rc = collect_entries(a, pr, sd, &e, &n, &skipped);
    }
    size_t header_len = 0;
    uint64_t data_bytes = 0;
    char *header = NULL;
    if (!rc) {
        header = build_header(e, n, keys, skipped, &header_len, &data_bytes);
        if (!header)
            rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of memory building the header", a->name);
    }
    if (!rc && (data_bytes > a->limit || header_len > SAFETENSORS_MAX_HEADER))
        rc = albef_error(ALBEF_ERR_INVALID, "%s: the state dict's tensors come to %" PRIu64
                         " bytes, too many for a file of this size", a->name, data_bytes);
    uint8_t *out = NULL;
    size_t total = 8 + header_len + (size_t)data_bytes;
    if (!rc && !(out = malloc(total)))
        rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of memory for %zu bytes of tensors", a->name, total);
    if (!rc) {
        for (int i = 0; i < 8; i++)
            out[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
        memcpy(out + 8, header, header_len);
        rc = copy_tensors(a, pr, e, n, out + 8 + header_len);
    }
    free(header);
    free(e);
    if (rc) {
        free(out);
        return rc;
    }
    return safetensors_open_memory_owned(out, total, a->name, st);
}


/* PyTorch's format before 1.6: pickles one after another (a magic number,
 * the protocol version, sys_info, the object, the storage keys), then each
 * storage as an 8-byte element count and its bytes, in the keys' order. */
static const uint8_t legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                       0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};

static int read_legacy(archive *a, const uint8_t *b, size_t len, safetensors_file **st)
{
    if (len < sizeof legacy_magic || memcmp(b, legacy_magic, sizeof legacy_magic))
        return albef_error(ALBEF_ERR_INVALID, "%s: a pickle without torch.save's magic number: not a checkpoint",
                           a->name);
    char stream[600];
    snprintf(stream, sizeof stream, "%s: legacy format", a->name);
    size_t pos = sizeof legacy_magic;
    pickle_result version, info, pr, keys;
    int rc = pickle_load(b + pos, len - pos, stream, &version);
    if (rc)
        return rc;
    pos += version.end;
    int ok = version.root->kind == PK_INT && version.root->i == 1001;
    pickle_free(&version);
    if (!ok)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "%s: legacy format of an unknown protocol version", a->name);
    rc = pickle_load(b + pos, len - pos, stream, &info);
    if (rc)
        return rc;
    pos += info.end;
    const pickle_value *little = pickle_dict_get(info.root, "little_endian");
    ok = !little || (little->kind == PK_BOOL && little->i);
    pickle_free(&info);
    if (!ok)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "%s: tensors stored big-endian", a->name);
    rc = pickle_load(b + pos, len - pos, stream, &pr);
    if (rc)
        return rc;
    pos += pr.end;
    rc = pickle_load(b + pos, len - pos, stream, &keys);
    if (rc) {
        pickle_free(&pr);
        return rc;
    }
    pos += keys.end;
    a->legacy_data = calloc(pr.n_storages + 1, sizeof *a->legacy_data);
    a->legacy_size = calloc(pr.n_storages + 1, sizeof *a->legacy_size);
    if (!a->legacy_data || !a->legacy_size)
        rc = albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", a->name);
    else if (keys.root->kind != PK_LIST)
        rc = albef_error(ALBEF_ERR_INVALID, "%s: legacy format: the storage keys are not a list", a->name);
    for (size_t k = 0; !rc && k < keys.root->n; k++) {
        const pickle_value *key = keys.root->items[k];
        size_t s = 0;
        while (key->kind == PK_STR && s < pr.n_storages && strcmp(pr.storages[s].key, key->s))
            s++;
        if (key->kind != PK_STR || s == pr.n_storages) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: legacy format: storage key %zu names no storage", a->name, k);
            break;
        }
        uint64_t numel = 0, bytes;
        if (len - pos < 8) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: legacy format: truncated at storage '%s'", a->name, key->s);
            break;
        }
        for (int i = 7; i >= 0; i--)
            numel = numel << 8 | b[pos + (size_t)i];
        pos += 8;
        if (__builtin_mul_overflow(numel, (uint64_t)dtype_size(pr.storages[s].dtype), &bytes) || bytes > len - pos) {
            rc = albef_error(ALBEF_ERR_INVALID, "%s: legacy format: storage '%s' of %" PRIu64
                             " elements runs past the end", a->name, key->s, numel);
            break;
        }
        a->legacy_data[s] = b + pos;
        a->legacy_size[s] = bytes;
        pos += (size_t)bytes;
    }
    rc = rc ? rc : state_dict_to_safetensors(a, &pr, st);
    free(a->legacy_data);
    free(a->legacy_size);
    pickle_free(&pr);
    pickle_free(&keys);
    return rc;
}

int pth_open_memory(const void *buf, size_t len, const char *name, safetensors_file **st)
{
    *st = NULL;
    const uint8_t *b = buf;
    archive a = {.name = name, .limit = (uint64_t)len * PTH_MAX_GROWTH + PTH_MAX_EXTRA};
    if (len >= 1 && b[0] == 0x80)
        return read_legacy(&a, b, len, st);
    if (len >= 262 && !memcmp(b + 257, "ustar", 5))
        return albef_error(ALBEF_ERR_UNSUPPORTED,
                           "%s: PyTorch's tar checkpoint format (before 0.4) is not read; re-save it with "
                           "PyTorch >= 1.6: torch.save(torch.load(IN), OUT)",
                           name);
    if (len < 4 || (memcmp(b, "PK\x03\x04", 4) && memcmp(b, "PK\x05\x06", 4)))
        return albef_error(ALBEF_ERR_INVALID, "%s: not a PyTorch checkpoint (no zip archive)", name);
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(buf, len, 0, &ze);
    if (!src)
        return zip_fail(&(archive){.name = name}, &ze, "cannot read the zip archive");
    zip_t *za = zip_open_from_source(src, ZIP_RDONLY, &ze);
    if (!za) {
        zip_source_free(src);
        return zip_fail(&(archive){.name = name}, &ze, "not a readable zip archive");
    }
    zip_error_fini(&ze);
    a.za = za;
    int rc = read_archive(&a, st);
    zip_discard(za);
    return rc;
}

int pth_open(const char *path, safetensors_file **st)
{
    *st = NULL;
    file_mapping m;
    int rc = file_map(path, &m);
    if (rc)
        return rc;
    rc = pth_open_memory(m.data, m.size, path, st);
    file_unmap(&m);
    return rc;
}

int weights_open(const char *path, safetensors_file **st)
{
    *st = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return safetensors_open(path, st); /* its message says why */
    unsigned char magic[9] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    /* safetensors: a u64 header length, then '{'; torch.save: a zip's local
     * header, or (legacy) a pickle's PROTO opcode. */
    int safetensors = got == 9 && magic[8] == '{';
    int zip = got >= 4 && !memcmp(magic, "PK\x03\x04", 4);
    if (!safetensors && (zip || (got >= 1 && magic[0] == 0x80)))
        return pth_open(path, st);
    return safetensors_open(path, st);
}
