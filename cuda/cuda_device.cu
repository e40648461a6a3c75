// CUDA device discovery. Exports plain C functions; nothing in lib/ includes
// a CUDA header. The back-end kernels join this folder as they are written.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>

extern "C" int cuda_device_probe(char *msg, size_t cap, int *count)
{
    *count = 0;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        snprintf(msg, cap, "no CUDA device: %s", cudaGetErrorString(err));
        return 1;
    }
    if (n == 0) {
        snprintf(msg, cap, "no CUDA device found");
        return 1;
    }
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    int cublas_version = 0, nccl_version = 0;
    cublasHandle_t handle;
    if (cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS) {
        cublasGetVersion(handle, &cublas_version);
        cublasDestroy(handle);
    }
    ncclGetVersion(&nccl_version);
    snprintf(msg, cap, "%d CUDA device(s); device 0: %s (sm_%d%d, %.1f GiB); cuBLAS %d; NCCL %d", n, prop.name,
             prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0, cublas_version, nccl_version);
    *count = n;
    return 0;
}
