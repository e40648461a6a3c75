/* What the CUDA back end offers beyond the op table, as plain C: the first
 * error it recorded and the device's memory. Tests and benchmarks include it
 * only when ALBEF_HAVE_CUDA is defined; it includes no CUDA header. */
#ifndef ALBEF_CUDA_CUDA_BACKEND_H
#define ALBEF_CUDA_CUDA_BACKEND_H

#include "ops/ops.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Ops never synchronise, so a failed launch or a bad argument is recorded
 * and surfaces later. Returns 0 when nothing went wrong, otherwise nonzero
 * with the first error (the op that met it and why) in msg. Synchronises. */
int cuda_backend_last_error(backend *be, char *msg, size_t cap);

/* Forgets the recorded error (tests that provoke one on purpose). A sticky
 * device error (an illegal address) stays until the process ends. */
void cuda_backend_clear_error(backend *be);

/* Matrix products with TF32 tensor cores (inputs rounded to 10-bit
 * mantissas, fp32 accumulation) when on, plain fp32 when off (the default:
 * the parity mode). Attention and the other kernels stay fp32 either way. */
int cuda_backend_set_tf32(backend *be, int on);

/* Matrix products (matmul, linear_forward, linear_backward) with bf16 inputs,
 * fp32 accumulation and fp32 output when on: each product rounds its fp32
 * inputs to bf16 into a scratch buffer that grows to the largest product seen
 * (in the first step) and is reused after. Storage, every other kernel,
 * master weights and AdamW stay fp32. Off (the default): fp32 or TF32 as
 * cuda_backend_set_tf32 says. */
void cuda_backend_set_bf16(backend *be, int on);

/* Linear layers through cuBLASLt (the bias added in the product's epilogue,
 * with fp32 inputs the bias gradient summed in the weight gradient's, one
 * plan per shape made on first use) when on; through cuBLAS, with the bias
 * written first and the bias gradient a column-sum pass, when off (the
 * default until the cuBLASLt path has passed tests/test_cuda_ops on a GPU). */
void cuda_backend_set_lt(backend *be, int on);

/* Free and total device memory in bytes (cudaMemGetInfo); 0 on success. */
int cuda_backend_memory(backend *be, size_t *free_bytes, size_t *total_bytes);

#ifdef __cplusplus
}
#endif

#endif
