#include "io/image.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

int image_check_size(int width, int height, const char *name)
{
    if (width < 1 || height < 1)
        return albef_error(ALBEF_ERR_INVALID, "%s: image size %dx%d: width and height must be at least 1", name,
                           width, height);
    if (width > IMAGE_MAX_SIDE || height > IMAGE_MAX_SIDE)
        return albef_error(ALBEF_ERR_INVALID, "%s: image size %dx%d exceeds the limit of %d pixels per side", name,
                           width, height, IMAGE_MAX_SIDE);
    if ((long long)width * height > IMAGE_MAX_PIXELS)
        return albef_error(ALBEF_ERR_INVALID, "%s: image size %dx%d (%lld pixels) exceeds the limit of %lld pixels",
                           name, width, height, (long long)width * height, IMAGE_MAX_PIXELS);
    return ALBEF_OK;
}

int image_alloc(image_u8 *img, int width, int height, int channels)
{
    memset(img, 0, sizeof *img);
    if (channels != 1 && channels != 3)
        return albef_error(ALBEF_ERR_INVALID, "image_alloc: channels is %d; expected 1 or 3", channels);
    int rc = image_check_size(width, height, "image_alloc");
    if (rc)
        return rc;
    size_t n = (size_t)width * (size_t)height * (size_t)channels;
    img->data = malloc(n);
    if (!img->data)
        return albef_error(ALBEF_ERR_NOMEM, "image_alloc: out of memory for %dx%dx%d (%zu bytes)", width, height,
                           channels, n);
    img->width = width;
    img->height = height;
    img->channels = channels;
    return ALBEF_OK;
}

void image_free(image_u8 *img)
{
    if (!img)
        return;
    free(img->data);
    memset(img, 0, sizeof *img);
}
