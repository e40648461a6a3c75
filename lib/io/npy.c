#include "io/npy.h"

#include "core/error.h"
#include "core/file.h"

#include <stdio.h>
#include <string.h>

int npy_write_f32(const char *path, const float *data, size_t rows, size_t cols)
{
    /* magic, version 1.0, u16 header length, then the header dict padded with
     * spaces and a newline so the data starts at a multiple of 64 bytes */
    char header[128];
    int n = snprintf(header + 10, sizeof header - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                     rows, cols);
    size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    header[8] = (char)((total - 10) & 0xff);
    header[9] = (char)((total - 10) >> 8);
    memset(header + 10 + n, ' ', total - 10 - (size_t)n - 1);
    header[total - 1] = '\n';
    atomic_file af;
    int rc = atomic_file_open(&af, path);
    if (rc)
        return rc;
    rc = atomic_file_write(&af, header, total);
    if (!rc && rows && cols)
        rc = atomic_file_write(&af, data, sizeof(float) * rows * cols);
    if (rc) {
        atomic_file_abort(&af);
        return rc;
    }
    return atomic_file_commit(&af);
}
