// Scaled dot-product attention, forward and backward, in fp32 on strided
// q, k, v rows (a fused qkv projection is read in place), "flash" style: no
// (Tq, Tk) matrix is ever stored. The back end's attention layout is
// ATTN_LAYOUT_LSE (ops.h): the forward pass keeps two floats per query row,
// its log-sum-exp as the max m and log l (l = sum exp(s - m)), and the
// backward pass recomputes the probabilities from q, k, the mask and them.
//
// Forward: one block per (batch, head, 32 query rows). Per key tile (K, then
// V, in shared memory) it forms the scores of its rows, folds them into a
// running row max m and sum l (online softmax: when the max grows, l and the
// output accumulator are rescaled by exp(m_old - m_new)), and adds P' V, P'
// being exp(s - m) times the dropout mask regenerated from (seed, index).
// At the end out = acc / l, and m and log(l) are saved: state (B, H, Tq, 2).
//
// Backward, two launches on the stream, P = exp((s - m) - log l) recomputed
// tile by tile in both (the scores bit for bit as the forward formed them),
// every sum in a fixed order (no atomics: reruns agree bit for bit):
//   per query tile: D = rowsum(dO * O) into scratch (B, H, Tq), then
//                   dQ = sum over key tiles of dS K, with
//                   dS = P (dropout'(dO V^T) - D) * scale;
//   per key tile:   dV = P'^T dO and dK = dS^T Q, summing query tiles in order.
// Both recompute Q K^T and dO V^T: the price of no atomics on dQ.
// (rowsum(P dP) = rowsum(dO * O) with or without dropout, since O = P' V.)
//
// A plain tiled kernel (scalar fp32 FMAs from shared memory), written for
// parity with the CPU first; head_dim up to 128, compiled for head_dim <= 64
// (ALBEF's) and <= 128 so that the common case neither computes nor holds
// the unused half of the output dims. Shared memory is sized by the actual
// head_dim (rows padded to D + 1 floats: lanes reading a column of keys hit
// distinct banks).
#include "cuda_internal.cuh"

namespace {

#define BQ 32          /* query rows per block */
#define BK 32          /* keys per tile */
#define MAX_D 128      /* largest head_dim */
#define TY 4           /* warps per block */
#define PER_TY (BQ / TY) /* rows (or keys) per warp */
#define WLD (BK + 1)   /* row stride of the (32 queries, 32 keys) weight tiles */

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

// What dropout multiplies element `index` of the probabilities by: 1 without
// dropout, else keep_scale or 0, drawn as the CPU draws it.
__device__ __forceinline__ float keep_factor(const attn_args &a, uint64_t index)
{
    if (!a.dropout)
        return 1.0f;
    return cuda_dropout_keep(a.seed, index, a.threshold) ? a.keep_scale : 0.0f;
}

// The score of query i (in its sequence) and key j: the scaled product plus
// the mask and the causal term, added in the CPU's order.
__device__ __forceinline__ float masked_score(const attn_args &a, float dot, float mask_j, int i, int j)
{
    float s = dot * a.scale + mask_j;
    if (a.causal && j > i)
        s += a.causal_value;
    return s;
}

// The probability of score s in a row of max m and log-sum log_l; 0 in a row
// whose every key is at -inf (m is -inf too: exp(-inf - -inf) would be NaN).
__device__ __forceinline__ float recomputed_prob(float s, float m, float log_l)
{
    return m == -INFINITY ? 0.0f : expf((s - m) - log_l);
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
// weight tile W (row stride WLD) times a (32, D) tile M; DW output dims per
// lane.
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
            float p = w_tile[(ty + TY * u) * WLD + c];
#pragma unroll
            for (int w = 0; w < DW; w++)
                acc[u][w] += p * mv[w];
        }
    }
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
            float p = w_tile[r * WLD + ty + TY * u];
#pragma unroll
            for (int w = 0; w < DW; w++)
                acc[u][w] += p * x[w];
        }
    }
}

