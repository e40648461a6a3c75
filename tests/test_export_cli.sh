#!/bin/sh
# albef-export as a program: a checkpoint saved by torch.save converted and
# run through the PyTorch reference comparison (tests/test_reference.c on the
# converted weights), the task remaps, a malicious file, the pre-1.6 format,
# init from BERT and DeiT files, embeddings of texts and of the real photos
# (equal to albef-retrieve's index), usage errors. Prints TAP. Run from the
# repository root.
set -u
. tests/tap.sh

build="${ALBEF_BUILD:-build}"
bin="$build/bin/albef-export"
photos="${ALBEF_SHARED_DATA:-../shared/data}/real-images"
small=testdata/reference/small
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$bin" ]; then
    echo "not ok 1 - $bin is built"
    echo "1..1"
    exit 1
fi

"$bin" --help | grep -q '^Usage: albef-export convert'
tap_ok $? "--help"
"$bin" frobnicate >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "unknown command 'frobnicate'" "$tmp/err"
tap_ok $? "an unknown command exits 2"
"$bin" convert testdata/pth/raw.pth >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "convert takes IN and OUT" "$tmp/err"
tap_ok $? "convert without OUT exits 2"
"$bin" convert testdata/pth/raw.pth "$tmp/x.safetensors" --task captioning >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--task must be" "$tmp/err"
tap_ok $? "an unknown task exits 2"
"$bin" init --bert testdata/pth/bert_small.bin "$tmp/x.safetensors" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--bert and --vit" "$tmp/err"
tap_ok $? "init without --vit exits 2"

# The round trip: torch.save -> convert -> the C model -> PyTorch's outputs.
"$bin" convert testdata/pth/albef_small.pth "$tmp/weights.safetensors" --config "$small/config.json" \
    --strip-training >"$tmp/convert.json" 2>"$tmp/err"
tap_ok $? "convert a checkpoint saved by torch.save"
grep -q '"tensors_in":141,"kept":134,"renamed":0,"dropped":7,"unexpected":0' "$tmp/convert.json" &&
    grep -q "model,optimizer,config,epoch" "$tmp/err" && grep -q "dropped   7: training state" "$tmp/err"
tap_ok $? "the model's tensors kept, training state dropped, the optimizer named as not converted"
mkdir "$tmp/ref"
cp "$small/config.json" "$small/inputs.safetensors" "$small/outputs.safetensors" "$tmp/ref/"
cp "$tmp/weights.safetensors" "$tmp/ref/weights.safetensors"
ALBEF_REFERENCE_DIR="$tmp/ref" "$build/tests/test_reference" >"$tmp/ref.log" 2>&1
tap_ok $? "the converted weights give PyTorch's outputs, losses and gradients"
tap_diag "$(grep -E "^# (forward|gradients)" "$tmp/ref.log" | cut -c3-)"

"$bin" convert testdata/pth/albef_small.pth "$tmp/retrieval.safetensors" --task retrieval --image-res 48 \
    --strip-training --config "$small/config.json" -q >"$tmp/r.json"
tap_ok $? "convert --task retrieval --image-res 48 --strip-training"
grep -q '"kept":37,"renamed":90,"dropped":14,"unexpected":0,"interpolated":1' "$tmp/r.json"
tap_ok $? "bert. stripped from 90 names; MLM head and training state dropped; pos_embed resized"
"$bin" convert testdata/pth/albef_small.pth "$tmp/vqa.safetensors" --task vqa --dtype bf16 -q >"$tmp/v.json" &&
    grep -q '"renamed":155,"dropped":14' "$tmp/v.json" &&
    grep -aq '"text_decoder.bert.encoder.layer.1.crossattention.self.key.weight":{"dtype":"BF16"' \
        "$tmp/vqa.safetensors"
tap_ok $? "convert --task vqa: fusion layers copied into the decoder, stored as bf16"
"$bin" convert "$tmp/retrieval.safetensors" "$tmp/x.safetensors" --task vqa >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "not a pre-training checkpoint" "$tmp/err"
tap_ok $? "--task on a fine-tuned checkpoint exits 1"

"$bin" convert testdata/pth/malicious.pth "$tmp/x.safetensors" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "malicious.pth: .*refusing global 'posix.system'" "$tmp/err" && [ ! -e "$tmp/x.safetensors" ]
tap_ok $? "a pickle calling os.system is refused, nothing written"
"$bin" convert testdata/pth/legacy.pth "$tmp/legacy.safetensors" -q >"$tmp/l.json"
tap_ok $? "the format before PyTorch 1.6 converts"

