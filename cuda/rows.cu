// Row movements: BERT embeddings, ViT patches and token assembly, [CLS]
// selection, gathers and scatter-adds.
//
// Scatter-adds (embedding and row gradients) are deterministic without
// sorting: one block per source row, and only the block of the first row
// that names a target writes it, summing every row with that target in
// order: the CPU's order, so the sums agree with it bit for bit.
#include "cuda_internal.cuh"

namespace {

__global__ void embedding_forward_kernel(float *out, const int32_t *ids, const float *word, const float *pos,
                                         const float *type_row, int64_t rows, int64_t t, int64_t c, int64_t vocab,
                                         int *status)
{
    CUDA_GRID_STRIDE(e, rows * c)
    {
        int64_t r = e / c, i = e - r * c;
        int32_t id = ids[r];
        if (id < 0 || id >= vocab) {
            out[e] = __int_as_float(0x7fc00000); /* NaN: the loss shows it too */
            atomicOr(status, CUDA_STATUS_BAD_TOKEN);
            continue;
        }
        float we = word[(int64_t)id * c + i], pe = pos[(r % t) * c + i];
        out[e] = type_row ? (we + type_row[i]) + pe : we + pe;
    }
}

// dst[idx[i]] += src[i] (rows of `row` elements) for i in order; block
// (i, column chunk).
__global__ void scatter_add_rows_kernel(float *dst, int64_t dst_rows, const float *src, const int32_t *idx, int64_t n,
                                        int64_t row, int *status, int bad_bit)
{
    int64_t i = blockIdx.x;
    int32_t target = idx[i];
    if (target < 0 || target >= dst_rows) {
        if (threadIdx.x == 0 && blockIdx.y == 0)
            atomicOr(status, bad_bit);
        return;
    }
    int seen = 0;
    for (int64_t k = threadIdx.x; k < i; k += blockDim.x)
        seen |= idx[k] == target;
    if (__syncthreads_or(seen))
        return;
    float *d = dst + (int64_t)target * row;
    for (int64_t c = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; c < row; c += (int64_t)gridDim.y * blockDim.x) {
        float acc = d[c];
        for (int64_t k = i; k < n; k++)
            if (idx[k] == target)
                acc += src[k * row + c];
        d[c] = acc;
    }
}

// dpos[p] += sum over b of dout[b, p] (b in order), for p < t.
__global__ void position_grad_kernel(float *dpos, const float *dout, int64_t batch, int64_t t, int64_t c)
{
    CUDA_GRID_STRIDE(e, t * c)
    {
        float acc = dpos[e];
        for (int64_t b = 0; b < batch; b++)
            acc += dout[b * t * c + e];
        dpos[e] = acc;
    }
}

// dtype_row[i] += sum over every row of dout[r, i], rows in order.
__global__ void all_rows_grad_kernel(float *drow, const float *dout, int64_t rows, int64_t c)
{
    CUDA_GRID_STRIDE(i, c)
    {
        float acc = drow[i];
        for (int64_t r = 0; r < rows; r++)
            acc += dout[r * c + i];
        drow[i] = acc;
    }
}

// patches (B * N, 3 * P * P), each flattened as (channel, y, x), from
// images (B, 3, H, W).
__global__ void patchify_kernel(float *patches, const float *images, int64_t bsz, int64_t ch, int64_t hh, int64_t ww,
                                int patch)
{
    int64_t gy = hh / patch, gx = ww / patch, pp = (int64_t)patch * patch, per_patch = ch * pp;
    CUDA_GRID_STRIDE(e, bsz * gy * gx * per_patch)
    {
        int64_t bn = e / per_patch, rem = e - bn * per_patch;
        int64_t c = rem / pp, yx = rem - c * pp, y = yx / patch, x = yx - y * patch;
        int64_t b = bn / (gy * gx), n = bn - b * (gy * gx), py = n / gx, px = n - py * gx;
        patches[e] = images[((b * ch + c) * hh + py * patch + y) * ww + px * patch + x];
    }
}

// out (B, T, C) = [cls ; tokens (B, T - 1, C)] + pos (T, C)
__global__ void vit_embed_forward_kernel(float *out, const float *tokens, const float *cls, const float *pos,
                                         int64_t bsz, int64_t t, int64_t c)
{
    CUDA_GRID_STRIDE(e, bsz * t * c)
    {
        int64_t r = e / c, k = e - r * c, b = r / t, i = r - b * t;
        float src = i == 0 ? cls[k] : tokens[(b * (t - 1) + i - 1) * c + k];
        out[e] = src + pos[i * c + k];
    }
}

__global__ void vit_embed_tokens_grad_kernel(float *dtokens, const float *dout, int64_t bsz, int64_t t, int64_t c)
{
    CUDA_GRID_STRIDE(e, bsz * (t - 1) * c)
    {
        int64_t per = (t - 1) * c, b = e / per, rest = e - b * per;
        dtokens[e] = dout[b * t * c + c + rest];
    }
}

// dcls[k] += sum over b of dout[b, 0, k], in order.
__global__ void vit_embed_cls_grad_kernel(float *dcls, const float *dout, int64_t bsz, int64_t t, int64_t c)
{
    CUDA_GRID_STRIDE(k, c)
    {
        float acc = dcls[k];
        for (int64_t b = 0; b < bsz; b++)
            acc += dout[b * t * c + k];
        dcls[k] = acc;
    }
}

__global__ void copy_rows_kernel(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                                 int64_t cols, int accumulate)
{
    CUDA_GRID_STRIDE(e, rows * cols)
    {
        int64_t r = e / cols, c = e - r * cols;
        float v = src[r * src_stride + c];
        float *d = dst + r * dst_stride + c;
        *d = accumulate ? *d + v : v;
    }
}

__global__ void gather_rows_kernel(float *out, const float *in, const int32_t *idx, int64_t n, int64_t row,
                                   int64_t in_rows, int *status)
{
    CUDA_GRID_STRIDE(e, n * row)
    {
        int64_t i = e / row, c = e - i * row;
        int32_t s = idx[i];
        if (s < 0 || s >= in_rows) {
            out[e] = __int_as_float(0x7fc00000);
            atomicOr(status, CUDA_STATUS_BAD_ROW_INDEX);
            continue;
        }
        out[e] = in[(int64_t)s * row + c];
    }
}

void scatter_add(backend *be, float *dst, int64_t dst_rows, const float *src, const int32_t *idx, int64_t n,
                 int64_t row, int bad_bit, const char *op)
{
    if (!n || !row)
        return;
    int64_t chunks = (row + 255) / 256;
    dim3 grid((unsigned)n, (unsigned)(chunks < 65535 ? chunks : 65535));
    cuda_launch(be, op, scatter_add_rows_kernel, grid, 256, 0, dst, dst_rows, src, idx, n, row, cuda_device_status(be),
                bad_bit);
}

} // namespace