// rows (32 x D) of acc -> dst rows of stride `stride`, the first `rows` only;
// dst fp32, or bf16 for a forward's out (bf16 storage).
template <int DW, typename T>
__device__ __forceinline__ void store_rows(T *dst, int64_t stride, const float acc[PER_TY][DW], int rows, int D)
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
                cuda_store(dst, (int64_t)r * stride + d, acc[u][w]);
        }
    }
}

// Dynamic shared memory of each kernel for head_dim D: the (32, D + 1)
// tiles, the (32, WLD) weight tiles and the per-row floats it lays out.
size_t forward_smem_bytes(int D) { return sizeof(float) * (size_t)((BQ + BK) * (D + 1) + BQ * WLD); }
size_t query_smem_bytes(int D) { return sizeof(float) * (size_t)((2 * BQ + BK) * (D + 1) + BQ * WLD + 3 * BQ); }
size_t key_smem_bytes(int D) { return sizeof(float) * (size_t)((2 * BQ + 2 * BK) * (D + 1) + 2 * BQ * WLD + 3 * BQ); }

template <int MAXD, typename T>
__global__ void __launch_bounds__(32 * TY) attention_forward_kernel(attn_args a, T *out, float *state,
                                                                    const float *q, const float *k, const float *v,
                                                                    const float *mask)
{
    constexpr int DW = MAXD / 32; /* output dims per lane */
    float *smem = cuda_dynamic_smem();
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * BQ;
    const int D = a.D, ld = D + 1, Tk = a.Tk;
    float *q_tile = smem;              /* (BQ, ld) */
    float *kv_tile = q_tile + BQ * ld; /* (BK, ld): K, then V */
    float *p_tile = kv_tile + BK * ld; /* (BQ, WLD): P' of the key tile */
    const int kvb = a.kv_shared ? 0 : b;
    const int rows = min(BQ, a.Tq - i0);
    const float *qb = q + ((int64_t)b * a.Tq + i0) * a.q_stride + (int64_t)h * D;
    const float *kb = k + (int64_t)kvb * Tk * a.k_stride + (int64_t)h * D;
    const float *vb = v + (int64_t)kvb * Tk * a.v_stride + (int64_t)h * D;
    const float *mb = mask ? mask + (int64_t)b * Tk : nullptr;
    const int64_t row0 = ((int64_t)b * a.H + h) * a.Tq + i0; /* state row of query i0; times Tk: dropout counter */

    load_tile(q_tile, qb, a.q_stride, rows, D, ld, tid);
    // Thread (tx, ty) holds rows ty + TY u: their running max and sum (the
    // same in every lane of the warp) and output dims tx + 32 w.
    float m[PER_TY], l[PER_TY], o[PER_TY][DW] = {};
#pragma unroll
    for (int u = 0; u < PER_TY; u++)
        m[u] = -INFINITY, l[u] = 0.0f;
    for (int j0 = 0; j0 < Tk; j0 += BK) {
        int keys = min(BK, Tk - j0), j = j0 + tx;
        __syncthreads(); /* the last tile's readers of kv_tile and p_tile are done */
        load_tile(kv_tile, kb + (int64_t)j0 * a.k_stride, a.k_stride, keys, D, ld, tid);
        __syncthreads();
        float dot[PER_TY] = {};
        tile_dots(dot, q_tile, kv_tile, D, ld);
        float mask_j = mb && tx < keys ? mb[j] : 0.0f;
        float rescale[PER_TY];
#pragma unroll
        for (int u = 0; u < PER_TY; u++) {
            int r = ty + TY * u;
            float s = tx < keys ? masked_score(a, dot[u], mask_j, i0 + r, j) : -INFINITY;
            float m_new = fmaxf(m[u], cuda_warp_max(s));
            // while every key so far is at -inf, exp() runs against 0: 0, not NaN
            float base = m_new == -INFINITY ? 0.0f : m_new;
            float e = expf(s - base);
            rescale[u] = expf(m[u] - base);
            l[u] = l[u] * rescale[u] + cuda_warp_sum(e);
            m[u] = m_new;
            if (a.dropout && tx < keys && r < rows)
                e *= keep_factor(a, (uint64_t)((row0 + r) * Tk + j));
            p_tile[r * WLD + tx] = e;
        }
        __syncthreads(); /* K read by every warp */
        load_tile(kv_tile, vb + (int64_t)j0 * a.v_stride, a.v_stride, keys, D, ld, tid);
        __syncthreads();
#pragma unroll
        for (int u = 0; u < PER_TY; u++)
#pragma unroll
            for (int w = 0; w < DW; w++)
                o[u][w] *= rescale[u];
        tile_weighted_sum(o, p_tile, kv_tile, keys, D, ld);
    }
    // out = acc / l; a row with every key at -inf (l = 0) gets 0, m -inf
#pragma unroll
    for (int u = 0; u < PER_TY; u++) {
        float inv = l[u] > 0.0f ? 1.0f / l[u] : 0.0f;
#pragma unroll
        for (int w = 0; w < DW; w++)
            o[u][w] *= inv;
        int r = ty + TY * u;
        if (tx == 0 && r < rows) {
            state[2 * (row0 + r)] = l[u] > 0.0f ? m[u] : -INFINITY;
            state[2 * (row0 + r) + 1] = l[u] > 0.0f ? logf(l[u]) : 0.0f;
        }
    }
    store_rows(out + ((int64_t)b * a.Tq + i0) * a.o_stride + (int64_t)h * D, a.o_stride, o, rows, D);
}

