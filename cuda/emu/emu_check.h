// What the emulation's test programs share: buffers held twice (one copy
// for the CPU back end, one for the emulated CUDA kernels), fresh random
// values that are never zero, outputs poisoned with NaN on the emulated side,
// and checks that print one line each and count failures.
#ifndef ALBEF_CUDA_EMU_EMU_CHECK_H
#define ALBEF_CUDA_EMU_EMU_CHECK_H

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

extern "C" {
#include "ops/ops.h"
}

extern int emu_failures, emu_checks;

// A tensor twice: on(0) for the CPU back end, on(1) for the emulated one.
struct twin {
    albef_dtype dtype = DTYPE_F32;
    std::vector<int64_t> shape;
    std::vector<uint32_t> side[2]; /* 4-byte words, whatever the dtype */
    twin() = default;
    twin(std::initializer_list<int64_t> dims, albef_dtype dt = DTYPE_F32);
    int64_t numel() const;
    size_t bytes() const;
    tensor on(int s);
    float *f(int s) { return reinterpret_cast<float *>(side[s].data()); }
    int32_t *i(int s) { return reinterpret_cast<int32_t *>(side[s].data()); }
};

// Standard normal values times std, the same on both sides, never zero.
twin randn(std::initializer_list<int64_t> dims, float std = 1.0f);
void fill_randn(twin &t, float std = 1.0f);
// An output: NaN (every byte 0xff) on the emulated side, zero on the CPU's.
twin poisoned(std::initializer_list<int64_t> dims, albef_dtype dt = DTYPE_F32);
void poison(twin &t);
// t := u on both sides (the emulated side gets the CPU side's values).
void assign(twin &t, const twin &u);
// Int32 values, the same on both sides.
twin ints(std::initializer_list<int64_t> dims, const std::vector<int32_t> &values);
uint64_t emu_random();

void expect(bool ok, const std::string &what);
// ||emu - cpu|| / ||cpu|| <= tol over the F32 values, and no NaN where the
// CPU has none; on failure, the largest difference and the first NaN.
void expect_close(const std::string &what, twin &t, double tol);
// The two sides bit for bit.
void expect_equal(const std::string &what, twin &t);
// The emulated side equals `ref` (an earlier snapshot of it) bit for bit.
void expect_rerun(const std::string &what, twin &t, const std::vector<uint32_t> &ref);
// Dropout keeps the same elements on both sides (inputs are never zero).
void expect_same_mask(const std::string &what, twin &t);

#endif
