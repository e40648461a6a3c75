// Stands in for the CUDA header of this name: cuda_emu.h defines what the
// kernels use from it.
