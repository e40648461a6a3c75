/* libFuzzer target: any bytes given to the safetensors reader give a clean
 * error or a file whose every tensor can be read. */
#include "core/error.h"
#include "io/safetensors.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    safetensors_file *st;
    if (safetensors_open_memory(data, size, "fuzz.safetensors", &st) != ALBEF_OK)
        return 0;
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const safetensors_tensor *t = safetensors_tensor_at(st, i);
        if (safetensors_find(st, t->name) != t)
            abort(); /* names are unique, so lookup must land on this very tensor */
        float *dst = malloc(t->numel ? t->numel * sizeof *dst : 1);
        if (!dst)
            continue;
        if (dtype_is_float(t->dtype)) {
            if (safetensors_read_f32(st, t->name, dst, t->numel) != ALBEF_OK)
                abort();
        } else if (dtype_convert_to_f32(dst, t->data, t->numel, t->dtype) != ALBEF_OK) {
            abort();
        }
        free(dst);
    }
    for (size_t i = 0; i < safetensors_metadata_count(st); i++) {
        const char *key, *value;
        safetensors_metadata_at(st, i, &key, &value);
        if (safetensors_metadata_get(st, key) != value)
            abort();
    }
    safetensors_close(st);
    return 0;
}
