/* libFuzzer target: the first byte picks the manifest kind, the rest is the
 * JSON text. Any input gives a clean error, or a manifest whose every item,
 * text and answer can be read and whose text numbering is consistent. */
#include "core/error.h"
#include "io/manifest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum manifest_kind kind = (enum manifest_kind)(data[0] % MANIFEST_KIND_COUNT);
    manifest *m;
    if (manifest_parse(&m, kind, (const char *)data + 1, size - 1, "fuzz.json") != ALBEF_OK) {
        if (!strstr(albef_errmsg(), "fuzz.json"))
            abort(); /* every error names the file */
        return 0;
    }
    size_t texts = 0;
    for (size_t i = 0; i < manifest_count(m); i++) {
        const char *image = manifest_image(m, i);
        if ((image == NULL) != (kind == MANIFEST_ANSWER_LIST))
            abort();
        if ((manifest_second_image(m, i) != NULL) != (kind == MANIFEST_NLVR))
            abort();
        size_t n = manifest_text_count(m, i);
        if (n == 0 || manifest_text_first(m, i) != texts)
            abort();
        for (size_t j = 0; j < n; j++, texts++)
            if (manifest_text(m, i, j) != manifest_text_by_id(m, texts) || manifest_text_item(m, texts) != i)
                abort();
        float sum = 0;
        for (size_t j = 0; j < manifest_answer_count(m, i); j++) {
            (void)strlen(manifest_answer(m, i, j));
            sum += manifest_answer_weight(m, i, j);
        }
        if (manifest_answer_count(m, i) && (sum <= 0 || sum > 1.0001f))
            abort();
        int64_t idx = manifest_image_idx(m, i);
        if (idx >= (int64_t)manifest_image_count(m))
            abort();
        (void)manifest_label(m, i);
        (void)manifest_question_id(m, i);
        (void)manifest_ref_id(m, i);
        (void)manifest_dataset(m, i);
    }
    if (texts != manifest_text_total(m))
        abort();
    manifest_free(m);
    return 0;
}
