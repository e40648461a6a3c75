#include "io/manifest.h"

#include "core/error.h"
#include "core/file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Texts and answers are numbered with uint32 (item i's texts are
 * text[text_first[i] .. text_first[i+1])), which keeps a 12M-item manifest's
 * index columns small; 4 billion texts is far beyond any ALBEF data set. */
#define MAX_TEXTS UINT32_MAX

struct id_slot {
    uint64_t hash;
    uint64_t key; /* offset into id_map.keys */
    uint32_t len;
    uint32_t value_plus_one; /* 0 marks an empty slot */
};

/* Distinct image ids -> dense index, only alive while loading. Open
 * addressing; the keys live in one buffer of their own. */
struct id_map {
    struct id_slot *slots;
    size_t cap, used;
    char *keys;
    size_t keys_len, keys_cap;
};

struct answer_entry {
    uint64_t text; /* arena offset */
    float weight;
};

struct manifest {
    enum manifest_kind kind;
    size_t count, cap; /* items, and the capacity of every per-item column */

    char *arena; /* every string, NUL-terminated */
    size_t arena_len, arena_cap;

    uint64_t *image;              /* (count) arena offsets; NULL for answer-list */
    uint64_t *image2;             /* (count) nlvr's images[1] */
    uint32_t *text_first;         /* (count + 1) */
    uint64_t *text;               /* (text_total) arena offsets */
    size_t text_total, text_cap;
    int64_t *value;               /* (count) image_idx, label, question_id or ref_id, by kind */
    uint8_t *dataset;             /* (count) enum manifest_dataset, vqa kinds */
    uint32_t *answer_first;       /* (count + 1) vqa-train */
    struct answer_entry *answer;  /* (answer_total) */
    size_t answer_total, answer_cap;

    size_t image_count;
    struct id_map ids;
};

/* One input being read: a file or a memory buffer. */
struct source {
    const char *name;
    const char *text;
    size_t len;
    size_t item; /* index of the element being read, for messages */
};

static const char *const kind_names[MANIFEST_KIND_COUNT] = {
    [MANIFEST_PRETRAIN] = "pretrain",
    [MANIFEST_RETRIEVAL_TRAIN] = "retrieval-train",
    [MANIFEST_RETRIEVAL_EVAL] = "retrieval-eval",
    [MANIFEST_VQA_TRAIN] = "vqa-train",
    [MANIFEST_VQA_TEST] = "vqa-test",
    [MANIFEST_ANSWER_LIST] = "answer-list",
    [MANIFEST_NLVR] = "nlvr",
    [MANIFEST_VE] = "ve",
    [MANIFEST_GROUNDING_TRAIN] = "grounding-train",
    [MANIFEST_GROUNDING_EVAL] = "grounding-eval",
};

const char *manifest_kind_name(enum manifest_kind kind)
{
    return (unsigned)kind < MANIFEST_KIND_COUNT ? kind_names[kind] : NULL;
}

int manifest_kind_from_name(const char *name, enum manifest_kind *kind)
{
    for (int k = 0; k < MANIFEST_KIND_COUNT; k++)
        if (name && strcmp(name, kind_names[k]) == 0) {
            *kind = (enum manifest_kind)k;
            return ALBEF_OK;
        }
    return albef_error(ALBEF_ERR_INVALID,
                       "unknown manifest kind '%s' (expected pretrain, retrieval-train, retrieval-eval, vqa-train, "
                       "vqa-test, answer-list, nlvr, ve, grounding-train or grounding-eval)",
                       name ? name : "(null)");
}

/* ---- storage ---------------------------------------------------------- */

static int grow_array(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return ALBEF_OK;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return albef_error(ALBEF_ERR_NOMEM, "manifest: out of memory growing a column to %zu entries", n);
    *p = q;
    *cap = n;
    return ALBEF_OK;
}

static int arena_reserve(manifest *m, size_t extra)
{
    if (m->arena_cap - m->arena_len >= extra)
        return ALBEF_OK;
    size_t n = m->arena_cap ? m->arena_cap : 4096;
    while (n - m->arena_len < extra)
        n *= 2;
    char *q = realloc(m->arena, n);
    if (!q)
        return albef_error(ALBEF_ERR_NOMEM, "manifest: out of memory growing the string arena to %zu bytes", n);
    m->arena = q;
    m->arena_cap = n;
    return ALBEF_OK;
}

/* Copies s (and an optional suffix) into the arena. */
static int arena_push(manifest *m, const char *s, const char *suffix, uint64_t *off)
{
    size_t n = strlen(s), ns = suffix ? strlen(suffix) : 0;
    int rc = arena_reserve(m, n + ns + 1);
    if (rc)
        return rc;
    *off = m->arena_len;
    memcpy(m->arena + m->arena_len, s, n);
    memcpy(m->arena + m->arena_len + n, suffix ? suffix : "", ns);
    m->arena[m->arena_len + n + ns] = '\0';
    m->arena_len += n + ns + 1;
    return ALBEF_OK;
}

