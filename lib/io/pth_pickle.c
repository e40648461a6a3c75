#include "io/pth_pickle.h"

#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Opcodes (Python's Lib/pickletools.py documents each). */
enum {
    OP_MARK = '(',
    OP_STOP = '.',
    OP_POP = '0',
    OP_POP_MARK = '1',
    OP_DUP = '2',
    OP_BINFLOAT = 'G',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_BININT2 = 'M',
    OP_NONE = 'N',
    OP_BINPERSID = 'Q',
    OP_REDUCE = 'R',
    OP_BINUNICODE = 'X',
    OP_APPEND = 'a',
    OP_BUILD = 'b',
    OP_GLOBAL = 'c',
    OP_APPENDS = 'e',
    OP_BINGET = 'h',
    OP_LONG_BINGET = 'j',
    OP_EMPTY_LIST = ']',
    OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's',
    OP_TUPLE = 't',
    OP_SETITEMS = 'u',
    OP_EMPTY_DICT = '}',
    OP_EMPTY_TUPLE = ')',
    OP_SHORT_BINBYTES = 'C',
    OP_BINBYTES = 'B',
    OP_PROTO = 0x80,
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_LONG1 = 0x8a,
    OP_LONG4 = 0x8b,
    OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d,
    OP_BINBYTES8 = 0x8e,
    OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
};

static const char *op_name(int op)
{
    switch (op) {
    case OP_MARK: return "MARK";
    case OP_STOP: return "STOP";
    case OP_POP: return "POP";
    case OP_POP_MARK: return "POP_MARK";
    case OP_DUP: return "DUP";
    case OP_BINFLOAT: return "BINFLOAT";
    case OP_BININT: return "BININT";
    case OP_BININT1: return "BININT1";
    case OP_BININT2: return "BININT2";
    case OP_NONE: return "NONE";
    case OP_BINPERSID: return "BINPERSID";
    case OP_REDUCE: return "REDUCE";
    case OP_BINUNICODE: return "BINUNICODE";
    case OP_APPEND: return "APPEND";
    case OP_BUILD: return "BUILD";
    case OP_GLOBAL: return "GLOBAL";
    case OP_APPENDS: return "APPENDS";
    case OP_BINGET: return "BINGET";
    case OP_LONG_BINGET: return "LONG_BINGET";
    case OP_EMPTY_LIST: return "EMPTY_LIST";
    case OP_BINPUT: return "BINPUT";
    case OP_LONG_BINPUT: return "LONG_BINPUT";
    case OP_SETITEM: return "SETITEM";
    case OP_TUPLE: return "TUPLE";
    case OP_SETITEMS: return "SETITEMS";
    case OP_EMPTY_DICT: return "EMPTY_DICT";
    case OP_EMPTY_TUPLE: return "EMPTY_TUPLE";
    case OP_SHORT_BINBYTES: return "SHORT_BINBYTES";
    case OP_BINBYTES: return "BINBYTES";
    case OP_PROTO: return "PROTO";
    case OP_TUPLE1: return "TUPLE1";
    case OP_TUPLE2: return "TUPLE2";
    case OP_TUPLE3: return "TUPLE3";
    case OP_NEWTRUE: return "NEWTRUE";
    case OP_NEWFALSE: return "NEWFALSE";
    case OP_LONG1: return "LONG1";
    case OP_LONG4: return "LONG4";
    case OP_SHORT_BINUNICODE: return "SHORT_BINUNICODE";
    case OP_BINUNICODE8: return "BINUNICODE8";
    case OP_BINBYTES8: return "BINBYTES8";
    case OP_STACK_GLOBAL: return "STACK_GLOBAL";
    case OP_MEMOIZE: return "MEMOIZE";
    case OP_FRAME: return "FRAME";
    /* seen in pickles we refuse; named so the message says what was found */
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 'P': return "PERSID";
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'S': return "STRING";
    case 'V': return "UNICODE";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    default: return NULL;
    }
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    const char *name;
    pickle_result *r;
    pickle_value **stack;
    size_t sp, stack_cap;
    size_t *marks; /* stack heights at each open MARK */
    size_t n_marks, marks_cap;
    pickle_value **memo;
    size_t memo_cap, n_memo; /* slots, and how many are filled */
    size_t op_pos;
    int op;
} machine;

