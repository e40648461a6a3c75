// The kernels of cuda/elementwise.cu, layernorm.cu, reduce.cu, xent.cu,
// rows.cu and sample.cu, run on CPU threads through the emulation of
// cuda_emu.h (each file compiled on its own against it), against the CPU back
// end: the op table entries of those files on fresh random inputs (never
// zero), odd shapes and the model's widths, outputs poisoned with NaN; the
// tolerances of tests/test_cuda_ops.c (1e-5 forward, 1e-4 backward, relative
// norm) and bitwise equality where the arithmetic is the CPU's operation for
// operation (dropout, AdamW, EMA, casts, row movements, ITM's draws); reruns
// bitwise equal; bad arguments and out-of-range indices recorded.
//
//   make cuda-emu            (or: build/emu/kernels_emu [--quick])
//
// Exit status 0 when every check passes, 1 otherwise.
#include "cuda_emu.h"
#include "emu_check.h"

#include <cstdlib>
#include <string>

namespace {

backend_ops emu_ops;
backend emu_be;
bool quick;

// Runs f(backend, side) for the CPU back end (side 0), then the emulated one.
template <typename F> void each(F f)
{
    f(backend_cpu(), 0);
    f(&emu_be, 1);
}

std::string shape_name(int64_t m, int64_t c) { return std::to_string(m) + "x" + std::to_string(c); }

void expect_no_error(const std::string &what)
{
    expect(!emu_error[0], what + ": no error recorded " + emu_error);
    emu_clear_error();
}

/* ---- elementwise.cu ------------------------------------------------------------ */

const int64_t sizes[] = {1, 37, 1000, 4097, 65537};

void check_elementwise()
{
    for (int64_t n : sizes) {
        std::string tag = " n=" + std::to_string(n);
        twin x = randn({n}, 2), dy = randn({n}), y = poisoned({n}), dx = poisoned({n});
        each([&](backend *be, int s) { op_gelu_forward(be, y.on(s), x.on(s)); });
        expect_close("gelu_forward" + tag, y, 1e-5);
        each([&](backend *be, int s) { op_gelu_backward(be, dx.on(s), dy.on(s), x.on(s)); });
        expect_close("gelu_backward" + tag, dx, 1e-4);
        each([&](backend *be, int s) { op_gelu_backward(be, dy.on(s), dy.on(s), x.on(s)); });
        expect_close("gelu_backward in place" + tag, dy, 1e-4);

        twin a = randn({n}), b = randn({n}), out = poisoned({n});
        each([&](backend *be, int s) { op_add(be, out.on(s), a.on(s), b.on(s)); });
        expect_equal("add" + tag, out);
        each([&](backend *be, int s) { op_accumulate(be, a.on(s), b.on(s)); });
        expect_equal("accumulate" + tag, a);
        each([&](backend *be, int s) { op_scale(be, a.on(s), -0.37f); });
        expect_equal("scale" + tag, a);
        each([&](backend *be, int s) { op_clamp(be, a.on(s), -0.2f, 0.3f); });
        expect_equal("clamp" + tag, a);
        poison(out);
        each([&](backend *be, int s) { op_fill(be, out.on(s), 0.125f); });
        expect_equal("fill" + tag, out);
        fill_randn(a), fill_randn(b);
        each([&](backend *be, int s) { op_ema(be, a.on(s), b.on(s), 0.995f); });
        expect_equal("ema" + tag, a);

        twin t = randn({1}), q = poisoned({n});
        t.f(0)[0] = t.f(1)[0] = 0.07f;
        each([&](backend *be, int s) { op_div_scalar_forward(be, q.on(s), x.on(s), t.on(s)); });
        expect_close("div_scalar_forward" + tag, q, 1e-5);

        const float ps[] = {0.1f, 0.5f};
        for (int k = 0; k < 2; k++) {
            uint64_t seed = 0x1234567ull + (uint64_t)n * 77 + (uint64_t)k;
            std::string dtag = tag + (k ? " p=0.5" : " p=0.1");
            twin xi = randn({n}), gi = randn({n}), yo = poisoned({n}), go = poisoned({n});
            each([&](backend *be, int s) { op_dropout_forward(be, yo.on(s), xi.on(s), ps[k], seed); });
            expect_equal("dropout_forward" + dtag, yo);
            expect_same_mask("dropout_forward mask" + dtag, yo);
            each([&](backend *be, int s) { op_dropout_backward(be, go.on(s), gi.on(s), ps[k], seed); });
            expect_equal("dropout_backward" + dtag, go);
            each([&](backend *be, int s) { op_dropout_forward(be, xi.on(s), xi.on(s), ps[k], seed + 1); });
            expect_equal("dropout in place" + dtag, xi);
            poison(yo);
            each([&](backend *be, int s) { op_dropout_forward(be, yo.on(s), gi.on(s), 0.0f, seed); });
            expect_equal("dropout p=0 (a copy)" + dtag, yo);
        }

        // AdamW, three steps, without and with decay flags in runs of varying length
        for (int with_flags = 0; with_flags < 2; with_flags++) {
            twin w = randn({n}), m = randn({n}, 0.1f), v = randn({n}, 0.1f), flags({n}, DTYPE_U8);
            for (int64_t i = 0; i < n; i++)
                v.f(0)[i] = v.f(1)[i] = v.f(0)[i] * v.f(0)[i];
            uint8_t *fl[2] = {reinterpret_cast<uint8_t *>(flags.side[0].data()),
                              reinterpret_cast<uint8_t *>(flags.side[1].data())};
            for (int64_t i = 0, run = 0, on = 1; i < n; i++, run++) {
                if (run == 1 + (i * 7919) % 97)
                    on = !on, run = 0;
                fl[0][i] = fl[1][i] = (uint8_t)on;
            }
            for (int step = 1; step <= 3; step++) {
                twin g = randn({n});
                each([&](backend *be, int s) {
                    op_adamw(be, w.on(s), g.on(s), m.on(s), v.on(s), with_flags ? flags.on(s) : tensor_none(), 1e-3f,
                             0.9f, 0.999f, 1e-8f, 0.02f, step);
                });
            }
            std::string ftag = tag + (with_flags ? " (decay flags)" : "");
            expect_equal("adamw param" + ftag, w);
            expect_equal("adamw exp_avg" + ftag, m);
            expect_equal("adamw exp_avg_sq" + ftag, v);
        }
    }

    // casts: random values, then the rounding's edge cases (ties to even,
    // the largest finite values, infinities, subnormals)
    for (int round = 0; round < 2; round++) {
        int64_t n = round ? 14 : 1001;
        twin x = randn({n}, 3);
        if (round) {
            const uint32_t edge[14] = {0x3f808000, 0x3f818000, 0x3f80c000, 0x3f807fff, 0x7f7fffff, 0xff7fffff,
                                       0x7f800000, 0xff800000, 0x00000001, 0x807fffff, 0x477ff000, 0x477fefff,
                                       0x33800000, 0xc77ff000};
            for (int i = 0; i < 14; i++)
                x.side[0][i] = x.side[1][i] = edge[i];
        }
        const albef_dtype types[] = {DTYPE_BF16, DTYPE_F16};
        for (albef_dtype dt : types) {
            std::string tag = std::string(" f32 -> ") + dtype_name(dt) + (round ? " (edge cases)" : "");
            twin h = poisoned({n}, dt), back = poisoned({n});
            each([&](backend *be, int s) { op_cast(be, h.on(s), x.on(s)); });
            expect_equal("cast" + tag, h);
            each([&](backend *be, int s) { op_cast(be, back.on(s), h.on(s)); });
            expect_equal("cast back to f32" + tag, back);
        }
    }
    twin x = randn({1001}), back = poisoned({1001});
    each([&](backend *be, int s) { op_cast(be, back.on(s), x.on(s)); });
    expect_equal("cast f32 -> f32", back);
    std::vector<int32_t> iv(1001);
    for (size_t i = 0; i < iv.size(); i++)
        iv[i] = (int32_t)(emu_random() % 2000001) - 1000000;
    twin xi = ints({1001}, iv);
    poison(back);
    each([&](backend *be, int s) { op_cast(be, back.on(s), xi.on(s)); });
    expect_equal("cast i32 -> f32", back);
    expect_no_error("elementwise");

    // fill_normal: no CPU reference; its statistics, a rerun, another seed
    int64_t n = quick ? 20003 : 200003;
    twin z = poisoned({n});
    op_fill_normal(&emu_be, z.on(1), 0.5f, 2.0f, 99);
    double s1 = 0, s2 = 0;
    bool finite = true;
    for (int64_t i = 0; i < n; i++)
        finite &= std::isfinite(z.f(1)[i]), s1 += z.f(1)[i], s2 += (double)z.f(1)[i] * z.f(1)[i];
    double mean = s1 / n, sd = sqrt(s2 / n - mean * mean);
    char line[160];
    snprintf(line, sizeof line, "fill_normal: %lld values, mean %.4f (0.5), std %.4f (2.0)", (long long)n, mean, sd);
    expect(finite && fabs(mean - 0.5) < 5 * 2.0 / sqrt((double)n) && fabs(sd - 2.0) < 0.05, line);
    std::vector<uint32_t> first = z.side[1];
    op_fill_normal(&emu_be, z.on(1), 0.5f, 2.0f, 99);
    expect_rerun("fill_normal same seed", z, first);
    op_fill_normal(&emu_be, z.on(1), 0.5f, 2.0f, 100);
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++)
        same += z.side[1][i] == first[i];
    expect(same < n / 100, "fill_normal another seed: other values");
}