static bool kind_has_image(enum manifest_kind k) { return k != MANIFEST_ANSWER_LIST; }
static bool kind_has_value(enum manifest_kind k)
{
    return k != MANIFEST_PRETRAIN && k != MANIFEST_RETRIEVAL_EVAL && k != MANIFEST_ANSWER_LIST;
}
static bool kind_has_dataset(enum manifest_kind k) { return k == MANIFEST_VQA_TRAIN || k == MANIFEST_VQA_TEST; }

/* Resizes one per-item column (absent columns stay NULL) to items + 1 entries. */
static int grow_column(void **column, size_t items, size_t elem, const char *name)
{
    if (!*column)
        return ALBEF_OK;
    void *q = realloc(*column, (items + 1) * elem);
    if (!q)
        return albef_error(ALBEF_ERR_NOMEM, "manifest: out of memory growing column '%s' to %zu items", name, items);
    *column = q;
    return ALBEF_OK;
}

/* Makes room for item m->count in every column the kind uses. */
static int reserve_item(manifest *m)
{
    if (m->count < m->cap)
        return ALBEF_OK;
    size_t cap = m->cap ? m->cap * 2 : 1024;
    int rc = grow_column((void **)&m->image, cap, sizeof *m->image, "image");
    if (!rc)
        rc = grow_column((void **)&m->image2, cap, sizeof *m->image2, "images[1]");
    if (!rc)
        rc = grow_column((void **)&m->text_first, cap, sizeof *m->text_first, "text_first");
    if (!rc)
        rc = grow_column((void **)&m->value, cap, sizeof *m->value, "value");
    if (!rc)
        rc = grow_column((void **)&m->dataset, cap, sizeof *m->dataset, "dataset");
    if (!rc)
        rc = grow_column((void **)&m->answer_first, cap, sizeof *m->answer_first, "answer_first");
    if (!rc)
        m->cap = cap;
    return rc;
}

static int push_text(manifest *m, const char *s)
{
    if (m->text_total >= MAX_TEXTS)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "manifest: more than %u texts", (unsigned)MAX_TEXTS);
    int rc = grow_array((void **)&m->text, &m->text_cap, m->text_total + 1, sizeof *m->text);
    if (!rc)
        rc = arena_push(m, s, NULL, &m->text[m->text_total]);
    if (!rc)
        m->text_total++;
    return rc;
}

static int push_answer(manifest *m, const char *s, float weight)
{
    if (m->answer_total >= MAX_TEXTS)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "manifest: more than %u answers", (unsigned)MAX_TEXTS);
    int rc = grow_array((void **)&m->answer, &m->answer_cap, m->answer_total + 1, sizeof *m->answer);
    if (!rc)
        rc = arena_push(m, s, NULL, &m->answer[m->answer_total].text);
    if (!rc)
        m->answer[m->answer_total++].weight = weight;
    return rc;
}

/* Closes item m->count: its texts and answers are those pushed since. */
static void commit_item(manifest *m)
{
    m->count++;
    m->text_first[m->count] = (uint32_t)m->text_total;
    if (m->answer_first)
        m->answer_first[m->count] = (uint32_t)m->answer_total;
}

static manifest *manifest_new(enum manifest_kind kind)
{
    manifest *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->kind = kind;
    size_t cap = 1024;
    bool ok = (m->text_first = calloc(cap + 1, sizeof *m->text_first)) != NULL;
    if (ok && kind_has_image(kind))
        ok = (m->image = malloc((cap + 1) * sizeof *m->image)) != NULL;
    if (ok && kind == MANIFEST_NLVR)
        ok = (m->image2 = malloc((cap + 1) * sizeof *m->image2)) != NULL;
    if (ok && kind_has_value(kind))
        ok = (m->value = malloc((cap + 1) * sizeof *m->value)) != NULL;
    if (ok && kind_has_dataset(kind))
        ok = (m->dataset = malloc((cap + 1) * sizeof *m->dataset)) != NULL;
    if (ok && kind == MANIFEST_VQA_TRAIN)
        ok = (m->answer_first = calloc(cap + 1, sizeof *m->answer_first)) != NULL;
    m->cap = cap;
    if (!ok) {
        manifest_free(m);
        return NULL;
    }
    return m;
}

static void id_map_free(struct id_map *map)
{
    free(map->slots);
    free(map->keys);
    memset(map, 0, sizeof *map);
}

