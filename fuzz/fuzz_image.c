/* libFuzzer target: any bytes given to the image decoder give a clean error
 * or an RGB image that resizes; seeds in fuzz/corpus/fuzz_image. */
#include "core/error.h"
#include "io/image.h"
#include "vision/resize.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    image_u8 img;
    if (image_decode(data, size, "fuzz.img", &img) != ALBEF_OK) {
        if (img.data || img.width || img.height)
            abort(); /* a failed decode leaves nothing behind */
        return 0;
    }
    if (img.channels != 3 || img.width < 1 || img.height < 1)
        abort();
    image_u8 small;
    if (resize_bicubic(&img, 17, 9, &small) != ALBEF_OK)
        abort(); /* any decoded image must resize */
    image_free(&small);
    image_free(&img);
    return 0;
}
