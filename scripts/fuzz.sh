#!/bin/sh
# Runs each libFuzzer target under DIR for SECONDS, with its seed corpus from
# fuzz/corpus/NAME (copied to fuzz-corpus/NAME, which keeps what it finds).
#   scripts/fuzz.sh build/fuzz 600
set -eu
dir=${1:-build/fuzz}
seconds=${2:-600}
status=0
for f in "$dir"/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    corpus=fuzz-corpus/$name
    mkdir -p "$corpus"
    [ -d fuzz/corpus/$name ] && cp -n fuzz/corpus/$name/* "$corpus"/ 2>/dev/null || true
    echo "== $name: $seconds s"
    if ! "$f" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 \
            -artifact_prefix="fuzz-corpus/$name-" "$corpus" 2>"fuzz-corpus/$name.log"; then
        echo "$name: FAILED (see fuzz-corpus/$name.log)"
        tail -40 "fuzz-corpus/$name.log"
        status=1
    else
        grep -E 'stat::number_of_executed_units|Done' "fuzz-corpus/$name.log" | tail -2
    fi
done
exit $status