__attribute__((format(printf, 3, 4))) static int fail(const machine *m, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *opn = op_name(m->op);
    if (opn)
        return albef_error(code, "%s: byte %zu (%s): %s", m->name, m->op_pos, opn, msg);
    return albef_error(code, "%s: byte %zu (opcode 0x%02x): %s", m->name, m->op_pos, (unsigned)m->op, msg);
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *nb = realloc(*buf, n * elem);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = n;
    return 0;
}

static pickle_value *new_value(machine *m, enum pickle_kind kind)
{
    pickle_result *r = m->r;
    if (grow((void **)&r->all, &r->cap_all, r->n_all + 1, sizeof *r->all))
        return NULL;
    pickle_value *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->kind = kind;
    r->all[r->n_all++] = v;
    return v;
}

static int oom(const machine *m) { return fail(m, ALBEF_ERR_NOMEM, "out of memory"); }

static int push(machine *m, pickle_value *v)
{
    if (!v || grow((void **)&m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack))
        return oom(m);
    m->stack[m->sp++] = v;
    return ALBEF_OK;
}

/* The bottom of the part of the stack above the innermost MARK: values
 * below it belong to an enclosing construct and may not be popped. */
static size_t floor_of(const machine *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static int pop(machine *m, pickle_value **v)
{
    if (m->sp <= floor_of(m))
        return fail(m, ALBEF_ERR_INVALID, "stack underflow");
    *v = m->stack[--m->sp];
    return ALBEF_OK;
}

static int top(machine *m, pickle_value **v)
{
    if (m->sp <= floor_of(m))
        return fail(m, ALBEF_ERR_INVALID, "stack underflow");
    *v = m->stack[m->sp - 1];
    return ALBEF_OK;
}

/* Closes the innermost MARK: the values above it are stack[*base .. sp). */
static int pop_mark(machine *m, size_t *base)
{
    if (!m->n_marks)
        return fail(m, ALBEF_ERR_INVALID, "no MARK to close");
    *base = m->marks[--m->n_marks];
    return ALBEF_OK;
}

/* The value just below a closed MARK at `base` (the dict of SETITEMS, the
 * list of APPENDS). */
static int below_mark(machine *m, size_t base, pickle_value **v)
{
    if (base <= floor_of(m))
        return fail(m, ALBEF_ERR_INVALID, "stack underflow");
    *v = m->stack[base - 1];
    return ALBEF_OK;
}

static int need(const machine *m, size_t n)
{
    if (m->len - m->pos < n)
        return fail(m, ALBEF_ERR_INVALID, "truncated: %zu byte(s) needed, %zu left", n, m->len - m->pos);
    return ALBEF_OK;
}

static uint64_t read_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int append_item(machine *m, pickle_value *container, pickle_value *item)
{
    if (grow((void **)&container->items, &container->cap, container->n + 1, sizeof *container->items))
        return oom(m);
    container->items[container->n++] = item;
    return ALBEF_OK;
}

static int push_int(machine *m, int64_t i)
{
    pickle_value *v = new_value(m, PK_INT);
    if (v)
        v->i = i;
    return push(m, v);
}

/* A string or bytes value of n bytes at the cursor. */
static int push_text(machine *m, enum pickle_kind kind, uint64_t n)
{
    if (n > m->len - m->pos)
        return fail(m, ALBEF_ERR_INVALID, "truncated: a %llu-byte string, %zu bytes left", (unsigned long long)n,
                    m->len - m->pos);
    const uint8_t *s = m->p + m->pos;
    if (kind == PK_STR) {
        for (size_t k = 0; k < n;) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t step = utf8proc_iterate(s + k, n - k > 4 ? 4 : (utf8proc_ssize_t)(n - k), &cp);
            if (step <= 0)
                return fail(m, ALBEF_ERR_INVALID, "string is not valid UTF-8 (at its byte %zu)", k);
            k += (size_t)step;
        }
    }
    pickle_value *v = new_value(m, kind);
    char *copy = v ? malloc((size_t)n + 1) : NULL;
    if (!copy)
        return oom(m);
    memcpy(copy, s, (size_t)n);
    copy[n] = '\0';
    v->s = copy;
    v->len = (size_t)n;
    m->pos += (size_t)n;
    return push(m, v);
}