void manifest_free(manifest *m)
{
    if (!m)
        return;
    free(m->arena);
    free(m->image);
    free(m->image2);
    free(m->text_first);
    free(m->text);
    free(m->value);
    free(m->dataset);
    free(m->answer_first);
    free(m->answer);
    id_map_free(&m->ids);
    free(m);
}

/* Gives back what the doubling over-allocated. A failed shrink keeps the
 * larger block, which is still correct. */
static void shrink(void **p, size_t n, size_t elem)
{
    if (*p && n) {
        void *q = realloc(*p, n * elem);
        if (q)
            *p = q;
    }
}

static void manifest_shrink(manifest *m)
{
    size_t n = m->count + 1;
    shrink((void **)&m->arena, m->arena_len, 1);
    m->arena_cap = m->arena_len ? m->arena_len : m->arena_cap;
    shrink((void **)&m->image, n, sizeof *m->image);
    shrink((void **)&m->image2, n, sizeof *m->image2);
    shrink((void **)&m->text_first, n, sizeof *m->text_first);
    shrink((void **)&m->value, n, sizeof *m->value);
    shrink((void **)&m->dataset, n, sizeof *m->dataset);
    shrink((void **)&m->answer_first, n, sizeof *m->answer_first);
    m->cap = m->count;
    shrink((void **)&m->text, m->text_total, sizeof *m->text);
    m->text_cap = m->text_total ? m->text_total : m->text_cap;
    shrink((void **)&m->answer, m->answer_total, sizeof *m->answer);
    m->answer_cap = m->answer_total ? m->answer_total : m->answer_cap;
}

/* ---- dense image indices ----------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* The dense index of key (0.. in order of first appearance). */
static int id_map_index(struct id_map *map, const char *key, size_t len, size_t *index)
{
    if (len > UINT32_MAX)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "image id of %zu bytes", len);
    if (2 * (map->used + 1) > map->cap) {
        size_t cap = map->cap ? map->cap * 2 : 1024;
        struct id_slot *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return albef_error(ALBEF_ERR_NOMEM, "out of memory for %zu image ids", map->used + 1);
        for (size_t i = 0; i < map->cap; i++) {
            struct id_slot s = map->slots[i];
            if (!s.value_plus_one)
                continue;
            size_t j = s.hash & (cap - 1);
            while (slots[j].value_plus_one)
                j = (j + 1) & (cap - 1);
            slots[j] = s;
        }
        free(map->slots);
        map->slots = slots;
        map->cap = cap;
    }
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (map->cap - 1);
    for (; map->slots[j].value_plus_one; j = (j + 1) & (map->cap - 1)) {
        const struct id_slot *s = &map->slots[j];
        if (s->hash == h && s->len == len && memcmp(map->keys + s->key, key, len) == 0) {
            *index = s->value_plus_one - 1;
            return ALBEF_OK;
        }
    }
    int rc = grow_array((void **)&map->keys, &map->keys_cap, map->keys_len + len + 1, 1);
    if (rc)
        return rc;
    memcpy(map->keys + map->keys_len, key, len);
    map->slots[j] = (struct id_slot){h, map->keys_len, (uint32_t)len, (uint32_t)(map->used + 1)};
    map->keys_len += len;
    *index = map->used++;
    return ALBEF_OK;
}

/* ---- reading items ----------------------------------------------------- */

static void line_column(const struct source *s, const char *at, size_t *line, size_t *col)
{
    size_t pos = (size_t)(at - s->text), ln = 1, start = 0;
    for (size_t i = 0; i < pos && i < s->len; i++)
        if (s->text[i] == '\n') {
            ln++;
            start = i + 1;
        }
    *line = ln;
    *col = pos - start + 1;
}

static int syntax_error(const struct source *s, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int syntax_error(const struct source *s, const char *at, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    size_t line, col;
    line_column(s, at, &line, &col);
    return albef_error(ALBEF_ERR_INVALID, "%s:%zu:%zu: invalid JSON: %s", s->name, line, col, what);
}

static int item_error(const struct source *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int item_error(const struct source *s, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return albef_error(ALBEF_ERR_INVALID, "%s: item %zu: %s", s->name, s->item, what);
}

/* A short rendering of a JSON value for "got ..." in messages. */
static const char *describe(const cJSON *v, char *buf, size_t cap)
{
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        size_t n = strlen(s), shown = n > 40 ? 40 : n;
        snprintf(buf, cap, "\"%.*s%s\"", (int)shown, s, n > shown ? "..." : "");
        for (char *c = buf; *c; c++)
            if ((unsigned char)*c < 0x20)
                *c = '?';
    } else if (cJSON_IsNumber(v))
        snprintf(buf, cap, "%.17g", v->valuedouble);
    else if (cJSON_IsTrue(v))
        snprintf(buf, cap, "true");
    else if (cJSON_IsFalse(v))
        snprintf(buf, cap, "false");
    else if (cJSON_IsNull(v))
        snprintf(buf, cap, "null");
    else if (cJSON_IsArray(v))
        snprintf(buf, cap, "a list of %d", cJSON_GetArraySize(v));
    else
        snprintf(buf, cap, "an object");
    return buf;
}

#define GOT(v) describe((v), (char[64]){0}, 64)

/* The last member named key, as Python's json keeps the last duplicate. */
static const cJSON *field(const cJSON *obj, const char *key)
{
    const cJSON *found = NULL;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0)
            found = c;
    return found;
}

