/* Files: read-only mappings, whole-file reads, and atomic writes.
 * An atomic write goes to a temporary file in the destination's folder, is
 * fsync'ed, then renamed over the destination (and the folder fsync'ed), so a
 * crash leaves either the old file or the new one, never half of one. */
#ifndef ALBEF_CORE_FILE_H
#define ALBEF_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    const uint8_t *data; /* file contents (NULL when size == 0) */
    size_t size;
} file_mapping;

int file_map(const char *path, file_mapping *m);
void file_unmap(file_mapping *m);

/* Reads the whole file into a malloc'ed, NUL-terminated buffer. */
int file_read_all(const char *path, char **data, size_t *size);

typedef struct {
    char *path;     /* destination */
    char *tmp_path; /* temporary file beside it */
    FILE *f;
} atomic_file;

int atomic_file_open(atomic_file *af, const char *path);
int atomic_file_write(atomic_file *af, const void *buf, size_t n);
int atomic_file_commit(atomic_file *af); /* flush, fsync, rename; frees af */
void atomic_file_abort(atomic_file *af); /* removes the temporary file; frees af */

/* Writes `n` bytes as `path` atomically. */
int file_write_all_atomic(const char *path, const void *buf, size_t n);

#endif