/* Two's complement little-endian integer of n bytes (LONG1 / LONG4). */
static int push_long(machine *m, uint64_t n)
{
    if (n > m->len - m->pos)
        return fail(m, ALBEF_ERR_INVALID, "truncated: a %llu-byte integer, %zu bytes left", (unsigned long long)n,
                    m->len - m->pos);
    if (n > 8)
        return fail(m, ALBEF_ERR_UNSUPPORTED, "a %llu-byte integer does not fit in 64 bits", (unsigned long long)n);
    uint64_t u = n ? read_le(m->p + m->pos, (int)n) : 0;
    if (n && n < 8 && (m->p[m->pos + n - 1] & 0x80))
        u |= ~0ull << (8 * n); /* sign-extend */
    m->pos += (size_t)n;
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return push_int(m, i);
}

static int memo_put(machine *m, uint64_t index)
{
    pickle_value *v = NULL;
    int rc = top(m, &v);
    if (rc)
        return rc;
    /* Picklers number memo entries 0, 1, 2, ... and spend at least two bytes
     * on each, so a larger index means a corrupt stream (and would make us
     * allocate for nothing). */
    if (index > m->len)
        return fail(m, ALBEF_ERR_INVALID, "memo index %llu is beyond what a %zu-byte pickle can hold",
                    (unsigned long long)index, m->len);
    size_t old = m->memo_cap;
    if (grow((void **)&m->memo, &m->memo_cap, (size_t)index + 1, sizeof *m->memo))
        return oom(m);
    if (m->memo_cap > old)
        memset(m->memo + old, 0, (m->memo_cap - old) * sizeof *m->memo);
    m->n_memo += m->memo[index] == NULL;
    m->memo[index] = v;
    return ALBEF_OK;
}

static int memo_get(machine *m, uint64_t index)
{
    if (index >= m->memo_cap || !m->memo[index])
        return fail(m, ALBEF_ERR_INVALID, "memo entry %llu was never stored", (unsigned long long)index);
    return push(m, m->memo[index]);
}

/* ---- globals ------------------------------------------------------------- */

static const struct {
    const char *module, *name;
    enum pickle_global global;
    albef_dtype dtype;
} allowed_globals[] = {
    {"collections", "OrderedDict", PG_ORDERED_DICT, DTYPE_F32},
    {"torch._utils", "_rebuild_tensor_v2", PG_REBUILD_TENSOR_V2, DTYPE_F32},
    {"torch._utils", "_rebuild_parameter", PG_REBUILD_PARAMETER, DTYPE_F32},
    {"torch._utils", "_rebuild_parameter_with_state", PG_REBUILD_PARAMETER_WITH_STATE, DTYPE_F32},
    {"torch", "FloatStorage", PG_STORAGE_TYPE, DTYPE_F32},
    {"torch", "HalfStorage", PG_STORAGE_TYPE, DTYPE_F16},
    {"torch", "BFloat16Storage", PG_STORAGE_TYPE, DTYPE_BF16},
    {"torch", "DoubleStorage", PG_STORAGE_TYPE, DTYPE_F64},
    {"torch", "LongStorage", PG_STORAGE_TYPE, DTYPE_I64},
    {"torch", "IntStorage", PG_STORAGE_TYPE, DTYPE_I32},
    {"torch", "ShortStorage", PG_STORAGE_TYPE, DTYPE_I16},
    {"torch", "CharStorage", PG_STORAGE_TYPE, DTYPE_I8},
    {"torch", "ByteStorage", PG_STORAGE_TYPE, DTYPE_U8},
    {"torch", "BoolStorage", PG_STORAGE_TYPE, DTYPE_BOOL},
};