static int required(const struct source *s, const cJSON *obj, const char *key, const cJSON **out)
{
    *out = field(obj, key);
    return *out ? ALBEF_OK : item_error(s, "missing '%s'", key);
}

static int string_field(const struct source *s, const cJSON *obj, const char *key, const char **out)
{
    const cJSON *v;
    int rc = required(s, obj, key, &v);
    if (rc)
        return rc;
    if (!cJSON_IsString(v))
        return item_error(s, "'%s' must be a string, got %s", key, GOT(v));
    *out = v->valuestring;
    return ALBEF_OK;
}

/* Checks that v is a non-empty list of strings; `need` names what it must be. */
static int check_string_list(const struct source *s, const cJSON *v, const char *key, const char *need)
{
    if (!cJSON_IsArray(v))
        return item_error(s, "'%s' must be %s, got %s", key, need, GOT(v));
    if (!v->child)
        return item_error(s, "'%s' must be %s, got an empty list", key, need);
    int j = 0;
    for (const cJSON *c = v->child; c; c = c->next, j++)
        if (!cJSON_IsString(c))
            return item_error(s, "'%s'[%d] must be a string, got %s", key, j, GOT(c));
    return ALBEF_OK;
}

static int push_string_list(manifest *m, const cJSON *v)
{
    for (const cJSON *c = v->child; c; c = c->next) {
        int rc = push_text(m, c->valuestring);
        if (rc)
            return rc;
    }
    return ALBEF_OK;
}

/* A non-negative integer (question_id, ref_id); -1 when absent and optional. */
static int id_field(const struct source *s, const cJSON *obj, const char *key, bool need, int64_t *out)
{
    const cJSON *v = field(obj, key);
    *out = -1;
    if (!v)
        return need ? item_error(s, "missing '%s'", key) : ALBEF_OK;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d < 9.2e18 && d == floor(d)))
        return item_error(s, "'%s' must be a non-negative integer, got %s", key, GOT(v));
    *out = (int64_t)d;
    return ALBEF_OK;
}

static int image_field(manifest *m, const struct source *s, const cJSON *obj, const char *suffix)
{
    const char *path;
    int rc = string_field(s, obj, "image", &path);
    return rc ? rc : arena_push(m, path, suffix, &m->image[m->count]);
}

static int dense_index(manifest *m, const char *key, size_t len, int64_t *out)
{
    size_t idx;
    int rc = id_map_index(&m->ids, key, len, &idx);
    if (rc)
        return rc;
    if (idx + 1 > m->image_count)
        m->image_count = idx + 1;
    *out = (int64_t)idx;
    return ALBEF_OK;
}

static int read_pretrain(manifest *m, const struct source *s, const cJSON *item)
{
    const cJSON *caption;
    int rc = image_field(m, s, item, NULL);
    if (!rc)
        rc = required(s, item, "caption", &caption);
    if (rc)
        return rc;
    if (cJSON_IsString(caption))
        return push_text(m, caption->valuestring);
    if (!cJSON_IsArray(caption))
        return item_error(s, "'caption' must be a string or a list of strings, got %s", GOT(caption));
    rc = check_string_list(s, caption, "caption", "a string or a non-empty list of strings");
    return rc ? rc : push_string_list(m, caption);
}

/* image_id keys follow Python's dict: "1" and 1 differ, 1 and 1.0 do not. */
static int image_id_index(manifest *m, const struct source *s, const cJSON *id, int64_t *out)
{
    char small[64];
    if (cJSON_IsNumber(id)) {
        double d = id->valuedouble;
        int n = d == floor(d) && fabs(d) < 9.2e18 ? snprintf(small, sizeof small, "n%lld", (long long)d)
                                                  : snprintf(small, sizeof small, "n%.17g", d);
        return dense_index(m, small, (size_t)n, out);
    }
    if (!cJSON_IsString(id))
        return item_error(s, "'image_id' must be a string or a number, got %s", GOT(id));
    size_t n = strlen(id->valuestring);
    char *key = n + 1 <= sizeof small ? small : malloc(n + 1);
    if (!key)
        return albef_error(ALBEF_ERR_NOMEM, "%s: item %zu: out of memory for 'image_id'", s->name, s->item);
    key[0] = 's';
    memcpy(key + 1, id->valuestring, n);
    int rc = dense_index(m, key, n + 1, out);
    if (key != small)
        free(key);
    return rc;
}

