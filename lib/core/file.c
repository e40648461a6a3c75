#include "core/file.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int file_map(const char *path, file_mapping *m)
{
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return albef_error(ALBEF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return albef_error(ALBEF_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return albef_error(ALBEF_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return albef_error(ALBEF_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return ALBEF_OK;
}

void file_unmap(file_mapping *m)
{
    if (m->data)
        munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

int file_read_all(const char *path, char **data, size_t *size)
{
    *data = NULL;
    if (size)
        *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return albef_error(ALBEF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap * 2);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return albef_error(ALBEF_ERR_IO, "%s: read error", path);
    }
    buf[len] = '\0';
    *data = buf;
    if (size)
        *size = len;
    return ALBEF_OK;
}

static void atomic_file_release(atomic_file *af)
{
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    af->f = NULL;
}

int atomic_file_open(atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->path = strdup(path);
    af->tmp_path = malloc(n + 16);
    if (!af->path || !af->tmp_path) {
        atomic_file_release(af);
        return albef_error(ALBEF_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) {
        int e = errno;
        atomic_file_release(af);
        return albef_error(ALBEF_ERR_IO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        unlink(af->tmp_path);
        atomic_file_release(af);
        return albef_error(ALBEF_ERR_IO, "%s: cannot open temporary file: %s", path, strerror(e));
    }
    return ALBEF_OK;
}

int atomic_file_write(atomic_file *af, const void *buf, size_t n)
{
    if (n && fwrite(buf, 1, n, af->f) != n)
        return albef_error(ALBEF_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    return ALBEF_OK;
}

void atomic_file_abort(atomic_file *af)
{
    if (af->f)
        fclose(af->f);
    if (af->tmp_path)
        unlink(af->tmp_path);
    atomic_file_release(af);
}

int atomic_file_commit(atomic_file *af)
{
    int rc = ALBEF_OK;
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0)
        rc = albef_error(ALBEF_ERR_IO, "%s: flush failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && rc == ALBEF_OK)
        rc = albef_error(ALBEF_ERR_IO, "%s: close failed: %s", af->path, strerror(errno));
    af->f = NULL;
    if (rc == ALBEF_OK && rename(af->tmp_path, af->path) != 0)
        rc = albef_error(ALBEF_ERR_IO, "%s: rename failed: %s", af->path, strerror(errno));
    if (rc != ALBEF_OK) {
        unlink(af->tmp_path);
        atomic_file_release(af);
        return rc;
    }
    /* Make the rename itself durable. */
    char *dir = strdup(af->path);
    if (dir) {
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    atomic_file_release(af);
    return ALBEF_OK;
}

int file_write_all_atomic(const char *path, const void *buf, size_t n)
{
    atomic_file af;
    int rc = atomic_file_open(&af, path);
    if (rc)
        return rc;
    rc = atomic_file_write(&af, buf, n);
    if (rc) {
        atomic_file_abort(&af);
        return rc;
    }
    return atomic_file_commit(&af);
}
