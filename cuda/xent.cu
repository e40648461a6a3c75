// Row softmax and soft-target cross-entropy: one block per row. The
// cross-entropy never stores probabilities: it reads the logits for the max,
// the log-sum-exp and the loss, and forms each gradient element from
// exp(x - lse) as it writes it.
#include "cuda_internal.cuh"

namespace {

__global__ void softmax_rows_kernel(float *y, const float *x, int64_t c)
{
    __shared__ float red[32];
    const float *xr = x + (int64_t)blockIdx.x * c;
    float *yr = y + (int64_t)blockIdx.x * c;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        mx = fmaxf(mx, xr[i]);
    mx = cuda_block_max(mx, red); /* every read of x is done: y may alias it */
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
        float e = expf(xr[i] - mx);
        yr[i] = e;
        sum += e;
    }
    float inv = 1.0f / cuda_block_sum(sum, red);
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        yr[i] *= inv;
}

struct xent_args {
    float hard_weight, soft_weight, grad_scale;
};

__device__ __forceinline__ float xent_target(const xent_args &p, const float *q, const int32_t *labels, int32_t y,
                                             int64_t i)
{
    float t = q ? p.soft_weight * q[i] : 0.0f;
    if (labels && i == y)
        t += p.hard_weight;
    return t;
}

__global__ void softmax_xent_kernel(xent_args p, float *loss, float *dlogits, const float *logits,
                                    const int32_t *labels, const float *soft, int64_t c)
{
    __shared__ float red[32];
    __shared__ double red64[32];
    int64_t r = blockIdx.x;
    const float *x = logits + r * c;
    float *g = dlogits ? dlogits + r * c : nullptr;
    const float *q = soft ? soft + r * c : nullptr;
    int32_t y = labels ? labels[r] : -1;
    if (labels && y == -100) {
        if (threadIdx.x == 0)
            loss[r] = 0.0f;
        if (g)
            for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
                g[i] = 0.0f;
        return;
    }
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        mx = fmaxf(mx, x[i]);
    mx = cuda_block_max(mx, red);
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        sum += expf(x[i] - mx);
    float lse = mx + logf(cuda_block_sum(sum, red));
    double total = 0.0, tsum = 0.0;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
        float t = xent_target(p, q, labels, y, i);
        if (t != 0.0f) {
            total -= (double)t * (double)(x[i] - lse);
            tsum += t;
        }
    }
    total = cuda_block_sum_f64(total, red64);
    tsum = cuda_block_sum_f64(tsum, red64);
    if (threadIdx.x == 0)
        loss[r] = (float)total;
    if (g) {
        float ts = (float)tsum;
        for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
            g[i] = p.grad_scale * (ts * expf(x[i] - lse) - xent_target(p, q, labels, y, i));
    }
}

unsigned threads_for(int64_t cols) { return cols >= 8192 ? 1024 : cols >= 1024 ? 512 : 128; }

} // namespace

void cuda_softmax_rows(backend *be, tensor out, tensor in)
{
    int64_t m = tensor_rows(in), c = tensor_cols(in);
    if (!m || !c)
        return;
    cuda_launch(be, "softmax_rows", softmax_rows_kernel, (unsigned)m, threads_for(c), 0, cuda_f32(out), cuda_cf32(in),
                c);
}

void cuda_softmax_xent(backend *be, const xent_params *p, tensor loss, tensor dlogits, tensor logits, tensor labels,
                       tensor soft)
{
    int64_t m = tensor_rows(logits), c = tensor_cols(logits);
    if (!m || !c)
        return;
    xent_args a = {p->hard_weight, p->soft_weight, p->grad_scale};
    cuda_launch(be, "softmax_xent", softmax_xent_kernel, (unsigned)m, threads_for(c), 0, a, cuda_f32(loss),
                tensor_present(dlogits) ? cuda_f32(dlogits) : nullptr, cuda_cf32(logits),
                tensor_present(labels) ? cuda_ci32(labels) : nullptr, tensor_present(soft) ? cuda_cf32(soft) : nullptr,
                c);
}