// Per query tile: D = rowsum(dO * O) into dsum, then dQ = dS K.
template <int MAXD, typename T>
__global__ void __launch_bounds__(32 * TY) attention_backward_query_kernel(attn_args a, float *dq, float *dsum,
                                                                           const float *dout, const T *out,
                                                                           const float *state, const float *q,
                                                                           const float *k, const float *v,
                                                                           const float *mask)
{
    constexpr int DW = MAXD / 32;
    float *smem = cuda_dynamic_smem();
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
    const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * BQ;
    const int D = a.D, ld = D + 1, Tk = a.Tk;
    float *q_tile = smem;               /* (BQ, ld) */
    float *do_tile = q_tile + BQ * ld;  /* (BQ, ld) */
    float *kv_tile = do_tile + BQ * ld; /* (BK, ld): V, then K */
    float *ds_tile = kv_tile + BK * ld; /* (BQ, WLD) */
    float *row_m = ds_tile + BQ * WLD, *row_log_l = row_m + BQ, *row_d = row_log_l + BQ;
    const int rows = min(BQ, a.Tq - i0);
    const float *kb = k + (int64_t)b * Tk * a.k_stride + (int64_t)h * D;
    const float *vb = v + (int64_t)b * Tk * a.v_stride + (int64_t)h * D;
    const float *mb = mask ? mask + (int64_t)b * Tk : nullptr;
    const int64_t row0 = ((int64_t)b * a.H + h) * a.Tq + i0;
    const int64_t o_off = ((int64_t)b * a.Tq + i0) * a.o_stride + (int64_t)h * D;

    load_tile(q_tile, q + ((int64_t)b * a.Tq + i0) * a.q_stride + (int64_t)h * D, a.q_stride, rows, D, ld, tid);
    load_tile(do_tile, dout + o_off, a.o_stride, rows, D, ld, tid);
    __syncthreads();
    // D per row, one warp per row: lanes over dims, then the warp's tree
    for (int u = 0; u < PER_TY; u++) {
        int r = ty + TY * u;
        float od = 0.0f;
        if (r < rows)
            for (int d = tx; d < D; d += 32)
                od += do_tile[r * ld + d] * cuda_load(out, o_off + (int64_t)r * a.o_stride + d);
        od = cuda_warp_sum(od);
        if (tx == 0) {
            row_d[r] = od;
            row_m[r] = r < rows ? state[2 * (row0 + r)] : 0.0f;
            row_log_l[r] = r < rows ? state[2 * (row0 + r) + 1] : 0.0f;
            if (r < rows)
                dsum[row0 + r] = od;
        }
    }
    if (!dq)
        return;
    float acc[PER_TY][DW] = {};
    for (int j0 = 0; j0 < Tk; j0 += BK) {
        int keys = min(BK, Tk - j0), j = j0 + tx;
        __syncthreads(); /* the row values written; the last tile's readers of kv_tile and ds_tile done */
        load_tile(kv_tile, vb + (int64_t)j0 * a.v_stride, a.v_stride, keys, D, ld, tid);
        __syncthreads();
        float dp[PER_TY] = {}; /* dO V^T, before dropout */
        tile_dots(dp, do_tile, kv_tile, D, ld);
        __syncthreads(); /* V read by every warp */
        load_tile(kv_tile, kb + (int64_t)j0 * a.k_stride, a.k_stride, keys, D, ld, tid);
        __syncthreads();
        float dot[PER_TY] = {};
        tile_dots(dot, q_tile, kv_tile, D, ld);
        float mask_j = mb && tx < keys ? mb[j] : 0.0f;
#pragma unroll
        for (int u = 0; u < PER_TY; u++) {
            int r = ty + TY * u;
            float ds = 0.0f;
            if (tx < keys && r < rows) {
                float p = recomputed_prob(masked_score(a, dot[u], mask_j, i0 + r, j), row_m[r], row_log_l[r]);
                float dpk = dp[u] * keep_factor(a, (uint64_t)((row0 + r) * Tk + j));
                ds = p * (dpk - row_d[r]) * a.scale;
            }
            ds_tile[r * WLD + tx] = ds;
        }
        __syncthreads();
        tile_weighted_sum(acc, ds_tile, kv_tile, keys, D, ld);
    }
    store_rows(dq + ((int64_t)b * a.Tq + i0) * a.q_stride + (int64_t)h * D, a.q_stride, acc, rows, D);
}

