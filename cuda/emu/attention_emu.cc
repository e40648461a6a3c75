// cuda/attention.cu's kernels and host code, run on CPU threads through the
// emulation of cuda_emu.h, against the CPU back end: the cases of
// tests/test_cuda_ops.c (out within 1e-5, dq, dk, dv within 1e-4, the saved
// (m, log l) within 1e-5 of a double-precision log-sum-exp; outputs poisoned
// with NaN; a rerun bitwise equal; bad arguments recorded). What it cannot
// show: timing, and races that only a GPU's scheduling would expose.
//
//   make cuda-emu            (or: build/emu/attention_emu [--quick])
//
// Exit status 0 when every check passes, 1 otherwise.
#include "cuda_emu.h"

#include "../attention.cu"

#include <cstdlib>
#include <string>

namespace {

// the CUDA back end's attention ops, alone in a table
backend_ops emu_ops;
backend emu_backend;
int failures;

tensor host_tensor(std::vector<float> &buf, std::initializer_list<int64_t> shape)
{
    int64_t dims[8], n = 0;
    for (int64_t d : shape)
        dims[n++] = d;
    return tensor_make(buf.data(), DTYPE_F32, (int)n, dims);
}

// A view `offset` floats into buf, with another shape.
tensor host_view(std::vector<float> &buf, int64_t offset, std::initializer_list<int64_t> shape)
{
    tensor t = host_tensor(buf, shape);
    t.data = buf.data() + offset;
    return t;
}

uint64_t rng_state = 20240607;
float normal()
{
    auto uniform = [] {
        rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
        return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
    };
    double u = uniform(), v = uniform();
    float x = (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
    return x != 0.0f ? x : 1.0f;
}

std::vector<float> randn(size_t n)
{
    std::vector<float> v(n);
    for (float &x : v)
        x = normal();
    return v;
}

std::vector<float> poisoned(size_t n) { return std::vector<float>(n, NAN); }

void expect(bool ok, const std::string &what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    failures += !ok;
}

// ||got - ref|| / ||ref|| <= tol, and no NaN where ref has none.
void expect_close(const std::string &what, const float *got, const float *ref, size_t n, double tol)
{
    double d2 = 0, r2 = 0;
    size_t nans = 0;
    for (size_t i = 0; i < n; i++) {
        if (std::isnan(got[i]) && !std::isnan(ref[i])) {
            nans++;
            continue;
        }
        double d = (double)got[i] - ref[i];
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
    }
    double rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
    char line[256];
    snprintf(line, sizeof line, "%-46s %8zu values, |d|/|ref| %.2e%s", what.c_str(), n, rel,
             nans ? " (NaN: unwritten)" : "");
    expect(nans == 0 && rel <= tol, line);
}

enum { MASK_NONE, MASK_TAIL, MASK_ALL_LAST, MASK_TAIL_INF };

struct attn_case {
    const char *name;
    int B, H, Tq, Tk, D;
    int fused, masked, causal;
    float dropout;
    int kv_shared;
};

const attn_case cases[] = {
    {"self", 2, 3, 7, 7, 16, 0, MASK_NONE, 0, 0, 0},
    {"vit fused qkv", 2, 2, 37, 37, 64, 1, MASK_NONE, 0, 0, 0},
    {"cross masked", 3, 2, 5, 43, 32, 0, MASK_TAIL, 0, 0, 0},
    {"causal masked", 2, 2, 9, 9, 8, 0, MASK_TAIL, 1, 0, 0},
    {"cross dropout", 3, 2, 11, 70, 32, 0, MASK_TAIL, 0, 0.1f, 0},
    {"self dropout fused", 2, 3, 33, 33, 24, 1, MASK_TAIL, 0, 0.25f, 0},
    {"head_dim 128, 3 tiles", 1, 2, 65, 65, 128, 0, MASK_NONE, 0, 0, 0},
    {"odd head_dim", 2, 1, 13, 29, 5, 0, MASK_TAIL, 0, 0, 0},
    {"kv_shared", 3, 2, 6, 41, 32, 0, MASK_TAIL, 0, 0, 1},
    {"head_dim 40", 2, 3, 45, 45, 40, 0, MASK_TAIL, 0, 0, 0},
    {"head_dim 72, causal", 2, 2, 40, 40, 72, 0, MASK_TAIL, 1, 0.1f, 0},
    {"batch 4, a row all at -10000", 4, 2, 30, 50, 64, 0, MASK_ALL_LAST, 0, 0, 0},
    {"keys at -inf", 3, 2, 20, 40, 32, 0, MASK_TAIL_INF, 0, 0.1f, 0},
    /* ALBEF's shapes (slow here: skipped with --quick) */
    {"text x image 35 x 577", 2, 2, 35, 577, 64, 0, MASK_NONE, 0, 0.1f, 0},
    {"text x image masked 35 x 577", 2, 2, 35, 577, 64, 0, MASK_TAIL, 0, 0, 0},
    {"vit self 257 fused dropout", 2, 2, 257, 257, 64, 1, MASK_NONE, 0, 0.1f, 0},
};

// The log-sum-exp of every (b, h, i) row of masked, scaled scores, in double.
std::vector<float> host_lse(const attn_params &p, const float *q, const float *k, const float *mask)
{
    int B = p.batch, H = p.heads, Tq = p.q_len, Tk = p.kv_len, D = p.head_dim;
    std::vector<float> lse((size_t)B * H * Tq);
    std::vector<double> s(Tk);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                const float *qi = q + ((int64_t)b * Tq + i) * p.q_stride + h * D;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < Tk; j++) {
                    const float *kj = k + ((int64_t)(p.kv_shared ? 0 : b) * Tk + j) * p.k_stride + h * D;
                    double dot = 0;
                    for (int d = 0; d < D; d++)
                        dot += (double)qi[d] * kj[d];
                    s[j] = dot * p.scale + (mask ? mask[(int64_t)b * Tk + j] : 0.0) +
                           (p.causal && j > i ? p.causal_value : 0.0);
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j < Tk; j++)
                    sum += exp(s[j] - mx);
                lse[((size_t)b * H + h) * Tq + i] = (float)(mx + log(sum));
            }
    return lse;
}

