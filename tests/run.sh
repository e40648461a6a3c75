#!/bin/sh
# Runs every test program under BUILD/tests and every tests/*.sh script,
# each printing TAP, and ends with one summary line: "N passed, N failed".
# A program that crashes or exits non-zero without a failing test line counts
# as one failure.
set -u
build=${1:-build}
export ALBEF_BUILD="$build"
export ALBEF_SHARED_DATA="${ALBEF_SHARED_DATA:-../shared/data}"
export CMOCKA_MESSAGE_OUTPUT=TAP
passed=0
failed=0
failures=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for t in "$build"/tests/test_* tests/test_*.sh; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    "$t" >"$log" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$log")
    f=$(grep '^not ok ' "$log" | grep -vc '# SKIP')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        echo "FAIL $name ($p passed, $f failed, exit $rc)"
        sed 's/^/    /' "$log"
        failures="$failures $name"
    else
        s=$(grep -c '# SKIP' "$log")
        if [ "$s" -ne 0 ]; then
            echo "ok   $name ($p passed, $s skipped: $(grep -m1 '^# ' "$log" | cut -c3-))"
        else
            echo "ok   $name ($p passed)"
        fi
    fi
done
[ -n "$failures" ] && echo "failing:$failures"
if [ $((passed + failed)) -eq 0 ]; then
    echo "no tests found under $build/tests"
    failed=1
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
