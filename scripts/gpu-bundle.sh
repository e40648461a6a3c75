#!/bin/sh
# Builds what scripts/gpu-check.sh runs (the CUDA tests and bench_cuda) on a
# machine with the CUDA toolkit but no GPU, and copies the shared libraries
# they need that a bare CUDA machine may lack (cJSON, utf8proc, OpenBLAS,
# cmocka, ...; not glibc, not CUDA's own, not NCCL, which is too large to
# carry and is looked up on the GPU machine) into build/gpu/lib. Then, on
# the GPU machine, with build/gpu carried over:
#   scripts/gpu-check.sh --prebuilt
set -eu
cd "$(dirname "$0")/.."
BUILD=build/gpu
JOBS=${JOBS:-2}
make --no-print-directory -j"$JOBS" CUDA=1 BUILD=$BUILD \
    $BUILD/tests/test_device $BUILD/tests/test_cuda_ops $BUILD/tests/test_cuda_step $BUILD/bench/bench_cuda \
        $BUILD/bin/albef-pretrain $BUILD/bin/albef-synth
rm -rf $BUILD/lib
mkdir -p $BUILD/lib
for bin in $BUILD/tests/test_device $BUILD/tests/test_cuda_ops $BUILD/tests/test_cuda_step $BUILD/bench/bench_cuda \
        $BUILD/bin/albef-pretrain $BUILD/bin/albef-synth; do
    ldd "$bin" | awk '/=> \// { print $1, $3 }'
done | sort -u | while read -r name path; do
    case "$name" in
    libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libstdc++.so* | libgcc_s.so*) ;;
    libcuda* | libcublas* | libcudart* | libnccl*) ;;
    *) cp -L "$path" $BUILD/lib/"$name" ;;
    esac
done
# the objects are not needed on the GPU machine; keep what travels small
du -sh $BUILD/lib $BUILD/tests $BUILD/bench $BUILD/bin | sed 's/^/gpu-bundle: /'
echo "gpu-bundle: carry build/gpu/lib, build/gpu/tests, build/gpu/bench and build/gpu/bin, then run: scripts/gpu-check.sh --prebuilt"