void run_case(const attn_case &c)
{
    int64_t B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, D = c.D, C = H * D, kvB = c.kv_shared ? 1 : B;
    attn_params p = {};
    p.batch = c.B, p.heads = c.H, p.q_len = c.Tq, p.kv_len = c.Tk, p.head_dim = c.D;
    p.scale = 1.0f / sqrtf((float)D), p.causal = c.causal, p.causal_value = -10000.0f;
    p.dropout = c.dropout, p.seed = 0xabcdef12345ull, p.kv_shared = c.kv_shared;
    std::string name = std::string("attention ") + c.name + ": ";
    backend *cpu = backend_cpu(), *emu = &emu_backend;

    // inputs: q, k, v in one (B, T, 3C) buffer (fused) or three
    std::vector<float> qkv, qb, kb, vb;
    tensor q, k, v;
    if (c.fused) {
        qkv = randn((size_t)(B * Tq * 3 * C));
        q = host_view(qkv, 0, {B, Tq, C}), k = host_view(qkv, C, {B, Tk, C}), v = host_view(qkv, 2 * C, {B, Tk, C});
        p.q_stride = p.k_stride = p.v_stride = 3 * C;
    } else {
        qb = randn((size_t)(B * Tq * C)), kb = randn((size_t)(kvB * Tk * C)), vb = randn((size_t)(kvB * Tk * C));
        q = host_tensor(qb, {B, Tq, C}), k = host_tensor(kb, {kvB, Tk, C}), v = host_tensor(vb, {kvB, Tk, C});
        p.q_stride = p.k_stride = p.v_stride = C;
    }
    std::vector<float> mask_buf((size_t)(B * Tk));
    for (int64_t i = 0; i < B * Tk; i++) {
        int64_t b = i / Tk, j = i % Tk;
        bool tail = j > Tk - 1 - (b + 1) * 2; /* the last 2(b+1) keys of row b */
        mask_buf[i] = tail ? (c.masked == MASK_TAIL_INF ? -INFINITY : -10000.0f) : 0.0f;
        if (c.masked == MASK_ALL_LAST && b == B - 1)
            mask_buf[i] = -10000.0f;
    }
    tensor mask = c.masked ? host_tensor(mask_buf, {B, Tk}) : tensor_none();

    // forward
    std::vector<float> out_cpu((size_t)(B * Tq * C)), probs((size_t)(B * H * Tq * Tk));
    std::vector<float> out_emu = poisoned(out_cpu.size());
    std::vector<float> state = poisoned((size_t)(B * H * Tq * attention_state_cols(emu, Tk)));
    op_attention_forward(cpu, &p, host_tensor(out_cpu, {B, Tq, C}), host_tensor(probs, {B, H, Tq, Tk}), q, k, v,
                         mask);
    tensor state_t = host_tensor(state, {B, H, Tq, attention_state_cols(emu, Tk)});
    op_attention_forward(emu, &p, host_tensor(out_emu, {B, Tq, C}), state_t, q, k, v, mask);
    expect(!emu_error[0], name + "forward records no error " + emu_error);
    expect_close(name + "out", out_emu.data(), out_cpu.data(), out_cpu.size(), 1e-5);
    std::vector<float> lse_ref = host_lse(p, cuda_cf32(q), cuda_cf32(k), c.masked ? mask_buf.data() : nullptr);
    std::vector<float> lse(lse_ref.size());
    for (size_t i = 0; i < lse.size(); i++)
        lse[i] = (float)((double)state[2 * i] + state[2 * i + 1]);
    expect_close(name + "m + log l", lse.data(), lse_ref.data(), lse.size(), 1e-5);

    // bf16 storage: a bf16 out is the fp32 out rounded, bit for bit (the
    // state it writes is the same)
    std::vector<uint16_t> out16(out_emu.size(), 0xffff);
    int64_t dims[3] = {B, Tq, C};
    tensor out16_t = tensor_make(out16.data(), DTYPE_BF16, 3, dims);
    std::vector<float> state32 = state;
    op_attention_forward(emu, &p, out16_t, state_t, q, k, v, mask);
    std::vector<float> wide(out16.size());
    size_t unrounded = 0;
    for (size_t i = 0; i < out16.size(); i++) {
        unrounded += out16[i] != f32_to_bf16(out_emu[i]);
        wide[i] = bf16_to_f32(out16[i]);
    }
    bool same_state = !memcmp(state32.data(), state.data(), state.size() * sizeof(float));
    expect(!emu_error[0] && !unrounded && same_state,
           name + "bf16 out: the fp32 out rounded (" + std::to_string(unrounded) + " of " +
               std::to_string(out16.size()) + " differ), state unchanged " + emu_error);
    if (c.kv_shared)
        return;

    // backward
    std::vector<float> dout = randn(out_cpu.size()), scratch_cpu(probs.size());
    std::vector<float> scratch_emu = poisoned((size_t)(B * H * Tq * attention_scratch_cols(emu, Tk)));
    size_t nq = c.fused ? (size_t)(B * Tq * 3 * C) : (size_t)(B * Tq * C), nk = (size_t)(B * Tk * C);
    std::vector<float> dq_cpu(nq), dk_cpu(c.fused ? 0 : nk), dv_cpu(c.fused ? 0 : nk);
    std::vector<float> dq_emu = poisoned(nq), dk_emu = poisoned(dk_cpu.size()), dv_emu = poisoned(dv_cpu.size());
    auto grads = [&](std::vector<float> &dq, std::vector<float> &dk, std::vector<float> &dv, tensor g[3]) {
        if (c.fused) { /* dq, dk, dv: views into one (B, T, 3C) buffer, as q, k, v */
            g[0] = host_view(dq, 0, {B, Tq, C}), g[1] = host_view(dq, C, {B, Tk, C});
            g[2] = host_view(dq, 2 * C, {B, Tk, C});
        } else {
            g[0] = host_tensor(dq, {B, Tq, C}), g[1] = host_tensor(dk, {B, Tk, C}), g[2] = host_tensor(dv, {B, Tk, C});
        }
    };
    tensor gc[3], ge[3];
    grads(dq_cpu, dk_cpu, dv_cpu, gc);
    grads(dq_emu, dk_emu, dv_emu, ge);
    tensor dout_t = host_tensor(dout, {B, Tq, C});
    op_attention_backward(cpu, &p, gc[0], gc[1], gc[2], host_tensor(scratch_cpu, {B, H, Tq, Tk}), dout_t,
                          host_tensor(out_cpu, {B, Tq, C}), host_tensor(probs, {B, H, Tq, Tk}), q, k, v, mask);
    tensor scratch_t = host_tensor(scratch_emu, {B, H, Tq, attention_scratch_cols(emu, Tk)});
    tensor out_emu_t = host_tensor(out_emu, {B, Tq, C});
    op_attention_backward(emu, &p, ge[0], ge[1], ge[2], scratch_t, dout_t, out_emu_t, state_t, q, k, v, mask);
    expect(!emu_error[0], name + "backward records no error " + emu_error);
    if (c.fused) {
        expect_close(name + "dqkv", dq_emu.data(), dq_cpu.data(), nq, 1e-4);
    } else {
        expect_close(name + "dq", dq_emu.data(), dq_cpu.data(), nq, 1e-4);
        expect_close(name + "dk", dk_emu.data(), dk_cpu.data(), nk, 1e-4);
        expect_close(name + "dv", dv_emu.data(), dv_cpu.data(), nk, 1e-4);
    }

    // a rerun of both passes gives the same bits
    std::vector<float> out1 = out_emu, dq1 = dq_emu, dk1 = dk_emu, dv1 = dv_emu;
    op_attention_forward(emu, &p, out_emu_t, state_t, q, k, v, mask);
    op_attention_backward(emu, &p, ge[0], ge[1], ge[2], scratch_t, dout_t, out_emu_t, state_t, q, k, v, mask);
    auto same_bits = [](const std::vector<float> &x, const std::vector<float> &y) {
        return x.size() == y.size() && (x.empty() || !memcmp(x.data(), y.data(), x.size() * sizeof(float)));
    };
    bool same = same_bits(out1, out_emu) && same_bits(dq1, dq_emu) && same_bits(dk1, dk_emu) && same_bits(dv1, dv_emu);
    expect(same, name + "rerun bitwise equal");

    // bf16 storage: the backward reading a bf16 out equals the backward
    // reading its widened copy
    op_attention_backward(emu, &p, ge[0], ge[1], ge[2], scratch_t, dout_t, host_tensor(wide, {B, Tq, C}), state_t, q,
                          k, v, mask);
    std::vector<float> dq2 = poisoned(nq), dk2 = poisoned(dk_cpu.size()), dv2 = poisoned(dv_cpu.size());
    tensor g2[3];
    grads(dq2, dk2, dv2, g2);
    op_attention_backward(emu, &p, g2[0], g2[1], g2[2], scratch_t, dout_t, out16_t, state_t, q, k, v, mask);
    same = same_bits(dq2, dq_emu) && same_bits(dk2, dk_emu) && same_bits(dv2, dv_emu);
    expect(!emu_error[0] && same, name + "backward from a bf16 out: as from its fp32 widening, bit for bit " +
                                      emu_error);
}