// Per key tile: dV = P'^T dO and dK = dS^T Q; thread (tx, ty) owns keys
// ty + TY u and dims tx + 32 w of the sums, and forms the (query ty + TY u,
// key tx) entries of P' and dS.
template <int MAXD>
__global__ void __launch_bounds__(32 * TY) attention_backward_key_kernel(attn_args a, float *dk, float *dv,
                                                                         const float *dsum, const float *dout,
                                                                         const float *state, const float *q,
                                                                         const float *k, const float *v,
                                                                         const float *mask)
{
    constexpr int DW = MAXD / 32;
    float *smem = cuda_dynamic_smem();
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
    const int b = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * BK;
    const int D = a.D, ld = D + 1, Tk = a.Tk;
    float *k_tile = smem;               /* (BK, ld) */
    float *v_tile = k_tile + BK * ld;   /* (BK, ld) */
    float *q_tile = v_tile + BK * ld;   /* (BQ, ld) */
    float *do_tile = q_tile + BQ * ld;  /* (BQ, ld) */
    float *p_tile = do_tile + BQ * ld;  /* (BQ, WLD) [query][key]: P' */
    float *ds_tile = p_tile + BQ * WLD; /* (BQ, WLD) [query][key]: dS */
    float *row_m = ds_tile + BQ * WLD, *row_log_l = row_m + BQ, *row_d = row_log_l + BQ;
    const int keys = min(BK, Tk - j0), j = j0 + tx;
    const int64_t head = ((int64_t)b * a.H + h) * a.Tq; /* state row of query 0 */
    load_tile(k_tile, k + ((int64_t)b * Tk + j0) * a.k_stride + (int64_t)h * D, a.k_stride, keys, D, ld, tid);
    load_tile(v_tile, v + ((int64_t)b * Tk + j0) * a.v_stride + (int64_t)h * D, a.v_stride, keys, D, ld, tid);
    const float mask_j = mask && tx < keys ? mask[(int64_t)b * Tk + j] : 0.0f;
    float acc_v[PER_TY][DW] = {}, acc_k[PER_TY][DW] = {};
    for (int i0 = 0; i0 < a.Tq; i0 += BQ) {
        int rows = min(BQ, a.Tq - i0);
        int64_t o_off = ((int64_t)b * a.Tq + i0) * a.o_stride + (int64_t)h * D;
        __syncthreads(); /* the last query tile's readers are done */
        load_tile(q_tile, q + ((int64_t)b * a.Tq + i0) * a.q_stride + (int64_t)h * D, a.q_stride, rows, D, ld, tid);
        load_tile(do_tile, dout + o_off, a.o_stride, rows, D, ld, tid);
        if (tid < BQ) {
            int64_t row = head + i0 + tid;
            row_m[tid] = tid < rows ? state[2 * row] : 0.0f;
            row_log_l[tid] = tid < rows ? state[2 * row + 1] : 0.0f;
            row_d[tid] = tid < rows ? dsum[row] : 0.0f;
        }
        __syncthreads();
        float dot[PER_TY] = {}, dp[PER_TY] = {};
        tile_dots(dot, q_tile, k_tile, D, ld);
        tile_dots(dp, do_tile, v_tile, D, ld);
#pragma unroll
        for (int u = 0; u < PER_TY; u++) {
            int r = ty + TY * u;
            float pk = 0.0f, ds = 0.0f;
            if (tx < keys && r < rows) {
                float p = recomputed_prob(masked_score(a, dot[u], mask_j, i0 + r, j), row_m[r], row_log_l[r]);
                float keep = keep_factor(a, (uint64_t)((head + i0 + r) * Tk + j));
                pk = p * keep;
                ds = p * (dp[u] * keep - row_d[r]) * a.scale;
            }
            p_tile[r * WLD + tx] = pk;
            ds_tile[r * WLD + tx] = ds;
        }
        __syncthreads();
        if (dv)
            tile_transposed_sum(acc_v, p_tile, do_tile, rows, D, ld);
        if (dk)
            tile_transposed_sum(acc_k, ds_tile, q_tile, rows, D, ld);
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

// state (B, H, Tq, 2) or scratch (B, H, Tq, 1): `cols` floats per query row.
int check_rows(backend *be, tensor t, const attn_params *p, int cols, const char *op, const char *name)
{
    int64_t want = (int64_t)p->batch * p->heads * p->q_len * cols;
    if (tensor_numel(t) == want)
        return 1;
    cuda_record_invalid(be, "%s: %s has %lld elements, expected (B, H, Tq, %d) = %lld", op, name,
                        (long long)tensor_numel(t), cols, (long long)want);
    return 0;
}

int check_mask(backend *be, tensor mask, const attn_params *p, const char *op)
{
    if (!tensor_present(mask) || tensor_numel(mask) == (int64_t)p->batch * p->kv_len)
        return 1;
    cuda_record_invalid(be, "%s: mask has %lld elements, expected (B, Tk) = %lld", op, (long long)tensor_numel(mask),
                        (long long)p->batch * p->kv_len);
    return 0;
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

// One block of (32, TY) threads per tile; more than 48 KB of dynamic shared
// memory for head_dim over 64 in the backward kernels (cuda_launch raises
// the kernel's limit).
template <typename... Params, typename... Args>
void launch(backend *be, const char *op, void (*kernel)(Params...), dim3 grid, size_t smem, Args... args)
{
    cuda_launch(be, op, kernel, grid, dim3(32, TY), smem, args...);
}

template <int MAXD, typename T>
void launch_forward(backend *be, const attn_args &a, T *out, float *state, const float *q, const float *k,
                    const float *v, const float *mask)
{
    dim3 grid((unsigned)((a.Tq + BQ - 1) / BQ), (unsigned)a.H, (unsigned)a.B);
    launch(be, "attention_forward", attention_forward_kernel<MAXD, T>, grid, forward_smem_bytes(a.D), a, out, state,
           q, k, v, mask);
}

template <int MAXD, typename T>
void launch_backward(backend *be, const attn_args &a, float *dq, float *dk, float *dv, float *dsum,
                     const float *dout, const T *out, const float *state, const float *q, const float *k,
                     const float *v, const float *mask)
{
    const char *op = "attention_backward";
    dim3 grid_q((unsigned)((a.Tq + BQ - 1) / BQ), (unsigned)a.H, (unsigned)a.B);
    launch(be, op, attention_backward_query_kernel<MAXD, T>, grid_q, query_smem_bytes(a.D), a, dq, dsum, dout, out,
           state, q, k, v, mask);
    if (!dk && !dv)
        return;
    dim3 grid_k((unsigned)((a.Tk + BK - 1) / BK), (unsigned)a.H, (unsigned)a.B);
    launch(be, op, attention_backward_key_kernel<MAXD>, grid_k, key_smem_bytes(a.D), a, dk, dv, dsum, dout, state, q,
           k, v, mask);
}

// The head-dim instantiation for an out of element type T.
template <typename T>
void forward_typed(backend *be, const attn_params *p, const attn_args &a, T *out, tensor state, tensor q, tensor k,
                   tensor v, const float *m)
{
    if (p->head_dim <= 64)
        launch_forward<64>(be, a, out, cuda_f32(state), cuda_cf32(q), cuda_cf32(k), cuda_cf32(v), m);
    else
        launch_forward<MAX_D>(be, a, out, cuda_f32(state), cuda_cf32(q), cuda_cf32(k), cuda_cf32(v), m);
}

template <typename T>
void backward_typed(backend *be, const attn_params *p, const attn_args &a, float *dq, float *dk, float *dv,
                    tensor scratch, tensor dout, const T *out, tensor state, tensor q, tensor k, tensor v,
                    const float *m)
{
    if (p->head_dim <= 64)
        launch_backward<64>(be, a, dq, dk, dv, cuda_f32(scratch), cuda_cf32(dout), out, cuda_cf32(state),
                            cuda_cf32(q), cuda_cf32(k), cuda_cf32(v), m);
    else
        launch_backward<MAX_D>(be, a, dq, dk, dv, cuda_f32(scratch), cuda_cf32(dout), out, cuda_cf32(state),
                               cuda_cf32(q), cuda_cf32(k), cuda_cf32(v), m);
}

} // namespace

void cuda_attention_forward(backend *be, const attn_params *p, tensor out, tensor state, tensor q, tensor k, tensor v,
                            tensor mask)
{
    const char *op = "attention_forward";
    if (!check_params(be, p, op) || !check_rows(be, state, p, 2, op, "state") || !check_mask(be, mask, p, op))
        return;
    if (!cuda_check_act(be, out, op, "out"))
        return;
    attn_args a = make_args(p);
    const float *m = tensor_present(mask) ? cuda_cf32(mask) : nullptr;
    if (out.dtype == DTYPE_BF16)
        forward_typed(be, p, a, cuda_bf16(out), state, q, k, v, m);
    else
        forward_typed(be, p, a, cuda_f32(out), state, q, k, v, m);
}

void cuda_attention_backward(backend *be, const attn_params *p, tensor dq, tensor dk, tensor dv, tensor scratch,
                             tensor dout, tensor out, tensor state, tensor q, tensor k, tensor v, tensor mask)
{
    const char *op = "attention_backward";
    if (!check_params(be, p, op))
        return;
    if (p->kv_shared) {
        cuda_record_invalid(be, "attention_backward: kv_shared attention has no backward pass");
        return;
    }
    if (!tensor_present(out)) {
        cuda_record_invalid(be, "attention_backward: needs the forward pass's out (for rowsum(dout * out))");
        return;
    }
    if (!cuda_check_act(be, out, op, "out"))
        return;
    if (!check_rows(be, state, p, 2, op, "state") || !check_rows(be, scratch, p, 1, op, "scratch") ||
        !check_mask(be, mask, p, op))
        return;
    attn_args a = make_args(p);
    float *dq_p = tensor_present(dq) ? cuda_f32(dq) : nullptr;
    float *dk_p = tensor_present(dk) ? cuda_f32(dk) : nullptr, *dv_p = tensor_present(dv) ? cuda_f32(dv) : nullptr;
    const float *m = tensor_present(mask) ? cuda_cf32(mask) : nullptr;
    if (out.dtype == DTYPE_BF16)
        backward_typed(be, p, a, dq_p, dk_p, dv_p, scratch, dout, cuda_cbf16(out), state, q, k, v, m);
    else
        backward_typed(be, p, a, dq_p, dk_p, dv_p, scratch, dout, cuda_cf32(out), state, q, k, v, m);
}