/* ---- layernorm.cu ---------------------------------------------------------------- */

void check_layernorm()
{
    const int64_t shapes[][2] = {{1, 8}, {3, 7}, {97, 768}, {130, 33}, {1030, 64}, {5, 1100}, {33, 300}};
    for (auto &sh : shapes) {
        int64_t M = sh[0], C = sh[1];
        std::string tag = " " + shape_name(M, C);
        twin x = randn({M, C}, 2), w = randn({C}), b = randn({C}), dy = randn({M, C});
        for (int64_t i = 0; i < M * C; i++)
            x.f(0)[i] = x.f(1)[i] = x.f(0)[i] + 3.0f; /* an offset mean, as residual streams have */
        twin y = poisoned({M, C}), mean = poisoned({M}), rstd = poisoned({M});
        const float eps[2] = {1e-6f, 1e-12f};
        for (float e : eps) {
            poison(y), poison(mean), poison(rstd);
            each([&](backend *be, int s) {
                op_layernorm_forward(be, y.on(s), mean.on(s), rstd.on(s), x.on(s), w.on(s), b.on(s), e);
            });
            expect_close("layernorm_forward out" + tag, y, 1e-5);
            expect_close("layernorm_forward mean" + tag, mean, 1e-5);
            expect_close("layernorm_forward rstd" + tag, rstd, 1e-5);
        }
        twin dw0 = randn({C}), db0 = randn({C}), dx0 = randn({M, C});
        for (int acc = 0; acc < 2; acc++) {
            twin dx = poisoned({M, C}), dw, db;
            if (acc)
                assign(dx, dx0);
            assign(dw, dw0), assign(db, db0);
            auto run = [&](backend *be, int s) {
                op_layernorm_backward(be, dx.on(s), acc, dw.on(s), db.on(s), dy.on(s), x.on(s), w.on(s), mean.on(s),
                                      rstd.on(s));
            };
            each(run);
            std::string atag = tag + (acc ? " acc" : "");
            expect_close("layernorm_backward dx" + atag, dx, 1e-4);
            expect_close("layernorm_backward dw" + atag, dw, 1e-4);
            expect_close("layernorm_backward db" + atag, db, 1e-4);
            if (acc) {
                std::vector<uint32_t> r[3] = {dx.side[1], dw.side[1], db.side[1]};
                assign(dx, dx0), assign(dw, dw0), assign(db, db0);
                run(&emu_be, 1);
                expect_rerun("layernorm_backward dx" + atag, dx, r[0]);
                expect_rerun("layernorm_backward dw" + atag, dw, r[1]);
                expect_rerun("layernorm_backward db" + atag, db, r[2]);
            }
        }
        twin dw;
        assign(dw, dw0);
        each([&](backend *be, int s) {
            op_layernorm_backward(be, tensor_none(), 0, dw.on(s), tensor_none(), dy.on(s), x.on(s), w.on(s),
                                  mean.on(s), rstd.on(s));
        });
        expect_close("layernorm_backward dw only" + tag, dw, 1e-4);
        twin dx = poisoned({M, C});
        each([&](backend *be, int s) {
            op_layernorm_backward(be, dx.on(s), 0, tensor_none(), tensor_none(), dy.on(s), x.on(s), w.on(s),
                                  mean.on(s), rstd.on(s));
        });
        expect_close("layernorm_backward dx only" + tag, dx, 1e-4);
        // in place, as BERT's embeddings run it: dx over dy
        twin dyi;
        assign(dyi, dy);
        each([&](backend *be, int s) {
            op_layernorm_backward(be, dyi.on(s), 0, tensor_none(), tensor_none(), dyi.on(s), x.on(s), w.on(s),
                                  mean.on(s), rstd.on(s));
        });
        expect_close("layernorm_backward dx in place" + tag, dyi, 1e-4);
        // in place with the parameter gradients, which read dy before dx overwrites it
        assign(dyi, dy), assign(dw, dw0);
        twin db;
        assign(db, db0);
        each([&](backend *be, int s) {
            op_layernorm_backward(be, dyi.on(s), 0, dw.on(s), db.on(s), dyi.on(s), x.on(s), w.on(s), mean.on(s),
                                  rstd.on(s));
        });
        expect_close("layernorm_backward in place dx" + tag, dyi, 1e-4);
        expect_close("layernorm_backward in place dw" + tag, dw, 1e-4);
        expect_close("layernorm_backward in place db" + tag, db, 1e-4);
    }
    expect_no_error("layernorm");
}

