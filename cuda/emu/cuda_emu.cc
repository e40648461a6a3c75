// The CUDA emulation's runtime: threads, barriers, warp exchanges, errors.
#include "cuda_emu.h"

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
char emu_error[512];
std::map<const void *, int> emu_smem_limits;

namespace {

struct warp_exchange {
    std::barrier<> bar{32};
    float lanes[32];
};

float *shared_buf;
size_t shared_bytes;
std::barrier<> *block_barrier;
warp_exchange *warps;

void record(const char *msg)
{
    if (!emu_error[0])
        snprintf(emu_error, sizeof emu_error, "%s", msg);
}

} // namespace

void emu_clear_error() { emu_error[0] = '\0'; }

void cuda_record_invalid(backend *be, const char *fmt, ...)
{
    (void)be;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    record(msg);
}

void cuda_record(backend *be, cudaError_t err, const char *op)
{
    (void)be;
    if (err == cudaSuccess)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: launch refused (error %d)", op, (int)err);
    record(msg);
}

void emu_set_shared_memory(float *buf, size_t bytes)
{
    shared_buf = buf;
    shared_bytes = bytes;
}

void __syncthreads() { block_barrier->arrive_and_wait(); }

float emu_shfl_xor(float v, int offset)
{
    unsigned lane = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    warp_exchange &w = warps[lane / 32];
    w.lanes[lane % 32] = v;
    w.bar.arrive_and_wait();
    float other = w.lanes[(lane % 32) ^ (unsigned)offset];
    w.bar.arrive_and_wait(); /* nobody overwrites a lane before all have read */
    return other;
}

void emu_run_grid(const cudaLaunchConfig_t &cfg, void (*body)(void *), void *ctx)
{
    size_t n = shared_bytes / sizeof(float), used = cfg.dynamicSmemBytes / sizeof(float);
    if (cfg.dynamicSmemBytes > shared_bytes) {
        record("launch: more dynamic shared memory than the emulation holds");
        return;
    }
    unsigned threads = cfg.blockDim.x * cfg.blockDim.y * cfg.blockDim.z;
    for (unsigned bz = 0; bz < cfg.gridDim.z; bz++)
        for (unsigned by = 0; by < cfg.gridDim.y; by++)
            for (unsigned bx = 0; bx < cfg.gridDim.x; bx++) {
                for (size_t i = 0; i < n; i++)
                    shared_buf[i] = NAN;
                std::barrier<> bar((std::ptrdiff_t)threads);
                std::vector<warp_exchange> ws(threads / 32);
                block_barrier = &bar;
                warps = ws.data();
                std::vector<std::thread> pool;
                for (unsigned tz = 0; tz < cfg.blockDim.z; tz++)
                    for (unsigned ty = 0; ty < cfg.blockDim.y; ty++)
                        for (unsigned tx = 0; tx < cfg.blockDim.x; tx++)
                            pool.emplace_back([=, &cfg] {
                                threadIdx = dim3(tx, ty, tz);
                                blockIdx = dim3(bx, by, bz);
                                blockDim = cfg.blockDim;
                                gridDim = cfg.gridDim;
                                body(ctx);
                            });
                for (std::thread &t : pool)
                    t.join();
                for (size_t i = used; i < n; i++)
                    if (!std::isnan(shared_buf[i])) {
                        record("a block wrote dynamic shared memory past the launch's size");
                        return;
                    }
            }
}
