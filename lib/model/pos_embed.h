/* Resizing ViT position embeddings to another patch grid, as ALBEF's
 * interpolate_pos_embed does: the [CLS] row is kept, the grid rows are
 * resized with PyTorch's bicubic F.interpolate (A = -0.75,
 * align_corners=False, borders clamped), in float arithmetic and the same
 * order of operations, so the result matches PyTorch to rounding. */
#ifndef ALBEF_MODEL_POS_EMBED_H
#define ALBEF_MODEL_POS_EMBED_H

/* src (src_tokens, C) and dst (dst_tokens, C), each token count 1 + g*g. */
int pos_embed_interpolate(const float *src, int src_tokens, float *dst, int dst_tokens, int channels);

#endif