"$bin" init --bert testdata/pth/bert_small.bin --vit testdata/pth/deit_small.pth --config "$small/config.json" \
    "$tmp/init.safetensors" >"$tmp/init.json" 2>"$tmp/err"
tap_ok $? "init from BERT (.bin) and DeiT (.pth)"
grep -q '"bert_tensors":75,"vit_tensors":30' "$tmp/init.json" && grep -q "pooler" "$tmp/err" &&
    grep -q "head.weight" "$tmp/err"
tap_ok $? "init loads 75 BERT and 30 DeiT tensors and names those it leaves out"

# A vocabulary the small model can take (64 entries).
{
    printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n'
    for w in a b c d e f g h i j k l m n o p q r s t u v w x y z cat dog red blue sky sea; do echo "$w"; done
    i=0
    while [ $i -lt 27 ]; do echo "w$i"; i=$((i + 1)); done
} >"$tmp/vocab.txt"
printf 'a red cat\nthe blue sea and sky\n' |
    "$bin" embed --model "$tmp/retrieval.safetensors" --texts - --vocab "$tmp/vocab.txt" --cls --out "$tmp/t" \
        --max-tokens 16 -q \
        >"$tmp/embed.json"
tap_ok $? "embed texts from stdin with the converted retrieval checkpoint"
grep -q '"kind":"texts","rows":2,"embed_dim":16,"cls_dim":32' "$tmp/embed.json" &&
    [ "$(wc -l <"$tmp/t.jsonl")" -eq 2 ] && grep -q '^{"row":1,"id":1,"text":"the blue sea and sky"}$' "$tmp/t.jsonl" &&
    head -c 10 "$tmp/t.npy" | grep -q NUMPY && [ "$(wc -c <"$tmp/t.npy")" -eq $((128 + 2 * 16 * 4)) ] &&
    grep -aq "'shape': (2, 16)" "$tmp/t.npy" && [ "$(wc -c <"$tmp/t.cls.npy")" -eq $((128 + 2 * 32 * 4)) ]
tap_ok $? "PREFIX.npy (2 x 16 float32), PREFIX.cls.npy (2 x 32) and PREFIX.jsonl"

if [ ! -d "$photos" ]; then
    tap_skip "embed the real photos" "$photos not found"
    tap_end
    exit $?
fi
model=testdata/reference/photos/weights.safetensors
"$bin" embed --model "$model" --images "$photos" --out "$tmp/photos" -q >"$tmp/p.json"
tap_ok $? "embed a folder of photos"
"$build/bin/albef-retrieve" index --model "$model" --dir "$photos" --out "$tmp/photos.idx" -q >/dev/null
n=$((7 * 16 * 4))
tail -c $n "$tmp/photos.npy" >"$tmp/a.bin"
tail -c $n "$tmp/photos.idx" >"$tmp/b.bin"
grep -q '"rows":7' "$tmp/p.json" && cmp -s "$tmp/a.bin" "$tmp/b.bin" &&
    head -1 "$tmp/photos.jsonl" | grep -q '^{"row":0,"id":"astronaut.png"}$'
tap_ok $? "the same 7 embeddings as albef-retrieve index, ids in row order"
"$bin" embed --model "$model" --images "$photos/captions.json" --image-root "$photos" --out "$tmp/m" -q >/dev/null
status=$?
# row r of the manifest's file is the row of the folder's with the same image
r=0
while [ $status -eq 0 ] && [ $r -lt 7 ]; do
    id=$(sed -n "$((r + 1))p" "$tmp/m.jsonl" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    k=$(grep -n "\"id\":\"$id\"" "$tmp/photos.jsonl" | cut -d: -f1)
    dd if="$tmp/m.npy" bs=64 skip=$((2 + r)) count=1 2>/dev/null >"$tmp/a.bin"
    dd if="$tmp/photos.npy" bs=64 skip=$((1 + k)) count=1 2>/dev/null >"$tmp/b.bin"
    cmp -s "$tmp/a.bin" "$tmp/b.bin" || status=1
    r=$((r + 1))
done
tap_ok $status "a manifest's images give the same embeddings, in the manifest's order"
tap_end
