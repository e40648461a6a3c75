/* The restricted unpickler behind pth.h (internal to lib/io).
 *
 * It runs the pickle opcodes a torch.save'd state dict uses and builds plain
 * values: None, bools, integers, floats, strings, bytes, tuples, lists and
 * dicts, plus two kinds of its own: storages (from persistent ids) and
 * tensors (from torch._utils._rebuild_tensor_v2). The only callables it
 * knows are an allow-list (collections.OrderedDict, the tensor and parameter
 * rebuilders, the storage types); any other global is refused by name when
 * it is read, so nothing is ever called.
 *
 * Every value is allocated from one registry and freed with the result, so
 * cycles (a list appended to itself through the memo) cost nothing. Memory
 * is bounded by the length of the pickle: each opcode creates at most one
 * value and memo indices may not exceed the pickle's length. */
#ifndef ALBEF_IO_PTH_PICKLE_H
#define ALBEF_IO_PTH_PICKLE_H

#include "core/dtype.h"

#include <stddef.h>
#include <stdint.h>

#define PICKLE_MAX_DIMS 16

enum pickle_kind {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STR,
    PK_BYTES,
    PK_TUPLE,
    PK_LIST,
    PK_DICT,    /* items hold key, value, key, value, ... in insertion order */
    PK_GLOBAL,  /* an allowed callable; `i` is an enum pickle_global */
    PK_STORAGE, /* `i` indexes pickle_result.storages */
    PK_TENSOR,  /* `i` indexes pickle_result.tensors */
};

enum pickle_global {
    PG_ORDERED_DICT,
    PG_REBUILD_TENSOR_V2,
    PG_REBUILD_PARAMETER,
    PG_REBUILD_PARAMETER_WITH_STATE,
    PG_STORAGE_TYPE, /* torch.FloatStorage, ...: `dtype` says which */
};

typedef struct pickle_value pickle_value;
struct pickle_value {
    enum pickle_kind kind;
    int64_t i;          /* PK_BOOL, PK_INT; the index or enum of PK_GLOBAL/STORAGE/TENSOR */
    double f;           /* PK_FLOAT */
    char *s;            /* PK_STR, PK_BYTES: NUL-terminated copy */
    size_t len;         /* of s, without the NUL */
    albef_dtype dtype;  /* PK_GLOBAL storage types */
    pickle_value **items; /* PK_TUPLE, PK_LIST, PK_DICT */
    size_t n, cap;
};

typedef struct {
    char *key;      /* the archive entry is <prefix>/data/<key> */
    uint64_t bytes;    /* the largest size any persistent id claims for it */
    albef_dtype dtype; /* of the first persistent id naming it */
} pickle_storage;

typedef struct {
    int storage;
    albef_dtype dtype;
    uint64_t offset; /* in elements */
    int ndim;
    int64_t shape[PICKLE_MAX_DIMS], stride[PICKLE_MAX_DIMS];
    uint64_t numel;
} pickle_tensor;

typedef struct {
    pickle_value *root;
    size_t end; /* bytes of the input the pickle took, STOP included */
    pickle_storage *storages;
    size_t n_storages, cap_storages;
    pickle_tensor *tensors;
    size_t n_tensors, cap_tensors;
    /* every value, for freeing */
    pickle_value **all;
    size_t n_all, cap_all;
} pickle_result;

/* Runs the pickle at data[0..len) up to its STOP (out->end bytes; what
 * follows is left alone). `name` stands for the stream in messages
 * ("model.pth: archive/data.pkl"). On failure the result is freed. */
int pickle_load(const uint8_t *data, size_t len, const char *name, pickle_result *out);
void pickle_free(pickle_result *r);

/* The value of string key `key` in a PK_DICT (the last one set), or NULL. */
const pickle_value *pickle_dict_get(const pickle_value *dict, const char *key);

#endif
