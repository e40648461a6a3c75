/* NumPy .npy files (format 1.0): float32 matrices in C order, readable with
 * numpy.load. Written atomically. */
#ifndef ALBEF_IO_NPY_H
#define ALBEF_IO_NPY_H

#include <stddef.h>

/* data (rows, cols) as `path`. */
int npy_write_f32(const char *path, const float *data, size_t rows, size_t cols);

#endif
