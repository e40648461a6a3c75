#include "model/pos_embed.h"

#include "core/error.h"

#include <math.h>
#include <string.h>

static int grid_side(int tokens)
{
    int g = (int)sqrt((double)(tokens - 1));
    while (g * g > tokens - 1)
        g--;
    while ((g + 1) * (g + 1) <= tokens - 1)
        g++;
    return g;
}

/* PyTorch's cubic convolution weights for offset t in [0, 1). */
static void cubic_coefficients(float w[4], float t)
{
    const float a = -0.75f;
    float x1 = t + 1.0f, x2 = t, x3 = 1.0f - t, x4 = 2.0f - t;
    w[0] = ((a * x1 - 5.0f * a) * x1 + 8.0f * a) * x1 - 4.0f * a;
    w[1] = ((a + 2.0f) * x2 - (a + 3.0f)) * x2 * x2 + 1.0f;
    w[2] = ((a + 2.0f) * x3 - (a + 3.0f)) * x3 * x3 + 1.0f;
    w[3] = ((a * x4 - 5.0f * a) * x4 + 8.0f * a) * x4 - 4.0f * a;
}

static int clampi(int v, int hi) { return v < 0 ? 0 : v > hi ? hi : v; }

int pos_embed_interpolate(const float *src, int src_tokens, float *dst, int dst_tokens, int channels)
{
    int og = grid_side(src_tokens), ng = grid_side(dst_tokens);
    if (og * og + 1 != src_tokens || ng * ng + 1 != dst_tokens)
        return albef_error(ALBEF_ERR_INVALID,
                           "pos_embed: %d and %d tokens are not 1 + a square number of patches", src_tokens,
                           dst_tokens);
    memcpy(dst, src, sizeof(float) * (size_t)channels); /* [CLS] */
    const float *grid = src + channels;
    float *out = dst + channels;
    if (og == ng) {
        memcpy(out, grid, sizeof(float) * (size_t)og * og * channels);
        return ALBEF_OK;
    }
    float scale = (float)og / (float)ng;
    for (int oy = 0; oy < ng; oy++) {
        float ry = scale * (oy + 0.5f) - 0.5f;
        int iy = (int)floorf(ry);
        float wy[4];
        cubic_coefficients(wy, ry - (float)iy);
        for (int ox = 0; ox < ng; ox++) {
            float rx = scale * (ox + 0.5f) - 0.5f;
            int ix = (int)floorf(rx);
            float wx[4];
            cubic_coefficients(wx, rx - (float)ix);
            float *o = out + ((size_t)oy * ng + ox) * channels;
            for (int c = 0; c < channels; c++) {
                float rows[4];
                for (int j = 0; j < 4; j++) {
                    int y = clampi(iy - 1 + j, og - 1);
                    const float *row = grid + (size_t)y * og * channels + c;
                    rows[j] = row[(size_t)clampi(ix - 1, og - 1) * channels] * wx[0] +
                              row[(size_t)clampi(ix, og - 1) * channels] * wx[1] +
                              row[(size_t)clampi(ix + 1, og - 1) * channels] * wx[2] +
                              row[(size_t)clampi(ix + 2, og - 1) * channels] * wx[3];
                }
                o[c] = rows[0] * wy[0] + rows[1] * wy[1] + rows[2] * wy[2] + rows[3] * wy[3];
            }
        }
    }
    return ALBEF_OK;
}
