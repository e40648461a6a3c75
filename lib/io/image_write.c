/* PNG and JPEG writers. Both encoders report errors by longjmp-ing out of
 * their own code; the handlers here turn that into a status and a message
 * naming the file, and the temporary file is removed, so a failed write
 * leaves the destination as it was. */
#include "io/image.h"

#include "core/error.h"
#include "core/file.h"

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static int check_image(const char *path, const image_u8 *img, const char *format)
{
    if (!path || !*path)
        return albef_error(ALBEF_ERR_INVALID, "image_write_%s: empty path", format);
    if (!img || !img->data)
        return albef_error(ALBEF_ERR_INVALID, "%s: no pixel data to write", path);
    /* The decoders' limits: what is written here can be read back. */
    int rc = image_check_size(img->width, img->height, path);
    if (rc)
        return rc;
    if (img->channels != 1 && img->channels != 3)
        return albef_error(ALBEF_ERR_UNSUPPORTED, "%s: %d channels: expected 1 (gray) or 3 (RGB)", path,
                           img->channels);
    return ALBEF_OK;
}

/* ---- PNG ---- */

typedef struct {
    jmp_buf jump;
    char message[200];
} png_failure;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_failure *f = png_get_error_ptr(png);
    snprintf(f->message, sizeof f->message, "%s", msg);
    longjmp(f->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int image_write_png(const char *path, const image_u8 *img)
{
    int rc = check_image(path, img, "png");
    if (rc)
        return rc;
    atomic_file af;
    rc = atomic_file_open(&af, path);
    if (rc)
        return rc;

    png_failure failure = {.message = ""};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &failure, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        atomic_file_abort(&af);
        return albef_error(ALBEF_ERR_NOMEM, "%s: cannot create the PNG encoder", path);
    }
    if (setjmp(failure.jump)) {
        png_destroy_write_struct(&png, &info);
        atomic_file_abort(&af);
        return albef_error(ALBEF_ERR_IO, "%s: PNG encoder: %s", path, failure.message);
    }
    png_init_io(png, af.f);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 img->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)img->width * (size_t)img->channels;
    for (int y = 0; y < img->height; y++)
        png_write_row(png, img->data + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return atomic_file_commit(&af);
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr mgr; /* first, so the library's pointer is ours */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_failure;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    f->mgr.format_message(cinfo, f->message);
    longjmp(f->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo)
{
    (void)cinfo; /* warnings are not worth failing a write for, nor printing */
}

int image_write_jpeg(const char *path, const image_u8 *img, int quality)
{
    int rc = check_image(path, img, "jpeg");
    if (rc)
        return rc;
    if (quality < 1 || quality > 100)
        return albef_error(ALBEF_ERR_INVALID, "%s: JPEG quality %d: expected 1..100", path, quality);
    atomic_file af;
    rc = atomic_file_open(&af, path);
    if (rc)
        return rc;

    struct jpeg_compress_struct cinfo;
    jpeg_failure failure;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&failure, 0, sizeof failure);
    cinfo.err = jpeg_std_error(&failure.mgr);
    failure.mgr.error_exit = jpeg_on_error;
    failure.mgr.output_message = jpeg_on_message;
    if (setjmp(failure.jump)) {
        jpeg_destroy_compress(&cinfo);
        atomic_file_abort(&af);
        return albef_error(ALBEF_ERR_IO, "%s: JPEG encoder: %s", path, failure.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, af.f);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = img->channels;
    cinfo.in_color_space = img->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    /* The defaults give 4:2:0 chroma subsampling for RGB input, as Pillow's
     * save() does, with the standard Huffman tables. */
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)img->width * (size_t)img->channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(img->data + (size_t)cinfo.next_scanline * stride);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return atomic_file_commit(&af);
}
