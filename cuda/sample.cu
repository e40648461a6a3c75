// ITM's hard negatives on the device: the sampling weights and one draw per
// row, so that the trainer need not download the in-batch similarities in
// the middle of a step. The arithmetic is cpu_itm_negatives's and
// itm_draw_index's (ops.h), operation for operation and in the same order,
// and the uniforms come from the same counter-based hash: both back ends draw
// the same negatives from the same weights.
//
// One thread per row: B is a batch (tens to hundreds of samples), and a
// sequential row keeps the CPU's order of summation.
#include "cuda_internal.cuh"

namespace {

__global__ void itm_negatives_kernel(float *w, int32_t *neg, const float *logits, int64_t b, int64_t n,
                                     const int32_t *same, int uniform, uint64_t seed)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= b)
        return;
    const float *x = logits + i * n;
    float *wi = w + i * b;
    float mx = -INFINITY;
    for (int64_t j = 0; j < b; j++)
        mx = x[j] > mx ? x[j] : mx;
    double s = 0;
    for (int64_t j = 0; j < b; j++)
        s += exp((double)x[j] - mx);
    for (int64_t j = 0; j < b; j++) {
        bool excluded = same ? same[j] == same[i] : j == i;
        wi[j] = excluded ? 0.0f : uniform ? 1.0f : (float)(exp((double)x[j] - mx) / s);
    }
    neg[i] = b < 2 ? 0 : itm_draw_index(wi, b, i, itm_draw_uniform(seed, i));
}

} // namespace

void cuda_itm_negatives(backend *be, tensor w, tensor neg, tensor logits, tensor same, int uniform, uint64_t seed)
{
    int64_t b = w.shape[0], n = tensor_cols(logits);
    if (!b)
        return;
    if (n < b) {
        cuda_record_invalid(be, "itm_negatives: logits have %lld columns, fewer than the batch %lld", (long long)n,
                            (long long)b);
        return;
    }
    const int threads = 64;
    cuda_launch(be, "itm_negatives", itm_negatives_kernel, (unsigned)((b + threads - 1) / threads), threads, 0,
                cuda_f32(w), static_cast<int32_t *>(neg.data), cuda_cf32(logits), b, n,
                tensor_present(same) ? cuda_ci32(same) : nullptr, uniform, seed);
}
