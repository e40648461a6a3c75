/* safetensors: the checkpoint format (https://github.com/huggingface/safetensors).
 *
 *   [u64 little-endian N][N bytes of JSON header][data area]
 *
 * The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (byte offsets into the data area) and may hold
 * "__metadata__": {string: string}.
 *
 * Reading maps the file (no tensor data is copied, so a 1.7 GB checkpoint
 * opens in milliseconds) and validates the whole header before anything is handed out:
 * after safetensors_open succeeds, every tensor lies inside the file, its size
 * equals numel x element size, and no two tensors overlap. Data pointers may
 * be unaligned in files from other writers; the read functions cope.
 *
 * Writing is atomic (temporary file, fsync, rename). Tensors are stored by
 * element size, largest first, and in the order added within one size, so
 * that in our files every tensor starts at a multiple of its element size
 * (the data area starts 8-byte aligned, as in the Python package). The header
 * lists "__metadata__" first, then the tensors in data order. */
#ifndef ALBEF_IO_SAFETENSORS_H
#define ALBEF_IO_SAFETENSORS_H

#include "core/dtype.h"

#include <stddef.h>
#include <stdint.h>

/* The Python package refuses larger headers; so do we. */
#define SAFETENSORS_MAX_HEADER 100000000u

typedef struct {
    const char *name;
    albef_dtype dtype;
    int ndim;             /* 0 for a scalar */
    const int64_t *shape; /* ndim entries */
    uint64_t numel;       /* product of shape; 1 for a scalar */
    size_t nbytes;        /* numel * dtype_size(dtype) */
    const void *data;     /* inside the mapping; any alignment; valid until close */
    uint64_t offset;      /* of data, from the start of the data area */
} safetensors_tensor;

typedef struct safetensors_file safetensors_file;

/* Maps and validates `path`. On failure *st is NULL and the message names the
 * file and, where one is at fault, the tensor. */
int safetensors_open(const char *path, safetensors_file **st);

/* The same over bytes already in memory (borrowed: they must outlive *st);
 * `name` stands for the file in messages. */
int safetensors_open_memory(const void *buf, size_t len, const char *name, safetensors_file **st);

/* As safetensors_open_memory, but *st takes the malloc'ed buffer and frees it
 * on close (and on failure, at once). */
int safetensors_open_memory_owned(void *buf, size_t len, const char *name, safetensors_file **st);

void safetensors_close(safetensors_file *st);

const char *safetensors_path(const safetensors_file *st);

/* Tensors in file order (by data offset), i in [0, count). */
size_t safetensors_count(const safetensors_file *st);
const safetensors_tensor *safetensors_tensor_at(const safetensors_file *st, size_t i);

/* By name (binary search); NULL when absent. */
const safetensors_tensor *safetensors_find(const safetensors_file *st, const char *name);

/* "__metadata__": the value for `key`, or NULL; and all pairs in file order. */
const char *safetensors_metadata_get(const safetensors_file *st, const char *key);
size_t safetensors_metadata_count(const safetensors_file *st);
void safetensors_metadata_at(const safetensors_file *st, size_t i, const char **key, const char **value);

/* Reads tensor `name` (F32, F16, BF16 or F64) into n_expected floats.
 * ALBEF_ERR_INVALID when the tensor is missing or holds a different number
 * of elements (the message gives its shape); ALBEF_ERR_UNSUPPORTED for an
 * integer or boolean tensor. */
int safetensors_read_f32(const safetensors_file *st, const char *name, float *dst, size_t n_expected);

/* As safetensors_read_f32, but the shape must equal `shape` exactly
 * ([768, 768] is not [589824]; a scalar is ndim 0, not [1]). */
int safetensors_read_f32_shape(const safetensors_file *st, const char *name, float *dst, int ndim,
                               const int64_t *shape);

/* Copies tensor `name` as stored; its dtype must be `dtype` and it must hold
 * n_expected elements (for queue_ptr, step counters, RNG state). */
int safetensors_read_raw(const safetensors_file *st, const char *name, albef_dtype dtype, void *dst,
                         size_t n_expected);

/* Converts an already-found tensor to float32 (float dtypes only). */
int safetensors_tensor_to_f32(const safetensors_file *st, const safetensors_tensor *t, float *dst);

/* Formats a shape as "[2304, 768]" (or "[]") into buf; returns buf. */
const char *safetensors_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

typedef struct safetensors_writer safetensors_writer;

int safetensors_writer_init(safetensors_writer **w);

/* Adds a tensor. The name and shape are copied; `data` (nbytes =
 * product(shape) x element size, NULL allowed when that is 0) is borrowed and
 * must stay valid until safetensors_writer_write returns. A name may appear
 * once and may not be "__metadata__". */
int safetensors_writer_add(safetensors_writer *w, const char *name, albef_dtype dtype, int ndim, const int64_t *shape,
                           const void *data);

/* Sets (or replaces) a metadata entry; both strings are copied. */
int safetensors_writer_set_metadata(safetensors_writer *w, const char *key, const char *value);

/* Writes everything added so far as `path`, atomically. The writer stays
 * usable (it may be written again, or to another path). */
int safetensors_writer_write(const safetensors_writer *w, const char *path);

void safetensors_writer_free(safetensors_writer *w);

#endif
