/* safetensors speed: writes a checkpoint of MB megabytes of F32 (default 512,
 * in [768, 768] tensors named like ALBEF's), and the same tensors as BF16 and
 * as F16, to a temporary folder; then times the atomic write, the open (header
 * parse and validation), reading every tensor into float32 from a cold page
 * cache and from a warm one, the BF16/F16 conversions, and name lookups.
 * MB/s counts bytes of float32 delivered (for BF16/F16 the file holds half).
 *
 *   bench_safetensors [MB] */
#include "core/error.h"
#include "io/safetensors.h"
#include "run_times.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DIM 768

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_safetensors: %s: %s (%d)\n", what, albef_errmsg(), rc);
    exit(1);
}

static void tensor_name(char *buf, size_t cap, size_t i)
{
    static const char *const parts[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                        "attention.output.dense", "crossattention.self.query",
                                        "crossattention.output.dense"};
    snprintf(buf, cap, "text_encoder%s.bert.encoder.layer.%zu.%s.weight", i % 2 ? "_m" : "", i / 12,
             parts[(i / 2) % 6]);
}

/* Evicts the file from the page cache so the next read comes from disk. */
static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

static double write_file(const char *path, albef_dtype dtype, const void *data, size_t count)
{
    safetensors_writer *w;
    int rc = safetensors_writer_init(&w);
    if (rc)
        die("init", rc);
    const int64_t shape[2] = {DIM, DIM};
    char name[128];
    size_t bytes = (size_t)DIM * DIM * dtype_size(dtype);
    for (size_t i = 0; i < count; i++) {
        tensor_name(name, sizeof name, i);
        if ((rc = safetensors_writer_add(w, name, dtype, 2, shape, (const char *)data + i * bytes)))
            die("add", rc);
    }
    safetensors_writer_set_metadata(w, "config", "{\"embed_dim\": 256}");
    double t0 = now();
    if ((rc = safetensors_writer_write(w, path)))
        die("write", rc);
    double dt = now() - t0;
    safetensors_writer_free(w);
    return dt;
}

static double read_all(const char *path, float *dst, size_t count, double *open_s)
{
    double t0 = now();
    safetensors_file *st;
    int rc = safetensors_open(path, &st);
    if (rc)
        die("open", rc);
    *open_s = now() - t0;
    char name[128];
    for (size_t i = 0; i < count; i++) {
        tensor_name(name, sizeof name, i);
        if ((rc = safetensors_read_f32(st, name, dst + i * DIM * DIM, (size_t)DIM * DIM)))
            die("read", rc);
    }
    double dt = now() - t0;
    safetensors_close(st);
    return dt;
}

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 512;
    size_t per = (size_t)DIM * DIM * sizeof(float);
    size_t count = mb * 1000000 / per;
    if (count == 0)
        count = 1;
    size_t n = count * DIM * DIM;
    double total_mb = (double)(n * sizeof(float)) / 1e6;

    const char *base = getenv("TMPDIR");
    char dir[256], f32_path[300], bf16_path[300], f16_path[300];
    snprintf(dir, sizeof dir, "%s/bench-safetensors-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(f32_path, sizeof f32_path, "%s/f32.safetensors", dir);
    snprintf(bf16_path, sizeof bf16_path, "%s/bf16.safetensors", dir);
    snprintf(f16_path, sizeof f16_path, "%s/f16.safetensors", dir);

    float *src = malloc(n * sizeof *src), *dst = malloc(n * sizeof *dst);
    uint16_t *half = malloc(n * sizeof *half);
    if (!src || !dst || !half) {
        fprintf(stderr, "bench_safetensors: out of memory for %zu MB\n", mb);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        src[i] = (float)((i * 2654435761u) % 20001) * 1e-4f - 1.0f;
    memset(dst, 0, n * sizeof *dst); /* touch the pages before timing */

    printf("safetensors: %zu tensors [%d, %d], %.1f MB of float32\n", count, DIM, DIM, total_mb);
    printf("%-34s %12s %12s\n", "operation", "seconds", "MB/s");
    double dt = write_file(f32_path, DTYPE_F32, src, count);
    printf("%-34s %12.3f %12.0f\n", "write F32 (atomic, fsync)", dt, total_mb / dt);

    double open_s;
    drop_cache(f32_path);
    dt = read_all(f32_path, dst, count, &open_s);
    printf("%-34s %12.6f %12s\n", "open (map + header), cold cache", open_s, "-");
    printf("%-34s %12.3f %12.0f\n", "read F32, cold cache", dt, total_mb / dt);
    dt = read_all(f32_path, dst, count, &open_s);
    printf("%-34s %12.6f %12s\n", "open (map + header), warm cache", open_s, "-");
    printf("%-34s %12.3f %12.0f\n", "read F32, warm cache", dt, total_mb / dt);
    if (memcmp(dst, src, n * sizeof *src) != 0) {
        fprintf(stderr, "bench_safetensors: F32 read back differs\n");
        return 1;
    }

    f32_to_bf16_array(half, src, n);
    write_file(bf16_path, DTYPE_BF16, half, count);
    read_all(bf16_path, dst, count, &open_s); /* warm the cache */
    dt = read_all(bf16_path, dst, count, &open_s);
    printf("%-34s %12.3f %12.0f\n", "read BF16 -> F32, warm cache", dt, total_mb / dt);

    f32_to_f16_array(half, src, n);
    write_file(f16_path, DTYPE_F16, half, count);
    read_all(f16_path, dst, count, &open_s);
    dt = read_all(f16_path, dst, count, &open_s);
    printf("%-34s %12.3f %12.0f\n", "read F16 -> F32, warm cache", dt, total_mb / dt);

    /* lookups: every name, many times */
    safetensors_file *st;
    int rc = safetensors_open(f32_path, &st);
    if (rc)
        die("open", rc);
    char name[128];
    size_t lookups = 0, found = 0;
    double t0 = now();
    for (int rep = 0; rep < 200; rep++)
        for (size_t i = 0; i < count; i++, lookups++) {
            tensor_name(name, sizeof name, i);
            found += safetensors_find(st, name) != NULL;
        }
    dt = now() - t0;
    safetensors_close(st);
    printf("%-34s %12.0f %12s   (%zu names, incl. formatting the name)\n", "find, ns per lookup",
           dt / (double)lookups * 1e9, "-", count);
    if (found != lookups)
        return 1;

    unlink(f32_path);
    unlink(bf16_path);
    unlink(f16_path);
    rmdir(dir);
    free(src);
    free(dst);
    free(half);
    return 0;
}
