#!/bin/sh
# albef-retrieve as a program on the real photos (../shared/data/real-images)
# with a small model: eval, index, query by text and by image, re-ranking,
# usage errors. Prints TAP. Run from the repository root.
set -u
. tests/tap.sh

build="${ALBEF_BUILD:-build}"
bin="$build/bin/albef-retrieve"
photos="${ALBEF_SHARED_DATA:-../shared/data}/real-images"
model=testdata/reference/photos/weights.safetensors
vocab=testdata/reference/photos/vocab.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ ! -x "$bin" ]; then
    echo "not ok 1 - $bin is built"
    echo "1..1"
    exit 1
fi

"$bin" --help | grep -q '^Usage: albef-retrieve eval'
tap_ok $? "--help"
"$bin" frobnicate >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "unknown command 'frobnicate'" "$tmp/err"
tap_ok $? "an unknown command exits 2"
"$bin" index --model "$model" --out "$tmp/x.idx" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--manifest and --dir" "$tmp/err"
tap_ok $? "index without images exits 2"

if [ ! -d "$photos" ]; then
    tap_skip "the real photos" "$photos not found"
    tap_end
    exit $?
fi

"$bin" eval --model "$model" --vocab "$vocab" --test "$photos/captions.json" --image-root "$photos" --k 4 -q \
    >"$tmp/eval.json" 2>"$tmp/err"
tap_ok $? "eval on the real photos"
grep -q '"txt_r1":.*"img_r10":.*"r_mean":.*"images":7,"texts":14,"k":4' "$tmp/eval.json"
tap_ok $? "eval prints recall for 7 images and 14 captions"

"$bin" index --model "$model" --dir "$photos" --out "$tmp/photos.idx" --rerank-ready -q >"$tmp/index.json"
tap_ok $? "index a folder of photos"
grep -q '"images":7,"embed_dim":16,"rerank_ready":true' "$tmp/index.json"
tap_ok $? "the index holds 7 images"

printf 'an astronaut in a white suit\na cup of coffee\n' |
    "$bin" query --model "$model" --vocab "$vocab" --index "$tmp/photos.idx" --k 3 --rerank 5 -q >"$tmp/q.jsonl"
tap_ok $? "query by text from stdin, re-ranked"
[ "$(wc -l <"$tmp/q.jsonl")" -eq 2 ] && head -1 "$tmp/q.jsonl" |
    grep -q '^{"query":"an astronaut in a white suit","results":\[{"id":"[a-z_]*\.\(png\|jpg\)","itc":[-0-9.]*,"itm":[-0-9.]*},'
tap_ok $? "one JSON line per query, with ITC and ITM scores"

"$bin" query --model "$model" --index "$tmp/photos.idx" --k 1 --by-image "$photos/coffee.png" -q >"$tmp/img.json"
grep -q '"results":\[{"id":"coffee.png","itc":1.0000' "$tmp/img.json"
tap_ok $? "an image finds itself first (cosine 1)"

"$bin" index --model "$model" --dir "$photos" --out "$tmp/plain.idx" -q >/dev/null
"$bin" query --model "$model" --vocab "$vocab" --index "$tmp/plain.idx" --rerank 3 "a cat" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q -- "--rerank-ready" "$tmp/err"
tap_ok $? "--rerank on an index without image tokens exits 1 with a message"

"$bin" eval --model "$model" --test "$photos/captions.json" --image-root "$photos" -q >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "no vocabulary stored" "$tmp/err"
tap_ok $? "a checkpoint without a vocabulary asks for --vocab"

tap_end
