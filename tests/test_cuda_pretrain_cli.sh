#!/bin/sh
# albef-pretrain --device cuda (tiny model, synthetic data): 12 steps run;
# a run stopped after 6 steps and resumed gives a byte-identical checkpoint
# at step 12 (the CUDA back end is deterministic); the first step's losses
# match the CPU run's within 1e-4 (later steps may part: ITM's hard
# negatives are drawn from the similarities, so a last-bit difference can
# pick another negative); --precision tf32 runs; --precision bf16 runs and its
# first step's losses are within 1e-2 of the CPU's. --precision's usage errors
# are checked everywhere; the rest skips without a CUDA device. Prints TAP.
# Run from the repository root.
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

"$synth" --out "$tmp/data" --images 40 --val 4 --test 4 --size 32 --quiet >/dev/null
tap_ok $? "albef-synth writes a small data set"
common="--config tiny --train $tmp/data/pretrain.json --vocab $tmp/data/vocab.txt --batch 4 --workers 2 --quiet"

"$bin" $common --precision fp16 --out "$tmp/x" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--precision must be fp32, tf32 or bf16" "$tmp/err"
tap_ok $? "an unknown --precision exits 2"
"$bin" $common --device cpu --precision tf32 --out "$tmp/x" --steps 1 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "--precision tf32 needs --device cuda" "$tmp/err"
tap_ok $? "--precision tf32 on the CPU exits 1 with a message"
"$bin" $common --device cpu --precision bf16 --out "$tmp/x" --steps 1 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--precision bf16 needs --device cuda" "$tmp/err"
tap_ok $? "--precision bf16 on the CPU is a usage error (exit 2)"
"$bin" $common --device cpu --precision fp32 --out "$tmp/y" --steps 1 >/dev/null 2>"$tmp/err"
tap_ok $? "--precision fp32 on the CPU"

"$bin" $common --device cuda --out "$tmp/a" --steps 12 >"$tmp/a.log" 2>"$tmp/err"
status=$?
if [ $status -ne 0 ] && grep -q -e "no CUDA device" -e "no CUDA back end" "$tmp/err"; then
    tap_skip "albef-pretrain --device cuda" "no CUDA device ($(head -1 "$tmp/err"))"
    tap_end
    exit $?
fi
[ $status -eq 0 ] || tap_diag "$(cat "$tmp/err")"
tap_ok $status "12 steps with --device cuda"

"$bin" $common --device cuda --out "$tmp/b" --steps 6 >"$tmp/b.log" 2>"$tmp/err" &&
    "$bin" $common --device cuda --out "$tmp/b" --steps 12 --resume "$tmp/b" >>"$tmp/b.log" 2>>"$tmp/err"
tap_ok $? "6 steps, then a resumed run to step 12, on CUDA"
cmp -s "$tmp/a/checkpoint_00000012.safetensors" "$tmp/b/checkpoint_00000012.safetensors"
tap_ok $? "the resumed CUDA run's checkpoint is byte-identical"

"$bin" $common --device cpu --out "$tmp/c" --steps 12 >"$tmp/c.log" 2>"$tmp/err"
tap_ok $? "12 steps with --device cpu"
# "loss_itc":x,"loss_itm":y,"loss_mlm":z of a log line
losses() { sed -n "$1p" "$2" | sed 's/.*"loss_itc":\([^,]*\),"loss_itm":\([^,]*\),"loss_mlm":\([^,]*\),.*/\1 \2 \3/'; }
for step in 1 2 12; do
    tap_diag "step $step losses (itc itm mlm): cuda $(losses $step "$tmp/a.log"), cpu $(losses $step "$tmp/c.log")"
done
echo "$(losses 1 "$tmp/a.log") $(losses 1 "$tmp/c.log")" | awk '{
    bad = 0
    for (i = 1; i <= 3; i++) {
        d = $i - $(i + 3); if (d < 0) d = -d
        r = $(i + 3); if (r < 0) r = -r
        if (!(d <= 1e-4 * r + 1e-6)) bad = 1
    }
    exit bad }'
tap_ok $? "the first step's losses match the CPU's within 1e-4"

"$bin" $common --device cuda --precision tf32 --out "$tmp/t" --steps 4 >"$tmp/t.log" 2>"$tmp/err"
tap_ok $? "4 steps with --device cuda --precision tf32"
tap_diag "tf32 step 1 losses (itc itm mlm): $(losses 1 "$tmp/t.log")"

"$bin" $common --device cuda --precision bf16 --out "$tmp/h" --steps 4 >"$tmp/h.log" 2>"$tmp/err"
status=$?
[ $status -eq 0 ] || tap_diag "$(cat "$tmp/err")"
tap_ok $status "4 steps with --device cuda --precision bf16"
tap_diag "bf16 step 1 losses (itc itm mlm): $(losses 1 "$tmp/h.log")"
echo "$(losses 1 "$tmp/h.log") $(losses 1 "$tmp/c.log")" | awk '{
    bad = 0
    for (i = 1; i <= 3; i++) {
        d = $i - $(i + 3); if (d < 0) d = -d
        r = $(i + 3); if (r < 0) r = -r
        if (!(d <= 1e-2 * r + 1e-6)) bad = 1
    }
    exit bad }'
tap_ok $? "bf16: the first step's losses match the CPU's within 1e-2"

tap_end