/* module.name with anything unprintable shown as '?', for messages. */
static void printable(char *out, size_t cap, const char *module, size_t mlen, const char *name, size_t nlen)
{
    size_t k = 0;
    for (size_t i = 0; i < mlen + 1 + nlen && k + 1 < cap; i++) {
        char c = i < mlen ? module[i] : i == mlen ? '.' : name[i - mlen - 1];
        out[k++] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    out[k] = '\0';
}

static int push_global(machine *m, const char *module, size_t mlen, const char *name, size_t nlen)
{
    for (size_t g = 0; g < sizeof allowed_globals / sizeof allowed_globals[0]; g++) {
        if (strlen(allowed_globals[g].module) == mlen && !memcmp(allowed_globals[g].module, module, mlen) &&
            strlen(allowed_globals[g].name) == nlen && !memcmp(allowed_globals[g].name, name, nlen)) {
            pickle_value *v = new_value(m, PK_GLOBAL);
            if (v) {
                v->i = allowed_globals[g].global;
                v->dtype = allowed_globals[g].dtype;
            }
            return push(m, v);
        }
    }
    char what[160];
    printable(what, sizeof what, module, mlen, name, nlen);
    if (!strcmp(what, "torch.storage._load_from_bytes"))
        return fail(m, ALBEF_ERR_UNSUPPORTED,
                    "global 'torch.storage._load_from_bytes': storages pickled by value (torch.save inside a "
                    "pickled object) are not supported; re-save the state dict itself with torch.save");
    return fail(m, ALBEF_ERR_INVALID,
                "refusing global '%s': only state dicts (tensors, storages, OrderedDict, numbers, strings, "
                "lists, dicts) are read, and nothing is ever called",
                what);
}

static int op_global(machine *m)
{
    /* "module\nname\n" */
    const char *start = (const char *)m->p + m->pos;
    size_t left = m->len - m->pos;
    const char *nl1 = memchr(start, '\n', left);
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', left - (size_t)(nl1 + 1 - start)) : NULL;
    if (!nl2)
        return fail(m, ALBEF_ERR_INVALID, "truncated: 'module\\nname\\n' expected");
    m->pos += (size_t)(nl2 + 1 - start);
    return push_global(m, start, (size_t)(nl1 - start), nl1 + 1, (size_t)(nl2 - nl1 - 1));
}

static int op_stack_global(machine *m)
{
    pickle_value *name = NULL, *module = NULL;
    int rc = pop(m, &name);
    rc = rc ? rc : pop(m, &module);
    if (rc)
        return rc;
    if (name->kind != PK_STR || module->kind != PK_STR)
        return fail(m, ALBEF_ERR_INVALID, "module and name must be strings");
    return push_global(m, module->s, module->len, name->s, name->len);
}

/* ---- calls of allowed globals ------------------------------------------- */

static int int_arg(const machine *m, const pickle_value *v, const char *what, int64_t *out)
{
    if (v->kind != PK_INT && v->kind != PK_BOOL)
        return fail(m, ALBEF_ERR_INVALID, "_rebuild_tensor_v2: %s must be an integer", what);
    *out = v->i;
    return ALBEF_OK;
}

static int rebuild_tensor(machine *m, const pickle_value *args)
{
    if (args->n != 6 && args->n != 7)
        return fail(m, ALBEF_ERR_INVALID, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu", args->n);
    const pickle_value *storage = args->items[0], *size = args->items[2], *stride = args->items[3];
    if (storage->kind != PK_STORAGE)
        return fail(m, ALBEF_ERR_INVALID, "_rebuild_tensor_v2: the first argument must be a storage");
    if (size->kind != PK_TUPLE || stride->kind != PK_TUPLE || size->n != stride->n)
        return fail(m, ALBEF_ERR_INVALID, "_rebuild_tensor_v2: size and stride must be tuples of one length");
    if (size->n > PICKLE_MAX_DIMS)
        return fail(m, ALBEF_ERR_UNSUPPORTED, "a tensor of %zu dimensions (at most %d)", size->n, PICKLE_MAX_DIMS);
    pickle_tensor t = {.storage = (int)storage->i, .dtype = storage->dtype, .ndim = (int)size->n};
    int64_t offset = 0;
    int rc = int_arg(m, args->items[1], "storage_offset", &offset);
    if (rc)
        return rc;
    if (offset < 0)
        return fail(m, ALBEF_ERR_INVALID, "negative storage offset %lld", (long long)offset);
    t.offset = (uint64_t)offset;
    uint64_t numel = 1, last = t.offset; /* index of the last element viewed */
    for (int d = 0; d < t.ndim; d++) {
        rc = int_arg(m, size->items[d], "size", &t.shape[d]);
        rc = rc ? rc : int_arg(m, stride->items[d], "stride", &t.stride[d]);
        if (rc)
            return rc;
        if (t.shape[d] < 0 || t.stride[d] < 0)
            return fail(m, ALBEF_ERR_INVALID, "dimension %d has size %lld and stride %lld", d, (long long)t.shape[d],
                        (long long)t.stride[d]);
        if (__builtin_mul_overflow(numel, (uint64_t)t.shape[d], &numel))
            return fail(m, ALBEF_ERR_INVALID, "the tensor's size overflows 64 bits");
    }
    t.numel = numel;
    /* what this persistent id says the storage holds, not the largest claim */
    uint64_t storage_elems = (uint64_t)storage->f;
    if (numel) {
        for (int d = 0; d < t.ndim; d++) {
            uint64_t span;
            if (__builtin_mul_overflow((uint64_t)(t.shape[d] - 1), (uint64_t)t.stride[d], &span) ||
                __builtin_add_overflow(last, span, &last))
                return fail(m, ALBEF_ERR_INVALID, "the tensor's extent overflows 64 bits");
        }
        if (last >= storage_elems)
            return fail(m, ALBEF_ERR_INVALID,
                        "tensor views element %llu of storage '%s', which holds %llu elements",
                        (unsigned long long)last, m->r->storages[t.storage].key, (unsigned long long)storage_elems);
        /* Copying out an expanded view (stride 0) could take any amount of
         * memory; state dicts never hold one. */
        if (numel > storage_elems)
            return fail(m, ALBEF_ERR_UNSUPPORTED,
                        "a tensor of %llu elements over a storage of %llu (an expanded view) is not supported",
                        (unsigned long long)numel, (unsigned long long)storage_elems);
    } else if (t.offset > storage_elems) {
        return fail(m, ALBEF_ERR_INVALID, "storage offset %llu is past the end of storage '%s' (%llu elements)",
                    (unsigned long long)t.offset, m->r->storages[t.storage].key, (unsigned long long)storage_elems);
    }
    pickle_result *r = m->r;
    if (grow((void **)&r->tensors, &r->cap_tensors, r->n_tensors + 1, sizeof *r->tensors))
        return oom(m);
    r->tensors[r->n_tensors] = t;
    pickle_value *v = new_value(m, PK_TENSOR);
    if (v)
        v->i = (int64_t)r->n_tensors++;
    return push(m, v);
}

static int call(machine *m, const pickle_value *fn, const pickle_value *args)
{
    if (fn->kind != PK_GLOBAL)
        return fail(m, ALBEF_ERR_INVALID, "the callable is not a global");
    if (args->kind != PK_TUPLE)
        return fail(m, ALBEF_ERR_INVALID, "the arguments are not a tuple");
    switch ((enum pickle_global)fn->i) {
    case PG_ORDERED_DICT:
        if (args->n != 0)
            return fail(m, ALBEF_ERR_UNSUPPORTED, "OrderedDict() with arguments");
        return push(m, new_value(m, PK_DICT));
    case PG_REBUILD_TENSOR_V2:
        return rebuild_tensor(m, args);
    case PG_REBUILD_PARAMETER:
    case PG_REBUILD_PARAMETER_WITH_STATE: {
        size_t want = fn->i == PG_REBUILD_PARAMETER ? 3 : 4;
        if (args->n != want || args->items[0]->kind != PK_TENSOR)
            return fail(m, ALBEF_ERR_INVALID, "_rebuild_parameter takes a tensor and %zu more arguments", want - 1);
        return push(m, args->items[0]); /* a parameter is its tensor */
    }
    case PG_STORAGE_TYPE:
        return fail(m, ALBEF_ERR_INVALID, "a storage type is not called in a state dict");
    }
    return fail(m, ALBEF_ERR_INVALID, "unknown callable");
}

/* BINPERSID: ('storage', torch.XStorage, key, location, numel). */
static int persistent_load(machine *m, const pickle_value *pid)
{
    if (pid->kind != PK_TUPLE || pid->n < 1 || pid->items[0]->kind != PK_STR || strcmp(pid->items[0]->s, "storage"))
        return fail(m, ALBEF_ERR_INVALID, "persistent id is not ('storage', type, key, location, numel)");
    /* The legacy format adds view metadata, None since PyTorch 0.4. */
    if (pid->n == 6 && pid->items[5]->kind != PK_NONE)
        return fail(m, ALBEF_ERR_UNSUPPORTED, "a storage id with view metadata (PyTorch before 0.4)");
    if (pid->n != 5 && pid->n != 6)
        return fail(m, ALBEF_ERR_INVALID, "persistent id has %zu elements, expected 5", pid->n);
    const pickle_value *type = pid->items[1], *key = pid->items[2], *location = pid->items[3], *numel = pid->items[4];
    if (type->kind != PK_GLOBAL || type->i != PG_STORAGE_TYPE)
        return fail(m, ALBEF_ERR_INVALID, "persistent id: the second element is not a storage type");
    if (key->kind != PK_STR || location->kind != PK_STR || numel->kind != PK_INT || numel->i < 0)
        return fail(m, ALBEF_ERR_INVALID, "persistent id: key, location and numel must be str, str, int >= 0");
    /* The key names an archive entry: plain characters only, no way out of data/. */
    if (key->len == 0 || key->len > 64 || !strcmp(key->s, ".") || !strcmp(key->s, ".."))
        return fail(m, ALBEF_ERR_INVALID, "storage key of %zu bytes", key->len);
    for (size_t k = 0; k < key->len; k++) {
        char c = key->s[k];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-' ||
              c == '.'))
            return fail(m, ALBEF_ERR_INVALID, "storage key has a character 0x%02x outside [A-Za-z0-9_.-]",
                        (unsigned)(unsigned char)c);
    }
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)numel->i, (uint64_t)dtype_size(type->dtype), &bytes))
        return fail(m, ALBEF_ERR_INVALID, "storage '%s': size overflows 64 bits", key->s);
    pickle_result *r = m->r;
    size_t idx = 0;
    while (idx < r->n_storages && strcmp(r->storages[idx].key, key->s))
        idx++;
    if (idx == r->n_storages) {
        if (grow((void **)&r->storages, &r->cap_storages, r->n_storages + 1, sizeof *r->storages))
            return oom(m);
        char *k = strdup(key->s);
        if (!k)
            return oom(m);
        r->storages[idx] = (pickle_storage){.key = k, .bytes = 0, .dtype = type->dtype};
        r->n_storages++;
    }
    if (bytes > r->storages[idx].bytes)
        r->storages[idx].bytes = bytes;
    pickle_value *v = new_value(m, PK_STORAGE);
    if (v) {
        v->i = (int64_t)idx;
        v->dtype = type->dtype;
        v->f = (double)numel->i; /* exact for every size a file can hold (< 2^53) */
    }
    return push(m, v);
}