void cuda_embedding_forward(backend *be, tensor out, tensor ids, tensor word, tensor pos, tensor type_row)
{
    int64_t bsz = ids.shape[0], t = ids.shape[1], c = tensor_cols(word);
    if (!bsz || !t || !c)
        return;
    cuda_launch(be, "embedding_forward", embedding_forward_kernel, cuda_grid(be, bsz * t * c), 256, 0, cuda_f32(out),
                cuda_ci32(ids), cuda_cf32(word), cuda_cf32(pos),
                tensor_present(type_row) ? cuda_cf32(type_row) : nullptr, bsz * t, t, c, word.shape[0],
                cuda_device_status(be));
}

void cuda_embedding_backward(backend *be, tensor dword, tensor dpos, tensor dtype_row, tensor dout, tensor ids)
{
    int64_t bsz = ids.shape[0], t = ids.shape[1], c = tensor_cols(dout);
    if (!bsz || !t || !c)
        return;
    if (tensor_present(dword))
        scatter_add(be, cuda_f32(dword), dword.shape[0], cuda_cf32(dout), cuda_ci32(ids), bsz * t, c,
                    CUDA_STATUS_BAD_TOKEN, "embedding_backward");
    if (tensor_present(dpos)) {
        cuda_launch(be, "embedding_backward", position_grad_kernel, cuda_grid(be, t * c), 256, 0, cuda_f32(dpos),
                    cuda_cf32(dout), bsz, t, c);
    }
    if (tensor_present(dtype_row)) {
        cuda_launch(be, "embedding_backward", all_rows_grad_kernel, cuda_grid(be, c, 128), 128, 0, cuda_f32(dtype_row),
                    cuda_cf32(dout), bsz * t, c);
    }
}

