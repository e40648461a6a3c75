/* Decode and Pillow-exact BICUBIC resize speed on the photos of
 * ../shared/data/real-images (ALBEF_SHARED_DATA), one thread, files read into
 * memory first. One row per photo: decode rate in megapixels of the image per
 * second, and resizes per second (with the source megapixels per second) to
 * 384x384, 256x256 and 224x224.
 *
 *   bench_resize [SECONDS_PER_CELL]   (default 0.5) */
#include "core/error.h"
#include "core/file.h"
#include "io/image.h"
#include "vision/resize.h"
#include "run_times.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *const photos[] = {"astronaut.png", "camera.png", "chelsea.png", "coffee.png",
                                     "hubble_deep_field.jpg", "retina.jpg", "rocket.jpg"};
static const int sizes[] = {384, 256, 224};

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    const char *base = getenv("ALBEF_SHARED_DATA");
    printf("%-22s %10s %12s", "photo", "size", "decode Mpx/s");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        printf("   %3d: img/s (Mpx/s)", sizes[s]);
    printf("\n");
    for (size_t p = 0; p < sizeof photos / sizeof photos[0]; p++) {
        char path[512];
        snprintf(path, sizeof path, "%s/real-images/%s", base && *base ? base : "../shared/data", photos[p]);
        char *bytes;
        size_t n;
        image_u8 img;
        if (file_read_all(path, &bytes, &n) || image_decode((const uint8_t *)bytes, n, path, &img)) {
            fprintf(stderr, "bench_resize: %s\n", albef_errmsg());
            return 1;
        }
        double mpx = img.width * (double)img.height / 1e6;
        long runs = 0;
        double t0 = now(), t;
        do {
            image_u8 tmp;
            if (image_decode((const uint8_t *)bytes, n, path, &tmp))
                return 1;
            image_free(&tmp);
            runs++;
        } while ((t = now()) - t0 < seconds);
        char dims[32];
        snprintf(dims, sizeof dims, "%dx%d", img.width, img.height);
        printf("%-22s %10s %12.1f", photos[p], dims, runs * mpx / (t - t0));
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            runs = 0;
            t0 = now();
            do {
                image_u8 out;
                if (resize_bicubic(&img, sizes[s], sizes[s], &out))
                    return 1;
                image_free(&out);
                runs++;
            } while ((t = now()) - t0 < seconds);
            printf("   %8.0f (%7.1f)", runs / (t - t0), runs * mpx / (t - t0));
        }
        printf("\n");
        image_free(&img);
        free(bytes);
    }
    return 0;
}