/* ---- the machine --------------------------------------------------------- */

static int step(machine *m, int *done)
{
    m->op_pos = m->pos;
    m->op = m->p[m->pos++];
    pickle_value *a = NULL, *b = NULL, *c = NULL;
    size_t base = 0;
    int rc;
    switch (m->op) {
    case OP_PROTO:
        if ((rc = need(m, 1)))
            return rc;
        if (m->p[m->pos] > 5)
            return fail(m, ALBEF_ERR_UNSUPPORTED, "pickle protocol %d", m->p[m->pos]);
        m->pos++;
        return ALBEF_OK;
    case OP_FRAME:
        if ((rc = need(m, 8)))
            return rc;
        if (read_le(m->p + m->pos, 8) > m->len - m->pos - 8)
            return fail(m, ALBEF_ERR_INVALID, "frame of %llu bytes runs past the end",
                        (unsigned long long)read_le(m->p + m->pos, 8));
        m->pos += 8;
        return ALBEF_OK;
    case OP_STOP:
        if ((rc = pop(m, &a)))
            return rc;
        m->r->root = a;
        *done = 1;
        return ALBEF_OK;
    case OP_MARK:
        if (grow((void **)&m->marks, &m->marks_cap, m->n_marks + 1, sizeof *m->marks))
            return oom(m);
        m->marks[m->n_marks++] = m->sp;
        return ALBEF_OK;
    case OP_POP:
        if (m->sp > floor_of(m)) {
            m->sp--;
            return ALBEF_OK;
        }
        return pop_mark(m, &base) ? fail(m, ALBEF_ERR_INVALID, "stack underflow") : ALBEF_OK;
    case OP_POP_MARK:
        if ((rc = pop_mark(m, &base)))
            return rc;
        m->sp = base;
        return ALBEF_OK;
    case OP_DUP:
        return (rc = top(m, &a)) ? rc : push(m, a);
    case OP_NONE:
        return push(m, new_value(m, PK_NONE));
    case OP_NEWTRUE:
    case OP_NEWFALSE:
        a = new_value(m, PK_BOOL);
        if (a)
            a->i = m->op == OP_NEWTRUE;
        return push(m, a);
    case OP_BININT:
        if ((rc = need(m, 4)))
            return rc;
        m->pos += 4;
        return push_int(m, (int32_t)(uint32_t)read_le(m->p + m->pos - 4, 4));
    case OP_BININT1:
        if ((rc = need(m, 1)))
            return rc;
        return push_int(m, m->p[m->pos++]);
    case OP_BININT2:
        if ((rc = need(m, 2)))
            return rc;
        m->pos += 2;
        return push_int(m, (int64_t)read_le(m->p + m->pos - 2, 2));
    case OP_LONG1:
        if ((rc = need(m, 1)))
            return rc;
        return push_long(m, m->p[m->pos++]);
    case OP_LONG4: {
        if ((rc = need(m, 4)))
            return rc;
        int32_t n = (int32_t)(uint32_t)read_le(m->p + m->pos, 4);
        m->pos += 4;
        if (n < 0)
            return fail(m, ALBEF_ERR_INVALID, "negative length %d", n);
        return push_long(m, (uint64_t)n);
    }
    case OP_BINFLOAT: {
        if ((rc = need(m, 8)))
            return rc;
        uint64_t u = 0;
        for (int k = 0; k < 8; k++) /* big-endian */
            u = u << 8 | m->p[m->pos + k];
        m->pos += 8;
        a = new_value(m, PK_FLOAT);
        if (a)
            memcpy(&a->f, &u, sizeof a->f);
        return push(m, a);
    }
    case OP_SHORT_BINUNICODE:
    case OP_SHORT_BINBYTES:
        if ((rc = need(m, 1)))
            return rc;
        return push_text(m, m->op == OP_SHORT_BINUNICODE ? PK_STR : PK_BYTES, m->p[m->pos++]);
    case OP_BINUNICODE:
    case OP_BINBYTES:
        if ((rc = need(m, 4)))
            return rc;
        m->pos += 4;
        return push_text(m, m->op == OP_BINUNICODE ? PK_STR : PK_BYTES, read_le(m->p + m->pos - 4, 4));
    case OP_BINUNICODE8:
    case OP_BINBYTES8:
        if ((rc = need(m, 8)))
            return rc;
        m->pos += 8;
        return push_text(m, m->op == OP_BINUNICODE8 ? PK_STR : PK_BYTES, read_le(m->p + m->pos - 8, 8));
    case OP_EMPTY_DICT:
        return push(m, new_value(m, PK_DICT));
    case OP_EMPTY_LIST:
        return push(m, new_value(m, PK_LIST));
    case OP_EMPTY_TUPLE:
        return push(m, new_value(m, PK_TUPLE));
    case OP_TUPLE:
        if ((rc = pop_mark(m, &base)))
            return rc;
        a = new_value(m, PK_TUPLE);
        if (!a)
            return oom(m);
        for (size_t k = base; k < m->sp; k++)
            if ((rc = append_item(m, a, m->stack[k])))
                return rc;
        m->sp = base;
        return push(m, a);
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3: {
        size_t n = (size_t)(m->op - OP_TUPLE1 + 1);
        if (m->sp - floor_of(m) < n)
            return fail(m, ALBEF_ERR_INVALID, "stack underflow");
        a = new_value(m, PK_TUPLE);
        if (!a)
            return oom(m);
        for (size_t k = m->sp - n; k < m->sp; k++)
            if ((rc = append_item(m, a, m->stack[k])))
                return rc;
        m->sp -= n;
        return push(m, a);
    }
    case OP_SETITEM:
        if ((rc = pop(m, &b)) || (rc = pop(m, &a)) || (rc = top(m, &c)))
            return rc;
        if (c->kind != PK_DICT)
            return fail(m, ALBEF_ERR_INVALID, "SETITEM on something that is not a dict");
        return (rc = append_item(m, c, a)) ? rc : append_item(m, c, b);
    case OP_SETITEMS:
        if ((rc = pop_mark(m, &base)) || (rc = below_mark(m, base, &c)))
            return rc;
        if (c->kind != PK_DICT)
            return fail(m, ALBEF_ERR_INVALID, "SETITEMS on something that is not a dict");
        if ((m->sp - base) % 2)
            return fail(m, ALBEF_ERR_INVALID, "SETITEMS with an odd number of values");
        for (size_t k = base; k < m->sp; k++)
            if ((rc = append_item(m, c, m->stack[k])))
                return rc;
        m->sp = base;
        return ALBEF_OK;
    case OP_APPEND:
        if ((rc = pop(m, &b)) || (rc = top(m, &c)))
            return rc;
        if (c->kind != PK_LIST)
            return fail(m, ALBEF_ERR_INVALID, "APPEND to something that is not a list");
        return append_item(m, c, b);
    case OP_APPENDS:
        if ((rc = pop_mark(m, &base)) || (rc = below_mark(m, base, &c)))
            return rc;
        if (c->kind != PK_LIST)
            return fail(m, ALBEF_ERR_INVALID, "APPENDS to something that is not a list");
        for (size_t k = base; k < m->sp; k++)
            if ((rc = append_item(m, c, m->stack[k])))
                return rc;
        m->sp = base;
        return ALBEF_OK;
    case OP_BINPUT:
        if ((rc = need(m, 1)))
            return rc;
        return memo_put(m, m->p[m->pos++]);
    case OP_LONG_BINPUT:
        if ((rc = need(m, 4)))
            return rc;
        m->pos += 4;
        return memo_put(m, read_le(m->p + m->pos - 4, 4));
    case OP_MEMOIZE: /* Python numbers MEMOIZE entries by the memo's size */
        return memo_put(m, m->n_memo);
    case OP_BINGET:
        if ((rc = need(m, 1)))
            return rc;
        return memo_get(m, m->p[m->pos++]);
    case OP_LONG_BINGET:
        if ((rc = need(m, 4)))
            return rc;
        m->pos += 4;
        return memo_get(m, read_le(m->p + m->pos - 4, 4));
    case OP_GLOBAL:
        return op_global(m);
    case OP_STACK_GLOBAL:
        return op_stack_global(m);
    case OP_REDUCE:
        if ((rc = pop(m, &b)) || (rc = pop(m, &a)))
            return rc;
        return call(m, a, b);
    case OP_BINPERSID:
        if ((rc = pop(m, &a)))
            return rc;
        return persistent_load(m, a);
    case OP_BUILD:
        /* OrderedDict's __dict__ (state_dict's _metadata) or a parameter's
         * state: neither matters for the weights. */
        if ((rc = pop(m, &b)) || (rc = top(m, &a)))
            return rc;
        if (a->kind != PK_DICT && a->kind != PK_TENSOR)
            return fail(m, ALBEF_ERR_INVALID, "BUILD on something that is not a dict or tensor");
        return ALBEF_OK;
    default:
        return fail(m, ALBEF_ERR_UNSUPPORTED, "opcode not used by state dicts");
    }
}