void cuda_patchify(backend *be, tensor patches, tensor images, int patch)
{
    int64_t n = tensor_numel(patches);
    if (!n)
        return;
    if (patch < 1) {
        cuda_record_invalid(be, "patchify: patch size %d", patch);
        return;
    }
    cuda_launch(be, "patchify", patchify_kernel, cuda_grid(be, n), 256, 0, cuda_f32(patches), cuda_cf32(images),
                images.shape[0], images.shape[1], images.shape[2], images.shape[3], patch);
}

void cuda_vit_embed_forward(backend *be, tensor out, tensor patch_tokens, tensor cls, tensor pos)
{
    int64_t bsz = out.shape[0], t = out.shape[1], c = out.shape[2];
    if (!bsz || !t || !c)
        return;
    cuda_launch(be, "vit_embed_forward", vit_embed_forward_kernel, cuda_grid(be, bsz * t * c), 256, 0, cuda_f32(out),
                cuda_cf32(patch_tokens), cuda_cf32(cls), cuda_cf32(pos), bsz, t, c);
}

void cuda_vit_embed_backward(backend *be, tensor dpatch_tokens, tensor dcls, tensor dpos, tensor dout)
{
    int64_t bsz = dout.shape[0], t = dout.shape[1], c = dout.shape[2];
    if (!bsz || !t || !c)
        return;
    if (tensor_present(dpatch_tokens) && t > 1) {
        cuda_launch(be, "vit_embed_backward", vit_embed_tokens_grad_kernel, cuda_grid(be, bsz * (t - 1) * c), 256, 0,
                    cuda_f32(dpatch_tokens), cuda_cf32(dout), bsz, t, c);
    }
    if (tensor_present(dcls)) {
        cuda_launch(be, "vit_embed_backward", vit_embed_cls_grad_kernel, cuda_grid(be, c, 128), 128, 0, cuda_f32(dcls),
                    cuda_cf32(dout), bsz, t, c);
    }
    if (tensor_present(dpos)) {
        // the per-position sums over the batch are the embedding's position gradient
        cuda_launch(be, "vit_embed_backward", position_grad_kernel, cuda_grid(be, t * c), 256, 0, cuda_f32(dpos),
                    cuda_cf32(dout), bsz, t, c);
    }
}

void cuda_copy_rows(backend *be, tensor dst, int64_t dst_stride, tensor src, int64_t src_stride, int64_t rows,
                    int64_t cols, int accumulate)
{
    if (!rows || !cols)
        return;
    cuda_launch(be, "copy_rows", copy_rows_kernel, cuda_grid(be, rows * cols), 256, 0, cuda_f32(dst), dst_stride,
                cuda_cf32(src), src_stride, rows, cols, accumulate);
}

void cuda_gather_rows(backend *be, tensor out, tensor in, tensor idx)
{
    int64_t n = idx.shape[0], row = in.shape[0] ? tensor_numel(in) / in.shape[0] : 0;
    if (!n || !row)
        return;
    cuda_launch(be, "gather_rows", gather_rows_kernel, cuda_grid(be, n * row), 256, 0, cuda_f32(out), cuda_cf32(in),
                cuda_ci32(idx), n, row, in.shape[0], cuda_device_status(be));
}

void cuda_scatter_add_rows(backend *be, tensor dst, tensor src, tensor idx)
{
    int64_t n = idx.shape[0], row = dst.shape[0] ? tensor_numel(dst) / dst.shape[0] : 0;
    scatter_add(be, cuda_f32(dst), dst.shape[0], cuda_cf32(src), cuda_ci32(idx), n, row, CUDA_STATUS_BAD_ROW_INDEX,
                "scatter_add_rows");
}
