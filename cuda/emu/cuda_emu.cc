// The CUDA emulation's runtime: threads, barriers, warp exchanges, shared
// memory, the back end's state, errors.
#include "cuda_emu.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>

char emu_error[512];
std::map<const void *, int> emu_smem_limits;

// The static __shared__ arrays (see cuda_emu.h); weak: a program may have none.
extern "C" char __start_emu_shared[] __attribute__((weak)), __stop_emu_shared[] __attribute__((weak));

namespace {

std::mutex error_lock;

void record(const char *msg)
{
    std::lock_guard<std::mutex> hold(error_lock);
    if (!emu_error[0])
        snprintf(emu_error, sizeof emu_error, "%s", msg);
}

struct warp_state {
    std::barrier<> bar{32};
    uint64_t lanes[32];
    std::atomic<unsigned> exited{0}; /* a bit per lane that returned */
};

struct block_state;

// Runs once per phase of a block's barrier, when every thread has arrived:
// publishes __syncthreads_or's result and starts the next one from 0.
struct on_block_phase {
    block_state *b;
    void operator()() noexcept;
};

struct block_state {
    std::unique_ptr<std::barrier<on_block_phase>> sync;
    std::vector<std::unique_ptr<warp_state>> warps;
    std::atomic<int> or_acc{0};
    int or_result = 0;
};

void on_block_phase::operator()() noexcept
{
    b->or_result = b->or_acc.load();
    b->or_acc.store(0);
}

block_state *block;      /* the running block's */
float *dynamic_smem;     /* EMU_SMEM_LIMIT bytes */
unsigned char *smem_tail; /* what the bytes past a launch's size must still hold */

warp_state &my_warp()
{
    unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    return *block->warps[t / 32];
}

// The block's shared memory filled with NaN (0xff bytes: NaN as float and as
// double), its barriers fresh.
__attribute__((no_sanitize_address)) void poison_static_shared()
{
    if (__start_emu_shared)
        memset(__start_emu_shared, 0xff, (size_t)(__stop_emu_shared - __start_emu_shared));
}

void start_block(block_state &b, unsigned threads, size_t dynamic_bytes)
{
    memset(dynamic_smem, 0xff, dynamic_bytes);
    poison_static_shared();
    b.sync = std::make_unique<std::barrier<on_block_phase>>((std::ptrdiff_t)threads, on_block_phase{&b});
    b.warps.clear();
    for (unsigned w = 0; w < threads / 32; w++)
        b.warps.push_back(std::make_unique<warp_state>());
    b.or_acc = 0;
    b.or_result = 0;
}

// A thread that returns leaves its block's barriers, as an exited GPU thread
// no longer holds up __syncthreads; its warp remembers it for the shuffles.
void leave_block()
{
    warp_state &w = my_warp();
    w.exited.fetch_or(1u << emu_lane());
    w.bar.arrive_and_drop();
    block->sync->arrive_and_drop();
}

struct emu_state {
    cuda_impl impl;
    int status;
};

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

void emu_backend_init(backend *be, backend_ops *ops, int num_sms)
{
    static emu_state state;
    const size_t scratch_bytes = (size_t)64 << 20; /* ops_cuda.cu's SCRATCH_BYTES */
    if (!state.impl.scratch) {
        state.impl.scratch = malloc(scratch_bytes);
        state.impl.scratch_bytes = scratch_bytes;
        state.impl.device_status = &state.status;
    }
    state.impl.num_sms = num_sms;
    be->ops = ops;
    be->kind = BACKEND_CUDA;
    be->name = "cuda (emulated)";
    be->impl = &state.impl;
    be->attn_layout = ATTN_LAYOUT_LSE;
}

int emu_take_status(backend *be)
{
    int *s = cuda_device_status(be), v = *s;
    *s = 0;
    return v;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream)
{
    (void)kind, (void)stream;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream)
{
    (void)stream;
    memset(dst, value, bytes);
    return cudaSuccess;
}

float *emu_dynamic_shared_memory() { return dynamic_smem; }

void __syncthreads() { block->sync->arrive_and_wait(); }

int __syncthreads_or(int predicate)
{
    if (predicate)
        block->or_acc.fetch_or(1);
    block->sync->arrive_and_wait();
    return block->or_result;
}

uint64_t emu_warp_exchange(unsigned mask, uint64_t bits, int src, const char *what)
{
    warp_state &w = my_warp();
    unsigned lane = emu_lane();
    w.lanes[lane] = bits;
    w.bar.arrive_and_wait();
    // every lane has now either arrived here or returned
    unsigned live = ~w.exited.load();
    if (mask != live) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: mask 0x%08x, but the lanes still running are 0x%08x (undefined on a GPU)",
                 what, mask, live);
        record(msg);
    }
    uint64_t got = w.lanes[lane];
    if (src >= 0 && src < 32) {
        if (!(live >> src & 1u)) {
            char msg[128];
            snprintf(msg, sizeof msg, "%s: lane %u reads lane %d, which has returned", what, lane, src);
            record(msg);
        }
        got = w.lanes[src];
    }
    w.bar.arrive_and_wait(); /* nobody overwrites a lane before all have read */
    return got;
}