static int read_retrieval_train(manifest *m, const struct source *s, const cJSON *item)
{
    const char *caption;
    const cJSON *id;
    int rc = image_field(m, s, item, NULL);
    if (!rc)
        rc = string_field(s, item, "caption", &caption);
    if (!rc)
        rc = required(s, item, "image_id", &id);
    if (!rc)
        rc = image_id_index(m, s, id, &m->value[m->count]);
    return rc ? rc : push_text(m, caption);
}

static int read_retrieval_eval(manifest *m, const struct source *s, const cJSON *item)
{
    const cJSON *caption;
    int rc = image_field(m, s, item, NULL);
    if (!rc)
        rc = required(s, item, "caption", &caption);
    if (!rc)
        rc = check_string_list(s, caption, "caption", "a list of strings (one item per image)");
    return rc ? rc : push_string_list(m, caption);
}

static int dataset_field(const struct source *s, const cJSON *item, bool need, uint8_t *out)
{
    const cJSON *v = field(item, "dataset");
    *out = MANIFEST_DATASET_VQA;
    if (!v)
        return need ? item_error(s, "missing 'dataset' (\"vqa\" or \"vg\")") : ALBEF_OK;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "vqa") == 0)
        return ALBEF_OK;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "vg") == 0) {
        *out = MANIFEST_DATASET_VG;
        return ALBEF_OK;
    }
    return item_error(s, "'dataset' must be \"vqa\" or \"vg\", got %s", GOT(v));
}

struct answer_ref {
    const char *text;
    uint32_t index;
};

