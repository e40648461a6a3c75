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

// dropout_hash() of ops.h.
__device__ __forceinline__ uint32_t hash32(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

// itm_draw_uniform() of ops.h.
__device__ __forceinline__ double draw_uniform(uint64_t seed, int64_t row)
{
    uint64_t bits = ((uint64_t)hash32(seed, 2 * (uint64_t)row) << 32) | hash32(seed, 2 * (uint64_t)row + 1);
    return (double)(bits >> 11) / 9007199254740992.0;
}

// itm_draw_index() of ops.h.
__device__ int32_t draw_index(const float *w, int64_t n, int64_t self, double u)
{
    double total = 0;
    for (int64_t j = 0; j < n; j++)
        total += w[j];
    if (!(total > 0)) {
        int64_t j = (int64_t)(u * (double)(n - 1));
        return (int32_t)(j >= self ? j + 1 : j);
    }
    double x = u * total, acc = 0;
    for (int64_t j = 0; j < n; j++) {
        acc += w[j];
        if (x < acc && w[j] > 0)
            return (int32_t)j;
    }
    for (int64_t j = n - 1; j >= 0; j--)
        if (w[j] > 0)
            return (int32_t)j;
    return 0;
}

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
    neg[i] = b < 2 ? 0 : draw_index(wi, b, i, draw_uniform(seed, i));
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
    itm_negatives_kernel<<<(unsigned)((b + threads - 1) / threads), threads, 0, cuda_stream(be)>>>(
        cuda_f32(w), static_cast<int32_t *>(neg.data), cuda_cf32(logits), b, n,
        tensor_present(same) ? cuda_ci32(same) : nullptr, uniform, seed);
    cuda_check_launch(be, "itm_negatives");
}