// The fused ops' shapes, as tests/test_cuda_ops.c's: the model's widths
// (768, 3072) and odd ones, at one row, a few and more than a block's.
const int64_t fused_shapes[][2] = {{1, 768}, {37, 64},   {257, 100}, {37, 768},
                                   {3, 7},   {257, 3072}, {9, 1024},  {2, 1025}};

void check_residual_layernorm()
{
    for (auto &sh : fused_shapes) {
        int64_t M = sh[0], C = sh[1];
        if (quick && M * C > 100000)
            continue;
        twin x = randn({M, C}), bias = randn({C}), res = randn({M, C}, 2), w = randn({C}), b = randn({C});
        twin dout = randn({M, C}), dsum0 = randn({M, C}), dbias0 = randn({C}), dw0 = randn({C}), db0 = randn({C});
        twin sum = poisoned({M, C}), out = poisoned({M, C}), mean = poisoned({M}), rstd = poisoned({M});
        for (int k = 0; k < 4; k++) {
            int with_bias = k & 1;
            float p = k & 2 ? 0.1f : 0.0f;
            uint64_t seed = 0xabcdefull + (uint64_t)(M * 4 + k);
            std::string tag = " " + shape_name(M, C) + (with_bias ? " bias" : "") + (p > 0 ? " p=0.1" : "");
            auto fwd = [&](backend *be, int s) {
                op_residual_layernorm_forward(be, out.on(s), mean.on(s), rstd.on(s), sum.on(s), x.on(s),
                                              with_bias ? bias.on(s) : tensor_none(), res.on(s), w.on(s), b.on(s),
                                              1e-12f, p, seed);
            };
            poison(sum), poison(out), poison(mean), poison(rstd);
            each(fwd);
            expect_equal("residual_layernorm_forward sum" + tag, sum);
            if (p > 0) { /* an element dropped: its sum is the residual */
                twin kept = sum;
                for (int s = 0; s < 2; s++)
                    for (int64_t i = 0; i < M * C; i++)
                        kept.f(s)[i] = kept.f(s)[i] == res.f(s)[i] ? 0.0f : 1.0f;
                expect_same_mask("residual_layernorm_forward mask" + tag, kept);
            }
            expect_close("residual_layernorm_forward out" + tag, out, 1e-5);
            expect_close("residual_layernorm_forward mean" + tag, mean, 1e-5);
            expect_close("residual_layernorm_forward rstd" + tag, rstd, 1e-5);
            std::vector<uint32_t> r[4] = {sum.side[1], out.side[1], mean.side[1], rstd.side[1]};
            fwd(&emu_be, 1);
            expect_rerun("residual_layernorm_forward sum" + tag, sum, r[0]);
            expect_rerun("residual_layernorm_forward out" + tag, out, r[1]);
            // in place, as the models run it: the sum written over x
            twin inplace, out2 = poisoned({M, C});
            assign(inplace, x);
            each([&](backend *be, int s) {
                op_residual_layernorm_forward(be, out2.on(s), mean.on(s), rstd.on(s), inplace.on(s), inplace.on(s),
                                              with_bias ? bias.on(s) : tensor_none(), res.on(s), w.on(s), b.on(s),
                                              1e-12f, p, seed);
            });
            expect_equal("residual_layernorm_forward in place sum" + tag, inplace);
            expect_close("residual_layernorm_forward in place out" + tag, out2, 1e-5);

            // backward: dsum written or accumulated; dx its own tensor, or
            // (without dropout) dsum itself
            for (int acc = 0; acc < 2; acc++)
                for (int own_dx = 0; own_dx < 2; own_dx++) {
                    if (!own_dx && p > 0)
                        continue;
                    twin dsum = poisoned({M, C}), dx = poisoned({M, C}), dbias, dw, db;
                    if (acc)
                        assign(dsum, dsum0);
                    assign(dbias, dbias0), assign(dw, dw0), assign(db, db0);
                    auto bwd = [&](backend *be, int s) {
                        op_residual_layernorm_backward(be, dsum.on(s), acc, own_dx ? dx.on(s) : dsum.on(s),
                                                       dbias.on(s), dw.on(s), db.on(s), dout.on(s), sum.on(s),
                                                       w.on(s), mean.on(s), rstd.on(s), p, seed);
                    };
                    each(bwd);
                    std::string btag = tag + (acc ? " acc" : "") + (own_dx ? " dx" : " dx=dsum");
                    expect_close("residual_layernorm_backward dsum" + btag, dsum, 1e-4);
                    if (own_dx) {
                        expect_close("residual_layernorm_backward dx" + btag, dx, 1e-4);
                        if (p > 0)
                            expect_same_mask("residual_layernorm_backward dx mask" + btag, dx);
                    }
                    expect_close("residual_layernorm_backward dbias" + btag, dbias, 1e-4);
                    expect_close("residual_layernorm_backward dw" + btag, dw, 1e-4);
                    expect_close("residual_layernorm_backward db" + btag, db, 1e-4);
                    if (acc && own_dx) {
                        std::vector<uint32_t> rb[5] = {dsum.side[1], dx.side[1], dbias.side[1], dw.side[1],
                                                       db.side[1]};
                        assign(dsum, dsum0), assign(dbias, dbias0), assign(dw, dw0), assign(db, db0);
                        bwd(&emu_be, 1);
                        expect_rerun("residual_layernorm_backward dsum" + btag, dsum, rb[0]);
                        expect_rerun("residual_layernorm_backward dx" + btag, dx, rb[1]);
                        expect_rerun("residual_layernorm_backward dbias" + btag, dbias, rb[2]);
                        expect_rerun("residual_layernorm_backward dw" + btag, dw, rb[3]);
                        expect_rerun("residual_layernorm_backward db" + btag, db, rb[4]);
                    }
                }
        }
        // no linear bias to take (ViT's first norm1) and no norm gradients
        twin dsum;
        assign(dsum, dsum0);
        each([&](backend *be, int s) {
            op_residual_layernorm_backward(be, dsum.on(s), 1, dsum.on(s), tensor_none(), tensor_none(), tensor_none(),
                                           dout.on(s), sum.on(s), w.on(s), mean.on(s), rstd.on(s), 0.0f, 0);
        });
        expect_close("residual_layernorm_backward dsum only " + shape_name(M, C), dsum, 1e-4);
    }
    expect_no_error("residual_layernorm");
}

