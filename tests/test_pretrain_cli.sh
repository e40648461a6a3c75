#!/bin/sh
# albef-pretrain as a program: options and exit codes; a run interrupted and
# resumed is bit-identical to an uninterrupted one; SIGTERM saves and exits
# 143; a checkpoint that cannot be written is an error that leaves the
# previous one intact. Prints TAP. Run from the repository root.
set -u
. tests/tap.sh

build="${ALBEF_BUILD:-build}"
bin="$build/bin/albef-pretrain"
synth="$build/bin/albef-synth"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$bin" ] || [ ! -x "$synth" ]; then
    echo "not ok 1 - $bin and $synth are built"
    echo "1..1"
    exit 1
fi

# --help, --version, usage errors
"$bin" --help >"$tmp/out" 2>"$tmp/err"
tap_ok $? "--help exits 0"
grep -q '^Usage: albef-pretrain' "$tmp/out" && [ ! -s "$tmp/err" ]
tap_ok $? "--help prints the usage on stdout"
"$bin" --version | grep -q '^albef-pretrain [0-9]'
tap_ok $? "--version"
"$bin" --bogus >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "unknown option '--bogus'" "$tmp/err"
tap_ok $? "an unknown option exits 2 with a message"
"$bin" --vocab v --out o >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--train is required" "$tmp/err"
tap_ok $? "a missing --train exits 2"
"$bin" --train a --vocab v --out o --batch 1 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--batch" "$tmp/err"
tap_ok $? "a batch below 2 exits 2"

# a small data set
"$synth" --out "$tmp/data" --images 40 --val 4 --test 4 --size 32 --quiet >/dev/null
tap_ok $? "albef-synth writes a small data set"
common="--config tiny --train $tmp/data/pretrain.json --vocab $tmp/data/vocab.txt --batch 4 --workers 2 --quiet"

"$bin" $common --train /nonexistent/p.json --out "$tmp/x" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "/nonexistent/p.json" "$tmp/err"
tap_ok $? "a missing manifest exits 1 naming the file"

# 12 steps in one run against 6 + resume + 6
"$bin" $common --out "$tmp/a" --steps 12 >"$tmp/a.log" 2>"$tmp/err"
tap_ok $? "12 steps in one run"
[ "$(wc -l <"$tmp/a.log")" -eq 12 ] && head -1 "$tmp/a.log" | grep -q '"step":1,"epoch":0,"batch":1,"lr":'
tap_ok $? "one JSON line per step"
"$bin" $common --out "$tmp/b" --steps 6 >"$tmp/b.log" 2>"$tmp/err" &&
    "$bin" $common --out "$tmp/b" --steps 12 --resume "$tmp/b" >>"$tmp/b.log" 2>>"$tmp/err"
tap_ok $? "6 steps, then a resumed run to step 12"
cmp -s "$tmp/a/checkpoint_00000012.safetensors" "$tmp/b/checkpoint_00000012.safetensors"
tap_ok $? "the resumed run's checkpoint is byte-identical"
# the losses, alpha and lr of every step agree too (the timing fields differ)
cut -d, -f1-11 "$tmp/a.log" >"$tmp/a.cut"
cut -d, -f1-11 "$tmp/b.log" >"$tmp/b.cut"
cmp -s "$tmp/a.cut" "$tmp/b.cut"
tap_ok $? "the resumed run's logged losses are identical"

# SIGTERM (what Slurm sends before a time limit): finish the step, save, exit 143
"$bin" $common --out "$tmp/c" --steps 100000 >"$tmp/c.log" 2>"$tmp/err" &
pid=$!
i=0
while [ ! -s "$tmp/c.log" ] && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill -TERM $pid
wait $pid
status=$?
[ $status -eq 143 ] && grep -q "stopped by signal 15" "$tmp/err"
tap_ok $? "SIGTERM exits 143 (got $status)"
n=$(tail -1 "$tmp/c.log" | sed 's/{"step":\([0-9]*\),.*/\1/')
[ -f "$tmp/c/checkpoint_$(printf %08d "$n").safetensors" ]
tap_ok $? "SIGTERM saved a checkpoint at the last logged step ($n)"

# a checkpoint that cannot be written: an error, the previous one intact
"$bin" $common --out "$tmp/d" --steps 2 >/dev/null 2>&1
mkdir "$tmp/d/checkpoint_00000004.safetensors"
before=$(cksum <"$tmp/d/checkpoint_00000002.safetensors")
"$bin" $common --out "$tmp/d" --steps 4 --resume "$tmp/d" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "checkpoint_00000004.safetensors" "$tmp/err"
tap_ok $? "a checkpoint that cannot be written exits 1 naming it"
[ "$(cksum <"$tmp/d/checkpoint_00000002.safetensors")" = "$before" ] && [ -z "$(ls "$tmp/d" | grep '\.tmp\.')" ]
tap_ok $? "the previous checkpoint is intact and no temporary file is left"

tap_end