void __syncwarp(unsigned mask)
{
    warp_state &w = my_warp();
    w.bar.arrive_and_wait();
    if (mask != ~w.exited.load())
        record("__syncwarp: the mask is not the lanes still running");
    w.bar.arrive_and_wait();
}

void emu_run_grid(const cudaLaunchConfig_t &cfg, void (*body)(void *), void *ctx)
{
    if (!dynamic_smem) {
        dynamic_smem = static_cast<float *>(malloc(EMU_SMEM_LIMIT));
        smem_tail = static_cast<unsigned char *>(malloc(EMU_SMEM_LIMIT));
        memset(smem_tail, 0xff, EMU_SMEM_LIMIT);
    }
    unsigned threads = cfg.blockDim.x * cfg.blockDim.y * cfg.blockDim.z;
    unsigned gx = cfg.gridDim.x, gy = cfg.gridDim.y;
    uint64_t blocks = (uint64_t)gx * gy * cfg.gridDim.z, next = 0;
    size_t used = cfg.dynamicSmemBytes;
    memset(dynamic_smem, 0xff, EMU_SMEM_LIMIT);
    block_state b;
    block = &b;
    start_block(b, threads, used);
    // when the block's last thread is done: the next block's fresh state
    auto between_blocks = [&]() noexcept {
        if (++next < blocks)
            start_block(b, threads, used);
    };
    std::barrier<decltype(between_blocks)> step((std::ptrdiff_t)threads, between_blocks);
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned tz = 0; tz < cfg.blockDim.z; tz++)
        for (unsigned ty = 0; ty < cfg.blockDim.y; ty++)
            for (unsigned tx = 0; tx < cfg.blockDim.x; tx++)
                pool.emplace_back([=, &cfg, &step] {
                    threadIdx = {tx, ty, tz};
                    blockDim = {cfg.blockDim.x, cfg.blockDim.y, cfg.blockDim.z};
                    gridDim = {cfg.gridDim.x, cfg.gridDim.y, cfg.gridDim.z};
                    for (uint64_t k = 0; k < blocks; k++) {
                        blockIdx = {(unsigned)(k % gx), (unsigned)(k / gx % gy), (unsigned)(k / gx / gy)};
                        body(ctx);
                        leave_block();
                        step.arrive_and_wait();
                    }
                });
    for (std::thread &t : pool)
        t.join();
    block = nullptr;
    if (memcmp((char *)dynamic_smem + used, smem_tail, EMU_SMEM_LIMIT - used))
        record("a block wrote dynamic shared memory past the launch's size");
}