/* ---- elementwise.cu: bias + GELU ------------------------------------------------ */

void check_bias_gelu()
{
    for (auto &sh : fused_shapes) {
        int64_t M = sh[0], N = sh[1];
        if (quick && M * N > 100000)
            continue;
        std::string tag = " " + shape_name(M, N);
        twin x = randn({M, N}, 1.5f), bias = randn({N}, 0.5f), dout = randn({M, N}), dbias0 = randn({N});
        twin pre = poisoned({M, N}), out = poisoned({M, N});
        each([&](backend *be, int s) { op_bias_gelu_forward(be, out.on(s), pre.on(s), x.on(s), bias.on(s)); });
        expect_equal("bias_gelu_forward pre" + tag, pre);
        expect_close("bias_gelu_forward out" + tag, out, 1e-5);
        twin inplace, out2 = poisoned({M, N});
        assign(inplace, x);
        each([&](backend *be, int s) {
            op_bias_gelu_forward(be, out2.on(s), inplace.on(s), inplace.on(s), bias.on(s));
        });
        expect_equal("bias_gelu_forward in place pre" + tag, inplace);
        expect_close("bias_gelu_forward in place out" + tag, out2, 1e-5);

        twin din = poisoned({M, N}), dbias;
        assign(dbias, dbias0);
        auto bwd = [&](backend *be, int s) {
            op_bias_gelu_backward(be, din.on(s), dbias.on(s), dout.on(s), pre.on(s));
        };
        each(bwd);
        expect_close("bias_gelu_backward din" + tag, din, 1e-4);
        expect_close("bias_gelu_backward dbias" + tag, dbias, 1e-4);
        std::vector<uint32_t> r[2] = {din.side[1], dbias.side[1]};
        assign(dbias, dbias0);
        bwd(&emu_be, 1);
        expect_rerun("bias_gelu_backward din" + tag, din, r[0]);
        expect_rerun("bias_gelu_backward dbias" + tag, dbias, r[1]);
        twin g;
        assign(g, dout), assign(dbias, dbias0);
        each([&](backend *be, int s) { op_bias_gelu_backward(be, g.on(s), dbias.on(s), g.on(s), pre.on(s)); });
        expect_close("bias_gelu_backward in place din" + tag, g, 1e-4);
        expect_close("bias_gelu_backward in place dbias" + tag, dbias, 1e-4);
        poison(din);
        each([&](backend *be, int s) { op_bias_gelu_backward(be, din.on(s), tensor_none(), dout.on(s), pre.on(s)); });
        expect_close("bias_gelu_backward no dbias" + tag, din, 1e-4);
    }
    expect_no_error("bias_gelu");
}

/* ---- bf16 storage ---------------------------------------------------------------- */

// Elements of the bf16 twin's emulated side that are not the fp32 twin's
// emulated values rounded to nearest even.
int64_t unrounded(twin &b16, twin &f32)
{
    const uint16_t *h = reinterpret_cast<const uint16_t *>(b16.side[1].data());
    int64_t n = 0;
    for (int64_t i = 0; i < f32.numel(); i++)
        n += h[i] != f32_to_bf16(f32.f(1)[i]);
    return n;
}