static int compare_answers(const void *a, const void *b)
{
    const struct answer_ref *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* ALBEF's answer weights: each unique answer, in order of first appearance,
 * weighs count / len(answers). Sorting finds the duplicates in n log n, so a
 * question with a huge answer list cannot stall loading. */
static int push_weighted_answers(manifest *m, const cJSON *answers)
{
    size_t n = (size_t)cJSON_GetArraySize(answers);
    struct answer_ref *refs = malloc(n * sizeof *refs);
    uint32_t *count = calloc(n, sizeof *count); /* at an answer's first index; 0 elsewhere */
    int rc = ALBEF_OK;
    if (!refs || !count)
        rc = albef_error(ALBEF_ERR_NOMEM, "out of memory for %zu answers", n);
    size_t j = 0;
    for (const cJSON *c = answers->child; !rc && c; c = c->next, j++)
        refs[j] = (struct answer_ref){c->valuestring, (uint32_t)j};
    if (!rc) {
        qsort(refs, n, sizeof *refs, compare_answers);
        for (size_t a = 0, b; a < n; a = b) {
            for (b = a + 1; b < n && strcmp(refs[a].text, refs[b].text) == 0; b++)
                ;
            count[refs[a].index] = (uint32_t)(b - a);
        }
        j = 0;
        for (const cJSON *c = answers->child; !rc && c; c = c->next, j++)
            if (count[j])
                rc = push_answer(m, c->valuestring, (float)((double)count[j] / (double)n));
    }
    free(refs);
    free(count);
    return rc;
}

static int read_vqa_train(manifest *m, const struct source *s, const cJSON *item)
{
    const char *question;
    const cJSON *answer;
    int rc = image_field(m, s, item, NULL);
    if (!rc)
        rc = string_field(s, item, "question", &question);
    if (!rc)
        rc = dataset_field(s, item, true, &m->dataset[m->count]);
    if (!rc)
        rc = id_field(s, item, "question_id", false, &m->value[m->count]);
    if (!rc)
        rc = required(s, item, "answer", &answer);
    if (rc)
        return rc;
    if (m->dataset[m->count] == MANIFEST_DATASET_VG) {
        if (!cJSON_IsString(answer))
            return item_error(s, "'answer' must be a string for a \"vg\" item, got %s", GOT(answer));
        rc = push_answer(m, answer->valuestring, 0.5f);
    } else {
        rc = check_string_list(s, answer, "answer", "a non-empty list of strings for a \"vqa\" item");
        if (!rc)
            rc = push_weighted_answers(m, answer);
    }
    return rc ? rc : push_text(m, question);
}

static int read_vqa_test(manifest *m, const struct source *s, const cJSON *item)
{
    const char *question;
    int rc = image_field(m, s, item, NULL);
    if (!rc)
        rc = string_field(s, item, "question", &question);
    if (!rc)
        rc = id_field(s, item, "question_id", true, &m->value[m->count]);
    if (!rc)
        rc = dataset_field(s, item, false, &m->dataset[m->count]);
    return rc ? rc : push_text(m, question);
}

static int read_answer_list(manifest *m, const struct source *s, const cJSON *item)
{
    if (!cJSON_IsString(item))
        return item_error(s, "must be a string (an answer), got %s", GOT(item));
    return push_text(m, item->valuestring);
}

static int read_nlvr(manifest *m, const struct source *s, const cJSON *item)
{
    const cJSON *images, *label;
    const char *sentence;
    int rc = required(s, item, "images", &images);
    if (rc)
        return rc;
    if (!cJSON_IsArray(images) || cJSON_GetArraySize(images) != 2)
        return item_error(s, "'images' must be a list of 2 image paths, got %s", GOT(images));
    rc = check_string_list(s, images, "images", "a list of 2 image paths");
    if (!rc)
        rc = string_field(s, item, "sentence", &sentence);
    if (!rc)
        rc = required(s, item, "label", &label);
    if (rc)
        return rc;
    /* ALBEF maps anything but "True" to 0; a typo there would silently flip
     * labels, so only the two strings the data release uses are accepted. */
    if (cJSON_IsString(label) && strcmp(label->valuestring, "True") == 0)
        m->value[m->count] = 1;
    else if (cJSON_IsString(label) && strcmp(label->valuestring, "False") == 0)
        m->value[m->count] = 0;
    else
        return item_error(s, "'label' must be \"True\" or \"False\", got %s", GOT(label));
    rc = arena_push(m, images->child->valuestring, NULL, &m->image[m->count]);
    if (!rc)
        rc = arena_push(m, images->child->next->valuestring, NULL, &m->image2[m->count]);
    return rc ? rc : push_text(m, sentence);
}

static int read_ve(manifest *m, const struct source *s, const cJSON *item)
{
    static const char *const labels[] = {"contradiction", "neutral", "entailment"}; /* 0, 1, 2 */
    const cJSON *label;
    const char *sentence;
    int rc = image_field(m, s, item, ".jpg");
    if (!rc)
        rc = string_field(s, item, "sentence", &sentence);
    if (!rc)
        rc = required(s, item, "label", &label);
    if (rc)
        return rc;
    m->value[m->count] = -1;
    for (int k = 0; k < 3; k++)
        if (cJSON_IsString(label) && strcmp(label->valuestring, labels[k]) == 0)
            m->value[m->count] = k;
    if (m->value[m->count] < 0)
        return item_error(s, "'label' must be \"entailment\", \"neutral\" or \"contradiction\", got %s",
                          GOT(label));
    return push_text(m, sentence);
}

static int read_grounding(manifest *m, const struct source *s, const cJSON *item)
{
    const char *image, *text;
    int rc = string_field(s, item, "image", &image);
    if (!rc)
        rc = string_field(s, item, "text", &text);
    if (rc)
        return rc;
    if (m->kind == MANIFEST_GROUNDING_TRAIN) {
        /* ALBEF keys images by ann['image'].split('/')[-1] */
        const char *base = strrchr(image, '/');
        base = base ? base + 1 : image;
        rc = dense_index(m, base, strlen(base), &m->value[m->count]);
    } else
        rc = id_field(s, item, "ref_id", true, &m->value[m->count]);
    if (!rc)
        rc = arena_push(m, image, NULL, &m->image[m->count]);
    return rc ? rc : push_text(m, text);
}

typedef int (*item_reader)(manifest *m, const struct source *s, const cJSON *item);

static item_reader reader_for(enum manifest_kind kind)
{
    switch (kind) {
    case MANIFEST_PRETRAIN: return read_pretrain;
    case MANIFEST_RETRIEVAL_TRAIN: return read_retrieval_train;
    case MANIFEST_RETRIEVAL_EVAL: return read_retrieval_eval;
    case MANIFEST_VQA_TRAIN: return read_vqa_train;
    case MANIFEST_VQA_TEST: return read_vqa_test;
    case MANIFEST_ANSWER_LIST: return read_answer_list;
    case MANIFEST_NLVR: return read_nlvr;
    case MANIFEST_VE: return read_ve;
    case MANIFEST_GROUNDING_TRAIN:
    case MANIFEST_GROUNDING_EVAL: return read_grounding;
    default: return NULL;
    }
}

/* ---- walking the top-level list ----------------------------------------- */

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && is_space(*p))
        p++;
    return p;
}

/* p is at an opening quote; returns the byte after the closing one, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Finds where the JSON value starting at p ends, by brackets and strings
 * alone; cJSON then checks it. NULL when it runs past the end. */
