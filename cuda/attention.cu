// Scaled dot-product attention, forward and backward, in fp32 on strided
// q, k, v rows (a fused qkv projection is read in place).
//
// Forward: one block per (batch, head, 32 query rows). It writes the scores
// of its rows into probs key tile by key tile (K tiles in shared memory),
// turns each row into a softmax in place (one warp per row), then forms
// O = P' V over V tiles, P' being probs with the dropout mask regenerated
// from (seed, index), never stored.
//
// Backward, two launches on the stream:
//   per query tile: dP = dropout'(dO V^T) into scratch, then
//                   dS = P (dP - rowsum(P dP)) * scale in place, then dQ = dS K;
//   per key tile:   dV = P'^T dO and dK = dS^T Q, summing query tiles in order.
// Every sum runs in a fixed order: no atomics, reruns agree bit for bit.
//
// A plain tiled kernel (scalar fp32 FMAs from shared memory), written for
// parity with the CPU first; head_dim up to 128, compiled for head_dim <= 64
// (ALBEF's) and <= 128 so that the common case neither computes nor holds
// the unused half of the output dims.
#include "cuda_internal.cuh"

namespace {

#define BQ 32          /* query rows per block */
#define BK 32          /* keys per tile */
#define MAX_D 128      /* largest head_dim */
#define TY 4           /* warps per block */
#define PER_TY (BQ / TY) /* rows (or keys) per warp */

struct attn_args {
    int B, H, Tq, Tk, D;
    int64_t q_stride, k_stride, v_stride, o_stride;
    float scale;
    int causal;
    float causal_value;
    int dropout;
    uint32_t threshold;
    float keep_scale;
    uint64_t seed;
    int kv_shared;
};

// tile (32, D) with row stride ld <- the first `rows` rows of src (row stride
// `stride`); rows past them are zero.
__device__ __forceinline__ void load_tile(float *tile, const float *src, int64_t stride, int rows, int D, int ld,
                                          int tid)
{
    for (int e = tid; e < 32 * D; e += 32 * TY) {
        int r = e / D, d = e - r * D;
        tile[r * ld + d] = r < rows ? src[(int64_t)r * stride + d] : 0.0f;
    }
}

__device__ __forceinline__ float dropped(const attn_args &a, float p, uint64_t index)
{
    if (!a.dropout)
        return p;
    return cuda_dropout_keep(a.seed, index, a.threshold) ? p * a.keep_scale : 0.0f;
}

// acc[u] += sum_d A[ty + TY u][d] * B[tx][d]: the (row, key) products of a
// row tile A and a key tile B, both (32, D) in shared memory.
__device__ __forceinline__ void tile_dots(float acc[PER_TY], const float *a_tile, const float *b_tile, int D, int ld)
{
    int tx = threadIdx.x, ty = threadIdx.y;
    for (int d = 0; d < D; d++) {
        float bd = b_tile[tx * ld + d];
#pragma unroll
        for (int u = 0; u < PER_TY; u++)
            acc[u] += a_tile[(ty + TY * u) * ld + d] * bd;
    }
}

// acc[u][w] += sum_c W[ty + TY u][c] * M[c][tx + 32 w] over c < n: a (32, 32)
// weight tile W (row stride BK + 1) times a (32, D) tile M; DW output dims
// per lane.
template <int DW>
__device__ __forceinline__ void tile_weighted_sum(float acc[PER_TY][DW], const float *w_tile, const float *m_tile,
                                                  int n, int D, int ld)
{
    int tx = threadIdx.x, ty = threadIdx.y;
    for (int c = 0; c < n; c++) {
        float mv[DW];
#pragma unroll
        for (int w = 0; w < DW; w++) {
            int d = tx + 32 * w;
            mv[w] = d < D ? m_tile[c * ld + d] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < PER_TY; u++) {
            float p = w_tile[(ty + TY * u) * (BK + 1) + c];
#pragma unroll
            for (int w = 0; w < DW; w++)
                acc[u][w] += p * mv[w];
        }
    }
}

// rows (32 x D) of acc -> dst rows of stride `stride`, the first `rows` only.
template <int DW>
__device__ __forceinline__ void store_rows(float *dst, int64_t stride, const float acc[PER_TY][DW], int rows, int D)
{
    int tx = threadIdx.x, ty = threadIdx.y;
#pragma unroll
    for (int u = 0; u < PER_TY; u++) {
        int r = ty + TY * u;
        if (r >= rows)
            continue;
#pragma unroll
        for (int w = 0; w < DW; w++) {
            int d = tx + 32 * w;
            if (d < D)
                dst[(int64_t)r * stride + d] = acc[u][w];
        }
    }
}

template <int MAXD>
__global__ void __launch_bounds__(32 * TY) attention_forward_kernel(attn_args a, float *out, float *probs,
                                                                    const float *q, const float *k, const float *v,
                                                                    const float *mask)
{
    constexpr int DW = MAXD / 32; /* output dims per lane */
    __shared__ float q_tile[BQ * (MAXD + 1)];
    __shared__ float kv_tile[BK * (MAXD + 1)];
    __shared__ float p_tile[BQ * (BK + 1)];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * BQ;
    const int D = a.D, ld = D + 1, Tk = a.Tk;
    const int kvb = a.kv_shared ? 0 : b;
    const int rows = min(BQ, a.Tq - i0);
    const float *qb = q + ((int64_t)b * a.Tq + i0) * a.q_stride + (int64_t)h * D;
    const float *kb = k + (int64_t)kvb * Tk * a.k_stride + (int64_t)h * D;
    const float *vb = v + (int64_t)kvb * Tk * a.v_stride + (int64_t)h * D;
    const float *mb = mask ? mask + (int64_t)b * Tk : nullptr;
    const int64_t head = ((int64_t)b * a.H + h) * a.Tq * Tk; /* probs offset and dropout counter base */
    float *pb = probs + head + (int64_t)i0 * Tk;             /* (rows, Tk) */

    load_tile(q_tile, qb, a.q_stride, rows, D, ld, tid);
    // scores, with the mask and the causal term added in the CPU's order
    for (int j0 = 0; j0 < Tk; j0 += BK) {
        int keys = min(BK, Tk - j0);
        __syncthreads();
        load_tile(kv_tile, kb + (int64_t)j0 * a.k_stride, a.k_stride, keys, D, ld, tid);
        __syncthreads();
        float acc[PER_TY] = {};
        tile_dots(acc, q_tile, kv_tile, D, ld);
        int j = j0 + tx;
        if (tx < keys) {
#pragma unroll
            for (int u = 0; u < PER_TY; u++) {
                int r = ty + TY * u;
                if (r >= rows)
                    continue;
                float s = acc[u] * a.scale;
                if (mb)
                    s += mb[j];
                if (a.causal && j > i0 + r)
                    s += a.causal_value;
                pb[(int64_t)r * Tk + j] = s;
            }
        }
    }
    __syncthreads();
    // softmax in place, one warp per row
    for (int u = 0; u < PER_TY; u++) {
        int r = ty + TY * u;
        if (r >= rows)
            break;
        float *row = pb + (int64_t)r * Tk;
        float mx = -INFINITY;
        for (int j = tx; j < Tk; j += 32)
            mx = fmaxf(mx, row[j]);
        mx = cuda_warp_max(mx);
        float sum = 0.0f;
        for (int j = tx; j < Tk; j += 32) {
            float e = expf(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / cuda_warp_sum(sum);
        for (int j = tx; j < Tk; j += 32)
            row[j] *= inv;
    }
    __syncthreads();
    // O = P' V
    float o[PER_TY][DW] = {};
    for (int j0 = 0; j0 < Tk; j0 += BK) {
        int keys = min(BK, Tk - j0);
        __syncthreads();
        load_tile(kv_tile, vb + (int64_t)j0 * a.v_stride, a.v_stride, keys, D, ld, tid);
        for (int e = tid; e < BQ * BK; e += 32 * TY) {
            int r = e / BK, c = e - r * BK;
            float p = 0.0f;
            if (r < rows && c < keys) {
                int64_t at = (int64_t)r * Tk + j0 + c;
                p = dropped(a, pb[at], (uint64_t)(head + (int64_t)i0 * Tk + at));
            }
            p_tile[r * (BK + 1) + c] = p;
        }
        __syncthreads();
        tile_weighted_sum(o, p_tile, kv_tile, keys, D, ld);
    }
    store_rows(out + ((int64_t)b * a.Tq + i0) * a.o_stride + (int64_t)h * D, a.o_stride, o, rows, D);
}

// Per query tile: dS into scratch, then dQ = dS K.
template <int MAXD>
__global__ void __launch_bounds__(32 * TY) attention_backward_query_kernel(attn_args a, float *dq, float *scratch,
                                                                           const float *dout, const float *probs,
                                                                           const float *k, const float *v)
{
    constexpr int DW = MAXD / 32;
    __shared__ float do_tile[BQ * (MAXD + 1)];
    __shared__ float kv_tile[BK * (MAXD + 1)];
    __shared__ float p_tile[BQ * (BK + 1)];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * BQ;
    const int D = a.D, ld = D + 1, Tk = a.Tk;
    const int rows = min(BQ, a.Tq - i0);
    const float *kb = k + (int64_t)b * Tk * a.k_stride + (int64_t)h * D;
    const float *vb = v + (int64_t)b * Tk * a.v_stride + (int64_t)h * D;
    const int64_t head = ((int64_t)b * a.H + h) * a.Tq * Tk;
    const float *pb = probs + head + (int64_t)i0 * Tk; /* (rows, Tk) */
    float *sb = scratch + head + (int64_t)i0 * Tk;     /* (rows, Tk) */

    load_tile(do_tile, dout + ((int64_t)b * a.Tq + i0) * a.o_stride + (int64_t)h * D, a.o_stride, rows, D, ld, tid);
    // dP = dropout'(dO V^T)
    for (int j0 = 0; j0 < Tk; j0 += BK) {
        int keys = min(BK, Tk - j0);
        __syncthreads();
        load_tile(kv_tile, vb + (int64_t)j0 * a.v_stride, a.v_stride, keys, D, ld, tid);
        __syncthreads();
        float acc[PER_TY] = {};
        tile_dots(acc, do_tile, kv_tile, D, ld);
        int j = j0 + tx;
        if (tx < keys) {
#pragma unroll
            for (int u = 0; u < PER_TY; u++) {
                int r = ty + TY * u;
                if (r >= rows)
                    continue;
                int64_t at = (int64_t)r * Tk + j;
                sb[at] = dropped(a, acc[u], (uint64_t)(head + (int64_t)i0 * Tk + at));
            }
        }
    }
    __syncthreads();
    // through the softmax: dS = P (dP - sum_j P dP) * scale, one warp per row
    for (int u = 0; u < PER_TY; u++) {
        int r = ty + TY * u;
        if (r >= rows)
            break;
        const float *prow = pb + (int64_t)r * Tk;
        float *srow = sb + (int64_t)r * Tk;
        float dot = 0.0f;
        for (int j = tx; j < Tk; j += 32)
            dot += prow[j] * srow[j];
        dot = cuda_warp_sum(dot);
        for (int j = tx; j < Tk; j += 32)
            srow[j] = prow[j] * (srow[j] - dot) * a.scale;
    }
    if (!dq)
        return;
    __syncthreads();
    // dQ = dS K
    float acc[PER_TY][DW] = {};
    for (int j0 = 0; j0 < Tk; j0 += BK) {
        int keys = min(BK, Tk - j0);
        __syncthreads();
        load_tile(kv_tile, kb + (int64_t)j0 * a.k_stride, a.k_stride, keys, D, ld, tid);
        for (int e = tid; e < BQ * BK; e += 32 * TY) {
            int r = e / BK, c = e - r * BK;
            p_tile[r * (BK + 1) + c] = r < rows && c < keys ? sb[(int64_t)r * Tk + j0 + c] : 0.0f;
        }
        __syncthreads();
        tile_weighted_sum(acc, p_tile, kv_tile, keys, D, ld);
    }
    store_rows(dq + ((int64_t)b * a.Tq + i0) * a.q_stride + (int64_t)h * D, a.q_stride, acc, rows, D);
}

// acc[u][w] += sum_r W[r][ty + TY u] * R[r][tx + 32 w] over r < rows: the
// key-side products, W (32 queries, 32 keys) and R (32 queries, D).
template <int DW>
__device__ __forceinline__ void tile_transposed_sum(float acc[PER_TY][DW], const float *w_tile, const float *r_tile,
                                                    int rows, int D, int ld)
{
    int tx = threadIdx.x, ty = threadIdx.y;
    for (int r = 0; r < rows; r++) {
        float x[DW];
#pragma unroll
        for (int w = 0; w < DW; w++) {
            int d = tx + 32 * w;
            x[w] = d < D ? r_tile[r * ld + d] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < PER_TY; u++) {
            float p = w_tile[r * (BK + 1) + ty + TY * u];
#pragma unroll
            for (int w = 0; w < DW; w++)
                acc[u][w] += p * x[w];
        }
    }
}

// Per key tile: dV = P'^T dO and dK = dS^T Q; thread (tx, ty) owns keys
// ty + TY u and dims tx + 32 w.
template <int MAXD>
__global__ void __launch_bounds__(32 * TY) attention_backward_key_kernel(attn_args a, float *dk, float *dv,
                                                                         const float *scratch, const float *dout,
                                                                         const float *probs, const float *q)
{
    constexpr int DW = MAXD / 32;
    __shared__ float row_tile[BQ * (MAXD + 1)];
    __shared__ float w_tile[BQ * (BK + 1)]; /* [query][key] */
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
    const int b = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * BK;
    const int D = a.D, ld = D + 1, Tk = a.Tk;
    const int keys = min(BK, Tk - j0);
    const int64_t head = ((int64_t)b * a.H + h) * a.Tq * Tk;
    float acc_v[PER_TY][DW] = {}, acc_k[PER_TY][DW] = {};
    for (int i0 = 0; i0 < a.Tq; i0 += BQ) {
        int rows = min(BQ, a.Tq - i0);
        if (dv) {
            __syncthreads();
            load_tile(row_tile, dout + ((int64_t)b * a.Tq + i0) * a.o_stride + (int64_t)h * D, a.o_stride, rows, D,
                      ld, tid);
            for (int e = tid; e < BQ * BK; e += 32 * TY) {
                int r = e / BK, c = e - r * BK;
                int64_t at = (int64_t)(i0 + r) * Tk + j0 + c;
                w_tile[r * (BK + 1) + c] =
                    r < rows && c < keys ? dropped(a, probs[head + at], (uint64_t)(head + at)) : 0.0f;
            }
            __syncthreads();
            tile_transposed_sum(acc_v, w_tile, row_tile, rows, D, ld);
        }
        if (dk) {
            __syncthreads();
            load_tile(row_tile, q + ((int64_t)b * a.Tq + i0) * a.q_stride + (int64_t)h * D, a.q_stride, rows, D, ld,
                      tid);
            for (int e = tid; e < BQ * BK; e += 32 * TY) {
                int r = e / BK, c = e - r * BK;
                int64_t at = (int64_t)(i0 + r) * Tk + j0 + c;
                w_tile[r * (BK + 1) + c] = r < rows && c < keys ? scratch[head + at] : 0.0f;
            }
            __syncthreads();
            tile_transposed_sum(acc_k, w_tile, row_tile, rows, D, ld);
        }
    }
    if (dv)
        store_rows(dv + ((int64_t)b * Tk + j0) * a.v_stride + (int64_t)h * D, a.v_stride, acc_v, keys, D);
    if (dk)
        store_rows(dk + ((int64_t)b * Tk + j0) * a.k_stride + (int64_t)h * D, a.k_stride, acc_k, keys, D);
}

int check_params(backend *be, const attn_params *p, const char *op)
{
    if (p->head_dim < 1 || p->head_dim > MAX_D) {
        cuda_record_invalid(be, "%s: head_dim %d is outside 1..%d", op, p->head_dim, MAX_D);
        return 0;
    }
    if (p->heads > 65535 || p->batch > 65535) {
        cuda_record_invalid(be, "%s: %d heads x batch %d exceeds the grid (65535 each)", op, p->heads, p->batch);
        return 0;
    }
    return p->batch > 0 && p->heads > 0 && p->q_len > 0 && p->kv_len > 0;
}

attn_args make_args(const attn_params *p)
{
    attn_args a;
    a.B = p->batch;
    a.H = p->heads;
    a.Tq = p->q_len;
    a.Tk = p->kv_len;
    a.D = p->head_dim;
    a.q_stride = p->q_stride;
    a.k_stride = p->k_stride;
    a.v_stride = p->v_stride;
    a.o_stride = (int64_t)p->heads * p->head_dim;
    a.scale = p->scale;
    a.causal = p->causal;
    a.causal_value = p->causal_value;
    a.dropout = p->dropout > 0.0f;
    a.threshold = a.dropout ? cuda_dropout_threshold(p->dropout) : 0;
    a.keep_scale = a.dropout ? 1.0f / (1.0f - p->dropout) : 1.0f;
    a.seed = p->seed;
    a.kv_shared = p->kv_shared;
    return a;
}

} // namespace

void cuda_attention_forward(backend *be, const attn_params *p, tensor out, tensor probs, tensor q, tensor k, tensor v,
                            tensor mask)
{
    if (!check_params(be, p, "attention_forward"))
        return;
    int64_t scores = (int64_t)p->batch * p->heads * p->q_len * p->kv_len;
    if (tensor_numel(probs) != scores) {
        cuda_record_invalid(be, "attention_forward: probs has %lld elements, expected B*H*Tq*Tk = %lld",
                            (long long)tensor_numel(probs), (long long)scores);
        return;
    }
    if (tensor_present(mask) && tensor_numel(mask) != (int64_t)p->batch * p->kv_len) {
        cuda_record_invalid(be, "attention_forward: mask has %lld elements, expected (B, Tk) = %lld",
                            (long long)tensor_numel(mask), (long long)p->batch * p->kv_len);
        return;
    }
    attn_args a = make_args(p);
    dim3 grid((unsigned)((p->q_len + BQ - 1) / BQ), (unsigned)p->heads, (unsigned)p->batch), block(32, TY);
    const float *m = tensor_present(mask) ? cuda_cf32(mask) : nullptr;
    if (p->head_dim <= 64)
        attention_forward_kernel<64><<<grid, block, 0, cuda_stream(be)>>>(a, cuda_f32(out), cuda_f32(probs),
                                                                          cuda_cf32(q), cuda_cf32(k), cuda_cf32(v), m);
    else
        attention_forward_kernel<MAX_D><<<grid, block, 0, cuda_stream(be)>>>(
            a, cuda_f32(out), cuda_f32(probs), cuda_cf32(q), cuda_cf32(k), cuda_cf32(v), m);
    cuda_check_launch(be, "attention_forward");
}

void cuda_attention_backward(backend *be, const attn_params *p, tensor dq, tensor dk, tensor dv, tensor scratch,
                             tensor dout, tensor probs, tensor q, tensor k, tensor v)
{
    if (!check_params(be, p, "attention_backward"))
        return;
    if (p->kv_shared) {
        cuda_record_invalid(be, "attention_backward: kv_shared attention has no backward pass");
        return;
    }
    int64_t scores = (int64_t)p->batch * p->heads * p->q_len * p->kv_len;
    if (tensor_numel(scratch) != scores || tensor_numel(probs) != scores) {
        cuda_record_invalid(be, "attention_backward: scratch and probs have %lld and %lld elements, expected %lld",
                            (long long)tensor_numel(scratch), (long long)tensor_numel(probs), (long long)scores);
        return;
    }
    attn_args a = make_args(p);
    dim3 block(32, TY);
    dim3 grid_q((unsigned)((p->q_len + BQ - 1) / BQ), (unsigned)p->heads, (unsigned)p->batch);
    float *dq_p = tensor_present(dq) ? cuda_f32(dq) : nullptr;
    if (p->head_dim <= 64)
        attention_backward_query_kernel<64><<<grid_q, block, 0, cuda_stream(be)>>>(
            a, dq_p, cuda_f32(scratch), cuda_cf32(dout), cuda_cf32(probs), cuda_cf32(k), cuda_cf32(v));
    else
        attention_backward_query_kernel<MAX_D><<<grid_q, block, 0, cuda_stream(be)>>>(
            a, dq_p, cuda_f32(scratch), cuda_cf32(dout), cuda_cf32(probs), cuda_cf32(k), cuda_cf32(v));
    cuda_check_launch(be, "attention_backward");
    if (!tensor_present(dk) && !tensor_present(dv))
        return;
    dim3 grid_k((unsigned)((p->kv_len + BK - 1) / BK), (unsigned)p->heads, (unsigned)p->batch);
    float *dk_p = tensor_present(dk) ? cuda_f32(dk) : nullptr, *dv_p = tensor_present(dv) ? cuda_f32(dv) : nullptr;
    if (p->head_dim <= 64)
        attention_backward_key_kernel<64><<<grid_k, block, 0, cuda_stream(be)>>>(
            a, dk_p, dv_p, cuda_cf32(scratch), cuda_cf32(dout), cuda_cf32(probs), cuda_cf32(q));
    else
        attention_backward_key_kernel<MAX_D><<<grid_k, block, 0, cuda_stream(be)>>>(
            a, dk_p, dv_p, cuda_cf32(scratch), cuda_cf32(dout), cuda_cf32(probs), cuda_cf32(q));
    cuda_check_launch(be, "attention_backward");
}
