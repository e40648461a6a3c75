/* libFuzzer target: any bytes given to the PyTorch checkpoint reader (zip
 * archive, pickle, storages) give a clean error or a safetensors file whose
 * every tensor can be read. */
#include "core/error.h"
#include "io/pth.h"
#include "io/safetensors.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    safetensors_file *st;
    if (pth_open_memory(data, size, "fuzz.pth", &st) != ALBEF_OK)
        return 0;
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const safetensors_tensor *t = safetensors_tensor_at(st, i);
        if (safetensors_find(st, t->name) != t)
            abort();
        float *dst = malloc(t->numel ? t->numel * sizeof *dst : 1);
        if (!dst)
            continue;
        if (dtype_convert_to_f32(dst, t->data, t->numel, t->dtype) != ALBEF_OK)
            abort();
        free(dst);
    }
    safetensors_close(st);
    return 0;
}
