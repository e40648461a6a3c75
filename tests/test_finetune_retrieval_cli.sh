#!/bin/sh
# albef-finetune-retrieval as a program: options and exit codes; fine-tuning
# a pre-trained checkpoint at another resolution; a validation line per
# epoch, the best checkpoint kept and the test set scored with it (the same
# numbers albef-retrieve gives for that checkpoint); an interrupted run
# resumed is byte-identical; SIGTERM saves and exits 143. Prints TAP. Run
# from the repository root.
set -u
. tests/tap.sh

build="${ALBEF_BUILD:-build}"
bin="$build/bin/albef-finetune-retrieval"
pre="$build/bin/albef-pretrain"
ret="$build/bin/albef-retrieve"
synth="$build/bin/albef-synth"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$bin" ] || [ ! -x "$pre" ] || [ ! -x "$ret" ] || [ ! -x "$synth" ]; then
    echo "not ok 1 - the programs are built"
    echo "1..1"
    exit 1
fi

"$bin" --help >"$tmp/out" 2>"$tmp/err"
[ $? -eq 0 ] && grep -q '^Usage: albef-finetune-retrieval' "$tmp/out" && [ ! -s "$tmp/err" ]
tap_ok $? "--help prints the usage on stdout and exits 0"
"$bin" --version | grep -q '^albef-finetune-retrieval [0-9]'
tap_ok $? "--version"
"$bin" --train t --vocab v --out o >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--init" "$tmp/err"
tap_ok $? "no starting weights is a usage error"
"$bin" --train t --vocab v --out o --init a --resume b >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--resume" "$tmp/err"
tap_ok $? "--resume with --init is a usage error"
"$bin" --train t --vocab v --out o --init a --k 0 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--k" "$tmp/err"
tap_ok $? "--k 0 is a usage error"

"$synth" --out "$tmp/data" --images 24 --val 6 --test 6 --size 32 --captions 2 --quiet >/dev/null
tap_ok $? "albef-synth writes a small data set"
"$pre" --config tiny --train "$tmp/data/pretrain.json" --vocab "$tmp/data/vocab.txt" --batch 4 --workers 2 \
    --steps 4 --out "$tmp/pre" --quiet >/dev/null 2>"$tmp/err"
tap_ok $? "a tiny pre-trained checkpoint"
init="$tmp/pre/checkpoint_00000004.safetensors"

common="--init $init --train $tmp/data/retrieval_train.json --val $tmp/data/retrieval_val.json
        --image-root $tmp/data/images --vocab $tmp/data/vocab.txt --batch 4 --workers 2 --image-res 96 --k 4 --eval-batch 4 --lr 1e-4"
"$bin" $common --train /nonexistent/r.json --out "$tmp/x" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "/nonexistent/r.json" "$tmp/err"
tap_ok $? "a missing manifest exits 1 naming the file"

# two epochs in one run, with the test set at the end
"$bin" $common --test "$tmp/data/retrieval_test.json" --epochs 2 --out "$tmp/a" --log "$tmp/a.log" \
    2>"$tmp/a.err"
tap_ok $? "two epochs of fine-tuning"
grep -q "reshape position embedding visual_encoder.pos_embed from 17 to 37 tokens" "$tmp/a.err"
tap_ok $? "the 64 px position embeddings are interpolated to 96 px"
[ "$(grep -c '"val_r_mean"' "$tmp/a.log")" -eq 2 ] && grep -q '^{"epoch":0,"val_txt_r1":' "$tmp/a.log"
tap_ok $? "a validation line per epoch"
grep -q '"loss_mlm"' "$tmp/a.log"
[ $? -ne 0 ]
tap_ok $? "no MLM loss is logged"
[ -f "$tmp/a/checkpoint_best.safetensors" ] && grep -q '"r_mean"' "$tmp/a/best.json"
tap_ok $? "the best checkpoint and its score are kept"
best=$(sed 's/.*"r_mean":\([0-9.e+-]*\).*/\1/' "$tmp/a/best.json")
max=$(grep '"val_r_mean"' "$tmp/a.log" | sed 's/.*"val_r_mean":\([0-9.]*\).*/\1/' | sort -g | tail -1)
awk -v a="$best" -v b="$max" 'BEGIN { d = a - b; exit !(d < 0.0001 && d > -0.0001) }'
tap_ok $? "best.json holds the best validation r_mean ($best, $max)"
test_line=$(grep '"test_r_mean"' "$tmp/a.log")
[ -n "$test_line" ]
tap_ok $? "a test line at the end"
"$ret" eval --model "$tmp/a/checkpoint_best.safetensors" --test "$tmp/data/retrieval_test.json" \
    --image-root "$tmp/data/images" --k 4 --batch 4 --max-tokens 30 --quiet >"$tmp/eval.json" 2>"$tmp/err"
tap_ok $? "albef-retrieve evaluates the best checkpoint"
a=$(echo "$test_line" | sed 's/.*"test_r_mean":\([0-9.]*\).*/\1/')
b=$(sed 's/.*"r_mean":\([0-9.]*\).*/\1/' "$tmp/eval.json")
[ "$a" = "$b" ]
tap_ok $? "the test line agrees with albef-retrieve on checkpoint_best ($a, $b)"

# one epoch, then resumed for the second: the same weights
"$bin" $common --epochs 1 --out "$tmp/b" --log "$tmp/b.log" --quiet 2>"$tmp/err" &&
    "$bin" --resume "$tmp/b" --train "$tmp/data/retrieval_train.json" --val "$tmp/data/retrieval_val.json" \
        --image-root "$tmp/data/images" --vocab "$tmp/data/vocab.txt" --batch 4 --workers 2 --k 4 --eval-batch 4 --lr 1e-4 --epochs 2 \
        --out "$tmp/b" --log "$tmp/b.log" --quiet 2>>"$tmp/err"
tap_ok $? "one epoch, then resumed to two"
last=$(ls "$tmp/a"/checkpoint_0*.safetensors | tail -1)
cmp -s "$last" "$tmp/b/$(basename "$last")"
tap_ok $? "the resumed run ends byte-identical ($(basename "$last"))"
cmp -s "$tmp/a/checkpoint_best.safetensors" "$tmp/b/checkpoint_best.safetensors"
tap_ok $? "and keeps the same best checkpoint"

# SIGTERM: finish the step, save, exit 143
"$bin" $common --epochs 1000 --out "$tmp/c" --log "$tmp/c.log" --quiet 2>"$tmp/err" &
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
n=$(grep '"step"' "$tmp/c.log" | tail -1 | sed 's/{"step":\([0-9]*\),.*/\1/')
[ -f "$tmp/c/checkpoint_$(printf %08d "$n").safetensors" ]
tap_ok $? "SIGTERM saved a checkpoint at the last logged step ($n)"

tap_end