// What the host code refuses, it records, naming the op.
void run_errors()
{
    std::vector<float> buf(4096, 1.0f);
    attn_params p = {};
    p.batch = 1, p.heads = 2, p.q_len = 2, p.kv_len = 2, p.head_dim = 200, p.q_stride = p.k_stride = p.v_stride = 400;
    p.scale = 1;
    tensor x = host_tensor(buf, {1, 2, 400}), state = host_tensor(buf, {1, 2, 2, 2});
    emu_clear_error();
    op_attention_forward(&emu_backend, &p, x, state, x, x, x, tensor_none());
    expect(strstr(emu_error, "attention_forward") && strstr(emu_error, "head_dim 200"),
           std::string("head_dim 200 refused: ") + emu_error);
    p.head_dim = 64, p.q_stride = p.k_stride = p.v_stride = 128;
    emu_clear_error();
    op_attention_forward(&emu_backend, &p, host_tensor(buf, {1, 2, 128}), host_tensor(buf, {1, 2, 2, 4}),
                         host_tensor(buf, {1, 2, 128}), host_tensor(buf, {1, 2, 128}), host_tensor(buf, {1, 2, 128}),
                         tensor_none());
    expect(strstr(emu_error, "state"), std::string("a state of the wrong size refused: ") + emu_error);
    emu_clear_error();
}

} // namespace

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    emu_backend_init(&emu_backend, &emu_ops, 4);
    emu_ops.attention_forward = cuda_attention_forward;
    emu_ops.attention_backward = cuda_attention_backward;
    for (const attn_case &c : cases) {
        if (quick && (int64_t)c.Tq * c.Tk > 10000)
            continue;
        emu_clear_error();
        run_case(c);
        fflush(stdout);
    }
    run_errors();
    printf("%d failed\n", failures);
    return failures != 0;
}
