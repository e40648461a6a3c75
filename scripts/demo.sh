#!/bin/sh
# The albef demo, run by `make demo` after the build:
#   scripts/demo.sh BUILD
# Writes the synthetic shapes data set into demo/data and shows what is in it.
set -eu

build=${1:-build}
out=demo/data
synth="$build/bin/albef-synth"
[ -x "$synth" ] || { echo "demo: $synth not found; run 'make' first" >&2; exit 1; }

# Prints one field of the first item of a manifest (the JSON is one line, as
# the generator writes it; sed keeps this script free of jq and python).
first() { # FILE FIELD
    sed -e 's/^\[{//' -e 's/}[],].*//' "$out/$1" | tr '\n' ' ' |
        sed -n "s/.*\"$2\":\(\"[^\"]*\"\|\[[^]]*\]\).*/\1/p"
}

echo "== 1. The synthetic shapes data set"
mkdir -p demo
"$synth" --out "$out" --seed 0 --quiet >demo/synth-summary.json
echo "albef-synth wrote $out (summary: demo/synth-summary.json):"
sed -e 's/.*"images":{\([^}]*\)}.*/  images per split: \1/' -e 's/"//g' demo/synth-summary.json
sed -e 's/.*"manifests":{\([^}]*\)}.*/\1/' -e 's/"//g' demo/synth-summary.json | tr ',' '\n' |
    sed 's/^\(.*\):\(.*\)$/  \1: \2 items/'
echo
echo "One of each:"
echo "  pretraining image:   $(first pretrain.json image)"
echo "  caption:             $(first pretrain.json caption)"
echo "  VQA question:        $(first vqa_train.json question) -> $(first vqa_train.json answer | sed 's/^\["\([^"]*\)".*/"\1"/') (of 10 annotators)"
echo "  NLVR2 statement:     $(first nlvr_train.json sentence) -> $(first nlvr_train.json label)"
echo "                       about $(first nlvr_train.json images)"
echo "  SNLI-VE hypothesis:  $(first ve_train.json sentence) -> $(first ve_train.json label)"
echo "                       about $(first ve_train.json image) (.jpg)"
echo
echo "Images are under $out/images/{train,val,test}, the vocabulary is $out/vocab.txt,"
echo "and $out/scenes.json says what each image shows. See man/man1/albef-synth.1."