// The kernels that write an activation of bf16 storage, with a bf16 out: the
// fp32 kernel's values rounded, bit for bit, and their other outputs the
// same bits as with an fp32 out.
void check_bf16_storage()
{
    for (auto &sh : fused_shapes) {
        int64_t M = sh[0], C = sh[1];
        if (quick && M * C > 100000)
            continue;
        std::string tag = " " + shape_name(M, C);
        twin x = randn({M, C}, 2), res = randn({M, C}), w = randn({C}), b = randn({C}), bias = randn({C}, 0.5f);
        twin y = poisoned({M, C}), y16 = poisoned({M, C}, DTYPE_BF16), mean = poisoned({M}), rstd = poisoned({M});
        twin mean2 = poisoned({M}), rstd2 = poisoned({M});
        op_layernorm_forward(&emu_be, y.on(1), mean.on(1), rstd.on(1), x.on(1), w.on(1), b.on(1), 1e-6f);
        op_layernorm_forward(&emu_be, y16.on(1), mean2.on(1), rstd2.on(1), x.on(1), w.on(1), b.on(1), 1e-6f);
        expect(!unrounded(y16, y) && mean.side[1] == mean2.side[1] && rstd.side[1] == rstd2.side[1],
               "layernorm_forward bf16 out: the fp32 out rounded" + tag);
        expect_no_error("layernorm_forward bf16" + tag);

        twin sum = poisoned({M, C}), sum2 = poisoned({M, C});
        poison(y), poison(y16), poison(mean), poison(mean2);
        op_residual_layernorm_forward(&emu_be, y.on(1), mean.on(1), rstd.on(1), sum.on(1), x.on(1), bias.on(1),
                                      res.on(1), w.on(1), b.on(1), 1e-12f, 0.1f, 4242);
        op_residual_layernorm_forward(&emu_be, y16.on(1), mean2.on(1), rstd2.on(1), sum2.on(1), x.on(1), bias.on(1),
                                      res.on(1), w.on(1), b.on(1), 1e-12f, 0.1f, 4242);
        expect(!unrounded(y16, y) && sum.side[1] == sum2.side[1] && mean.side[1] == mean2.side[1],
               "residual_layernorm_forward bf16 out: the fp32 out rounded, sum unchanged" + tag + " p=0.1");
        expect_no_error("residual_layernorm_forward bf16" + tag);

        twin pre = poisoned({M, C}), pre2 = poisoned({M, C});
        poison(y), poison(y16);
        op_bias_gelu_forward(&emu_be, y.on(1), pre.on(1), x.on(1), bias.on(1));
        op_bias_gelu_forward(&emu_be, y16.on(1), pre2.on(1), x.on(1), bias.on(1));
        expect(!unrounded(y16, y) && pre.side[1] == pre2.side[1],
               "bias_gelu_forward bf16 out: the fp32 out rounded, pre unchanged" + tag);
        expect_no_error("bias_gelu_forward bf16" + tag);
    }
    // any other element type is refused, naming the op
    twin x = randn({4, 8}), w = randn({8}), b = randn({8}), y = poisoned({4, 8}, DTYPE_F16), m = poisoned({4});
    op_layernorm_forward(&emu_be, y.on(1), m.on(1), m.on(1), x.on(1), w.on(1), b.on(1), 1e-6f);
    expect(strstr(emu_error, "layernorm_forward") && strstr(emu_error, "F16"),
           std::string("layernorm_forward: an F16 out refused: ") + emu_error);
    emu_clear_error();
}

/* ---- reduce.cu -------------------------------------------------------------------- */

// cuda_column_sums_add (the linear layers' bias gradient) against a sum in
// double: rows 1 to past 256 groups of 32.
void check_column_sums()
{
    const int64_t shapes[][2] = {{1, 7}, {37, 100}, {257, 64}, {1000, 33}, {9000, 5}};
    for (auto &sh : shapes) {
        int64_t R = sh[0], C = sh[1];
        twin src = randn({R, C}), dst = randn({C});
        for (int64_t c = 0; c < C; c++) {
            double s = dst.f(0)[c];
            for (int64_t r = 0; r < R; r++)
                s += src.f(0)[r * C + c];
            dst.f(0)[c] = (float)s;
        }
        std::vector<uint32_t> start = dst.side[1];
        cuda_column_sums_add(&emu_be, dst.f(1), src.f(1), R, C, "column_sums");
        expect_close("column sums " + shape_name(R, C), dst, 1e-5);
        std::vector<uint32_t> first = dst.side[1];
        dst.side[1] = start;
        cuda_column_sums_add(&emu_be, dst.f(1), src.f(1), R, C, "column_sums");
        expect_rerun("column sums " + shape_name(R, C), dst, first);
    }
    expect_no_error("column sums");
}

void check_reductions()
{
    const int64_t ns[] = {1, 1000, 4097, (1 << 20) + 3};
    for (int64_t n : ns) {
        if (quick && n > 100000)
            continue;
        twin x = randn({n});
        for (int64_t i = 0; i < n; i++)
            x.f(0)[i] = x.f(1)[i] = x.f(0)[i] + 0.25f; /* a sum far from zero */
        twin out = poisoned({2});
        auto run = [&](backend *be, int s) {
            op_reduce_sum(be, tensor_slice(out.on(s), 0, 1), x.on(s), 0.5f);
            op_reduce_sumsq(be, tensor_slice(out.on(s), 1, 1), x.on(s), 0.5f);
        };
        each(run);
        expect_close("reduce_sum, reduce_sumsq n=" + std::to_string(n), out, 1e-5);
        std::vector<uint32_t> r = out.side[1];
        run(&emu_be, 1);
        expect_rerun("reduce_sum, reduce_sumsq n=" + std::to_string(n), out, r);
    }
    const int64_t shapes[][2] = {{1, 1}, {13, 33}, {64, 256}, {37, 768}, {9, 1030}};
    for (auto &sh : shapes) {
        int64_t M = sh[0], C = sh[1];
        std::string tag = " " + shape_name(M, C);
        twin x = randn({M, C}), dy = randn({M, C}), y = poisoned({M, C}), norms = poisoned({M}), dx = poisoned({M, C});
        if (M > 1) /* a row of zeros: the norm's floor, 1e-12 */
            for (int64_t i = 0; i < C; i++)
                x.f(0)[C + i] = x.f(1)[C + i] = 0.0f;
        each([&](backend *be, int s) { op_l2norm_forward(be, y.on(s), norms.on(s), x.on(s)); });
        expect_close("l2norm_forward out" + tag, y, 1e-5);
        expect_close("l2norm_forward norms" + tag, norms, 1e-5);
        each([&](backend *be, int s) { op_l2norm_backward(be, dx.on(s), dy.on(s), y.on(s), norms.on(s)); });
        expect_close("l2norm_backward" + tag, dx, 1e-4);
        twin t = randn({1}), dt = randn({1}), sim = poisoned({M, C});
        t.f(0)[0] = t.f(1)[0] = 0.07f;
        each([&](backend *be, int s) { op_div_scalar_forward(be, sim.on(s), x.on(s), t.on(s)); });
        poison(dx);
        each([&](backend *be, int s) { op_div_scalar_backward(be, dx.on(s), dt.on(s), dy.on(s), sim.on(s), t.on(s)); });
        expect_close("div_scalar_backward din" + tag, dx, 1e-4);
        expect_close("div_scalar_backward ds" + tag, dt, 1e-4);
    }
    expect_no_error("reductions");
}

