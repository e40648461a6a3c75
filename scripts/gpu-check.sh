#!/bin/sh
# The CUDA back end's checks on a machine with a GPU, in one run that fits
# six minutes on one H100: build with CUDA (or take build/gpu as
# scripts/gpu-bundle.sh left it, with --prebuilt), run the device test, the
# op-by-op, whole-step and CLI CUDA tests, bench_cuda, the PyTorch reference
# step on the same GPU (when python3 has torch), then compute-sanitizer
# memcheck over the op tests (--racecheck adds racecheck); a short table
# last. Logs go to $OUT when it is set (the device tool's folder), else
# build/gpu/logs.
#
#   scripts/gpu-check.sh [--prebuilt] [--no-sanitizer] [--racecheck] [--full-bench] [--no-torch]
#
# Exit status 0 when every check passed.
set -u
cd "$(dirname "$0")/.."
BUILD=build/gpu
prebuilt=0 sanitizer=1 racecheck=0 torch=1 bench_args="--quick --lt --tf32 --bf16"
for a in "$@"; do
    case "$a" in
    --prebuilt) prebuilt=1 ;;
    --no-sanitizer) sanitizer=0 ;;
    --racecheck) racecheck=1 ;;
    --no-torch) torch=0 ;;
    --full-bench) bench_args="--max-batch --lt --tf32 --bf16" ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown option $a" >&2; exit 2 ;;
    esac
done
export ALBEF_BUILD=$BUILD
LOGS=${OUT:-$BUILD/logs}
mkdir -p "$LOGS"
start=$(date +%s)
table=$(mktemp)
trap 'rm -f "$table"' EXIT
failed=0
row() { printf '%-34s %s\n' "$1" "$2" >>"$table"; }

# CUDA's own libraries, and NCCL wherever this machine keeps it (the toolkit,
# the system, or PyTorch's wheel).
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")}
libpath="$BUILD/lib:$CUDA_HOME/lib64"
for py in python3 /usr/bin/python3; do
    d=$($py -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null) &&
        libpath="$libpath:$d" && break
done
export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PATH="$PATH:$CUDA_HOME/bin"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu-check: /'

# ---- build
if [ "$prebuilt" = 0 ]; then
    t0=$(date +%s)
    if make --no-print-directory -j"$(nproc)" CUDA=1 BUILD=$BUILD \
        $BUILD/tests/test_device $BUILD/tests/test_cuda_ops $BUILD/tests/test_cuda_step $BUILD/bench/bench_cuda \
        $BUILD/bin/albef-pretrain $BUILD/bin/albef-synth \
        >"$LOGS/build.log" 2>&1; then
        row "build (CUDA=1)" "ok, $(( $(date +%s) - t0 )) s"
    else
        tail -20 "$LOGS/build.log"
        row "build (CUDA=1)" "FAILED (build.log; scripts/gpu-bundle.sh + --prebuilt builds elsewhere)"
        cat "$table"
        exit 1
    fi
else
    row "build" "prebuilt ($BUILD)"
fi

# ---- tests: cmocka's TAP lines counted
run_test() { # name, timeout, command...
    name=$1 limit=$2
    shift 2
    t0=$(date +%s)
    CMOCKA_MESSAGE_OUTPUT=TAP timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$LOGS/$name.log")
    f=$(grep '^not ok ' "$LOGS/$name.log" | grep -vc '# SKIP')
    s=$(grep -c '# SKIP' "$LOGS/$name.log")
    secs=$(( $(date +%s) - t0 ))
    if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ] && [ "$s" -eq 0 ]; then
        row "$name" "ok ($p passed, $secs s)"
    else
        failed=1
        grep -E '^not ok|<-- FAIL|^# .*(FAIL|differ|NaN)|error' "$LOGS/$name.log" | head -15
        row "$name" "FAILED ($p passed, $f failed, $s skipped, exit $rc, $secs s)"
    fi
}
run_test test_device 60 $BUILD/tests/test_device
run_test test_cuda_ops 180 $BUILD/tests/test_cuda_ops
run_test test_cuda_step 180 $BUILD/tests/test_cuda_step
run_test test_cuda_pretrain_cli 120 sh tests/test_cuda_pretrain_cli.sh
grep '^# step' "$LOGS/test_cuda_pretrain_cli.log" | sed 's/^# /gpu-check: cli: /'
# the measured errors, for the note
grep -E '\|d\|/\|ref\|' "$LOGS/test_cuda_ops.log" >"$LOGS/op_errors.txt"
grep -E '^# (forward:|step [01]:|worst|rerun)' "$LOGS/test_cuda_step.log" | sed 's/^# /gpu-check: step: /'

# ---- benchmark
t0=$(date +%s)
timeout 240 $BUILD/bench/bench_cuda $bench_args >"$LOGS/bench.txt" 2>"$LOGS/bench.err"
rc=$?
if [ "$rc" -eq 0 ] && ! grep -q skipped "$LOGS/bench.txt"; then
    row "bench_cuda $bench_args" "ok, $(( $(date +%s) - t0 )) s"
else
    failed=1
    tail -5 "$LOGS/bench.err"
    row "bench_cuda $bench_args" "FAILED (exit $rc, bench.err)"
fi

# ---- the PyTorch reference model doing the same step on the same GPU
if [ "$torch" = 1 ] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    t0=$(date +%s)
    if timeout 240 python3 scripts/dev/bench_cuda_torch.py --steps 5 >"$LOGS/bench_torch.txt" 2>&1; then
        row "bench_cuda_torch (PyTorch)" "ok, $(( $(date +%s) - t0 )) s"
    else
        tail -5 "$LOGS/bench_torch.txt"
        row "bench_cuda_torch (PyTorch)" "FAILED (bench_torch.txt; not a check of ours)"
    fi
fi

# ---- compute-sanitizer over the op tests
if [ "$sanitizer" = 1 ]; then
    if command -v compute-sanitizer >/dev/null; then
        tools=memcheck
        [ "$racecheck" = 1 ] && tools="memcheck racecheck"
        for tool in $tools; do
            t0=$(date +%s)
            timeout 120 compute-sanitizer --tool $tool --error-exitcode 99 $BUILD/tests/test_cuda_ops \
                >"$LOGS/sanitizer-$tool.log" 2>&1
            rc=$?
            summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/sanitizer-$tool.log" | tail -1)
            if [ "$rc" -eq 0 ]; then
                row "compute-sanitizer $tool" "ok: ${summary:-no summary} ($(( $(date +%s) - t0 )) s)"
            else
                failed=1
                row "compute-sanitizer $tool" "FAILED exit $rc: ${summary:-see log} ($(( $(date +%s) - t0 )) s)"
            fi
        done
    else
        row "compute-sanitizer" "not found on PATH"
    fi
fi

echo
echo "== bench_cuda"
cat "$LOGS/bench.txt" 2>/dev/null
[ -s "$LOGS/bench_torch.txt" ] && grep -E '^(PyTorch|torch| )' "$LOGS/bench_torch.txt"
echo "== gpu-check ($(( $(date +%s) - start )) s; logs in $LOGS)"
cat "$table"
exit $failed
