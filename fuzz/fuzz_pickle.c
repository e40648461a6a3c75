/* libFuzzer target: any bytes given to the restricted unpickler give a clean
 * error or a value graph that can be walked; nothing is ever called. */
#include "core/error.h"
#include "io/pth_pickle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pickle_result r;
    if (pickle_load(data, size, "fuzz.pkl", &r) != ALBEF_OK)
        return 0;
    if (!r.root)
        abort();
    /* what pth.c reads: the dict, its 'model', the tensors it holds */
    const pickle_value *model = pickle_dict_get(r.root, "model");
    const pickle_value *sd = model && model->kind == PK_DICT ? model : r.root;
    if (sd->kind == PK_DICT)
        for (size_t i = 0; i + 1 < sd->n; i += 2) {
            const pickle_value *v = sd->items[i + 1];
            if (v->kind == PK_TENSOR) {
                const pickle_tensor *t = &r.tensors[v->i];
                if ((size_t)v->i >= r.n_tensors || t->storage < 0 || (size_t)t->storage >= r.n_storages)
                    abort();
                if (strlen(r.storages[t->storage].key) == 0)
                    abort();
            }
        }
    pickle_free(&r);
    return 0;
}