int pickle_load(const uint8_t *data, size_t len, const char *name, pickle_result *out)
{
    memset(out, 0, sizeof *out);
    machine m = {.p = data, .len = len, .name = name, .r = out};
    int rc = ALBEF_OK, done = 0;
    while (!rc && !done) {
        if (m.pos >= m.len) {
            m.op_pos = m.pos;
            rc = albef_error(ALBEF_ERR_INVALID, "%s: truncated: the pickle ends at byte %zu without STOP", name, m.len);
            break;
        }
        rc = step(&m, &done);
    }
    free(m.stack);
    free(m.marks);
    free(m.memo);
    if (rc)
        pickle_free(out);
    else
        out->end = m.pos;
    return rc;
}

void pickle_free(pickle_result *r)
{
    for (size_t i = 0; i < r->n_all; i++) {
        free(r->all[i]->s);
        free(r->all[i]->items);
        free(r->all[i]);
    }
    free(r->all);
    for (size_t i = 0; i < r->n_storages; i++)
        free(r->storages[i].key);
    free(r->storages);
    free(r->tensors);
    memset(r, 0, sizeof *r);
}

const pickle_value *pickle_dict_get(const pickle_value *dict, const char *key)
{
    const pickle_value *found = NULL;
    if (!dict || dict->kind != PK_DICT)
        return NULL;
    for (size_t k = 0; k + 1 < dict->n; k += 2)
        if (dict->items[k]->kind == PK_STR && !strcmp(dict->items[k]->s, key))
            found = dict->items[k + 1];
    return found;
}