/* ---- xent.cu ---------------------------------------------------------------------- */

void check_xent()
{
    const int64_t shapes[][2] = {{1, 1}, {33, 7}, {5, 1000}, {4, 30522}, {3, 65600}};
    for (auto &sh : shapes) {
        if (quick && sh[0] * sh[1] > 100000)
            continue;
        twin x = randn({sh[0], sh[1]}, 3), y = poisoned({sh[0], sh[1]});
        each([&](backend *be, int s) { op_softmax_rows(be, y.on(s), x.on(s)); });
        expect_close("softmax_rows " + shape_name(sh[0], sh[1]), y, 1e-5);
        each([&](backend *be, int s) { op_softmax_rows(be, x.on(s), x.on(s)); });
        expect_close("softmax_rows in place " + shape_name(sh[0], sh[1]), x, 1e-5);
    }
    struct xent_case {
        const char *name;
        int64_t R, V;
        int hard, soft, ignored;
        float hard_weight, soft_weight;
        int with_grad;
    };
    const xent_case cases[] = {
        {"mlm hard, 3 ignored", 13, 30522, 1, 0, 3, 1.0f, 0.0f, 1},
        {"itc soft only", 8, 65, 0, 1, 0, 0.0f, 1.0f, 1},
        {"mlm distilled", 9, 30522, 1, 1, 2, 0.6f, 0.4f, 1},
        {"itm", 129, 2, 1, 0, 0, 1.0f, 0.0f, 1},
        {"loss only", 17, 1001, 1, 1, 1, 0.6f, 0.4f, 0},
        {"itc 37 x 8192 soft, all rows", 37, 8192, 0, 1, 0, 0.0f, 1.0f, 1},
    };
    for (const xent_case &c : cases) {
        if (quick && c.R * c.V > 300000)
            continue;
        twin logits = randn({c.R, c.V}, 2), soft = randn({c.R, c.V}, 2);
        op_softmax_rows(backend_cpu(), soft.on(0), soft.on(0));
        soft.side[1] = soft.side[0];
        std::vector<int32_t> lv((size_t)c.R);
        for (int64_t i = 0; i < c.R; i++)
            lv[(size_t)i] = i < c.ignored ? -100 : (int32_t)(emu_random() % (uint64_t)c.V);
        twin labels = ints({c.R}, lv), loss = poisoned({c.R}), dlogits = poisoned({c.R, c.V});
        xent_params p = {};
        p.hard_weight = c.hard_weight, p.soft_weight = c.soft_weight, p.grad_scale = 1.0f / (float)(c.R - c.ignored);
        auto run = [&](backend *be, int s) {
            op_softmax_xent(be, &p, loss.on(s), c.with_grad ? dlogits.on(s) : tensor_none(), logits.on(s),
                            c.hard ? labels.on(s) : tensor_none(), c.soft ? soft.on(s) : tensor_none());
        };
        each(run);
        std::string tag = std::string(" ") + c.name;
        expect_close("softmax_xent loss" + tag, loss, 1e-5);
        if (c.with_grad)
            expect_close("softmax_xent dlogits" + tag, dlogits, 1e-4);
        std::vector<uint32_t> r[2] = {loss.side[1], dlogits.side[1]};
        run(&emu_be, 1);
        expect_rerun("softmax_xent loss" + tag, loss, r[0]);
        if (c.with_grad)
            expect_rerun("softmax_xent dlogits" + tag, dlogits, r[1]);
    }
    expect_no_error("xent");
}

/* ---- rows.cu ----------------------------------------------------------------------- */