static const char *value_end(const char *p, const char *end)
{
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') {
        while (p < end && !is_space(*p) && *p != ',' && *p != ']' && *p != '}')
            p++;
        return p;
    }
    size_t depth = 0;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            p = skip_string(p, end);
            if (!p)
                return NULL;
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

static const char *top_level_type(char c)
{
    if (c == '{')
        return "an object";
    if (c == '"')
        return "a string";
    if (c == '-' || (c >= '0' && c <= '9'))
        return "a number";
    if (c == 't' || c == 'f')
        return "a boolean";
    if (c == 'n')
        return "null";
    return NULL;
}

/* Reads every element of the top-level list, one cJSON parse each, so the
 * tree of a multi-gigabyte file never exists at once. */
static int read_source(manifest *m, struct source *s)
{
    const char *p = s->text, *end = s->text + s->len;
    if (s->len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    p = skip_space(p, end);
    if (p == end)
        return albef_error(ALBEF_ERR_INVALID, "%s: empty file, expected a JSON list", s->name);
    if (*p != '[') {
        const char *type = top_level_type(*p);
        if (type)
            return albef_error(ALBEF_ERR_INVALID, "%s: top level must be a list of items, got %s", s->name, type);
        return syntax_error(s, p, "expected a list");
    }
    item_reader read_item = reader_for(m->kind);
    p = skip_space(p + 1, end);
    if (p < end && *p == ']')
        p++;
    else
        for (s->item = 0;; s->item++) {
            if (p == end)
                return syntax_error(s, p, "the list is not closed");
            const char *q = value_end(p, end);
            if (!q)
                return syntax_error(s, p, "item %zu is not closed before the end of the file", s->item);
            if (q == p)
                return syntax_error(s, p, "expected item %zu", s->item);
            const char *parse_end = NULL;
            cJSON *v = cJSON_ParseWithLengthOpts(p, (size_t)(q - p), &parse_end, 0);
            if (!v || parse_end != q) {
                cJSON_Delete(v);
                return syntax_error(s, parse_end ? parse_end : p, "in item %zu", s->item);
            }
            int rc = reserve_item(m);
            if (!rc && m->kind != MANIFEST_ANSWER_LIST && !cJSON_IsObject(v))
                rc = item_error(s, "must be an object, got %s", GOT(v));
            if (!rc)
                rc = read_item(m, s, v);
            cJSON_Delete(v);
            if (rc)
                return rc;
            commit_item(m);
            p = skip_space(q, end);
            if (p == end)
                return syntax_error(s, p, "the list is not closed");
            if (*p == ']') {
                p++;
                break;
            }
            if (*p != ',')
                return syntax_error(s, p, "expected ',' or ']' after item %zu", s->item);
            p = skip_space(p + 1, end);
        }
    p = skip_space(p, end);
    if (p != end)
        return syntax_error(s, p, "unexpected text after the list");
    return ALBEF_OK;
}

static int check_kind(enum manifest_kind kind)
{
    if ((unsigned)kind >= MANIFEST_KIND_COUNT)
        return albef_error(ALBEF_ERR_INVALID, "manifest kind %d is out of range (0..%d)", (int)kind,
                           MANIFEST_KIND_COUNT - 1);
    return ALBEF_OK;
}

static int finish(manifest *m, int rc, manifest **out)
{
    if (rc) {
        manifest_free(m);
        return rc;
    }
    id_map_free(&m->ids);
    manifest_shrink(m);
    *out = m;
    return ALBEF_OK;
}

int manifest_parse(manifest **out, enum manifest_kind kind, const char *json, size_t len, const char *name)
{
    *out = NULL;
    name = name ? name : "(memory)";
    int rc = check_kind(kind);
    if (rc)
        return rc;
    manifest *m = manifest_new(kind);
    if (!m)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", name);
    struct source s = {name, json, json ? len : 0, 0};
    /* the strings never take more room than their JSON text, so one
     * reservation usually holds them all */
    rc = arena_reserve(m, s.len + 1);
    if (!rc)
        rc = read_source(m, &s);
    return finish(m, rc, out);
}

int manifest_load(manifest **out, enum manifest_kind kind, const char *const *paths, size_t n_paths)
{
    *out = NULL;
    int rc = check_kind(kind);
    if (rc)
        return rc;
    if (n_paths == 0)
        return albef_error(ALBEF_ERR_INVALID, "%s manifest: no files given", kind_names[kind]);
    manifest *m = manifest_new(kind);
    if (!m)
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", paths[0]);
    for (size_t f = 0; !rc && f < n_paths; f++) {
        file_mapping map;
        rc = file_map(paths[f], &map);
        if (rc)
            break;
        struct source s = {paths[f], (const char *)map.data, map.size, 0};
        rc = arena_reserve(m, s.len + 1);
        if (!rc)
            rc = read_source(m, &s);
        file_unmap(&map);
    }
    return finish(m, rc, out);
}

/* ---- accessors ----------------------------------------------------------- */

enum manifest_kind manifest_get_kind(const manifest *m) { return m->kind; }
size_t manifest_count(const manifest *m) { return m->count; }
size_t manifest_text_total(const manifest *m) { return m->text_total; }
size_t manifest_image_count(const manifest *m) { return m->image_count; }

size_t manifest_bytes(const manifest *m)
{
    size_t n = m->count + 1, bytes = m->arena_cap + n * sizeof *m->text_first;
    bytes += m->image ? n * sizeof *m->image : 0;
    bytes += m->image2 ? n * sizeof *m->image2 : 0;
    bytes += m->value ? n * sizeof *m->value : 0;
    bytes += m->dataset ? n * sizeof *m->dataset : 0;
    bytes += m->answer_first ? n * sizeof *m->answer_first : 0;
    bytes += m->text_cap * sizeof *m->text;
    bytes += m->answer_cap * sizeof *m->answer;
    return bytes;
}

const char *manifest_image(const manifest *m, size_t i)
{
    return m->image && i < m->count ? m->arena + m->image[i] : NULL;
}

const char *manifest_second_image(const manifest *m, size_t i)
{
    return m->image2 && i < m->count ? m->arena + m->image2[i] : NULL;
}

size_t manifest_text_count(const manifest *m, size_t i)
{
    return i < m->count ? m->text_first[i + 1] - m->text_first[i] : 0;
}

const char *manifest_text(const manifest *m, size_t i, size_t j)
{
    return j < manifest_text_count(m, i) ? m->arena + m->text[m->text_first[i] + j] : NULL;
}

size_t manifest_text_first(const manifest *m, size_t i) { return i < m->count ? m->text_first[i] : 0; }

const char *manifest_text_by_id(const manifest *m, size_t t)
{
    return t < m->text_total ? m->arena + m->text[t] : NULL;
}

size_t manifest_text_item(const manifest *m, size_t t)
{
    if (t >= m->text_total)
        return SIZE_MAX;
    /* the last item whose first text is <= t; every item owns at least one */
    size_t lo = 0, hi = m->count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->text_first[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int64_t manifest_image_idx(const manifest *m, size_t i)
{
    bool dense = m->kind == MANIFEST_RETRIEVAL_TRAIN || m->kind == MANIFEST_GROUNDING_TRAIN;
    return dense && i < m->count ? m->value[i] : -1;
}

int manifest_label(const manifest *m, size_t i)
{
    bool labelled = m->kind == MANIFEST_NLVR || m->kind == MANIFEST_VE;
    return labelled && i < m->count ? (int)m->value[i] : -1;
}

int64_t manifest_question_id(const manifest *m, size_t i)
{
    return kind_has_dataset(m->kind) && i < m->count ? m->value[i] : -1;
}

int64_t manifest_ref_id(const manifest *m, size_t i)
{
    return m->kind == MANIFEST_GROUNDING_EVAL && i < m->count ? m->value[i] : -1;
}

enum manifest_dataset manifest_dataset(const manifest *m, size_t i)
{
    return m->dataset && i < m->count ? (enum manifest_dataset)m->dataset[i] : MANIFEST_DATASET_NONE;
}

size_t manifest_answer_count(const manifest *m, size_t i)
{
    return m->answer_first && i < m->count ? m->answer_first[i + 1] - m->answer_first[i] : 0;
}

const char *manifest_answer(const manifest *m, size_t i, size_t j)
{
    return j < manifest_answer_count(m, i) ? m->arena + m->answer[m->answer_first[i] + j].text : NULL;
}

float manifest_answer_weight(const manifest *m, size_t i, size_t j)
{
    return j < manifest_answer_count(m, i) ? m->answer[m->answer_first[i] + j].weight : 0.0f;
}

int manifest_join_path(char *buf, size_t cap, const char *root, const char *path)
{
    bool keep = !root || !root[0] || path[0] == '/';
    size_t nr = keep ? 0 : strlen(root), np = strlen(path);
    bool slash = !keep && root[nr - 1] != '/';
    if (nr + slash + np + 1 > cap)
        return albef_error(ALBEF_ERR_INVALID, "image path '%s%s%s' is %zu bytes, more than the %zu allowed",
                           keep ? "" : root, slash ? "/" : "", path, nr + slash + np, cap ? cap - 1 : 0);
    memcpy(buf, root ? root : "", nr);
    if (slash)
        buf[nr] = '/';
    memcpy(buf + nr + slash, path, np + 1);
    return ALBEF_OK;
}