void check_rows()
{
    const int64_t eshapes[][4] = {{3, 7, 11, 33}, {4, 30, 97, 64}, {1, 1, 2, 5}, {2, 35, 300, 768}}; /* B, T, V, C */
    for (auto &sh : eshapes) {
        int64_t B = sh[0], T = sh[1], V = sh[2], C = sh[3];
        std::string tag = " B=" + std::to_string(B) + " T=" + std::to_string(T) + " V=" + std::to_string(V) +
                          " C=" + std::to_string(C);
        std::vector<int32_t> idv((size_t)(B * T));
        for (int32_t &id : idv)
            id = (int32_t)(emu_random() % (uint64_t)V); /* small vocabularies: repeated ids */
        twin ids = ints({B, T}, idv), word = randn({V, C}), pos = randn({T + 2, C}), type = randn({C});
        twin dout = randn({B, T, C}), out = poisoned({B, T, C});
        for (int with_type = 0; with_type < 2; with_type++) {
            poison(out);
            each([&](backend *be, int s) {
                op_embedding_forward(be, out.on(s), ids.on(s), word.on(s), pos.on(s),
                                     with_type ? type.on(s) : tensor_none());
            });
            expect_equal(std::string("embedding_forward") + (with_type ? " with type" : "") + tag, out);
        }
        twin dword = randn({V, C}), dpos = randn({T + 2, C}), dtype = randn({C});
        each([&](backend *be, int s) {
            op_embedding_backward(be, dword.on(s), dpos.on(s), dtype.on(s), dout.on(s), ids.on(s));
        });
        expect_equal("embedding_backward dword" + tag, dword);
        expect_equal("embedding_backward dpos" + tag, dpos);
        expect_equal("embedding_backward dtype_row" + tag, dtype);
        each([&](backend *be, int s) {
            op_embedding_backward(be, dword.on(s), tensor_none(), tensor_none(), dout.on(s), ids.on(s));
        });
        expect_equal("embedding_backward dword only" + tag, dword);
    }

    const int64_t pshapes[][4] = {{2, 32, 48, 16}, {3, 24, 24, 8}, {1, 16, 16, 16}, {1, 40, 24, 8}}; /* B, H, W, P */
    for (auto &sh : pshapes) {
        int64_t B = sh[0], Hh = sh[1], W = sh[2], P = sh[3], N = (Hh / P) * (W / P), C = 40, T = N + 1;
        std::string tag = " " + std::to_string(B) + "x3x" + std::to_string(Hh) + "x" + std::to_string(W) + " p" +
                          std::to_string(P);
        twin img = randn({B, 3, Hh, W}), patches = poisoned({B * N, 3 * P * P});
        each([&](backend *be, int s) { op_patchify(be, patches.on(s), img.on(s), (int)P); });
        expect_equal("patchify" + tag, patches);
        twin tokens = randn({B, N, C}), cls = randn({C}), pos = randn({T, C}), dout = randn({B, T, C});
        twin out = poisoned({B, T, C}), dtokens = poisoned({B, N, C}), dcls = randn({C}), dpos = randn({T, C});
        each([&](backend *be, int s) { op_vit_embed_forward(be, out.on(s), tokens.on(s), cls.on(s), pos.on(s)); });
        expect_equal("vit_embed_forward" + tag, out);
        each([&](backend *be, int s) {
            op_vit_embed_backward(be, dtokens.on(s), dcls.on(s), dpos.on(s), dout.on(s));
        });
        expect_equal("vit_embed_backward dtokens" + tag, dtokens);
        expect_equal("vit_embed_backward dcls" + tag, dcls);
        expect_equal("vit_embed_backward dpos" + tag, dpos);
    }

    int64_t B = 5, T = 7, C = 33;
    twin seq = randn({B, T, C}), cls = poisoned({B, C});
    each([&](backend *be, int s) { op_copy_rows(be, cls.on(s), C, seq.on(s), T * C, B, C, 0); });
    expect_equal("copy_rows (select [CLS])", cls);
    fill_randn(cls);
    each([&](backend *be, int s) { op_copy_rows(be, seq.on(s), T * C, cls.on(s), C, B, C, 1); });
    expect_equal("copy_rows accumulate", seq);

    const int64_t gshapes[][3] = {{7, 10, 15}, {3, 12, 257 * 24}, {1, 1, 1}, {40, 300, 7}}; /* rows, n, row */
    for (auto &sh : gshapes) {
        int64_t R = sh[0], N = sh[1], W = sh[2];
        std::string tag = " " + std::to_string(N) + " of " + shape_name(R, W);
        std::vector<int32_t> iv((size_t)N);
        for (int32_t &i : iv)
            i = (int32_t)(emu_random() % (uint64_t)R);
        twin idx = ints({N}, iv), table = randn({R, W}), rows = poisoned({N, W}), dtable = randn({R, W});
        each([&](backend *be, int s) { op_gather_rows(be, rows.on(s), table.on(s), idx.on(s)); });
        expect_equal("gather_rows" + tag, rows);
        fill_randn(rows);
        each([&](backend *be, int s) { op_scatter_add_rows(be, dtable.on(s), rows.on(s), idx.on(s)); });
        expect_equal("scatter_add_rows" + tag, dtable);
    }
    expect_no_error("rows");
    expect(!emu_take_status(&emu_be), "rows: no out-of-range bits");

    // out-of-range indices: the row NaN (gather) or skipped (scatter), a bit set
    std::vector<int32_t> bad = {0, 5, 1};
    twin idx = ints({3}, bad), table = randn({2, 4}), rows = randn({3, 4});
    op_gather_rows(&emu_be, rows.on(1), table.on(1), idx.on(1));
    bool nan_row = std::isnan(rows.f(1)[4]) && std::isnan(rows.f(1)[7]) && !std::isnan(rows.f(1)[0]);
    expect(nan_row && emu_take_status(&emu_be) == CUDA_STATUS_BAD_ROW_INDEX,
           "gather_rows: index 5 of a 2-row table gives a NaN row and the bad-row bit");
    twin before = table;
    op_scatter_add_rows(&emu_be, table.on(1), rows.on(1), idx.on(1));
    expect(emu_take_status(&emu_be) == CUDA_STATUS_BAD_ROW_INDEX, "scatter_add_rows: index 5 sets the bad-row bit");
    std::vector<int32_t> bad_ids = {3, -1, 0, 9};
    twin ids = ints({1, 4}, bad_ids), word = randn({4, 3}), pos = randn({4, 3}), out = poisoned({1, 4, 3});
    op_embedding_forward(&emu_be, out.on(1), ids.on(1), word.on(1), pos.on(1), tensor_none());
    expect(std::isnan(out.f(1)[3]) && std::isnan(out.f(1)[9]) && !std::isnan(out.f(1)[0]) &&
               emu_take_status(&emu_be) == CUDA_STATUS_BAD_TOKEN,
           "embedding_forward: ids -1 and 9 of a vocabulary of 4 give NaN rows and the bad-token bit");
}

/* ---- sample.cu --------------------------------------------------------------------- */

void check_itm_negatives()
{
    const int64_t batches[] = {1, 2, 7, 64, 130};
    for (int64_t B : batches) {
        int64_t N = B + 5;
        std::vector<int32_t> groups((size_t)B), one((size_t)B, 0);
        for (int64_t i = 0; i < B; i++)
            groups[(size_t)i] = (int32_t)(i / 3 * 3); /* images of three captions */
        twin same_g = ints({B}, groups), same_1 = ints({B}, one), logits = randn({B, N}, 5);
        struct mode {
            const char *name;
            twin *same;
            int uniform;
        } modes[] = {{"softmax", nullptr, 0}, {"same image", &same_g, 0}, {"uniform", nullptr, 1},
                     {"uniform, same image", &same_g, 1}, {"all one image", &same_1, 0}};
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            uint64_t seed = 1000 * (uint64_t)B + m;
            twin w = poisoned({B, B}), neg = poisoned({B}, DTYPE_I32);
            each([&](backend *be, int s) {
                op_itm_negatives(be, w.on(s), neg.on(s), logits.on(s),
                                 modes[m].same ? modes[m].same->on(s) : tensor_none(), modes[m].uniform, seed);
            });
            std::string tag = " B=" + std::to_string(B) + " " + modes[m].name;
            expect_equal("itm_negatives weights" + tag, w);
            expect_equal("itm_negatives draws" + tag, neg);
        }
    }
    expect_no_error("itm_negatives");
}

/* ---- what the host code refuses --------------------------------------------------- */

void check_errors()
{
    twin x = randn({3, 8}), bias = randn({7}), out = poisoned({3, 8}), pre = poisoned({3, 8});
    emu_clear_error();
    op_bias_gelu_forward(&emu_be, out.on(1), pre.on(1), x.on(1), bias.on(1));
    expect(strstr(emu_error, "bias_gelu_forward") && strstr(emu_error, "7"),
           std::string("bias_gelu_forward: a bias of 7 for rows of 8 refused: ") + emu_error);
    emu_clear_error();
    twin mean = poisoned({3}), rstd = poisoned({3}), w = randn({8});
    op_residual_layernorm_forward(&emu_be, out.on(1), mean.on(1), rstd.on(1), pre.on(1), x.on(1), bias.on(1), x.on(1),
                                  w.on(1), w.on(1), 1e-12f, 0.0f, 0);
    expect(strstr(emu_error, "residual_layernorm_forward") != nullptr,
           std::string("residual_layernorm_forward: a bias of 7 refused: ") + emu_error);
    emu_clear_error();
    twin h({3, 8}, DTYPE_BF16), i({3, 8}, DTYPE_I32);
    op_cast(&emu_be, i.on(1), h.on(1));
    expect(strstr(emu_error, "cast") != nullptr, std::string("cast bf16 -> i32 refused: ") + emu_error);
    emu_clear_error();
    twin d = randn({3, 8}), s = randn({3, 8});
    op_residual_layernorm_backward(&emu_be, d.on(1), 0, d.on(1), bias.on(1), tensor_none(), tensor_none(), s.on(1),
                                   s.on(1), w.on(1), mean.on(1), rstd.on(1), 0.1f, 1);
    expect(strstr(emu_error, "own tensor") != nullptr,
           std::string("residual_layernorm_backward: dropout with dx = dsum refused: ") + emu_error);
    emu_clear_error();
}

/* ---- the emulation itself ---------------------------------------------------------- */

// Each thread's value is 100 * warp + lane; out[4 t + k] is what shuffle k gave thread t.
__global__ void shuffle_probe_kernel(int *out, int width, int xor_mask)
{
    int t = threadIdx.x, v = 100 * (t >> 5) + (t & 31);
    out[4 * t + 0] = __shfl_down_sync(0xffffffffu, v, 3, width);
    out[4 * t + 1] = __shfl_up_sync(0xffffffffu, v, 5, width);
    out[4 * t + 2] = __shfl_sync(0xffffffffu, v, 7, width);
    out[4 * t + 3] = __shfl_xor_sync(0xffffffffu, v, xor_mask, width);
}

__global__ void syncthreads_or_kernel(int *out, int k)
{
    out[threadIdx.x] = __syncthreads_or((int)threadIdx.x == k) + 2 * __syncthreads_or(0) +
                       4 * __syncthreads_or((int)threadIdx.x >= k);
}

// Lanes 16 and up return; the rest shuffle with the full mask (undefined on a GPU).
__global__ void exited_lane_kernel(float *out)
{
    if ((threadIdx.x & 31) >= 16)
        return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

// The built-ins against CUDA's documented results (PTX shfl: down and up
// stay in the segment, idx picks within it, xor may read earlier segments).
void check_emulation()
{
    struct probe {
        int width, xor_mask, thread, down, up, idx, xr;
    };
    const probe probes[] = {
        {32, 9, 0, 3, 0, 7, 9},        {32, 9, 30, 30, 25, 7, 23},     {32, 9, 34, 105, 102, 107, 111},
        {16, 9, 13, 13, 8, 7, 4},      {16, 9, 12, 15, 7, 7, 5},       {16, 9, 18, 21, 18, 23, 27},
        {16, 9, 21, 24, 16, 23, 28},   {16, 17, 0, 3, 0, 7, 0},        {16, 17, 16, 19, 16, 23, 1},
        {8, 1, 7, 7, 2, 7, 6},         {8, 1, 9, 12, 9, 15, 8},
    };
    std::vector<int> out(4 * 64);
    int fails = 0;
    for (const probe &pr : probes) {
        cuda_launch(&emu_be, "shuffle probe", shuffle_probe_kernel, dim3(1), dim3(64), 0, out.data(), pr.width,
                    pr.xor_mask);
        const int *o = &out[4 * (size_t)pr.thread];
        if (o[0] != pr.down || o[1] != pr.up || o[2] != pr.idx || o[3] != pr.xr) {
            printf("     width %d, thread %d: down %d (%d), up %d (%d), idx %d (%d), xor %d %d (%d)\n", pr.width,
                   pr.thread, o[0], pr.down, o[1], pr.up, o[2], pr.idx, pr.xor_mask, o[3], pr.xr);
            fails++;
        }
    }
    expect(!fails, "__shfl_down_sync, __shfl_up_sync, __shfl_sync, __shfl_xor_sync: CUDA's lanes at widths 32, 16, 8");
    std::vector<int> ors(128);
    bool ok = true;
    for (int k : {0, 77, 127, 128}) {
        cuda_launch(&emu_be, "syncthreads_or", syncthreads_or_kernel, dim3(2), dim3(128), 0, ors.data(), k);
        for (int t = 0; t < 128; t++)
            ok &= ors[(size_t)t] == (k < 128 ? 1 + 4 : 0);
    }
    expect(ok, "__syncthreads_or: 1 when any thread's predicate holds, 0 when none");
    expect_no_error("shuffle probes");
    std::vector<float> f(64);
    cuda_launch(&emu_be, "exited lanes", exited_lane_kernel, dim3(1), dim3(64), 0, f.data());
    expect(strstr(emu_error, "lanes still running") != nullptr,
           std::string("a full-mask shuffle after half the warp returned is recorded: ") + emu_error);
    emu_clear_error();
}

} // namespace

int main(int argc, char **argv)
{
    quick = argc > 1 && !strcmp(argv[1], "--quick");
    cuda_kernel_ops_fill(&emu_ops);
    // one SM: a grid-stride loop's grid is at most 32 blocks, so large tensors take several turns
    emu_backend_init(&emu_be, &emu_ops, 1);

    void (*groups[])() = {check_elementwise,   check_layernorm,  check_residual_layernorm, check_bias_gelu,
                          check_bf16_storage,  check_column_sums, check_reductions,        check_xent,
                          check_rows,          check_itm_negatives, check_errors,          check_emulation};
    for (auto g : groups) {
        emu_clear_error();
        g();
        fflush(stdout);
    }
    printf("%d of %d checks failed\n", emu_failures, emu_checks);
    return emu_failures != 0;
}
